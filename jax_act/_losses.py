r"""Softmax cross-entropy, with probability labels or integer labels.

Both losses are per example (no reduction) and share one derivative rule.
For logits :math:`z` (after the optional soft cap), smoothed target
distribution :math:`q` and :math:`\ell = \mathrm{logsumexp}(z)`,

.. math::

    L = \sum_j q_j (\ell - z_j) + \lambda \ell^2, \qquad
    \frac{\partial L}{\partial z_j}
        = \Big(\sum_k q_k + 2 \lambda \ell\Big) p_j - q_j,

with :math:`p = \mathrm{softmax}(z)`. The rule is written by hand, as a
custom JVP: autodiff of the forward formula would build the full
log-softmax tangent and scatter a one-hot, extra passes over the logits.
"""

import functools
import numbers

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero
from jax.typing import ArrayLike

from jax_act import _checks, _softmax
from jax_act._numerics import compute_dtype
from jax_act._typing import Axis, AxisName

# ---------------------------------------------------------------------------
# Hyperparameters: validated in Python at trace time, then static.
# ---------------------------------------------------------------------------


def _static_float(value, what, name):
    """A concrete Python float, or a clear error for a traced value."""
    if isinstance(value, bool) or not isinstance(
        value, numbers.Real | np.ndarray | jax.Array
    ):
        raise TypeError(
            f"jax_act.{name}: `{what}` must be a real number; got {value!r}."
        )
    try:
        value = float(value)
    except (jax.errors.ConcretizationTypeError, TypeError) as err:
        raise TypeError(
            f"jax_act.{name}: `{what}` must be a concrete number known at "
            "trace time (a Python float), not a traced array."
        ) from err
    return value


def check_hyperparameters(label_smoothing, z_loss, logit_softcap, name):
    """Validates the keyword-only extras; returns them as Python floats.

    Raises:
        TypeError: for a non-number or a traced value.
        ValueError: for label_smoothing outside [0, 1), a negative or
            non-finite z_loss, or a soft cap that is not positive.
    """
    smoothing = _static_float(label_smoothing, "label_smoothing", name)
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(
            f"jax_act.{name}: `label_smoothing` must be in [0, 1); got "
            f"{label_smoothing!r}. 0 means no smoothing; 1 would discard "
            "the labels."
        )
    z_coef = _static_float(z_loss, "z_loss", name)
    if not (np.isfinite(z_coef) and z_coef >= 0.0):
        raise ValueError(
            f"jax_act.{name}: `z_loss` must be a finite number >= 0; got "
            f"{z_loss!r}."
        )
    cap = None
    if logit_softcap is not None:
        cap = _static_float(logit_softcap, "logit_softcap", name)
        if not (np.isfinite(cap) and cap > 0.0):
            raise ValueError(
                f"jax_act.{name}: `logit_softcap` must be None or a finite "
                f"number > 0; got {logit_softcap!r}."
            )
    return smoothing, z_coef, cap


def check_ignore_index(ignore_index, name):
    """None, or a Python int: the label value whose examples are skipped."""
    if ignore_index is None:
        return None
    if isinstance(ignore_index, bool) or not isinstance(
        ignore_index, numbers.Integral | np.integer
    ):
        raise TypeError(
            f"jax_act.{name}: `ignore_index` must be None or an int; got "
            f"{ignore_index!r}."
        )
    return int(ignore_index)


def check_integer_labels(labels, shape, name):
    """An integer array of the given shape, or a clear error.

    Raises:
        TypeError: if `labels` is not an integer array (bool included).
        ValueError: if its shape is not `shape`.
    """
    try:
        dtype = jnp.result_type(labels)
    except TypeError as err:
        raise TypeError(
            f"jax_act.{name}: `labels` of type {type(labels).__name__} is "
            "not an array; expected integer class indices."
        ) from err
    if not jnp.issubdtype(dtype, jnp.integer):
        raise TypeError(
            f"jax_act.{name}: `labels` must hold integer class indices; got "
            f"dtype {dtype}. For one-hot or probability labels use "
            "softmax_cross_entropy."
        )
    labels = jnp.asarray(labels)
    if labels.shape != tuple(shape):
        raise ValueError(
            f"jax_act.{name}: `labels` has shape {labels.shape}, expected "
            f"{tuple(shape)}: one class index per example (the logits' "
            "shape without the class axes)."
        )
    return labels


# ---------------------------------------------------------------------------
# Pieces shared with the fused loss.
# ---------------------------------------------------------------------------


def softcap(x, cap):
    """Returns cap * tanh(x / cap) (x itself for cap None)."""
    if cap is None:
        return x
    return cap * jnp.tanh(x / cap)


def softcap_slope(x, cap):
    """Returns d/dx cap * tanh(x / cap) = 1 - tanh^2, as (1 - t)(1 + t).

    The factored form keeps the digits of the small slope near |t| = 1,
    where 1 - t * t cancels; at x = +-inf the slope is exactly 0.
    """
    t = jnp.tanh(x / cap)
    return (1 - t) * (1 + t)


def finite_shift(row_max):
    """The row maximum clamped to finite values: the shift of exp(z - m).

    A row of -inf (or of nothing) is shifted by the most negative number,
    so its exponentials are exp(-inf) = 0, not NaN; a row holding +inf by
    the largest number, at which its +inf entries (clamped there) get
    exp(0) = 1 each: the limit as they grow. NaN stays NaN.
    """
    big = jnp.finfo(row_max.dtype).max
    # Written with max and negation only: XLA:CPU turns min(max(...)) into
    # a clamp, which its fused kernels do not accept.
    return -jnp.maximum(-jnp.maximum(row_max, -big), -big)


def z_loss_slope(z_loss, lse, scale):
    """Returns scale * 2 lambda lse, clamped to finite values.

    d(lambda lse^2)/dz_j = 2 lambda lse p_j. The clamp keeps p = 0 entries
    at 0 (not 0 * inf = NaN) in a row whose lse is -inf (all -inf logits)
    or +inf (a +inf logit).
    """
    big = jnp.finfo(lse.dtype).max
    lse = jnp.clip(lse, -big, big)
    return scale * jnp.clip((2 * z_loss) * lse, -big, big)


def row_status(labels, num_classes, count, ignore_index):
    """Per-example booleans: skipped (0 loss, 0 grad) and invalid (NaN).

    An example is skipped when its label is `ignore_index` or when no class
    of its row is left in the softmax (count 0). Otherwise a label outside
    [0, num_classes) is invalid.
    """
    skipped = count == 0
    if ignore_index is not None:
        skipped = skipped | (labels == ignore_index)
    out_of_range = (labels < 0) | (labels >= num_classes)
    return skipped, out_of_range & ~skipped


def finish(value, skipped, invalid):
    """Zeros skipped examples and poisons invalid ones with NaN."""
    value = jnp.where(invalid, jnp.nan, value)
    return jnp.where(skipped, 0, value)


class ClassAxis:
    """The class axis (last), whole on this device or split across devices.

    With `axis_name` set, this runs inside `shard_map` and holds one slice
    of the classes, in mesh order: device i of the mesh axis has the
    global classes [i * width, (i + 1) * width). The per-row reductions
    (maximum, sums, the label's entry) then combine across devices with
    collectives of one number per row; the logits never move. Without it,
    every method is the plain reduction.
    """

    def __init__(self, width, axis_name=None):
        self.width = width
        self.axis_name = axis_name
        self.num_classes = width
        self.offset = 0
        if axis_name is not None:
            self.num_classes = width * jax.lax.axis_size(axis_name)
            self.offset = jax.lax.axis_index(axis_name) * width

    @property
    def sharded(self):
        return self.axis_name is not None

    def max(self, v):
        """Row maximum over every class, keepdims."""
        row_max = jnp.max(v, axis=-1, keepdims=True)
        if self.sharded:
            row_max = jax.lax.pmax(row_max, self.axis_name)
        return row_max

    def combine(self, row_values):
        """Sums per-row values over the devices (identity unsharded)."""
        if self.sharded:
            return jax.lax.psum(row_values, self.axis_name)
        return row_values

    def sum(self, v, dtype=None):
        """Row sum over every class, keepdims."""
        return self.combine(jnp.sum(v, axis=-1, keepdims=True, dtype=dtype))

    def count(self, mask, shape):
        """Number of classes left in each row's softmax, keepdims."""
        if mask is None:
            return jnp.full((*shape[:-1], 1), self.num_classes, jnp.int32)
        return self.sum(mask, dtype=jnp.int32)

    def locate(self, index):
        """A global class index as (local index clipped in range, owned).

        `owned` says whether this device holds the class; the clipped
        index is safe to gather with either way (read it where owned).
        """
        local = index - self.offset
        owned = (local >= 0) & (local < self.width)
        return jnp.clip(local, 0, max(self.width - 1, 0)), owned

    def owned_only(self, values, owned):
        """Per-row values where this device holds the index, else 0."""
        if not self.sharded:
            return values
        return jnp.where(owned, values, jnp.zeros((), values.dtype))

    def pick(self, v, local, owned):
        """v[..., index] for one global index per row, keepdims."""
        picked = self.owned_only(jnp.take_along_axis(v, local, axis=-1), owned)
        if picked.dtype == jnp.bool_:
            return self.combine(picked.astype(jnp.int32)) > 0
        return self.combine(picked)

    def argmax(self, v):
        """The row's argmax as (local index, owned), keepdims.

        The first column holding the row's maximum, found as the least
        index among the columns equal to it: a max and a min reduction,
        which XLA:CPU vectorises, where jnp.argmax's (value, index)
        reduction ran about 10x slower than the whole loss. Sharded, the
        first device in mesh order that holds the maximum owns it, so
        exactly one device does (ties included). A NaN row has no
        maximum; its index is clipped in range, and its loss is NaN.
        """
        local_max = jnp.max(v, axis=-1, keepdims=True)
        top = local_max
        if self.sharded:
            top = jax.lax.pmax(local_max, self.axis_name)
        cols = jax.lax.broadcasted_iota(jnp.int32, v.shape, v.ndim - 1)
        first = jnp.min(
            jnp.where(v == top, cols, self.width), axis=-1, keepdims=True
        )
        local = jnp.minimum(first, max(self.width - 1, 0))
        if not self.sharded:
            return local, True
        me = jax.lax.axis_index(self.axis_name)
        nobody = jnp.iinfo(me.dtype).max
        holder = jnp.where(local_max == top, me, nobody)
        return local, jax.lax.pmin(holder, self.axis_name) == me

    def away(self, local, owned):
        """The local index, or one past the slice where not owned."""
        if not self.sharded:
            return local
        return jnp.where(owned, local, self.width)


def _varying_axes(array):
    """The mesh axes a value varies over inside `shard_map` (else none)."""
    aval = jax.typeof(array)
    manual = getattr(aval, "manual_axis_type", None)
    if manual is not None:  # jax >= 0.10
        return set(manual.varying)
    return set(getattr(aval, "vma", ()))  # earlier releases


def varying_like(init, *arrays):
    """The scan's initial carry, typed as varying where its inputs vary.

    Inside `shard_map`, JAX types each value by the mesh axes it varies
    over, and a scan's carry must keep its type. The carry soon depends on
    the (split) weight, so the zeros it starts from are cast to vary over
    the same mesh axes as the inputs. Outside `shard_map` nothing varies.
    """
    axes = set()
    for array in arrays:
        if array is not None:
            axes |= _varying_axes(array)
    if not axes:
        return init
    axes = tuple(axes)
    if hasattr(jax.lax, "pcast"):

        def cast(v):
            return jax.lax.pcast(v, axes, to="varying")

    else:  # jax 0.6 and 0.7 spell it pvary

        def cast(v):
            return jax.lax.pvary(v, axes)

    return jax.tree.map(cast, init)


# ---------------------------------------------------------------------------
# Integer labels. Arrays here are already validated, class axis last.
#
# How this is laid out for speed (XLA:CPU, measured): the costly parts are
# exp and fresh full-size buffers. So exp runs once per logit: the array
# E = exp(z - max) is written once, where the gradient will live, summed,
# then scaled in place into the gradient. The label enters only through a
# gather and a scatter of one number per example, and the special rows
# through per-example factors: a full-size one-hot or `where` would add
# passes over the logits.
# ---------------------------------------------------------------------------


def _transform(x, mask, cap):
    """z: softcapped, +inf lowered to the largest number, -inf if masked."""
    z = softcap(x.astype(compute_dtype(x.dtype)), cap)
    if cap is None:
        z = jnp.minimum(z, jnp.finfo(z.dtype).max)
    if mask is not None:
        z = jnp.where(mask, z, -jnp.inf)
    return z


def linear_logits(h, w, b, dtype):
    """Returns h [N, D] @ w [D, C] (+ b [C]), accumulated in `dtype`.

    The logits of the fused output-layer losses, for one chunk of classes
    or one block of examples.
    """
    logits = jax.lax.dot_general(
        h, w, (((1,), (0,)), ((), ())), preferred_element_type=dtype
    )
    if b is not None:
        logits = logits + b.astype(dtype)[None, :]
    return logits


def scatter_at(values, index, new, add=False):
    """values[..., index] = new (or += new with `add`), one entry per row.

    An index past the end of the row (a class another device holds) is
    dropped.
    """
    flat = values.reshape(-1, values.shape[-1])
    at = flat.at[jnp.arange(flat.shape[0]), index.reshape(-1)]
    new = jnp.broadcast_to(new, index.shape).reshape(-1)
    flat = at.add(new, mode="drop") if add else at.set(new, mode="drop")
    return flat.reshape(values.shape)


def _sum_off_label(exps, index, in_place):
    """Sum of exps over each row, leaving out the label's entry.

    Returns (sum, exps with the label's entry zeroed, or None). With
    `in_place`, the entry is zeroed by a scatter into the array the
    gradient reuses. Without, a 0/1 factor |j - y| clipped to 1 drops it
    inside the sum, which keeps a loss-only call free of full-size
    buffers (the float iota is exact up to 2^24 classes).
    """
    num_classes = exps.shape[-1]
    if in_place or num_classes > 2**24:
        exps = scatter_at(exps, index, 0)
        return jnp.sum(exps, axis=-1, keepdims=True), exps
    cols = jax.lax.broadcasted_iota(exps.dtype, exps.shape, exps.ndim - 1)
    off = jnp.minimum(jnp.abs(cols - index.astype(exps.dtype)), 1)
    return jnp.sum(exps * off, axis=-1, keepdims=True), None


def _normaliser(x, mask, cap, pivot, classes, in_place):
    """Row statistics of softmax(z), with one entry per row, the pivot, apart.

    The pivot is the label (integer labels) or the row's argmax
    (probability labels). total = rest + exp_pivot, rest summing every
    other entry, and log(total) = log1p(rest + (exp_pivot - 1)): when the
    pivot holds the maximum, exp_pivot is 1 and the log keeps every digit
    of a small rest, where log of the rounded 1 + rest keeps none below
    6e-8. This is the log1p normaliser of jax_act.log_softmax, with the
    entry at the maximum found by index rather than by comparing values
    (XLA:CPU may round a recomputed tanh differently in two kernels).
    `pivot` is (local index, owned) from `classes.locate`: on a sharded
    class axis one device holds the pivot, and the row sums and the
    pivot's logit cross devices as one number per row.
    """
    local, owned = pivot
    dtype = compute_dtype(x.dtype)
    # Row maximum of z. tanh is increasing, so the maximum of the capped
    # logits is the cap of the maximum: the pass reads the raw logits.
    raw = x.astype(dtype)
    if mask is not None:
        raw = jnp.where(mask, raw, -jnp.inf)
    row_max = softcap(classes.max(raw), cap)
    shift = finite_shift(row_max)

    # exp(z - shift), in [0, 1], once per logit.
    exps = jnp.exp(_transform(x, mask, cap) - shift)

    # The pivot's term, from its gathered logit.
    x_pivot = classes.pick(x, local, owned)
    mask_pivot = None
    if mask is not None:
        mask_pivot = classes.pick(mask, local, owned)
    z_pivot = _transform(x_pivot, mask_pivot, cap)
    exp_pivot = jnp.exp(z_pivot - shift)

    rest, exps_rest = _sum_off_label(exps, classes.away(local, owned), in_place)
    rest = classes.combine(rest)
    total = rest + exp_pivot
    log_total = jnp.log1p(rest + (exp_pivot - 1))
    # logsumexp, with the conventions of jax_act.logsumexp: -inf for an
    # empty row, +inf for a row holding +inf.
    lse = jnp.where(row_max == jnp.inf, jnp.inf, shift + log_total)
    return dict(
        row_max=row_max,
        shift=shift,
        exps=exps,
        exps_rest=exps_rest,
        x_pivot=x_pivot,
        mask_pivot=mask_pivot,
        z_pivot=z_pivot,
        exp_pivot=exp_pivot,
        total=total,
        log_total=log_total,
        lse=lse,
    )


def integer_core(x, labels, mask, hyper, in_place):
    """The loss (keepdims) and what the gradient needs, as a dict."""
    smoothing, ignore_index, z_loss, cap, axis_name = hyper
    dtype = compute_dtype(x.dtype)
    classes = ClassAxis(x.shape[-1], axis_name)
    count = classes.count(mask, x.shape)
    labels = labels[..., None]
    skipped, invalid = row_status(
        labels, classes.num_classes, count, ignore_index
    )
    pivot = classes.locate(labels)
    core = _normaliser(x, mask, cap, pivot, classes, in_place)
    shift, log_total = core["shift"], core["log_total"]

    # -log p_y = log(total) - (z_y - shift). A label on a masked class
    # reads z_y = -inf: +inf.
    loss = log_total - (core["z_pivot"] - shift)

    if smoothing:
        # The smoothed target puts smoothing / K on each of the K classes
        # left in; its part is the mean of -log p_j = log(total) - (z_j -
        # shift) over them: non-negative terms, so nothing cancels.
        below = _transform(x, mask, cap) - shift
        if mask is not None:
            below = jnp.where(mask, below, 0)
        count_f = jnp.maximum(count, 1).astype(dtype)
        mean_below = classes.sum(below) / count_f
        loss = (1 - smoothing) * loss + smoothing * (log_total - mean_below)

    # A row of -inf logits (or with every class masked) has nothing to
    # normalise: +inf, where the formula gives -inf - (-inf) = NaN. In a
    # row holding +inf, a label off the +inf entries has probability 0
    # (the formula, with +inf lowered to the largest number, gives that
    # number instead of +inf).
    row_max = core["row_max"]
    zero_prob = row_max == -jnp.inf
    if cap is None:
        label_inf = core["x_pivot"].astype(dtype) == jnp.inf
        zero_prob = zero_prob | ((row_max == jnp.inf) & ~label_inf)
    loss = jnp.where(zero_prob, jnp.inf, loss)
    if z_loss:
        loss = loss + z_loss * jnp.square(core["lse"])
    loss = finish(loss, skipped, invalid)
    core.update(
        loss=loss,
        count=count,
        pivot=pivot,
        classes=classes,
        skipped=skipped,
        invalid=invalid,
    )
    return core


def integer_gradient(x, mask, hyper, core):
    """dL/dx as a dense part and the weight of the label's entry.

    dL/dz = c p - a / K - (1 - a) onehot(y) with c = 1 + 2 lambda lse and
    p = exps / total. The label's entry of p is left out of the dense part
    (its exps entry is zeroed) and added to the label weight instead, so
    the one-hot is never built: forward mode reads it with a gather,
    reverse mode writes it with a scatter-add.
    """
    smoothing, _, z_loss, cap, _ = hyper
    dtype = core["total"].dtype
    scale = finish(
        jnp.ones_like(core["total"]), core["skipped"], core["invalid"]
    )
    # An empty row has total 0 and exps 0: divide by 1 instead.
    total = jnp.where(core["total"] == 0, 1, core["total"])
    factor = scale / total
    z_factor = 0
    if z_loss:
        z_factor = z_loss_slope(z_loss, core["lse"], scale) / total

    dense = core["exps_rest"] * (factor + z_factor)
    target = (1 - smoothing) * scale
    if mask is not None:
        # A masked class takes no part, even when it is the label.
        target = target * core["mask_pivot"].astype(dtype)
    # p_y - target first: it cancels to a tiny number for a confident
    # example, and adding the z-loss part afterwards keeps that digit.
    exp_label = core["exp_pivot"]
    label_weight = (exp_label * factor - target) + exp_label * z_factor
    if smoothing:
        uniform = (smoothing * scale) / jnp.maximum(core["count"], 1).astype(
            dtype
        )
        uniform_full = uniform
        if mask is not None:
            uniform_full = uniform * mask.astype(dtype)
        # Every class left in gets -a / K, the label included: its entry
        # of `dense` is -a / K alone.
        dense = dense - uniform_full
    if cap is not None:
        dense = dense * softcap_slope(x.astype(dtype), cap)
        label_weight = label_weight * softcap_slope(
            core["x_pivot"].astype(dtype), cap
        )
    return dense, label_weight


@functools.partial(jax.custom_jvp, nondiff_argnums=(3,))
def _integer_ce(x, labels, mask, hyper):
    core = integer_core(x, labels, mask, hyper, in_place=False)
    return core["loss"][..., 0].astype(x.dtype)


@_integer_ce.defjvp
def _integer_ce_jvp(hyper, primals, tangents):
    x, labels, mask = primals
    x_dot = tangents[0]
    core = integer_core(x, labels, mask, hyper, in_place=True)
    dense, label_weight = integer_gradient(x, mask, hyper, core)
    x_dot = x_dot.astype(dense.dtype)
    # <dL/dx, x_dot> = <dense, x_dot> + label_weight * x_dot[y]. Reverse
    # mode transposes the gather into a scatter-add of one number per row.
    local, owned = core["pivot"]
    picked = core["classes"].owned_only(
        jnp.take_along_axis(x_dot, local, axis=-1), owned
    )
    local_dot = jnp.sum(dense * x_dot, axis=-1, keepdims=True)
    loss_dot = core["classes"].combine(local_dot + label_weight * picked)
    loss_dot = loss_dot[..., 0]
    loss = core["loss"][..., 0]
    return loss.astype(x.dtype), loss_dot.astype(x.dtype)


# ---------------------------------------------------------------------------
# Probability labels.
# ---------------------------------------------------------------------------


def _dense_target(y, mask, count, smoothing):
    """The smoothed target (1 - a) y + a / K on the K classes left in.

    Mass of y on a masked class stays: it meets log p = -inf there and
    makes the loss +inf, the probability of that class being 0.
    """
    if not smoothing:
        return y
    uniform = smoothing / jnp.maximum(count, 1).astype(y.dtype)
    if mask is not None:
        uniform = uniform * mask.astype(y.dtype)
    return (1 - smoothing) * y + uniform


def _dense_core(x, y, mask, hyper):
    smoothing, z_loss, cap, axis_name = hyper
    classes = ClassAxis(x.shape[-1], axis_name)
    # The row's argmax is the pivot of the log1p normaliser.
    raw = x if mask is None else jnp.where(mask, x, -jnp.inf)
    pivot = classes.argmax(raw)
    core = _normaliser(x, mask, cap, pivot, classes, in_place=False)
    core["classes"] = classes
    count = classes.count(mask, x.shape)
    target = _dense_target(y, mask, count, smoothing)

    # -log p_j = log(total) - (z_j - shift): +inf on masked classes and
    # -inf logits, and in an empty row; 0 * inf is avoided below.
    z = _transform(x, mask, cap)
    neg_log_probs = core["log_total"] - (z - core["shift"])
    if cap is None:
        # In a row holding +inf, the finite entries have probability 0.
        holds_inf = core["row_max"] == jnp.inf
        neg_log_probs = jnp.where(
            holds_inf & (x.astype(z.dtype) != jnp.inf), jnp.inf, neg_log_probs
        )
    neg_log_probs = jnp.where(
        core["row_max"] == -jnp.inf, jnp.inf, neg_log_probs
    )

    # sum_j q_j (-log p_j), with classes of zero target left out so that
    # 0 * inf (a masked or -inf class nobody asked for) adds 0, not NaN.
    terms = jnp.where(target == 0, 0, target * neg_log_probs)
    loss = classes.sum(terms)
    if z_loss:
        loss = loss + z_loss * jnp.square(core["lse"])
    # A row with no class in the softmax contributes nothing (Optax's
    # meaning of a per-example `where`).
    skipped = count == 0
    loss = jnp.where(skipped, 0, loss)
    return core, count, neg_log_probs, skipped, loss


# The plain call (no mask, smoothing, z-loss, cap or sharding) is Optax's
# and the most common one. It has a fast path: -sum(q * log_softmax(z))
# over jax_act.log_softmax, which XLA:CPU fuses with the weighted sum into
# one pass, where the general path's guards (selects) cost a full-size
# buffer each, 7x Optax's time at (4096, 4096). The fast path is wrong
# in two rare cases, both of which leave a non-finite or huge loss: a zero
# label at a -inf logit (0 * -inf = NaN instead of 0) and a row holding
# +inf (log_softmax puts its finite entries at -finfo.max, not -inf). When
# any row's loss is non-finite or above _SUSPECT, the whole batch is
# recomputed by the general path instead (a lax.cond: both run under
# vmap, which turns it into a select).
_SUSPECT = 2.0**100


# (smoothing, z_loss, cap, axis_name) of the plain call.
_PLAIN = (0.0, 0.0, None, None)


def _is_plain(mask, hyper):
    return mask is None and hyper == _PLAIN


def _dense_loss(x, y, mask, hyper):
    """The per-example loss (keepdims), by the fastest valid path."""
    if not _is_plain(mask, hyper):
        return _dense_core(x, y, mask, hyper)[-1]
    z = x.astype(compute_dtype(x.dtype))
    fast = -jnp.sum(y * _softmax.log_softmax(z), axis=-1, keepdims=True)
    suspect = jnp.any(~(jnp.abs(fast) <= _SUSPECT))
    return jax.lax.cond(
        suspect, lambda: _dense_core(x, y, mask, hyper)[-1], lambda: fast
    )


@functools.partial(jax.custom_jvp, nondiff_argnums=(3,))
def _dense_ce(x, y, mask, hyper):
    return _dense_loss(x, y, mask, hyper)[..., 0].astype(x.dtype)


def _plain_dense_jvp(x, y, x_dot, y_dot):
    """The rule of _dense_ce_jvp for the plain call, from jax_act's softmax.

    Softmax and log_softmax already follow the conventions the general
    path spells out (+inf entries share the mass, an all -inf row has
    probabilities 0), so no guard is needed here.
    """
    z = x.astype(compute_dtype(x.dtype))
    dtype = z.dtype
    loss = _dense_loss(x, y, None, _PLAIN)
    loss_dot = jnp.zeros(loss.shape, dtype)
    if not isinstance(x_dot, SymbolicZero):
        # (sum_k q_k) p_j - q_j
        coef = jnp.sum(y, axis=-1, keepdims=True)
        grad = coef * _softmax.softmax(z) - y
        loss_dot = loss_dot + jnp.sum(
            grad * x_dot.astype(dtype), axis=-1, keepdims=True
        )
    if not isinstance(y_dot, SymbolicZero):
        # -log p_j, clamped to the largest finite number (see below).
        slope = jnp.minimum(-_softmax.log_softmax(z), jnp.finfo(dtype).max)
        loss_dot = loss_dot + jnp.sum(
            slope * y_dot.astype(dtype), axis=-1, keepdims=True
        )
    return loss[..., 0].astype(x.dtype), loss_dot[..., 0].astype(x.dtype)


def _dense_ce_jvp(hyper, primals, tangents):
    smoothing, z_loss, cap, _ = hyper
    x, y, mask = primals
    x_dot, y_dot, _ = tangents
    if _is_plain(mask, hyper):
        return _plain_dense_jvp(x, y, x_dot, y_dot)
    core, count, neg_log_probs, skipped, loss = _dense_core(x, y, mask, hyper)
    dtype = loss.dtype
    # This device's share of the row sums; combined across devices at the
    # end when the class axis is sharded.
    loss_dot = jnp.zeros(loss.shape, dtype)

    if not isinstance(x_dot, SymbolicZero):
        # d/dz_j sum_k q_k (lse - z_k) = (sum_k q_k) p_j - q_j, plus the
        # z-loss's 2 lambda lse p_j; 0 on masked classes and skipped rows.
        scale = jnp.where(skipped, 0, 1).astype(dtype)
        target = _dense_target(y, mask, count, smoothing)
        # An empty row has total 0 and exps 0: divide by 1 instead.
        total = jnp.where(core["total"] == 0, 1, core["total"])
        probs = core["exps"] / total
        coef = scale * core["classes"].sum(target)
        target = scale * target
        if mask is not None:
            target = jnp.where(mask, target, 0)
        grad = coef * probs - target
        if z_loss:
            # Added after p - q, which cancels for a confident example.
            grad = grad + z_loss_slope(z_loss, core["lse"], scale) * probs
        if cap is not None:
            grad = grad * softcap_slope(x.astype(dtype), cap)
        loss_dot = loss_dot + jnp.sum(
            grad * x_dot.astype(dtype), axis=-1, keepdims=True
        )

    if not isinstance(y_dot, SymbolicZero):
        # d/dy_j = -(1 - a) log p_j. That is +inf at a class of p = 0; it
        # is clamped to the largest finite number so that a zero label
        # tangent there gives 0 rather than 0 * inf = NaN. Masked classes
        # and skipped rows take no part: derivative 0.
        big = jnp.finfo(dtype).max
        slope = jnp.minimum((1 - smoothing) * neg_log_probs, big)
        if mask is not None:
            slope = jnp.where(mask, slope, 0)
        slope = jnp.where(skipped, 0, slope)
        loss_dot = loss_dot + jnp.sum(
            slope * y_dot.astype(dtype), axis=-1, keepdims=True
        )

    loss_dot = core["classes"].combine(loss_dot)[..., 0]
    return loss[..., 0].astype(x.dtype), loss_dot.astype(x.dtype)


_dense_ce.defjvp(_dense_ce_jvp, symbolic_zeros=True)


# ---------------------------------------------------------------------------
# Public functions.
# ---------------------------------------------------------------------------


def _classes_last(x, axes):
    """Moves `axes` to the end (in increasing order) and flattens them."""
    batch = [i for i in range(x.ndim) if i not in axes]
    if tuple(batch) + tuple(axes) != tuple(range(x.ndim)):
        x = jnp.transpose(x, batch + list(axes))
    if len(axes) != 1:
        x = x.reshape((*x.shape[: len(batch)], -1))
    return x


def _prepare_logits(logits, axis, where, name, axis_name):
    """Validates logits, axis and mask; returns them with classes last."""
    _checks.check_axis_name(axis_name, name)
    logits = _checks.as_float_array(logits, name, "logits")
    axes = _checks.canonical_axes(axis, logits.ndim, name)
    if axis_name is not None and len(axes) != 1:
        raise ValueError(
            f"jax_act.{name}: with axis_name, `axis` must be the one class "
            f"axis that is split across devices; got axes {axes}."
        )
    if where is not None:
        where = jnp.asarray(where)
        # Optax accepts a per-example mask (the batch shape): it leaves
        # whole examples out.
        if where.ndim == logits.ndim - len(axes) and len(axes):
            where = jnp.expand_dims(where, axes)
    mask = _checks.broadcast_mask(where, logits.shape, name)
    batch_shape = tuple(n for i, n in enumerate(logits.shape) if i not in axes)
    x = _classes_last(logits, axes)
    if mask is not None:
        mask = _classes_last(mask, axes)
    return logits, x, mask, axes, batch_shape


def softmax_cross_entropy(
    logits: ArrayLike,
    labels: ArrayLike,
    axis: Axis = -1,
    where: ArrayLike | None = None,
    *,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    logit_softcap: float | None = None,
    axis_name: AxisName = None,
) -> jax.Array:
    r"""Cross-entropy between softmax(logits) and probability labels.

    A drop-in for `optax.softmax_cross_entropy` (per-example losses, no
    reduction), with label smoothing, a z-loss and a logit soft cap.

    .. math::

        L = -\sum_j q_j \log \mathrm{softmax}(z)_j + \lambda\,
            \Big(\log \sum_j e^{z_j}\Big)^2, \quad
        q = (1 - a)\, y + \frac{a}{K}, \quad
        z = c \tanh(x / c)

    where :math:`x` are the logits, :math:`y` the labels, :math:`a` the
    label smoothing, :math:`K` the number of classes left in by `where`,
    :math:`\lambda` the z-loss coefficient and :math:`c` the soft cap (no
    cap: :math:`z = x`). The sums run over `axis`.

    Numerics:
        Max-shifted, so any finite logits work (rows mixing 1e30 and -1e30
        included), with the log1p normaliser of :func:`jax_act.log_softmax`:
        the row's argmax is summed apart, so a confident example keeps all
        digits of its tiny loss. exp(z - max) is computed once per logit,
        without log_softmax's TwoSum correction: that moves the loss by
        less than an ULP and added a third to the time on XLA:CPU. Halves are
        computed in float32 and rounded once. The gradient is a
        hand-written rule, (sum(q) + 2 lambda lse) softmax - q, times the
        cap's slope. A class with zero target adds exactly 0, even at a
        -inf logit or a masked class (Optax gives NaN for 0 * -inf).
        Positive target mass on a masked class or a -inf logit gives +inf
        (that class has probability 0; Optax silently drops masked classes
        from the sum). A row with every class masked gives loss 0 and
        gradient 0. A row of -inf logits gives +inf; in a row holding
        +inf, the +inf classes share the probability. A NaN logit makes its
        example NaN. The z-loss squares the log-normaliser, so it
        overflows to +inf for |logits| above about 1.8e19 (float32). The
        derivative with respect to the labels, -(1 - a) log p, is clamped
        to the largest finite number where p = 0, and is 0 on masked
        classes; the rule supports forward and reverse mode, to any order.

    Args:
        logits: [..., num_classes] unnormalised log-probabilities; integer
            and bool inputs become floats.
        labels: probabilities (or any non-negative weights) of the same
            shape as `logits`.
        axis: class axis or axes.
        where: boolean mask broadcastable to `logits`, or of the batch shape
            (one flag per example); False leaves a class out of the softmax.
        label_smoothing: a in [0, 1): mixes the labels with the uniform
            distribution over the classes left in.
        z_loss: lambda >= 0, weight of the squared log-normaliser (PaLM).
        logit_softcap: c > 0 or None: logits become c * tanh(logits / c)
            before the softmax (Gemma 2).
        axis_name: mesh axis name (or tuple of names) across which the
            class axis is split, inside `shard_map`: each device passes its
            slice of the classes (device i of the mesh axis holding the
            i-th equal slice) and gets every example's whole loss; only
            per-row statistics cross devices.

    Returns:
        Per-example losses: `logits`' shape without `axis`, in its dtype.

    Raises:
        TypeError: for complex logits or labels, a non-boolean `where`, or
            a hyperparameter that is not a concrete number.
        ValueError: for labels of another shape, a bad axis or mask,
            label_smoothing outside [0, 1), a negative z_loss, a soft cap
            <= 0, or an axis_name that no enclosing shard_map binds (or
            given with several class axes).

    Examples:
        >>> import jax.numpy as jnp
        >>> import jax_act
        >>> logits = jnp.array([[1.2, -0.8, -0.5], [0.9, -1.2, 1.1]])
        >>> labels = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
        >>> jax_act.softmax_cross_entropy(logits, labels)
        Array([0.2761297, 2.951799 ], dtype=float32)

    References:
        Szegedy et al., "Rethinking the Inception Architecture for Computer
        Vision", CVPR 2016, arXiv:1512.00567 (label smoothing). Chowdhery
        et al., "PaLM: Scaling Language Modeling with Pathways", 2022,
        arXiv:2204.02311 (z-loss). Gemma Team, "Gemma 2: Improving Open
        Language Models at a Practical Size", 2024, arXiv:2408.00118
        (logit soft-capping).

    See Also:
        `optax.softmax_cross_entropy`, which has none of the keyword
        extras, gives NaN for a zero label at a -inf logit and accepts
        labels that merely broadcast (here the shapes must be equal).
    """
    name = "softmax_cross_entropy"
    logits, x, mask, axes, _ = _prepare_logits(
        logits, axis, where, name, axis_name
    )
    labels = _checks.as_float_array(labels, name, "labels")
    if labels.shape != logits.shape:
        raise ValueError(
            f"jax_act.{name}: `labels` has shape {labels.shape} but `logits` "
            f"has shape {logits.shape}; they must be equal (one probability "
            "per class). For class indices use "
            "softmax_cross_entropy_with_integer_labels."
        )
    smoothing, z_coef, cap = check_hyperparameters(
        label_smoothing, z_loss, logit_softcap, name
    )
    y = _classes_last(labels.astype(compute_dtype(x.dtype)), axes)
    return _dense_ce(x, y, mask, (smoothing, z_coef, cap, axis_name))


def softmax_cross_entropy_with_integer_labels(
    logits: ArrayLike,
    labels: ArrayLike,
    axis: Axis = -1,
    where: ArrayLike | None = None,
    *,
    label_smoothing: float = 0.0,
    ignore_index: int | None = None,
    z_loss: float = 0.0,
    logit_softcap: float | None = None,
    axis_name: AxisName = None,
) -> jax.Array:
    r"""Cross-entropy between softmax(logits) and integer class labels.

    A drop-in for `optax.softmax_cross_entropy_with_integer_labels`
    (per-example losses, no reduction), with label smoothing (no one-hot is
    built), an ignored label value, a z-loss and a logit soft cap.

    .. math::

        L = -(1 - a) \log p_y - \frac{a}{K} \sum_j \log p_j
            + \lambda \Big(\log \sum_j e^{z_j}\Big)^2, \quad
        p = \mathrm{softmax}(z), \quad z = c \tanh(x / c)

    where :math:`y` is the label, :math:`a` the label smoothing, :math:`K`
    the number of classes left in by `where`, :math:`\lambda` the z-loss
    coefficient and :math:`c` the soft cap (no cap: :math:`z = x`).

    Numerics:
        -log p_y = log(total) - (z_y - max), where total sums exp(z - max)
        with the label's term apart and log(total) is a log1p: a confident
        example keeps all digits of its tiny loss (log of the rounded
        1 + rest keeps none below 6e-8), and any finite logits work. Each
        exp(z - max) is computed once, without log_softmax's TwoSum
        correction (under an ULP of the loss; it added a third to the
        time on XLA:CPU).
        Halves are computed in float32 and rounded once. The gradient is
        a hand-written rule, (1 + 2 lambda lse) softmax - q, times the
        cap's slope: the exponentials are stored once, in the gradient's
        buffer, summed, then scaled in place; the one-hot is a scatter of
        one number per example, never materialised. The rule supports
        forward and reverse mode, to any order.
        What each case returns, per example:

        * label == `ignore_index`: loss 0 and gradient 0 (the gradient
          is NaN only if that example's logits hold a NaN).
        * every class masked by `where`: loss 0 and gradient 0, whatever
          the label (a padding example).
        * any other label outside [0, num_classes): loss NaN and a NaN
          gradient row. It cannot raise inside `jit`; NaN makes the mistake
          visible (Optax wraps -1 to the last class and returns a finite,
          wrong value).
        * label on a masked class or on a -inf logit: loss +inf, gradient
          softmax - q (finite, 0 on masked classes).
        * a row of -inf logits: +inf. A NaN logit: NaN.

        The z-loss overflows to +inf for |logits| above about 1.8e19
        (float32).

    Args:
        logits: [..., num_classes] unnormalised log-probabilities; integer
            and bool inputs become floats.
        labels: integer class indices of shape `logits.shape` without
            `axis`. With several class axes, a label is the flat row-major
            index over those axes taken in increasing order.
        axis: class axis or axes.
        where: boolean mask broadcastable to `logits`, or of the batch shape
            (one flag per example); False leaves a class out of the softmax.
        label_smoothing: a in [0, 1): mixes the one-hot target with the
            uniform distribution over the classes left in.
        ignore_index: None or an int: examples with this label get loss 0
            and gradient 0 (PyTorch uses -100).
        z_loss: lambda >= 0, weight of the squared log-normaliser (PaLM).
        logit_softcap: c > 0 or None: logits become c * tanh(logits / c)
            before the softmax (Gemma 2).
        axis_name: mesh axis name (or tuple of names) across which the
            class axis is split, inside `shard_map`: each device passes its
            slice of the classes (device i of the mesh axis holding the
            i-th equal slice) and gets every example's whole loss; only
            per-row statistics cross devices. Labels are global class
            indices.

    Returns:
        Per-example losses: `logits`' shape without `axis`, in its dtype.

    Raises:
        TypeError: for complex logits, non-integer labels, a non-boolean
            `where`, or a hyperparameter that is not a concrete number.
        ValueError: for labels of the wrong shape, a bad axis or mask,
            label_smoothing outside [0, 1), a negative z_loss, a soft cap
            <= 0, or an axis_name that no enclosing shard_map binds (or
            given with several class axes).

    Examples:
        >>> import jax.numpy as jnp
        >>> import jax_act
        >>> logits = jnp.array([[1.2, -0.8, -0.5], [0.9, -1.2, 1.1]])
        >>> ce = jax_act.softmax_cross_entropy_with_integer_labels
        >>> ce(logits, jnp.array([0, 1]))
        Array([0.2761297, 2.951799 ], dtype=float32)
        >>> ce(logits, jnp.array([0, -100]), ignore_index=-100)
        Array([0.2761297, 0.       ], dtype=float32)
        >>> ce(logits, jnp.array([0, 3]))
        Array([0.2761297,       nan], dtype=float32)

    References:
        Szegedy et al., "Rethinking the Inception Architecture for Computer
        Vision", CVPR 2016, arXiv:1512.00567 (label smoothing). Chowdhery
        et al., "PaLM: Scaling Language Modeling with Pathways", 2022,
        arXiv:2204.02311 (z-loss). Gemma Team, "Gemma 2: Improving Open
        Language Models at a Practical Size", 2024, arXiv:2408.00118
        (logit soft-capping).

    See Also:
        `optax.softmax_cross_entropy_with_integer_labels`, which has none
        of the keyword extras and returns finite values for out-of-range
        labels. :func:`jax_act.linear_softmax_cross_entropy` computes the
        same loss from hidden states and an output matrix without ever
        holding the logits.
    """
    name = "softmax_cross_entropy_with_integer_labels"
    _, x, mask, _, batch_shape = _prepare_logits(
        logits, axis, where, name, axis_name
    )
    labels = check_integer_labels(labels, batch_shape, name)
    smoothing, z_coef, cap = check_hyperparameters(
        label_smoothing, z_loss, logit_softcap, name
    )
    ignore = check_ignore_index(ignore_index, name)
    if x.shape[-1] == 0:
        # No class at all: every row is empty, and contributes 0.
        return jnp.zeros(batch_shape, x.dtype)
    hyper = (smoothing, ignore, z_coef, cap, axis_name)
    return _integer_ce(x, labels, mask, hyper)
