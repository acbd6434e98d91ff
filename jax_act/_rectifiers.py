r"""Rectifiers and the logistic-gated unit: relu, leaky_relu, prelu, swish.

relu, leaky_relu and prelu share one piecewise-linear rule; silu, swish
and the sigmoid form of gelu share one logistic-gated core,
x * sigmoid(beta x), built on `_numerics.x_logistic`.
"""

import functools
import numbers

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero
from jax.typing import ArrayLike

from jax_act import _checks
from jax_act._numerics import (
    GateParts,
    gate_slope,
    gate_terms,
    keep_high_bits,
    split_constant,
    upcast,
    x_logistic,
)

# --- relu ---


@jax.custom_jvp
def _relu(x):
    return jnp.maximum(x, 0)


@_relu.defjvp
def _relu_jvp(primals, tangents):
    (x,), (x_dot,) = primals, tangents
    # relu'(0) = 0, as in jax.nn.relu: a unit sitting exactly at 0 gets no
    # gradient (Bertoin et al., 2021, study what this choice changes).
    return _relu(x), jnp.where(x > 0, x_dot, jnp.zeros_like(x_dot))


# --- leaky_relu and prelu ---


@jax.custom_jvp
def _leaky(x, slope):
    return _leaky_value(upcast(x), slope).astype(x.dtype)


def _leaky_value(x, slope):
    # x >= 0 takes the identity branch, as jax.nn.leaky_relu does: the
    # value at 0 is 0 either way, and the derivative at 0 is 1.
    return jnp.where(x >= 0, x, slope.astype(x.dtype) * x)


def _leaky_jvp(primals, tangents):
    (x, slope), (x_dot, slope_dot) = primals, tangents
    x32 = upcast(x)
    out = _leaky_value(x32, slope)
    slope = slope.astype(x32.dtype)
    out_dot = jnp.zeros_like(x32)
    if not isinstance(x_dot, SymbolicZero):
        x_dot = upcast(jnp.asarray(x_dot))
        out_dot = jnp.where(x32 >= 0, x_dot, slope * x_dot)
    if not isinstance(slope_dot, SymbolicZero):
        # d/d slope = x on the negative side, 0 from x = 0 up.
        slope_dot = jnp.asarray(slope_dot).astype(x32.dtype)
        out_dot = out_dot + jnp.where(x32 >= 0, 0, x32 * slope_dot)
    return out.astype(x.dtype), out_dot.astype(x.dtype)


_leaky.defjvp(_leaky_jvp, symbolic_zeros=True)


def _slope_array(slope: ArrayLike, x: jax.Array, name: str) -> jax.Array:
    """Validates `negative_slope` and broadcasts it to x's shape."""
    slope = _checks.as_float_array(slope, name, "negative_slope")
    if slope.ndim == 0:
        return slope
    try:
        target = jnp.broadcast_shapes(slope.shape, x.shape)
    except ValueError:
        target = None
    if target != x.shape:
        raise ValueError(
            f"jax_act.{name}: `negative_slope` of shape {slope.shape} does "
            f"not broadcast to the input shape {x.shape}. Per-channel "
            "slopes go on the last axis: shape (channels,) for an input "
            "of shape (..., channels)."
        )
    return jnp.broadcast_to(slope, x.shape)


# --- swish, silu and the sigmoid form of gelu ---


def _static_beta(beta) -> float | None:
    """Returns beta as a Python float if it is a concrete scalar, else None."""
    if isinstance(beta, jax.core.Tracer):
        return None
    if isinstance(beta, numbers.Real) and not isinstance(beta, bool):
        return float(beta)
    if isinstance(beta, np.ndarray | np.generic | jax.Array):
        if np.ndim(beta) == 0 and jnp.issubdtype(
            jnp.result_type(beta), jnp.floating
        ):
            return float(beta)
    return None


def _scaled_argument_f32(x, beta_hi, beta_lo):
    """(u_hi, u_lo) with u_hi + u_lo = (beta_hi + beta_lo) x, float32.

    x must keep beta x finite (u_lo would be inf - inf).

    beta_hi has at most 8 significant bits and x is split into a 16-bit
    head and an 8-bit tail, so both partial products are exact. u_hi is
    the ordinary rounded product; bh * h lies within a factor 2 of it, so
    their difference is exact (Sterbenz), and what is left is a few ULPs
    of u_hi, rounded at 2^-32 relative.
    """
    beta = beta_hi + beta_lo
    u_hi = beta * x
    head = keep_high_bits(x, 16)
    tail = x - head
    u_lo = ((beta_hi * head - u_hi) + beta_hi * tail) + beta_lo * x
    return u_hi, u_lo


def _static_u(x, beta: float, precise: bool = True):
    """(u_hi, u_lo or None) of beta x for a Python-float beta."""
    if beta == 0:
        # Not 0 * x, which is NaN for an infinite x.
        return jnp.zeros_like(x), None
    if not precise or x.dtype != jnp.float32 or abs(np.frexp(beta)[0]) == 0.5:
        # In float64, for a power of two (silu's 1), or for half-precision
        # inputs (where one float32 rounding of u, < 2^-17 relative in the
        # result, vanishes in the final rounding), beta x as it is.
        return x.dtype.type(beta) * x, None
    x = _clamp_for(x, beta)
    return _scaled_argument_f32(x, *split_constant(beta, 8))


def _clamp_for(x, beta: float):
    # Past |beta x| = 200 (1000 in float64) the gate is exactly 0 or 1, so
    # x can be clamped there inside u: u, u_lo and x u' stay finite.
    cap = 200.0 if x.dtype == jnp.float32 else 1000.0
    bound = x.dtype.type(min(cap / abs(beta), np.finfo(x.dtype).max))
    return jnp.clip(x, -bound, bound)


def _static_parts(params, x):
    """GateParts of u = beta x, for gate_slope."""
    beta, precise = params
    if beta == 0:
        zero = jnp.zeros_like(x)
        return GateParts(zero, zero, None, zero, None)
    x = _clamp_for(x, beta)
    u_hi, u_lo = _static_u(x, beta, precise)
    return GateParts(x, u_hi, u_lo, x.dtype.type(beta), None)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _swish_static(x, beta):
    x32 = upcast(x)
    u_hi, u_lo = _static_u(x32, beta, x.dtype == jnp.float32)
    rising = None if beta == 0 else beta > 0
    return x_logistic(x32, u_hi, u_lo, rising=rising).astype(x.dtype)


@_swish_static.defjvp
def _swish_static_jvp(beta, primals, tangents):
    (x,), (x_dot,) = primals, tangents
    x32 = upcast(x)
    slope = gate_slope(_static_parts, (beta, x.dtype == jnp.float32), x32)
    out_dot = slope * upcast(jnp.asarray(x_dot))
    # The value through the function itself: differentiating this rule
    # again then uses the rule, not autodiff of 1 / (1 + exp(-u)), which
    # overflows (XLA merges the repeated work).
    return _swish_static(x, beta), out_dot.astype(x.dtype)


def _array_u(x, beta, precise=True):
    """(u_hi, u_lo or None) of beta x for a traced or array beta."""
    if x.dtype != jnp.float32 or not precise:
        return beta * x, None
    beta_hi = keep_high_bits(beta, 8)
    u_hi, u_lo = _scaled_argument_f32(x, beta_hi, beta - beta_hi)
    # Where beta x overflowed, u_lo is inf - inf; the gate there is 0 or 1.
    return u_hi, jnp.where(jnp.abs(u_hi) <= 200, u_lo, 0)


def _finite_where_gate_vanishes(x, beta):
    # The gate sigmoid(beta x) vanishes as x -> -inf for beta > 0 and as
    # x -> +inf for beta < 0; an infinite x there would give inf * 0.
    big = np.finfo(x.dtype).max
    return jnp.where(beta > 0, jnp.maximum(x, -big), jnp.minimum(x, big))


@jax.custom_jvp
def _swish_array(x, beta):
    x32 = upcast(x)
    beta = beta.astype(x32.dtype)
    u_hi, u_lo = _array_u(x32, beta, x.dtype == jnp.float32)
    x_safe = _finite_where_gate_vanishes(x32, beta)
    return x_logistic(x_safe, u_hi, u_lo, rising=None).astype(x.dtype)


def _swish_array_jvp(primals, tangents):
    (x, beta), (x_dot, beta_dot) = primals, tangents
    x32 = upcast(x)
    d_x, d_beta = _swish_partials(x32, beta.astype(x32.dtype))
    out_dot = jnp.zeros_like(x32)
    if not isinstance(x_dot, SymbolicZero):
        out_dot = d_x * upcast(jnp.asarray(x_dot))
    if not isinstance(beta_dot, SymbolicZero):
        beta_dot = jnp.asarray(beta_dot).astype(x32.dtype)
        out_dot = out_dot + d_beta * beta_dot
    # The value through the function itself (see _swish_static_jvp).
    return _swish_array(x, beta), out_dot.astype(x.dtype)


_swish_array.defjvp(_swish_array_jvp, symbolic_zeros=True)


def _swish_partial_terms(x, beta, curvature):
    """Returns d/dx and d/d beta of x s(beta x), and their derivatives.

    With u = beta x, s = s(u), n = s(-u) and G = s n (2 + u (n - s)):

        d/dx = s (1 + u n)          d/d beta = x^2 s n
        d2/dx2 = beta G             d2/dx d beta = x G
        d2/d beta2 = x^3 s n (n - s)

    Each is (numerator) r with the numerator a multiple of `scale`, so a
    normal result never passes through a subnormal intermediate.
    """
    big = np.finfo(x.dtype).max
    u_hi, u_lo = _array_u(x, beta)
    # u_lo is folded into exp(-u) inside gate_terms: s and n both carry it.
    scale, r, n = gate_terms(u_hi, u_lo)
    cap = 200.0 if x.dtype == jnp.float32 else 1000.0
    u = jnp.clip(u_hi, -cap, cap)  # beta x, finite
    x = jnp.clip(x, -big, big)
    s_pos = scale * r
    d_x = (scale * (1 + u * n)) * r
    x_s = (scale * x) * r  # x s(u), normal where x^2 s n is
    d_beta = x_s * (x * n)
    if not curvature:
        return d_x, d_beta, None, None
    g = ((scale * (2 + u * (n - s_pos))) * r) * n
    h = d_beta * (x * (n - s_pos))
    return d_x, d_beta, g, h


@jax.custom_jvp
def _swish_partials(x, beta):
    d_x, d_beta, _, _ = _swish_partial_terms(x, beta, curvature=False)
    return d_x, d_beta


@_swish_partials.defjvp
def _swish_partials_jvp(primals, tangents):
    (x, beta), (x_dot, beta_dot) = primals, tangents
    d_x, d_beta, g, h = _swish_partial_terms(x, beta, curvature=True)
    big = np.finfo(x.dtype).max
    mixed = jnp.clip(x, -big, big) * g
    d_x_dot = beta * g * x_dot + mixed * beta_dot
    d_beta_dot = mixed * x_dot + h * beta_dot
    return (d_x, d_beta), (d_x_dot, d_beta_dot)


# --- Public functions ---


def relu(x: ArrayLike) -> jax.Array:
    r"""Rectified linear unit, max(x, 0).

    .. math::

        \mathrm{relu}(x) = \max(x, 0)

    Numerics:
        Exact in every dtype (no upcast is needed). The derivative is 1 for
        x > 0 and 0 for x <= 0, including at x = 0, as in `jax.nn.relu`;
        a unit whose input is <= 0 for a whole batch gets no gradient
        (see `dead_units`). NaN gives NaN with derivative 0; +inf gives
        +inf, -inf gives 0.

    Args:
        x: input array; integer and bool inputs become floats.

    Returns:
        Array of `x`'s shape and floating dtype.

    Raises:
        TypeError: for complex or non-numeric `x`.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import jax_act
        >>> jax_act.relu(jnp.array([-2.0, 0.0, 3.0]))
        Array([0., 0., 3.], dtype=float32)
        >>> jax.grad(jax_act.relu)(0.0)
        Array(0., dtype=float32, weak_type=True)

    References:
        V. Nair and G. E. Hinton, "Rectified Linear Units Improve Restricted
        Boltzmann Machines", ICML 2010.
        D. Bertoin et al., "Numerical influence of ReLU'(0) on
        backpropagation", NeurIPS 2021.

    See Also:
        `jax.nn.relu` (same values and derivative), `leaky_relu`, `prelu`.
    """
    return _relu(_checks.as_float_array(x, "relu"))


def leaky_relu(x: ArrayLike, negative_slope: ArrayLike = 1e-2) -> jax.Array:
    r"""Leaky rectified linear unit: x for x >= 0, negative_slope * x below.

    A small slope on the negative side keeps a gradient flowing through
    units whose input is negative, so that they cannot die as relu units
    can.

    .. math::

        \mathrm{leaky\_relu}(x) = \begin{cases} x & x \ge 0 \\
            \alpha x & x < 0 \end{cases}

    where :math:`\alpha` is `negative_slope`.

    Numerics:
        bfloat16 and float16 are computed in float32 and rounded once, so
        the slope is applied at float32 precision (`jax.nn.leaky_relu`
        rounds 0.01 to bfloat16 first). The derivative at x = 0 is 1 (the
        identity branch), as in `jax.nn.leaky_relu`; the derivative with
        respect to `negative_slope` is x below 0 and 0 from 0 up. NaN gives
        NaN.

    Args:
        x: input array; integer and bool inputs become floats.
        negative_slope: scalar or array broadcastable to `x`'s shape, the
            slope for x < 0. Differentiable.

    Returns:
        Array of `x`'s shape and floating dtype.

    Raises:
        TypeError: for complex or non-numeric `x` or `negative_slope`.
        ValueError: if `negative_slope` does not broadcast to `x`'s shape.

    Examples:
        >>> import jax.numpy as jnp
        >>> import jax_act
        >>> jax_act.leaky_relu(jnp.array([-2.0, 0.0, 3.0]))
        Array([-0.02,  0.  ,  3.  ], dtype=float32)

    References:
        A. L. Maas, A. Y. Hannun and A. Y. Ng, "Rectifier Nonlinearities
        Improve Neural Network Acoustic Models", ICML workshop 2013.

    See Also:
        `jax.nn.leaky_relu` (same values and derivatives), `prelu`.
    """
    x = _checks.as_float_array(x, "leaky_relu")
    return _leaky(x, _slope_array(negative_slope, x, "leaky_relu"))


def prelu(x: ArrayLike, negative_slope: ArrayLike) -> jax.Array:
    r"""Parametric ReLU: leaky_relu with a learned, per-channel slope.

    .. math::

        \mathrm{prelu}(x)_{\ldots c} = \begin{cases} x_{\ldots c} &
            x_{\ldots c} \ge 0 \\ a_c \, x_{\ldots c} & x_{\ldots c} < 0
            \end{cases}

    where :math:`a` is `negative_slope`, typically one value per channel
    :math:`c` on the last axis.

    Numerics:
        As `leaky_relu`: float32 compute for half-precision inputs, one
        rounding; derivative 1 at x = 0; the gradient with respect to the
        slopes is x where x < 0, summed over the axes the slopes were
        broadcast along.

    Args:
        x: input array [..., channels]; integer and bool become floats.
        negative_slope: array broadcastable to `x`'s shape (without
            changing it), e.g. shape [channels] or a scalar.

    Returns:
        Array of `x`'s shape and floating dtype.

    Raises:
        TypeError: for complex or non-numeric `x` or `negative_slope`.
        ValueError: if `negative_slope` does not broadcast to `x`'s shape.

    Examples:
        >>> import jax.numpy as jnp
        >>> import jax_act
        >>> x = jnp.array([[-1.0, -1.0], [2.0, -4.0]])
        >>> jax_act.prelu(x, jnp.array([0.1, 0.25]))
        Array([[-0.1 , -0.25],
               [ 2.  , -1.  ]], dtype=float32)

    References:
        K. He, X. Zhang, S. Ren and J. Sun, "Delving Deep into Rectifiers:
        Surpassing Human-Level Performance on ImageNet Classification",
        ICCV 2015, arXiv:1502.01852.

    See Also:
        `flax.nnx.PReLU` (a scalar slope); `leaky_relu`.
    """
    x = _checks.as_float_array(x, "prelu")
    return _leaky(x, _slope_array(negative_slope, x, "prelu"))


def swish(x: ArrayLike, beta: ArrayLike = 1.0) -> jax.Array:
    r"""Swish, x * sigmoid(beta x); silu for beta = 1.

    .. math::

        \mathrm{swish}(x) = x \, \sigma(\beta x) =
            \frac{x}{1 + e^{-\beta x}}

    Numerics:
        Float32 stays within 4 ULPs (derivative within 8 of its larger
        term) wherever the result is a normal number, tails included:
        beta x is carried with its rounding error (an exact split
        product; one rounding would cost |beta x| / 2 ULPs),
        exp(-beta x) is shifted by e^-16 where sigmoid alone would be
        subnormal, and the derivative sigma(u) (1 + u sigma(-u)),
        u = beta x, uses sigma(-u) rather than 1 - sigma(u); the second
        derivative has its own rule too. bfloat16 and float16 are computed
        in float32 without the split (invisible after rounding) and
        rounded once, within 1 ULP. For |beta| below about 3e-6 and |x|
        past 3e7 a normal result can still be flushed to 0. Float64 uses
        the same formula without the split product. +inf gives +inf and
        -inf gives 0 (for beta > 0); NaN gives NaN. A concrete scalar beta
        (a Python or NumPy number) is split exactly at trace time; an array
        beta is differentiable, with d/d beta = x^2 sigma(u) sigma(-u).

    Args:
        x: input array; integer and bool inputs become floats.
        beta: scalar, or array broadcastable to `x`'s shape.

    Returns:
        Array of `x`'s shape and floating dtype.

    Raises:
        TypeError: for complex or non-numeric `x` or `beta`.
        ValueError: if `beta` does not broadcast to `x`'s shape.

    Examples:
        >>> import jax.numpy as jnp
        >>> import jax_act
        >>> jax_act.swish(jnp.array([-1.0, 0.0, 2.0]), beta=1.5)
        Array([-0.18242553,  0.        ,  1.9051483 ], dtype=float32)

    References:
        P. Ramachandran, B. Zoph and Q. V. Le, "Searching for Activation
        Functions", arXiv:1710.05941, 2017.

    See Also:
        `jax.nn.swish` (beta = 1 only), `silu`, `gelu` with
        approximate='sigmoid' (beta = 1.702).
    """
    x = _checks.as_float_array(x, "swish")
    static = _static_beta(beta)
    if static is not None:
        return _swish_static(x, static)
    beta = _checks.as_float_array(beta, "swish", "beta")
    if beta.ndim:
        try:
            target = jnp.broadcast_shapes(beta.shape, x.shape)
        except ValueError:
            target = None
        if target != x.shape:
            raise ValueError(
                f"jax_act.swish: `beta` of shape {beta.shape} does not "
                f"broadcast to the input shape {x.shape}."
            )
        beta = jnp.broadcast_to(beta, x.shape)
    return _swish_array(x, beta)


def silu(x: ArrayLike) -> jax.Array:
    r"""Sigmoid linear unit, x * sigmoid(x): swish with beta = 1.

    .. math::

        \mathrm{silu}(x) = x \, \sigma(x) = \frac{x}{1 + e^{-x}}

    Numerics:
        As `swish` (beta = 1 makes beta x exact): within a few float32 ULPs
        wherever the result is normal, down to x = -91.8 where
        `jax.nn.silu` returns 0 below x = -88.7; the derivative
        sigma(x) (1 + x sigma(-x)) has no 1 - sigma cancellation.
        Halves are computed in float32 and rounded once. +inf gives +inf,
        -inf gives 0, NaN gives NaN.

    Args:
        x: input array; integer and bool inputs become floats.

    Returns:
        Array of `x`'s shape and floating dtype.

    Raises:
        TypeError: for complex or non-numeric `x`.

    Examples:
        >>> import jax.numpy as jnp
        >>> import jax_act
        >>> jax_act.silu(jnp.array([-1.0, 0.0, 2.0]))
        Array([-0.26894143,  0.        ,  1.761594  ], dtype=float32)

    References:
        S. Elfwing, E. Uchibe and K. Doya, "Sigmoid-Weighted Linear Units
        for Neural Network Function Approximation in Reinforcement
        Learning", arXiv:1702.03118, 2017.

    See Also:
        `jax.nn.silu`, `swish`.
    """
    return _swish_static(_checks.as_float_array(x, "silu"), 1.0)
