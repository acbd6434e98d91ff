r"""A linear layer and softmax cross-entropy, fused so the logits never exist.

For hidden states :math:`h` [N, D], an output matrix :math:`W` [D, V] and
integer labels, the loss is the integer-label cross-entropy of
:math:`hW + b`. The V classes are visited in chunks of C columns: the
forward pass keeps a running (online) log-sum-exp per example, the
backward pass recomputes each chunk's logits and turns them straight into
that chunk's gradient. Memory holds an [N, C] block at a time, never the
[N, V] logits (1 GiB at N = 8192, V = 32768 in float32).
"""

import functools
import math
import numbers

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jax_act import _checks, _fused_reduced, _losses
from jax_act._numerics import compute_dtype
from jax_act._typing import AxisName

# About 8M logits (32 MiB in float32) per chunk by default: at N = 8192
# examples that is 1024 columns, whose matmuls (8192 x 1024 x 1024) still
# run at full speed, while the chunk buffers of the backward pass stay a
# small fraction of the [N, V] logits.
_CHUNK_ELEMENTS = 2**23
_MIN_CHUNK = 128
_MAX_CHUNK = 8192

# reduction=: per-example losses (the V-chunked path) or a mean or sum
# (the row-blocked path of _fused_reduced).
_REDUCTIONS = ("none", "mean", "sum")


def _default_chunk_size(num_rows, num_classes):
    """A power of two near _CHUNK_ELEMENTS / N, in [128, 8192], <= V."""
    target = _CHUNK_ELEMENTS // max(num_rows, 1)
    size = 2 ** max(0, math.floor(math.log2(max(target, 1))))
    size = min(max(size, _MIN_CHUNK), _MAX_CHUNK)
    return min(size, num_classes)


def _transform(logits, cap):
    """Soft cap, and +inf lowered to the largest number (see _losses)."""
    z = _losses.softcap(logits, cap)
    return jnp.minimum(z, jnp.finfo(z.dtype).max)


def _label_columns(labels, offset, width):
    """[N, width] booleans: is this column the example's label?"""
    cols = offset + jax.lax.broadcasted_iota(jnp.int32, (1, width), 1)
    return cols == labels[:, None]


def _slice(array, start, size, axis):
    if array is None:
        return None
    if isinstance(start, int):
        return jax.lax.slice_in_dim(array, start, start + size, axis=axis)
    return jax.lax.dynamic_slice_in_dim(array, start, size, axis=axis)


# ---------------------------------------------------------------------------
# Forward: an online log-sum-exp over the chunks.
#
# Per example the state is (shift, rest, z_label, below):
#   shift    the largest logit seen so far (finite),
#   rest     sum of exp(z_j - shift) over the columns seen, label excluded,
#   z_label  the label's logit once its chunk has been seen (0 before),
#   below    sum of (shift - z_j) over the columns seen (label smoothing).
# A new chunk with a larger maximum rescales rest by exp(old - new) and
# adds (new - old) per column seen to `below`: both stay sums of
# non-negative terms.
# ---------------------------------------------------------------------------


def _forward_chunk(state, h, w_chunk, b_chunk, labels, offset, hyper):
    smoothing, _, _, cap, dtype, _ = hyper
    shift, rest, z_label, below = state
    z = _transform(_losses.linear_logits(h, w_chunk, b_chunk, dtype), cap)
    width = z.shape[1]
    is_label = _label_columns(labels, offset, width)

    new_shift = jnp.maximum(
        shift, _losses.finite_shift(jnp.max(z, axis=1, initial=-jnp.inf))
    )
    exps = jnp.exp(z - new_shift[:, None])
    # The label's exponential is left out of `rest` and its logit kept
    # exactly (a sum with one nonzero term), for the log1p form below.
    exps = jnp.where(is_label, 0, exps)
    rest = rest * jnp.exp(shift - new_shift) + jnp.sum(exps, axis=1)
    z_label = z_label + jnp.sum(jnp.where(is_label, z, 0), axis=1)
    if smoothing:
        seen = offset
        below = (
            below
            + seen * (new_shift - shift)
            + jnp.sum(new_shift[:, None] - z, axis=1)
        )
    return new_shift, rest, z_label, below


def _update(array, chunk_values, start, axis):
    """Writes a chunk into `array` at `start` along `axis` (in place)."""
    return jax.lax.dynamic_update_slice_in_dim(
        array, chunk_values, start, axis=axis
    )


def _scan_chunks(step, init, num_classes, chunk):
    """Runs carry = step(carry, offset, width) over [0, V) by chunks.

    Full chunks go through `lax.scan` (dynamic offsets); a last partial
    chunk, when `chunk` does not divide V, runs once with its own width.
    """
    full = num_classes // chunk
    carry = init
    if full:

        def body(carry, index):
            return step(carry, index * chunk, chunk)

        carry, _ = jax.lax.scan(body, carry, jnp.arange(full))
    remainder = num_classes - full * chunk
    if remainder:
        carry, _ = step(carry, full * chunk, remainder)
    return carry, None


def _combine_devices(classes, state):
    """Merges the per-device states of a class axis split across devices.

    Each device scanned its own slice of the columns. The global shift is
    the largest of theirs; each `rest` is rescaled to it by exp(own -
    global), and each `below` gains (global - own) per column it saw. The
    label's logit was seen by one device (0 elsewhere): a sum.
    """
    shift, rest, z_label, below = state
    top = jax.lax.pmax(shift, classes.axis_name)
    rest = classes.combine(rest * jnp.exp(shift - top))
    z_label = classes.combine(z_label)
    below = classes.combine(below + classes.width * (top - shift))
    return top, rest, z_label, below


def _forward(h, w, b, labels, hyper, chunk):
    smoothing, ignore_index, z_loss, _, dtype, axis_name = hyper
    num_rows = h.shape[0]
    classes = _losses.ClassAxis(w.shape[1], axis_name)
    # Columns are matched to labels by local index: on a sharded class
    # axis, only the device holding a label's column ever sees it.
    local_labels = labels - classes.offset
    big = jnp.finfo(dtype).max
    init = (
        jnp.full((num_rows,), -big, dtype),
        jnp.zeros((num_rows,), dtype),
        jnp.zeros((num_rows,), dtype),
        jnp.zeros((num_rows,), dtype),
    )
    init = _losses.varying_like(init, h, w, b, labels)

    def step(state, offset, width):
        w_chunk = _slice(w, offset, width, 1)
        b_chunk = _slice(b, offset, width, 0)
        state = _forward_chunk(
            state, h, w_chunk, b_chunk, local_labels, offset, hyper
        )
        return state, None

    state, _ = _scan_chunks(step, init, classes.width, chunk)
    if classes.sharded:
        state = _combine_devices(classes, state)
    shift, rest, z_label, below = state
    num_classes = classes.num_classes

    # As in the materialised loss: total = rest + exp(z_y - shift) and
    # log(total) = log1p(rest + (exp(z_y - shift) - 1)), exact when the
    # label holds the maximum.
    exp_label = jnp.exp(z_label - shift)
    total = rest + exp_label
    log_total = jnp.log1p(rest + (exp_label - 1))
    loss = log_total - (z_label - shift)
    if smoothing:
        # Mean over classes of -log p_j = log(total) + (shift - z_j).
        loss = (1 - smoothing) * loss + smoothing * (
            log_total + below / num_classes
        )
    lse = shift + log_total
    if z_loss:
        loss = loss + z_loss * jnp.square(lse)

    count = jnp.full((num_rows,), num_classes, jnp.int32)
    skipped, invalid = _losses.row_status(
        labels, num_classes, count, ignore_index
    )
    loss = _losses.finish(loss, skipped, invalid)
    scale = _losses.finish(jnp.ones_like(loss), skipped, invalid)
    return loss, (shift, total, lse, scale)


# ---------------------------------------------------------------------------
# Backward: recompute each chunk's logits, form its gradient, contract.
# ---------------------------------------------------------------------------


def _backward(h, w, b, labels, hyper, chunk, rows, loss_bar):
    smoothing, _, z_loss, cap, dtype, axis_name = hyper
    shift, total, lse, scale = rows
    num_rows = h.shape[0]
    classes = _losses.ClassAxis(w.shape[1], axis_name)
    num_classes = classes.num_classes
    local_labels = labels - classes.offset
    operand = jnp.result_type(h, w)

    # dL/dz_j = c p_j - a / V - (1 - a) [j = y], with c = 1 + 2 lambda lse
    # and p_j = exp(z_j - shift) / total; every row is scaled by its
    # cotangent and its factor (0 skipped, NaN invalid).
    weight = scale * loss_bar.astype(dtype)
    factor = weight / total
    z_factor = None
    if z_loss:
        z_factor = _losses.z_loss_slope(z_loss, lse, weight) / total
    target = (1 - smoothing) * weight
    uniform = smoothing * weight / num_classes

    def step(carry, offset, width):
        dh, dw, db = carry
        w_chunk = _slice(w, offset, width, 1)
        b_chunk = _slice(b, offset, width, 0)
        logits = _losses.linear_logits(h, w_chunk, b_chunk, dtype)
        z = _transform(logits, cap)
        exps = jnp.exp(z - shift[:, None])
        is_label = _label_columns(local_labels, offset, width)
        grad = exps * factor[:, None] - jnp.where(is_label, target[:, None], 0)
        if z_factor is not None:
            # Added after p - q, which cancels for a confident example.
            grad = grad + exps * z_factor[:, None]
        if smoothing:
            grad = grad - uniform[:, None]
        if cap is not None:
            grad = grad * _losses.softcap_slope(logits, cap)
        # The two contractions take the operands' dtype (bfloat16 stays
        # bfloat16 on the matrix units) and accumulate in `dtype`.
        grad_op = grad.astype(operand)
        dh = dh + jax.lax.dot_general(
            grad_op,
            w_chunk.astype(operand),
            (((1,), (1,)), ((), ())),
            preferred_element_type=dtype,
        )
        dw_chunk = jax.lax.dot_general(
            h.astype(operand),
            grad_op,
            (((0,), (0,)), ((), ())),
            preferred_element_type=dtype,
        )
        dw = _update(dw, dw_chunk.astype(dw.dtype), offset, 1)
        if b is not None:
            db = _update(db, jnp.sum(grad, axis=0).astype(db.dtype), offset, 0)
        return (dh, dw, db), None

    # The weight (and bias) gradient is written chunk by chunk into one
    # [D, V] buffer, in place: stacking the chunks and transposing them
    # afterwards would hold a second [D, V] array.
    init = (
        jnp.zeros((num_rows, h.shape[1]), dtype),
        jnp.zeros(w.shape, w.dtype),
        None if b is None else jnp.zeros(b.shape, b.dtype),
    )
    init = _losses.varying_like(init, h, w, b, labels, loss_bar, *rows)
    (dh, dw, db), _ = _scan_chunks(step, init, classes.width, chunk)
    # Sharded, each device holds its columns' share of dL/dh: summed over
    # the devices, as the hidden states are the same on each.
    dh = classes.combine(dh)
    return dh.astype(h.dtype), dw, db


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _fused(h, w, b, labels, hyper, chunk):
    loss, _ = _forward(h, w, b, labels, hyper, chunk)
    return loss


def _fused_fwd(h, w, b, labels, hyper, chunk):
    loss, rows = _forward(h, w, b, labels, hyper, chunk)
    return loss, (h, w, b, labels, rows)


def _fused_bwd(hyper, chunk, residuals, loss_bar):
    h, w, b, labels, rows = residuals
    dh, dw, db = _backward(h, w, b, labels, hyper, chunk, rows, loss_bar)
    return dh, dw, db, None


_fused.defvjp(_fused_fwd, _fused_bwd)


def _check_chunk_size(chunk_size, name):
    if chunk_size is None:
        return None
    if isinstance(chunk_size, bool) or not isinstance(
        chunk_size, numbers.Integral
    ):
        raise TypeError(
            f"jax_act.{name}: `chunk_size` must be None or a positive int; "
            f"got {chunk_size!r}."
        )
    if chunk_size <= 0:
        raise ValueError(
            f"jax_act.{name}: `chunk_size` must be a positive number of "
            f"classes per chunk; got {chunk_size}."
        )
    return int(chunk_size)


def linear_softmax_cross_entropy(
    hidden: ArrayLike,
    weight: ArrayLike,
    labels: ArrayLike,
    *,
    bias: ArrayLike | None = None,
    chunk_size: int | None = None,
    label_smoothing: float = 0.0,
    ignore_index: int | None = None,
    z_loss: float = 0.0,
    logit_softcap: float | None = None,
    axis_name: AxisName = None,
    reduction: str = "none",
) -> jax.Array:
    r"""Cross-entropy of a linear layer's logits, never holding the logits.

    Equals ``softmax_cross_entropy_with_integer_labels(hidden @ weight +
    bias, labels, ...)``, per example, but visits the V classes in chunks:
    the [N, V] logits exist neither in the forward nor in the backward
    pass, only one [N, chunk_size] block at a time. This is the output
    layer of a language model, where the logits are the largest array of
    the step (Cut Cross-Entropy, Liger Kernel).

    .. math::

        L_n = -(1 - a) \log p_{n y_n} - \frac{a}{V} \sum_j \log p_{nj}
            + \lambda \Big(\log \sum_j e^{z_{nj}}\Big)^2, \quad
        p_n = \mathrm{softmax}(z_n), \quad
        z = c \tanh\big((h W + b) / c\big)

    with :math:`a` the label smoothing, :math:`\lambda` the z-loss
    coefficient and :math:`c` the soft cap (no cap: :math:`z = hW + b`).

    Numerics:
        The forward pass keeps, per example, a running maximum and the sum
        of exp(z - max) without the label's term, rescaled when the
        maximum grows (an online log-sum-exp); the label's logit is kept
        exactly, and the loss is log1p(rest + exp(z_y - max) - 1) -
        (z_y - max), so a confident example keeps all digits of its small
        loss, as in the materialised loss. The backward pass is a custom
        rule that recomputes each chunk's logits and applies
        dL/dz = (1 + 2 lambda lse) softmax - q (q the smoothed one-hot)
        there, then contracts it with `hidden` and `weight`: four matrix
        products in all, one more than the materialised version, traded
        for the memory. bfloat16 and float16 operands are multiplied as
        they are and accumulated in float32; the softmax runs in float32;
        gradients come back in the inputs' dtypes. A label outside
        [0, V) that is not `ignore_index` gives a NaN loss and a NaN
        gradient row for `hidden`; as that row is summed into every
        column of the `weight` and `bias` gradients, those become NaN
        too (never a silently wrong number). `ignore_index` examples give
        loss 0 and contribute nothing to any gradient. Forward-mode
        differentiation (jax.jvp) is not supported: the rule is a
        custom_vjp.

    Args:
        hidden: [..., D] hidden states, one row per example.
        weight: [D, V] output matrix.
        labels: integer class indices of shape hidden.shape[:-1].
        bias: optional [V] bias.
        chunk_size: with reduction 'none', classes per chunk; None picks a
            power of two near 2^23 / N, within [128, 8192] (1024 at
            N = 8192). Memory for the chunk buffers grows as
            N * chunk_size. With 'mean' or 'sum', examples per block; None
            picks a power of two near 2^24 / V, within [8, 4096] (512 at
            V = 32768). Need not divide V (or N).
        label_smoothing: a in [0, 1): mixes the one-hot target with the
            uniform distribution over the V classes.
        ignore_index: None or an int: examples with this label get loss 0
            and no gradient (PyTorch uses -100).
        z_loss: lambda >= 0, weight of the squared log-normaliser (PaLM).
        logit_softcap: c > 0 or None: logits become c * tanh(logits / c)
            before the softmax (Gemma 2).
        axis_name: mesh axis name (or tuple of names) across which the
            columns of `weight` (and `bias`) are split, inside
            `shard_map`: vocabulary-parallel cross-entropy. Each device
            passes the same `hidden` and global labels with its slice of
            the columns (device i holding the i-th equal slice), scans
            only that slice, and the per-example running maximum, sum and
            label logit are merged across devices, one number per example
            each; the gradient for `hidden` is summed across devices,
            those for `weight` and `bias` stay on their device. V that
            does not divide evenly: pad `weight` with zero columns and
            `bias` with -inf (label_smoothing would count the padding).
        reduction: 'none' (per-example losses, the V-chunked path above),
            'mean' or 'sum' over the examples. A reduced loss has one
            number as its cotangent, so its gradients are computed in the
            forward pass and kept: blocks of examples are visited, each
            holding its [rows, V] logits, and the gradients need three
            matrix products instead of four (measured here at N = 8192,
            D = 1024, V = 32768: 0.89x Optax's time against 1.18x for
            'none', with 194 MiB of temporaries against 96 MiB; Optax
            2048 MiB). The memory of a block grows with V, so for very
            large vocabularies 'none' (then a mean) scales better.

    Returns:
        Per-example losses of shape hidden.shape[:-1] (reduction 'none')
        or a scalar, in the promoted dtype of `hidden` and `weight`.

    Raises:
        TypeError: for complex or non-numeric arrays, non-integer labels,
            or a hyperparameter or chunk_size of the wrong type.
        ValueError: for mismatched shapes, an empty class axis, a
            chunk_size <= 0, label_smoothing outside [0, 1), a negative
            z_loss, a soft cap <= 0, an axis_name that no enclosing
            shard_map binds, or an unknown reduction.

    Examples:
        >>> import jax.numpy as jnp
        >>> import jax_act
        >>> hidden = jnp.array([[1.0, 0.0], [0.0, 2.0]])
        >>> weight = jnp.array([[1.0, 0.0, -1.0], [0.0, 1.0, 0.5]])
        >>> ce = jax_act.linear_softmax_cross_entropy
        >>> ce(hidden, weight, jnp.array([0, 1]), chunk_size=2)
        Array([0.40760595, 0.40760595], dtype=float32)

    References:
        Wijmans et al., "Cut Your Losses in Large-Vocabulary Language
        Models", 2024, arXiv:2411.09009 (Cut Cross-Entropy). Hsu et al.,
        "Liger Kernel: Efficient Triton Kernels for LLM Training", 2024,
        arXiv:2410.10989. Milakov and Gimelshein, "Online normalizer
        calculation for softmax", 2018, arXiv:1805.02867.

    See Also:
        :func:`jax_act.softmax_cross_entropy_with_integer_labels` on the
        materialised logits, the same loss at the cost of [N, V] memory.
    """
    name = "linear_softmax_cross_entropy"
    _checks.check_axis_name(axis_name, name)
    hidden = _checks.as_float_array(hidden, name, "hidden")
    weight = _checks.as_float_array(weight, name, "weight")
    if hidden.ndim < 1 or weight.ndim != 2:
        raise ValueError(
            f"jax_act.{name}: expected `hidden` of shape [..., D] and "
            f"`weight` of shape [D, V]; got {hidden.shape} and "
            f"{weight.shape}."
        )
    if hidden.shape[-1] != weight.shape[0]:
        raise ValueError(
            f"jax_act.{name}: `hidden` has width {hidden.shape[-1]} but "
            f"`weight` has {weight.shape[0]} rows; hidden @ weight needs "
            "them equal."
        )
    num_classes = weight.shape[1]
    if num_classes == 0:
        raise ValueError(
            f"jax_act.{name}: `weight` has no columns (V = 0): there is no "
            "class to predict."
        )
    if bias is not None:
        bias = _checks.as_float_array(bias, name, "bias")
        if bias.shape != (num_classes,):
            raise ValueError(
                f"jax_act.{name}: `bias` has shape {bias.shape}, expected "
                f"({num_classes},)."
            )
    batch_shape = hidden.shape[:-1]
    labels = _losses.check_integer_labels(labels, batch_shape, name)
    smoothing, z_coef, cap = _losses.check_hyperparameters(
        label_smoothing, z_loss, logit_softcap, name
    )
    ignore = _losses.check_ignore_index(ignore_index, name)
    chunk = _check_chunk_size(chunk_size, name)
    if reduction not in _REDUCTIONS:
        raise ValueError(
            f"jax_act.{name}: `reduction` must be one of {_REDUCTIONS}; got "
            f"{reduction!r}."
        )

    h = hidden.reshape(-1, hidden.shape[-1])
    flat_labels = labels.reshape(-1)
    out_dtype = jnp.result_type(hidden, weight)
    dtype = compute_dtype(out_dtype)
    hyper = (smoothing, ignore, z_coef, cap, dtype, axis_name)
    if reduction != "none":
        return _fused_reduced.reduced(
            h, weight, bias, flat_labels, hyper, chunk, reduction
        )
    if chunk is None:
        chunk = _default_chunk_size(h.shape[0], num_classes)
    chunk = min(chunk, num_classes)
    loss = _fused(h, weight, bias, flat_labels, hyper, chunk)
    return loss.astype(out_dtype).reshape(batch_shape)
