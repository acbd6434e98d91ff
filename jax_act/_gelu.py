r"""The Gaussian error linear unit in its exact, tanh and sigmoid forms.

All three are x times a smooth gate g(x) rising from 0 to 1:

.. math::

    \mathrm{gelu}(x) = x \, g(x), \qquad g(x) \in \{
        \Phi(x),\;
        \sigma(2 z(x)) = \tfrac12 (1 + \tanh z(x)),\;
        \sigma(1.702 x) \}

with z(x) = sqrt(2/pi) (x + 0.044715 x^3). Written as x (1 + tanh z) / 2 or
x (1 + erf(x / sqrt 2)) / 2, the gate is a difference of nearly equal
numbers for x << 0 and the left tail is lost (`jax.nn.gelu` returns 0 for
every float32 x <= -5 in the tanh form). Here the gate is always computed
directly: sigma(2 z) as a logistic, Phi(-t) as a series near 0 and as
exp(-t^2 / 2) times a rational function beyond.
"""

import numbers

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jax_act import _checks
from jax_act._numerics import (
    GateParts,
    gate_slope,
    keep_high_bits,
    split_constant,
    upcast,
    x_logistic,
)
from jax_act._rectifiers import _swish_static

# --- Constants ---

# Tanh form (Hendrycks and Gimpel, 2016, section 2): the gate is
# sigma(2 z) with 2 z = A x + B x^3, A = 2 sqrt(2/pi), B = 0.044715 A. The
# coefficient is 0.044715; some course notes print 0.04475, a typo.
_TANH_COEFF = 0.044715
_A64 = 2.0 * np.sqrt(2.0 / np.pi)
_B64 = _A64 * _TANH_COEFF
_A = np.float32(_A64)
_A_LO = np.float32(_A64 - np.float64(_A))
_B = np.float32(_B64)
_B_HI, _B_LO = split_constant(_B64, 12)
# Beyond |x| = 16 (float32) or 24 (float64) the gate is exactly 0 or 1 in
# that dtype (|2 z| > 300, or > 1000), so x is clamped there inside z: x^3
# stays finite (jax.nn's tanh form overflows: its float16 gradient is NaN
# at x = 300).

# Sigmoid form (Hendrycks and Gimpel, 2016, section 2): x sigmoid(1.702 x).
SIGMOID_BETA = 1.702

# Exact form, t = |x| >= 0. The gate's tail Phi(-t) is computed directly,
# never as 1 - Phi(t) or 1 + erf, in two pieces:
#
# * t < 0.75: Phi(-t) = 1/2 - t S(t^2), S a degree-4 polynomial (fitted,
#   relative error 2.4e-9); t S <= 0.27 < Phi(-t), so nothing cancels.
# * t >= 0.75: Phi(-t) = exp(-t^2 / 2) kappa / (t + P(t) / Q(t)), the
#   scaled Mills ratio, kappa = 1 / sqrt(2 pi) rounded to float32
#   (_KAPPA) and P / Q a (4, 5) rational function with positive
#   coefficients falling from 0.798 at t = 0 like 1 / t. It is evaluated
#   as t Phi(-t) = kappa e^{-t^2/2} tQ / (tQ + P): Q stands above and below
#   the line, so its rounding errors cancel, and P's are damped by
#   P / (tQ + P) ~ 1 / t^2.
#
# Both were fitted with mpmath (80 to 100 bits) on Chebyshev points, by
# linearised least squares with Lawson reweighting towards the minimax
# relative error: P / Q on [0, 14.5] with the float32 kappa built in
# (relative error of the ratio below 6e-10), S on [0, 0.75^2]. P and Q
# are both multiplied by 1.85, which leaves P / Q unchanged and, measured
# on 3e7 random float32 points, lowered the worst error of the evaluated
# ratio by a quarter of an ULP (where Q rounds in a binade's upper part).
_KAPPA = np.float32(1.0 / np.sqrt(2.0 * np.pi))
_EXACT_P = (
    np.float32(1.4760865),
    np.float32(0.9205905),
    np.float32(0.30254796),
    np.float32(0.05397368),
    np.float32(0.0044784276),
)
_EXACT_Q = (
    np.float32(1.85),
    np.float32(1.996334),
    np.float32(1.0356293),
    np.float32(0.31092095),
    np.float32(0.054002915),
    np.float32(0.0044777123),
)
_EXACT_S = (
    np.float32(0.3989423),
    np.float32(-0.06649029),
    np.float32(0.009972349),
    np.float32(-0.001181285),
    np.float32(0.00010294057),
)
_EXACT_T_SMALL = np.float32(0.75)
# Past t = 14.5, t Phi(-t) and t phi(t) are below float32's subnormals.
_EXACT_T_MAX = np.float32(14.5)

# exp for the exact form, written out so that the error of t^2 enters its
# reduced argument exactly and the result can carry a 2^32 scale: exp(-t^2
# / 2) is subnormal (flushed to zero on CPU) from t = 13.2, while t Phi(-t)
# stays normal to t = 13.15 and t phi(t) to 13.27. Cody and Waite's
# reduction: k = round(a / ln 2), r = a - k ln 2 with ln 2 split so that
# k * _LN2_HI is exact (16 bits, |k| < 256); e^r = 1 + r + r^2 E(r), E a
# degree-4 minimax fit (mpmath) on |r| <= ln 2 / 2, relative error 3.3e-9.
_LOG2_E = np.float32(1.0 / np.log(2.0))
_LN2_HI = np.float32(np.round(np.log(2.0) * 2.0**16) / 2.0**16)
_LN2_LO = np.float32(np.log(2.0) - np.float64(_LN2_HI))
_EXP_E = (
    np.float32(0.49999994),
    np.float32(0.16666515),
    np.float32(0.041668445),
    np.float32(0.008369425),
    np.float32(0.0013813644),
)
_EXP_EXTRA = 32

_FORMS = ("none", "tanh", "sigmoid")


def _horner(coefficients, t):
    result = jnp.full_like(t, coefficients[-1])
    for c in coefficients[-2::-1]:
        result = result * t + c
    return result


# --- Exact form ---


def _exp_scaled(a, a_lo):
    """exp(a + a_lo) * 2^32 for float32 a in [-106, 0], a_lo tiny."""
    k = jnp.round(a * _LOG2_E)
    # a - k ln2_hi is exact (the operands agree in their leading bits), so
    # the reduced argument keeps a_lo's correction in full.
    r = (a - k * _LN2_HI) + (a_lo - k * _LN2_LO)
    poly = 1 + (r + (r * r) * _horner(_EXP_E, r))
    # 2^(k + 32) built from its exponent bits; k + 32 >= -120 here.
    biased = jax.lax.convert_element_type(k, jnp.int32) + (127 + _EXP_EXTRA)
    power = jax.lax.bitcast_convert_type(
        jax.lax.shift_left(biased, np.int32(23)), jnp.float32
    )
    return poly * power


def _exact_terms_f32(x):
    """Returns t Phi(-t) and t phi(t) - Phi(-t) for t = |x|, float32."""
    t = jnp.minimum(jnp.abs(x), _EXACT_T_MAX)

    # t^2 = sq + sq_err exactly: the 12-bit head squares exactly and the
    # rest is head * tail terms. exp(-t^2 / 2) from the rounded square
    # alone would be off by t^2 2^-25, 40 ULPs near t = 13.
    head = keep_high_bits(t, 12)
    tail = t - head
    sq = t * t
    sq_err = (head * head - sq) + tail * (head + t)
    # e^{-t^2/2} 2^32, and kappa 2^-32 to scale back: both exact scalings.
    gauss = _exp_scaled(-0.5 * sq, -0.5 * sq_err)
    scale = np.float32(np.float64(_KAPPA) * 2.0**-_EXP_EXTRA)

    # t >= 0.75: Mills ratio. Multiplied in this order, a normal result
    # never passes through a subnormal intermediate.
    q = _horner(_EXACT_Q, t)
    tq = t * q
    den = tq + _horner(_EXACT_P, t)
    m_mills = (gauss * (tq / den)) * scale
    w_mills = ((t - q / den) * gauss) * scale

    # t < 0.75: series.
    tail_cdf = 0.5 - t * _horner(_EXACT_S, sq)
    m_series = t * tail_cdf
    w_series = (t * gauss) * scale - tail_cdf

    small = t < _EXACT_T_SMALL
    return (
        jnp.where(small, m_series, m_mills),
        jnp.where(small, w_series, w_mills),
    )


def _exact_terms_f64(x):
    """Returns t Phi(-t) and t phi(t) - Phi(-t) for t = |x|, float64."""
    # NOTE: float64 uses XLA's erfc without the error-free square above;
    # its relative error grows like t^2 2^-53 in the far left tail.
    t = jnp.minimum(jnp.abs(x), 40.0)
    tail_cdf = 0.5 * jax.lax.erfc(t * np.sqrt(0.5))
    m = t * tail_cdf
    w = (t / np.sqrt(2 * np.pi)) * jnp.exp(-0.5 * t * t) - tail_cdf
    return m, w


def _exact_terms(x):
    if x.dtype == jnp.float32:
        return _exact_terms_f32(x)
    return _exact_terms_f64(x)


@jax.custom_jvp
def _gelu_exact(x):
    x32 = upcast(x)
    m, _ = _exact_terms(x32)
    # gelu(x) = x Phi(x): for x = -t that is -t Phi(-t) = -m; for x = t,
    # t (1 - Phi(-t)) = x - m, and m <= x / 2 so nothing cancels.
    return jnp.where(x32 < 0, -m, x32 - m).astype(x.dtype)


@_gelu_exact.defjvp
def _gelu_exact_jvp(primals, tangents):
    (x,), (x_dot,) = primals, tangents
    x32 = upcast(x)
    _, w = _exact_terms(x32)
    # gelu'(x) = Phi(x) + x phi(x): Phi(-t) - t phi(t) = -w for x = -t,
    # 1 - Phi(-t) + t phi(t) = 1 + w for x = t.
    slope = jnp.where(x32 < 0, -w, 1 + w)
    out_dot = slope * upcast(jnp.asarray(x_dot))
    # The value through the function itself, so that differentiating this
    # rule again uses the rule (XLA merges the repeated work).
    return _gelu_exact(x), out_dot.astype(x.dtype)


# --- Tanh form ---


def _tanh_parts_f32(x):
    """Returns u = A x + B x^3 as u_hi + u_lo (36 bits), u' and u''.

    u_hi is the plain float32 evaluation x (A + B x^2), rounded four times;
    u_lo is its error, from error-free products and sums: x^2 exactly, B x^2
    with B split, A + B x^2 by Fast2Sum (both terms are positive), and the
    product by x with both factors split.
    """
    x = jnp.clip(x, -16.0, 16.0)

    # x^2 = sq + sq_err exactly.
    head = keep_high_bits(x, 12)
    tail = x - head
    sq = x * x
    sq_err = (head * head - sq) + tail * (head + x)

    # c = A + B x^2 = c + c_err, exact to about 2^-36 relative.
    sq_head = keep_high_bits(sq, 12)
    b_sq = _B_HI * sq_head  # exact: 12 + 12 bits
    b_rest = _B_LO * sq_head + _B * ((sq - sq_head) + sq_err)
    c = _A + b_sq
    c_err = (jnp.maximum(_A, b_sq) - c) + jnp.minimum(_A, b_sq)
    c_err = c_err + (b_rest + _A_LO)

    # u = x c: u_hi is the ordinary evaluation; head * c_head lies within a
    # factor 2 of it, so their difference is exact (Sterbenz).
    u_hi = x * (_A + _B * sq)
    c_head = keep_high_bits(c, 12)
    c_tail = (c - c_head) + c_err
    u_lo = ((head * c_head - u_hi) + tail * c_head) + x * c_tail
    du = _A + np.float32(3 * _B64) * sq
    return GateParts(x, u_hi, u_lo, du, np.float32(6 * _B64) * x)


def _tanh_parts_f64(x):
    # NOTE: no error-free split in float64: the rounding of u, ~|u| 2^-53,
    # costs up to hundreds of float64 ULPs in the far left tail.
    x = jnp.clip(x, -24.0, 24.0)
    sq = x * x
    du = _A64 + 3 * _B64 * sq
    return GateParts(x, x * (_A64 + _B64 * sq), None, du, 6 * _B64 * x)


def _tanh_parts_plain(x):
    # Halves: one float32 rounding of u costs at most |u| 2^-24 < 2^-17 of
    # relative error where a bfloat16 result is normal, invisible after
    # the rounding to 8 (or float16's 11) bits.
    x = jnp.clip(x, -16.0, 16.0)
    sq = x * x
    du = _A + np.float32(3 * _B64) * sq
    u = x * (_A + _B * sq)
    return GateParts(x, u, None, du, np.float32(6 * _B64) * x)


def _tanh_parts(params, x):
    (precise,) = params
    if x.dtype != jnp.float32:
        return _tanh_parts_f64(x)
    return _tanh_parts_f32(x) if precise else _tanh_parts_plain(x)


def _precise(x):
    # Error-free parts for float32 inputs only; halves (computed in
    # float32) do not need them.
    return (x.dtype == jnp.float32,)


@jax.custom_jvp
def _gelu_tanh(x):
    x32 = upcast(x)
    parts = _tanh_parts(_precise(x), x32)
    # 0.5 (1 + tanh z) = sigmoid(2 z): no cancellation for z << 0.
    # u = A x + B x^3 rises with x.
    value = x_logistic(x32, parts.u_hi, parts.u_lo, rising=True)
    return value.astype(x.dtype)


@_gelu_tanh.defjvp
def _gelu_tanh_jvp(primals, tangents):
    (x,), (x_dot,) = primals, tangents
    x32 = upcast(x)
    slope = gate_slope(_tanh_parts, _precise(x), x32)
    out_dot = slope * upcast(jnp.asarray(x_dot))
    # The value through the function itself: differentiating this rule
    # again then uses the rule, not autodiff of 1 / (1 + exp(-u)), which
    # overflows (XLA merges the repeated work).
    return _gelu_tanh(x), out_dot.astype(x.dtype)


# --- Public function ---


def _parse_approximate(approximate) -> str:
    """Maps jax.nn's booleans and the three form names to a form name."""
    if isinstance(approximate, str):
        if approximate in _FORMS:
            return approximate
        raise ValueError(
            f"jax_act.gelu: unknown approximate={approximate!r}; choose "
            "one of 'none' (exact, x Phi(x)), 'tanh', 'sigmoid', or a bool "
            "(True is 'tanh', False is 'none', as in jax.nn.gelu)."
        )
    if isinstance(approximate, bool | np.bool_) or (
        isinstance(approximate, numbers.Integral) and approximate in (0, 1)
    ):
        return "tanh" if approximate else "none"
    raise TypeError(
        f"jax_act.gelu: `approximate` must be a bool or one of 'none', "
        f"'tanh', 'sigmoid' (a static Python value); got {approximate!r}."
    )


def gelu(x: ArrayLike, approximate: bool | str = True) -> jax.Array:
    r"""Gaussian error linear unit, x Phi(x), exactly or approximately.

    Weights its input by how likely a standard normal variable is to fall
    below it. The exact form uses the normal CDF; the tanh and sigmoid forms
    are the cheaper approximations of the original paper.

    .. math::

        \mathrm{exact:}\; x \, \Phi(x), \qquad
        \mathrm{tanh:}\; \tfrac{x}{2} \bigl(1 + \tanh(\sqrt{2/\pi}
            (x + 0.044715 x^3))\bigr), \qquad
        \mathrm{sigmoid:}\; x \, \sigma(1.702 x)

    where :math:`\Phi` is the standard normal CDF and :math:`\sigma` the
    logistic sigmoid.

    Numerics:
        Float32 results are within 4 ULPs of the exact value of each form
        wherever the result is a normal number, left tail included; halves
        are computed in float32 and rounded once (within 1 ULP). The tanh
        form is evaluated as x sigmoid(2 z), since 0.5 (1 + tanh z) loses
        every digit for z << 0, with 2 z carried to about 36 bits by
        error-free products (one float32 rounding of 2 z would cost up to
        40 ULPs at x = -10); x is clamped to [-16, 16] inside z, where the
        gate is exactly 0 or 1, so x^3 never overflows. The exact form
        computes Phi(-|x|) directly, never 1 + erf: a series near 0, and
        beyond |x| = 0.75 exp(-x^2 / 2), with x^2 split exactly, times a
        rational function fitted with mpmath; it is accurate down to
        x = -13.15 (`jax.nn.gelu`'s erfc-based form is off by 50 to 110
        ULPs for x in [-10, -4]). The sigmoid form is `swish` with
        beta = 1.702. Derivatives come from hand-written rules sharing
        these terms, Phi(x) + x phi(x) for the exact form and
        sigma(u) (1 + x u' sigma(-u)) for the others (within 8 ULPs of
        their larger term), and so do the second derivatives of the
        logistic forms. No NaN or inf for any finite input; +inf gives
        +inf, -inf gives 0 (derivatives 1 and 0); NaN gives NaN.
        Float64 uses the same formulas without the error-free parts, so its
        far left tail is off by up to hundreds of float64 ULPs (x = -20).

    Args:
        x: input array; integer and bool inputs become floats.
        approximate: True or 'tanh' for the tanh form (jax.nn's default),
            False or 'none' for the exact form, 'sigmoid' for x
            sigmoid(1.702 x). Static.

    Returns:
        Array of `x`'s shape and floating dtype.

    Raises:
        TypeError: for complex or non-numeric `x`, or an `approximate` that
            is neither a bool nor a string.
        ValueError: for an unknown `approximate` string.

    Examples:
        >>> import jax.numpy as jnp
        >>> import jax_act
        >>> x = jnp.array([-1.0, 0.0, 1.0])
        >>> jax_act.gelu(x, approximate=False)
        Array([-0.15865526,  0.        ,  0.8413447 ], dtype=float32)
        >>> jax_act.gelu(x)
        Array([-0.15880801,  0.        ,  0.841192  ], dtype=float32)
        >>> jax_act.gelu(x, approximate="sigmoid")
        Array([-0.15420423,  0.        ,  0.84579575], dtype=float32)

        The left tail, which jax.nn.gelu's tanh form rounds to 0:

        >>> jax_act.gelu(jnp.float32(-6.0))
        Array(-8.439646e-11, dtype=float32)

    References:
        D. Hendrycks and K. Gimpel, "Gaussian Error Linear Units (GELUs)",
        arXiv:1606.08415, 2016.

    See Also:
        `jax.nn.gelu` (exact and tanh forms; 0 for x <= -5 in float32 in
        the tanh form), `swish`, `silu`.
    """
    form = _parse_approximate(approximate)
    x = _checks.as_float_array(x, "gelu")
    if form == "none":
        return _gelu_exact(x)
    if form == "tanh":
        return _gelu_tanh(x)
    return _swish_static(x, SIGMOID_BETA)
