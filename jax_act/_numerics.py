"""Shared numerical internals: compute dtypes and error-free transforms."""

import functools
from typing import NamedTuple

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


def _corrected(e, u_lo):
    """exp(-(u_hi + u_lo)) scaled, from e = exp(-u_hi) scaled.

    exp(-u_lo) = 1 - u_lo + O(u_lo^2), and u_lo is a few ULPs of u_hi
    (below 1e-4), so the dropped term is below 1e-8, under float32's
    rounding. Folding the correction into the exponential corrects
    sigmoid(u) and sigmoid(-u) alike, for two operations. Written as a
    product, not e - e u_lo, so that an overflowed e stays inf (never
    inf - inf).
    """
    return e if u_lo is None else e * (1 - u_lo)


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
    # Where the gate vanishes e may overflow to inf: a clean zero.
    scale, e, _ = _shifted_exp(u_hi, lim, capped=False)
    return (x * scale) / (scale + _corrected(e, u_lo))


def gate_terms(
    u_hi: jax.Array, u_lo: jax.Array | None = None
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(scale, r, s_neg) with sigmoid(u) = scale r and sigmoid(-u) = s_neg.

    u = u_hi + u_lo (u_lo None: u_hi is exact). r = 1 / (scale + e),
    e = exp(-u) scale, with exp's argument capped so that everything is
    finite (past the cap the gate is far below the smallest normal).
    Results of the form (numerator) r with numerator a multiple of `scale`
    stay normal where the true result is; see `_shifted_exp`.
    """
    scale, e, _ = _shifted_exp(u_hi, _limits(u_hi.dtype), capped=True)
    # The correction is applied to each use of e on its own: a corrected e
    # used twice makes XLA:CPU write it out as a full-size temporary (a
    # second kernel) rather than fuse everything into one.
    r = 1 / (scale + _corrected(e, u_lo))
    s_neg = e * r
    return scale, r, s_neg if u_lo is None else s_neg * (1 - u_lo)


class GateParts(NamedTuple):
    """The argument u(x) of a gate sigmoid(u(x)) and its derivatives.

    Attributes:
        x: the x at which u was evaluated (clamped where the gate is
            already exactly 0 or 1, so that everything below is finite).
        u_hi: u(x) rounded.
        u_lo: its rounding error (finite), or None when u_hi is exact.
        du: u'(x).
        d2u: u''(x), or None where u is linear.
    """

    x: jax.Array
    u_hi: jax.Array
    u_lo: jax.Array | None
    du: jax.Array
    d2u: jax.Array | None


def _gate_slope_terms(parts: GateParts, curvature: bool):
    """d/dx [x s(u)] and, optionally, d^2/dx^2, from one exp.

    With s = sigmoid(u) and n = s(-u):

        f'  = s (1 + x u' n)
        f'' = s n (2 u' + x u'' + x u'^2 (n - s))

    Both are formed as (numerator) times r = 1 / (scale + e), the order
    that keeps a shifted result normal (see `_shifted_exp`), with n = e r
    (never 1 - s). The rounding error u_lo of u is folded into e.
    """
    scale, r, s_neg = gate_terms(parts.u_hi, parts.u_lo)
    x_du = parts.x * parts.du
    slope = (scale * (1 + x_du * s_neg)) * r
    if not curvature:
        return slope, None
    # s itself may be subnormal here; it only matters where it is not.
    s_pos = scale * r
    bracket = 2 * parts.du + x_du * parts.du * (s_neg - s_pos)
    if parts.d2u is not None:
        bracket = bracket + parts.x * parts.d2u
    return slope, ((scale * bracket) * r) * s_neg


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def gate_slope(parts_fn, params, x):
    """The derivative of x * sigmoid(u(x)), with its own derivative rule.

    Autodiff through the first-derivative formula would differentiate
    1 / (scale + e) as -1 / (scale + e)^2, which overflows (giving 0, or
    the wrong sign) for u below about -44; the rule below writes the
    second derivative out instead.

    Args:
        parts_fn: parts_fn(params, x) -> GateParts. Static.
        params: hashable parameters of u (e.g. (beta,)). Static.
        x: float32 or float64 array.

    Returns:
        d/dx [x sigmoid(u(x))], of x's shape and dtype.
    """
    return _gate_slope_terms(parts_fn(params, x), curvature=False)[0]


@gate_slope.defjvp
def _gate_slope_jvp(parts_fn, params, primals, tangents):
    (x,), (x_dot,) = primals, tangents
    slope, curve = _gate_slope_terms(parts_fn(params, x), curvature=True)
    return slope, curve * x_dot
