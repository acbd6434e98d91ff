r"""The logistic sigmoid and its logarithm: the two-class softmax.

sigmoid(x) = softmax([0, x])[1] and log_sigmoid(x) = log_softmax([0, x])[1];
written element-wise here because the two-entry row needs no reduction.
"""

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jax_act import _checks
from jax_act._numerics import upcast


def _logistic(x):
    # XLA's logistic is evaluated without the 1 - s cancellation and does
    # not overflow: exp(-|x|) is at most 1.
    return jax.lax.logistic(x)


@jax.custom_jvp
def _sigmoid(x):
    return _logistic(upcast(x)).astype(x.dtype)


@_sigmoid.defjvp
def _sigmoid_jvp(primals, tangents):
    (x,), (x_dot,) = primals, tangents
    x32 = upcast(x)
    s = _logistic(x32)
    # sigma'(x) = sigma(x) sigma(-x). The common s (1 - s) rounds 1 - s to
    # exactly 0 for float32 x >= 17 (true value ~4e-8); sigma(-x) keeps it.
    slope = s * _logistic(-x32)
    return s.astype(x.dtype), (slope * upcast(x_dot)).astype(x.dtype)


@jax.custom_jvp
def _log_sigmoid(x):
    return _log_sigmoid_f32(upcast(x)).astype(x.dtype)


def _log_sigmoid_f32(x):
    # log sigma(x) = -softplus(-x) = min(x, 0) - log1p(exp(-|x|)). The direct
    # log(1 / (1 + exp(-x))) overflows for x < -88.7 and rounds to 0 for
    # x > 17, where the true value is -exp(-x).
    return jnp.minimum(x, 0) - jnp.log1p(jnp.exp(-jnp.abs(x)))


@_log_sigmoid.defjvp
def _log_sigmoid_jvp(primals, tangents):
    (x,), (x_dot,) = primals, tangents
    x32 = upcast(x)
    # d/dx log sigma(x) = sigma(-x), exact in both tails.
    slope = _logistic(-x32)
    out = _log_sigmoid_f32(x32)
    return out.astype(x.dtype), (slope * upcast(x_dot)).astype(x.dtype)


def sigmoid(x: ArrayLike) -> jax.Array:
    r"""Logistic sigmoid, the two-class softmax: 1 / (1 + exp(-x)).

    .. math::

        \sigma(x) = \frac{1}{1 + e^{-x}} = \mathrm{softmax}([0, x])_1

    Numerics:
        bfloat16 and float16 are computed in float32 and rounded once. The
        derivative is sigma(x) sigma(-x), accurate in both tails; the usual
        s (1 - s) is exactly 0 for float32 x >= 17 and bfloat16 x >= 6.5.
        NaN gives NaN; +-inf give 1 and 0 with derivative 0.

    Args:
        x: input array; integer and bool inputs become floats.

    Returns:
        Array of `x`'s shape and floating dtype.

    Raises:
        TypeError: for complex or non-numeric `x`.

    Examples:
        >>> import jax.numpy as jnp
        >>> import jax_act
        >>> jax_act.sigmoid(jnp.array([-1.0, 0.0, 1.0]))
        Array([0.26894143, 0.5       , 0.7310586 ], dtype=float32)

    See Also:
        `jax.nn.sigmoid`; same values, derivative accurate in the tails.
    """
    return _sigmoid(_checks.as_float_array(x, "sigmoid"))


def log_sigmoid(x: ArrayLike) -> jax.Array:
    r"""Logarithm of the sigmoid, -softplus(-x), the two-class log_softmax.

    .. math::

        \log \sigma(x) = \min(x, 0) - \log(1 + e^{-|x|})

    Numerics:
        Finite for every finite x (no overflow for x < -88.7, and the tiny
        value -exp(-x) is kept for large x). Halves are computed in float32
        and rounded once. The derivative is sigma(-x).

    Args:
        x: input array; integer and bool inputs become floats.

    Returns:
        Array of `x`'s shape and floating dtype.

    Raises:
        TypeError: for complex or non-numeric `x`.

    Examples:
        >>> import jax.numpy as jnp
        >>> import jax_act
        >>> jax_act.log_sigmoid(jnp.array([-100.0, 0.0, 30.0]))
        Array([-1.000000e+02, -6.931472e-01, -9.357623e-14], dtype=float32)

    See Also:
        `jax.nn.log_sigmoid`.
    """
    return _log_sigmoid(_checks.as_float_array(x, "log_sigmoid"))
