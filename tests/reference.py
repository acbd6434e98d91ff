"""Float64 and mpmath references, and ULP distances, shared by the tests.

The references are deliberately plain formulas: they are what the fast,
stabilised implementations are measured against.
"""

import mpmath
import numpy as np

mpmath.mp.prec = 113  # quad precision: far beyond any float64 rounding


def ulp_distance(actual, expected):
    """Distance in units in the last place of `actual`'s dtype.

    `expected` is a float64 (or exact) reference; it is measured in ULPs of
    the dtype of `actual` at the reference's magnitude. Equal infinities
    and matching NaNs are at distance 0; a NaN against a number is inf.
    """
    actual = np.asarray(actual)
    dtype = actual.dtype
    a = actual.astype(np.float64)
    e = np.asarray(expected, dtype=np.float64)
    e_rounded = e.astype(dtype).astype(np.float64)
    spacing = np.spacing(np.abs(e_rounded).astype(dtype)).astype(np.float64)
    tiny = np.finfo(dtype).smallest_subnormal
    spacing = np.maximum(spacing, float(tiny))
    with np.errstate(invalid="ignore"):
        dist = np.abs(a - e) / spacing
    same = (a == e) | (np.isnan(a) & np.isnan(e))
    dist = np.where(same, 0.0, dist)
    return np.where(np.isnan(dist), np.inf, dist)


def softmax64(x, axis=-1, where=None, temperature=1.0):
    x = np.asarray(x, np.float64) / np.asarray(temperature, np.float64)
    if where is not None:
        x = np.where(where, x, -np.inf)
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.exp(x - m)
    s = np.sum(e, axis=axis, keepdims=True)
    return e / np.where(s == 0, 1.0, s)


def log_softmax64(x, axis=-1, where=None, temperature=1.0):
    """Float64 log_softmax that stays exact near 0 for a confident row.

    x - logsumexp(x) cancels in float64 too when the largest entry holds
    almost all the mass (true value -1.6e-12 at x_max = 142 has an absolute
    float64 error of 3e-14). Instead: (x - m) - log1p(rest), where rest sums
    exp(x - m) over all entries but one maximal one.
    """
    x = np.asarray(x, np.float64) / np.asarray(temperature, np.float64)
    if where is not None:
        x = np.where(where, x, -np.inf)
    x = np.moveaxis(x, axis, -1)
    m = np.max(x, axis=-1, keepdims=True)
    m_safe = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(invalid="ignore"):
        d = x - m_safe
    e = np.exp(d)
    first_max = np.argmax(x, axis=-1)[..., None]
    np.put_along_axis(e, first_max, 0.0, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = d - np.log1p(np.sum(e, axis=-1, keepdims=True))
    out = np.where(m == -np.inf, -np.inf, out)
    return np.moveaxis(out, -1, axis)


def logsumexp64(x, axis=-1, keepdims=False, where=None):
    x = np.asarray(x, np.float64)
    if where is not None:
        x = np.where(where, x, -np.inf)
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        out = m + np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))
    return out if keepdims else np.squeeze(out, axis=axis)


def softmax_mp(row):
    """Softmax of a 1-D float array, in mpmath, rounded to float64."""
    vals = [mpmath.mpf(float(v)) for v in row]
    m = max(vals)
    exps = [mpmath.exp(v - m) for v in vals]
    total = mpmath.fsum(exps)
    return np.array([float(e / total) for e in exps])


def log_softmax_mp(row):
    vals = [mpmath.mpf(float(v)) for v in row]
    m = max(vals)
    log_total = m + mpmath.log(mpmath.fsum(mpmath.exp(v - m) for v in vals))
    return np.array([float(v - log_total) for v in vals])


def sigmoid_mp(x):
    return np.array(
        [float(1 / (1 + mpmath.exp(-mpmath.mpf(float(v))))) for v in x]
    )


def log_sigmoid_mp(x):
    return np.array(
        [float(-mpmath.log1p(mpmath.exp(-mpmath.mpf(float(v))))) for v in x]
    )


def sigmoid64(x):
    x = np.asarray(x, np.float64)
    return np.where(x >= 0, 1 / (1 + np.exp(-x)), np.exp(x) / (1 + np.exp(x)))


def log_sigmoid64(x):
    x = np.asarray(x, np.float64)
    return np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))


# Dtypes whose subnormals are the float32 (or float64) ones: XLA:CPU flushes
# float32 subnormals to zero, so results computed in float32 may be 0 there.
_FLUSHED_DTYPES = ("float32", "float64", "bfloat16")


def assert_ulp(actual, expected, max_ulp):
    """Asserts the worst ULP distance, naming the worst entry on failure.

    Where the reference is below the smallest normal number of a dtype in
    _FLUSHED_DTYPES, any result within that smallest normal passes: ULPs
    are counted where the reference is normal, as the accuracy harness
    does. float16 results are rounded from float32, whose range covers
    float16's subnormals: they are measured everywhere.

    Returns:
        The worst distance, in ULPs of `actual`'s dtype.
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected, np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        dist = ulp_distance(actual, expected)
        if actual.dtype.name in _FLUSHED_DTYPES:
            import ml_dtypes

            tiny = float(ml_dtypes.finfo(actual.dtype).smallest_normal)
            flushed = np.abs(expected) < tiny
            close = np.abs(actual.astype(np.float64) - expected) <= tiny
            dist = np.where(flushed & close, 0.0, dist)
    if dist.size == 0:
        return 0.0
    worst = np.unravel_index(np.argmax(dist), dist.shape)
    assert dist[worst] <= max_ulp, (
        f"{dist[worst]:.3g} ULP > {max_ulp} at {worst}: got "
        f"{actual[worst]!r}, expected {expected[worst]!r}"
    )
    return float(dist[worst])


# --- GELU, swish/silu (float64 and mpmath) ---

# 2 z = A x + B x^3 in the tanh form of GELU (Hendrycks and Gimpel, 2016).
GELU_TANH_A = 2.0 * np.sqrt(2.0 / np.pi)
GELU_TANH_B = GELU_TANH_A * 0.044715


def _expit64(u):
    # 1 / (1 + e^-u) without overflow, relative error ~1e-16 in both tails.
    e = np.exp(-np.abs(u))
    return np.where(u >= 0, 1 / (1 + e), e / (1 + e))


def gated64(x, beta, cubic=0.0):
    """x * sigmoid(u), u = beta x (1 + cubic x^2), with its derivative.

    Returns (value, derivative, scale): the derivative is
    s(u) + x u' s(u) s(-u), and `scale` the largest of |derivative| and
    its two terms, the yardstick for derivative errors near its zero.
    Float64 is exact enough: the rounding error of u is ~1e-16 |u|, below
    1e-13 relative in s(u) up to |u| = 1000.
    """
    x = np.asarray(x, np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        u = beta * x * (1 + cubic * x * x)
        du = beta * (1 + 3 * cubic * x * x)
        s_pos, s_neg = _expit64(u), _expit64(-u)
        value = x * s_pos
        second = x * du * s_pos * s_neg
        deriv = s_pos + second
    scale = np.maximum(np.abs(deriv), np.maximum(s_pos, np.abs(second)))
    return value, deriv, scale


def gelu_exact64(x):
    """x Phi(x), Phi'(x) + x phi(x) and the derivative's scale, float64.

    scipy's ndtr keeps its relative accuracy in the left tail (it uses
    erfc there), about 1e-14 down to x = -14.
    """
    from scipy.special import ndtr

    x = np.asarray(x, np.float64)
    cdf = ndtr(x)
    x_pdf = x * np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi)
    deriv = cdf + x_pdf
    scale = np.maximum(np.abs(deriv), np.maximum(cdf, np.abs(x_pdf)))
    return x * cdf, deriv, scale


def gelu_exact_mp(x):
    """x Phi(x) in mpmath, rounded to float64."""
    return np.array(
        [float(mpmath.mpf(float(v)) * mpmath.ncdf(float(v))) for v in x]
    )


def gated_mp(x, beta, cubic=0.0):
    """x * sigmoid(beta x (1 + cubic x^2)) in mpmath (beta, cubic exact)."""
    beta, cubic = mpmath.mpf(beta), mpmath.mpf(cubic)
    out = []
    for v in x:
        v = mpmath.mpf(float(v))
        u = beta * v * (1 + cubic * v * v)
        out.append(float(v / (1 + mpmath.exp(-u))))
    return np.array(out)


def gelu_tanh_mp(x):
    """The tanh form with its constants exact: sqrt(2/pi) and 0.044715."""
    a = 2 * mpmath.sqrt(2 / mpmath.pi)
    return gated_mp(x, a, mpmath.mpf("0.044715"))


# --- Cross-entropy (float64) ---


def smoothed_targets64(labels, num_classes, where=None, smoothing=0.0):
    """(1 - a) onehot(y) + a / K on the K classes left in, float64."""
    onehot = np.asarray(labels)[..., None] == np.arange(num_classes)
    target = (1 - smoothing) * onehot.astype(np.float64)
    keep = (
        np.ones(onehot.shape, bool)
        if where is None
        else np.broadcast_to(where, onehot.shape)
    )
    count = np.maximum(keep.sum(-1, keepdims=True), 1)
    return target + smoothing * keep / count


def cross_entropy64(logits, target, where=None, z_loss=0.0, cap=None):
    """sum_j q_j (-log p_j) + lambda lse^2 per row, 0 for a row left out."""
    z = np.asarray(logits, np.float64)
    if cap is not None:
        z = cap * np.tanh(z / cap)
    if where is not None:
        z = np.where(where, z, -np.inf)
    log_p = log_softmax64(z)
    with np.errstate(invalid="ignore"):
        terms = np.where(target == 0, 0.0, -target * log_p)
        m = np.max(z, -1, keepdims=True)
        lse = (m + np.log(np.sum(np.exp(z - m), -1, keepdims=True)))[..., 0]
    loss = terms.sum(-1) + z_loss * lse**2
    if where is not None:
        loss = np.where(np.broadcast_to(where, z.shape).any(-1), loss, 0.0)
    return loss
