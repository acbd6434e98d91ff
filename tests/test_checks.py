"""Tests for the shared trace-time argument checks in jax_act._checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_act import _checks

# --------------------------------------------------------------------------
# as_float_array


@pytest.mark.parametrize(
    "value, dtype",
    [
        (np.arange(3, dtype=np.int32), jnp.float32),
        (np.arange(3, dtype=np.uint8), jnp.float32),
        (np.array([True, False]), jnp.float32),
        (3, jnp.float32),
        (2.5, jnp.float32),
        (np.ones(2, np.float16), jnp.float16),
        (jnp.ones(2, jnp.bfloat16), jnp.bfloat16),
        (np.ones(2, np.float32), jnp.float32),
    ],
    ids=[
        "int32",
        "uint8",
        "bool",
        "int",
        "float",
        "f16",
        "bf16",
        "f32",
    ],
)
def test_as_float_array_promotes_like_jax(value, dtype):
    out = _checks.as_float_array(value, "f")
    assert isinstance(out, jax.Array)
    assert out.dtype == dtype
    np.testing.assert_array_equal(
        np.asarray(out, np.float64), np.asarray(value, np.float64)
    )


def test_as_float_array_under_x64():
    with jax.enable_x64(True):
        assert _checks.as_float_array(np.arange(3), "f").dtype == jnp.float64
        assert _checks.as_float_array(np.ones(2), "f").dtype == jnp.float64
        # float32 input is not widened.
        f32 = np.ones(2, np.float32)
        assert _checks.as_float_array(f32, "f").dtype == jnp.float32


def test_as_float_array_keeps_tracers():
    def f(x):
        out = _checks.as_float_array(x, "f")
        assert isinstance(out, jax.core.Tracer)
        return out * 2

    np.testing.assert_array_equal(jax.jit(f)(np.arange(3)), [0.0, 2.0, 4.0])


@pytest.mark.parametrize("dtype", [jnp.complex64, np.complex128])
def test_as_float_array_rejects_complex_naming_function_and_argument(dtype):
    with pytest.raises(TypeError, match=r"jax_act\.softmax: `x` has complex"):
        _checks.as_float_array(np.ones(2, dtype), "softmax")
    with pytest.raises(TypeError, match=r"jax_act\.softmax: `temperature`"):
        _checks.as_float_array(1j, "softmax", "temperature")


@pytest.mark.parametrize(
    "value",
    ["abc", np.array(["a"]), object(), [1.0, 2.0]],
    ids=["str", "str-array", "object", "list"],
)
def test_as_float_array_rejects_non_numeric(value):
    with pytest.raises(TypeError, match=r"jax_act\.gelu: `x`"):
        _checks.as_float_array(value, "gelu")


# --------------------------------------------------------------------------
# canonical_axes


@pytest.mark.parametrize(
    "axis, expected",
    [
        (None, (0, 1, 2)),
        (0, (0,)),
        (-1, (2,)),
        ((2, 0), (0, 2)),
        ([-1, -3], (0, 2)),
        ((), ()),
        (np.int64(1), (1,)),
        ((np.int32(-2),), (1,)),
    ],
)
def test_canonical_axes(axis, expected):
    assert _checks.canonical_axes(axis, 3, "f") == expected


def test_canonical_axes_scalar_input():
    assert _checks.canonical_axes(None, 0, "f") == ()
    with pytest.raises(ValueError, match="out of range"):
        _checks.canonical_axes(0, 0, "f")


@pytest.mark.parametrize("axis", [3, -4, (0, 3), (-4, 1)])
def test_canonical_axes_out_of_range(axis):
    with pytest.raises(
        ValueError, match=r"jax_act\.f: axis -?\d is out of range.* -3 to 2"
    ):
        _checks.canonical_axes(axis, 3, "f")


@pytest.mark.parametrize("axis", [(1, 1), (0, -3), (2, -1, 0)])
def test_canonical_axes_repeated(axis):
    with pytest.raises(ValueError, match=r"jax_act\.f: repeated axis"):
        _checks.canonical_axes(axis, 3, "f")


@pytest.mark.parametrize("axis", [1.0, "0", (0, 1.5), (None,)])
def test_canonical_axes_not_integers(axis):
    with pytest.raises(TypeError, match=r"jax_act\.f: axis must be an int"):
        _checks.canonical_axes(axis, 3, "f")


# --------------------------------------------------------------------------
# broadcast_mask


def test_broadcast_mask_none():
    assert _checks.broadcast_mask(None, (2, 3), "f") is None


@pytest.mark.parametrize("shape", [(2, 3), (3,), (1, 3), (2, 1), ()])
def test_broadcast_mask_broadcasts(shape):
    mask = np.ones(shape, bool)
    out = _checks.broadcast_mask(mask, (2, 3), "f")
    assert out.shape == (2, 3) and out.dtype == jnp.bool_
    assert bool(jnp.all(out))


def test_broadcast_mask_values_follow_the_mask():
    mask = np.array([True, False, True])
    out = np.asarray(_checks.broadcast_mask(mask, (2, 3), "f"))
    np.testing.assert_array_equal(out, np.broadcast_to(mask, (2, 3)))


@pytest.mark.parametrize("shape", [(2,), (3, 3), (4, 2, 3), (2, 3, 1)])
def test_broadcast_mask_shape_mismatch(shape):
    # (4, 2, 3) and (2, 3, 1) broadcast with (2, 3), but to a larger shape:
    # the mask may not grow the input.
    with pytest.raises(
        ValueError,
        match=r"jax_act\.f: `where` of shape .* input shape \(2, 3\)",
    ):
        _checks.broadcast_mask(np.ones(shape, bool), (2, 3), "f")


@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.uint8])
def test_broadcast_mask_must_be_boolean(dtype):
    with pytest.raises(TypeError, match=r"jax_act\.f: `where` must be a bool"):
        _checks.broadcast_mask(np.ones((2, 3), dtype), (2, 3), "f")


def test_broadcast_mask_traced():
    def f(mask):
        return _checks.broadcast_mask(mask, (2, 3), "f")

    out = jax.jit(f)(np.array([True, False, True]))
    assert out.shape == (2, 3)


# --------------------------------------------------------------------------
# check_positive


@pytest.mark.parametrize(
    "value", [1.0, 1e-30, 2, np.float32(0.5), np.array([[0.5], [2.0]])]
)
def test_check_positive_accepts(value):
    _checks.check_positive(value, "temperature", "softmax")
    _checks.check_positive(jnp.asarray(value), "temperature", "softmax")


@pytest.mark.parametrize(
    "value",
    [0.0, -0.0, -1, float("nan"), -np.inf, np.array([1.0, 0.0])],
    ids=["zero", "negzero", "neg", "nan", "neginf", "array"],
)
def test_check_positive_rejects(value):
    with pytest.raises(
        ValueError, match=r"jax_act\.softmax: `temperature` must be positive"
    ):
        _checks.check_positive(value, "temperature", "softmax")


def test_check_positive_skips_traced_values():
    # A traced value cannot be inspected at trace time: no error, even for
    # a value that would be rejected if it were concrete.
    def f(t):
        _checks.check_positive(t, "temperature", "softmax")
        return t

    assert float(jax.jit(f)(-1.0)) == -1.0
    assert float(jax.grad(f)(-1.0)) == 1.0


def test_check_positive_concrete_inside_jit():
    # A constant closed over by a jitted function is concrete: checked.
    def f(x):
        _checks.check_positive(np.float32(0.0), "temperature", "softmax")
        return x

    with pytest.raises(ValueError, match="must be positive"):
        jax.jit(f)(1.0)


# --------------------------------------------------------------------------
# check_axis_name


def test_check_axis_name_none_passes():
    _checks.check_axis_name(None, "softmax")


def test_check_axis_name_unbound_raises():
    with pytest.raises(ValueError, match=r"jax_act\.softmax: axis_name 'i'"):
        _checks.check_axis_name("i", "softmax")
    with pytest.raises(ValueError, match="'j' is not bound"):
        jax.vmap(
            lambda x: _checks.check_axis_name(("i", "j"), "f"), axis_name="i"
        )(np.ones(2))


def test_check_axis_name_bound_passes():
    def f(x):
        _checks.check_axis_name("i", "softmax")
        return x

    np.testing.assert_array_equal(jax.vmap(f, axis_name="i")(np.ones(2)), 1)
