"""Runs the whole demo: data, one training per activation, outputs."""

import dataclasses
import os
import platform
import sys
import time
from typing import TextIO

from jax_act.demo._config import DemoConfig

# File names inside the output folder.
FIGURE_NAME = "demo.png"
RECORD_NAME = "demo.json"
TABLE_NAME = "table.md"


def _environment() -> dict:
    import flax
    import jax
    import jaxlib
    import numpy as np
    import optax

    import jax_act

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
        "jax_act": jax_act.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
    }


def run(
    config: DemoConfig,
    out_dir: str,
    *,
    progress: bool = True,
    stream: TextIO | None = None,
) -> dict:
    """Trains one model per activation and writes table, figure and record.

    Args:
        config: the run's settings.
        out_dir: folder for demo.png, demo.json and table.md (created).
        progress: show a tqdm progress bar per activation on `stream`.
        stream: where the progress bars go; None means sys.stderr.

    Returns:
        The JSON record (also written to out_dir/demo.json), with the
        terminal table under "table".

    Raises:
        DataError: if the data file cannot be used.
        ImportError: if a demo dependency is missing.
    """
    from tqdm.auto import tqdm

    from jax_act.demo import _data, _report, _train

    stream = sys.stderr if stream is None else stream
    start = time.perf_counter()
    if config.data is None:
        x, y, source = _data.load_digits()
    else:
        x, y, source = _data.load_npz(config.data)
    splits = _data.split(x, y, source, seed=config.seed, subset=config.subset)
    os.makedirs(out_dir, exist_ok=True)

    batches, batch_size = _train.epoch_batches(len(splits.y_train), config)
    epochs, steps = batches.shape[:2]
    main_rates = _train.learning_rates(
        config.learning_rate, config.schedule, epochs, steps
    )
    dying_rates = _train.learning_rates(
        config.dying_learning_rate, "constant", epochs, steps
    )
    passes = 2 if config.dying_relu else 1

    results, dying = [], []
    for name in config.activations:
        with tqdm(
            total=passes * epochs,
            desc=f"{name:>12}",
            unit="epoch",
            file=stream,
            disable=not progress,
            dynamic_ncols=True,
        ) as bar:

            def report(epoch, metrics, bar=bar):
                if epoch:
                    bar.update(1)
                loss = metrics["train_loss"]
                bar.set_postfix(
                    loss="-" if loss is None else f"{loss:.3f}",
                    val_acc=f"{100 * metrics['val_accuracy']:.1f}%",
                    dead=f"{100 * metrics['dead_fraction']:.1f}%",
                    refresh=False,
                )

            trainer = _train.Trainer(name, splits, config, batches)
            results.append(trainer.run(main_rates, report))
            if config.dying_relu:
                bar.set_description(
                    f"{name:>12} (lr {config.dying_learning_rate:g})"
                )
                dying.append(trainer.run(dying_rates, report))

    table = _report.format_table(results)
    dying_table = _report.format_dying_table(dying) if dying else None
    title = (
        f"jax_act demo: {splits.source}, MLP {list(config.widths)}, "
        f"{config.epochs} epochs, AdamW lr {config.learning_rate:g} "
        f"({config.schedule}), seed {config.seed}"
    )
    figure_path = os.path.join(out_dir, FIGURE_NAME)
    _report.write_figure(
        results, dying, figure_path, title, config.dying_learning_rate
    )
    with open(os.path.join(out_dir, TABLE_NAME), "w", encoding="utf-8") as f:
        f.write(table + "\n")
        if dying_table:
            f.write(
                f"\n{_report.dying_caption(config.dying_learning_rate)}\n\n"
            )
            f.write(dying_table + "\n")

    def without_curves(r):
        return {k: v for k, v in r.items() if k not in _report.FIGURE_KEYS}

    record = {
        "config": dataclasses.asdict(config) | {"batch_size_used": batch_size},
        "data": splits.summary(),
        "environment": _environment(),
        "table": table,
        "results": [without_curves(r) for r in results],
        "figures": {FIGURE_NAME: _report.figure_data(results, dying)},
        "total_time_s": time.perf_counter() - start,
    }
    if dying:
        record["dying_relu"] = {
            "learning_rate": config.dying_learning_rate,
            "schedule": "constant",
            "table": dying_table,
            "results": [without_curves(r) for r in dying],
        }
    _report.write_json(record, os.path.join(out_dir, RECORD_NAME))
    return record
