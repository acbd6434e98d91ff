"""The one timer every benchmark uses.

Rules it enforces (see docs/benchmarking.md in JAX for the reasoning):

* inputs are built and placed on the device before anything is timed;
* compilation happens outside the timed region, and is reported apart;
* every timed call ends with ``block_until_ready``, so asynchronous
  dispatch cannot make a call look free;
* the variants of one measurement (ours, the baseline, PyTorch, the copy
  roofline) run interleaved in the same loop, with the order rotated each
  repeat, so that a change in machine load hits all of them alike;
* results are medians with quartiles and extremes, never means.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def summarize(samples_s) -> dict[str, float]:
    """Median, quartiles and extremes of timings, in milliseconds."""
    ms = np.asarray(samples_s, dtype=np.float64) * 1e3
    q25, median, q75 = np.percentile(ms, [25, 50, 75])
    return {
        "median": float(median),
        "q25": float(q25),
        "q75": float(q75),
        "min": float(ms.min()),
        "max": float(ms.max()),
        "n": int(ms.size),
    }


def compile_jitted(fn: Callable[..., Any], args: tuple) -> tuple[Any, float]:
    """Traces, lowers and compiles `fn` for `args`; returns it and seconds."""
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - start


def jax_thunk(compiled: Any, args: tuple) -> Callable[[], Any]:
    """A zero-argument call of a compiled function that waits for it."""

    def run():
        return jax.block_until_ready(compiled(*args))

    return run


# Warm-up stops early once a variant has run this long: a slow call is
# already warm after one run, and large shapes would spend more time
# warming up than being timed.
WARMUP_CAP_S = 0.05


def _one_call_s(thunk: Callable[[], Any], warmup: int) -> float:
    """Runs `thunk` up to `warmup` times; returns the fastest call in s.

    It stops after the first call that brings the warm-up past
    WARMUP_CAP_S (at least one call always runs).
    """
    best, spent = math.inf, 0.0
    for _ in range(max(warmup, 1)):
        start = time.perf_counter()
        thunk()
        took = time.perf_counter() - start
        best, spent = min(best, took), spent + took
        if spent > WARMUP_CAP_S:
            break
    return best


def rounds_within(
    round_s: float, *, repeats: int, budget_s: float | None, min_repeats: int
) -> int:
    """How many rounds of `round_s` seconds fit in `budget_s`.

    At most `repeats` and at least min(min_repeats, repeats); all
    `repeats` when there is no budget.
    """
    if budget_s is None:
        return repeats
    fit = math.floor(budget_s / max(round_s, 1e-9))
    return int(min(repeats, max(fit, min(min_repeats, repeats))))


def time_interleaved(
    thunks: Mapping[str, Callable[[], Any]],
    *,
    repeats: int,
    min_sample_s: float = 2e-3,
    warmup: int = 2,
    budget_s: float | None = None,
    min_repeats: int = 5,
) -> dict[str, dict[str, Any]]:
    """Times several variants of one computation, interleaved.

    Each variant is first warmed up; a call shorter than `min_sample_s` is
    repeated `number` times per sample (each call still blocking) so that
    timer resolution and loop overhead do not dominate small shapes. Then
    `repeats` rounds run every variant once, starting each round from a
    different variant. Garbage collection is off while timing.

    With a `budget_s`, the number of rounds is cut so that the timed loop
    takes about that long (judged from the warm-up calls), but never below
    `min_repeats`: large shapes get fewer rounds, small ones all of them.

    Returns, for each variant, its `summarize` statistics (milliseconds per
    call) plus "number" and the raw per-call "samples_ms".
    """
    names = list(thunks)
    numbers = {}
    round_s = 0.0
    for name in names:
        one = _one_call_s(thunks[name], warmup)
        numbers[name] = int(min(max(math.ceil(min_sample_s / one), 1), 10_000))
        round_s += numbers[name] * one
    repeats = rounds_within(
        round_s, repeats=repeats, budget_s=budget_s, min_repeats=min_repeats
    )

    samples: dict[str, list[float]] = {name: [] for name in names}
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for r in range(repeats):
            shift = r % len(names)
            for name in names[shift:] + names[:shift]:
                thunk, number = thunks[name], numbers[name]
                start = time.perf_counter()
                for _ in range(number):
                    thunk()
                samples[name].append((time.perf_counter() - start) / number)
    finally:
        if gc_was_enabled:
            gc.enable()

    results = {}
    for name in names:
        stats = summarize(samples[name])
        stats["number"] = numbers[name]
        stats["samples_ms"] = [s * 1e3 for s in samples[name]]
        results[name] = stats
    return results


def paired_ratio(
    numerator: Mapping[str, Any], denominator: Mapping[str, Any]
) -> dict[str, float]:
    """Median and quartiles of per-round ratios of two interleaved variants.

    Pairing the samples of one round cancels load that changes between
    rounds, which a ratio of two medians does not.
    """
    ratios = np.asarray(numerator["samples_ms"]) / np.asarray(
        denominator["samples_ms"]
    )
    q25, median, q75 = np.percentile(ratios, [25, 50, 75])
    return {"median": float(median), "q25": float(q25), "q75": float(q75)}


def copy_roofline_thunk(nbytes: int) -> tuple[Callable[[], Any], str]:
    """A copy of `nbytes` bytes: the memory roofline of this device.

    On CPU it is NumPy's ``copyto`` into a preallocated, already touched
    buffer: a JAX copy would allocate a fresh output each call and measure
    page faults instead of bandwidth. On an accelerator it is a jitted
    elementwise pass over a device buffer (outputs come from a pooled
    allocator there). Reads plus writes are 2 * nbytes either way.
    """
    nbytes = max(int(nbytes), 1)
    if jax.default_backend() == "cpu":
        # Both buffers are written once here, so that every page is mapped
        # before timing (np.zeros would map them lazily, on first touch).
        src = np.full(nbytes, 7, dtype=np.uint8)
        dst = np.ones_like(src)

        def run():
            np.copyto(dst, src)

        return run, "numpy.copyto (preallocated destination)"

    # XOR with a constant cannot be simplified away, costs no arithmetic
    # to speak of, and reads and writes every byte once. It works on 4-byte
    # words: a GPU reaches its bandwidth with wide loads, and a byte-wide
    # pass could understate the roofline.
    words = max(nbytes // 4, 1)
    src = jax.device_put(np.zeros(words, dtype=np.uint32))
    flip = jax.jit(lambda v: v ^ jnp.uint32(1))
    jax.block_until_ready(flip(src))

    def run_device():
        return jax.block_until_ready(flip(src))

    return run_device, "jitted device elementwise pass"


def tree_nbytes(tree: Any) -> int:
    """Total bytes of the arrays (or shape-dtype structs) in a pytree."""
    return int(
        sum(
            math.prod(leaf.shape) * np.dtype(leaf.dtype).itemsize
            for leaf in jax.tree.leaves(tree)
        )
    )


def _as_f64(x: Any) -> np.ndarray:
    return np.asarray(x).astype(np.float64)


def max_scaled_difference(
    actual: Any, expected: Any, max_points: int | None = 1 << 20
) -> float:
    """Largest |a - e| / (|e| + max|e|), over the leaves of two pytrees.

    It is 0 for identical results and about the relative error otherwise,
    with the largest entry of each leaf as a floor on the scale so that
    entries near zero do not blow up. Matching infinities and NaNs count
    as equal; a NaN or infinity on one side only gives inf.

    Leaves larger than `max_points` are compared on that many evenly
    spaced entries (every k-th of the flattened array, the same entries on
    both sides): checking a 16M-entry output in float64 would take longer
    than timing it, and a wrong function is wrong at most entries.
    """
    worst = 0.0
    leaves_a = jax.tree.leaves(actual)
    leaves_e = jax.tree.leaves(expected)
    if len(leaves_a) != len(leaves_e):
        return math.inf
    for a, e in zip(leaves_a, leaves_e, strict=True):
        a, e = np.asarray(a), np.asarray(e)
        if a.shape != e.shape:
            return math.inf
        if a.size == 0:
            continue
        if max_points is not None and a.size > max_points:
            step = -(-a.size // max_points)
            a, e = a.reshape(-1)[::step], e.reshape(-1)[::step]
        a, e = _as_f64(a), _as_f64(e)
        same = (a == e) | (np.isnan(a) & np.isnan(e))
        finite = np.isfinite(e)
        scale = np.max(np.abs(e[finite]), initial=0.0)
        with np.errstate(invalid="ignore"):
            diff = np.abs(a - e) / (np.abs(e) + scale + 1e-30)
        diff = np.where(same, 0.0, diff)
        diff = np.where(np.isnan(diff), np.inf, diff)
        worst = max(worst, float(np.max(diff)))
    return worst


# Agreement needed between ours and the baseline before timing, by dtype:
# loose, since the point is to catch a wrong function, not to grade
# accuracy (the accuracy harness does that).
AGREE_TOL = {
    "float64": 1e-6,
    "float32": 1e-3,
    "bfloat16": 6e-2,
    "float16": 2e-2,
}
