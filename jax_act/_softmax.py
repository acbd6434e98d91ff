r"""The softmax family: softmax, log_softmax and logsumexp.

All three share one forward computation, `_normalizer`, and one derivative
rule shape: for z = x / T and y = softmax(z),

.. math::

    \dot y = y \odot (\dot z - \langle y, \dot z \rangle), \qquad
    \dot z = (\dot x - z \, \dot T) / T.
"""

import functools

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jax_act import _checks
from jax_act._numerics import compute_dtype, two_diff, upcast
from jax_act._typing import Axis, AxisName


def _clip(v, big):
    """Clamps `v` to [-big, big], NaN passing through.

    Written as -max(-max(v, -big), -big) on purpose: XLA rewrites the plain
    min(max(...)) into a `clamp`, which XLA:CPU's fused softmax kernel does
    not accept, splitting the whole computation into several kernels with
    full-size temporaries (2x slower).
    """
    return -jnp.maximum(-jnp.maximum(v, -big), -big)


class _Normalizer:
    """Per-row statistics of a max-shifted exponential.

    Everything on the unmasked path is branch-free arithmetic (max, min,
    exp, log, sign): a `where` on full-size arrays stops XLA:CPU from
    fusing the softmax into one kernel. That kernel also costs about one
    pass per elementwise operation, so each method computes only what it
    needs.

    The special rows are handled by the same arithmetic:

    * An empty row (all -inf or all masked) has maximum -inf. Its factor
      `keep` = exp(min(max - shift, 0)) is exp(-inf) = 0, which zeroes the
      softmax and sends the logs to -inf; it is 1 for every other row, and
      NaN for a NaN row, which then stays NaN.
    * A row holding +inf is shifted by the largest finite number, and
      z - shift is capped at 0: the +inf entries share the mass equally
      (the limit as they grow) and the finite ones get none. z itself is
      never rewritten before the maximum is taken: a transformed copy of
      the input used twice costs XLA:CPU a second pass (2x for logsumexp).

    Attributes:
        z: the input, masked entries set to -inf.
        shift: the per-row shift (the row maximum, clamped to be finite).
        keep: per-row 1, 0 for an empty row, NaN for a NaN row.
        precise: whether softmax() carries the rounding of z - shift into
            exp (TwoSum); False for half-precision inputs, which cannot
            see it.
    """

    def __init__(
        self, z, mask, axes, axis_name=None, temperature=None, precise=True
    ):
        big = jnp.finfo(z.dtype).max
        # Masked entries take no part: exp(-inf) = 0. A select, so that a
        # NaN or inf under the mask cannot leak into the row; it costs the
        # masked path a second kernel.
        if mask is not None:
            z = jnp.where(mask, z, -jnp.inf)
        # `initial` lets an empty axis reduce to -inf instead of raising.
        row_max = jnp.max(z, axis=axes, keepdims=True, initial=-jnp.inf)
        if axis_name is not None:
            row_max = jax.lax.pmax(row_max, axis_name)
        self.z = z
        self.temperature = temperature
        self.shift = _clip(row_max, big)
        # `keep` is piecewise constant, so it has no derivative; stopping it
        # keeps second-order autodiff through the rules below (which do
        # differentiate through the max, consistently with the shift) from
        # meeting log(keep)'s 0 / 0 in an empty row.
        self.keep = jax.lax.stop_gradient(
            jnp.exp(jnp.minimum(row_max - self.shift, 0))
        )
        self.axes = axes
        self.axis_name = axis_name
        self.precise = precise

    def row_sum(self, v):
        """Sums over the softmax axes, across devices when sharded."""
        return _row_sum(v, self.axes, self.axis_name)

    def _unscaled_shifted(self):
        # min(., 0) only acts on +inf entries (inf - big = inf).
        return jnp.minimum(self.z - self.shift, 0)

    def _scale(self, v):
        # (x - max) / T rather than x / T - max / T: T > 0 keeps the argmax,
        # and the row maximum stays at exactly 0 however XLA evaluates the
        # division (it rewrites x / T as x * (1 / T) and may contract that
        # product into a later subtraction, which would break equality).
        return v if self.temperature is None else v / self.temperature

    def shifted(self):
        return self._scale(self._unscaled_shifted())

    def compensated_exp(self):
        """exp(z - shift) with the rounding of the difference undone.

        exp turns an absolute error e of z - shift into a relative error e:
        64 ULP at |z - shift| ~ 30 in float32. TwoSum gives e exactly, and
            exp(d + e) = exp(d) (1 + e + O(e^2)).
        The product is written exp(d) * (1 + e), not exp(d) + exp(d) e, so
        that the fused kernel evaluates exp once. TwoSum needs finite
        operands: -inf entries are raised to a floor at least `big` below
        the shift, where exp is 0 all the same.
        """
        big = jnp.finfo(self.z.dtype).max
        floor = jnp.maximum(self.shift, 0) - big
        # With a per-row `floor` XLA does not form a `clamp` (see `_clip`).
        z_finite = jnp.minimum(jnp.maximum(self.z, floor), big)
        shifted, shift_error = two_diff(z_finite, self.shift)
        # With a temperature the division's own rounding is not recovered.
        shifted, shift_error = self._scale(shifted), self._scale(shift_error)
        return jnp.exp(shifted) * (1 + shift_error)

    def _log1p_rest(self):
        """log(sum of exp(z - shift)), exact even when the sum is near 1.

        sum = k + rest, with k >= 1 entries at the maximum (exp(0) = 1) and
        rest the sum of the others. log(sum) = log1p(rest + (k - 1)) keeps
        the digits of a small rest that 1 + rest would round away. The
        indicator of an entry below the maximum is -sign(z - shift),
        arithmetic for fusion. No TwoSum here: an error of half an ULP in a
        term of `rest` moves the log by less than that.
        """
        below_max = -jnp.sign(self._unscaled_shifted())
        rest = self.row_sum(jnp.exp(self.shifted()) * below_max)
        count = self.row_sum(1 - below_max)
        # An empty row has count 0 and keep 0: log1p(0) = 0 there, and
        # `keep` alone sends the results to -inf. A non-empty row can also
        # have count 0: XLA may evaluate the input (say tanh(x)) in two
        # kernels that round it differently, so no entry sits at exactly
        # the maximum; `rest` then already holds that entry's exp ~ 1, and
        # rest + (0 - 1) is still the sum minus one.
        return jnp.log1p(rest + (count - 1) * self.keep)

    def softmax(self):
        # Halves skip the TwoSum: the float32 exponential's worst error,
        # 64 float32 ULP (4e-6), is 1/500 of a bfloat16 half-ULP (2e-3) and
        # 1/60 of float16's, so the rounded result cannot tell, while the
        # extra operations cost the bfloat16 forward pass about half again.
        if self.precise:
            exp_shifted = self.compensated_exp()
        else:
            exp_shifted = jnp.exp(self.shifted())
        # keep is 0 for an empty row, whose softmax is then 0. Multiplying
        # after the division is exact (keep is 0, 1 or NaN) and keeps the
        # derivative finite there, where total / keep would give 0 / 0.
        return exp_shifted / self.row_sum(exp_shifted) * self.keep

    def log_softmax(self):
        # z - shift is rounded once, then log_norm subtracted: both terms
        # are <= 0, so nothing cancels and the result is within about one
        # ULP. An empty row has log(keep) = -inf, so log_norm = +inf and
        # every entry -inf.
        log_norm = self._log1p_rest() - jnp.log(self.keep)
        return self.shifted() - log_norm

    def logsumexp(self):
        # One reduction, log(sum) rather than log1p(rest): a second
        # reduction pass costs XLA:CPU 2-3x in the forward pass. The price:
        # the sum's rounding (a few 2^-24 of a sum >= 1) is an absolute
        # error in the result, large in its ULPs when the result is near 0.
        # log(keep) is -inf for an empty row: logsumexp of nothing is -inf.
        total = self.row_sum(jnp.exp(self.shifted()))
        lse = self.shift + (jnp.log(total) + jnp.log(self.keep))
        # The shift is the largest finite number only when the row held
        # +inf (or that number itself): the sum is then +inf.
        big = jnp.finfo(lse.dtype).max
        return jnp.where(self.shift >= big, jnp.inf, lse)


def _stats(x, mask, temperature, axes, axis_name, precise=True):
    return _Normalizer(x, mask, axes, axis_name, temperature, precise)


def _scaled_tangent(x, temperature, x_dot, temperature_dot, axes, name):
    """The tangent of z = x / T, as the softmax rules consume it."""
    if temperature is None:
        return x_dot
    # dz = (dx - z dT) / T. A per-row constant added to dz cancels in
    # dz - <y, dz>, so z is replaced by (x - max) / T over the finite
    # entries; that keeps the products small (no 1e30 - 1e30 cancellation),
    # and +-inf entries, whose z does not move, out of inf * 0 = NaN.
    finite = jnp.isfinite(x)
    row_max = jnp.max(jnp.where(finite, x, -jnp.inf), axes, keepdims=True)
    if name is not None:
        row_max = jax.lax.pmax(row_max, name)
    row_max = jax.lax.stop_gradient(row_max)
    centred = jnp.where(finite, x - row_max, 0) / temperature
    return (x_dot - centred * temperature_dot) / temperature


def _row_sum(v, axes, axis_name):
    total = jnp.sum(v, axis=axes, keepdims=True)
    if axis_name is not None:
        # Only per-row sums cross devices: O(rows) numbers, never the logits.
        total = jax.lax.psum(total, axis_name)
    return total


# The rules below get their primal outputs from the custom functions
# themselves, so a second derivative goes through these rules again rather
# than through autodiff of the max, min and select inside `_Normalizer`
# (which would, for one, halve the tangent at a tied row maximum).


@functools.partial(jax.custom_jvp, nondiff_argnums=(3, 4, 5))
def _softmax(x, mask, temperature, axes, axis_name, precise):
    stats = _stats(x, mask, temperature, axes, axis_name, precise)
    return stats.softmax()


@_softmax.defjvp
def _softmax_jvp(axes, axis_name, precise, primals, tangents):
    x, mask, temperature = primals
    x_dot, _, temperature_dot = tangents
    probs = _softmax(x, mask, temperature, axes, axis_name, precise)
    z_dot = _scaled_tangent(
        x, temperature, x_dot, temperature_dot, axes, axis_name
    )
    mean = _row_sum(probs * z_dot, axes, axis_name)
    return probs, probs * (z_dot - mean)


@functools.partial(jax.custom_jvp, nondiff_argnums=(3, 4))
def _log_softmax(x, mask, temperature, axes, axis_name):
    stats = _stats(x, mask, temperature, axes, axis_name)
    return stats.log_softmax()


@_log_softmax.defjvp
def _log_softmax_jvp(axes, axis_name, primals, tangents):
    x, mask, temperature = primals
    x_dot, _, temperature_dot = tangents
    out = _log_softmax(x, mask, temperature, axes, axis_name)
    probs = jnp.exp(out)
    # `keep` (0 for an empty row) only needs the row maximum, which XLA
    # shares with the call above.
    keep = _stats(x, mask, temperature, axes, axis_name).keep
    z_dot = _scaled_tangent(
        x, temperature, x_dot, temperature_dot, axes, axis_name
    )
    # Masked entries and empty rows are constant -inf: tangent 0. The row
    # factor is a product, not a select, to keep one fused kernel.
    out_dot = (z_dot - _row_sum(probs * z_dot, axes, axis_name)) * keep
    if mask is not None:
        out_dot = jnp.where(mask, out_dot, 0)
    return out, out_dot


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _logsumexp(x, mask, axes, axis_name):
    return _Normalizer(x, mask, axes, axis_name).logsumexp()


@_logsumexp.defjvp
def _logsumexp_jvp(axes, axis_name, primals, tangents):
    x, mask = primals
    x_dot, _ = tangents
    out = _logsumexp(x, mask, axes, axis_name)
    probs = _softmax(x, mask, None, axes, axis_name, True)
    return out, _row_sum(probs * x_dot, axes, axis_name)


def _like(temperature, x):
    """The temperature in x's compute dtype (None stays None)."""
    if temperature is None:
        return None
    return temperature.astype(compute_dtype(x.dtype))


def _prepare(x, axis, where, temperature, name, axis_name=None):
    """Validates the common arguments at trace time."""
    _checks.check_axis_name(axis_name, name)
    x = _checks.as_float_array(x, name)
    axes = _checks.canonical_axes(axis, x.ndim, name)
    mask = _checks.broadcast_mask(where, x.shape, name)
    temperature = _prepare_temperature(temperature, x.shape, axes, name)
    return x, axes, mask, temperature


def _prepare_temperature(temperature, shape, axes, name):
    """None for the plain T = 1; else an array of the keepdims shape."""
    if isinstance(temperature, (int, float)) and temperature == 1:
        return None
    _checks.check_positive(temperature, "temperature", name)
    temperature = _checks.as_float_array(temperature, name, "temperature")
    reduced = tuple(1 if i in axes else n for i, n in enumerate(shape))
    try:
        ok = jnp.broadcast_shapes(temperature.shape, reduced) == reduced
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(
            f"jax_act.{name}: `temperature` of shape {temperature.shape} does "
            f"not broadcast against the reduced shape {reduced} (the input "
            "shape with the softmax axes set to 1)."
        )
    return jnp.broadcast_to(temperature, reduced)


def softmax(
    x: ArrayLike,
    axis: Axis = -1,
    where: ArrayLike | None = None,
    *,
    temperature: ArrayLike = 1.0,
    axis_name: AxisName = None,
) -> jax.Array:
    r"""Softmax: exponentials normalised to sum to one along `axis`.

    A drop-in for `jax.nn.softmax` that is more accurate, never NaN for
    finite or fully masked input, and takes a differentiable temperature.

    .. math::

        \mathrm{softmax}(x)_i = \frac{\exp(x_i / T)}{\sum_j \exp(x_j / T)}

    where the sum runs over the entries of `axis` left in by `where`, and
    :math:`T` is the temperature.

    Numerics:
        The maximum of each row is subtracted before exponentiating, so any
        finite magnitudes work (rows mixing 1e30 and -1e30 included). The
        rounding error of x - max is recovered exactly (TwoSum) and carried
        into the exponential, which is where `jax.nn.softmax` loses up to
        64 ULP. bfloat16 and float16 are computed in float32 and rounded
        once (without the TwoSum, whose correction is far below their
        precision). Masked entries are 0. A row with no unmasked entry, or
        only -inf entries, is all zeros with zero gradient. A row holding +inf
        shares its mass equally among its +inf entries (the limit as they
        grow), with finite gradients. A NaN makes its row NaN. The
        derivative is a hand-written rule, y * (dz - <y, dz>), with
        dz = (dx - z dT) / T.

    Args:
        x: input array, any shape; integer and bool inputs become floats.
        axis: int, tuple of ints or None (all axes) to normalise over.
        where: boolean mask broadcastable to `x`; False leaves an entry out.
        temperature: positive scalar or array broadcastable against the
            input shape with `axis` set to 1. Default 1.
        axis_name: mesh axis name (or tuple of names) across which the
            `axis` entries are split, inside `jax.shard_map`. Only per-row
            maxima and sums cross devices. None (default): not sharded.

    Returns:
        Array of `x`'s shape and floating dtype.

    Raises:
        TypeError: for complex or non-numeric `x`, or a non-boolean `where`.
        ValueError: for an axis out of range, a mask or temperature that
            does not broadcast, a concrete temperature <= 0, or an axis_name
            not bound by an enclosing `shard_map`.

    Examples:
        >>> import jax.numpy as jnp
        >>> import jax_act
        >>> jax_act.softmax(jnp.array([1.0, 2.0, 3.0]))
        Array([0.09003057, 0.24472848, 0.66524094], dtype=float32)
        >>> jax_act.softmax(jnp.array([-jnp.inf, -jnp.inf]))
        Array([0., 0.], dtype=float32)

    See Also:
        `jax.nn.softmax`, which has no temperature and gives NaN for a row
        of -inf entries.
    """
    x, axes, mask, temperature = _prepare(
        x, axis, where, temperature, "softmax", axis_name
    )
    precise = compute_dtype(x.dtype) == x.dtype
    out = _softmax(
        upcast(x), mask, _like(temperature, x), axes, axis_name, precise
    )
    return out.astype(x.dtype)


def log_softmax(
    x: ArrayLike,
    axis: Axis = -1,
    where: ArrayLike | None = None,
    *,
    temperature: ArrayLike = 1.0,
    axis_name: AxisName = None,
) -> jax.Array:
    r"""Log-softmax: the logarithm of :func:`softmax`, computed directly.

    .. math::

        \mathrm{log\_softmax}(x)_i = x_i / T - \log \sum_j \exp(x_j / T)

    with the sum over the unmasked entries of `axis` and :math:`T` the
    temperature.

    Numerics:
        Max-shifted, with the shift's rounding error added back exactly.
        The normaliser is log1p(sum of the non-maximal terms), so the
        largest entry of a confident row, -log(1 + tiny), keeps all its
        digits (`jax.nn.log_softmax` loses them). Halves are computed in
        float32 and rounded once. Masked entries and rows with no unmasked
        or finite entry are -inf, with zero gradient. +inf entries give
        -log(k) for the k entries at +inf and -inf elsewhere.

    Args:
        x: input array; integer and bool inputs become floats.
        axis: int, tuple of ints or None.
        where: boolean mask broadcastable to `x`.
        temperature: positive scalar or array broadcastable against the
            input shape with `axis` set to 1. Default 1.
        axis_name: mesh axis name (or tuple of names) across which the
            `axis` entries are split, inside `jax.shard_map`. Only per-row
            maxima and sums cross devices. None (default): not sharded.

    Returns:
        Array of `x`'s shape and floating dtype.

    Raises:
        TypeError: for complex or non-numeric `x`, or a non-boolean `where`.
        ValueError: for a bad axis, mask, temperature or axis_name.

    Examples:
        >>> import jax.numpy as jnp
        >>> import jax_act
        >>> jax_act.log_softmax(jnp.array([0.0, 30.0]))
        Array([-3.000000e+01, -9.357623e-14], dtype=float32)

    See Also:
        `jax.nn.log_softmax`, which returns exactly 0 for the second entry
        above.
    """
    x, axes, mask, temperature = _prepare(
        x, axis, where, temperature, "log_softmax", axis_name
    )
    out = _log_softmax(upcast(x), mask, _like(temperature, x), axes, axis_name)
    return out.astype(x.dtype)


def logsumexp(
    a: ArrayLike,
    axis: Axis = None,
    b: ArrayLike | None = None,
    keepdims: bool = False,
    return_sign: bool = False,
    where: ArrayLike | None = None,
    *,
    axis_name: AxisName = None,
) -> jax.Array:
    r"""Log of the sum of exponentials, log sum_i b_i exp(a_i), stably.

    Same signature as `jax.nn.logsumexp`.

    .. math::

        \mathrm{logsumexp}(a) = m + \log\Big(\sum_i b_i \exp(a_i - m)\Big),
        \quad m = \max_i a_i

    Numerics:
        Max-shifted: m + log(sum of exp(a - m)), the sum one reduction in
        the compute dtype, as in `jax.nn` (a second, log1p-style pass for
        the non-maximal terms cost XLA:CPU 2-3x). The sum's rounding, a
        few 2^-24 of it, becomes an absolute error of that size in the
        result: within an ULP or so wherever |result| >= 1, but a result
        near 0 can be off by tens or hundreds of ULPs (logsumexp of
        [0, -4 (x7)] is 0.12063205 in float32, exactly 0.12063184; 318
        ULPs at worst on the benchmark's rows with results in (0, 1), the
        same as jax.nn). log_softmax computes
        its normaliser with log1p of the non-maximal terms and keeps those
        digits. Halves are computed in float32 and rounded once, so float16
        over 128k classes does not overflow. Empty, fully masked or all
        -inf reductions give -inf with zero gradient; +inf gives +inf.
        Weights `b` are folded in as a + log(b): they must be >= 0 (a zero
        weight acts as a mask; a negative weight gives NaN).

    Args:
        a: input array; integer and bool inputs become floats.
        axis: int, tuple of ints or None (the default: all axes).
        b: optional non-negative weights broadcastable to `a`.
        keepdims: keep the reduced axes with size 1.
        return_sign: not supported (jax_act has no signed sums); must be
            False.
        where: boolean mask broadcastable to `a`.
        axis_name: mesh axis name (or tuple of names) across which the
            `axis` entries are split, inside `jax.shard_map`. Only per-row
            maxima and sums cross devices. None (default): not sharded.

    Returns:
        The reduced array, in `a`'s floating dtype.

    Raises:
        TypeError: for complex or non-numeric input.
        ValueError: for a bad axis, mask or axis_name.
        NotImplementedError: for `return_sign=True`.

    Examples:
        >>> import jax.numpy as jnp
        >>> import jax_act
        >>> jax_act.logsumexp(jnp.array([1000.0, 1000.0]))
        Array(1000.6932, dtype=float32)
    """
    if return_sign:
        raise NotImplementedError(
            "jax_act.logsumexp: return_sign=True is not supported; use "
            "jax.nn.logsumexp for signed sums."
        )
    a, axes, mask, _ = _prepare(a, axis, where, 1.0, "logsumexp", axis_name)
    if b is not None:
        b = _checks.as_float_array(b, "logsumexp", "b")
        a = a + jnp.log(b.astype(a.dtype))
    out = _logsumexp(upcast(a), mask, axes, axis_name).astype(a.dtype)
    return out if keepdims else jnp.squeeze(out, axis=axes)
