"""The `jax-act` command line.

``jax-act demo`` trains a small classifier once per activation and writes a
table, a figure and a JSON record (see `jax_act.demo`). Bad arguments and
unusable data files end with a one-line message and exit status 2, as
argparse does for its own usage errors; nothing prints a traceback for
them. Run ``jax-act demo --help`` for the options.
"""

import argparse
import math
import os
import sys
import time
from collections.abc import Sequence

from jax_act.demo._config import ACTIVATION_NAMES, SCHEDULES, DemoConfig

# Exit statuses: 2 is argparse's own status for a usage error.
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# Packages of the `demo` extra, by import name.
_DEMO_PACKAGES = ("flax", "optax", "sklearn", "matplotlib", "tqdm")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(
            f"must be a positive whole number; got {text!r}"
        )
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(
            f"must be a positive finite number; got {text!r}"
        )
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(
            f"must be a finite number >= 0; got {text!r}"
        )
    return value


def _activation_list(text: str) -> tuple[str, ...]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == ["all"]:
        return ACTIVATION_NAMES
    unknown = [n for n in names if n not in ACTIVATION_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown activation {', '.join(map(repr, unknown)) or repr(text)}"
            f"; choose from {', '.join(ACTIVATION_NAMES)} (comma-separated) "
            "or 'all'"
        )
    return tuple(dict.fromkeys(names))


def _width_list(text: str) -> tuple[int, ...]:
    parts = [p for p in text.split(",") if p.strip()]
    try:
        widths = tuple(_positive_int(p) for p in parts)
    except argparse.ArgumentTypeError:
        widths = ()
    if not widths:
        raise argparse.ArgumentTypeError(
            f"must be comma-separated positive layer widths such as 128,128; "
            f"got {text!r}"
        )
    return widths


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `jax-act` and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="jax-act",
        description="Command-line tools of jax_act.",
    )
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND"
    )
    defaults = DemoConfig()
    demo = commands.add_parser(
        "demo",
        help="train a digits classifier once per activation and compare",
        description=(
            "Train a Flax NNX MLP on scikit-learn's bundled digits (or your "
            ".npz file) once per activation, from the same initial weights "
            "and batch order; report test accuracy, NLL, calibration error "
            "before and after temperature scaling, dead units and time. "
            "Writes demo.png, demo.json and table.md to --out."
        ),
    )
    demo.add_argument(
        "--out",
        default=os.path.join("out", "demo"),
        help="output folder (created; default: %(default)s)",
    )
    demo.add_argument(
        "--data",
        metavar="FILE.npz",
        help="your own data: a .npz file with arrays x (N, features) and y "
        "(N,) integer labels (default: sklearn's digits)",
    )
    demo.add_argument(
        "--activations",
        type=_activation_list,
        default=defaults.activations,
        metavar="LIST",
        help="comma-separated, from: "
        f"{', '.join(ACTIVATION_NAMES)} (default: all)",
    )
    demo.add_argument(
        "--epochs",
        type=_positive_int,
        default=defaults.epochs,
        help="default: %(default)s",
    )
    demo.add_argument(
        "--lr",
        type=_positive_float,
        default=defaults.learning_rate,
        help="AdamW peak learning rate (default: %(default)s)",
    )
    demo.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default=defaults.schedule,
        help="cosine: 5%% linear warm-up then cosine decay to 0 "
        "(default: %(default)s)",
    )
    demo.add_argument(
        "--weight-decay",
        type=_non_negative_float,
        default=defaults.weight_decay,
        help="AdamW weight decay on weight matrices (default: %(default)s)",
    )
    demo.add_argument(
        "--batch-size",
        type=_positive_int,
        default=defaults.batch_size,
        help="default: %(default)s",
    )
    demo.add_argument(
        "--hidden",
        type=_width_list,
        default=defaults.widths,
        metavar="W1,W2",
        help="hidden layer widths (default: 128,128)",
    )
    demo.add_argument(
        "--seed",
        type=int,
        default=defaults.seed,
        help="seeds the split, the weights and the batch order "
        "(default: %(default)s)",
    )
    demo.add_argument(
        "--subset",
        type=_positive_int,
        metavar="N",
        help="use only N examples (quick runs)",
    )
    demo.add_argument(
        "--dying-lr",
        type=_positive_float,
        default=defaults.dying_learning_rate,
        metavar="LR",
        help="constant learning rate of the second run, where ReLU units "
        "die (default: %(default)s)",
    )
    demo.add_argument(
        "--no-dying-relu",
        action="store_true",
        help="skip the second, high-learning-rate run",
    )
    demo.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars",
    )
    return parser


def _error(message: str) -> None:
    print(f"jax-act demo: error: {message}", file=sys.stderr)


def _run_demo(args: argparse.Namespace) -> int:
    config = DemoConfig(
        activations=args.activations,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        weight_decay=args.weight_decay,
        widths=args.hidden,
        schedule=args.schedule,
        seed=args.seed,
        data=args.data,
        subset=args.subset,
        dying_relu=not args.no_dying_relu,
        dying_learning_rate=args.dying_lr,
    )
    # Fail on a missing data file or an unusable output folder now, before
    # anything is imported, created or trained.
    if args.data is not None and not os.path.exists(args.data):
        _error(f"--data {args.data}: no such file.")
        return EXIT_USAGE
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as err:
        _error(f"--out {args.out}: cannot create the folder ({err}).")
        return EXIT_USAGE

    try:
        from jax_act import demo
    except ModuleNotFoundError as err:  # pragma: no cover - env dependent
        if err.name not in _DEMO_PACKAGES:
            raise
        _error(
            f"the demo needs {err.name}, which is not installed. Install the "
            "demo extra: pip install 'jax-act[demo]'"
        )
        return EXIT_FAILURE

    start = time.perf_counter()
    try:
        record = demo.run(config, args.out, progress=not args.no_progress)
    except demo.DataError as err:
        _error(str(err))
        return EXIT_USAGE
    except ModuleNotFoundError as err:  # pragma: no cover - env dependent
        if err.name not in _DEMO_PACKAGES:
            raise
        _error(
            f"the demo needs {err.name}, which is not installed. Install the "
            "demo extra: pip install 'jax-act[demo]'"
        )
        return EXIT_FAILURE

    print(record["table"])
    if "dying_relu" in record:
        from jax_act.demo._report import dying_caption

        print()
        print(dying_caption(config.dying_learning_rate))
        print(record["dying_relu"]["table"])
    print()
    print(
        f"Total {time.perf_counter() - start:.1f} s. Wrote "
        + ", ".join(
            os.path.join(args.out, name)
            for name in ("demo.png", "demo.json", "table.md")
        )
    )
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Runs `jax-act` with `argv` (default: sys.argv[1:]).

    Returns:
        The exit status: 0 on success, 2 for bad arguments or data, 1 when
        a demo dependency is missing, 130 when interrupted.
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:
        # argparse has already printed the usage and the message.
        if exit_.code is None:
            return EXIT_OK
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    try:
        if args.command == "demo":
            return _run_demo(args)
    except KeyboardInterrupt:
        _error("interrupted.")
        return EXIT_INTERRUPTED
    return EXIT_USAGE  # pragma: no cover - argparse rejects other commands


if __name__ == "__main__":
    sys.exit(main())
