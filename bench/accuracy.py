"""Accuracy harness: ULP error of jax_act and its baseline against a reference.

For every registered AccuracyCase, dtype and named input set, it rounds the
inputs to the dtype (they must be representable: a case that hands in
values the dtype cannot hold is a bug and raises), runs ours and the
baseline jitted, computes the reference in float64 (or mpmath), and reports
the worst and median distance in ULPs of the output dtype. Only points
whose reference result is a normal number of the dtype are counted: at
zero, in the subnormal range and past overflow the ULP is no longer a
relative measure.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bench.registry import AccuracyCase
from bench.results import Table, fmt_ulp
from bench.ulp import normal_mask, ulp_distance


def _check_representable(values: np.ndarray, dtype: np.dtype, name: str):
    with np.errstate(over="ignore", invalid="ignore"):
        rounded = values.astype(dtype).astype(np.float64)
    exact = (rounded == values) | (np.isnan(rounded) & np.isnan(values))
    if not np.all(exact):
        bad = values[~exact].ravel()[:3]
        raise ValueError(
            f"input set {name!r} holds values that {dtype.name} cannot "
            f"represent, e.g. {bad.tolist()}; round them in the case's "
            "inputs() (e.g. values.astype(dtype).astype(np.float64))"
        )


def _error_stats(
    got: np.ndarray,
    reference: np.ndarray,
    values: np.ndarray,
    counted: np.ndarray,
) -> dict[str, Any]:
    """Worst, median and 99th percentile ULP error over the counted points."""
    dist = ulp_distance(got, reference)
    if not np.any(counted):
        return {"worst": None, "median": None, "p99": None}
    masked = np.where(counted, dist, -1.0)
    worst_index = np.unravel_index(np.argmax(masked), masked.shape)
    picked = dist[counted]
    stats = {
        "worst": float(picked.max()),
        "median": float(np.median(picked)),
        "p99": float(np.percentile(picked, 99)),
        "worst_reference": float(reference[worst_index]),
        "worst_value": float(got[worst_index].astype(np.float64)),
    }
    if values.shape == got.shape:
        stats["worst_input"] = float(values[worst_index])
    stats["worst_index"] = [int(i) for i in worst_index]
    return stats


def _measure(
    case: AccuracyCase,
    dtype_name: str,
    set_name: str,
    values: np.ndarray,
    jitted: dict[str, Callable[..., Any]],
) -> dict[str, Any]:
    dtype = jnp.dtype(dtype_name)
    values = np.asarray(values, dtype=np.float64)
    _check_representable(values, dtype, set_name)
    x = jax.device_put(values.astype(dtype))

    reference = np.asarray(case.reference(values), dtype=np.float64)
    got = {name: np.asarray(fn(x)) for name, fn in jitted.items()}
    out_dtype = got["ours"].dtype
    for name, out in got.items():
        if out.shape != reference.shape:
            raise ValueError(
                f"{name} returned shape {out.shape}, the reference "
                f"{reference.shape}"
            )

    counted = normal_mask(reference, out_dtype)
    record = {
        "shape": list(values.shape),
        "out_dtype": str(out_dtype),
        "points": int(values.size),
        "counted": int(counted.sum()),
    }
    for name, out in got.items():
        record[name] = _error_stats(out, reference, values, counted)
    return record


_COLUMNS = [
    ("case", 14, "<"),
    ("dtype", 8, "<"),
    ("inputs", 26, "<"),
    ("counted", 9, ">"),
    ("ours worst", 10, ">"),
    ("ours med", 8, ">"),
    ("base worst", 10, ">"),
    ("base med", 8, ">"),
    ("ours worst at x", 16, ">"),
]


def make_table() -> Table:
    """The table `run` prints into."""
    return Table(_COLUMNS)


def _cells(record: dict[str, Any]) -> list[str]:
    head = [record["case"], record["dtype"], record["inputs"]]
    if "error" in record:
        return [*head, "ERROR: " + record["error"].splitlines()[-1]]
    ours = record["ours"]
    base = record.get("baseline") or {}
    where = ours.get("worst_input")
    return [
        *head,
        str(record["counted"]),
        fmt_ulp(ours["worst"]),
        fmt_ulp(ours["median"]),
        fmt_ulp(base.get("worst")),
        fmt_ulp(base.get("median")),
        "-" if where is None else f"{where:.7g}",
    ]


def run(
    cases: Sequence[AccuracyCase],
    *,
    quick: bool,
    table: Table | None = None,
) -> list[dict[str, Any]]:
    """Measures every case; prints one table row per input set."""
    table = table or make_table()
    table.header(
        "Accuracy: ULP error of the output dtype against the reference, "
        "over points whose reference value is a normal number"
    )
    records = []
    for case in cases:
        jitted = {"ours": jax.jit(case.ours)}
        if case.baseline is not None:
            jitted["baseline"] = jax.jit(case.baseline)
        # Quick mode is a smoke test: compiling dominates it, so it runs
        # each case in its first dtype only.
        for dtype_name in case.dtypes[:1] if quick else case.dtypes:
            head = {"family": case.family, "case": case.name}
            head["dtype"] = dtype_name
            try:
                input_sets = case.inputs(dtype_name, quick)
            except Exception:  # recorded; the run goes on
                record = dict(head, inputs="inputs()")
                record["error"] = traceback.format_exc()
                records.append(record)
                table.row(_cells(record))
                continue
            for set_name, values in input_sets:
                record = dict(head, inputs=set_name)
                try:
                    record.update(
                        _measure(case, dtype_name, set_name, values, jitted)
                    )
                except Exception:  # recorded; the run goes on
                    record["error"] = traceback.format_exc()
                records.append(record)
                table.row(_cells(record))
    return records
