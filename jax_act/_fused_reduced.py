r"""The fused output-layer loss, reduced to one number: three matrix products.

With ``reduction='mean'`` or ``'sum'`` the loss is a scalar, so its
cotangent in the backward pass is one number g, and every gradient is g
times the gradient of the loss itself. That can be computed in the forward
pass and kept:

    dL/dW = sum over examples n of h_n (p_n - q_n)^T,

and likewise for h and the bias, which needs the exact softmax p_n of each
example. The examples are visited in blocks of R rows; for each block the
[R, V] logits are formed, their loss and gradient G computed in place, and
G contracted into dL/dh (G W^T) and dL/dW (h^T G). Three matrix products in
all, where the per-example path (reduction='none', whose cotangent differs
from row to row) needs four: it must recompute the logits in the backward
pass, because dL/dW mixes rows with weights only known then.

The price is memory: one [R, V] block, where the per-example path holds an
[N, C] chunk of classes. R is chosen so that a block is about 2^24 logits
(64 MiB in float32; R = 512 at V = 32768), so for very large vocabularies
the blocks become thin and the dL/dW accumulator is read and written once
per block: there the per-example path scales better.
"""

import functools

import jax
import jax.numpy as jnp

from jax_act import _losses

# About 2^24 logits (64 MiB of float32) per block of rows: at V = 32768
# that is 512 rows, measured here at N = 8192, D = 1024 as the best of
# 256, 512 and 1024 rows for time (0.92x, 0.87x, 0.87x Optax) within 1/8
# of Optax's temporary memory (161, 194, 260 MiB against 2048).
_BLOCK_ELEMENTS = 2**24
_MIN_ROWS = 8
_MAX_ROWS = 4096


def _default_rows(num_rows, num_classes):
    """A power of two near _BLOCK_ELEMENTS / V, in [8, 4096], <= N."""
    target = max(_BLOCK_ELEMENTS // max(num_classes, 1), 1)
    rows = 1 << (target.bit_length() - 1)
    rows = min(max(rows, _MIN_ROWS), _MAX_ROWS)
    return max(min(rows, num_rows), 1)


def _loss_hyper(hyper):
    smoothing, ignore, z_loss, cap, _, axis_name = hyper
    return (smoothing, ignore, z_loss, cap, axis_name)


def _block_loss(h, w, b, labels, hyper):
    """Loss sum of one block of rows: one matrix product, no gradient."""
    logits = _losses.linear_logits(h, w, b, hyper[4])
    core = _losses.integer_core(
        logits, labels, None, _loss_hyper(hyper), in_place=False
    )
    return jnp.sum(core["loss"])


def _block(h, w, b, labels, hyper, scale):
    """Loss sum and gradients of one block of rows, gradient scaled."""
    dtype = hyper[4]
    loss_hyper = _loss_hyper(hyper)
    logits = _losses.linear_logits(h, w, b, dtype)

    # The materialised loss's own machinery, on this block: the dense part
    # of the gradient, with the label's weight added at its column.
    core = _losses.integer_core(logits, labels, None, loss_hyper, in_place=True)
    dense, label_weight = _losses.integer_gradient(
        logits, None, loss_hyper, core
    )
    local, owned = core["pivot"]
    label_weight = core["classes"].owned_only(label_weight, owned)
    grad = _losses.scatter_at(dense, local, label_weight, add=True) * scale

    operand = jnp.result_type(h, w)
    grad_op = grad.astype(operand)
    dh = jax.lax.dot_general(
        grad_op,
        w.astype(operand),
        (((1,), (1,)), ((), ())),
        preferred_element_type=dtype,
    )
    # Sharded over classes, each device holds its columns' share of dL/dh.
    dh = core["classes"].combine(dh)
    dw = jax.lax.dot_general(
        h.astype(operand),
        grad_op,
        (((0,), (0,)), ((), ())),
        preferred_element_type=dtype,
    )
    db = None if b is None else jnp.sum(grad, axis=0)
    return jnp.sum(core["loss"]), dh, dw, db


def _forward(h, w, b, labels, hyper, rows, scale):
    """The reduced loss and its gradients (h, w, b), block by block."""
    num_rows, width = h.shape
    dtype = hyper[4]
    full = num_rows // rows
    init = (
        jnp.zeros(w.shape, dtype),
        None if b is None else jnp.zeros(b.shape, dtype),
    )
    init = _losses.varying_like(init, h, w, b, labels)

    def body(carry, block):
        dw, db = carry
        h_block, y_block = block
        loss, dh, dw_block, db_block = _block(
            h_block, w, b, y_block, hyper, scale
        )
        dw = dw + dw_block
        db = None if db is None else db + db_block
        # Losses and dL/dh leave as scan outputs, not in the carry: on a
        # sharded class axis they are the same on every device, the
        # carry (dL/dW) is not.
        return (dw, db), (loss, dh)

    blocks = (
        h[: full * rows].reshape(full, rows, width),
        labels[: full * rows].reshape(full, rows),
    )
    (dw, db), (losses, dh) = jax.lax.scan(body, init, blocks)
    loss = jnp.sum(losses)
    dh = dh.reshape(full * rows, width)
    if num_rows > full * rows:
        last_loss, last_dh, last_dw, last_db = _block(
            h[full * rows :], w, b, labels[full * rows :], hyper, scale
        )
        loss = loss + last_loss
        dh = jnp.concatenate([dh, last_dh], axis=0)
        dw = dw + last_dw
        db = None if db is None else db + last_db
    return loss * scale, (dh, dw, db)


def reduced(h, w, b, labels, hyper, rows, reduction):
    """The 'mean' or 'sum' of the per-example losses of h [N, D] @ w.

    `rows` is the block size (None for the default); the result is a
    scalar in the promoted dtype of h and w.
    """
    out_dtype = jnp.result_type(h, w)
    num_rows = h.shape[0]
    if num_rows == 0:
        return jnp.zeros((), out_dtype)
    if rows is None:
        rows = _default_rows(num_rows, w.shape[1])
    rows = min(rows, num_rows)
    scale = 1.0 / num_rows if reduction == "mean" else 1.0
    dtypes = (h.dtype, w.dtype, None if b is None else b.dtype)
    loss = _reduced(h, w, b, labels, hyper, rows, scale, dtypes)
    return loss.astype(out_dtype)


def _loss_only(h, w, b, labels, hyper, rows, scale):
    """The reduced loss alone, block by block (not differentiated)."""
    num_rows, width = h.shape
    full = num_rows // rows
    blocks = (
        h[: full * rows].reshape(full, rows, width),
        labels[: full * rows].reshape(full, rows),
    )
    losses = jax.lax.map(
        lambda block: _block_loss(block[0], w, b, block[1], hyper), blocks
    )
    loss = jnp.sum(losses)
    if num_rows > full * rows:
        rest = slice(full * rows, None)
        loss = loss + _block_loss(h[rest], w, b, labels[rest], hyper)
    return loss * scale


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6, 7))
def _reduced(h, w, b, labels, hyper, rows, scale, dtypes):
    # Called without differentiation (evaluation): one matrix product per
    # block. Under grad, _reduced_fwd forms the gradients as it goes.
    del dtypes
    return _loss_only(h, w, b, labels, hyper, rows, scale)


def _reduced_fwd(h, w, b, labels, hyper, rows, scale, dtypes):
    del dtypes
    return _forward(h, w, b, labels, hyper, rows, scale)


def _reduced_bwd(hyper, rows, scale, dtypes, grads, loss_bar):
    # The loss is one number: its gradients are loss_bar times the ones
    # the forward pass computed, returned in the inputs' dtypes.
    return (
        *(
            None if g is None else (g * loss_bar).astype(dtype)
            for g, dtype in zip(grads, dtypes, strict=True)
        ),
        None,
    )


_reduced.defvjp(_reduced_fwd, _reduced_bwd)
