"""Tests for softmax, log_softmax and logsumexp.

Every numbered point of the behaviour contract in the module docstrings is
checked against a float64 NumPy or mpmath reference, and every derivative
against a float64 formula or autodiff of a plain float64 formula.

Compiling dominates the run time on CPU, so almost every test goes through
a few shared jitted programs (`forward`, `gradients`, `tangents`) that
evaluate all three functions at once, on one canonical shape wherever the
test allows: each program compiles once per shape, dtype and static
argument, and the tests reuse it.
"""

import functools
import itertools

import chex
import hypothesis
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ULP_TOL
from jax.test_util import check_grads
from reference import (
    assert_ulp,
    log_softmax64,
    log_softmax_mp,
    logsumexp64,
    softmax64,
    softmax_mp,
)

import jax_act

NAMES = ("softmax", "log_softmax", "logsumexp")
FUNCS = {name: getattr(jax_act, name) for name in NAMES}
F32 = jnp.dtype(jnp.float32)
SHAPE = (4, 8)  # the canonical shape: most tests fit their rows in it


# --------------------------------------------------------------------------
# Shared programs


def _numpy_out(jitted):
    """Returns NumPy arrays: indexing a jax.Array eagerly compiles a slice
    for every new index, which costs more than these tests' arithmetic."""

    @functools.wraps(jitted)
    def call(*args, **kwargs):
        return jax.tree.map(np.asarray, jitted(*args, **kwargs))

    return call


def _all_three(x, where, temperature, axis):
    """The three functions; logsumexp keeps dims so that shapes line up."""
    kw = {} if temperature is None else {"temperature": temperature}
    return {
        "softmax": jax_act.softmax(x, axis, where, **kw),
        "log_softmax": jax_act.log_softmax(x, axis, where, **kw),
        "logsumexp": jax_act.logsumexp(x, axis, where=where, keepdims=True),
    }


@_numpy_out
@functools.partial(jax.jit, static_argnames="axis")
def forward(x, where=None, temperature=None, axis=-1):
    return _all_three(x, where, temperature, axis)


def _finite_part(y):
    """y with its infinite entries (constants: masked, empty rows) at 0."""
    return jnp.where(jnp.isfinite(y), y, 0)


@_numpy_out
@functools.partial(jax.jit, static_argnames="axis")
def gradients(x, cot, where=None, temperature=None, axis=-1):
    """For each function f, the gradient of sum(finite(f) * cot[f]):
    with respect to x, or to (x, temperature) when one is given."""

    def loss(name, x, t):
        y = _all_three(x, where, t, axis)[name]
        return jnp.sum(_finite_part(y) * cot[name])

    if temperature is None:
        return {n: jax.grad(lambda x, n=n: loss(n, x, None))(x) for n in NAMES}
    return {
        n: jax.grad(functools.partial(loss, n), argnums=(0, 1))(x, temperature)
        for n in NAMES
    }


@_numpy_out
@jax.jit
def tangents(x, x_dot, where=None):
    """Forward-mode tangents of the three functions (infinite parts at 0)."""

    def finite(x):
        return {
            k: _finite_part(v)
            for k, v in _all_three(x, where, None, -1).items()
        }

    return jax.jvp(finite, (x,), (x_dot,))[1]


def _cotangents(x, dtype=None):
    """Fixed, non-symmetric cotangents for the three outputs of `x`."""
    n = int(np.prod(x.shape))
    w = np.linspace(-1.0, 2.0, n).reshape(x.shape)
    dtype = dtype or x.dtype
    return {
        "softmax": jnp.asarray(w, dtype),
        "log_softmax": jnp.asarray(w[..., ::-1], dtype),
        "logsumexp": jnp.asarray(w[..., :1] + 0.5, dtype),
    }


# --------------------------------------------------------------------------
# Float64 references


def _f64(x):
    return np.asarray(x).astype(np.float64)


def _log_softmax64_axes(x, axis=-1, where=None, temperature=1.0):
    """log_softmax64 over an int, tuple or None axis: the reduced axes are
    moved last and flattened into one."""
    x = _f64(x) / _f64(temperature)
    if where is not None:
        x = np.where(np.broadcast_to(where, x.shape), x, -np.inf)
    axes = range(x.ndim) if axis is None else np.atleast_1d(axis)
    axes = sorted(int(a) % x.ndim for a in axes)
    rest = [a for a in range(x.ndim) if a not in axes]
    moved = np.transpose(x, rest + axes)
    flat = moved.reshape(*moved.shape[: len(rest)], -1)
    out = log_softmax64(flat).reshape(moved.shape)
    return np.transpose(out, np.argsort(rest + axes))


def reference(x, where=None, temperature=1.0, axis=-1):
    """Float64 values of the three functions, shaped like `forward`'s.

    The "logsumexp_scale" entry is the larger of |logsumexp| and the row's
    largest |x|: logsumexp = max + log(sum) cancels when the two terms are
    close and opposite, so its error is measured in ULPs of that scale.
    """
    x = _f64(x)
    z = x / _f64(temperature)
    lse = logsumexp64(x, axis=axis, where=where, keepdims=True)
    masked = x if where is None else np.where(where, x, 0)
    with np.errstate(invalid="ignore"):
        row_max = np.max(np.abs(masked), axis=axis, keepdims=True)
        scale = np.where(
            np.isfinite(lse), np.maximum(np.abs(lse), row_max), lse
        )
    return {
        "softmax": softmax64(z, axis=axis, where=where),
        "log_softmax": _log_softmax64_axes(z, axis=axis, where=where),
        "logsumexp": lse,
        "logsumexp_scale": scale,
    }


def reference_vjp(x, cot, where=None, temperature=None):
    """Float64 gradients of sum(finite(f) * cot[f]), as `gradients` returns.

    With z = x / T and p = softmax(z), the gradient in z is p (c - <p, c>)
    for softmax and c - p sum(c) for log_softmax, with c zeroed where the
    output is infinite; then d/dx = g / T and d/dT = -sum(g z) / T.
    logsumexp takes no temperature: its gradient is c softmax(x).
    """
    t = 1.0 if temperature is None else _f64(temperature)
    x = _f64(x)
    if where is not None:
        x = np.where(where, x, -np.inf)
    z = x / t
    p = softmax64(z)
    c = {name: _f64(cot[name]) for name in NAMES}
    c_log = np.where(np.isfinite(log_softmax64(z)), c["log_softmax"], 0)
    lse = logsumexp64(x, keepdims=True)
    c_lse = np.where(np.isfinite(lse), c["logsumexp"], 0)
    g_z = {
        "softmax": p
        * (c["softmax"] - np.sum(p * c["softmax"], -1, keepdims=True)),
        "log_softmax": c_log - p * np.sum(c_log, axis=-1, keepdims=True),
    }
    g_lse = c_lse * softmax64(x)
    if temperature is None:
        return {**g_z, "logsumexp": g_lse}
    z_finite = np.where(np.isfinite(z), z, 0)
    result = {"logsumexp": (g_lse, np.zeros(np.shape(t)))}
    for name, g in g_z.items():
        g_t = -np.sum(g * z_finite, axis=-1, keepdims=True) / t
        result[name] = (g / t, np.sum(g_t) if np.ndim(t) == 0 else g_t)
    return result


def reference_jvp(x, x_dot, where=None):
    """Float64 tangents, as `tangents` returns: p (dz - <p, dz>),
    dz - <p, dz> and <p, dz>, with constant (infinite) outputs at 0."""
    z = _f64(x)
    if where is not None:
        z = np.where(where, z, -np.inf)
    p = softmax64(z)
    dz = np.where(np.isfinite(z), _f64(x_dot), 0)
    mean = np.sum(p * dz, axis=-1, keepdims=True)
    finite_ls = np.isfinite(log_softmax64(z))
    finite_lse = np.isfinite(logsumexp64(z, keepdims=True))
    return {
        "softmax": p * (dz - mean),
        "log_softmax": np.where(finite_ls, dz - mean, 0),
        "logsumexp": np.where(finite_lse, mean, 0),
    }


def logsumexp_mp(row):
    """logsumexp of a 1-D float array in mpmath, rounded to float64."""
    import mpmath

    return float(
        mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(float(v))) for v in row))
    )


def assert_all_ulp(got, want, max_ulp):
    """assert_ulp for each function; logsumexp in ULPs of its scale."""
    for name in NAMES:
        actual, expected = np.asarray(got[name]), want[name]
        if name == "logsumexp" and "logsumexp_scale" in want:
            # Shift the error onto the scale: |a - e| in ULPs of the scale.
            scale = want["logsumexp_scale"]
            with np.errstate(invalid="ignore"):
                err = _f64(actual) - expected
                err = np.where(np.isfinite(expected), err, 0)
            actual = (scale + err).astype(actual.dtype)
            expected = np.where(np.isfinite(expected), scale, expected)
            actual = np.where(np.isfinite(want[name]), actual, got[name])
        try:
            assert_ulp(actual, expected, max_ulp)
        except AssertionError as err:
            raise AssertionError(f"{name}: {err}") from None


def assert_grads_close(got, want, rtol=1e-5, atol=1e-6):
    """Compares gradient dicts (x alone, or (x, T) pairs) per function."""
    for name in NAMES:
        for g, w in zip(
            jax.tree.leaves(got[name]), jax.tree.leaves(want[name]), strict=True
        ):
            np.testing.assert_allclose(
                _f64(g), w, rtol=rtol, atol=atol, err_msg=name
            )


def _normal_rows(seed, scale=3.0, shape=SHAPE):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * scale).astype(np.float32)


# --------------------------------------------------------------------------
# Accuracy


def test_float32_accuracy_on_normal_rows():
    """<= 6 ULP on rows of 4096 standard normals scaled by 1, 10 and 30."""
    rng = np.random.default_rng(0)
    scale = np.array([[1.0], [10.0], [30.0]])
    x = (rng.standard_normal((3, 4096)) * scale).astype(np.float32)
    got = forward(x)
    tol = ULP_TOL[F32]
    # Every row against float64, rows at scales 10 and 30 against mpmath.
    assert_all_ulp(got, reference(x), tol)
    for row in (1, 2):
        assert_ulp(got["softmax"][row], softmax_mp(x[row]), tol)
        assert_ulp(got["log_softmax"][row], log_softmax_mp(x[row]), tol)


def test_log_softmax_largest_entry_of_confident_row():
    """The max entry is -log1p(rest), tiny: measured in its own ULPs."""
    rng = np.random.default_rng(1)
    rows = np.full((4, 64), -np.inf)
    rows[0] = np.concatenate([[0.0], rng.uniform(-40, -20, 63)])
    rows[1] = np.concatenate([[5.0], rng.uniform(-30, -10, 63)])
    rows[2, :2] = [0.0, -30.0]
    rows[3] = np.concatenate([[1.0, 1.0], rng.uniform(-60, -17, 62)])
    rows = rows.astype(np.float32)
    out = forward(rows)["log_softmax"]
    expected = np.stack([log_softmax_mp(r) for r in rows])
    assert_ulp(out, expected, ULP_TOL[F32])
    # The largest entries really are tiny: the log1p path was taken.
    assert -1e-8 < float(out[0, 0]) < 0
    assert float(out[2, 0]) == pytest.approx(-9.357622968840175e-14, rel=1e-6)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_rows_of_32768(dtype):
    """bf16/f16 results within 1 ULP of the output dtype."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 32768)) * np.array([[1.0], [10.0]])
    x = jnp.asarray(x, dtype)
    got = forward(x)
    for name in NAMES:
        assert got[name].dtype == dtype
    assert_all_ulp(got, reference(x), ULP_TOL[jnp.dtype(dtype)])


# --------------------------------------------------------------------------
# 1. Max-shifted: stable for any finite magnitudes


def _huge_rows():
    x = _normal_rows(3)
    x[0, :6] = [1e30, -1e30, 0.0, 1e30, 5.0, -5.0]
    x[1] = -1e30
    x[2, :6] = [3e38, 0.0, 1.0, -2.0, 1e38, 3e38]
    x[3, :6] = [1e9, -1e9, 1e9 - 64, 0.0, 1e9 - 128, -1e9]
    return x


def test_huge_magnitudes_are_stable():
    x = _huge_rows()
    assert_all_ulp(forward(x), reference(x), 2)
    # 3e38 + log 2 rounds back to 3e38: no overflow to inf.
    assert float(forward(x)["logsumexp"][2, 0]) == np.float32(3e38)
    cot = _cotangents(x)
    grads = gradients(x, cot)
    assert_grads_close(grads, reference_vjp(x, cot))


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_huge_magnitudes_half(dtype):
    big = float(jnp.finfo(dtype).max)
    x = np.asarray(_normal_rows(4), np.float64)
    x[0, :3] = [big, 0.0, 1.0]
    x[1, :] = -big
    x[1, 0] = 1.0
    # big - (-big) overflows the output dtype: log_softmax rounds to -inf.
    x[2, :3] = [big, -big, 0.0]
    x = jnp.asarray(x, dtype)
    got = forward(x)
    want = reference(x)
    assert_ulp(got["softmax"], want["softmax"], 1)
    assert_ulp(got["log_softmax"][:2], want["log_softmax"][:2], 1)
    logs = _f64(got["log_softmax"][2])
    assert logs[0] == 0 and logs[1] == -np.inf
    assert logs[2] == float(jnp.asarray(-big, dtype))
    assert_ulp(got["logsumexp"], want["logsumexp"], 1)


# --------------------------------------------------------------------------
# 2. axis and where


@pytest.mark.parametrize("axis", [1, (0, 2), (2, 0), None])
def test_axis_forms(axis):
    x = _normal_rows(5, scale=4.0, shape=(2, 3, 5))
    got = forward(x, axis=axis)
    want = reference(x, axis=axis)
    for name in NAMES:
        assert got[name].shape == want[name].shape
    assert_all_ulp(got, want, 6)


def test_axis_tuple_gradients():
    # Normalising over (0, 2) equals normalising the moved, flattened axes.
    x = _normal_rows(6, shape=(2, 3, 4))
    flat = np.transpose(x, (1, 0, 2)).reshape(3, 8)
    cot = _cotangents(x)
    got = gradients(x, cot, axis=(0, 2))

    def flatten(v):
        return np.transpose(np.asarray(v), (1, 0, 2)).reshape(3, 8)

    cot_flat = {n: flatten(cot[n]) for n in ("softmax", "log_softmax")}
    cot_flat["logsumexp"] = np.zeros((3, 1))
    want = reference_vjp(flat, cot_flat)
    for name in ("softmax", "log_softmax"):
        np.testing.assert_allclose(
            flatten(got[name]), want[name], rtol=1e-5, atol=1e-6
        )


def test_logsumexp_axis_defaults_to_all():
    x = np.arange(6.0, dtype=np.float32).reshape(2, 3)
    out = jax.jit(jax_act.logsumexp)(x)
    assert out.shape == ()
    assert_ulp(out, logsumexp64(x, axis=None), 1)


def _masked_rows():
    x = _normal_rows(7)
    rng = np.random.default_rng(7)
    mask = rng.uniform(size=SHAPE) < 0.6
    mask[:, 0] = True
    # Values under the mask must not matter: huge finite garbage there.
    garbage = np.float32(3e38) * np.sign(rng.uniform(-1, 1, SHAPE))
    return x, np.where(mask, x, garbage).astype(np.float32), mask


def test_where_masks_entries():
    x, x_dirty, mask = _masked_rows()
    got = forward(x_dirty, mask)
    assert_all_ulp(got, reference(x, mask), 6)
    assert np.all(np.asarray(got["softmax"])[~mask] == 0)
    assert np.all(np.asarray(got["log_softmax"])[~mask] == -np.inf)

    # Masked entries get exactly zero gradient, in both modes.
    cot = _cotangents(x)
    grads = gradients(x_dirty, cot, mask)
    for name in NAMES:
        assert np.all(np.asarray(grads[name])[~mask] == 0), name
    assert_grads_close(grads, reference_vjp(x, cot, mask))
    x_dot = np.where(mask, 1.0, 1e30).astype(np.float32)
    x_dot[:, 0] = np.linspace(-1, 1, 4)
    got_dot = tangents(x_dirty, x_dot, mask)
    assert_grads_close(got_dot, reference_jvp(x, x_dot, mask))


def test_where_ignores_nan_and_inf_under_the_mask():
    x, _, mask = _masked_rows()
    x_dirty = np.where(mask, x, np.nan).astype(np.float32)
    x_dirty[1, ~mask[1]] = np.inf
    got = forward(x_dirty, mask)
    assert_all_ulp(got, reference(x, mask), 6)
    grads = gradients(x_dirty, _cotangents(x), mask)
    assert_grads_close(grads, reference_vjp(x, _cotangents(x), mask))


@pytest.mark.parametrize("mask_shape", [(8,), (1, 8)])
def test_where_broadcasts(mask_shape):
    x = _normal_rows(8)
    row_mask = np.arange(8) % 3 != 1
    full = np.broadcast_to(row_mask, SHAPE)
    got = forward(x, row_mask.reshape(mask_shape))
    assert_all_ulp(got, reference(x, full), 6)


@_numpy_out
@jax.jit
def _jax_nn_masked(x, mask):
    return {
        "softmax": jax.nn.softmax(x, where=mask),
        "log_softmax": jax.nn.log_softmax(x, where=mask),
        "logsumexp": jax.nn.logsumexp(x, axis=-1, where=mask, keepdims=True),
    }


def test_where_matches_jax_nn_on_benign_input():
    x, x_dirty, mask = _masked_rows()
    got, theirs = forward(x_dirty, mask), _jax_nn_masked(x, mask)
    np.testing.assert_allclose(got["softmax"], theirs["softmax"], rtol=1e-5)
    np.testing.assert_allclose(
        got["log_softmax"][mask], theirs["log_softmax"][mask], rtol=1e-5
    )
    np.testing.assert_allclose(got["logsumexp"], theirs["logsumexp"], rtol=1e-6)


# --------------------------------------------------------------------------
# 3. Rows with nothing to normalise


def _empty_rows():
    """Row 0 plain, 1 all -inf, 2 fully masked, 3 partly masked and -inf."""
    x = _normal_rows(9)
    x[1] = -np.inf
    x[3, 2:5] = -np.inf
    mask = np.ones(SHAPE, bool)
    mask[2] = False
    mask[3, 5:] = False
    return x, mask


def test_fully_masked_and_all_neg_inf_rows():
    x, mask = _empty_rows()
    got = forward(x, mask)
    for name, empty in [
        ("softmax", 0.0),
        ("log_softmax", -np.inf),
        ("logsumexp", -np.inf),
    ]:
        assert np.all(np.asarray(got[name])[1:3] == empty), name
    assert_all_ulp(got, reference(x, mask), 6)

    # Gradients: zero in the empty rows, never NaN, in both modes.
    cot = _cotangents(x)
    grads = gradients(x, cot, mask)
    for name in NAMES:
        g = np.asarray(grads[name])
        assert np.all(np.isfinite(g)) and np.all(g[1:3] == 0), name
    assert_grads_close(grads, reference_vjp(x, cot, mask))
    x_dot = np.linspace(-1, 1, 32, dtype=np.float32).reshape(SHAPE)
    got_dot = tangents(x, x_dot, mask)
    for name in NAMES:
        t = np.asarray(got_dot[name])
        assert np.all(np.isfinite(t)) and np.all(t[1:3] == 0), name
    assert_grads_close(got_dot, reference_jvp(x, x_dot, mask))


@_numpy_out
@jax.jit
def _hessian_vector_products(x, v, mask):
    out = {}
    for name in NAMES:

        def loss(x, name=name):
            y = _all_three(x, mask, None, -1)[name]
            return jnp.sum(_finite_part(y) * _cotangents(x)[name])

        out[name] = jax.jvp(jax.grad(loss), (x,), (v,))[1]
    return out


def test_second_order_in_empty_rows_is_zero():
    x, mask = _empty_rows()
    v = np.linspace(1, 2, 32, dtype=np.float32).reshape(SHAPE)
    hvp = _hessian_vector_products(x, v, mask)
    for name in NAMES:
        h = np.asarray(hvp[name])
        assert np.all(np.isfinite(h)) and np.all(h[1:3] == 0), name


def test_empty_axis():
    x = np.zeros((3, 0), np.float32)
    got = forward(x)
    assert got["softmax"].shape == got["log_softmax"].shape == (3, 0)
    np.testing.assert_array_equal(got["logsumexp"], np.full((3, 1), -np.inf))


# --------------------------------------------------------------------------
# 4. +inf and NaN


def _pos_inf_rows():
    x = _normal_rows(10)
    x[0, :6] = [np.inf, 1.0, np.inf, -np.inf, 0.0, 0.0]
    x[1, 0] = np.inf
    return x


def test_pos_inf_entries_share_the_mass():
    x = _pos_inf_rows()
    got = forward(x)
    np.testing.assert_array_equal(
        got["softmax"][:2], [[0.5, 0, 0.5, 0, 0, 0, 0, 0], [1] + [0] * 7]
    )
    np.testing.assert_allclose(
        got["log_softmax"][0, [0, 2]], -np.log(2), rtol=1e-7
    )
    assert got["log_softmax"][1, 0] == 0
    np.testing.assert_array_equal(got["logsumexp"][:2, 0], [np.inf] * 2)
    want = reference(x[2:])
    assert_all_ulp({n: got[n][2:] for n in NAMES}, want, 6)

    # Finite gradients, equal to the limit as the +inf entries grow: for
    # softmax the Jacobian of [M, 1, M, -inf, 0, ...] as M -> inf.
    cot = _cotangents(x)
    p = np.array([[0.5, 0, 0.5, 0, 0, 0, 0, 0], [1.0] + [0] * 7])
    c = _f64(cot["softmax"][:2])
    want = p * (c - np.sum(p * c, axis=-1, keepdims=True))
    for t in (None, np.float32(2.0)):
        grads = gradients(x, cot, temperature=t)
        for name in NAMES:
            # log_softmax's T derivative there: see the xfail below.
            leaves = jax.tree.leaves(grads[name])
            if t is not None and name == "log_softmax":
                leaves = leaves[:1]
            for leaf in leaves:
                assert np.all(np.isfinite(leaf)), name
        g = grads["softmax"] if t is None else grads["softmax"][0]
        np.testing.assert_allclose(g[:2], want / (t or 1), atol=1e-7)


@pytest.mark.xfail(
    strict=True,
    reason=(
        "log_softmax lowers +inf to finfo.max, so the finite entries of a "
        "row holding +inf come out near -finfo.max (-3.4e38 in float32) "
        "instead of the documented limit -inf, and their derivative in the "
        "temperature, (z - shift) / T with |z - shift| ~ finfo.max, "
        "overflows to -inf"
    ),
)
def test_log_softmax_of_finite_entries_beside_pos_inf_is_neg_inf():
    x = _pos_inf_rows()
    logs = forward(x)["log_softmax"]
    assert np.all(logs[0, [1, 3, 4, 5, 6, 7]] == -np.inf)
    assert np.all(logs[1, 1:] == -np.inf)
    grads = gradients(x, _cotangents(x), temperature=np.float32(2.0))
    assert np.isfinite(grads["log_softmax"][1])


def test_nan_row_is_isolated():
    clean = _normal_rows(11)
    x = clean.copy()
    x[1, 2] = np.nan
    got, want = forward(x), forward(clean)
    cot = _cotangents(x)
    grads, grads_clean = gradients(x, cot), gradients(clean, cot)
    for name in NAMES:
        out = np.asarray(got[name])
        assert np.all(np.isnan(out[1])), name
        keep = [0, 2, 3]
        np.testing.assert_array_equal(out[keep], np.asarray(want[name])[keep])
        np.testing.assert_array_equal(
            np.asarray(grads[name])[keep], np.asarray(grads_clean[name])[keep]
        )


# --------------------------------------------------------------------------
# 5. temperature


def _z_rounding(z):
    """Bound on |d log p| from rounding z = x / T in float32.

    Up to two roundings (a divide, or a reciprocal and a multiply) give
    |dz_i| <= 2^-23 |z_i|, and d log p_i = dz_i - <p, dz> doubles that; a
    further factor 2 is margin.
    """
    return 2.0**-21 * np.max(np.abs(z), axis=-1, keepdims=True)


def _spacing32(v):
    return np.spacing(np.abs(v).astype(np.float32)).astype(np.float64)


@pytest.mark.parametrize(
    "temperature",
    [0.5, 4.0, 0.3, 3.0, [[0.7], [1.3], [2.9], [0.05]]],
    ids=["0.5", "4", "0.3", "3", "per-row"],
)
def test_temperature_matches_boltzmann(temperature):
    x = _normal_rows(12, scale=4.0)
    t = np.asarray(temperature, np.float32)
    z = x / _f64(t)
    got = forward(x, temperature=t)
    want = reference(x, temperature=t)
    p = want["softmax"]
    tiny = np.finfo(np.float32).tiny  # flushed subnormals
    tol = 6 * _spacing32(p) + p * _z_rounding(z) + tiny
    assert np.all(np.abs(_f64(got["softmax"]) - p) <= tol)
    ls = want["log_softmax"]
    tol = 6 * _spacing32(ls) + _z_rounding(z)
    assert np.all(np.abs(_f64(got["log_softmax"]) - ls) <= tol)
    if t.ndim == 0 and np.log2(t) % 1 == 0:
        # x / T is exact for a power of two: the plain ULP bound holds.
        assert_ulp(got["softmax"], p, 6)
        assert_ulp(got["log_softmax"], ls, 6)


def test_temperature_log_softmax_on_many_rows_under_jit():
    rng = np.random.default_rng(28)
    x = (rng.standard_normal((64, 16)) * 4).astype(np.float32)
    t = rng.uniform(0.3, 3.0, (64, 1)).astype(np.float32)
    z = x / _f64(t)
    got = forward(x, temperature=t)
    want = reference(x, temperature=t)
    p = want["softmax"]
    tiny = np.finfo(np.float32).tiny
    tol = 6 * _spacing32(p) + p * _z_rounding(z) + tiny
    assert np.all(np.abs(got["softmax"] - p) <= tol)
    ls = want["log_softmax"]
    tol = 6 * _spacing32(ls) + _z_rounding(z)
    assert np.all(np.abs(got["log_softmax"] - ls) <= tol)


def test_temperature_broadcasts_against_reduced_shape():
    x = _normal_rows(13, shape=(2, 3, 4))
    t = np.array([[[0.5], [1.0], [2.0]]], np.float32)  # (1, 3, 1)
    got = jax.jit(functools.partial(jax_act.softmax, axis=-1))(x, temperature=t)
    assert_ulp(got, softmax64(x, temperature=t), 6)
    t_axes = np.array([[[2.0]], [[0.5]]], np.float32)  # (2, 1, 1)
    got = jax.jit(functools.partial(jax_act.log_softmax, axis=(1, 2)))(
        x, temperature=t_axes
    )
    want = _log_softmax64_axes(x, axis=(1, 2), temperature=t_axes)
    assert_ulp(got, want, 6)


@pytest.mark.parametrize("per_row", [False, True], ids=["scalar", "per-row"])
def test_temperature_gradient(per_row):
    x = _normal_rows(14)
    t = np.array([[0.6], [1.7], [3.1], [1.0]] if per_row else 1.7, "f4")
    cot = _cotangents(x)
    got = gradients(x, cot, temperature=t)
    want = reference_vjp(x, cot, temperature=t)
    assert_grads_close(got, want, rtol=2e-5, atol=2e-6)


def test_learnable_temperature_trains():
    logits = _normal_rows(15, scale=2.0)
    # Labels agree with the logits' argmax: a sharper softmax (T < 1)
    # lowers the cross-entropy, so SGD on T must move it down.
    onehot = np.eye(8, dtype=np.float32)[np.argmax(logits, axis=-1)]
    cot = _cotangents(logits)
    cot["log_softmax"] = -onehot / 4  # d(mean cross-entropy) / d log p
    t = np.float32(1.0)
    losses, temps = [], []
    for _ in range(5):
        logp = forward(logits, temperature=t)["log_softmax"]
        losses.append(-float(np.sum(onehot * logp)) / 4)
        temps.append(float(t))
        grad_t = gradients(logits, cot, temperature=t)["log_softmax"][1]
        want = reference_vjp(logits, cot, temperature=t)["log_softmax"][1]
        np.testing.assert_allclose(grad_t, want, rtol=1e-4)
        assert grad_t > 0
        t = np.float32(t - 0.1 * grad_t)
    assert all(b < a for a, b in itertools.pairwise(losses))
    assert temps[-1] < 0.9 * temps[0]


def test_log_softmax_temperature_gradient_where_probability_underflows():
    x = _normal_rows(16)
    x[0, :2] = [0.0, -120.0]
    x[1, :3] = [0.0, -300.0, 1.0]
    cot = _cotangents(x)
    t = np.float32(1.0)
    got = gradients(x, cot, temperature=t)["log_softmax"]
    want = reference_vjp(x, cot, temperature=t)["log_softmax"]
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-5)


# --------------------------------------------------------------------------
# 6. dtypes


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_output_dtype_is_input_dtype(dtype):
    x = jnp.asarray(_normal_rows(17), dtype)
    got = forward(x)
    cot = _cotangents(x)  # exact in the half dtype
    grads = gradients(x, cot)
    tol = ULP_TOL[jnp.dtype(dtype)]
    for name in NAMES:
        assert got[name].dtype == dtype and grads[name].dtype == dtype
    assert_all_ulp(got, reference(x), tol)
    # Gradients are computed in float32 and rounded once too.
    assert_all_ulp(grads, reference_vjp(x, cot), 2 * tol)


@pytest.mark.parametrize("dtype", ["int32", "uint8", "bool"])
def test_int_and_bool_promote_like_jax_nn(dtype):
    x = (np.arange(32).reshape(SHAPE) % 3).astype(dtype)
    # jax.nn promotes integers through exp to the default float dtype (it
    # also gives NaN for unsigned integers and rejects bool).
    expected_dtype = jnp.exp(jnp.int32(0)).dtype
    got = forward(x)
    for name in NAMES:
        assert got[name].dtype == expected_dtype == jnp.result_type(float)
    assert_all_ulp(got, reference(x), 4)


def test_float64_stays_float64():
    x = _normal_rows(18, scale=10.0).astype(np.float64)
    with jax.enable_x64(True):
        got = forward(x)
        from_int = forward(np.arange(32).reshape(SHAPE))
    for name in NAMES:
        assert got[name].dtype == from_int[name].dtype == jnp.float64
    want = {
        "softmax": np.stack([softmax_mp(r) for r in x]),
        "log_softmax": np.stack([log_softmax_mp(r) for r in x]),
        "logsumexp": np.array([[logsumexp_mp(r)] for r in x]),
    }
    assert_all_ulp(got, want, 6)


@pytest.mark.parametrize("name", NAMES)
def test_complex_raises_type_error_naming_function(name):
    with pytest.raises(TypeError, match=f"jax_act.{name}.*complex"):
        FUNCS[name](jnp.ones(3, jnp.complex64))


# --------------------------------------------------------------------------
# 7. custom_jvp rules, against float64 autodiff


@pytest.mark.parametrize("name", NAMES)
def test_is_a_custom_jvp(name):
    jaxpr = str(jax.make_jaxpr(FUNCS[name])(jnp.ones((2, 3))))
    assert "custom_jvp_call" in jaxpr


def _plain_formula(name, x, t, mask):
    """The textbook formula, no shift: autodiff of it is the reference."""
    if name == "logsumexp":
        z = jnp.where(mask, x, -jnp.inf)
        return jnp.log(jnp.sum(jnp.exp(z), axis=-1, keepdims=True))
    z = jnp.where(mask, x / t, -jnp.inf)
    if name == "softmax":
        return jnp.exp(z) / jnp.sum(jnp.exp(z), axis=-1, keepdims=True)
    return z - jnp.log(jnp.sum(jnp.exp(z), axis=-1, keepdims=True))


def _ours(name, x, t, mask):
    if name == "logsumexp":
        return jax_act.logsumexp(x, axis=-1, where=mask, keepdims=True)
    return FUNCS[name](x, axis=-1, where=mask, temperature=t)


def _grad_point(ties=True):
    """Ordinary rows, a constant row, and huge, far-apart logits with a tie
    at the maximum (or nearly constant rows and no tie); per-row
    temperatures; a mask with holes in two rows."""
    rng = np.random.default_rng(19)
    x = np.concatenate(
        [
            rng.standard_normal((2, 5)) * 2,
            np.zeros((1, 5)) if ties else np.linspace(-1e-3, 1e-3, 5)[None],
            np.array([[300.0, -300.0, 1.0, 300.0 if ties else 299.0, -40.0]]),
        ]
    )
    t = np.array([[0.6], [1.7], [1.0], [3.1]])
    mask = np.ones((4, 5), bool)
    mask[1, [0, 3]] = False
    mask[3, 1] = False
    return x, t, mask


def _finite_all(f, x, t, mask):
    return {name: _finite_part(f(name, x, t, mask)) for name in NAMES}


@_numpy_out
@jax.jit
def _derivatives64(x, t, mask):
    """jacfwd, jacrev (in x and T) and the Hessian in x of a scalar loss,
    for ours and for the plain formula, all three functions at once."""

    def run(f):
        g = functools.partial(_finite_all, f, mask=mask)
        shapes = jax.eval_shape(g, x, t)
        cot = {
            n: jnp.linspace(-1, 2, v.size).reshape(v.shape)
            for n, v in shapes.items()
        }

        def loss(x):
            return sum(jnp.sum(v * cot[n]) for n, v in g(x, t).items())

        return {
            "jacfwd": jax.jacfwd(g, argnums=(0, 1))(x, t),
            "jacrev": jax.jacrev(g, argnums=(0, 1))(x, t),
            "hessian": jax.hessian(loss)(x),
        }

    return run(_ours), run(_plain_formula)


def test_derivatives_match_float64_reference_autodiff():
    """jacfwd, jacrev and hessian of ours against autodiff of the plain
    float64 formula, in x and in the temperature, with a mask."""
    x, t, mask = _grad_point()
    with jax.enable_x64(True):
        ours, ref = _derivatives64(x, t, mask)
    for what in ("jacfwd", "jacrev", "hessian"):
        paths = jax.tree_util.tree_leaves_with_path(ours[what])
        for (path, g), w in zip(paths, jax.tree.leaves(ref[what]), strict=True):
            np.testing.assert_allclose(
                g, w, rtol=1e-10, atol=1e-12, err_msg=f"{what} {path}"
            )


def test_check_grads_order_two():
    """All three rules (in x, and in T for the two that take one), at
    ordinary, nearly constant, huge and masked rows, in one call."""
    x, t, mask = _grad_point(ties=False)
    with jax.enable_x64(True):
        check_grads(
            jax.jit(functools.partial(_finite_all, _ours, mask=mask)),
            (x, t),
            order=2,
            modes=("fwd", "rev"),
        )


def test_check_grads_log_softmax_with_tied_maximum():
    x = np.array([[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, -1.0]])
    with jax.enable_x64(True):
        check_grads(
            jax.jit(jax_act.log_softmax), (x,), order=2, modes=("fwd", "rev")
        )


def test_log_softmax_gradient_where_probability_underflows():
    # exp(-200) is 0 in float32, yet d log_softmax_1 / dx_1 = 1 - p_1 ~ 1.
    x = _normal_rows(20)
    x[0, :3] = [0.0, -200.0, 1.0]
    x[1, :3] = [0.0, -120.0, -150.0]
    cot = _cotangents(x)
    assert_grads_close(gradients(x, cot), reference_vjp(x, cot))
    x_dot = np.linspace(-1, 1, 32, dtype=np.float32).reshape(SHAPE)
    assert_grads_close(tangents(x, x_dot), reference_jvp(x, x_dot))


# --------------------------------------------------------------------------
# Transforms


@_numpy_out
@jax.jit
def _transformed(x):
    """vmap, checkpoint and scan versions of each function's output and
    gradient, next to the plain ones."""
    cot = _cotangents(x)
    out = {}
    for name in NAMES:

        def f(x, name=name):
            return _all_three(x, None, None, -1)[name]

        def loss(x, f=f, name=name):
            return jnp.sum(f(x) * cot[name])

        def body(carry, row, f=f):
            y = f(row)
            return carry + jnp.sum(y), y

        out[name] = {
            "plain": (f(x), jax.grad(loss)(x)),
            "vmap": (
                jax.vmap(f)(x),
                jax.grad(
                    lambda x, f=f, n=name: jnp.sum(jax.vmap(f)(x) * cot[n])
                )(x),
            ),
            "checkpoint": (f(x), jax.grad(jax.checkpoint(loss))(x)),
            "scan": (
                jax.lax.scan(body, jnp.float32(0), x)[1],
                jax.grad(
                    lambda x, body=body: jax.lax.scan(body, jnp.float32(0), x)[
                        0
                    ]
                )(x),
            ),
        }
    return out


def test_vmap_checkpoint_scan():
    x = _normal_rows(21)
    out = _transformed(x)
    for name in NAMES:
        plain_y, plain_g = out[name]["plain"]
        for kind in ("vmap", "checkpoint"):
            y, g = out[name][kind]
            np.testing.assert_allclose(y, plain_y, rtol=1e-6, err_msg=kind)
            np.testing.assert_allclose(g, plain_g, rtol=1e-6, err_msg=kind)
        y, g = out[name]["scan"]
        np.testing.assert_allclose(y, plain_y, rtol=1e-6, err_msg=name)
        ones = {n: np.ones_like(c) for n, c in _cotangents(x).items()}
        want = reference_vjp(x, ones)[name]
        np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-6, err_msg=name)


def test_vmap_over_temperature_and_other_axis():
    x = _normal_rows(22)
    t = np.array([0.5, 1.0, 2.0, 3.0], np.float32)
    f = jax.jit(
        lambda x, t: (
            jax.vmap(lambda r, s: jax_act.softmax(r, temperature=s))(x, t),
            jax.vmap(jax_act.log_softmax, in_axes=1, out_axes=1)(x.T),
        )
    )
    batched, transposed = f(x, t)
    want = reference(x, temperature=t[:, None])
    np.testing.assert_allclose(batched, want["softmax"], rtol=1e-5)
    np.testing.assert_allclose(
        transposed.T, reference(x)["log_softmax"], rtol=1e-6
    )


def test_eager_matches_jit():
    x = _normal_rows(23)
    eager = _all_three(jnp.asarray(x), None, None, -1)
    jitted = forward(x)
    for name in NAMES:
        np.testing.assert_allclose(
            eager[name], jitted[name], rtol=3e-7, atol=1e-7, err_msg=name
        )


def test_static_arguments_do_not_retrace():
    chex.clear_trace_counter()

    @functools.partial(jax.jit, static_argnames="axis")
    @chex.assert_max_traces(n=2)
    def f(x, t, axis):
        return jax_act.softmax(x, axis=axis, temperature=t) + jax_act.logsumexp(
            x, axis=axis, keepdims=True
        )

    x = jnp.ones((3, 4))
    for k in range(3):
        f(x + k, jnp.float32(1 + k), axis=-1)
        f(x - k, jnp.float32(2 + k), axis=0)
    with pytest.raises(AssertionError):
        f(x, jnp.float32(1), axis=(0, 1))


# --------------------------------------------------------------------------
# 9. Errors at trace time


@pytest.mark.parametrize("name", NAMES)
def test_bad_arguments_raise_at_trace_time(name):
    f = FUNCS[name]
    x = jnp.ones((2, 3))
    cases = [
        (ValueError, "out of range", dict(axis=2)),
        (ValueError, "out of range", dict(axis=(0, -3))),
        (ValueError, "repeated", dict(axis=(1, -1))),
        (TypeError, "axis", dict(axis=1.0)),
        (ValueError, "broadcast", dict(where=jnp.ones((2,), bool))),
        (ValueError, "broadcast", dict(where=jnp.ones((4, 2, 3), bool))),
        (TypeError, "boolean", dict(where=jnp.ones((2, 3)))),
        (TypeError, "boolean", dict(where=jnp.ones((2, 3), int))),
    ]
    if name != "logsumexp":
        cases += [
            (ValueError, "positive", dict(temperature=0.0)),
            (ValueError, "positive", dict(temperature=-1.0)),
            (ValueError, "positive", dict(temperature=float("nan"))),
            (
                ValueError,
                "positive",
                dict(temperature=np.array([[1.0], [0.0]])),
            ),
            (ValueError, "temperature", dict(temperature=np.ones((3, 1)))),
        ]
    for err, msg, kwargs in cases:
        with pytest.raises(err, match=f"jax_act.{name}.*{msg}"):
            f(x, **kwargs)
        # The same inside jit and under eval_shape: nothing is executed.
        with pytest.raises(err, match=msg):
            jax.jit(lambda x, kwargs=kwargs: f(x, **kwargs))(x)
        with pytest.raises(err, match=msg):
            jax.eval_shape(lambda x, kwargs=kwargs: f(x, **kwargs), x)


def test_traced_temperature_is_not_checked():
    # A traced temperature cannot be inspected: it must not raise.
    x = _normal_rows(24)
    got = forward(x, temperature=np.float32(2.0))
    assert_ulp(got["softmax"], softmax64(x, temperature=2.0), 6)


# --------------------------------------------------------------------------
# 10. Large vocabulary in float16


def test_float16_large_vocabulary():
    rng = np.random.default_rng(25)
    vocab = 128256
    # exp(x - max) sums to ~80000 > 65504: a float16 sum overflows.
    x = jnp.asarray(rng.uniform(0, 1, (2, vocab)), jnp.float16)
    got = forward(x)
    for name in NAMES:
        assert got[name].dtype == jnp.float16
        assert np.all(np.isfinite(_f64(got[name]))), name
    assert_all_ulp(got, reference(x), 1)

    cot = _cotangents(x)  # exact in float16
    grads = gradients(x, cot)
    want = reference_vjp(x, cot)
    for name in NAMES:
        assert grads[name].dtype == jnp.float16
        assert np.all(np.isfinite(_f64(grads[name]))), name
    # Gradients are rounded once to float16: half an ULP plus float32 noise.
    assert_all_ulp(grads, want, 2)


# --------------------------------------------------------------------------
# logsumexp's own arguments


@pytest.mark.parametrize("axis", [None, 1, (0, 2)])
def test_logsumexp_keepdims(axis):
    x = np.arange(24.0, dtype=np.float32).reshape(2, 3, 4) / 7
    both = jax.jit(
        lambda x: [
            jax_act.logsumexp(x, axis=axis, keepdims=keepdims)
            for keepdims in (True, False)
        ]
    )(x)
    for keepdims, got in zip((True, False), both, strict=True):
        want = logsumexp64(x, axis=axis, keepdims=keepdims)
        assert got.shape == want.shape
        assert_ulp(got, want, 2)


def _weighted(a, b):
    return jax_act.logsumexp(a, axis=-1, b=b)


def test_logsumexp_weights():
    a = _normal_rows(26)
    rng = np.random.default_rng(26)
    b = rng.uniform(0.1, 3.0, SHAPE).astype(np.float32)
    b[0, 1] = 0.0  # a zero weight acts as a mask
    got = jax.jit(_weighted)(a, b)
    want = np.log(np.sum(b * np.exp(_f64(a)), axis=-1))
    assert_ulp(got, want, 4)
    theirs = jax.jit(functools.partial(jax.nn.logsumexp, axis=-1))(a, b=b)
    np.testing.assert_allclose(got, theirs, rtol=2e-6)

    # Gradients in a and in positive weights: d/da = b e^a / S, d/db = e^a / S.
    b[0, 1] = 0.5
    ga, gb = jax.jit(jax.grad(lambda a, b: jnp.sum(_weighted(a, b)), (0, 1)))(
        a, b
    )
    e = np.exp(_f64(a))
    s = np.sum(b * e, axis=-1, keepdims=True)
    np.testing.assert_allclose(ga, b * e / s, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(gb, e / s, rtol=1e-5, atol=1e-7)


@pytest.mark.xfail(
    strict=True,
    reason=(
        "logsumexp folds weights in as a + log(b); at b_i = 0 the reverse "
        "derivative in b_i is 0 / 0 = NaN, while the true value "
        "exp(a_i) / sum_j b_j exp(a_j) is finite"
    ),
)
def test_logsumexp_weight_gradient_at_zero_weight():
    a = np.array([1.0, 2.0], np.float32)
    b = np.array([1.0, 0.0], np.float32)
    g = jax.jit(jax.grad(lambda b: jax_act.logsumexp(a, b=b)))(b)
    np.testing.assert_allclose(g, np.exp(a) / np.exp(1.0), rtol=1e-6)


def test_logsumexp_return_sign_is_refused():
    with pytest.raises(NotImplementedError, match="return_sign"):
        jax_act.logsumexp(jnp.ones(3), return_sign=True)


# --------------------------------------------------------------------------
# Agreement with jax.nn on benign input


@_numpy_out
@jax.jit
def _jax_nn(x, cot):
    fs = {
        "softmax": jax.nn.softmax,
        "log_softmax": jax.nn.log_softmax,
        "logsumexp": lambda x: jax.nn.logsumexp(x, axis=-1, keepdims=True),
    }
    values = {n: f(x) for n, f in fs.items()}
    grads = {
        n: jax.grad(lambda x, f=f, n=n: jnp.sum(f(x) * cot[n]))(x)
        for n, f in fs.items()
    }
    return values, grads


def test_agrees_with_jax_nn():
    x = _normal_rows(27, scale=2.0)
    cot = _cotangents(x)
    values, grads = _jax_nn(x, cot)
    got, got_grads = forward(x), gradients(x, cot)
    for name in NAMES:
        np.testing.assert_allclose(
            got[name], values[name], rtol=1e-5, atol=1e-7, err_msg=name
        )
        np.testing.assert_allclose(
            got_grads[name], grads[name], rtol=1e-5, atol=1e-6, err_msg=name
        )


# --------------------------------------------------------------------------
# Properties (the canonical shape: no new compiles)


_finite = st.floats(-1e4, 1e4, width=32, allow_subnormal=False)
# Multiples of 2^-10 in [-64, 64]: x + c is exact in float32 for |c| <= 1000.
_dyadic = st.integers(-65536, 65536).map(lambda k: k / 1024.0)


@hypothesis.given(hnp.arrays(np.float32, SHAPE, elements=_finite))
def test_property_softmax_sums_to_one(x):
    probs = _f64(forward(x)["softmax"])
    assert np.all(probs >= 0)
    np.testing.assert_allclose(np.sum(probs, axis=-1), 1.0, atol=1e-6)


@hypothesis.given(
    hnp.arrays(np.float32, SHAPE, elements=_dyadic), st.integers(-1000, 1000)
)
def test_property_shift_invariance(x, c):
    shifted = x + np.float32(c)
    assert np.all(_f64(shifted) == _f64(x) + c)
    want = reference(x)
    # Both within 6 ULP of the same exact answer.
    for name in ("softmax", "log_softmax"):
        assert_ulp(forward(x)[name], want[name], 6)
        assert_ulp(forward(shifted)[name], want[name], 6)


@hypothesis.given(hnp.arrays(np.float32, SHAPE, elements=_finite))
def test_property_log_softmax_is_x_minus_logsumexp(x):
    got = forward(x)
    assert_ulp(got["log_softmax"], reference(x)["log_softmax"], 6)
    logs, lse = _f64(got["log_softmax"]), _f64(got["logsumexp"])
    # log_softmax is within a few ULP of the exact value; logsumexp within
    # an ULP plus the absolute error of its one-pass float32 sum, a few
    # 2^-24 (its docstring: tens of ULPs when the result is near 0).
    tol = 2 * _spacing32(lse) + 2.0**-21 + 6 * _spacing32(logs)
    assert np.all(np.abs(logs - (_f64(x) - lse)) <= tol)


def test_logsumexp_near_zero_has_the_documented_absolute_error():
    # A dominant entry at 0: the float32 sum 1 + 7 e^-4 is rounded by two
    # ULPs of 1, which log carries into a result of 0.12 (28 of its ULPs),
    # as the docstring says; log_softmax's log1p normaliser keeps them.
    x = np.full((1, 8), -4.0, np.float32)
    x[0, 0] = 0.0
    exact = np.log1p(7 * np.exp(-4.0))
    got = forward(x)
    lse_error = abs(_f64(got["logsumexp"])[0] - exact)
    assert 5 * _spacing32(exact) < lse_error <= 2.0**-21
    assert_ulp(-got["log_softmax"][:, :1], np.array([[exact]]), 2)


def test_log_softmax_when_xla_rounds_the_input_twice():
    # Under jit XLA may evaluate tanh in the max kernel and again in the
    # sum kernel with different roundings, so no entry is exactly at the
    # maximum; the log1p normaliser must not count the top entry twice.
    x = 3 * np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
    got = jax.jit(lambda x: jax_act.log_softmax(2.5 * jnp.tanh(x / 2.5)))(x)
    z = 2.5 * np.tanh(x.astype(np.float64) / 2.5)
    want = z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)
