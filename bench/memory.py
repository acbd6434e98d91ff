"""Memory and time of the cross-entropy losses against Optax.

Two comparisons, loss plus gradients, in one run:

1. ``linear``: the output layer of a language model, hidden [N, D] times
   weight [D, V] then integer-label cross-entropy, mean over examples,
   gradients with respect to hidden and weight. jax_act's
   ``linear_softmax_cross_entropy`` (chunked over V, never holding the
   [N, V] logits; and, as ``fused_mean``, its ``reduction='mean'`` path,
   which visits blocks of rows and forms the gradients in the forward
   pass) against ``optax.softmax_cross_entropy_with_integer_labels`` on
   the materialised ``hidden @ weight``.
2. ``logits``: the cross-entropy alone on materialised [N, V] logits,
   gradient with respect to the logits: jax_act's
   ``softmax_cross_entropy_with_integer_labels`` against Optax's.

Memory is XLA's own accounting of the compiled program
(``jax.jit(f).lower(...).compile().memory_analysis()``): the temporary
bytes, besides arguments and outputs. Time is wall-clock per call, ours
and Optax interleaved in one loop (bench/timing.py), with the per-round
ratio; the process CPU time per call is recorded too, as it suffers less
than wall time from other processes on a shared machine. For the fused
loss the run also times one ``hidden @ weight`` product and the loss
alone, to say where the time goes: the fused loss and its gradient do four
such products (one forward, three backward), the materialised one and
``fused_mean`` three.

Usage::

    python -m bench.memory [--quick] [--out DIR] [--repeats N]

Full size: N = 8192, D = 1024, V = 32768, float32 (the logits alone are
1 GiB). --quick uses tiny shapes and two repeats: a smoke test.
"""

from __future__ import annotations

import argparse
import pathlib
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jax_act
from bench import results, timing

FULL = {"N": 8192, "D": 1024, "V": 32768}
# Quick: a V that the default chunk does not divide, so the remainder
# chunk runs too.
QUICK = {"N": 64, "D": 32, "V": 1000}
QUICK_CHUNK = 128


def _linear_losses(chunk_size: int | None) -> dict[str, Callable]:
    def fused(h, w, y):
        loss = jax_act.linear_softmax_cross_entropy(
            h, w, y, chunk_size=chunk_size
        )
        return jnp.mean(loss)

    def materialised(h, w, y):
        logits = h @ w
        return jnp.mean(
            optax.softmax_cross_entropy_with_integer_labels(logits, y)
        )

    def fused_mean(h, w, y):
        # The reduced path: the gradients formed in the forward pass over
        # blocks of rows, three matrix products instead of four.
        return jax_act.linear_softmax_cross_entropy(h, w, y, reduction="mean")

    return {"fused": fused, "fused_mean": fused_mean, "optax": materialised}


def _logit_losses() -> dict[str, Callable]:
    def ours(x, y):
        return jnp.mean(jax_act.softmax_cross_entropy_with_integer_labels(x, y))

    def baseline(x, y):
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(x, y))

    return {"ours": ours, "optax": baseline}


def _memory(compiled: Any) -> dict[str, int]:
    stats = compiled.memory_analysis()
    return {
        "temp_bytes": int(stats.temp_size_in_bytes),
        "argument_bytes": int(stats.argument_size_in_bytes),
        "output_bytes": int(stats.output_size_in_bytes),
    }


def _cpu_timed(thunk: Callable[[], Any], sink: list[float]):
    """The thunk, also appending its process CPU seconds to `sink`."""

    def run():
        start = time.process_time()
        out = thunk()
        sink.append(time.process_time() - start)
        return out

    return run


def _max_rel_diff(a: Any, b: Any) -> float:
    """Largest |a - b| over the largest |b|, leaf by leaf."""
    worst = 0.0
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x = np.asarray(x, np.float64)
        y = np.asarray(y, np.float64)
        scale = max(float(np.max(np.abs(y))), 1e-30)
        worst = max(worst, float(np.max(np.abs(x - y))) / scale)
    return worst


def _compare(
    label: str,
    programs: dict[str, Callable],
    args: tuple,
    repeats: int,
    baseline: str,
    extra: dict[str, Callable] | None = None,
) -> list[dict[str, Any]]:
    """Compiles, checks agreement, measures memory, times interleaved."""
    compiled, compile_s, memory = {}, {}, {}
    for name, fn in programs.items():
        compiled[name], compile_s[name] = timing.compile_jitted(fn, args)
        memory[name] = _memory(compiled[name])

    # Same answer before timing: loss and every gradient.
    outputs = {name: c(*args) for name, c in compiled.items()}
    agreement = {
        name: _max_rel_diff(out, outputs[baseline])
        for name, out in outputs.items()
    }
    del outputs

    timed = dict(programs)
    compiled_all = dict(compiled)
    for name, fn in (extra or {}).items():
        compiled_all[name], compile_s[name] = timing.compile_jitted(fn, args)
        timed[name] = fn
    cpu: dict[str, list[float]] = {name: [] for name in timed}
    thunks = {
        name: _cpu_timed(timing.jax_thunk(compiled_all[name], args), cpu[name])
        for name in timed
    }
    stats = timing.time_interleaved(thunks, repeats=repeats, warmup=1)

    records = []
    base_temp = memory[baseline]["temp_bytes"]
    for name in timed:
        n_timed = len(stats[name]["samples_ms"]) * stats[name]["number"]
        cpu_ms = 1e3 * np.median(cpu[name][-n_timed:])
        record = {
            "comparison": label,
            "variant": name,
            "median_ms": stats[name]["median"],
            "q25_ms": stats[name]["q25"],
            "q75_ms": stats[name]["q75"],
            "cpu_median_ms": float(cpu_ms),
            "rounds": len(stats[name]["samples_ms"]),
            "compile_s": compile_s[name],
        }
        if name != baseline:
            ratio = timing.paired_ratio(stats[name], stats[baseline])
            record["time_ratio"] = ratio["median"]
            record["time_ratio_q25"] = ratio["q25"]
            record["time_ratio_q75"] = ratio["q75"]
        if name in memory:
            record.update(memory[name])
            record["temp_MiB"] = memory[name]["temp_bytes"] / 2**20
            record["temp_ratio"] = memory[name]["temp_bytes"] / max(
                base_temp, 1
            )
            record["max_rel_diff"] = agreement[name]
        records.append(record)
    for record in records:
        base_cpu = next(
            r["cpu_median_ms"] for r in records if r["variant"] == baseline
        )
        record["cpu_ratio"] = record["cpu_median_ms"] / base_cpu
    return records


def run(
    quick: bool = False,
    out: pathlib.Path | None = None,
    repeats: int | None = None,
) -> list[dict[str, Any]]:
    """Runs both comparisons; returns flat records (and writes them)."""
    size = QUICK if quick else FULL
    repeats = repeats or (2 if quick else 5)
    chunk = QUICK_CHUNK if quick else None
    n, d, v = size["N"], size["D"], size["V"]
    rng = np.random.default_rng(0)
    # Logits of a trained-looking scale: hidden and weight entries of
    # standard deviation 1 and 1/sqrt(D).
    hidden = jax.device_put(
        rng.standard_normal((n, d), dtype=np.float32).astype(np.float32)
    )
    weight = jax.device_put(
        (rng.standard_normal((d, v), dtype=np.float32) / np.sqrt(d)).astype(
            np.float32
        )
    )
    labels = jax.device_put(rng.integers(0, v, size=n).astype(np.int32))

    records = []
    linear = {
        name: jax.value_and_grad(fn, argnums=(0, 1))
        for name, fn in _linear_losses(chunk).items()
    }
    fused = _linear_losses(chunk)["fused"]
    # Where the time goes: one [N, D] x [D, V] product, and the fused loss
    # without its gradient.
    extra = {
        "matmul": lambda h, w, y: jnp.sum(h @ w),
        "fused_forward": fused,
    }
    for record in _compare(
        "linear", linear, (hidden, weight, labels), repeats, "optax", extra
    ):
        record.update(N=n, D=d, V=v, dtype="float32")
        records.append(record)

    logits = jax.device_put(
        (rng.standard_normal((n, v), dtype=np.float32) * 3).astype(np.float32)
    )
    del hidden, weight
    ce = {name: jax.value_and_grad(fn) for name, fn in _logit_losses().items()}
    for record in _compare("logits", ce, (logits, labels), repeats, "optax"):
        record.update(N=n, D=None, V=v, dtype="float32")
        records.append(record)

    _print(records, quick)
    if out is not None:
        meta = results.environment()
        meta.update(quick=quick, repeats=repeats, sizes=size)
        results.write_json(
            pathlib.Path(out) / "memory.json", "memory", meta, records
        )
    return records


def _print(records: list[dict[str, Any]], quick: bool) -> None:
    table = results.Table(
        [
            ("comparison", 10, "<"),
            ("variant", 13, "<"),
            ("temp MiB", 9, ">"),
            ("temp/optax", 10, ">"),
            ("median ms", 10, ">"),
            ("time/optax", 17, ">"),
            ("cpu ms", 8, ">"),
            ("cpu/optax", 9, ">"),
            ("max rel diff", 12, ">"),
        ]
    )
    size = QUICK if quick else FULL
    table.header(
        f"Loss + gradients, N={size['N']}, D={size['D']}, V={size['V']}, "
        "float32 (XLA temp bytes; wall ms median, paired ratio [IQR])"
    )
    for r in records:
        ratio = "-"
        if "time_ratio" in r:
            ratio = (
                f"{r['time_ratio']:.2f} "
                f"[{r['time_ratio_q25']:.2f}-{r['time_ratio_q75']:.2f}]"
            )
        temp = f"{r['temp_MiB']:.1f}" if "temp_MiB" in r else "-"
        temp_ratio = f"{r['temp_ratio']:.4f}" if "temp_ratio" in r else "-"
        diff = f"{r['max_rel_diff']:.1e}" if "max_rel_diff" in r else "-"
        table.row(
            [
                r["comparison"],
                r["variant"],
                temp,
                temp_ratio,
                f"{r['median_ms']:.1f}",
                ratio,
                f"{r['cpu_median_ms']:.0f}",
                f"{r['cpu_ratio']:.2f}",
                diff,
            ]
        )
    table.note(
        f"load average at the end: {results.load_average()} "
        f"(cores available: {results.environment()['cpu_cores_available']})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.memory", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="tiny shapes")
    parser.add_argument(
        "--out", type=pathlib.Path, default=None, help="write memory.json"
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed rounds (5; quick 2)"
    )
    args = parser.parse_args(argv)
    run(quick=args.quick, out=args.out, repeats=args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
