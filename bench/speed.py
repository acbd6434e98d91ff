"""Speed harness: jax_act against its baseline, forward and backward.

For every registered SpeedCase, shape and dtype it times the forward call
and, when the case asks for it, forward plus backward: the gradient of
sum(out * cotangent) with respect to the first argument, for a fixed random
cotangent, jitted as one program. Ours, the baseline, PyTorch (when it is
installed and the case names a peer) and a memory copy of the same number
of bytes run interleaved in one loop (see timing.py).

The copy gives the roofline: "traffic" is the least a function must move,
every argument (and the cotangent) read once and every result written
once; a copy moving the same bytes takes the time a perfectly memory-bound
function would, and the fraction copy time / function time says how close
to that the function gets (1.0 = at the roofline).
"""

from __future__ import annotations

import importlib.util
import json
import sys
import traceback
import zlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TextIO

import jax
import jax.numpy as jnp
import numpy as np

from bench import timing
from bench.registry import SpeedCase
from bench.results import Table, fmt_ms, jsonable, shape_str


def _seed(*parts: Any) -> int:
    """A stable seed per configuration (Python's hash() is salted)."""
    return zlib.crc32(repr(parts).encode())


def _with_cotangent_grad(fn: Callable[..., Any]) -> Callable[..., Any]:
    """(cotangent, *args) -> d sum(fn(*args) * cotangent) / d args[0]."""

    def grad_fn(cotangent, *args):
        def loss(first):
            out = fn(first, *args[1:])
            pairs = zip(
                jax.tree.leaves(out), jax.tree.leaves(cotangent), strict=True
            )
            return sum(jnp.sum(o * c) for o, c in pairs)

        return jax.grad(loss)(args[0])

    return grad_fn


def _random_like(struct: Any, rng: np.random.Generator) -> Any:
    """A standard normal array of each leaf's shape and dtype, on host."""
    return jax.tree.map(
        lambda s: rng.standard_normal(s.shape, dtype=np.float32).astype(
            s.dtype
        ),
        struct,
    )


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def _torch_thunk(case, host_args, host_cotangent, mode):
    """A blocking zero-argument PyTorch call, and its result as NumPy.

    Untested here (PyTorch is an optional extra, not installed where this
    was written): errors are caught by the caller and recorded per row.
    """
    import torch

    # PyTorch runs where JAX runs: on the GPU when JAX has one (a CPU build
    # of PyTorch against a GPU JAX is no peer, and is refused), else on CPU.
    use_cuda = jax.default_backend() != "cpu"
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError(
            f"JAX runs on {jax.default_backend()} but this PyTorch build "
            "has no CUDA device; install a CUDA build to compare there"
        )
    device = "cuda" if use_cuda else "cpu"

    def to_torch(a):
        a = np.asarray(a)
        if a.dtype == jnp.bfloat16:
            # NumPy has no bfloat16 that torch understands: go via float32,
            # which holds every bfloat16 value exactly.
            return torch.from_numpy(a.astype(np.float32)).to(
                device=device, dtype=torch.bfloat16
            )
        return torch.from_numpy(np.ascontiguousarray(a)).to(device)

    def to_numpy(t):
        t = t.detach().cpu()
        return t.float().numpy() if t.is_floating_point() else t.numpy()

    args = tuple(to_torch(a) for a in host_args)
    sync = torch.cuda.synchronize if use_cuda else (lambda: None)

    if mode == "fwd":

        def run():
            with torch.no_grad():
                out = case.torch(*args)
            sync()
            return out

    else:
        cotangent = to_torch(jax.tree.leaves(host_cotangent)[0])

        def run():
            first = args[0].detach().requires_grad_(True)
            out = case.torch(first, *args[1:])
            (grad,) = torch.autograd.grad(out, first, cotangent)
            sync()
            return grad

    return run, to_numpy(run())


def _measure(
    case: SpeedCase,
    shape: tuple[int, ...],
    dtype: str,
    mode: str,
    *,
    repeats: int,
    min_sample_s: float,
    with_torch: bool,
    budget_s: float | None = None,
) -> dict[str, Any]:
    """One row: build inputs, compile, verify, then time interleaved."""
    rng = np.random.default_rng(_seed(case.family, case.name, shape, dtype))
    host_args = tuple(case.make_args(shape, dtype, rng))
    args = tuple(jax.device_put(a) for a in host_args)
    record: dict[str, Any] = {}

    if mode == "fwd":
        ours_fn, base_fn, call_args = case.ours, case.baseline, args
        host_cotangent = None
        traffic = timing.tree_nbytes(args) + timing.tree_nbytes(
            jax.eval_shape(case.ours, *args)
        )
    else:
        out_struct = jax.eval_shape(case.ours, *args)
        host_cotangent = _random_like(out_struct, rng)
        cotangent = jax.device_put(host_cotangent)
        ours_fn = _with_cotangent_grad(case.ours)
        base_fn = _with_cotangent_grad(case.baseline)
        call_args = (cotangent, *args)
        traffic = timing.tree_nbytes(call_args) + timing.tree_nbytes(
            jax.eval_shape(ours_fn, *call_args)
        )
    record["traffic_bytes"] = traffic

    # Compile outside the timed region, and say how long it took.
    ours_c, ours_compile = timing.compile_jitted(ours_fn, call_args)
    base_c, base_compile = timing.compile_jitted(base_fn, call_args)
    record["compile_s"] = {"ours": ours_compile, "baseline": base_compile}
    thunks = {
        "ours": timing.jax_thunk(ours_c, call_args),
        "baseline": timing.jax_thunk(base_c, call_args),
    }

    # Same answer first: a fast wrong function is not a result.
    expected = thunks["baseline"]()
    diff = timing.max_scaled_difference(thunks["ours"](), expected)
    tol = timing.AGREE_TOL.get(dtype, 1e-3)
    record["max_scaled_difference"] = {"ours": diff}
    record["agree"] = bool(diff <= tol)
    record["agree_tolerance"] = tol

    if with_torch and case.torch is not None:
        try:
            thunks["torch"], torch_out = _torch_thunk(
                case, host_args, host_cotangent, mode
            )
            expected_np = jax.tree.map(np.asarray, expected)
            torch_diff = timing.max_scaled_difference(torch_out, expected_np)
            record["max_scaled_difference"]["torch"] = torch_diff
            record["torch_agree"] = bool(torch_diff <= tol)
        except Exception as err:  # recorded; the row goes on
            record["torch_error"] = f"{type(err).__name__}: {err}"
            thunks.pop("torch", None)
    del expected

    thunks["copy"], record["roofline"] = timing.copy_roofline_thunk(
        traffic // 2
    )
    times = timing.time_interleaved(
        thunks, repeats=repeats, min_sample_s=min_sample_s, budget_s=budget_s
    )
    record["ms"] = times
    record["repeats"] = times["ours"]["n"]
    record["ratio"] = timing.paired_ratio(times["ours"], times["baseline"])
    record["ratio_of_medians"] = (
        times["ours"]["median"] / times["baseline"]["median"]
    )
    if "torch" in times:
        record["ratio_vs_torch"] = timing.paired_ratio(
            times["ours"], times["torch"]
        )
    record["bandwidth_gbs"] = {
        name: traffic / (t["median"] * 1e-3) / 1e9 for name, t in times.items()
    }
    record["roofline_fraction"] = {
        name: times["copy"]["median"] / t["median"]
        for name, t in times.items()
        if name != "copy"
    }
    return record


def _with_torch(cases: Sequence[SpeedCase]) -> bool:
    return any(c.torch for c in cases) and torch_available()


def make_table(cases: Sequence[SpeedCase]) -> Table:
    """The table `run` prints into (with PyTorch columns when it can)."""
    return Table(_columns(_with_torch(cases)))


def _columns(with_torch: bool) -> list[tuple[str, int, str]]:
    cols = [
        ("case", 18, "<"),
        ("shape", 11, "<"),
        ("dtype", 8, "<"),
        ("pass", 7, "<"),
        ("ours ms [IQR]", 21, ">"),
        ("baseline ms [IQR]", 21, ">"),
        ("ours/base", 9, ">"),
    ]
    if with_torch:
        cols += [("torch ms", 9, ">"), ("ours/torch", 10, ">")]
    cols += [
        ("roof ours", 9, ">"),
        ("roof base", 9, ">"),
        ("copy GB/s", 9, ">"),
        ("compile s", 9, ">"),
    ]
    return cols


def _cells(record: dict[str, Any], with_torch: bool) -> list[str]:
    head = [
        record["case"],
        shape_str(record["shape"]),
        record["dtype"],
        record["mode"],
    ]
    if "error" in record:
        return [*head, "ERROR: " + record["error"].splitlines()[-1]]
    times = record["ms"]
    flag = "" if record["agree"] else " DIFFERS"
    cells = [
        *head,
        fmt_ms(times["ours"]),
        fmt_ms(times["baseline"]),
        f"{record['ratio']['median']:.2f}{flag}",
    ]
    if with_torch:
        if "torch" in times:
            cells += [
                f"{times['torch']['median']:.3g}",
                f"{record['ratio_vs_torch']['median']:.2f}",
            ]
        else:
            cells += ["-", "-"]
    fraction = record["roofline_fraction"]
    compile_s = record["compile_s"]
    cells += [
        f"{fraction['ours']:.0%}",
        f"{fraction['baseline']:.0%}",
        f"{record['bandwidth_gbs']['copy']:.1f}",
        f"{compile_s['ours']:.2f}/{compile_s['baseline']:.2f}",
    ]
    return cells


Row = tuple[SpeedCase, tuple[int, ...], str, str]  # case, shape, dtype, mode


def plan(cases: Sequence[SpeedCase], *, quick: bool) -> list[Row]:
    """Every row `run` measures, in order."""
    rows = []
    for case in cases:
        shapes = case.quick_shapes if quick else case.shapes
        # Quick mode is a smoke test: compiling dominates it, so it runs
        # each case in its first dtype only.
        dtypes = case.dtypes[:1] if quick else case.dtypes
        modes = ("fwd", "fwd+bwd") if case.backward else ("fwd",)
        for shape in shapes:
            for dtype in dtypes:
                for mode in modes:
                    rows.append((case, tuple(shape), dtype, mode))
    return rows


def row_label(row: Row) -> dict[str, Any]:
    case, shape, dtype, mode = row
    return {
        "family": case.family,
        "case": case.name,
        "shape": list(shape),
        "dtype": dtype,
        "mode": mode,
    }


def measure_row(row: Row, **options: Any) -> dict[str, Any]:
    """One record; an exception is recorded in it, not raised.

    `options` are _measure's keywords: repeats, min_sample_s, with_torch
    and budget_s.
    """
    case, shape, dtype, mode = row
    record = row_label(row)
    record["repeats"] = options["repeats"]
    try:
        record.update(_measure(case, shape, dtype, mode, **options))
    except Exception:  # recorded; the run goes on
        record["error"] = traceback.format_exc()
    return record


def _setup(cases, quick, repeats, min_sample_s, budget_s, table):
    with_torch = _with_torch(cases)
    if min_sample_s is None:
        min_sample_s = 5e-4 if quick else 2e-3
    table = table or make_table(cases)
    table.header(
        "Speed: median ms per call [interquartile range]; ours/base is the "
        "median of per-round ratios; roof = copy time / call time for the "
        "same bytes (1.0 = memory roofline)"
    )
    options = {
        "repeats": repeats,
        "min_sample_s": min_sample_s,
        "with_torch": with_torch,
        "budget_s": budget_s,
    }
    return options, table


def run(
    cases: Sequence[SpeedCase],
    *,
    quick: bool,
    repeats: int,
    min_sample_s: float | None = None,
    budget_s: float | None = None,
    table: Table | None = None,
) -> list[dict[str, Any]]:
    """Times every case; prints one table row per measurement.

    `repeats` is the number of timed rounds per row; with `budget_s`, rows
    whose rounds are slow get fewer (see timing.time_interleaved), and each
    record's "repeats" says how many it got.
    """
    options, table = _setup(
        cases, quick, repeats, min_sample_s, budget_s, table
    )
    records = []
    for row in plan(cases, quick=quick):
        record = measure_row(row, **options)
        records.append(record)
        table.row(_cells(record, options["with_torch"]))
    return records


# Lines of the worker protocol start with this (the rest of the output is
# the human-readable table, echoed by the report).
PROTOCOL_PREFIX = "@@"


def emit(tag: str, payload: Any, stream: TextIO | None = None) -> None:
    """One protocol line: @@tag followed by strict JSON."""
    stream = stream or sys.stdout
    text = json.dumps(jsonable(payload), allow_nan=False)
    print(f"{PROTOCOL_PREFIX}{tag} {text}", file=stream, flush=True)


def serve(
    cases: Sequence[SpeedCase],
    *,
    quick: bool,
    repeats: int,
    min_sample_s: float | None = None,
    budget_s: float | None = None,
    table: Table | None = None,
    commands: Iterable[str] | None = None,
    meta: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Worker mode: measures the rows another process asks for.

    The report runs one worker per allocator setting and asks them for the
    same row in turn, so that both settings of a row are measured seconds
    apart, under the same load. The worker prints ``@@meta`` (`meta`) and
    ``@@rows`` (the row labels, in `plan` order), then reads commands, one
    a line: ``run I`` measures row I and prints ``@@record`` with
    {"index": I, "record": ...}; ``quit`` (or the end of input) stops. It
    returns the records it measured, in the order measured.
    """
    options, table = _setup(
        cases, quick, repeats, min_sample_s, budget_s, table
    )
    rows = plan(cases, quick=quick)
    emit("meta", meta or {})
    emit("rows", [row_label(row) for row in rows])
    records = []
    for line in sys.stdin if commands is None else commands:
        words = line.split()
        if not words:
            continue
        if words[0] == "quit":
            break
        if words[0] != "run" or len(words) != 2:
            raise ValueError(f"unknown worker command {line!r}")
        index = int(words[1])
        record = measure_row(rows[index], **options)
        records.append(record)
        table.row(_cells(record, options["with_torch"]))
        emit("record", {"index": index, "record": record})
    return records
