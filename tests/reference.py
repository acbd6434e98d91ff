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
