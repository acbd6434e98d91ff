"""Shared numerical internals: compute dtypes and error-free transforms."""

import jax
import jax.numpy as jnp
import numpy as np

# Half-precision inputs are computed in float32 and rounded once at the end:
# XLA:CPU runs bfloat16 arithmetic as many small kernels with conversions,
# and every intermediate rounding to 8 bits of mantissa costs accuracy.
_HALF = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))


def compute_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype to compute in for inputs of `dtype`: float32 for halves."""
    dtype = jnp.dtype(dtype)
    return jnp.dtype(jnp.float32) if dtype in _HALF else dtype


def upcast(x: jax.Array) -> jax.Array:
    """Returns `x` in its compute dtype (float32 for bf16/f16)."""
    return x.astype(compute_dtype(x.dtype))


def two_diff(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Error-free difference: returns (d, e) with d + e == a - b exactly.

    This is Knuth's TwoSum applied to (a, -b): d = fl(a - b), and e, the
    rounding error of that subtraction, is recovered exactly in floating
    point (no fast-math reassociation happens in XLA by default). Where a or
    b is infinite, e is NaN; callers mask those entries.
    """
    d = a - b
    b_virtual = d - a
    a_virtual = d - b_virtual
    e = (a - a_virtual) - (b + b_virtual)
    return d, e


# --- Extended precision for float32 element-wise activations ---
#
# The logistic-gated activations (silu, swish, the tanh and sigmoid forms
# of gelu) compute x * sigmoid(u) for some u(x). For u < 0 the relative
# error of sigmoid(u) is about |du|, the absolute error of u itself, so the
# float32 rounding of u (half an ULP of u, 4e-6 at u = -90) would cost up to
# 40 ULPs in the left tail. The helpers below carry u as an unevaluated sum
# u_hi + u_lo (u_lo a few ULPs of u_hi) and fold u_lo in to first order.


def keep_high_bits(x: jax.Array, bits: int) -> jax.Array:
    """Keeps the `bits` leading significand bits of float32 `x`, exactly.

    Clearing the low significand bits with an integer mask is exact, and
    `x - keep_high_bits(x, b)` is exact too. A product of two such parts
    with at most 24 significant bits between them is exact in float32.
    The usual Veltkamp split (c = 4097 x; hi = c - (c - x)) gives the same
    parts but relies on every product being rounded on its own; a compiler
    that contracts a product and a sum into a fused multiply-add (GPUs do
    by default) would silently break it. The mask cannot be broken that
    way. Signs, infinities and NaNs are kept.
    """
    keep = np.uint32((0xFFFFFFFF << (24 - bits)) & 0xFFFFFFFF)
    as_int = jax.lax.bitcast_convert_type(x, jnp.uint32)
    high = jax.lax.bitcast_convert_type(as_int & keep, jnp.float32)
    # Piecewise constant in x: its derivative is 0, and the low part
    # x - high carries all of x's. (Bit casts have no derivative rule.)
    return jax.lax.stop_gradient(high)


def split_constant(value: float, bits: int) -> tuple[np.float32, np.float32]:
    """Splits a float64 constant into float32 hi + lo, hi of `bits` bits.

    hi times any float32 of at most 24 - bits significant bits is exact,
    and hi + lo equals `value` to about 24 + bits bits.
    """
    hi = np.array(np.float32(value)).view(np.uint32)
    hi = hi & np.uint32((0xFFFFFFFF << (24 - bits)) & 0xFFFFFFFF)
    hi = hi.view(np.float32)[()]
    return np.float32(hi), np.float32(value - np.float64(hi))


class _LogisticLimits:
    """Per-dtype constants of the x * sigmoid(u) helpers below."""

    def __init__(self, dtype, cap, deep, shift, arg_cap):
        self.cap = dtype.type(cap)
        self.deep = dtype.type(deep)
        self.shift = dtype.type(shift)
        self.scale = dtype.type(np.exp(-shift))
        self.arg_cap = dtype.type(arg_cap)
        self.max = dtype.type(np.finfo(dtype).max)


_LOGISTIC_LIMITS = {
    # float32: exp overflows past 88.72 and sigmoid(u) turns subnormal
    # (flushed to zero on CPU) below u = -87.3, while x * sigmoid(u) stays
    # normal down to u = -91.8 for silu. Beyond |u| = 200 the logistic is
    # exactly 0 or 1 for every float32 x that matters.
    np.dtype(np.float32): (200.0, -80.0, 16.0, 88.0),
    np.dtype(np.float64): (1000.0, -700.0, 64.0, 709.0),
}


def _limits(dtype) -> _LogisticLimits:
    cap, deep, shift, arg_cap = _LOGISTIC_LIMITS[np.dtype(dtype)]
    return _LogisticLimits(np.dtype(dtype), cap, deep, shift, arg_cap)


def _shifted_exp(u_hi, lim, capped):
    """(scale, e, vanish) with e = exp(-u_hi) * scale, scale 1 or e^-shift.

    s(u) = 1 / (1 + exp(-u)) = scale / (scale + e). Without the shift, for
    u < -87.3 either exp(-u) overflows or s(u) is subnormal (flushed to 0
    on CPU), and x s(u), still a normal number down to u = -91.8, would
    come out as 0. With it, x scale / (scale + e) stays normal as long as
    the result is.

    `capped` caps exp's argument so that e stays finite and s(-u) = e r
    is never inf * 0; `vanish` marks where the cap bit, where the true
    x s(u) is below the smallest normal and x is to be zeroed.
    """
    deep = u_hi < lim.deep
    arg = -u_hi - jnp.where(deep, lim.shift, 0)
    scale = jnp.where(deep, lim.scale, 1)
    if not capped:
        return scale, jnp.exp(arg), None
    vanish = arg > lim.arg_cap
    return scale, jnp.exp(jnp.minimum(arg, lim.arg_cap)), vanish


def x_logistic(
    x: jax.Array,
    u_hi: jax.Array,
    u_lo: jax.Array | None = None,
    *,
    rising: bool | None = True,
) -> jax.Array:
    r"""Computes x * sigmoid(u_hi + u_lo), the forward pass only.

    Args:
        x: float32 or float64 array.
        u_hi: the rounded argument, same shape and dtype.
        u_lo: the argument's rounding error (a few ULPs of u_hi, finite),
            or None when u_hi is exact.
        rising: True if u grows with x (the gate vanishes as x -> -inf),
            False if it falls; x is then clamped to a finite value on the
            vanishing side, where an infinite x would meet a zero gate
            (inf * 0 = NaN). None: the caller has made x finite there.

    Returns:
        x * sigmoid(u), accurate to a few ULPs where it is normal.
    """
    lim = _limits(x.dtype)
    if rising is True:
        x = jnp.maximum(x, -lim.max)
    elif rising is False:
        x = jnp.minimum(x, lim.max)
    # Where the gate vanishes e may overflow to inf: r = 0, a clean zero.
    scale, e, _ = _shifted_exp(u_hi, lim, capped=False)
    if u_lo is None:
        return (x * scale) / (scale + e)
    r = 1 / (scale + e)
    # s(u_hi + u_lo) = s(u_hi) (1 + s(-u_hi) u_lo + O(u_lo^2)). The
    # correction is an ULP or two, so s(-u) = 1 - s(u) is plenty accurate
    # for it, and unlike e r it is never inf * 0. It is applied to the
    # numerator x scale, not to r: r u_lo would be subnormal (flushed to 0
    # on CPU) while x s(u) is still normal, for u below about -76.
    numerator = x * scale
    # (An infinite x would make inf * 0 here where the correction is 0.)
    if rising is None:
        finite = jnp.clip(x, -lim.max, lim.max)
    elif rising:
        finite = jnp.minimum(x, lim.max)
    else:
        finite = jnp.maximum(x, -lim.max)
    numerator = numerator + (finite * scale) * ((1 - scale * r) * u_lo)
    return numerator * r


def x_logistic_jvp(
    x: jax.Array,
    u_hi: jax.Array,
    u_lo: jax.Array | None,
    x_du: jax.Array,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    r"""Computes x * sigmoid(u), its derivative, and sigmoid(-u).

    With s(u) = sigmoid(u), the derivative of x s(u(x)) is
    s(u) (1 + x u'(x) s(-u)).

    Args:
        x: float32 or float64 array.
        u_hi: the rounded argument, same shape and dtype.
        u_lo: its rounding error (finite), or None.
        x_du: x times du/dx; must be finite.

    Returns:
        (value, derivative, sigmoid(-u_hi)). sigmoid(-u_hi) is accurate
        to a few ULPs in both tails.
    """
    lim = _limits(x.dtype)
    scale, e, vanish = _shifted_exp(u_hi, lim, capped=True)
    r = 1 / (scale + e)
    # s(-u) = e r: no 1 - s(u) cancellation for u > 0.
    s_neg = e * r
    # Both results are (numerator) r; the order keeps a shifted result
    # normal.
    value = jnp.where(vanish, 0, x) * scale
    slope = scale * (1 + x_du * s_neg)
    if u_lo is not None:
        # s(u_hi + u_lo) = s(u_hi) (1 + s(-u_hi) u_lo + O(u_lo^2)), applied
        # to the numerators (r u_lo could be subnormal). The factor
        # (1 + x u' s(-u)) moves by s(u) u_lo relative to its terms, far
        # below an ULP of the result.
        correction = s_neg * u_lo
        finite = jnp.clip(value, -lim.max, lim.max)  # inf * 0 is NaN
        value = value + finite * correction
        slope = slope + slope * correction
    return value * r, slope * r, s_neg
