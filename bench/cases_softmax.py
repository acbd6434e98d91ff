"""Benchmark cases of the softmax family: softmax, log_softmax, logsumexp,
sigmoid and log_sigmoid, against their jax.nn namesakes.

References: mpmath at 113 bits for small input sets (the quick run), and
float64 otherwise. Float64 is exact enough for these functions: the inputs
are float32 or narrower, so x - max is exact in float64, and the remaining
float64 roundings (exp, a pairwise sum, one division or log1p) sit some
2^-40 below a float32 ULP. Where a naive float64 formula would cancel (the
largest entry of a confident log_softmax row, log_sigmoid of a large x),
the references use log1p of the small term, as the tests' references do.
"""

from __future__ import annotations

import functools

import jax
import mpmath
import numpy as np

import jax_act
from bench.registry import AccuracyCase, SpeedCase, register

# Input sets up to this many points get an mpmath reference (about 35 us a
# point); larger ones the float64 formulas.
MP_MAX_POINTS = 8192
MP_PREC = 113  # bits: IEEE quad precision

# Small (dispatch-bound), large with many rows, large with few long rows.
FULL_SHAPES = ((32, 1024), (4096, 4096), (64, 131072))
QUICK_SHAPES = ((8, 128),)


# --- Speed ---


def _normal_args(shape, dtype, rng, scale=1.0):
    x = rng.standard_normal(shape, dtype=np.float32) * np.float32(scale)
    return (x.astype(dtype),)


def _torch_softmax(x):
    import torch

    return torch.softmax(x, dim=-1)


def _torch_log_softmax(x):
    import torch

    return torch.log_softmax(x, dim=-1)


def _torch_logsumexp(x):
    import torch

    return torch.logsumexp(x, dim=-1)


def _torch_sigmoid(x):
    import torch

    return torch.sigmoid(x)


def _torch_log_sigmoid(x):
    import torch

    return torch.nn.functional.logsigmoid(x)


register(
    SpeedCase(
        name="softmax",
        ours=jax_act.softmax,
        baseline=jax.nn.softmax,
        make_args=_normal_args,
        # (256, 32768) has few rows: XLA:CPU does not fuse it into one
        # kernel the way it does for 4096 rows (see PERFORMANCE-NOTES).
        shapes=((32, 1024), (4096, 4096), (256, 32768), (64, 131072)),
        quick_shapes=QUICK_SHAPES,
        torch=_torch_softmax,
    )
)
register(
    SpeedCase(
        name="log_softmax",
        ours=jax_act.log_softmax,
        baseline=jax.nn.log_softmax,
        make_args=_normal_args,
        shapes=FULL_SHAPES,
        quick_shapes=QUICK_SHAPES,
        torch=_torch_log_softmax,
    )
)
register(
    SpeedCase(
        name="logsumexp",
        ours=functools.partial(jax_act.logsumexp, axis=-1),
        baseline=functools.partial(jax.nn.logsumexp, axis=-1),
        make_args=_normal_args,
        shapes=FULL_SHAPES,
        quick_shapes=QUICK_SHAPES,
        torch=_torch_logsumexp,
    )
)
# Pre-activations of a few units' spread, so both tails get exercised.
_spread_args = functools.partial(_normal_args, scale=4.0)
register(
    SpeedCase(
        name="sigmoid",
        ours=jax_act.sigmoid,
        baseline=jax.nn.sigmoid,
        make_args=_spread_args,
        shapes=FULL_SHAPES,
        quick_shapes=QUICK_SHAPES,
        torch=_torch_sigmoid,
    )
)
register(
    SpeedCase(
        name="log_sigmoid",
        ours=jax_act.log_sigmoid,
        baseline=jax.nn.log_sigmoid,
        make_args=_spread_args,
        shapes=FULL_SHAPES,
        quick_shapes=QUICK_SHAPES,
        torch=_torch_log_sigmoid,
    )
)


# --- References ---


def _use_mp(x, method):
    """mpmath for "mp", float64 for "float64", by size for "auto"."""
    if method not in ("auto", "mp", "float64"):
        raise ValueError(f"method must be auto, mp or float64, not {method}")
    return method == "mp" or (method == "auto" and x.size <= MP_MAX_POINTS)


def _rowwise_mp(fn, x):
    """Applies an mpmath row function to every row of the last axis."""
    rows = x.reshape(-1, x.shape[-1])
    with mpmath.workprec(MP_PREC):
        out = [fn([mpmath.mpf(float(v)) for v in row]) for row in rows]
    lead = x.shape[:-1]
    return np.asarray(out, dtype=np.float64).reshape(*lead, -1)


def _softmax_row_mp(row):
    m = max(row)
    exps = [mpmath.exp(v - m) for v in row]
    total = mpmath.fsum(exps)
    return [float(e / total) for e in exps]


def _log_softmax_row_mp(row):
    m = max(row)
    log_total = mpmath.log(mpmath.fsum(mpmath.exp(v - m) for v in row))
    return [float(v - m - log_total) for v in row]


def _logsumexp_row_mp(row):
    m = max(row)
    return [float(m + mpmath.log(mpmath.fsum(mpmath.exp(v - m) for v in row)))]


def _shift_and_rest(x):
    """x - max (exact here) and sum(exp(x - max)) - 1, without adding 1."""
    shifted = x - np.max(x, axis=-1, keepdims=True)
    at_max = shifted == 0
    exps = np.where(at_max, 0.0, np.exp(shifted))
    count = np.sum(at_max, axis=-1, keepdims=True)
    rest = np.sum(exps, axis=-1, keepdims=True) + (count - 1)
    return shifted, rest


def softmax_reference(x, method="auto"):
    x = np.asarray(x, dtype=np.float64)
    if _use_mp(x, method):
        return _rowwise_mp(_softmax_row_mp, x)
    shifted = x - np.max(x, axis=-1, keepdims=True)
    exps = np.exp(shifted)
    return exps / np.sum(exps, axis=-1, keepdims=True)


def log_softmax_reference(x, method="auto"):
    x = np.asarray(x, dtype=np.float64)
    if _use_mp(x, method):
        return _rowwise_mp(_log_softmax_row_mp, x)
    # log(sum) = log1p(rest): for a confident row the largest entry's value
    # -log1p(rest) is far below float64's 1 + eps, which log(1 + rest) loses.
    shifted, rest = _shift_and_rest(x)
    return shifted - np.log1p(rest)


def logsumexp_reference(x, method="auto"):
    x = np.asarray(x, dtype=np.float64)
    if _use_mp(x, method):
        return _rowwise_mp(_logsumexp_row_mp, x)[..., 0]
    _, rest = _shift_and_rest(x)
    return np.max(x, axis=-1) + np.log1p(rest[..., 0])


def sigmoid_reference(x, method="auto"):
    x = np.asarray(x, dtype=np.float64)
    if _use_mp(x, method):
        with mpmath.workprec(MP_PREC):
            out = [float(1 / (1 + mpmath.exp(-mpmath.mpf(v)))) for v in x.flat]
        return np.asarray(out).reshape(x.shape)
    # exp(-|x|) never overflows; 1 / (1 + t) and t / (1 + t) are both
    # accurate to a few float64 ULPs for t in [0, 1].
    t = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + t), t / (1 + t))


def log_sigmoid_reference(x, method="auto"):
    x = np.asarray(x, dtype=np.float64)
    if _use_mp(x, method):
        with mpmath.workprec(MP_PREC):
            out = [
                float(-mpmath.log1p(mpmath.exp(-mpmath.mpf(v)))) for v in x.flat
            ]
        return np.asarray(out).reshape(x.shape)
    # log_sigmoid(x) = min(x, 0) - log1p(exp(-|x|)): no overflow, and for
    # large x the value -exp(-x) keeps every digit through log1p.
    return np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))


# --- Accuracy inputs ---


def _rounded(values, dtype):
    """Values rounded to `dtype` and handed back as float64."""
    with np.errstate(over="ignore"):
        return np.asarray(values).astype(dtype).astype(np.float64)


def _normal_rows(dtype, rows, n, scale, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, n)) * scale
    return _rounded(x, dtype)


def _softmax_rows(dtype, quick):
    """Random rows: 4096 wide in float32, 32768 wide in half precision."""
    if dtype == "float32":
        rows, n, scales = (64, 4096, (1, 10, 30))
    else:
        rows, n, scales = (8, 32768, (1, 10))
    if quick:
        rows, n = 1, 1024
    return [
        (
            f"normal x{s}, {rows}x{n}",
            _normal_rows(dtype, rows, n, s, seed=1000 + s),
        )
        for s in scales
    ]


def _confident_rows(dtype, quick):
    """One large entry per row: the rest sums to a tiny fraction of it.

    The largest entry's log_softmax is -log1p(rest) with rest down to about
    1e-14 here; computing log(1 + rest) rounds that to 0 or to a multiple
    of the dtype's epsilon. The quick set keeps the quick rows' shape, so
    that it needs no compilation of its own.
    """
    tops = np.array([30.0] if quick else [10.0, 15.0, 20.0, 30.0, 40.0])
    n = 1024 if quick else 4096
    x = np.random.default_rng(7).standard_normal((tops.size, n))
    x[:, 0] = tops
    return [(f"confident, {tops.size}x{n}", _rounded(x, dtype))]


def _near_zero_rows(dtype, quick):
    """A 0 entry dominating rows whose logsumexp lies in (0, 1).

    The other entries sum to 0.01-1, so the result log(1 + rest) is below
    1 and the absolute rounding of a one-pass sum, a few 2^-24, is many of
    its ULPs (jax_act.logsumexp sums in one pass, as jax.nn does). The
    quick set keeps the quick rows' shape.
    """
    rows = 1 if quick else 64
    n = 1024 if quick else 4096
    rng = np.random.default_rng(11)
    offsets = np.linspace(9.0, 13.5, rows)[:, None]
    x = rng.standard_normal((rows, n)) - offsets
    x[:, 0] = 0.0
    return [(f"0 dominant, {rows}x{n}", _rounded(x, dtype))]


def _all_values(dtype, limit, stride=1):
    """Every `stride`-th finite value of a 16-bit dtype with |v| <= limit."""
    bits = np.arange(0, 1 << 16, dtype=np.uint32).astype(np.uint16)
    values = bits.view(np.dtype(dtype))
    values = values[np.isfinite(values)].astype(np.float64)
    return np.unique(values[np.abs(values) <= limit])[::stride]


def _extremes(dtype):
    info = np.finfo(np.dtype(dtype))
    magnitudes = [
        0.0,
        float(info.smallest_subnormal),
        float(info.tiny),
        1e-30,
        1e-7,
        1.0,
        6.5,  # bfloat16's s * (1 - s) derivative cancels from here on
        16.5,
        17.0,  # ... and float32's from here
        30.0,
        88.5,
        89.0,  # exp overflows float32 just past 88.72
        103.0,
        104.0,  # sigmoid(-x) leaves float32's subnormals near 103.97
        1e4,
        1e10,
        1e30,
        float(info.max),
        np.inf,
    ]
    values = np.array(magnitudes + [-m for m in magnitudes])
    return np.unique(_rounded(values, dtype))


def _log_spaced(dtype, count):
    """+-10^k for k evenly spaced in [-30, 2], rounded to the dtype."""
    mags = 10.0 ** np.linspace(-30, 2, count)
    return np.unique(_rounded(np.concatenate([-mags, mags]), dtype))


def _sigmoid_inputs(dtype, quick):
    """A dense sweep of [-100, 100], small magnitudes, and extremes.

    Float32 gets 2e6 evenly spaced points and a log-spaced set; the 16-bit
    dtypes get every value they hold in [-100, 100]. The quick run merges
    a thin version of all of it into one set (one compilation).
    """
    if quick:
        sweep = _rounded(np.linspace(-100, 100, 1001), dtype)
        mix = [sweep, _log_spaced(dtype, 201), _extremes(dtype)]
        return [("quick mix", np.unique(np.concatenate(mix)))]
    if dtype == "float32":
        sweep = np.unique(_rounded(np.linspace(-100, 100, 2_000_001), dtype))
        sets = [
            (f"sweep [-100, 100], {sweep.size}", sweep),
            ("log-spaced 1e-30..100", _log_spaced(dtype, 100_001)),
        ]
    else:
        sets = [("all in [-100, 100]", _all_values(dtype, 100.0))]
    return [*sets, ("extremes", _extremes(dtype))]


register(
    AccuracyCase(
        name="softmax",
        ours=jax_act.softmax,
        baseline=jax.nn.softmax,
        reference=softmax_reference,
        inputs=_softmax_rows,
    )
)
register(
    AccuracyCase(
        name="log_softmax",
        ours=jax_act.log_softmax,
        baseline=jax.nn.log_softmax,
        reference=log_softmax_reference,
        inputs=lambda dtype, quick: (
            _softmax_rows(dtype, quick) + _confident_rows(dtype, quick)
        ),
    )
)
register(
    AccuracyCase(
        name="logsumexp",
        ours=functools.partial(jax_act.logsumexp, axis=-1),
        baseline=functools.partial(jax.nn.logsumexp, axis=-1),
        reference=logsumexp_reference,
        inputs=lambda dtype, quick: (
            _softmax_rows(dtype, quick) + _near_zero_rows(dtype, quick)
        ),
    )
)
register(
    AccuracyCase(
        name="sigmoid",
        ours=jax_act.sigmoid,
        baseline=jax.nn.sigmoid,
        reference=sigmoid_reference,
        inputs=_sigmoid_inputs,
    )
)
register(
    AccuracyCase(
        name="log_sigmoid",
        ours=jax_act.log_sigmoid,
        baseline=jax.nn.log_sigmoid,
        reference=log_sigmoid_reference,
        inputs=_sigmoid_inputs,
    )
)
