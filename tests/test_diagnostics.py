"""Tests for dead_units: units whose derivative is 0 on a whole batch."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_act


def constructed_batch():
    """Eight examples, five units: [all negative, all positive, mixed,
    all exactly 0, negative with one example at 0]."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 5)).astype(np.float32)
    x[:, 0] = -np.abs(x[:, 0]) - 0.1
    x[:, 1] = np.abs(x[:, 1]) + 0.1
    x[:4, 2], x[4:, 2] = -1.0, 1.0
    x[:, 3] = 0.0
    x[:, 4] = -np.abs(x[:, 4]) - 0.1
    x[0, 4] = 0.0
    return jnp.asarray(x)


# Jitted (the activation and batch_axis static): eager dispatch of the
# gelu forms' many small operations costs more than compiling them.
dead_units = jax.jit(
    jax_act.dead_units, static_argnums=0, static_argnames="batch_axis"
)


def test_all_negative_column_is_dead_under_relu():
    dead = dead_units(jax_act.relu, constructed_batch())
    # relu'(0) = 0, so the all-zero column is dead too.
    np.testing.assert_array_equal(dead.mask, [True, False, False, True, True])
    assert dead.fraction.dtype == jnp.float32
    np.testing.assert_allclose(dead.fraction, 3 / 5)


@pytest.mark.parametrize(
    "activation",
    [
        jax_act.leaky_relu,
        functools.partial(jax_act.prelu, negative_slope=jnp.float32(0.25)),
        jax_act.gelu,
        functools.partial(jax_act.gelu, approximate=False),
        functools.partial(jax_act.gelu, approximate="sigmoid"),
        jax_act.silu,
    ],
    ids=["leaky_relu", "prelu", "gelu", "gelu-exact", "gelu-sigmoid", "silu"],
)
def test_never_dead_without_a_flat_side(activation):
    dead = dead_units(activation, constructed_batch())
    assert not np.any(dead.mask)
    assert dead.fraction == 0


def test_any_elementwise_callable():
    x = constructed_batch()
    # jax.nn.relu shares relu's convention at 0; a hard clip is flat on
    # both sides; tanh is never flat.
    dead = jax_act.dead_units(jax.nn.relu, x)
    np.testing.assert_array_equal(dead.mask, [True, False, False, True, True])
    clipped = jax_act.dead_units(lambda v: jnp.clip(v, -5.0, -2.0), x)
    assert clipped.mask[1] and clipped.mask[3]
    assert not np.any(jax_act.dead_units(jnp.tanh, x).mask)


def test_batch_axes():
    x = constructed_batch()
    by_rows = jax_act.dead_units(jax_act.relu, x.T, batch_axis=1)
    np.testing.assert_array_equal(
        by_rows.mask, jax_act.dead_units(jax_act.relu, x).mask
    )
    # (batch, tokens, units): both leading axes hold examples.
    x3 = jnp.stack([x, x - 10.0])
    dead = jax_act.dead_units(jax_act.relu, x3, batch_axis=(0, 1))
    assert dead.mask.shape == (5,)
    np.testing.assert_array_equal(dead.mask, [True, False, False, True, True])
    per_token = jax_act.dead_units(jax_act.relu, x3, batch_axis=1)
    assert per_token.mask.shape == (2, 5)
    assert np.all(per_token.mask[1])


def test_under_jit_and_vmap():
    x = constructed_batch()
    f = jax.jit(
        jax_act.dead_units, static_argnums=0, static_argnames="batch_axis"
    )
    np.testing.assert_array_equal(
        f(jax_act.relu, x).mask, jax_act.dead_units(jax_act.relu, x).mask
    )
    layers = jnp.stack([x, -jnp.abs(x) - 1.0])
    fractions = jax.vmap(lambda v: jax_act.dead_units(jax_act.relu, v))(
        layers
    ).fraction
    np.testing.assert_allclose(fractions, [0.6, 1.0])


def test_half_precision_underflow_counts_as_dead():
    """In float16 gelu's derivative underflows to 0 from about x = -6: the
    unit does not learn in that dtype, and is reported (float32 keeps it,
    about -5e-20 at x = -8)."""
    x = jnp.full((4, 2), -8.0, jnp.float16).at[:, 1].set(-1.0)
    dead = dead_units(jax_act.gelu, x)
    np.testing.assert_array_equal(dead.mask, [True, False])
    dead32 = dead_units(jax_act.gelu, x.astype(jnp.float32))
    assert not np.any(dead32.mask)


def test_nan_derivative_is_not_dead():
    x = jnp.asarray([[jnp.nan, -1.0], [jnp.nan, -2.0]])
    np.testing.assert_array_equal(
        dead_units(jax_act.silu, x).mask, [False, False]
    )


def test_no_units_gives_zero_fraction():
    dead = jax_act.dead_units(jax_act.relu, jnp.ones((3, 0)))
    assert dead.mask.shape == (0,)
    assert dead.fraction == 0


def test_bad_input():
    x = constructed_batch()
    with pytest.raises(TypeError, match="callable"):
        jax_act.dead_units("relu", x)
    with pytest.raises(TypeError, match="dead_units"):
        jax_act.dead_units(jax_act.relu, x.astype(jnp.complex64))
    with pytest.raises(ValueError, match="batch axis"):
        jax_act.dead_units(jax_act.relu, jnp.float32(1.0))
    with pytest.raises(ValueError, match="out of range"):
        jax_act.dead_units(jax_act.relu, x, batch_axis=2)
    with pytest.raises(ValueError, match="empty"):
        jax_act.dead_units(jax_act.relu, jnp.ones((0, 3)))
    with pytest.raises(ValueError, match="element-wise"):
        jax_act.dead_units(lambda v: jnp.sum(v, axis=0), x)
