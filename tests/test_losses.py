"""Tests for softmax_cross_entropy and its integer-label twin.

Values are compared with float64 formulas, gradients with float64
autodiff of the plain formula sum_j q_j (logsumexp(z) - z_j) + lambda
lse^2, and both with Optax on benign inputs. Every case of the behaviour
contract in the docstrings (ignored labels, out-of-range labels, masked
labels, empty rows, infinities) has its own test.

Compiling dominates on CPU: the tests share a few jitted programs, cached
per static hyperparameters, on one canonical shape.
"""

import functools

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads
from reference import (
    assert_ulp,
    cross_entropy64,
    log_softmax64,
    smoothed_targets64,
)

import jax_act

SHAPE = (4, 8)
ICE = jax_act.softmax_cross_entropy_with_integer_labels
DCE = jax_act.softmax_cross_entropy

# Hyperparameter sets: every extra alone, and all together.
EXTRAS = {
    "plain": {},
    "smooth": {"label_smoothing": 0.2},
    "zloss": {"z_loss": 1e-2},
    "cap": {"logit_softcap": 2.5},
    "all": {"label_smoothing": 0.1, "z_loss": 1e-3, "logit_softcap": 4.0},
}


# --------------------------------------------------------------------------
# Float64 references


def grad64(logits, target, where=None, z_loss=0.0, cap=None):
    """Autodiff, in float64, of the plain formula: d sum(loss) / d logits."""
    with jax.enable_x64(True):

        def total(x):
            z = x if cap is None else cap * jnp.tanh(x / cap)
            if where is not None:
                z = jnp.where(where, z, -jnp.inf)
            lse = jax.nn.logsumexp(z, axis=-1, keepdims=True)
            q = jnp.asarray(target, jnp.float64)
            if where is not None:
                q = jnp.where(where, q, 0)
            ce = jnp.sum(q * (lse - jnp.where(q == 0, 0, z)), -1)
            return jnp.sum(ce + z_loss * lse[..., 0] ** 2)

        return np.asarray(jax.grad(total)(jnp.asarray(logits, jnp.float64)))


# --------------------------------------------------------------------------
# Shared programs: jitted once per shape and static hyperparameters (eager
# calls would compile every small op on its own).

STATIC = ("axis", "label_smoothing", "ignore_index", "z_loss", "logit_softcap")


def _numpy_out(jitted):
    @functools.wraps(jitted)
    def call(*args, **kwargs):
        return jax.tree.map(np.asarray, jitted(*args, **kwargs))

    return call


ice = _numpy_out(jax.jit(ICE, static_argnames=STATIC))
dce = _numpy_out(
    jax.jit(DCE, static_argnames=("axis", "label_smoothing", "z_loss"))
)


@_numpy_out
@functools.partial(jax.jit, static_argnames=STATIC)
def ice_grad(x, y, where=None, **kwargs):
    """Per-example losses and the gradient of their sum."""
    loss, vjp = jax.vjp(lambda x: ICE(x, y, where=where, **kwargs), x)
    return loss, vjp(jnp.ones_like(loss))[0]


@_numpy_out
@functools.partial(jax.jit, static_argnames=STATIC)
def dce_grads(x, q, where=None, **kwargs):
    """Losses and the gradients of their sum for logits and labels."""
    loss, vjp = jax.vjp(lambda x, q: DCE(x, q, where=where, **kwargs), x, q)
    return (loss, *vjp(jnp.ones_like(loss)))


def integer_program(extras_key, with_mask):
    def run(x, y, where):
        w = where if with_mask else None
        return ice_grad(x, y, w, **EXTRAS[extras_key])

    return run


def dense_program(extras_key, with_mask):
    def run(x, q, where):
        w = where if with_mask else None
        return dce_grads(x, q, w, **EXTRAS[extras_key])

    return run


def _inputs(seed=0, scale=3.0):
    rng = np.random.default_rng(seed)
    x = (scale * rng.standard_normal(SHAPE)).astype(np.float32)
    y = rng.integers(0, SHAPE[-1], SHAPE[0]).astype(np.int32)
    where = rng.random(SHAPE) > 0.3
    where[np.arange(SHAPE[0]), y] = True
    return x, y, where


def _close(actual, expected, rtol, scale=None):
    actual = np.asarray(actual, np.float64)
    scale = np.max(np.abs(expected)) if scale is None else scale
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


# --------------------------------------------------------------------------
# Against float64


@pytest.mark.parametrize("with_mask", [False, True], ids=["full", "masked"])
@pytest.mark.parametrize("extras_key", ["plain", "smooth", "cap", "all"])
def test_integer_labels_match_float64(extras_key, with_mask):
    x, y, where = _inputs()
    extras = EXTRAS[extras_key]
    loss, grad = integer_program(extras_key, with_mask)(x, y, where)
    w = where if with_mask else None
    target = smoothed_targets64(
        y, SHAPE[-1], w, extras.get("label_smoothing", 0.0)
    )
    expected = cross_entropy64(
        x, target, w, extras.get("z_loss", 0.0), extras.get("logit_softcap")
    )
    assert_ulp(loss, expected, 8)
    expected_grad = grad64(
        x, target, w, extras.get("z_loss", 0.0), extras.get("logit_softcap")
    )
    _close(grad, expected_grad, 2e-6)


@pytest.mark.parametrize("with_mask", [False, True], ids=["full", "masked"])
@pytest.mark.parametrize("extras_key", ["plain", "all"])
def test_probability_labels_match_float64(extras_key, with_mask):
    x, _, where = _inputs()
    # Label mass only on classes left in (mass on a masked class: +inf,
    # tested apart).
    w = where if with_mask else None
    q = np.asarray(jax.nn.softmax(jnp.asarray(x) * 0.7, where=w), np.float32)
    extras = EXTRAS[extras_key]
    loss, grad, label_grad = dense_program(extras_key, with_mask)(x, q, where)
    a = extras.get("label_smoothing", 0.0)
    keep = np.ones(SHAPE, bool) if w is None else w
    count = keep.sum(-1, keepdims=True)
    target = (1 - a) * q.astype(np.float64) + a * keep / count
    z_coef, cap = extras.get("z_loss", 0.0), extras.get("logit_softcap")
    assert_ulp(loss, cross_entropy64(x, target, w, z_coef, cap), 8)
    _close(grad, grad64(x, target, w, z_coef, cap), 2e-6)
    # d loss / d q_j = -(1 - a) log p_j on the classes left in.
    z = x.astype(np.float64) if cap is None else cap * np.tanh(x / cap)
    log_p = log_softmax64(np.where(keep, z, -np.inf))
    expected = np.where(keep, -(1 - a) * log_p, 0.0)
    _close(label_grad, expected, 2e-6)


def test_confident_example_keeps_its_digits():
    # -log p_y = log1p(7 exp(-30)) ~ 6.5e-13: log(1 + rest) rounds to 0.
    x = np.full((1, 8), -30.0, np.float32)
    x[0, 3] = 0.0
    loss = ice(x, np.array([3]))
    expected = np.log1p(7 * np.exp(-30.0))
    assert_ulp(loss, [expected], 4)
    q = np.eye(8, dtype=np.float32)[[3]]
    assert_ulp(dce(x, q), [expected], 4)


def test_agrees_with_optax_on_benign_inputs():
    x, y, _ = _inputs(seed=1, scale=1.0)
    q = np.asarray(jax.nn.one_hot(y, SHAPE[-1]))
    ours, ours_grad = integer_program("plain", False)(x, y, None)
    theirs, theirs_grad = _optax_program(x, y, q)
    np.testing.assert_allclose(ours.sum(), theirs[0], rtol=1e-6)
    np.testing.assert_allclose(ours_grad, theirs_grad, atol=1e-7)
    np.testing.assert_allclose(dce(x, q), theirs[1], rtol=1e-6)


@jax.jit
def _optax_program(x, y, q):
    def f(x):
        return optax.softmax_cross_entropy_with_integer_labels(x, y).sum()

    loss, grad = jax.value_and_grad(f)(x)
    return (loss, optax.softmax_cross_entropy(x, q)), grad


def test_integer_and_one_hot_agree():
    x, y, where = _inputs(seed=2)
    q = np.eye(SHAPE[-1], dtype=np.float32)[y]
    loss, grad = integer_program("all", True)(x, y, where)
    dense_loss, dense_grad, _ = dense_program("all", True)(x, q, where)
    np.testing.assert_allclose(loss, dense_loss, rtol=1e-6)
    np.testing.assert_allclose(grad, dense_grad, atol=1e-7)


# --------------------------------------------------------------------------
# Derivative rules


def test_check_grads_integer():
    # Second order in float64 (the rules compute in the input's precision),
    # where finite differences are exact enough; jitted, as eager
    # check_grads compiles every small op on its own. All extras at once,
    # then the masked path at first order.
    x, y, where = _inputs(seed=3, scale=1.0)
    extras = EXTRAS["all"]
    with jax.enable_x64(True):
        x64 = x.astype(np.float64)
        check_grads(
            jax.jit(lambda x: ICE(x, y, **extras)),
            (x64,),
            order=2,
            modes=("fwd", "rev"),
        )
        check_grads(
            jax.jit(lambda x: ICE(x, y, where=where, **extras)),
            (x64,),
            order=1,
            modes=("fwd", "rev"),
        )


def test_check_grads_probability():
    x, _, _ = _inputs(seed=4, scale=1.0)
    q = np.asarray(jax.nn.softmax(jnp.asarray(x)), np.float64)
    extras = EXTRAS["all"]
    with jax.enable_x64(True):
        check_grads(
            jax.jit(lambda x, q: DCE(x, q, **extras)),
            (x.astype(np.float64), q),
            order=2,
            modes=("fwd", "rev"),
        )


def test_custom_rule_matches_float64_jvp():
    # Forward mode through the hand-written rule, against float64 autodiff.
    x, y, where = _inputs(seed=5)
    tangent = np.random.default_rng(6).standard_normal(SHAPE)
    extras = EXTRAS["all"]
    _, out_dot = jax.jit(
        lambda x, t: jax.jvp(
            lambda x: ICE(x, y, where=where, **extras), (x,), (t,)
        )
    )(x, tangent.astype(np.float32))
    target = smoothed_targets64(y, SHAPE[-1], where, 0.1)
    g = grad64(x, target, where, 1e-3, 4.0)
    # Per row: <grad_row, tangent_row> (grad64 differentiates the sum).
    _close(out_dot, np.sum(g * tangent, -1), 1e-5)


# --------------------------------------------------------------------------
# The behaviour contract


def test_out_of_range_label_gives_nan_row():
    x, _, _ = _inputs(seed=7)
    y = np.array([1, -1, SHAPE[-1], 2], np.int32)
    loss, grad = integer_program("plain", False)(x, y, None)
    assert np.isnan(loss[1]) and np.isnan(loss[2])
    assert np.all(np.isnan(grad[1])) and np.all(np.isnan(grad[2]))
    assert np.all(np.isfinite(loss[[0, 3]]))
    assert np.all(np.isfinite(grad[[0, 3]]))


def test_ignore_index_gives_zero_loss_and_gradient():
    x, _, _ = _inputs(seed=8)
    y = np.array([1, -100, 3, -100], np.int32)

    kwargs = {"label_smoothing": 0.1, "z_loss": 1e-3}
    loss, grad = ice_grad(x, y, ignore_index=-100, **kwargs)
    np.testing.assert_array_equal(loss[[1, 3]], 0.0)
    np.testing.assert_array_equal(grad[[1, 3]], 0.0)
    # The other examples are as if the ignored ones were not there.
    kept = np.array([0, 2])
    reference, reference_grad = ice_grad(x[kept], y[kept], **kwargs)
    np.testing.assert_allclose(loss[kept], reference, rtol=1e-6)
    np.testing.assert_allclose(grad[kept], reference_grad, atol=1e-7)
    # An ignore_index that is a valid class skips that class's examples.
    assert ice(x, np.array([1, 1, 1, 1]), ignore_index=1).sum() == 0


def test_label_on_masked_class_is_infinite():
    x, y, where = _inputs(seed=9)
    where[0, y[0]] = False
    loss, grad = integer_program("plain", True)(x, y, where)
    assert loss[0] == np.inf
    assert np.all(np.isfinite(loss[1:]))
    assert np.all(np.isfinite(grad))
    np.testing.assert_array_equal(grad[0][~where[0]], 0.0)
    # Probability labels: positive mass on a masked class is +inf too.
    q = np.eye(SHAPE[-1], dtype=np.float32)[y]
    dense_loss, dense_grad, _ = dense_program("plain", True)(x, q, where)
    assert dense_loss[0] == np.inf and np.all(np.isfinite(dense_grad))


def test_fully_masked_row_gives_zero():
    x, y, where = _inputs(seed=10)
    where[2] = False
    for key in ("plain", "all"):
        loss, grad = integer_program(key, True)(x, y, where)
        assert loss[2] == 0 and np.all(grad[2] == 0)
        assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
    # Optax's per-example `where` (the batch shape) means the same.
    keep = np.array([True, False, True, True])
    loss = ice(x, y, where=keep)
    assert loss[1] == 0
    np.testing.assert_allclose(loss[keep], ice(x[keep], y[keep]), rtol=1e-6)
    # The label does not matter there, even out of range.
    assert ice(x, np.array([0, 99, 0, 0]), where=keep)[1] == 0


def test_infinite_logits():
    inf = np.inf
    x = np.array(
        [
            [-inf, -inf, -inf, -inf],
            [0.0, -inf, 1.0, 2.0],
            [inf, 0.0, inf, 1.0],
            [inf, 0.0, inf, 1.0],
        ],
        np.float32,
    )
    y = np.array([1, 1, 0, 1], np.int32)
    loss, grad = ice_grad(x, y)
    assert loss[0] == inf and loss[1] == inf and loss[3] == inf
    np.testing.assert_allclose(loss[2], np.log(2.0), rtol=1e-6)
    assert np.all(np.isfinite(grad))
    # +inf entries share the mass: softmax = [1/2, 0, 1/2, 0].
    np.testing.assert_allclose(grad[2], [-0.5, 0, 0.5, 0], atol=1e-7)


def test_probability_labels_fast_path_agrees_with_general_path(rng):
    # The plain call (no mask or extras) takes a fused fast path that
    # falls back to the general one for a batch with a -inf logit under a
    # zero label or a row holding +inf; an all-True mask always takes the
    # general path. Both must agree, rare rows or not.
    inf = np.inf
    x = rng.normal(size=(6, 4)).astype(np.float32)
    q = rng.dirichlet(np.ones(4), size=6).astype(np.float32)
    common = dce_grads(x, q)
    np.testing.assert_allclose(
        common[0], dce_grads(x, q, where=np.ones_like(x, bool))[0], rtol=1e-6
    )
    x[1] = [0.0, -inf, 1.0, 2.0]
    q[1] = [0.5, 0.0, 0.5, 0.0]  # zero label at -inf: finite
    x[2] = [inf, 0.0, inf, 1.0]
    q[2] = [0.5, 0.0, 0.5, 0.0]  # mass on the +inf entries only: log 2
    x[3] = [inf, 0.0, inf, 1.0]
    q[3] = [0.5, 0.5, 0.0, 0.0]  # mass on a finite entry beside +inf
    x[4] = -inf
    loss, dx, dq = dce_grads(x, q)
    want = dce_grads(x, q, where=np.ones_like(x, bool))
    assert loss[3] == inf and loss[4] == inf and np.isfinite(loss[1])
    np.testing.assert_allclose(loss[2], np.log(2.0), rtol=1e-6)
    for got, ref in zip((loss, dx, dq), want, strict=True):
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-7)
    # The untouched rows keep the fast path's values.
    np.testing.assert_allclose(loss[[0, 5]], common[0][[0, 5]], rtol=1e-6)


def test_huge_finite_logits():
    x = np.array([[1e30, -1e30, 0.0], [1e30, -1e30, 0.0]], np.float32)
    y = np.array([0, 2], np.int32)
    loss, grad = ice_grad(x, y)
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(loss, [0.0, 1e30], rtol=1e-6)
    np.testing.assert_allclose(grad, [[0, 0, 0], [1, 0, -1]], atol=1e-7)
    q = np.array([[1.0, 0, 0], [0, 0, 1.0]], np.float32)
    np.testing.assert_allclose(dce(x, q), [0.0, 1e30], rtol=1e-6)


@hypothesis.given(
    st.integers(0, 2**31 - 1),
    st.floats(1e-3, 1e30),
    st.floats(0.0, 0.5),
)
def test_no_nan_for_valid_input(seed, scale, smoothing):
    rng = np.random.default_rng(seed)
    x = (scale * rng.standard_normal(SHAPE)).astype(np.float32)
    y = rng.integers(0, SHAPE[-1], SHAPE[0]).astype(np.int32)
    loss, grad = _valid_program(x, y, np.float32(smoothing))
    assert np.all(np.isfinite(loss)) and np.all(loss >= 0)
    assert np.all(np.isfinite(grad))
    # Each gradient row sums to 0: sum_j p_j - q_j = 1 - 1.
    np.testing.assert_allclose(grad.sum(-1), 0, atol=1e-5)


@jax.jit
def _valid_program(x, y, unused):
    del unused
    return jax.value_and_grad(lambda x: ICE(x, y, label_smoothing=0.3).sum())(x)


def test_shift_invariance():
    x, y, _ = _inputs(seed=11)
    shifted = x + np.float32(64.0)
    np.testing.assert_allclose(ice(shifted, y), ice(x, y), rtol=2e-5)


# --------------------------------------------------------------------------
# Dtypes, axes, transforms


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_half_precision(dtype):
    x, y, _ = _inputs(seed=12, scale=1.0)
    xh = jnp.asarray(x, dtype)
    loss, grad = ice_grad(xh, y)
    assert loss.dtype == dtype and grad.dtype == dtype
    # Computed in float32 from the rounded input, rounded once.
    x32 = np.asarray(xh, np.float32)
    loss32, grad32 = ice_grad(x32, y)
    assert_ulp(loss, loss32.astype(np.float64), 1)
    assert_ulp(grad, grad32.astype(np.float64), 1)
    q = np.asarray(jax.nn.one_hot(y, SHAPE[-1]), dtype)
    assert dce(xh, q).dtype == dtype


def test_class_axes():
    rng = np.random.default_rng(13)
    x = rng.standard_normal((3, 2, 4, 5)).astype(np.float32)
    y = rng.integers(0, 10, (3, 4)).astype(np.int32)
    # Classes on axes (1, 3): a flat row-major index over (2, 5).
    flat = np.moveaxis(x, 1, 2).reshape(3, 4, 10)
    np.testing.assert_allclose(ice(x, y, axis=(1, 3)), ice(flat, y), 1e-6)
    q = np.asarray(jax.nn.softmax(x, axis=0))
    np.testing.assert_allclose(
        dce(x, q, axis=0),
        jax.jit(optax.softmax_cross_entropy, static_argnames="axis")(
            x, q, axis=0
        ),
        rtol=1e-6,
    )


def test_vmap_and_jit():
    x, y, _ = _inputs(seed=14)
    batched = jax.jit(jax.vmap(lambda x, y: ICE(x, y, label_smoothing=0.1)))
    np.testing.assert_allclose(
        batched(x[None], y[None])[0],
        ice(x, y, label_smoothing=0.1),
        rtol=1e-6,
    )
    grads = jax.jit(jax.vmap(jax.grad(lambda x, y: ICE(x, y))))(x, y)
    np.testing.assert_allclose(grads, ice_grad(x, y)[1], atol=1e-7)


def test_empty_class_axis():
    x = np.zeros((3, 0), np.float32)
    np.testing.assert_array_equal(ice(x, np.zeros(3, np.int32)), 0.0)


# --------------------------------------------------------------------------
# Trace-time errors


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"label_smoothing": -0.1}, ValueError),
        ({"label_smoothing": 1.0}, ValueError),
        ({"z_loss": -1.0}, ValueError),
        ({"logit_softcap": 0.0}, ValueError),
        ({"label_smoothing": "0.1"}, TypeError),
        ({"ignore_index": 1.5}, TypeError),
    ],
)
def test_bad_hyperparameters(kwargs, error):
    x, y, _ = _inputs()
    with pytest.raises(error, match=r"jax_act\.softmax_cross_entropy"):
        ICE(x, y, **kwargs)


def test_traced_hyperparameter_is_a_clear_error():
    x, y, _ = _inputs()
    with pytest.raises(TypeError, match="concrete"):
        jax.jit(lambda a: ICE(x, y, label_smoothing=a))(0.1)


def test_bad_labels():
    x, y, _ = _inputs()
    with pytest.raises(TypeError, match="integer"):
        ICE(x, y.astype(np.float32))
    with pytest.raises(TypeError, match="integer"):
        ICE(x, y > 2)
    with pytest.raises(ValueError, match="shape"):
        ICE(x, y[:3])
    with pytest.raises(ValueError, match="shape"):
        DCE(x, np.ones(SHAPE[0], np.float32))
    with pytest.raises(TypeError, match="where"):
        ICE(x, y, where=np.ones(SHAPE, np.float32))


# --------------------------------------------------------------------------
# Known shortcomings


@pytest.mark.xfail(
    strict=True,
    reason="the gradient of an ignored example is 0 * softmax: NaN when "
    "its logits hold a NaN (the loss itself is 0)",
)
def test_ignored_row_with_nan_logits_has_zero_gradient():
    x, _, _ = _inputs()
    x[1, 2] = np.nan
    y = np.array([0, -100, 0, 0], np.int32)
    _, grad = ice_grad(x, y, ignore_index=-100)
    assert np.all(grad[1] == 0)
