"""Flax NNX and Linen layers: PReLU and Activation.

The layers must give the numbers of the jax_act functions they wrap, agree
between NNX and Linen, train with Optax (the slope receives gradients and
moves), and leave `import jax_act` free of Flax.
"""

import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jax_act
from jax_act.modules import linen as act_linen
from jax_act.modules import nnx as act_nnx


def _prelu_reference(x, slope, axis):
    """float64 NumPy PReLU with a () or (C,) slope on `axis`."""
    x = np.asarray(x, np.float64)
    slope = np.asarray(slope, np.float64)
    if slope.ndim:
        shape = [1] * x.ndim
        shape[axis] = slope.size
        slope = slope.reshape(shape)
    return np.where(x >= 0, x, slope * x)


def _linen_prelu(layer, x, slope=None):
    variables = layer.init(jax.random.key(0), x)
    if slope is not None:
        variables = {"params": {"negative_slope": jnp.asarray(slope)}}
    return layer.apply(variables, x), variables


# --- import hygiene -------------------------------------------------------


def test_core_imports_without_flax_and_layers_say_what_to_install():
    # A fresh interpreter: this process has imported Flax already.
    script = textwrap.dedent(
        """
        import sys
        import jax_act, jax_act.modules
        print("flax_loaded", "flax" in sys.modules)
        sys.modules["flax"] = None  # makes `import flax` fail
        for name in ("nnx", "linen"):
            try:
                getattr(jax_act.modules, name)
            except ImportError as err:
                print(name, "ImportError", err)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "flax_loaded False" in out
    for name in ("nnx", "linen"):
        line = next(s for s in out.splitlines() if s.startswith(name + " "))
        assert "ImportError" in line
        assert "pip install 'jax-act[demo]'" in line
        assert f"jax_act.modules.{name} needs Flax" in line


def test_modules_namespace_lists_only_submodules():
    import jax_act.modules as modules

    assert modules.nnx is act_nnx
    assert modules.linen is act_linen
    with pytest.raises(AttributeError):
        _ = modules.PReLU


# --- PReLU: values ---------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "num_channels", "axis"),
    [
        ((4, 6), None, -1),
        ((4, 6), 6, -1),
        ((2, 5, 3, 3), 5, 1),  # NCHW, PyTorch's layout
        ((2, 3, 3, 5), 5, 3),  # NHWC
        ((2, 3, 7), 3, -2),
    ],
)
def test_prelu_matches_reference_in_nnx_linen_and_function(
    rng, shape, num_channels, axis
):
    x = rng.normal(size=shape).astype(np.float32)
    slope_shape = () if num_channels is None else (num_channels,)
    slope = rng.uniform(0.05, 0.9, size=slope_shape).astype(np.float32)
    expected = _prelu_reference(x, slope, axis)

    layer = act_nnx.PReLU(num_channels, axis=axis)
    assert layer.negative_slope.shape == slope_shape
    np.testing.assert_array_equal(layer.negative_slope[...], 0.25)
    layer.negative_slope[...] = jnp.asarray(slope)
    out_nnx = layer(x)

    out_linen, variables = _linen_prelu(
        act_linen.PReLU(num_channels, axis=axis), x, slope
    )
    assert variables["params"]["negative_slope"].shape == slope_shape

    if slope.ndim:
        bshape = [1] * x.ndim
        bshape[axis] = slope.size
        out_fn = jax_act.prelu(x, slope.reshape(bshape))
    else:
        out_fn = jax_act.prelu(x, slope)

    for out in (out_nnx, out_linen, out_fn):
        assert out.shape == x.shape
        assert out.dtype == jnp.float32
        np.testing.assert_allclose(out, expected, rtol=1e-6, atol=0)
    np.testing.assert_array_equal(out_nnx, out_linen)
    np.testing.assert_array_equal(out_nnx, out_fn)


def test_prelu_initial_slope_and_default_layout():
    linen_init = act_linen.PReLU(3).init(jax.random.key(0), jnp.ones((1, 3)))
    np.testing.assert_array_equal(
        linen_init["params"]["negative_slope"], [0.25] * 3
    )
    layer = act_nnx.PReLU(3, negative_slope_init=0.1)
    np.testing.assert_allclose(
        layer(jnp.array([[-1.0, -2.0, 3.0]])), [[-0.1, -0.2, 3.0]]
    )


def test_prelu_dtypes():
    x16 = jnp.array([[-2.0, 1.0, -4.0]], jnp.bfloat16)
    # dtype None: compute in the input's dtype, slope cast to it.
    assert act_nnx.PReLU(3)(x16).dtype == jnp.bfloat16
    assert _linen_prelu(act_linen.PReLU(3), x16)[0].dtype == jnp.bfloat16
    # An explicit dtype wins.
    out = act_nnx.PReLU(3, dtype=jnp.float32)(x16)
    assert out.dtype == jnp.float32
    np.testing.assert_array_equal(out, [[-0.5, 1.0, -1.0]])
    out = _linen_prelu(act_linen.PReLU(3, dtype=jnp.float32), x16)[0]
    assert out.dtype == jnp.float32
    # param_dtype sets the stored slope's dtype.
    layer = act_nnx.PReLU(3, param_dtype=jnp.bfloat16)
    assert layer.negative_slope.dtype == jnp.bfloat16
    assert layer(jnp.ones((1, 3))).dtype == jnp.float32
    _, variables = _linen_prelu(
        act_linen.PReLU(3, param_dtype=jnp.bfloat16), jnp.ones((1, 3))
    )
    assert variables["params"]["negative_slope"].dtype == jnp.bfloat16
    # Integer input computes in the default float dtype.
    assert act_nnx.PReLU()(jnp.array([-2, 3])).dtype == jnp.float32


def test_prelu_keyword_only_options():
    with pytest.raises(TypeError):
        act_nnx.PReLU(3, -1)
    with pytest.raises(TypeError):
        act_linen.PReLU(3, -1)


def test_prelu_bad_arguments():
    with pytest.raises(ValueError, match="positive"):
        act_nnx.PReLU(0)
    with pytest.raises(TypeError, match="num_channels"):
        act_nnx.PReLU(2.5)
    with pytest.raises(ValueError, match="4 channels on axis 1"):
        act_nnx.PReLU(3, axis=1)(jnp.ones((2, 4)))
    with pytest.raises(ValueError, match="out of range"):
        act_nnx.PReLU(3, axis=2)(jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="channels on axis 1"):
        act_linen.PReLU(3).init(jax.random.key(0), jnp.ones((2, 4)))
    with pytest.raises(ValueError, match="positive"):
        act_linen.PReLU(-1).init(jax.random.key(0), jnp.ones((2, 4)))


# --- PReLU: derivatives ----------------------------------------------------


def test_prelu_slope_gradient_is_sum_of_negative_inputs(rng):
    # d/da_c sum(prelu(x)) = sum of the negative entries of channel c.
    x = rng.normal(size=(8, 4)).astype(np.float32)
    expected = np.where(x < 0, x, 0).sum(axis=0)

    layer = act_nnx.PReLU(4)

    def total(layer, x):
        return jnp.sum(layer(x))

    grads = nnx.grad(total)(layer, x)
    np.testing.assert_allclose(grads.negative_slope[...], expected, rtol=1e-6)

    model = act_linen.PReLU(4)
    variables = model.init(jax.random.key(0), x)
    linen_grads = jax.grad(lambda v: jnp.sum(model.apply(v, x)))(variables)
    np.testing.assert_allclose(
        linen_grads["params"]["negative_slope"], expected, rtol=1e-6
    )

    shared = act_nnx.PReLU()
    grads = nnx.grad(total)(shared, x)
    np.testing.assert_allclose(
        grads.negative_slope[...], expected.sum(), rtol=1e-6
    )


# --- Activation wrapper ----------------------------------------------------

_WRAPPED = [
    ("relu", {}),
    ("leaky_relu", {"negative_slope": 0.2}),
    ("gelu", {"approximate": "none"}),
    ("gelu", {"approximate": "tanh"}),
    ("gelu", {"approximate": "sigmoid"}),
    ("silu", {}),
    ("sigmoid", {}),
    ("softmax", {"axis": -1}),
]


@pytest.mark.parametrize(("name", "kwargs"), _WRAPPED, ids=lambda v: str(v))
def test_activation_wrapper_matches_function(rng, name, kwargs):
    x = rng.normal(size=(3, 5)).astype(np.float32) * 3
    expected = getattr(jax_act, name)(x, **kwargs)
    by_name = act_nnx.Activation(name, **kwargs)(x)
    by_fn = act_nnx.Activation(getattr(jax_act, name), **kwargs)(x)
    linen_out = act_linen.Activation(name, kwargs=kwargs).apply({}, x)
    for out in (by_name, by_fn, linen_out):
        np.testing.assert_array_equal(out, expected)


def test_activation_wrapper_bad_arguments():
    for make in (
        lambda fn: act_nnx.Activation(fn),
        lambda fn: act_linen.Activation(fn).apply({}, jnp.ones(2)),
    ):
        with pytest.raises(ValueError, match="PReLU layer"):
            make("prelu")
        with pytest.raises(ValueError, match="unknown activation 'tanhh'"):
            make("tanhh")
        with pytest.raises(TypeError, match="callable"):
            make(3)


# --- training with Optax ---------------------------------------------------


def _blobs(rng, n=96, features=6, classes=3):
    centres = rng.normal(scale=2.0, size=(classes, features))
    y = rng.integers(0, classes, size=n)
    x = centres[y] + rng.normal(size=(n, features))
    return jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.int32)


class _NNXNet(nnx.Module):
    def __init__(self, rngs):
        self.l1 = nnx.Linear(6, 16, rngs=rngs)
        self.a1 = act_nnx.PReLU(16)
        self.l2 = nnx.Linear(16, 16, rngs=rngs)
        self.a2 = act_nnx.Activation("gelu", approximate="tanh")
        self.out = nnx.Linear(16, 3, rngs=rngs)

    def __call__(self, x):
        return self.out(self.a2(self.l2(self.a1(self.l1(x)))))


def _xent(logits, labels):
    log_probs = jax_act.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=1))


def test_nnx_model_trains_with_optax_and_slope_moves(rng):
    x, y = _blobs(rng)
    model = _NNXNet(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(2e-2), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, x, y):
        def loss_fn(model):
            return _xent(model(x), y)

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss, grads.a1.negative_slope[...]

    slope0 = np.array(model.a1.negative_slope[...])
    losses, slope_grads = [], []
    for _ in range(12):
        loss, slope_grad = step(model, optimizer, x, y)
        losses.append(float(loss))
        slope_grads.append(np.asarray(slope_grad))

    assert losses[-1] < 0.5 * losses[0]
    assert np.all(np.isfinite(losses))
    assert np.any(slope_grads[0] != 0)
    moved = np.abs(np.asarray(model.a1.negative_slope[...]) - slope0)
    assert np.all(moved > 0), moved


class _LinenNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = act_linen.PReLU(16)(nn.Dense(16)(x))
        x = act_linen.Activation(jax_act.silu)(nn.Dense(16)(x))
        x = act_linen.PReLU()(x)  # one shared slope
        return nn.Dense(3)(x)


def test_linen_model_trains_with_optax_and_slopes_move(rng):
    x, y = _blobs(rng)
    model = _LinenNet()
    params = model.init(jax.random.key(0), x)["params"]
    tx = optax.adam(2e-2)
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state):
        def loss_fn(params):
            return _xent(model.apply({"params": params}, x), y)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, grads

    initial = params
    losses = []
    for i in range(12):
        params, opt_state, loss, grads = step(params, opt_state)
        losses.append(float(loss))
        if i == 0:
            first_grads = grads

    assert losses[-1] < 0.5 * losses[0]
    for name in ("PReLU_0", "PReLU_1"):
        assert np.any(first_grads[name]["negative_slope"] != 0)
        moved = np.abs(
            params[name]["negative_slope"] - initial[name]["negative_slope"]
        )
        assert np.all(moved > 0), (name, moved)
    assert params["PReLU_1"]["negative_slope"].shape == ()


def test_nnx_and_linen_models_agree_with_the_same_weights(rng):
    x = jnp.asarray(rng.normal(size=(5, 6)), jnp.float32)
    nnx_model = _NNXNet(nnx.Rngs(0))
    slope = jnp.asarray(rng.uniform(0.0, 0.5, size=16), jnp.float32)
    nnx_model.a1.negative_slope[...] = slope

    class Twin(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = act_linen.PReLU(16)(nn.Dense(16)(x))
            x = nn.Dense(16)(x)
            x = act_linen.Activation("gelu", kwargs={"approximate": "tanh"})(x)
            return nn.Dense(3)(x)

    def dense(layer):
        return {"kernel": layer.kernel[...], "bias": layer.bias[...]}

    params = {
        "Dense_0": dense(nnx_model.l1),
        "PReLU_0": {"negative_slope": slope},
        "Dense_1": dense(nnx_model.l2),
        "Dense_2": dense(nnx_model.out),
    }
    linen_out = Twin().apply({"params": params}, x)
    np.testing.assert_allclose(nnx_model(x), linen_out, rtol=1e-6, atol=1e-6)
