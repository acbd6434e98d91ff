"""Benchmark cases of the element-wise activations: gelu in its three forms,
relu, leaky_relu, prelu, silu, against jax.nn (and PyTorch).

References (float64, vectorised): x Phi(x) from scipy's ndtr, accurate to
about 1e-14 relative down to x = -14 (it takes erfc in the left tail), and
x sigmoid(u) with u in float64, whose rounding (1e-16 |u|) stays below
1e-13 relative up to |u| = 1000. The tests check both against mpmath in
the far tails. The constants are the exact ones: sqrt(2/pi) and 0.044715
for the tanh form, 1.702 for the sigmoid form.

Derivative rows ("gelu'[tanh]", ...) compare element-wise derivatives in
plain ULPs of the result. Near its zero the derivative is a difference of
two terms, and any formula that sums them loses relative accuracy there,
so the points where the sum is less than half the larger term are left out
of those input sets (the tests measure them in ULPs of the larger term).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import ndtr

import jax_act
from bench.registry import AccuracyCase, SpeedCase, register

FULL_SHAPES = ((4096, 4096),)
QUICK_SHAPES = ((8, 128),)
SIGMOID_BETA = 1.702
TANH_A = 2.0 * np.sqrt(2.0 / np.pi)


# --- Speed ---


def _spread_args(shape, dtype, rng, scale=3.0):
    """Pre-activations with a few units' spread: both tails are visited."""
    x = rng.standard_normal(shape, dtype=np.float32) * np.float32(scale)
    return (x.astype(dtype),)


def _prelu_args(shape, dtype, rng):
    (x,) = _spread_args(shape, dtype, rng)
    slopes = rng.uniform(0.05, 0.3, shape[-1:]).astype(np.float32)
    return (x, slopes.astype(dtype))


def _gelu_sigmoid_baseline(x):
    return x * jax.nn.sigmoid(SIGMOID_BETA * x)


def _prelu_baseline(x, slope):
    # What flax's PReLU computes, with a per-channel slope.
    return jnp.where(x >= 0, x, slope * x)


def _torch_gelu(approximate, x):
    import torch

    return torch.nn.functional.gelu(x, approximate=approximate)


def _torch_gelu_sigmoid(x):
    import torch

    return x * torch.sigmoid(SIGMOID_BETA * x)


def _torch_unary(name, x):
    import torch

    return getattr(torch.nn.functional, name)(x)


_torch_silu = functools.partial(_torch_unary, "silu")
_torch_relu = functools.partial(_torch_unary, "relu")


def _torch_prelu(x, slope):
    import torch

    # torch puts channels on axis 1, which is the last axis in 2-D.
    return torch.nn.functional.prelu(x, slope)


_SPEED = [
    (
        "gelu[tanh]",
        functools.partial(jax_act.gelu, approximate="tanh"),
        functools.partial(jax.nn.gelu, approximate=True),
        functools.partial(_torch_gelu, "tanh"),
    ),
    (
        "gelu[none]",
        functools.partial(jax_act.gelu, approximate="none"),
        functools.partial(jax.nn.gelu, approximate=False),
        functools.partial(_torch_gelu, "none"),
    ),
    (
        "gelu[sigmoid]",
        functools.partial(jax_act.gelu, approximate="sigmoid"),
        _gelu_sigmoid_baseline,
        _torch_gelu_sigmoid,
    ),
    (
        "silu",
        jax_act.silu,
        jax.nn.silu,
        functools.partial(_torch_unary, "silu"),
    ),
    (
        "relu",
        jax_act.relu,
        jax.nn.relu,
        functools.partial(_torch_unary, "relu"),
    ),
    (
        "leaky_relu",
        jax_act.leaky_relu,
        jax.nn.leaky_relu,
        functools.partial(_torch_unary, "leaky_relu"),
    ),
]

for _name, _ours, _baseline, _torch in _SPEED:
    register(
        SpeedCase(
            name=_name,
            ours=_ours,
            baseline=_baseline,
            make_args=_spread_args,
            shapes=FULL_SHAPES,
            quick_shapes=QUICK_SHAPES,
            torch=_torch,
        )
    )

register(
    SpeedCase(
        name="prelu",
        ours=jax_act.prelu,
        baseline=_prelu_baseline,
        make_args=_prelu_args,
        shapes=FULL_SHAPES,
        quick_shapes=QUICK_SHAPES,
        torch=_torch_prelu,
    )
)


# --- References (float64 in, float64 out) ---


def _sigmoid64(u):
    e = np.exp(-np.abs(u))
    return np.where(u >= 0, 1 / (1 + e), e / (1 + e))


def _gate_u(form, x):
    """(u, u') of the logistic gate sigmoid(u(x)) of a form."""
    if form == "tanh":
        return TANH_A * x * (1 + 0.044715 * x * x), TANH_A * (
            1 + 3 * 0.044715 * x * x
        )
    beta = {"sigmoid": SIGMOID_BETA, "silu": 1.0}[form]
    return beta * x, np.full_like(x, beta)


def gelu_reference(form, x):
    x = np.asarray(x, np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        if form == "none":
            return x * ndtr(x)
        u, _ = _gate_u(form, x)
        return x * _sigmoid64(u)


def _slope_terms(form, x):
    """The derivative's two terms, whose sum it is (float64)."""
    x = np.asarray(x, np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        if form == "none":
            return ndtr(x), x * np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi)
        u, du = _gate_u(form, x)
        s, n = _sigmoid64(u), _sigmoid64(-u)
        return s, x * du * s * n


def gelu_slope_reference(form, x):
    first, second = _slope_terms(form, x)
    return first + second


# --- Accuracy inputs ---


def _rounded(values, dtype):
    with np.errstate(over="ignore"):
        return np.asarray(values).astype(dtype).astype(np.float64)


def _all_values(dtype, limit):
    """Every finite value of a 16-bit dtype with |v| <= limit."""
    bits = np.arange(0, 1 << 16, dtype=np.uint32).astype(np.uint16)
    values = bits.view(np.dtype(dtype))
    values = values[np.isfinite(values)].astype(np.float64)
    return np.unique(values[np.abs(values) <= limit])


def _log_spaced(dtype, count):
    mags = 10.0 ** np.linspace(-37, 38, count)
    return np.unique(_rounded(np.concatenate([-mags, mags]), dtype))


# Where the result stops being a normal float32 on the left, per form.
# The left end of each form's float32 sweep: where its result stops being
# a normal number.
LEFT_END = {"none": -13.5, "tanh": -10.5, "sigmoid": -54.0, "silu": -92.0}


def _value_inputs(form, dtype, quick):
    left = LEFT_END[form]
    if quick:
        sweep = _rounded(np.linspace(left, 10.0, 2001), dtype)
        mix = [sweep, _log_spaced(dtype, 101)]
        return [("quick mix", np.unique(np.concatenate(mix)))]
    if dtype == "float32":
        sweep = np.unique(_rounded(np.linspace(left, 10.0, 2_000_001), dtype))
        tail = np.unique(_rounded(np.linspace(left, left / 2, 200_001), dtype))
        return [
            (f"sweep [{left}, 10], {sweep.size}", sweep),
            (f"left tail [{left}, {left / 2}]", tail),
            ("log-spaced +-1e-37..1e38", _log_spaced(dtype, 100_001)),
        ]
    return [("all finite", _all_values(dtype, np.inf))]


def _slope_inputs(form, dtype, quick):
    """The value inputs, less the points where the derivative's two terms
    cancel to less than half the larger one (around its zero)."""
    sets = []
    for name, values in _value_inputs(form, dtype, quick):
        first, second = _slope_terms(form, values)
        with np.errstate(invalid="ignore"):
            larger = np.maximum(np.abs(first), np.abs(second))
            keep = ~(np.abs(first + second) < 0.5 * larger)
        sets.append((name + ", no cancellation", values[keep]))
    return sets


def _slope_of(fn):
    def slope(x):
        return jax.jvp(fn, (x,), (jnp.ones_like(x),))[1]

    return slope


_ACCURACY = [
    (
        "gelu[none]",
        "none",
        functools.partial(jax_act.gelu, approximate="none"),
        functools.partial(jax.nn.gelu, approximate=False),
    ),
    (
        "gelu[tanh]",
        "tanh",
        functools.partial(jax_act.gelu, approximate="tanh"),
        functools.partial(jax.nn.gelu, approximate=True),
    ),
    (
        "gelu[sigmoid]",
        "sigmoid",
        functools.partial(jax_act.gelu, approximate="sigmoid"),
        _gelu_sigmoid_baseline,
    ),
    ("silu", "silu", jax_act.silu, jax.nn.silu),
]

for _name, _form, _ours, _baseline in _ACCURACY:
    register(
        AccuracyCase(
            name=_name,
            ours=_ours,
            baseline=_baseline,
            reference=functools.partial(gelu_reference, _form),
            inputs=functools.partial(_value_inputs, _form),
        )
    )
    register(
        AccuracyCase(
            name=_name.replace("[", "'[") if "[" in _name else _name + "'",
            ours=_slope_of(_ours),
            baseline=_slope_of(_baseline),
            reference=functools.partial(gelu_slope_reference, _form),
            inputs=functools.partial(_slope_inputs, _form),
        )
    )
