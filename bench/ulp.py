"""ULP distances, measured the same way as the tests measure them.

This duplicates ``ulp_distance`` of tests/reference.py (the bench package
must not import the test tree) and adds the mask of points the accuracy
harness counts: those whose reference result is a normal number of the
dtype. Keep the two definitions in step.
"""

import numpy as np


def ulp_distance(actual, expected):
    """Distance in units in the last place of `actual`'s dtype.

    `expected` is a float64 (or exact) reference; the distance is measured
    in ULPs of the dtype of `actual` at the magnitude of the reference
    rounded to that dtype. Equal infinities and matching NaNs are at
    distance 0; a NaN against a number is inf.
    """
    actual = np.asarray(actual)
    dtype = actual.dtype
    a = actual.astype(np.float64)
    e = np.asarray(expected, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        e_rounded = e.astype(dtype).astype(np.float64)
        spacing = np.spacing(np.abs(e_rounded).astype(dtype))
    spacing = spacing.astype(np.float64)
    tiny = float(np.finfo(dtype).smallest_subnormal)
    spacing = np.maximum(spacing, tiny)
    with np.errstate(invalid="ignore"):
        dist = np.abs(a - e) / spacing
    same = (a == e) | (np.isnan(a) & np.isnan(e))
    dist = np.where(same, 0.0, dist)
    return np.where(np.isnan(dist), np.inf, dist)


def normal_mask(expected, dtype):
    """True where `expected` is a normal (finite, non-zero) number of dtype.

    Zero, subnormal, overflowing and non-finite references are left out:
    there the ULP of the dtype is not a relative measure any more.
    """
    e = np.abs(np.asarray(expected, dtype=np.float64))
    info = np.finfo(dtype)
    return (e >= float(info.tiny)) & (e <= float(info.max))


def worst_ulp(actual, expected) -> float:
    """The largest ulp_distance over the points with a normal reference."""
    actual = np.asarray(actual)
    normal = normal_mask(expected, actual.dtype)
    return float(np.max(ulp_distance(actual, expected)[normal]))
