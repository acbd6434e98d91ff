"""Command line: ``python -m bench [report|speed|accuracy|all] [options]``.

Examples::

    python -m bench report --out out/bench   # the full report (make bench)
    python -m bench report --quick --out /tmp/r  # its smoke test
    python -m bench                          # speed and accuracy tables
    python -m bench speed --family softmax   # one family's timings
    python -m bench accuracy --case 'log_*'  # cases by name or pattern

``report`` runs the speed harness once per allocator setting, each in a
fresh process, then the accuracy and memory harnesses, and writes
report.md, report.json and plots/ into --out (see bench/report.py). The
other commands print tables to stdout (and to speed.txt / accuracy.txt)
and write records to speed.json / accuracy.json in --out. The exit status
is 1 when a row failed or ours and the baseline disagreed, so a broken
case is noticed.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Sequence

from bench import accuracy, registry, report, results, speed

DEFAULT_REPEATS = {False: 15, True: 3}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Time and measure the accuracy of jax_act against "
        "jax.nn (and PyTorch when installed).",
    )
    parser.add_argument(
        "what",
        nargs="?",
        choices=("report", "speed", "accuracy", "all"),
        default="all",
        help="the full report, or one harness (default: all = speed and "
        "accuracy); give it first",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny shapes, each case's first dtype only, few repeats: "
        "a smoke test of a few seconds",
    )
    parser.add_argument(
        "--out",
        type=pathlib.Path,
        default=pathlib.Path("out/bench"),
        help="folder for the JSON records and text tables (out/bench)",
    )
    parser.add_argument(
        "--family",
        nargs="+",
        action="extend",
        metavar="NAME",
        help="only these families (softmax, gelu, losses, ...)",
    )
    parser.add_argument(
        "--case",
        nargs="+",
        action="extend",
        metavar="NAME",
        help="only cases with these names or shell patterns ('log_*')",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed rounds per row (default 15, or 3 with --quick)",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="cut the rounds of a slow row so that its timed loop takes "
        "about this long, keeping at least 5 (report default: "
        f"{report.FULL_BUDGET_S} s per row; otherwise no cut)",
    )
    parser.add_argument(
        "--worker",
        action="store_true",
        help="(used by report) measure the speed rows named on standard "
        "input, one 'run I' a line; see bench.speed.serve",
    )
    report.add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    repeats = args.repeats or DEFAULT_REPEATS[args.quick]
    if repeats < 1:
        raise SystemExit("--repeats must be at least 1")
    if args.budget is not None and args.budget <= 0:
        raise SystemExit("--budget must be positive")
    if args.what == "report":
        args.argv = list(sys.argv[1:] if argv is None else argv)
        return report.main(args, repeats=repeats)

    meta = results.environment()
    meta["options"] = {
        "what": args.what,
        "quick": args.quick,
        "repeats": repeats,
        "budget_s": args.budget,
        "families": args.family,
        "cases": args.case,
        "argv": list(sys.argv[1:] if argv is None else argv),
    }
    print(
        f"jax {meta['versions']['jax']} on {meta['backend']} "
        f"({meta['device_kind']}, {meta['cpu_model']}, "
        f"{meta['cpu_cores_available']} cores); "
        f"GLIBC_TUNABLES={meta['env']['GLIBC_TUNABLES']}; "
        f"load average {meta['load_average_start']}",
        flush=True,
    )

    problems = 0
    written = []
    harnesses = []
    if args.what in ("speed", "all"):
        harnesses.append(("speed", registry.SpeedCase))
    if args.what in ("accuracy", "all"):
        harnesses.append(("accuracy", registry.AccuracyCase))
    for kind, case_type in harnesses:
        cases = registry.select(case_type, args.family, args.case)
        if not cases:
            print(f"\nno {kind} cases match the filters", file=sys.stderr)
            continue
        if kind == "speed":
            table = speed.make_table(cases)
            harness = speed.serve if args.worker else speed.run
            extra = {"meta": meta} if args.worker else {}
            records = harness(
                cases,
                quick=args.quick,
                repeats=repeats,
                budget_s=args.budget,
                table=table,
                **extra,
            )
            problems += sum(
                "error" in r or not r.get("agree", True) for r in records
            )
        else:
            table = accuracy.make_table()
            records = accuracy.run(cases, quick=args.quick, table=table)
            problems += sum("error" in r for r in records)
        path = results.write_json(
            args.out / f"{kind}.json", kind, meta, records
        )
        (args.out / f"{kind}.txt").write_text("\n".join(table.lines) + "\n")
        written.append(path)

    for path in written:
        print(f"wrote {path}")
    if problems:
        print(
            f"{problems} row(s) failed or disagreed with the baseline; "
            "see ERROR / DIFFERS above",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
