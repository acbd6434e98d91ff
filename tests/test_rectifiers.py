"""Tests for relu, leaky_relu, prelu, silu and swish.

The rectifiers are exact up to one rounding of slope * x, so they are
compared with float64 formulas bit for bit (float32) or to the rounded
float64 value (halves); their derivative conventions at 0 with jax.nn's.
silu and swish are measured in ULPs against float64 (and mpmath in the
far tails), their derivatives in ULPs of the largest term.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import GRAD_TOL
from jax.test_util import check_grads
from reference import gated64, gated_mp
from reference import ulp_distance as _ulp_distance

import jax_act

TINY = float(np.finfo(np.float32).tiny)
HALVES = (jnp.bfloat16, jnp.float16)


def ulp_distance(got, expected):
    with np.errstate(over="ignore", invalid="ignore"):
        return _ulp_distance(got, expected)


def slope_ulps(got, expected, scale, dtype):
    got = np.asarray(got).astype(np.float64)
    with np.errstate(over="ignore"):
        spacing = np.spacing(np.abs(scale).astype(dtype)).astype(np.float64)
    spacing = np.maximum(spacing, float(jnp.finfo(dtype).smallest_normal))
    return np.abs(got - expected) / spacing


@functools.cache
def programs(name, beta=None):
    """Jitted value and element-wise derivative."""
    f = getattr(jax_act, name)
    if beta is not None:
        f = functools.partial(f, beta=beta)

    def slope(x):
        return jax.jvp(f, (x,), (jnp.ones_like(x),))[1]

    return jax.jit(f), jax.jit(slope)


@functools.cache
def f32_inputs():
    sweep = np.linspace(-100.0, 20.0, 200_001)
    mags = np.geomspace(1e-38, 3.4e38, 20_001)
    x = np.concatenate([sweep, mags, -mags, [0.0]])
    return np.unique(x.astype(np.float32))


@functools.cache
def half_inputs(dtype):
    bits = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    values = bits.view(jnp.dtype(dtype))
    return values[np.isfinite(values.astype(np.float32))]


# --------------------------------------------------------------------------
# relu


def test_relu_values_and_derivative_convention():
    x = np.float32([-2.0, -0.0, 0.0, 1e-30, 3.0, np.inf, -np.inf])
    value, slope = programs("relu")
    np.testing.assert_array_equal(value(x), np.maximum(x, 0))
    # relu'(0) = 0 as in jax.nn.relu.
    np.testing.assert_array_equal(slope(x), [0, 0, 0, 1, 1, 1, 0])
    np.testing.assert_array_equal(
        jax.jit(jax.vmap(jax.grad(jax.nn.relu)))(x), slope(x)
    )
    v, d = value(np.float32([np.nan])), slope(np.float32([np.nan]))
    assert np.isnan(v[0]) and d[0] == 0


@pytest.mark.parametrize("dtype", HALVES)
def test_relu_half_precision_exact(dtype):
    x = half_inputs(dtype)
    value, slope = programs("relu")
    got = np.asarray(value(x))
    assert got.dtype == x.dtype
    expected = np.maximum(x, 0).astype(x.dtype)
    # XLA:CPU flushes bfloat16 subnormals (it computes them in float32).
    tiny = float(jnp.finfo(dtype).smallest_normal)
    kept = np.abs(x.astype(np.float32)) >= tiny
    np.testing.assert_array_equal(got[kept], expected[kept])
    assert np.all(got[~kept].astype(np.float32) <= tiny)
    assert np.asarray(slope(x)).dtype == x.dtype


# --------------------------------------------------------------------------
# leaky_relu and prelu


def test_leaky_relu_values_and_derivatives_match_jax_nn():
    x = np.float32([-3.0, -1e-30, -0.0, 0.0, 2.0, -np.inf, np.inf])
    value, slope = programs("leaky_relu")
    np.testing.assert_array_equal(value(x), jax.nn.leaky_relu(x))
    # At 0 the identity branch: derivative 1, as jax.nn.leaky_relu.
    theirs = jax.jit(jax.vmap(jax.grad(jax.nn.leaky_relu)))(x)
    np.testing.assert_array_equal(slope(x), theirs)
    assert slope(np.float32([0.0]))[0] == 1


def test_leaky_relu_gradient_in_the_slope():
    x = jnp.asarray([-2.0, -0.5, 0.0, 3.0])

    def ours(a):
        return jnp.sum(jax_act.leaky_relu(x, negative_slope=a))

    def theirs(a):
        return jnp.sum(jax.nn.leaky_relu(x, negative_slope=a))

    np.testing.assert_allclose(jax.grad(ours)(0.1), -2.5)
    np.testing.assert_allclose(jax.grad(ours)(0.1), jax.grad(theirs)(0.1))


@pytest.mark.parametrize("dtype", HALVES)
def test_leaky_relu_half_precision_rounded_once(dtype):
    """slope * x in float32, rounded once: within 1 ULP of the exact
    product (jax.nn rounds 0.01 to the dtype first)."""
    x = half_inputs(dtype)
    value, _ = programs("leaky_relu")
    got = np.asarray(value(x))
    x64 = x.astype(np.float64)
    expected = np.where(x64 >= 0, x64, 0.01 * x64)
    normal = np.abs(expected) >= float(jnp.finfo(dtype).smallest_normal)
    assert np.max(np.where(normal, ulp_distance(got, expected), 0)) <= 1


def test_prelu_per_channel_values():
    x = np.float32([[-1.0, -2.0, 3.0], [4.0, -5.0, 0.0]])
    a = np.float32([0.1, 0.2, 0.3])
    got = jax.jit(jax_act.prelu)(x, a)
    np.testing.assert_array_equal(got, np.where(x >= 0, x, a * x))


def test_prelu_gradient_flows_to_both_arguments():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((5, 3)), jnp.float32)
    a = jnp.asarray([0.1, 0.25, -0.5], jnp.float32)
    ct = jnp.asarray(rng.standard_normal((5, 3)), jnp.float32)

    def loss(f, x, a):
        return jnp.sum(f(x, a) * ct)

    def plain(x, a):
        return jnp.where(x >= 0, x, a[None, :] * x)

    got = jax.jit(jax.grad(functools.partial(loss, jax_act.prelu), (0, 1)))
    want = jax.grad(functools.partial(loss, plain), (0, 1))
    for g, w in zip(got(x, a), want(x, a), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-6)
    # Exact zeros keep the identity branch for x and give no slope gradient.
    zero = jnp.zeros((1, 3))
    _, ga = jax.grad(functools.partial(loss, jax_act.prelu), (0, 1))(zero, a)
    np.testing.assert_array_equal(ga, 0)
    check_grads(
        jax.jit(jax_act.prelu), (x, a), order=2, modes=("fwd", "rev"),
        **GRAD_TOL,
    )  # fmt: skip


def test_prelu_slope_not_differentiated_is_skipped():
    """With a constant slope the slope tangent is a symbolic zero: the
    derivative program has no slope term at all."""
    a = jnp.asarray([0.1, 0.2])
    grad = jax.grad(lambda x: jnp.sum(jax_act.prelu(x, a)))
    np.testing.assert_array_equal(
        grad(jnp.asarray([[-1.0, 1.0]])), np.float32([[0.1, 1.0]])
    )


@pytest.mark.parametrize(
    "shape", [(4,), (2, 4), (3, 1, 1)], ids=["wrong-last", "bigger", "rank"]
)
def test_prelu_slope_that_does_not_broadcast_raises(shape):
    x = jnp.ones((2, 3))
    with pytest.raises(ValueError, match="negative_slope"):
        jax_act.prelu(x, jnp.ones(shape))
    with pytest.raises(ValueError, match="negative_slope"):
        jax.jit(jax_act.prelu)(x, jnp.ones(shape))


def test_rectifiers_reject_complex_input():
    z = jnp.ones(3, jnp.complex64)
    for name in ("relu", "leaky_relu", "silu"):
        with pytest.raises(TypeError, match=name):
            getattr(jax_act, name)(z)
    with pytest.raises(TypeError, match="prelu"):
        jax_act.prelu(z, 0.1)
    with pytest.raises(TypeError, match="swish"):
        jax_act.swish(jnp.ones(3), beta=1j)


# --------------------------------------------------------------------------
# silu and swish

# (name, beta) pairs measured against x * sigmoid(beta x).
GATED = [("silu", None, 1.0), ("swish", 0.7, 0.7), ("swish", -1.3, -1.3)]


@pytest.mark.parametrize(("name", "beta", "b"), GATED)
def test_gated_float32_within_4_ulp_and_slopes_within_8(name, beta, b):
    x = f32_inputs()
    value, slope = programs(name, beta)
    expected, d_expected, scale = gated64(x.astype(np.float64), b)
    got = np.asarray(value(x))
    dist = np.where(np.abs(expected) >= TINY, ulp_distance(got, expected), 0)
    assert dist.max() <= 4, f"{dist.max():.2f} ULP at {x[np.argmax(dist)]}"
    dist = slope_ulps(slope(x), d_expected, scale, np.float32)
    dist = np.where(np.abs(scale) >= TINY, dist, 0)
    assert dist.max() <= 8, f"{dist.max():.2f} ULP at {x[np.argmax(dist)]}"


def test_silu_far_tail_against_mpmath():
    """Down to x = -91.8, where jax.nn.silu returns 0 below -88.7."""
    x = -np.geomspace(1.0, 91.8, 200).astype(np.float32)
    expected = gated_mp(x, 1)
    assert np.all(np.abs(expected) >= TINY)
    got = np.asarray(programs("silu")[0](x))
    assert np.max(ulp_distance(got, expected)) <= 4
    assert np.asarray(jax.nn.silu(np.float32(-90.0))) == 0


@pytest.mark.parametrize(("name", "beta", "b"), GATED[:2])
@pytest.mark.parametrize("dtype", HALVES)
def test_gated_half_precision_within_1_ulp(name, beta, b, dtype):
    x = half_inputs(dtype)
    value, slope = programs(name, beta)
    got = np.asarray(value(x))
    assert got.dtype == x.dtype
    x64 = x.astype(np.float64)
    expected, d_expected, scale = gated64(x64, b)
    normal = np.abs(expected) >= float(jnp.finfo(dtype).smallest_normal)
    assert np.max(np.where(normal, ulp_distance(got, expected), 0)) <= 1
    d_got = np.asarray(slope(x))
    assert d_got.dtype == x.dtype
    dist = slope_ulps(d_got, d_expected, scale, dtype)
    assert np.max(np.where(np.abs(scale) >= TINY, dist, 0)) <= 1
    assert np.all(np.isfinite(got.astype(np.float32)))
    assert np.all(np.isfinite(d_got.astype(np.float32)))


def test_silu_special_values_and_jax_nn_agreement():
    x = np.float32([np.inf, -np.inf, np.nan, 0.0])
    value, slope = programs("silu")
    v, d = np.asarray(value(x)), np.asarray(slope(x))
    np.testing.assert_array_equal(v[[0, 1, 3]], [np.inf, 0.0, 0.0])
    np.testing.assert_array_equal(d[[0, 1, 3]], [1.0, 0.0, 0.5])
    assert np.isnan(v[2]) and np.isnan(d[2])
    x = np.linspace(-10.0, 10.0, 1001, dtype=np.float32)
    np.testing.assert_allclose(value(x), jax.nn.silu(x), rtol=2e-6, atol=0)
    assert jax_act.swish is not jax_act.silu  # swish takes a beta


def test_swish_array_beta_matches_static_and_gets_gradients():
    x = jnp.linspace(-30.0, 10.0, 401, dtype=jnp.float32)
    # The same beta: float32's 0.7, not the decimal one.
    static = programs("swish", float(np.float32(0.7)))[0](x)
    traced = jax.jit(jax_act.swish)(x, jnp.float32(0.7))
    np.testing.assert_allclose(traced, static, rtol=3e-7, atol=0)

    # d/d beta of sum(x sigmoid(beta x)) against float64 autodiff.
    def total(f, b):
        return jnp.sum(f(x, b))

    got = jax.jit(jax.grad(functools.partial(total, jax_act.swish)))(0.7)
    with jax.enable_x64(True):
        x64 = np.asarray(x, np.float64)
        want = jax.grad(lambda b: jnp.sum(x64 * jax.nn.sigmoid(b * x64)))(0.7)
    np.testing.assert_allclose(got, want, rtol=1e-5)

    # Per-channel beta, gradient to both arguments, second order.
    xs = jnp.asarray(np.random.default_rng(1).standard_normal((4, 3)) * 3)
    beta = jnp.asarray([0.5, 1.0, 1.702], jnp.float32)
    check_grads(
        jax.jit(jax_act.swish), (xs.astype(jnp.float32), beta), order=2,
        modes=("fwd", "rev"), eps=1e-2, **GRAD_TOL,
    )  # fmt: skip
    with pytest.raises(ValueError, match="beta"):
        jax_act.swish(xs, jnp.ones(4))


def test_swish_beta_zero_and_infinite_inputs():
    x = np.float32([np.inf, -np.inf, -3.0, 5.0])
    np.testing.assert_array_equal(jax_act.swish(x, beta=0.0), x / 2)
    neg = np.asarray(jax.jit(jax_act.swish)(x, jnp.float32(-2.0)))
    np.testing.assert_array_equal(neg[:2], [0.0, -np.inf])


def test_silu_check_grads_and_transformations():
    x = jnp.asarray([-100.0, -90.0, -3.0, -1.28, 0.0, 0.5, 20.0, 1e4])
    check_grads(
        jax.jit(jax_act.silu), (x,), order=2, modes=("fwd", "rev"),
        eps=1e-2, **GRAD_TOL,
    )  # fmt: skip
    _, slope = programs("silu")
    hess = jax.jit(jax.hessian(lambda v: jnp.sum(jax_act.silu(v))))(x)
    with jax.enable_x64(True):
        second = jax.vmap(jax.grad(jax.grad(jax.nn.silu)))(
            np.asarray(x, np.float64)
        )
    np.testing.assert_allclose(
        jnp.diagonal(hess), second, rtol=1e-5, atol=1e-37
    )
    remat = jax.jit(
        jax.grad(lambda v: jnp.sum(jax.checkpoint(jax_act.silu)(v)))
    )
    np.testing.assert_array_equal(remat(x), slope(x))
    np.testing.assert_array_equal(
        jnp.diagonal(jax.jit(jax.jacrev(jax_act.silu))(x)), slope(x)
    )


@pytest.mark.xfail(
    strict=True,
    reason="for |beta| below about 3e-6 and |x| past 3e7, swish's gate is "
    "taken as 0 once |beta x| > 104.7, though x sigmoid(beta x) can still "
    "be a (tiny) normal number",
)
def test_swish_tiny_beta_huge_x():
    x = np.float32([-1e10])
    expected = gated_mp(x, 1.1e-8)
    assert np.abs(expected[0]) >= TINY
    got = np.asarray(jax_act.swish(x, beta=1.1e-8))
    assert np.max(ulp_distance(got, expected)) <= 4
