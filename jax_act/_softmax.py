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
from jax_act._numerics import compute_dtype, two_diff
from jax_act._typing import Axis

_NEG_INF = -jnp.inf


class _Normalizer:
    """Per-row statistics of a max-shifted exponential, with error terms.

    Attributes:
        shifted: z - max in working precision (-inf where masked).
        shift_error: the exact rounding error of `shifted` (0 where unusable).
        exp_shifted: exp(shifted), corrected by the rounding error.
        row_max: the finite shift used for each row (keepdims shape).
        rest: sum of exp(shifted) over the row minus one, computed without
            adding the one, so that log1p(rest) keeps every digit.
    """

    def __init__(self, z, mask, axes):
        # Masked entries take no part: give them exp(-inf) = 0.
        if mask is not None:
            z = jnp.where(mask, z, _NEG_INF)
        # `initial` lets an empty axis reduce to -inf instead of raising.
        row_max = jnp.max(z, axis=axes, keepdims=True, initial=_NEG_INF)
        # Only a row with nothing to normalise has maximum -inf (a NaN row
        # has maximum NaN, and stays NaN).
        empty = row_max == _NEG_INF

        # A row holding +inf is the limit of that entry growing: all mass
        # goes to the +inf entries, shared equally. Rewrite such rows as
        # 0 (for +inf) and -inf (for the rest), which has that softmax.
        has_pos_inf = row_max == jnp.inf
        z = jnp.where(has_pos_inf, jnp.where(z == jnp.inf, 0, _NEG_INF), z)

        # Shift by the row maximum so that exp cannot overflow. A row with
        # no finite maximum (all -inf or all masked) is shifted by 0, which
        # leaves its exponentials at exactly 0 rather than NaN.
        row_max = jnp.where(jnp.isfinite(row_max), row_max, 0)

        # exp(z - m) where z - m is rounded: exp multiplies a rounding error
        # e of the difference into a relative error e (about 64 ULP at
        # |z - m| ~ 30). TwoSum gives e exactly, and
        #     exp(d + e) = exp(d) (1 + e + O(e^2)),
        # so one multiply-add restores it. e is NaN where z is -inf (0 - 0
        # would be exact anyway): zero it there to keep exp(-inf) = 0.
        shifted, shift_error = two_diff(z, row_max)
        shift_error = jnp.where(jnp.isnan(shift_error), 0, shift_error)
        exp_plain = jnp.exp(shifted)
        exp_shifted = exp_plain + exp_plain * shift_error

        # sum = k + rest, k >= 1 the number of entries at the maximum. Adding
        # the ones last keeps the digits of a small rest for log1p.
        at_max = shifted == 0
        rest = jnp.sum(
            jnp.where(at_max, 0, exp_shifted), axis=axes, keepdims=True
        )
        count = jnp.sum(at_max, axis=axes, keepdims=True, dtype=z.dtype)
        rest = rest + jnp.maximum(count - 1, 0)

        self.shifted = shifted
        self.shift_error = shift_error
        self.exp_shifted = exp_shifted
        self.row_max = row_max
        self.rest = rest
        self.total = rest + jnp.minimum(count, 1)
        self.empty = empty
        self.has_pos_inf = has_pos_inf

    def softmax(self):
        # An empty row has total 0 and exp_shifted 0: divide by 1 instead.
        total = jnp.where(self.empty, 1, self.total)
        return self.exp_shifted / total

    def log_softmax(self):
        # log(total) = log1p(rest): exact for a confident row, where the
        # largest entry's value -log(1 + rest) is tiny.
        log_norm = jnp.log1p(self.rest)
        out = (self.shifted - log_norm) + self.shift_error
        return jnp.where(self.empty, _NEG_INF, out)

    def logsumexp(self):
        lse = self.row_max + jnp.log1p(self.rest)
        lse = jnp.where(self.has_pos_inf, jnp.inf, lse)
        return jnp.where(self.empty, _NEG_INF, lse)


def _scaled(x, temperature):
    """z = x / T in the compute dtype; T None means T = 1."""
    z = x.astype(compute_dtype(x.dtype))
    if temperature is not None:
        z = z / temperature.astype(z.dtype)
    return z


def _scaled_tangent(x, temperature, x_dot, temperature_dot, probs):
    """The tangent of z = x / T, zero wherever the entry carries no mass."""
    dtype = compute_dtype(x.dtype)
    z_dot = x_dot.astype(dtype)
    if temperature is not None:
        t = temperature.astype(dtype)
        z = x.astype(dtype) / t
        # dz = (dx - z dT) / T. z is +-inf at -inf entries and in +inf rows,
        # where the mass is 0 or does not depend on T; use 0 there so that
        # inf * 0 cannot turn the tangent into NaN.
        z = jnp.where(jnp.isfinite(z), z, 0)
        z_dot = (z_dot - z * temperature_dot.astype(dtype)) / t
    # Entries with no mass (masked or -inf) must not leak an arbitrary input
    # tangent (possibly inf) into the weighted sum below.
    # A NaN row keeps its NaN (probs == 0 is False there).
    return jnp.where(probs == 0, 0, z_dot)


def _mean_tangent(probs, z_dot, axes):
    return jnp.sum(probs * z_dot, axis=axes, keepdims=True)


@functools.partial(jax.custom_jvp, nondiff_argnums=(3,))
def _softmax(x, mask, temperature, axes):
    stats = _Normalizer(_scaled(x, temperature), mask, axes)
    return stats.softmax().astype(x.dtype)


@_softmax.defjvp
def _softmax_jvp(axes, primals, tangents):
    x, mask, temperature = primals
    x_dot, _, temperature_dot = tangents
    probs = _Normalizer(_scaled(x, temperature), mask, axes).softmax()
    z_dot = _scaled_tangent(x, temperature, x_dot, temperature_dot, probs)
    probs_dot = probs * (z_dot - _mean_tangent(probs, z_dot, axes))
    return probs.astype(x.dtype), probs_dot.astype(x.dtype)


@functools.partial(jax.custom_jvp, nondiff_argnums=(3,))
def _log_softmax(x, mask, temperature, axes):
    stats = _Normalizer(_scaled(x, temperature), mask, axes)
    return stats.log_softmax().astype(x.dtype)


@_log_softmax.defjvp
def _log_softmax_jvp(axes, primals, tangents):
    x, mask, temperature = primals
    x_dot, _, temperature_dot = tangents
    stats = _Normalizer(_scaled(x, temperature), mask, axes)
    probs = stats.softmax()
    out = stats.log_softmax()
    z_dot = _scaled_tangent(x, temperature, x_dot, temperature_dot, probs)
    # Entries at -inf stay at -inf whatever the input does: tangent 0.
    out_dot = jnp.where(
        out > _NEG_INF, z_dot - _mean_tangent(probs, z_dot, axes), 0
    )
    return out.astype(x.dtype), out_dot.astype(x.dtype)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _logsumexp(x, mask, axes):
    stats = _Normalizer(_scaled(x, None), mask, axes)
    return stats.logsumexp().astype(x.dtype)


@_logsumexp.defjvp
def _logsumexp_jvp(axes, primals, tangents):
    x, mask = primals
    x_dot, _ = tangents
    stats = _Normalizer(_scaled(x, None), mask, axes)
    probs = stats.softmax()
    z_dot = _scaled_tangent(x, None, x_dot, None, probs)
    out_dot = _mean_tangent(probs, z_dot, axes)
    return stats.logsumexp().astype(x.dtype), out_dot.astype(x.dtype)


def _prepare(x, axis, where, temperature, name):
    """Validates the common arguments at trace time."""
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
        once. Masked entries are 0. A row with no unmasked entry, or only
        -inf entries, is all zeros with zero gradient. A row holding +inf
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

    Returns:
        Array of `x`'s shape and floating dtype.

    Raises:
        TypeError: for complex or non-numeric `x`, or a non-boolean `where`.
        ValueError: for an axis out of range, a mask or temperature that
            does not broadcast, or a concrete temperature <= 0.

    Examples:
        >>> import jax.numpy as jnp
        >>> import jax_act
        >>> jax_act.softmax(jnp.array([1.0, 2.0, 3.0]))
        Array([0.09003057, 0.24472848, 0.66524094], dtype=float32)
        >>> jax_act.softmax(jnp.array([-jnp.inf, -jnp.inf]))
        Array([0., 0.], dtype=float32)

    See also:
        `jax.nn.softmax`, which has no temperature and gives NaN for a row
        of -inf entries.
    """
    x, axes, mask, temperature = _prepare(x, axis, where, temperature, "softmax")
    return _softmax(x, mask, temperature, axes)


def log_softmax(
    x: ArrayLike,
    axis: Axis = -1,
    where: ArrayLike | None = None,
    *,
    temperature: ArrayLike = 1.0,
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

    Returns:
        Array of `x`'s shape and floating dtype.

    Raises:
        TypeError: for complex or non-numeric `x`, or a non-boolean `where`.
        ValueError: for a bad axis, mask or temperature.

    Examples:
        >>> import jax.numpy as jnp
        >>> import jax_act
        >>> jax_act.log_softmax(jnp.array([0.0, 30.0]))
        Array([-3.0000000e+01, -9.3576236e-14], dtype=float32)

    See also:
        `jax.nn.log_softmax`, which returns exactly 0 for the second entry
        above.
    """
    x, axes, mask, temperature = _prepare(
        x, axis, where, temperature, "log_softmax"
    )
    return _log_softmax(x, mask, temperature, axes)


def logsumexp(
    a: ArrayLike,
    axis: Axis = None,
    b: ArrayLike | None = None,
    keepdims: bool = False,
    return_sign: bool = False,
    where: ArrayLike | None = None,
) -> jax.Array:
    r"""Log of the sum of exponentials, log sum_i b_i exp(a_i), stably.

    Same signature as `jax.nn.logsumexp`.

    .. math::

        \mathrm{logsumexp}(a) = m + \log\Big(\sum_i b_i \exp(a_i - m)\Big),
        \quad m = \max_i a_i

    Numerics:
        Max-shifted with the shift's rounding error restored, and the sum
        split as 1 + rest so that log1p(rest) is exact for a dominant
        entry. Halves are computed in float32 and rounded once, so float16
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

    Returns:
        The reduced array, in `a`'s floating dtype.

    Raises:
        TypeError: for complex or non-numeric input.
        ValueError: for a bad axis or mask.
        NotImplementedError: for `return_sign=True`.

    Examples:
        >>> import jax.numpy as jnp
        >>> import jax_act
        >>> jax_act.logsumexp(jnp.array([1000.0, 1000.0]))
        Array(1000.6931, dtype=float32)
    """
    if return_sign:
        raise NotImplementedError(
            "jax_act.logsumexp: return_sign=True is not supported; use "
            "jax.nn.logsumexp for signed sums."
        )
    a, axes, mask, _ = _prepare(a, axis, where, 1.0, "logsumexp")
    if b is not None:
        b = _checks.as_float_array(b, "logsumexp", "b")
        a = a + jnp.log(b.astype(a.dtype))
    out = _logsumexp(a, mask, axes)
    return out if keepdims else jnp.squeeze(out, axis=axes)
