"""What a benchmark record says about where it ran, and how it is written.

Every JSON file the harnesses write has the same outer form::

    {"kind": "speed" | "accuracy", "meta": {...}, "records": [...]}

where "meta" is :func:`environment` (versions, backend, device, CPU, date,
commit, allocator settings, machine load) plus the run's options. Numbers
that JSON cannot hold (inf, NaN) are written as the strings "inf", "-inf"
and "nan", so that the files stay strict JSON for any reader.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import math
import os
import pathlib
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

_REPO = pathlib.Path(__file__).resolve().parent.parent


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _git_commit() -> dict[str, Any] | None:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=_REPO,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=_REPO,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(dirty)}


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages, where the OS reports them."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def anon_huge_pages_kib() -> int | None:
    """This process's memory now held in transparent huge pages, in KiB.

    Read from /proc/self/smaps_rollup (Linux); it shows whether a huge-page
    allocator setting took effect. None where the file does not exist.
    """
    text = _read("/proc/self/smaps_rollup")
    for line in (text or "").splitlines():
        if line.startswith("AnonHugePages:"):
            return int(line.split()[1])
    return None


def now_iso() -> str:
    """The current UTC time, to the second, in ISO 8601."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds"
    )


def environment() -> dict[str, Any]:
    """Versions, hardware and settings that a timing depends on."""
    device = jax.devices()[0]
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    return {
        "date": now_iso(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {
            "jax": jax.__version__,
            "jaxlib": _version("jaxlib"),
            "numpy": np.__version__,
            "jax_act": _version("jax-act"),
            "mpmath": _version("mpmath"),
            "optax": _version("optax"),
            "torch": _version("torch"),
        },
        "backend": jax.default_backend(),
        "device_kind": device.device_kind,
        "device_count": jax.device_count(),
        "cpu_model": _cpu_model(),
        "cpu_cores_available": cores,
        "git": _git_commit(),
        "env": {
            name: os.environ.get(name)
            for name in (
                "GLIBC_TUNABLES",
                "XLA_FLAGS",
                "OPENBLAS_CORETYPE",
                "OMP_NUM_THREADS",
                "OMP_WAIT_POLICY",
                "JAX_PLATFORMS",
                "JAX_COMPILATION_CACHE_DIR",
            )
        },
        "transparent_hugepage": _read(
            "/sys/kernel/mm/transparent_hugepage/enabled"
        ),
        "load_average_start": load_average(),
    }


def jsonable(value: Any) -> Any:
    """Converts NumPy values, tuples and non-finite floats for JSON."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def write_json(
    path: pathlib.Path,
    kind: str,
    meta: dict[str, Any],
    records: Sequence[dict[str, Any]],
) -> pathlib.Path:
    """Writes one harness's records, with the run's metadata, to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(
        meta,
        load_average_end=load_average(),
        anon_huge_pages_kib=anon_huge_pages_kib(),
        process_cpu_s=time.process_time(),
    )
    document = {"kind": kind, "meta": meta, "records": list(records)}
    text = json.dumps(jsonable(document), indent=1, allow_nan=False)
    path.write_text(text + "\n")
    return path


class Table:
    """A plain-text table printed row by row as results arrive.

    Columns are (header, width, alignment) with alignment "<" or ">".
    """

    def __init__(self, columns: Sequence[tuple[str, int, str]], file=None):
        self.columns = list(columns)
        self.file = file if file is not None else sys.stdout
        self.lines: list[str] = []

    def _emit(self, line: str) -> None:
        self.lines.append(line)
        print(line, file=self.file, flush=True)

    def _format(self, cells: Sequence[str]) -> str:
        parts = [
            f"{cell:{align}{width}}"
            for cell, (_, width, align) in zip(cells, self.columns, strict=True)
        ]
        return "  ".join(parts).rstrip()

    def header(self, title: str | None = None) -> None:
        if title:
            self._emit("")
            self._emit(title)
        line = self._format([h for h, _, _ in self.columns])
        self._emit(line)
        self._emit("-" * len(line))

    def row(self, cells: Sequence[str]) -> None:
        self._emit(self._format(cells))

    def note(self, text: str) -> None:
        self._emit(text)


def fmt_ms(stats: dict[str, Any] | None) -> str:
    """Median with interquartile range, e.g. '7.52 [7.41-7.70]'."""
    if not stats:
        return "-"
    return (
        f"{_num(stats['median'])} [{_num(stats['q25'])}-{_num(stats['q75'])}]"
    )


def _num(v: float) -> str:
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    if v >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def fmt_ulp(v: float | None) -> str:
    """ULP counts: small ones with a decimal, large ones in e-notation."""
    if v is None:
        return "-"
    if not math.isfinite(v):
        return "inf" if v > 0 else "nan"
    if v < 100:
        return f"{v:.2f}"
    if v < 1e5:
        return f"{v:.0f}"
    return f"{v:.2g}"


def shape_str(shape: Sequence[int]) -> str:
    return "x".join(str(d) for d in shape) if len(shape) else "()"
