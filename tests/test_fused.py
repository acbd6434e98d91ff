"""Tests for linear_softmax_cross_entropy, the fused output layer.

The fused loss must equal the plain one on materialised logits,
softmax_cross_entropy_with_integer_labels(hidden @ weight + bias), to
float32 accuracy in value and in every gradient, for any V and chunk size
(V = 1, primes, 100,000; chunks of 1, dividing V or not, larger than V),
with a random (not uniform) cotangent. Also: float64 references, the
behaviour contract, trace-time errors, XLA's memory accounting, and a
smoke test of bench/memory.py.
"""

import functools
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads
from reference import assert_ulp

import jax_act

LCE = jax_act.linear_softmax_cross_entropy
ICE = jax_act.softmax_cross_entropy_with_integer_labels
STATIC = (
    "chunk_size",
    "label_smoothing",
    "ignore_index",
    "z_loss",
    "logit_softcap",
)
ALL = {"label_smoothing": 0.1, "z_loss": 1e-3, "logit_softcap": 3.0}


def _numpy_out(jitted):
    @functools.wraps(jitted)
    def call(*args, **kwargs):
        return jax.tree.map(np.asarray, jitted(*args, **kwargs))

    return call


lce = _numpy_out(jax.jit(LCE, static_argnames=STATIC))


@_numpy_out
@functools.partial(jax.jit, static_argnames=STATIC)
def fused(h, w, b, y, cotangent, **kwargs):
    """Loss and the gradients (hidden, weight, bias) of <loss, cotangent>."""

    def f(h, w, b):
        return LCE(h, w, y, bias=b, **kwargs)

    loss, vjp = jax.vjp(f, h, w, b)
    return (loss, *vjp(cotangent.astype(loss.dtype)))


@_numpy_out
@functools.partial(jax.jit, static_argnames=STATIC)
def materialised(h, w, b, y, cotangent, **kwargs):
    kwargs.pop("chunk_size", None)

    def f(h, w, b):
        logits = jnp.dot(h, w, precision="highest") + b[None, :]
        return ICE(logits, y, **kwargs)

    loss, vjp = jax.vjp(f, h, w, b)
    return (loss, *vjp(cotangent.astype(loss.dtype)))


def _problem(n, d, v, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    h = rng.standard_normal((n, d)).astype(dtype)
    w = (2 * rng.standard_normal((d, v)) / np.sqrt(d)).astype(dtype)
    b = (0.5 * rng.standard_normal(v)).astype(dtype)
    y = rng.integers(0, v, n).astype(np.int32)
    cotangent = rng.standard_normal(n).astype(np.float32)
    return h, w, b, y, cotangent


def _assert_close(actual, expected, rtol):
    """Each array within rtol of its own largest entry."""
    for a, e in zip(actual, expected, strict=True):
        a = np.asarray(a, np.float64)
        e = np.asarray(e, np.float64)
        scale = max(float(np.max(np.abs(e))), 1e-30)
        np.testing.assert_allclose(a, e, rtol=rtol, atol=rtol * scale)


# --------------------------------------------------------------------------
# Fused == materialised


@pytest.mark.parametrize(
    ("v", "chunk", "extras"),
    [
        # V = 1: the gradient is the z-loss part alone (p - q = 1 - 1).
        (1, None, {"z_loss": 1e-3, "logit_softcap": 3.0}),
        (2, 1, {}),
        (97, 7, ALL),  # prime V, remainder chunk of 6
        (97, 128, {"ignore_index": 3}),  # one chunk, wider than V
        (1009, 64, {}),  # remainder 49
        (100_000, 4096, {}),  # remainder 1696
        (100_000, None, ALL),
    ],
)
def test_fused_equals_materialised(v, chunk, extras):
    h, w, b, y, cotangent = _problem(6, 8, v, seed=v)
    if "ignore_index" in extras:
        y[1] = extras["ignore_index"]
    got = fused(h, w, b, y, cotangent, chunk_size=chunk, **extras)
    want = materialised(h, w, b, y, cotangent, **extras)
    _assert_close(got, want, 2e-5)


@_numpy_out
@functools.partial(jax.jit, static_argnames=(*STATIC, "reduction"))
def reduced_pair(h, w, b, y, reduction, **kwargs):
    """The reduced fused loss and the reduction of the materialised one,
    each with its gradients (hidden, weight, bias)."""
    reduce = jnp.mean if reduction == "mean" else jnp.sum

    def ours(h, w, b):
        return LCE(h, w, y, bias=b, reduction=reduction, **kwargs)

    plain_kwargs = {k: v for k, v in kwargs.items() if k != "chunk_size"}

    def plain(h, w, b):
        logits = jnp.dot(h, w, precision="highest") + b[None, :]
        return reduce(ICE(logits, y, **plain_kwargs))

    grad = functools.partial(jax.value_and_grad, argnums=(0, 1, 2))
    return grad(ours)(h, w, b), grad(plain)(h, w, b)


@pytest.mark.parametrize(
    ("n", "rows", "reduction", "extras"),
    [
        (37, 8, "mean", {}),  # four blocks of 8 and a remainder of 5
        (37, 8, "sum", ALL),
        (6, None, "mean", {"ignore_index": 3}),  # one block, default size
        (1, 4, "sum", {"z_loss": 1e-3}),  # fewer rows than a block
    ],
)
def test_reduced_equals_reduced_materialised(n, rows, reduction, extras):
    h, w, b, y, _ = _problem(n, 8, 97, seed=n)
    if "ignore_index" in extras:
        y[1] = extras["ignore_index"]
    (loss, grads), (want_loss, want_grads) = reduced_pair(
        h, w, b, y, reduction, chunk_size=rows, **extras
    )
    _assert_close((loss, *grads), (want_loss, *want_grads), 2e-5)


def test_reduced_cotangent_scales_every_gradient():
    h, w, b, y, _ = _problem(9, 4, 30, seed=2)

    def loss(h, w, b):
        return LCE(h, w, y, bias=b, reduction="mean", chunk_size=4)

    _, vjp = jax.vjp(loss, h, w, b)
    once = vjp(jnp.float32(1.0))
    thrice = vjp(jnp.float32(-3.0))
    for a, c in zip(once, thrice, strict=True):
        np.testing.assert_allclose(c, -3.0 * a, rtol=1e-6)


def test_reduced_out_of_range_label_is_nan():
    h, w, b, y, _ = _problem(5, 4, 7, seed=6)
    y[2] = 7
    (loss, grads), _ = reduced_pair(h, w, b, y, "mean", chunk_size=2)
    assert np.isnan(loss) and np.isnan(grads[1]).all()


def test_reduced_check_grads_reverse_second_order():
    h, w, b, y, _ = _problem(5, 3, 6, seed=7)
    with jax.enable_x64(True):

        def f(h, w, b):
            return LCE(h, w, y, bias=b, chunk_size=2, reduction="sum", **ALL)

        args = tuple(a.astype(np.float64) for a in (h, w, b))
        check_grads(jax.jit(f), args, order=2, modes=("rev",))


def test_matches_float64_reference():
    h, w, b, y, cotangent = _problem(5, 6, 50, seed=1)
    got = fused(h, w, b, y, cotangent, chunk_size=16, **ALL)
    with jax.enable_x64(True):
        want = materialised(
            *(a.astype(np.float64) for a in (h, w, b)), y, cotangent, **ALL
        )
    _assert_close(got, want, 1e-5)


def test_confident_example_keeps_its_digits():
    # Logits [0, -30, ..., -30]: -log p_0 = log1p(9 exp(-30)) ~ 8.4e-13.
    h = np.ones((1, 1), np.float32)
    w = np.full((1, 10), -30.0, np.float32)
    w[0, 0] = 0.0
    loss = lce(h, w, np.array([0]), chunk_size=3)
    assert_ulp(loss, [np.log1p(9 * np.exp(-30.0))], 4)


def test_leading_batch_dimensions():
    h, w, _, y, _ = _problem(6, 8, 20, seed=2)
    loss = lce(h.reshape(2, 3, 8), w, y.reshape(2, 3), chunk_size=8)
    assert loss.shape == (2, 3)
    np.testing.assert_allclose(
        loss.reshape(-1), lce(h, w, y, chunk_size=8), rtol=1e-6
    )


# --------------------------------------------------------------------------
# Derivatives, dtypes, transforms


def test_check_grads_reverse_second_order():
    # A custom_vjp rule: reverse mode only, to second order, in float64.
    h, w, b, y, _ = _problem(3, 4, 5, seed=3)
    with jax.enable_x64(True):

        def f(h, w, b):
            return LCE(h, w, y, bias=b, chunk_size=2, **ALL)

        args = tuple(a.astype(np.float64) for a in (h, w, b))
        check_grads(jax.jit(f), args, order=2, modes=("rev",))


@pytest.mark.xfail(
    strict=True,
    reason="the fused rule is a custom_vjp: forward mode (jax.jvp) is not "
    "supported",
)
def test_forward_mode():
    h, w, _, y, _ = _problem(3, 4, 5, seed=4)
    jax.jvp(lambda h: LCE(h, w, y), (h,), (h,))


def test_bfloat16_accumulates_in_float32():
    h, w, b, y, cotangent = _problem(6, 16, 300, seed=5)
    hb, wb, bb = (a.astype(jnp.bfloat16) for a in (h, w, b))
    got = fused(hb, wb, bb, y, cotangent, chunk_size=64)
    assert all(g.dtype == jnp.bfloat16 for g in got)
    # Against the float32 computation on the same (rounded) inputs.
    want = fused(
        *(np.asarray(a, np.float32) for a in (hb, wb, bb)),
        y,
        cotangent,
        chunk_size=64,
    )
    _assert_close(got, want, 1e-2)


def test_remat_and_vmap():
    h, w, _, y, _ = _problem(4, 8, 30, seed=6)

    def total(h, w):
        return LCE(h, w, y, chunk_size=7).sum()

    plain = jax.jit(jax.grad(total, argnums=(0, 1)))(h, w)
    remat = jax.jit(jax.grad(jax.checkpoint(total), argnums=(0, 1)))(h, w)
    _assert_close(remat, plain, 1e-6)
    batched = jax.jit(
        jax.vmap(lambda h, y: LCE(h, w, y, chunk_size=7), in_axes=(0, 0))
    )(h[:, None], y[:, None])
    np.testing.assert_allclose(
        batched[:, 0], lce(h, w, y, chunk_size=7), rtol=1e-6
    )


# --------------------------------------------------------------------------
# The behaviour contract


def test_out_of_range_label_poisons_with_nan():
    h, w, b, y, cotangent = _problem(4, 8, 20, seed=7)
    y[2] = 20
    loss, dh, dw, db = fused(h, w, b, y, cotangent, chunk_size=8)
    assert np.isnan(loss[2]) and np.all(np.isfinite(loss[[0, 1, 3]]))
    assert np.all(np.isnan(dh[2])) and np.all(np.isfinite(dh[[0, 1, 3]]))
    # Row 2 is summed into every weight and bias gradient entry.
    assert np.all(np.isnan(dw)) and np.all(np.isnan(db))


def test_ignore_index_contributes_nothing():
    h, w, b, y, cotangent = _problem(5, 8, 20, seed=8)
    y[[1, 3]] = -100
    loss, dh, dw, db = fused(
        h, w, b, y, cotangent, chunk_size=6, ignore_index=-100, **ALL
    )
    np.testing.assert_array_equal(loss[[1, 3]], 0.0)
    np.testing.assert_array_equal(dh[[1, 3]], 0.0)
    kept = np.array([0, 2, 4])
    want = fused(h[kept], w, b, y[kept], cotangent[kept], chunk_size=6, **ALL)
    _assert_close((loss[kept], dh[kept], dw, db), want, 1e-6)


# --------------------------------------------------------------------------
# Trace-time errors


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"chunk_size": 0}, ValueError),
        ({"chunk_size": -4}, ValueError),
        ({"chunk_size": 2.5}, TypeError),
        ({"chunk_size": True}, TypeError),
        ({"label_smoothing": 1.0}, ValueError),
        ({"z_loss": -1.0}, ValueError),
        ({"logit_softcap": -2.0}, ValueError),
        ({"bias": np.zeros(3, np.float32)}, ValueError),
    ],
)
def test_bad_arguments(kwargs, error):
    h, w, _, y, _ = _problem(4, 8, 20)
    with pytest.raises(error, match=r"jax_act\.linear_softmax_cross_entropy"):
        LCE(h, w, y, **kwargs)


def test_bad_shapes_and_labels():
    h, w, _, y, _ = _problem(4, 8, 20)
    with pytest.raises(ValueError, match="width"):
        LCE(h[:, :5], w, y)
    with pytest.raises(ValueError, match="shape"):
        LCE(h, w, y[:3])
    with pytest.raises(TypeError, match="integer"):
        LCE(h, w, y.astype(np.float32))
    with pytest.raises(ValueError, match="no columns"):
        LCE(h, w[:, :0], y)
    with pytest.raises(TypeError, match="complex"):
        LCE(h.astype(np.complex64), w, y)
    with pytest.raises(ValueError, match="reduction"):
        LCE(h, w, y, reduction="average")


# --------------------------------------------------------------------------
# Memory, as XLA accounts for it


def test_temporary_memory_is_a_fraction_of_materialised():
    n, d, v = 1024, 64, 16384
    args = (
        jax.ShapeDtypeStruct((n, d), jnp.float32),
        jax.ShapeDtypeStruct((d, v), jnp.float32),
        jax.ShapeDtypeStruct((n,), jnp.int32),
    )

    def temp_bytes(loss):
        program = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
        return (
            program.lower(*args).compile().memory_analysis().temp_size_in_bytes
        )

    def fused_loss(h, w, y):
        return jnp.mean(LCE(h, w, y, chunk_size=1024))

    def reduced_loss(h, w, y):
        return LCE(h, w, y, chunk_size=64, reduction="mean")

    def optax_loss(h, w, y):
        return jnp.mean(
            optax.softmax_cross_entropy_with_integer_labels(h @ w, y)
        )

    # The logits alone are n * v * 4 bytes = 64 MiB here.
    fused_temp, optax_temp = temp_bytes(fused_loss), temp_bytes(optax_loss)
    assert optax_temp >= n * v * 4
    assert fused_temp <= optax_temp / 8
    # Blocks of 64 rows: 4 MiB of logits each, and the gradients it keeps.
    assert temp_bytes(reduced_loss) <= optax_temp / 8


def test_memory_harness_smoke(tmp_path):
    # bench/ is a top-level folder of the repository, not a package.
    root = str(pathlib.Path(__file__).resolve().parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    from bench import memory

    records = memory.run(quick=True, out=tmp_path, repeats=1)
    assert (tmp_path / "memory.json").exists()
    by_name = {(r["comparison"], r["variant"]): r for r in records}
    fused_row = by_name[("linear", "fused")]
    assert fused_row["temp_bytes"] < by_name[("linear", "optax")]["temp_bytes"]
    assert fused_row["max_rel_diff"] < 1e-4
    assert by_name[("logits", "ours")]["max_rel_diff"] < 1e-4
    assert all(r["median_ms"] > 0 for r in records)
