"""The benchmark report: ``python -m bench report --out DIR [--quick]``.

One command a user runs on their own machine to see jax_act, ``jax.nn``
(or Optax) and PyTorch side by side. It

1. runs the speed harness under each allocator setting, each in a fresh
   process: glibc reads ``GLIBC_TUNABLES`` only when a process starts, so
   the huge-page setting cannot be switched on inside a running one. On
   CPU both settings run (the default malloc, and
   ``glibc.malloc.hugetlb=1``, which asks the kernel for transparent huge
   pages), as two worker processes that measure the same row in turn, so
   that both figures of a row are taken seconds apart under the same
   machine load; on a GPU only the default, since host malloc does not
   touch device memory. The workers share a temporary JAX compilation
   cache, so whichever measures a row second loads what the first
   compiled;
2. runs the accuracy harness and, where bench/memory.py exists, the memory
   harness, in this process, after the speed processes have finished (on
   a GPU this process must not hold device memory while they run);
3. writes into DIR: report.md (tables), report.json (every record and the
   environment), plots/*.png, and each harness's own files
   (speed-<setting>/speed.json, accuracy.json, memory.json).

The report judges the two speed goals of the project on this machine:
no float32 case more than 5 per cent slower than the baseline, and large
float32 softmax forward at >= 60 per cent of the copy bandwidth measured
in the same run, with huge-page malloc.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import importlib
import inspect
import json
import math
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterable, Sequence
from typing import Any

from bench import results

_REPO = pathlib.Path(__file__).resolve().parent.parent

# Timed seconds per row in the full run (rounds are cut to fit, keeping at
# least 5): about 150 rows per allocator setting must fit, with both
# settings, accuracy and memory, in ten minutes on two cores.
FULL_BUDGET_S = 0.4

# Timed rounds of the memory harness in a full run. Its full size (a
# 1 GiB logit matrix, loss and gradients) takes seconds per call: three
# rounds keep it to a couple of minutes on two cores.
MEMORY_REPEATS = 3

# The project's goals, judged on every report.
SLOWER_LIMIT = 1.05  # ours / baseline in any float32 row
ROOFLINE_GOAL = 0.60  # large float32 softmax forward, huge-page malloc
# "Large": at least this many elements (32 MiB of float32): (4096, 4096),
# (256, 32768) and (64, 131072).
LARGE_ELEMENTS = 1 << 23

# Vendor figures of peak memory bandwidth, in bytes per second, by a
# substring of jax's device_kind. Shown beside the measured copy roofline
# on a GPU; the measured copy, not this, is what fractions are taken of.
NOMINAL_BANDWIDTH = {
    "H200": 4.8e12,  # NVIDIA H200: 141 GB of HBM3e at 4.8 TB/s
}


@dataclasses.dataclass(frozen=True)
class Allocator:
    """One allocator setting the speed harness runs under."""

    name: str  # key in report.json and folder suffix
    title: str  # how the report names it
    hugetlb: str | None  # glibc.malloc.hugetlb value; None leaves it unset


ALLOCATORS = {
    "default": Allocator("default", "default malloc", None),
    "hugepages": Allocator(
        "hugepages",
        "huge-page malloc (GLIBC_TUNABLES=glibc.malloc.hugetlb=1)",
        "1",
    ),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options only `report` reads."""
    group = parser.add_argument_group("report options")
    group.add_argument(
        "--allocators",
        nargs="+",
        choices=tuple(ALLOCATORS),
        default=None,
        help="allocator settings to time under (default: both on CPU, "
        "default only on a GPU)",
    )
    group.add_argument(
        "--note",
        action="append",
        default=[],
        metavar="TEXT",
        help="a sentence for the report's notes (repeatable), e.g. what "
        "else was running on the machine",
    )
    group.add_argument(
        "--memory",
        choices=("auto", "on", "off"),
        default="auto",
        help="run the memory harness (bench/memory.py): auto runs it "
        "unless --family/--case filter the run to other cases",
    )
    group.add_argument(
        "--rerender",
        action="store_true",
        help="measure nothing: rewrite report.md and plots/ from the "
        "report.json already in --out",
    )
    group.add_argument(
        "--no-plots",
        action="store_true",
        help="skip the PNG plots (matplotlib not needed then)",
    )


# --- Running the harnesses ---


def _tunables(current: str | None, hugetlb: str | None) -> str | None:
    """GLIBC_TUNABLES with glibc.malloc.hugetlb set to `hugetlb` or removed.

    Other tunables the user set are kept.
    """
    parts = [
        part
        for part in (current or "").split(":")
        if part and not part.startswith("glibc.malloc.hugetlb=")
    ]
    if hugetlb is not None:
        parts.append(f"glibc.malloc.hugetlb={hugetlb}")
    return ":".join(parts) or None


def speed_environment(
    allocator: Allocator, cache_dir: str, base: dict[str, str] | None = None
) -> dict[str, str]:
    """The environment of one speed process."""
    env = dict(os.environ if base is None else base)
    tunables = _tunables(env.get("GLIBC_TUNABLES"), allocator.hugetlb)
    env.pop("GLIBC_TUNABLES", None)
    if tunables:
        env["GLIBC_TUNABLES"] = tunables
    # bench/ is a folder of the repository, not an installed package.
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(_REPO) + (os.pathsep + path if path else "")
    env["PYTHONUNBUFFERED"] = "1"  # rows appear as they are measured
    # PyTorch's OpenMP threads spin while waiting for work by default. On
    # a machine shared with other jobs (or with JAX's own threads, which
    # run interleaved with PyTorch here) a spinning thread that lost its
    # core stalls every call: a (32, 1024) torch.softmax took 20 ms
    # instead of 0.27 ms on the loaded development machine. Passive
    # waiting, unless the user chose otherwise.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # Both settings compile the same programs: the second loads them.
    env["JAX_COMPILATION_CACHE_DIR"] = cache_dir
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    return env


def _speed_argv(args, out_dir, repeats, budget_s) -> list[str]:
    argv = [sys.executable, "-m", "bench", "speed", "--worker"]
    argv += ["--out", str(out_dir), "--repeats", str(repeats)]
    if args.quick:
        argv.append("--quick")
    if budget_s is not None:
        argv += ["--budget", repr(budget_s)]
    if args.family:
        argv += ["--family", *args.family]
    if args.case:
        argv += ["--case", *args.case]
    return argv


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class SpeedWorker:
    """A speed process under one allocator setting (bench.speed.serve).

    Its output is echoed with a tag naming the setting, except the
    protocol lines, which are parsed.
    """

    def __init__(
        self,
        allocator: Allocator,
        argv: Sequence[str],
        env: dict[str, str],
        out_dir: pathlib.Path,
    ):
        self.allocator = allocator
        self.argv = list(argv)
        self.env = env
        self.out_dir = out_dir
        self.tag = f"[{_short(allocator.name)}] "
        self.tail: collections.deque[str] = collections.deque(maxlen=60)
        self.busy_s = 0.0
        self.error: str | None = None
        self.proc = subprocess.Popen(
            self.argv,
            cwd=_REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.meta = self._read_until("meta") or {}
        self.rows = self._read_until("rows")
        if self.rows is None:
            self._fail("it stopped before listing its rows")

    def _fail(self, why: str) -> None:
        if self.error is None:
            self.error = f"speed process ({self.allocator.title}) {why}:\n"
            self.error += "".join(self.tail)

    def _read_until(self, tag: str) -> Any:
        """Echoes output up to the protocol line `tag`; its payload."""
        from bench.speed import PROTOCOL_PREFIX

        assert self.proc.stdout is not None
        prefix = f"{PROTOCOL_PREFIX}{tag} "
        for line in self.proc.stdout:
            if line.startswith(prefix):
                return json.loads(line[len(prefix) :])
            if line.startswith(PROTOCOL_PREFIX):
                continue  # a reply this reader did not ask for
            sys.stdout.write(self.tag + line)
            sys.stdout.flush()
            self.tail.append(line)
        return None

    def run(self, index: int) -> dict[str, Any] | None:
        """Measures row `index`; None if the process died."""
        if self.error is not None:
            return None
        assert self.proc.stdin is not None
        start = time.perf_counter()
        try:
            self.proc.stdin.write(f"run {index}\n")
            self.proc.stdin.flush()
        except OSError:
            self._fail("stopped")
            return None
        reply = self._read_until("record")
        self.busy_s += time.perf_counter() - start
        if reply is None or reply.get("index") != index:
            self._fail(f"did not answer row {index}")
            return None
        return reply["record"]

    def close(self) -> dict[str, Any]:
        """Stops the process (it writes speed.json); its phase record."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
        except OSError:
            pass
        self._read_until("(end)")  # echo what is left
        returncode = self.proc.wait()
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        # Exit status 1 means a row failed or disagreed, and the records
        # were still written; anything else means the process died.
        if returncode not in (0, 1):
            self._fail(f"exited with status {returncode}")
        meta = dict(self.meta)
        path = self.out_dir / "speed.json"
        if path.exists():
            meta = json.loads(path.read_text()).get("meta", meta)
        phase = {
            "allocator": self.allocator.name,
            "title": self.allocator.title,
            "glibc_tunables": self.env.get("GLIBC_TUNABLES"),
            "omp_wait_policy": self.env.get("OMP_WAIT_POLICY"),
            "argv": self.argv[1:],
            "returncode": returncode,
            "wall_s": self.busy_s,
            "cpu_s": meta.get("process_cpu_s"),
            "meta": meta,
        }
        if self.error is not None:
            phase["error"] = self.error
        return phase

    def kill(self) -> None:
        """Stops the process at once (after an interruption)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None and not stream.closed:
                try:
                    stream.close()
                except OSError:
                    pass


def run_speed(
    allocators: Sequence[Allocator],
    args: argparse.Namespace,
    repeats: int,
    budget_s: float | None,
    out: pathlib.Path,
    cache_dir: str,
    explicit: bool,
) -> dict[str, dict[str, Any]]:
    """Speed records per allocator setting, the settings row by row in turn.

    On CPU one worker per setting runs, and each row is measured under
    every setting before the next row starts (the first setting of a row
    alternates), so that a change in machine load hits all settings alike
    and the effect of the allocator is read from rows measured seconds
    apart. On a GPU the huge-page setting is skipped unless asked for
    (host malloc does not touch device memory), and settings asked for
    run one after the other: two processes cannot both hold the device's
    memory.
    """

    def start(allocator: Allocator) -> SpeedWorker:
        speed_out = out / f"speed-{allocator.name}"
        print(f"\n=== speed worker: {allocator.title} ===", flush=True)
        return SpeedWorker(
            allocator,
            _speed_argv(args, speed_out, repeats, budget_s),
            speed_environment(allocator, cache_dir),
            speed_out,
        )

    first = start(allocators[0])
    backend = first.meta.get("backend")
    rest = list(allocators[1:])
    if backend not in (None, "cpu"):
        if not explicit:
            rest = [a for a in rest if a.name != "hugepages"]
            print(
                f"(huge-page malloc skipped: JAX runs on {backend}, whose "
                "memory host malloc does not touch)",
                flush=True,
            )
        phases = [_run_rows([first])]
        for allocator in rest:
            phases.append(_run_rows([start(allocator)]))
        return {name: p for phase in phases for name, p in phase.items()}
    workers = [first] + [start(a) for a in rest]
    return _run_rows(workers)


def _run_rows(workers: Sequence[SpeedWorker]) -> dict[str, dict[str, Any]]:
    """Asks every worker for every row in turn; closes them."""
    rows = workers[0].rows or []
    for worker in workers[1:]:
        if worker.rows is not None and worker.rows != rows:
            worker._fail("listed other rows than the first worker")
    records: dict[str, list[dict[str, Any]]] = {
        w.allocator.name: [] for w in workers
    }
    try:
        for index, label in enumerate(rows):
            turn = workers if index % 2 == 0 else list(reversed(workers))
            for worker in turn:
                record = worker.run(index)
                if record is None:
                    record = dict(label, error=worker.error or "no record")
                records[worker.allocator.name].append(record)
    except BaseException:  # Ctrl-C, or a bug here: leave no process behind
        for worker in workers:
            worker.kill()
        raise
    phases = {}
    for worker in workers:
        phase = worker.close()
        phase["records"] = records[worker.allocator.name]
        phases[worker.allocator.name] = phase
    return phases


def memory_wanted(families, cases) -> bool:
    """Whether a run filtered by --family / --case includes the memory one.

    The memory harness measures the losses; a run filtered to other cases
    leaves it out (it takes minutes at full size).
    """
    if cases:
        return False
    return not families or any(f in ("losses", "memory") for f in families)


def run_memory(quick: bool, out: pathlib.Path) -> dict[str, Any] | None:
    """The memory harness's records, where bench/memory.py exists.

    It is called through its public `run` function with the keyword
    arguments it declares among quick, out and repeats (MEMORY_REPEATS in
    a full run, its own default in a quick one); None when the module is
    not there.
    """
    try:
        memory = importlib.import_module("bench.memory")
    except ModuleNotFoundError as err:
        if err.name == "bench.memory":
            return None
        return {"error": traceback.format_exc()}
    except Exception:  # recorded; the report goes on
        return {"error": traceback.format_exc()}
    run = getattr(memory, "run", None)
    if not callable(run):
        return {"error": "bench/memory.py has no run() function"}
    offered = {"quick": quick, "out": out}
    if not quick:
        offered["repeats"] = MEMORY_REPEATS
    accepted = inspect.signature(run).parameters
    kwargs = {k: v for k, v in offered.items() if k in accepted}
    wall, cpu = time.perf_counter(), _self_cpu_s()
    try:
        records = run(**kwargs)
    except Exception:  # recorded; the report goes on
        return {"error": traceback.format_exc()}
    return {
        "records": results.jsonable(records),
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES"),
        "wall_s": time.perf_counter() - wall,
        "cpu_s": _self_cpu_s() - cpu,
    }


def run_accuracy(args, out: pathlib.Path, meta) -> dict[str, Any]:
    """The accuracy harness, in this process; writes accuracy.json/.txt."""
    from bench import accuracy, registry

    wall, cpu = time.perf_counter(), _self_cpu_s()
    cases = registry.select(registry.AccuracyCase, args.family, args.case)
    table = accuracy.make_table()
    records = accuracy.run(cases, quick=args.quick, table=table)
    results.write_json(out / "accuracy.json", "accuracy", meta, records)
    (out / "accuracy.txt").write_text("\n".join(table.lines) + "\n")
    return {
        "records": records,
        "wall_s": time.perf_counter() - wall,
        "cpu_s": _self_cpu_s() - cpu,
    }


# --- Reading the records ---


def elements(shape: Sequence[int]) -> int:
    return int(math.prod(shape))


def _ok(record: dict[str, Any]) -> bool:
    return "error" not in record and "ms" in record


def row_key(record: dict[str, Any]) -> tuple:
    return (
        record["family"],
        record["case"],
        tuple(record["shape"]),
        record["dtype"],
        record["mode"],
    )


def index_speed(
    speed: dict[str, dict[str, Any]],
) -> tuple[list[tuple], dict[tuple, dict[str, dict[str, Any]]]]:
    """Rows in measurement order, and key -> allocator -> record."""
    order: list[tuple] = []
    table: dict[tuple, dict[str, dict[str, Any]]] = {}
    for name, phase in speed.items():
        for record in phase.get("records", []):
            key = row_key(record)
            if key not in table:
                table[key] = {}
                order.append(key)
            table[key][name] = record
    return order, table


def accuracy_worst(
    records: Iterable[dict[str, Any]],
) -> dict[tuple[str, str], dict[str, float | None]]:
    """(case, dtype) -> worst ULP error of ours and the baseline."""
    worst: dict[tuple[str, str], dict[str, float | None]] = {}
    for r in records:
        if "error" in r:
            continue
        entry = worst.setdefault((r["case"], r["dtype"]), {})
        for name in ("ours", "baseline"):
            value = (r.get(name) or {}).get("worst")
            if value is None:
                continue
            entry[name] = max(value, entry.get(name) or 0.0)
    return worst


def evaluate_goals(
    speed: dict[str, dict[str, Any]],
    accuracy_records: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    """Judges the project's two speed goals on the records of this run."""
    order, table = index_speed(speed)
    worst = accuracy_worst(accuracy_records)
    slower, checked = [], 0
    for key in order:
        family, case, shape, dtype, mode = key
        if dtype != "float32":
            continue
        for allocator, r in table[key].items():
            if not _ok(r):
                continue
            checked += 1
            ratio = r["ratio"]
            if ratio["median"] > SLOWER_LIMIT:
                acc = worst.get((case, dtype), {})
                slower.append(
                    {
                        "family": family,
                        "case": case,
                        "shape": list(shape),
                        "mode": mode,
                        "allocator": allocator,
                        "ratio": ratio["median"],
                        "ratio_q25": ratio["q25"],
                        "ratio_q75": ratio["q75"],
                        "ours_worst_ulp": acc.get("ours"),
                        "baseline_worst_ulp": acc.get("baseline"),
                    }
                )
    goal_slower = {
        "limit": SLOWER_LIMIT,
        "rows_checked": checked,
        "slower": slower,
        "holds": checked > 0 and not slower,
    }

    softmax_rows = []
    for key in order:
        family, case, shape, dtype, mode = key
        r = table[key].get("hugepages")
        if (
            case == "softmax"
            and family == "softmax"
            and dtype == "float32"
            and mode == "fwd"
            and elements(shape) >= LARGE_ELEMENTS
            and r is not None
            and _ok(r)
        ):
            fraction = r["roofline_fraction"]
            softmax_rows.append(
                {
                    "shape": list(shape),
                    "ours": fraction["ours"],
                    "baseline": fraction["baseline"],
                    "torch": fraction.get("torch"),
                    "copy_gbs": r["bandwidth_gbs"]["copy"],
                    "ours_gbs": r["bandwidth_gbs"]["ours"],
                }
            )
    goal_roofline = {
        "goal": ROOFLINE_GOAL,
        "min_elements": LARGE_ELEMENTS,
        "rows": softmax_rows,
        "holds": bool(softmax_rows)
        and all(row["ours"] >= ROOFLINE_GOAL for row in softmax_rows),
    }
    if "hugepages" not in speed:
        goal_roofline["note"] = "not judged: no huge-page run"
    return {"no_float32_slower": goal_slower, "softmax_roofline": goal_roofline}


# --- Markdown ---


def md_table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], align: str = ""
) -> list[str]:
    """A Markdown table; `align` has one of l/r per column (default l)."""
    align = align or "l" * len(headers)
    marks = {"l": ":--", "r": "--:"}
    lines = [
        "| " + " | ".join(headers) + " |",
        "| " + " | ".join(marks[a] for a in align) + " |",
    ]
    for row in rows:
        cells = [str(c).replace("|", "\\|") for c in row]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _ratio(stats: dict[str, float] | None, flag: bool = False) -> str:
    if not stats:
        return "-"
    text = f"{stats['median']:.2f}"
    if flag and stats["median"] > SLOWER_LIMIT:
        text = f"**{text}**"
    return text


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _median(r: dict[str, Any] | None, name: str) -> float | None:
    if r is None or not _ok(r) or name not in r["ms"]:
        return None
    return r["ms"][name]["median"]


def _shape(shape: Sequence[int]) -> str:
    return results.shape_str(shape)


def _ulp(value: float | None) -> str:
    return results.fmt_ulp(value)


def _versions_line(meta: dict[str, Any]) -> str:
    v = meta.get("versions", {})
    names = ("jax", "jaxlib", "jax_act", "numpy", "torch", "optax")
    return ", ".join(f"{n} {v[n]}" for n in names if v.get(n))


def _machine_lines(meta: dict[str, Any], speed_meta: dict[str, Any]) -> list:
    backend = speed_meta.get("backend", meta.get("backend"))
    device = speed_meta.get("device_kind", meta.get("device_kind"))
    lines = [
        f"- Date: {meta.get('date')}",
        f"- Machine: {meta.get('cpu_model')}, "
        f"{meta.get('cpu_cores_available')} cores available; JAX backend "
        f"{backend} ({device}, {speed_meta.get('device_count', '?')} "
        "device(s))",
        f"- Platform: {meta.get('platform')}, Python {meta.get('python')}",
        f"- Versions: {_versions_line(meta)}",
        f"- Transparent huge pages: {meta.get('transparent_hugepage')}",
    ]
    git = meta.get("git") or {}
    if git:
        dirty = " (with uncommitted changes)" if git.get("dirty") else ""
        lines.append(f"- Commit: {git.get('commit', '?')[:12]}{dirty}")
    return lines


def _speed_notes(speed, quick) -> list[str]:
    lines = []
    for phase in speed.values():
        meta = phase.get("meta", {})
        huge = meta.get("anon_huge_pages_kib")
        huge_text = (
            f"; {huge / 1024:.0f} MiB of the process in transparent huge "
            "pages at its end"
            if isinstance(huge, int)
            else ""
        )
        lines.append(
            f"- Speed, **{phase['title']}**: GLIBC_TUNABLES="
            f"`{phase.get('glibc_tunables') or '(unset)'}`, "
            f"OMP_WAIT_POLICY=`{phase.get('omp_wait_policy')}`; "
            f"{phase['wall_s']:.0f} s measuring, "
            f"{_seconds(phase.get('cpu_s'))} of CPU time in all; "
            f"load average {meta.get('load_average_start')} at its start, "
            f"{meta.get('load_average_end')} at its end{huge_text}."
        )
    if quick:
        lines.append(
            "- **Quick mode**: tiny shapes, first dtype only, a few rounds. "
            "A smoke test: these timings mean nothing."
        )
    return lines


def _seconds(value: float | None) -> str:
    return "?" if value is None else f"{value:.0f} s"


def _load_note(meta: dict[str, Any]) -> str | None:
    load = meta.get("load_average_start")
    cores = meta.get("cpu_cores_available") or 1
    if not load:
        return None
    if load[0] > 0.5 * cores:
        return (
            f"- **The machine was loaded** when the report started (load "
            f"average {load[0]} over one minute, on {cores} cores): other "
            "jobs shared the cores, absolute times are inflated and noisy. "
            "Ratios pair rounds that ran back to back and suffer less, but "
            "can still move by 10-20 per cent between runs."
        )
    return (
        f"- Load average at the start: {load} on {cores} cores (an idle "
        "machine reads near 0)."
    )


_EXPLAIN = [
    "- Every row times jax_act (ours), the baseline (`jax.nn`, or Optax "
    "for losses) and, when installed, PyTorch, interleaved in one loop "
    "with the order rotated each round; times are medians over the "
    "rounds. `ours/base` and `ours/torch` are medians of per-round "
    "ratios (below 1: jax_act is faster).",
    "- Roofline: the least traffic a function must move (inputs and "
    "cotangent read once, outputs written once) copied by a memory copy "
    "into a preallocated buffer, timed in the same loop. `% copy` = copy "
    "time / call time: 100% means the call moves its bytes as fast as a "
    "copy can.",
    "- `fwd+bwd` is one jitted program: the gradient of "
    "sum(output * random cotangent) with respect to the first argument.",
]


def _speed_table(order, table, allocator, dtype, with_torch) -> list[str]:
    headers = ["function", "shape", "pass", "ours ms", "base ms"]
    align = "lllrr"
    if with_torch:
        headers += ["torch ms"]
        align += "r"
    headers += ["ours/base [IQR]"]
    align += "r"
    if with_torch:
        headers += ["ours/torch"]
        align += "r"
    headers += ["copy ms", "ours % copy", "base % copy"]
    align += "rrr"
    if with_torch:
        headers += ["torch % copy"]
        align += "r"
    rows = []
    for key in order:
        _family, case, shape, row_dtype, mode = key
        r = table[key].get(allocator)
        if row_dtype != dtype or r is None:
            continue
        head = [case, _shape(shape), mode]
        if not _ok(r):
            rows.append(
                [*head, "ERROR", *["" for _ in headers[4:]]][: len(headers)]
            )
            continue
        ratio = r["ratio"]
        ratio_text = (
            f"{_ratio(ratio, flag=dtype == 'float32')} "
            f"[{ratio['q25']:.2f}-{ratio['q75']:.2f}]"
        )
        if not r.get("agree", True):
            ratio_text += " DIFFERS"
        cells = [*head, _ms(_median(r, "ours")), _ms(_median(r, "baseline"))]
        if with_torch:
            cells.append(_ms(_median(r, "torch")))
        cells.append(ratio_text)
        if with_torch:
            cells.append(_ratio(r.get("ratio_vs_torch")))
        fraction = r["roofline_fraction"]
        cells += [
            _ms(_median(r, "copy")),
            _pct(fraction.get("ours")),
            _pct(fraction.get("baseline")),
        ]
        if with_torch:
            cells.append(_pct(fraction.get("torch")))
        rows.append(cells)
    if not rows:
        return []
    return md_table(headers, rows, align)


def _summary_table(order, table, allocators, dtype, with_torch) -> list[str]:
    """One line per function and shape: the ratios that matter most."""
    headers, align = ["function", "shape"], "ll"
    for mode in ("fwd", "fwd+bwd"):
        for allocator in allocators:
            headers.append(f"{mode} ours/base, {_short(allocator)}")
            align += "r"
    if with_torch:
        for mode in ("fwd", "fwd+bwd"):
            headers.append(f"{mode} ours/torch, {_short(allocators[-1])}")
            align += "r"
    headers.append(f"fwd ours % copy, {_short(allocators[-1])}")
    align += "r"
    seen, rows = set(), []
    for key in order:
        family, case, shape, row_dtype, _ = key
        if row_dtype != dtype or (family, case, shape) in seen:
            continue
        seen.add((family, case, shape))
        by_mode = {
            mode: table.get((family, case, shape, dtype, mode), {})
            for mode in ("fwd", "fwd+bwd")
        }
        cells = [case, _shape(shape)]
        for mode in ("fwd", "fwd+bwd"):
            for allocator in allocators:
                r = by_mode[mode].get(allocator)
                ok = r is not None and _ok(r)
                cells.append(
                    _ratio(r["ratio"], flag=dtype == "float32") if ok else "-"
                )
        last = allocators[-1]
        if with_torch:
            for mode in ("fwd", "fwd+bwd"):
                r = by_mode[mode].get(last)
                ok = r is not None and _ok(r)
                cells.append(_ratio(r.get("ratio_vs_torch")) if ok else "-")
        r = by_mode["fwd"].get(last)
        ok = r is not None and _ok(r)
        cells.append(_pct(r["roofline_fraction"]["ours"]) if ok else "-")
        rows.append(cells)
    if not rows:
        return []
    return md_table(headers, rows, align)


def _short(allocator: str) -> str:
    return {"hugepages": "huge pages", "default": "default malloc"}.get(
        allocator, allocator
    )


def _hugepage_effect(order, table, with_torch) -> list[str]:
    """Default malloc time / huge-page time, for the large rows."""
    headers = ["function", "shape", "dtype", "pass"]
    names = ["ours", "baseline"] + (["torch"] if with_torch else [])
    for name in names:
        label = "base" if name == "baseline" else name
        headers.append(f"{label} ms default → huge")
    headers.append("copy ms default / huge")
    align = "llll" + "r" * (len(names) + 1)
    rows = []
    for key in order:
        _family, case, shape, dtype, mode = key
        pair = table[key]
        d, h = pair.get("default"), pair.get("hugepages")
        if elements(shape) < LARGE_ELEMENTS or d is None or h is None:
            continue
        if not (_ok(d) and _ok(h)):
            continue
        cells = [case, _shape(shape), dtype, mode]
        for name in names:
            before, after = _median(d, name), _median(h, name)
            if before is None or after is None:
                cells.append("-")
            else:
                cells.append(
                    f"{_ms(before)} → {_ms(after)} ({before / after:.1f}x)"
                )
        cells.append(f"{_ms(_median(d, 'copy'))} / {_ms(_median(h, 'copy'))}")
        rows.append(cells)
    if not rows:
        return []
    return md_table(headers, rows, align)


def _accuracy_table(records) -> list[str]:
    headers = [
        "function",
        "dtype",
        "inputs",
        "points",
        "ours worst",
        "ours median",
        "base worst",
        "base median",
    ]
    rows = []
    for r in records:
        head = [r["case"], r["dtype"], r["inputs"]]
        if "error" in r:
            rows.append([*head, "ERROR", "", "", "", ""])
            continue
        base = r.get("baseline") or {}
        rows.append(
            [
                *head,
                r["counted"],
                _ulp(r["ours"]["worst"]),
                _ulp(r["ours"]["median"]),
                _ulp(base.get("worst")),
                _ulp(base.get("median")),
            ]
        )
    return md_table(headers, rows, "lllrrrrr") if rows else []


def _memory_section(memory: dict[str, Any] | None) -> list[str]:
    if memory is None:
        return ["(bench/memory.py is not there: no memory harness ran.)"]
    if "skipped" in memory:
        return [f"Not run: {memory['skipped']}."]
    if "error" in memory:
        return [
            "The memory harness failed:",
            "",
            "```",
            memory["error"].rstrip(),
            "```",
        ]
    records = memory.get("records") or []
    if not records:
        return ["The memory harness returned no records."]
    if not all(isinstance(r, dict) for r in records):
        return ["```", json.dumps(records, indent=1)[:4000], "```"]
    intro = [
        "Loss and gradients, jax_act against Optax, from bench/memory.py, "
        "run in the report's own process (the allocator it was started "
        f"with: GLIBC_TUNABLES=`{memory.get('glibc_tunables') or '(unset)'}`"
        f"); {memory['wall_s']:.0f} s. temp: XLA's temporary bytes of the "
        "compiled program besides arguments and outputs; times are medians "
        "with the per-round ratio to Optax [IQR].",
        "",
    ]
    known = [k for k, _, _ in _MEMORY_COLUMNS]
    if all("comparison" in r and "variant" in r for r in records):
        headers = [title for _, title, _ in _MEMORY_COLUMNS]
        align = "".join(a for _, _, a in _MEMORY_COLUMNS)
        rows = [[_memory_cell(r, k) for k in known] for r in records]
        return intro + md_table(headers, rows, align)
    # Another record layout: every scalar field, in first-seen order.
    headers = []
    for r in records:
        for k, v in r.items():
            if k not in headers and not isinstance(v, dict | list):
                headers.append(k)
    rows = [[_scalar(r.get(k)) for k in headers] for r in records]
    return intro + md_table(headers, rows)


# (field, column title, alignment) of the memory table.
_MEMORY_COLUMNS = [
    ("comparison", "comparison", "l"),
    ("variant", "variant", "l"),
    ("size", "N, D, V", "l"),
    ("temp_MiB", "temp MiB", "r"),
    ("temp_ratio", "temp / Optax", "r"),
    ("median_ms", "median ms", "r"),
    ("time_ratio", "time / Optax [IQR]", "r"),
    ("cpu_ratio", "CPU time / Optax", "r"),
    ("max_rel_diff", "max rel. diff", "r"),
]


def _memory_cell(r: dict[str, Any], key: str) -> str:
    if key == "size":
        return ", ".join(
            str(r[k]) for k in ("N", "D", "V") if r.get(k) is not None
        )
    if key == "time_ratio" and r.get("time_ratio") is not None:
        return (
            f"{r['time_ratio']:.2f} [{r.get('time_ratio_q25', 0):.2f}-"
            f"{r.get('time_ratio_q75', 0):.2f}]"
        )
    if key == "temp_ratio" and r.get(key) is not None:
        return f"{r[key]:.3f}"
    if key == "max_rel_diff" and r.get(key) is not None:
        return f"{r[key]:.1e}"
    if key in ("temp_MiB", "median_ms") and r.get(key) is not None:
        return _ms(r[key])
    if key == "cpu_ratio" and r.get(key) is not None:
        return f"{r[key]:.2f}"
    return _scalar(r.get(key))


def _scalar(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _goal_lines(goals: dict[str, Any]) -> list[str]:
    slower = goals["no_float32_slower"]
    roof = goals["softmax_roofline"]
    lines = [
        f"1. **No float32 row more than {SLOWER_LIMIT - 1:.0%} slower than "
        f"the baseline**: {'holds' if slower['holds'] else 'does NOT hold'} "
        f"({slower['rows_checked']} float32 rows checked, under every "
        f"allocator setting; {len(slower['slower'])} above "
        f"{SLOWER_LIMIT:.2f}).",
    ]
    if slower["slower"]:
        lines += [
            "",
            "   Rows above the limit, with the worst ULP error of each "
            "function in float32 (from the accuracy tables below), which "
            "is where extra precision may explain extra cost:",
            "",
        ]
        rows = [
            [
                s["case"],
                _shape(s["shape"]),
                s["mode"],
                _short(s["allocator"]),
                f"{s['ratio']:.2f} [{s['ratio_q25']:.2f}-{s['ratio_q75']:.2f}]",
                _ulp(s["ours_worst_ulp"]),
                _ulp(s["baseline_worst_ulp"]),
            ]
            for s in slower["slower"]
        ]
        lines += [
            "   " + line
            for line in md_table(
                [
                    "function",
                    "shape",
                    "pass",
                    "allocator",
                    "ours/base [IQR]",
                    "ours worst ULP",
                    "base worst ULP",
                ],
                rows,
                "llllrrr",
            )
        ]
    lines.append("")
    verdict = "holds" if roof["holds"] else "does NOT hold"
    if not roof["rows"]:
        verdict = "not judged: no large float32 softmax row in this run"
    if roof.get("note"):
        verdict = roof["note"]
    lines.append(
        f"2. **Large float32 softmax forward at >= {ROOFLINE_GOAL:.0%} of "
        f"the copy bandwidth, huge-page malloc**: {verdict}."
    )
    if roof["rows"]:
        lines.append("")
        rows = [
            [
                _shape(row["shape"]),
                _pct(row["ours"]),
                _pct(row["baseline"]),
                _pct(row["torch"]),
                f"{row['ours_gbs']:.1f}",
                f"{row['copy_gbs']:.1f}",
            ]
            for row in roof["rows"]
        ]
        lines += [
            "   " + line
            for line in md_table(
                [
                    "shape",
                    "ours % copy",
                    "base % copy",
                    "torch % copy",
                    "ours GB/s",
                    "copy GB/s",
                ],
                rows,
                "lrrrrr",
            )
        ]
    return lines


def _roofline_lines(speed) -> list[str]:
    """The copy bandwidth each run measured, and a nominal peak if known."""
    lines = []
    for phase in speed.values():
        rates = [
            r["bandwidth_gbs"]["copy"]
            for r in phase.get("records", [])
            if _ok(r) and elements(r["shape"]) >= LARGE_ELEMENTS
        ]
        if rates:
            lines.append(
                f"- Copy roofline, {phase['title']}: median "
                f"{_median_of(rates):.1f} GB/s over the large rows "
                f"({min(rates):.1f}-{max(rates):.1f}); "
                f"{_roofline_kind(phase)}."
            )
    return lines


def _roofline_kind(phase) -> str:
    for r in phase.get("records", []):
        if _ok(r) and r.get("roofline"):
            return r["roofline"]
    return "copy"


def _median_of(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2


def nominal_bandwidth(device_kind: str | None) -> float | None:
    for key, value in NOMINAL_BANDWIDTH.items():
        if device_kind and key.lower() in device_kind.lower():
            return value
    return None


def _problems(speed, accuracy_records) -> list[str]:
    lines = []
    for phase in speed.values():
        if "error" in phase:
            lines += [f"- Speed ({phase['title']}) did not finish:", ""]
            lines += ["```", phase["error"].rstrip()[-3000:], "```", ""]
        for r in phase.get("records", []):
            label = (
                f"{r['case']} {_shape(r['shape'])} {r['dtype']} "
                f"{r['mode']} ({_short(phase['allocator'])})"
            )
            if "error" in r:
                last = r["error"].strip().splitlines()[-1]
                lines.append(f"- {label}: error `{last}`")
            elif not r.get("agree", True):
                diff = r["max_scaled_difference"]["ours"]
                lines.append(
                    f"- {label}: ours and the baseline differ by {diff:.3g} "
                    f"(tolerance {r['agree_tolerance']})"
                )
            if "torch_error" in r:
                lines.append(f"- {label}: PyTorch `{r['torch_error']}`")
            elif r.get("torch_agree") is False:
                diff = r["max_scaled_difference"]["torch"]
                lines.append(
                    f"- {label}: PyTorch differs from the baseline by "
                    f"{diff:.3g}"
                )
    for r in accuracy_records:
        if "error" in r:
            last = r["error"].strip().splitlines()[-1]
            lines.append(
                f"- accuracy {r['case']} {r['dtype']} {r['inputs']}: `{last}`"
            )
    return lines


def render_markdown(document: dict[str, Any]) -> str:
    """report.md from the report's JSON document."""
    meta = document["meta"]
    speed = document["speed"]
    allocators = list(speed)
    speed_meta = next((p["meta"] for p in speed.values() if p.get("meta")), {})
    order, table = index_speed(speed)
    with_torch = any(
        _ok(r) and "torch" in r["ms"]
        for phase in speed.values()
        for r in phase.get("records", [])
    )
    dtypes = []
    for key in order:
        if key[3] not in dtypes:
            dtypes.append(key[3])
    acc_records = document["accuracy"].get("records", [])
    timing = document["timing"]

    out = ["# jax_act benchmark report", ""]
    out += _machine_lines(meta, speed_meta)
    out += [
        f"- Command: `python -m bench {' '.join(meta['options']['argv'])}`",
        f"- Wall time: {timing['wall_s']:.0f} s in all "
        f"({timing['cpu_s']:.0f} s of CPU time in this process and its "
        "children)",
        "",
        "## Notes",
        "",
    ]
    load_note = _load_note(meta)
    if load_note:
        out.append(load_note)
    out += [f"- {note}" for note in meta["options"].get("notes", [])]
    out += _speed_notes(speed, meta["options"]["quick"])
    out += _roofline_lines(speed)
    peak = nominal_bandwidth(speed_meta.get("device_kind"))
    if peak:
        out.append(
            f"- Nominal peak memory bandwidth of "
            f"{speed_meta.get('device_kind')}: {peak / 1e12:.1f} TB/s "
            "(vendor figure; the fractions above use the measured copy)."
        )
    if "hugepages" not in speed and speed_meta.get("backend") != "cpu":
        out.append(
            "- Only the default allocator ran: huge-page malloc changes "
            "host memory, not the device memory that times here."
        )
    if not with_torch:
        out.append(
            "- PyTorch is not installed (or had no peer for these cases): "
            "`pip install -e '.[torch]'` adds its columns."
        )
    out += _EXPLAIN
    out += ["", "## Goals", ""]
    out += _goal_lines(document["goals"])

    out += ["", "## Summary: ratios by function and shape", ""]
    out.append(
        "ours/base and ours/torch: median of per-round time ratios (below "
        "1: jax_act is faster); **bold**: a float32 ratio above "
        f"{SLOWER_LIMIT:.2f}. % copy: copy time / call time."
    )
    for dtype in dtypes:
        lines = _summary_table(order, table, allocators, dtype, with_torch)
        if lines:
            out += ["", f"### {dtype}", "", *lines]

    for allocator in allocators:
        title = speed[allocator]["title"]
        out += ["", f"## Speed with {title}", ""]
        for dtype in dtypes:
            lines = _speed_table(order, table, allocator, dtype, with_torch)
            if lines:
                out += [f"### {dtype}, {_short(allocator)}", "", *lines, ""]

    effect = _hugepage_effect(order, table, with_torch)
    if effect:
        out += ["## Effect of huge-page malloc on the large rows", ""]
        out.append(
            "Median ms with the default malloc → with huge-page malloc, "
            "and the speed-up. Every large JAX output on CPU is a fresh "
            "buffer whose pages fault in on first touch; huge pages cut the "
            "number of faults by 512. The copy writes into a preallocated "
            "buffer and so should not change."
        )
        out += ["", *effect, ""]

    out += ["## Accuracy", ""]
    out.append(
        "ULP error of the output dtype against a float64 or mpmath "
        "reference, over points whose reference value is a normal number "
        "of that dtype."
    )
    out += ["", *_accuracy_table(acc_records), ""]

    out += ["## Memory", ""]
    out += _memory_section(document.get("memory"))
    out.append("")

    plots = document.get("plots", [])
    if plots:
        out += ["## Plots", ""]
        for path in plots:
            out.append(f"![{path}]({path})")
            out.append("")

    problems = _problems(speed, acc_records)
    out += ["## Problems", ""]
    out += problems or ["None: every row ran and agreed with its baseline."]
    out.append("")
    return "\n".join(out)


# --- Plots ---


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


_IMPL_COLORS = {"ours": "C0", "baseline": "C1", "torch": "C2"}
_IMPL_LABELS = {"ours": "jax_act", "baseline": "baseline", "torch": "PyTorch"}
_ALLOC_STYLES = {"hugepages": "-", "default": "--"}


def plot_all(document: dict[str, Any], plot_dir: pathlib.Path) -> list[str]:
    """Writes the PNGs; returns their paths relative to the report."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    plot_dir.mkdir(parents=True, exist_ok=True)
    order, table = index_speed(document["speed"])
    allocators = list(document["speed"])
    written = []
    cases = []
    for key in order:
        if (key[0], key[1]) not in cases:
            cases.append((key[0], key[1]))
    for family, case in cases:
        path = plot_dir / f"time_{_safe(family)}_{_safe(case)}.png"
        if _plot_times(plt, order, table, allocators, family, case, path):
            written.append(path)
    families = []
    for family, _ in cases:
        if family not in families:
            families.append(family)
    for family in families:
        path = plot_dir / f"ratio_{_safe(family)}.png"
        if _plot_ratios(plt, order, table, allocators, family, path):
            written.append(path)
    path = plot_dir / "roofline.png"
    if _plot_roofline(plt, order, table, allocators, path):
        written.append(path)
    return [str(p.relative_to(plot_dir.parent)) for p in written]


def _plot_times(plt, order, table, allocators, family, case, path) -> bool:
    keys = [k for k in order if k[0] == family and k[1] == case]
    dtypes = sorted({k[3] for k in keys}, key=lambda d: d != "float32")
    modes = [m for m in ("fwd", "fwd+bwd") if any(k[4] == m for k in keys)]
    shapes = sorted({k[2] for k in keys}, key=lambda s: (elements(s), s))
    if not keys:
        return False
    fig, axes = plt.subplots(
        len(modes),
        len(dtypes),
        figsize=(max(8.0, 4.8 * len(dtypes)), 3.4 * len(modes)),
        squeeze=False,
    )
    drew = False
    for i, mode in enumerate(modes):
        for j, dtype in enumerate(dtypes):
            ax = axes[i][j]
            xs = range(len(shapes))
            for allocator in allocators:
                for impl in ("ours", "baseline", "torch"):
                    ys = [
                        _median(
                            table.get((family, case, s, dtype, mode), {}).get(
                                allocator
                            ),
                            impl,
                        )
                        for s in shapes
                    ]
                    if all(y is None for y in ys):
                        continue
                    ax.plot(
                        xs,
                        [math.nan if y is None else y for y in ys],
                        _ALLOC_STYLES.get(allocator, "-"),
                        color=_IMPL_COLORS[impl],
                        marker="o",
                        markersize=4,
                        label=f"{_IMPL_LABELS[impl]}, {_short(allocator)}",
                    )
                    drew = True
            copy = []
            for s in shapes:
                times = [
                    _median(
                        table.get((family, case, s, dtype, mode), {}).get(a),
                        "copy",
                    )
                    for a in allocators
                ]
                times = [t for t in times if t is not None]
                copy.append(min(times) if times else math.nan)
            ax.plot(
                xs,
                copy,
                ":",
                color="black",
                linewidth=2,
                marker="x",
                label="copy of the same bytes (roofline)",
            )
            ax.set_yscale("log")
            ax.set_xticks(list(xs))
            ax.set_xticklabels(
                [_shape(s) for s in shapes], rotation=20, fontsize=8
            )
            ax.set_title(f"{case}: {dtype}, {mode}", fontsize=10)
            ax.set_ylabel("median ms per call")
            ax.grid(True, which="both", alpha=0.3)
    if not drew:
        plt.close(fig)
        return False
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="lower center",
        ncol=min(len(labels), 3),
        fontsize=8,
        frameon=False,
    )
    fig.suptitle(f"{case} ({family} family): time against shape, log scale")
    # Room at the bottom for the legend: about 0.2 inch per legend row.
    rows = math.ceil(len(labels) / 3)
    height = fig.get_size_inches()[1]
    fig.tight_layout(rect=(0, min(0.4, (0.15 + 0.2 * rows) / height), 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _plot_ratios(plt, order, table, allocators, family, path) -> bool:
    keys = [k for k in order if k[0] == family]
    dtypes = sorted({k[3] for k in keys}, key=lambda d: d != "float32")
    panels = [("ratio", "ours / baseline")]
    has_torch = any(
        "ratio_vs_torch" in r for k in keys for r in table[k].values()
    )
    if has_torch:
        panels.append(("ratio_vs_torch", "ours / PyTorch"))
    # Categories top to bottom: function, shape, pass (dtype per column).
    labels_keys = []
    for k in keys:
        label = (k[1], k[2], k[4])
        if label not in labels_keys:
            labels_keys.append(label)
    if not labels_keys:
        return False
    height = 1.2 + 0.22 * len(labels_keys) * len(allocators)
    fig, axes = plt.subplots(
        1,
        len(panels) * len(dtypes),
        figsize=(4.2 * len(panels) * len(dtypes), height),
        squeeze=False,
        sharey=True,
    )
    bar = 0.8 / len(allocators)
    drew = False
    for j, dtype in enumerate(dtypes):
        for p, (field, title) in enumerate(panels):
            ax = axes[0][j * len(panels) + p]
            for a, allocator in enumerate(allocators):
                values = []
                for case, shape, mode in labels_keys:
                    r = table.get((family, case, shape, dtype, mode), {}).get(
                        allocator
                    )
                    stats = r.get(field) if r is not None and _ok(r) else None
                    values.append(stats["median"] if stats else math.nan)
                ys = [i + a * bar for i in range(len(labels_keys))]
                ax.barh(
                    ys,
                    values,
                    height=bar,
                    color="C0" if allocator == "hugepages" else "C7",
                    label=_short(allocator),
                )
                drew = drew or any(math.isfinite(v) for v in values)
            ax.axvline(1.0, color="black", linewidth=1)
            if field == "ratio":
                ax.axvline(
                    SLOWER_LIMIT,
                    color="C3",
                    linestyle="--",
                    linewidth=1,
                    label=f"{SLOWER_LIMIT:.2f} (goal limit)",
                )
            ax.set_xscale("log")
            _ratio_ticks(ax)
            ax.set_title(f"{title}, {dtype}", fontsize=10)
            ax.set_xlabel("time ratio (< 1: jax_act faster)")
            ax.grid(True, axis="x", which="both", alpha=0.3)
    axes[0][0].set_yticks(
        [i + bar * (len(allocators) - 1) / 2 for i in range(len(labels_keys))]
    )
    axes[0][0].set_yticklabels(
        [f"{c} {_shape(s)} {m}" for c, s, m in labels_keys], fontsize=8
    )
    axes[0][0].invert_yaxis()
    if not drew:
        plt.close(fig)
        return False
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", fontsize=8)
    fig.suptitle(f"{family} family: time ratios (median of paired rounds)")
    fig.tight_layout(rect=(0, 0, 0.9, 0.96))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _ratio_ticks(ax) -> None:
    """Plain labels at a few round ratios on a log axis, no minor labels."""
    from matplotlib import ticker

    ax.xaxis.set_major_locator(ticker.FixedLocator(_RATIO_TICKS))
    ax.xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())


_RATIO_TICKS = [1 / 16, 1 / 8, 1 / 4, 1 / 2, 0.75, 1, 1.25, 1.5, 2, 4, 8, 16]


def _plot_roofline(plt, order, table, allocators, path) -> bool:
    """Fraction of the copy bandwidth, float32, for the largest rows."""
    allocator = allocators[-1]
    keys = [
        k
        for k in order
        if k[3] == "float32" and elements(k[2]) >= LARGE_ELEMENTS
    ]
    if not keys:
        # Quick runs have no large rows: take each case's largest shape.
        largest: dict[tuple, tuple] = {}
        for k in order:
            if k[3] != "float32":
                continue
            best = largest.get((k[0], k[1], k[4]))
            if best is None or elements(k[2]) > elements(best[2]):
                largest[(k[0], k[1], k[4])] = k
        keys = [k for k in order if k in largest.values()]
    modes = [m for m in ("fwd", "fwd+bwd") if any(k[4] == m for k in keys)]
    if not modes:
        return False
    fig, axes = plt.subplots(
        len(modes),
        1,
        figsize=(max(6.0, 0.55 * len(keys)), 3.6 * len(modes)),
        squeeze=False,
    )
    impls = ("ours", "baseline", "torch")
    width = 0.8 / len(impls)
    drew = False
    for i, mode in enumerate(modes):
        ax = axes[i][0]
        mode_keys = [k for k in keys if k[4] == mode]
        for n, impl in enumerate(impls):
            values = []
            for k in mode_keys:
                r = table[k].get(allocator)
                ok = r is not None and _ok(r)
                fraction = r["roofline_fraction"].get(impl) if ok else None
                values.append(math.nan if fraction is None else fraction)
            if all(math.isnan(v) for v in values):
                continue
            ax.bar(
                [x + n * width for x in range(len(mode_keys))],
                values,
                width=width,
                color=_IMPL_COLORS[impl],
                label=_IMPL_LABELS[impl],
            )
            drew = True
        if mode == "fwd":
            ax.axhline(
                ROOFLINE_GOAL,
                color="C3",
                linestyle="--",
                linewidth=1,
                label=f"softmax goal {ROOFLINE_GOAL:.0%}",
            )
        ax.axhline(1.0, color="black", linewidth=1)
        ax.set_xticks([x + width for x in range(len(mode_keys))])
        ax.set_xticklabels(
            [f"{k[1]}\n{_shape(k[2])}" for k in mode_keys],
            rotation=30,
            fontsize=7,
            ha="right",
        )
        ax.set_ylabel("copy time / call time")
        ax.set_title(
            f"float32 {mode}, {_short(allocator)}: fraction of the copy "
            "bandwidth (1 = roofline)",
            fontsize=10,
        )
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="upper right")
    if not drew:
        plt.close(fig)
        return False
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# --- The command ---


_NON_FINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def _unjson(value: Any) -> Any:
    """Undoes results.jsonable's spelling of inf and NaN as strings."""
    if isinstance(value, dict):
        return {k: _unjson(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unjson(v) for v in value]
    if isinstance(value, str) and value in _NON_FINITE:
        return _NON_FINITE[value]
    return value


def rerender(out: pathlib.Path, plots: bool = True) -> int:
    """Rewrites report.md (and the plots) from out/report.json."""
    document = _unjson(json.loads((out / "report.json").read_text()))
    if plots:
        document["plots"] = plot_all(document, out / "plots")
    (out / "report.md").write_text(render_markdown(document))
    print(f"rewrote {out / 'report.md'} from {out / 'report.json'}")
    return 0


def main(args: argparse.Namespace, *, repeats: int) -> int:
    """Runs the report; returns 1 when something failed, else 0."""
    if args.rerender:
        return rerender(args.out, plots=not args.no_plots)
    start, cpu_start = time.perf_counter(), _children_cpu_s() + _self_cpu_s()
    out: pathlib.Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    budget = args.budget if args.budget is not None else None
    if budget is None and not args.quick:
        budget = FULL_BUDGET_S
    load_start = results.load_average()
    date_start = results.now_iso()
    print(
        f"bench report into {out} ({'quick' if args.quick else 'full'}); "
        f"load average {load_start}",
        flush=True,
    )

    # 1. Speed, in one worker process per allocator setting. This process
    # does not touch a JAX device until they are done: on a GPU it would
    # hold memory they need.
    requested = args.allocators or ["default", "hugepages"]
    allocators = [ALLOCATORS[name] for name in dict.fromkeys(requested)]
    with tempfile.TemporaryDirectory(prefix="jax-act-bench-") as cache:
        speed = run_speed(
            allocators,
            args,
            repeats,
            budget,
            out,
            cache,
            explicit=args.allocators is not None,
        )

    # 2. Accuracy and memory, here.
    meta = results.environment()
    meta["load_average_start"] = load_start
    meta["date"] = date_start  # when the report started, not this phase
    meta["options"] = {
        "what": "report",
        "quick": args.quick,
        "repeats": repeats,
        "budget_s": budget,
        "families": args.family,
        "cases": args.case,
        "allocators": list(speed),
        "notes": list(args.note),
        "argv": list(getattr(args, "argv", sys.argv[1:])),
    }
    print("\n=== accuracy ===", flush=True)
    try:
        accuracy_part = run_accuracy(args, out, meta)
    except Exception:  # recorded; the report goes on
        accuracy_part = {"records": [], "error": traceback.format_exc()}
        print(accuracy_part["error"], file=sys.stderr)
    print("\n=== memory ===", flush=True)
    if args.memory == "on" or (
        args.memory == "auto" and memory_wanted(args.family, args.case)
    ):
        memory = run_memory(args.quick, out)
        if memory is None:
            print("bench/memory.py not found: skipped", flush=True)
    else:
        why = (
            "--memory off"
            if args.memory == "off"
            else "the run was filtered to other cases"
        )
        memory = {"skipped": why}
        print(f"skipped: {why}", flush=True)

    # 3. The report.
    document: dict[str, Any] = {
        "kind": "report",
        "meta": meta,
        "speed": speed,
        "accuracy": accuracy_part,
        "memory": memory,
        "goals": evaluate_goals(speed, accuracy_part["records"]),
    }
    plots: list[str] = []
    if not args.no_plots:
        try:
            plots = plot_all(document, out / "plots")
        except Exception:  # recorded; the tables still get written
            document["plot_error"] = traceback.format_exc()
            print(document["plot_error"], file=sys.stderr)
    document["plots"] = plots
    document["timing"] = {
        "wall_s": time.perf_counter() - start,
        "cpu_s": _children_cpu_s() + _self_cpu_s() - cpu_start,
    }
    meta["load_average_end"] = results.load_average()
    # The record first: if rendering failed, the measurements would stay.
    text = json.dumps(results.jsonable(document), indent=1, allow_nan=False)
    (out / "report.json").write_text(text + "\n")
    (out / "report.md").write_text(render_markdown(document))

    failed = _failures(document)
    print(
        f"\nwrote {out / 'report.md'}, {out / 'report.json'} and "
        f"{len(plots)} plots in {document['timing']['wall_s']:.0f} s",
        flush=True,
    )
    for line in failed:
        print(line, file=sys.stderr)
    return 1 if failed else 0


def _failures(document: dict[str, Any]) -> list[str]:
    """What makes the command exit non-zero: anything that did not run."""
    failed = []
    for phase in document["speed"].values():
        if "error" in phase:
            failed.append(f"speed ({phase['title']}) did not finish")
        bad = [
            r
            for r in phase.get("records", [])
            if "error" in r or not r.get("agree", True)
        ]
        if bad:
            failed.append(
                f"speed ({phase['title']}): {len(bad)} row(s) failed or "
                "disagreed with the baseline"
            )
    accuracy_part = document["accuracy"]
    if "error" in accuracy_part or any(
        "error" in r for r in accuracy_part["records"]
    ):
        failed.append("accuracy: some rows failed")
    memory = document.get("memory")
    if memory is not None and "error" in memory:
        failed.append("memory harness failed")
    if "plot_error" in document:
        failed.append("plots failed")
    return failed
