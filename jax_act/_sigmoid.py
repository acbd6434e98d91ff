r"""The logistic sigmoid and its logarithm: the two-class softmax.

sigmoid(x) = softmax([0, x])[1] and log_sigmoid(x) = log_softmax([0, x])[1];
written element-wise here because the two-entry row needs no reduction.

Both are built on t = sigma(-|x|) = E / (1 + E) with E = exp(-|x|) in
(0, 1]: sigmoid(x) is t for x < 0 and 1 - t for x >= 0, log_sigmoid(x) is
min(x, 0) - log1p(E). In float32 the plain formulas lose up to 2.5 ULP
(XLA's exp alone is off by up to 1 ULP, its log1p by 2.5), so E and
log1p(E) are computed here as unevaluated sums hi + lo, accurate to about
2^-26, and each result is rounded about once: measured worst errors are
1.3 ULP (sigmoid) and 1.1 ULP (log_sigmoid) over every float32 input whose
result is a normal number.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jax_act import _checks
from jax_act._numerics import upcast

_F32 = np.float32

# ln 2 = _LN2_HI + _LN2_LO. _LN2_HI keeps 16 significant bits, so n * _LN2_HI
# is exact in float32 for every integer |n| <= 128 that the reduction
# below uses; _LN2_LO is the float32 rounding of the rest (1.43e-6).
_LN2_HI = _F32(0.693145751953125)
_LN2_LO = _F32(np.log(2.0) - 0.693145751953125)
_LOG2E = _F32(1.0 / np.log(2.0))
# Adding 1.5 * 2^23 to |v| <= 2^22 rounds v to the nearest integer n, held
# in the low bits of the sum: bits(v + _MAGIC) = bits(_MAGIC) + n.
_MAGIC = _F32(1.5 * 2.0**23)
# b is clamped to 88, which keeps n >= -127 and the scale 2^n buildable from
# exponent bits; for b > 87.7, n = -127 gives the scale +0 and exp(-b) = 0
# (the right answer for b = inf). The true values there are subnormal
# (below 8e-39), which XLA:CPU flushes to 0 anyway.
_EXP_CLAMP = _F32(88.0)

# exp(r) = 1 + r + r^2 P(r) on |r| <= ln(2) / 2 + 0.001. P has degree 4;
# we fitted its coefficients ourselves (an iteratively reweighted
# least-squares fit to the minimax polynomial, against mpmath at 120 bits)
# and rounded them to float32. The polynomial's own error in exp(r) is
# 3e-9 (2^-28); evaluated in float32, hi + lo below is within 2^-26.
_EXP_P = tuple(
    _F32(c)
    for c in (
        0.5,
        0.16666516661643982,
        0.04166620224714279,
        0.00836909469217062,
        0.0013950837310403585,
    )
)

# log(1 + f) = f - f^2 / 2 + s (f^2 / 2 + R(s^2)) with s = f / (2 + f),
# exact for R(z) = 2z/3 + 2z^2/5 + ... (the atanh series of log, arranged
# as in fdlibm). R(z) = z Q(z), Q of degree 2 fitted by us as above on
# 0 <= z <= 0.1716^2 (|f| <= sqrt(2) - 1): error in s R below 2e-10.
_LOG_Q = tuple(
    _F32(c)
    for c in (0.666668176651001, 0.3997354507446289, 0.29962849617004395)
)
_SQRT2 = _F32(np.sqrt(2.0))


def _opaque_constants():
    """1 and _MAGIC, hidden from XLA's algebraic simplifier.

    XLA rewrites (a + C) - C into a for a constant C, even in floating
    point. That destroys every error-free transform below that adds 1 (or
    the rounding constant) and subtracts it again to find the rounding
    error; behind an optimization barrier the constants are opaque values
    and the arithmetic is kept as written. (Measured: without it the
    rounding error of 1 + r comes out as exactly 0.)
    """
    return jax.lax.optimization_barrier((_F32(1.0), _MAGIC))


def _exp_neg_f32(b, one, magic):
    """exp(-b) for float32 b >= 0 (or NaN), as hi + lo.

    hi is within 0.7 ULP of exp(-b) and hi + lo within 2^-26 relative
    (measured over [0, 87.3]; the roundings in q dominate), so that the
    callers can round their own result about once instead of inheriting
    exp's error (XLA's exp: up to 1 ULP). Below 2^-102, 2^n lo is
    subnormal and flushed to 0 on CPU; hi alone is then still within 0.7
    ULP.
    """
    b = jnp.minimum(b, _EXP_CLAMP)

    # Range reduction -b = n ln 2 + r, |r| <= ln(2) / 2. n is piecewise
    # constant in b (stop_gradient: its derivative is 0, and the bit casts
    # below have no derivative rule).
    z = jax.lax.stop_gradient(b) * (-_LOG2E) + magic
    n = z - magic
    # Exact: n * _LN2_HI is exact and lies within a factor 2 of -b.
    r = -b - n * _LN2_HI
    # exp(-b) = 2^n exp(r) exp(-p), p = n * _LN2_LO <= 1.9e-4:
    # exp(r) exp(-p) = exp(r) - p (exp(r) - p / 2) + O(p^3).
    p = n * _LN2_LO

    # exp(r) = 1 + r + q, q = r^2 P(r), P evaluated in Estrin's form.
    r2 = r * r
    c0, c1, c2, c3, c4 = _EXP_P
    q = r2 * ((c0 + c1 * r) + r2 * ((c2 + c3 * r) + r2 * c4))
    # 1 + r rounds (by up to 2^-25); its error h_err is exact (Fast2Sum,
    # |r| < 1). Everything small goes into lo.
    h = one + r
    h_err = r - (h - one)
    lo = h_err + (q - p * ((h + q) - _F32(0.5) * p))
    # Renormalise so that hi is the nearest float to hi + lo and lo is
    # tiny: the callers correct to first order in lo.
    hi = h + lo
    lo = (h - hi) + lo

    # 2^n from its exponent bits: the low bits of z hold n (see _MAGIC).
    bits = (jax.lax.bitcast_convert_type(z, jnp.int32) + 127) << 23
    scale = jax.lax.bitcast_convert_type(bits, jnp.float32)
    return hi * scale, lo * scale


def _abs_and_sign(x):
    """(|x|, x < 0), |x| written as a select.

    Its derivative at 0 is then 1 (jnp.abs has 0 there), so that
    second-order autodiff through the rules below gets sigma's slope at
    x = 0 right.
    """
    neg = x < 0
    return jnp.where(neg, -x, x), neg


def _tail(x):
    """The tail t = sigma(-|x|) = E / (1 + E), in [0, 1/2], E = exp(-|x|).

    Returns (t, e, d, neg, one): t; e ~ E and d ~ 1 + E, rounded, for the
    derivative; the mask x < 0; and 1 (in float32 the opaque 1 of
    `_opaque_constants`). float64 (with x64 enabled) uses XLA's exp, and
    E / (1 + E) is accurate there to a few ULPs.
    """
    b, neg = _abs_and_sign(x)
    if x.dtype != jnp.float32:
        e = jnp.exp(-b)
        d = 1 + e
        return e / d, e, d, neg, x.dtype.type(1)

    one, magic = _opaque_constants()
    eh, el = _exp_neg_f32(b, one, magic)
    # t = E / (1 + E), E = eh + el. d = 1 + eh rounds by up to 2^-24 (a whole
    # ULP of t when E ~ 2^-24, jax.nn's worst case at x = -16.6); d_err
    # recovers that rounding exactly (Fast2Sum, eh <= 1). Then, to first
    # order in the small terms, with 1 / d = 1 - t0:
    #   t = t0 + (el - t0 d_err) (1 - t0),   t0 = eh / d.
    d = one + eh
    d_err = eh - (d - one)
    # The "* one" is for XLA:CPU: it does not fuse a division whose result
    # has several users into the consumer kernel, and would write t0 to a
    # full-size temporary (measured 1.4x slower). Multiplying by the opaque
    # 1 leaves the division a single user; it changes no value.
    t0 = (eh / d) * one
    t = t0 + (el - t0 * d_err) * (one - t0)
    return t, eh, d, neg, one


def _sigmoid_parts(x):
    """(sigmoid(x), sigmoid(x) sigmoid(-x)) in x's (compute) dtype."""
    t, e, d, neg, one = _tail(x)
    # 1 - t is rounded once; t's own error shrinks by half or more in it.
    out = jnp.where(neg, t, one - t)
    # sigma'(x) = sigma(x) sigma(-x) = sigma(-|x|) sigma(|x|) = E / (1 + E)^2,
    # within 4.1 ULP (measured; mostly the rounding of 1 + E, squared). The
    # common s (1 - s) rounds 1 - s to exactly 0 for float32 x >= 17 (true
    # value ~4e-8); the product of the two tails keeps it. It is its own
    # division, not t (1 - t): XLA:CPU then computes the derivative alone
    # in one short kernel (reverse mode needs only it), and the value with
    # the derivative in two kernels that each evaluate the exp, instead of
    # three kernels and a full-size temporary.
    slope = e / (d * d)
    return out, slope


@jax.custom_jvp
def _sigmoid(x):
    return _sigmoid_parts(upcast(x))[0].astype(x.dtype)


@_sigmoid.defjvp
def _sigmoid_jvp(primals, tangents):
    (x,), (x_dot,) = primals, tangents
    out, slope = _sigmoid_parts(upcast(x))
    return out.astype(x.dtype), (slope * upcast(x_dot)).astype(x.dtype)


def _log1p_f32(eh, el, one):
    """log1p(eh + el) for 0 <= eh + el <= 1, as hi + lo (fdlibm's scheme).

    log1p(E) = k ln 2 + log(1 + f) + c with u = fl(1 + E) = 2^k (1 + f),
    |f| <= sqrt(2) - 1, and c = (E - (u - 1)) / u the correction for the
    rounding of u. f is exact, so the large terms k ln 2 + f carry no
    rounding; what is left is small and its rounding errors are too.
    (XLA's own log1p is off by up to 2.5 ULP on (0.3, 1).)
    """
    u = one + eh
    # E - (u - 1) exactly (Fast2Sum, eh <= 1), plus the tail of E.
    c_num = (eh - (u - one)) + el
    big = u > _SQRT2
    half = jnp.where(big, _F32(0.5), _F32(1.0))
    k = jnp.where(big, _F32(1.0), _F32(0.0))
    # Exact: u * half lies in [0.7, 1.42), within a factor 2 of 1.
    f = u * half - one
    # Single user for the division (see _tail).
    s = (f / (2 + f)) * one
    z = s * s
    q0, q1, q2 = _LOG_Q
    r_poly = z * (q0 + z * (q1 + z * q2))
    hfsq = _F32(0.5) * (f * f)
    # c / u without a second division: 1 / u = half (1 - s) / (1 + s)
    # = half (1 - 2s + 2s^2 - ...); c is below 2^-24 of u, so the dropped
    # 2 s^3 (1%) cannot reach the result.
    c = (c_num * half) * ((s + s) * (s - one) + one)
    # Exact: k ln2_hi (16 bits) and f are multiples of 2^-24 and their sum
    # is below 1.
    l_hi = k * _LN2_HI + f
    l_lo = (s * (hfsq + r_poly) + (c + k * _LN2_LO)) - hfsq
    return l_hi, l_lo


def _log_sigmoid_slope(e, neg, one):
    """d/dx log sigma(x) = sigma(-x), from e ~ exp(-|x|).

    sigma(-x) is 1 / (1 + E) for x < 0 and E / (1 + E) for x >= 0: one
    division, within 2.3 ULP (measured) in both tails: no 1 - s
    cancellation.
    """
    return jnp.where(neg, one, e) / (one + e)


def _log_sigmoid_parts(x):
    """(log_sigmoid(x), sigmoid(-x)) in x's (compute) dtype."""
    # log sigma(x) = y - log1p(E), y = min(x, 0), E = exp(-|x|) <= 1. The
    # direct log(1 / (1 + exp(-x))) overflows for x < -88.7 in float32 and
    # rounds to 0 for x > 17, where the true value is -exp(-x).
    b, neg = _abs_and_sign(x)
    # min(x, 0) as a select: its derivative at 0 is 0 (the x >= 0 side).
    y = jnp.where(neg, x, x.dtype.type(0))
    if x.dtype != jnp.float32:
        # float64: XLA's exp and log1p are accurate to a few ULPs there.
        e = jnp.exp(-b)
        return y - jnp.log1p(e), _log_sigmoid_slope(e, neg, x.dtype.type(1))

    one, magic = _opaque_constants()
    eh, el = _exp_neg_f32(b, one, magic)
    l_hi, l_lo = _log1p_f32(eh, el, one)
    # y - l_hi by TwoSum (the two are comparable near 0, where a plain
    # subtraction would round twice). TwoSum turns an infinite y into NaN
    # (inf - inf), so it runs on y capped at -2^100; its error term is
    # then added to the uncapped difference, which it leaves unchanged
    # wherever the cap acts (|e| < 1, far below an ULP of y), and -inf
    # stays -inf.
    y_cap = jnp.maximum(y, _F32(-(2.0**100)))
    s_cap = y_cap - l_hi
    b_virtual = s_cap - y_cap
    a_virtual = s_cap - b_virtual
    e = (y_cap - a_virtual) - (l_hi + b_virtual)
    out = (y - l_hi) + (e - l_lo)

    return out, _log_sigmoid_slope(eh, neg, one)


@jax.custom_jvp
def _log_sigmoid(x):
    return _log_sigmoid_parts(upcast(x))[0].astype(x.dtype)


@_log_sigmoid.defjvp
def _log_sigmoid_jvp(primals, tangents):
    (x,), (x_dot,) = primals, tangents
    out, slope = _log_sigmoid_parts(upcast(x))
    return out.astype(x.dtype), (slope * upcast(x_dot)).astype(x.dtype)


def sigmoid(x: ArrayLike) -> jax.Array:
    r"""Logistic sigmoid, the two-class softmax: 1 / (1 + exp(-x)).

    .. math::

        \sigma(x) = \frac{1}{1 + e^{-x}} = \mathrm{softmax}([0, x])_1

    Numerics:
        float32 is accurate to 1.3 ULP wherever the result is a normal
        number (`jax.nn.sigmoid`: 2.5 ULP, near x = -16.6): t = sigma(-|x|)
        = E / (1 + E) is formed from E = exp(-|x|) carried to about 2^-26,
        with the rounding of 1 + E corrected, and sigmoid(x) is t for
        x < 0 and 1 - t otherwise. Subnormal results (x < -87.3) may be
        flushed to 0, and are 0 from x < -87.7. bfloat16 and float16 are
        computed in float32 and rounded once; float64 uses the same
        E / (1 + E) with XLA's exp. The derivative is
        sigma(x) sigma(-x), accurate in both tails; the usual s (1 - s) is
        exactly 0 for float32 x >= 17 and bfloat16 x >= 6.5. NaN gives
        NaN; +-inf give 1 and 0 with derivative 0.

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
        Array([0.2689414, 0.5      , 0.7310586], dtype=float32)

    See Also:
        `jax.nn.sigmoid`; more accurate values, and a derivative accurate
        in the tails.
    """
    return _sigmoid(_checks.as_float_array(x, "sigmoid"))


def log_sigmoid(x: ArrayLike) -> jax.Array:
    r"""Logarithm of the sigmoid, -softplus(-x), the two-class log_softmax.

    .. math::

        \log \sigma(x) = \min(x, 0) - \log(1 + e^{-|x|})

    Numerics:
        Finite for every finite x (no overflow for x < -88.7, and the tiny
        value -exp(-x) is kept for large x). float32 is accurate to 1.1
        ULP wherever the result is a normal number (`jax.nn.log_sigmoid`:
        2.8 ULP near x = 0.68): exp(-|x|) and log1p of it are carried as
        hi + lo pairs and min(x, 0) - log1p is summed exactly before one
        final rounding. Halves are computed in float32 and rounded once;
        float64 uses the formula above with XLA's exp and log1p. The
        derivative is sigma(-x).

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
        `jax.nn.log_sigmoid`; more accurate values.
    """
    return _log_sigmoid(_checks.as_float_array(x, "log_sigmoid"))
