"""The demo's outputs for people: tables, a PNG figure and a JSON record."""

import json
import math
import os

# Per-run entries that only the figure needs (kept out of the record's
# "results" lists, and stored under "figures" instead).
FIGURE_KEYS = ("curves", "reliability_before", "reliability_after")

# One colour per activation, the same in every panel.
_COLOURS = {
    "relu": "#d62728",
    "leaky_relu": "#ff7f0e",
    "prelu": "#8c564b",
    "gelu_exact": "#1f77b4",
    "gelu_tanh": "#17becf",
    "gelu_sigmoid": "#9467bd",
    "silu": "#2ca02c",
}

# Reliability diagrams per row of the figure.
_PER_ROW = 4


def _markdown(rows: list[list[str]]) -> str:
    """A Markdown table with aligned columns (text left, numbers right)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]

    def line(cells):
        padded = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = [
        ":" + "-" * (w + 1) if i == 0 else "-" * (w + 1) + ":"
        for i, w in enumerate(widths)
    ]
    return "\n".join(
        [line(rows[0]), "|" + "|".join(rule) + "|", *map(line, rows[1:])]
    )


def format_table(results: list[dict]) -> str:
    """The main table: one row per activation, test-split metrics.

    NLL and ECE at T = 1 and at the temperature fitted on validation;
    "compile s" is XLA compilation of the training program, "train s" the
    epochs, evaluation and temperature fit.
    """
    rows = [
        [
            "activation",
            "test acc %",
            "NLL (T=1)",
            "NLL (fit T)",
            "ECE % (T=1)",
            "ECE % (fit T)",
            "T",
            "dead % final",
            "dead % max",
            "compile s",
            "train s",
        ]
    ]
    for r in results:
        rows.append(
            [
                r["activation"],
                f"{100 * r['test_accuracy']:.2f}",
                f"{r['test_nll_before']:.4f}",
                f"{r['test_nll_after']:.4f}",
                f"{100 * r['ece_before']:.2f}",
                f"{100 * r['ece_after']:.2f}",
                f"{r['temperature']:.2f}",
                f"{100 * r['dead_fraction_final']:.1f}",
                f"{100 * r['dead_fraction_max']:.1f}",
                f"{r['compile_time_s']:.1f}",
                f"{r['train_time_s']:.1f}",
            ]
        )
    return _markdown(rows)


def dying_caption(learning_rate: float) -> str:
    """One line saying what the dying-ReLU table is."""
    return (
        f"Same models, same initial weights and batches, at a constant "
        f"learning rate of {learning_rate:g} (where ReLU units die):"
    )


def format_dying_table(results: list[dict]) -> str:
    """Dead units per activation at the high learning rate."""
    layers = len(results[0]["dead_fraction_final_per_layer"])
    rows = [
        [
            "activation",
            "test acc %",
            "test NLL",
            "dead % final",
            "dead % max",
            *[f"layer {i + 1} dead %" for i in range(layers)],
        ]
    ]
    for r in results:
        rows.append(
            [
                r["activation"],
                f"{100 * r['test_accuracy']:.2f}",
                f"{r['test_nll_before']:.4f}",
                f"{100 * r['dead_fraction_final']:.1f}",
                f"{100 * r['dead_fraction_max']:.1f}",
                *[f"{100 * d:.1f}" for d in r["dead_fraction_final_per_layer"]],
            ]
        )
    return _markdown(rows)


def _series(results, key, scale=1.0):
    return {
        r["activation"]: [
            None if v is None else scale * v for v in r["curves"][key]
        ]
        for r in results
    }


def figure_data(results: list[dict], dying: list[dict]) -> dict:
    """Every number drawn in the figure, panel by panel."""
    data = {
        "training_loss": {
            "x": "epoch (0 is before training: no training loss there)",
            "y": "mean training cross-entropy over the epoch",
            "series": _series(results, "train_loss"),
        },
        "validation_accuracy": {
            "x": "epoch",
            "y": "validation accuracy, per cent",
            "series": _series(results, "val_accuracy", 100.0),
        },
        "dead_fraction": {
            "x": "epoch",
            "y": "hidden units dead on the whole training split, per cent",
            "series": _series(results, "dead_fraction", 100.0),
            "per_layer_fraction": {
                r["activation"]: r["curves"]["dead_fraction_per_layer"]
                for r in results
            },
        },
        "reliability": {
            r["activation"]: {
                "temperature": r["temperature"],
                "ece_before": r["ece_before"],
                "ece_after": r["ece_after"],
                "before": r["reliability_before"],
                "after": r["reliability_after"],
            }
            for r in results
        },
    }
    if dying:
        data["dead_fraction_high_lr"] = {
            "x": "epoch",
            "y": "hidden units dead on the whole training split, per cent",
            "learning_rate": dying[0]["peak_learning_rate"],
            "series": _series(dying, "dead_fraction", 100.0),
            "per_layer_fraction": {
                r["activation"]: r["curves"]["dead_fraction_per_layer"]
                for r in dying
            },
        }
    return data


def _nan_for_none(values):
    return [math.nan if v is None else v for v in values]


def write_figure(
    results: list[dict],
    dying: list[dict],
    path: str,
    title: str,
    dying_lr: float,
) -> None:
    """Training curves, dead fractions and reliability diagrams, one PNG."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.gridspec import GridSpec

    # Top row: curves; below, one reliability diagram per activation and a
    # bar chart of the calibration errors, four to a row.
    top = 4 if dying else 3
    rel_rows = math.ceil((len(results) + 1) / _PER_ROW)
    fig = plt.figure(figsize=(17, 4.8 + 4.0 * rel_rows), layout="constrained")
    grid = GridSpec(
        1 + rel_rows,
        12,
        figure=fig,
        height_ratios=[1.15] + [1] * rel_rows,
    )
    span = 12 // top
    axes = [
        fig.add_subplot(grid[0, i * span : (i + 1) * span]) for i in range(top)
    ]
    loss_ax, acc_ax, dead_ax = axes[:3]

    for r in results:
        name, curves = r["activation"], r["curves"]
        colour = _COLOURS.get(name)
        epochs = range(len(curves["val_loss"]))
        style = {"color": colour, "label": name, "marker": "o", "markersize": 2}
        loss_ax.plot(epochs, _nan_for_none(curves["train_loss"]), **style)
        acc_ax.plot(epochs, [100 * v for v in curves["val_accuracy"]], **style)
    _dead_panel(dead_ax, results, "Dead hidden units, main run")
    loss_ax.set_yscale("log")
    loss_ax.set(
        title="Training loss",
        xlabel="epoch",
        ylabel="cross-entropy (log scale)",
    )
    lowest = min(100 * r["curves"]["val_accuracy"][-1] for r in results)
    acc_ax.set_ylim(max(0.0, lowest - 15), 100.5)
    acc_ax.set(
        title="Validation accuracy", xlabel="epoch", ylabel="accuracy (%)"
    )
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
    loss_ax.legend(fontsize=8)
    if dying:
        _dead_panel(
            axes[3], dying, f"Dead hidden units, constant lr {dying_lr:g}"
        )

    for i, r in enumerate(results):
        row, col = 1 + i // _PER_ROW, 3 * (i % _PER_ROW)
        _reliability_panel(fig.add_subplot(grid[row, col : col + 3]), r)
    i = len(results)
    row, col = 1 + i // _PER_ROW, 3 * (i % _PER_ROW)
    _ece_panel(fig.add_subplot(grid[row, col : col + 3]), results)

    fig.suptitle(title, fontsize=13)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _dead_panel(ax, results, title) -> None:
    for r in results:
        name = r["activation"]
        values = [100 * v for v in r["curves"]["dead_fraction"]]
        ax.plot(
            range(len(values)),
            values,
            color=_COLOURS.get(name),
            label=name,
            marker="o",
            markersize=2,
        )
    highest = max(100 * r["dead_fraction_max"] for r in results)
    # Headroom above the curves keeps the legend off them.
    ax.set_ylim(-1, max(5.0, 1.5 * highest))
    if highest == 0:
        ax.text(
            0.5,
            0.5,
            "no dead unit, any activation, any epoch",
            transform=ax.transAxes,
            ha="center",
            color="0.3",
        )
    ax.set(title=title, xlabel="epoch", ylabel="units with zero derivative (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", ncols=2)


def _reliability_panel(ax, r) -> None:
    # Most test examples sit in the top bin; the few in low-confidence bins
    # make those points noisy, so marker area shows how many each holds.
    ax.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1)
    total = sum(r["reliability_before"]["count"])
    for tag, label, colour, marker in (
        ("before", "T = 1", "#d62728", "o"),
        ("after", f"T = {r['temperature']:.2f}", "#1f77b4", "s"),
    ):
        d = r[f"reliability_{tag}"]
        points = [
            (c, a, n)
            for c, a, n in zip(
                d["confidence"], d["accuracy"], d["count"], strict=True
            )
            if n
        ]
        xs, ys, ns = zip(*points, strict=True) if points else ((), (), ())
        ax.plot(xs, ys, color=colour, linewidth=0.8, alpha=0.5)
        ax.scatter(
            xs,
            ys,
            s=[10 + 250 * n / total for n in ns],
            color=colour,
            marker=marker,
            alpha=0.8,
            label=f"{label}: ECE {100 * r[f'ece_{tag}']:.2f}%",
        )
    ax.set(
        xlim=(0, 1.02),
        ylim=(0, 1.02),
        xlabel="confidence (bin mean; marker area = examples)",
        ylabel="accuracy in bin",
    )
    ax.set_title(
        f"Reliability on test ({total} examples), {r['activation']}",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", markerscale=0.6)


def _ece_panel(ax, results) -> None:
    names = [r["activation"] for r in results]
    x = range(len(names))
    before = [100 * r["ece_before"] for r in results]
    after = [100 * r["ece_after"] for r in results]
    ax.bar([i - 0.2 for i in x], before, 0.4, color="#d62728", label="T = 1")
    ax.bar([i + 0.2 for i in x], after, 0.4, color="#1f77b4", label="fitted T")
    ax.set_xticks(list(x), names, rotation=35, ha="right", fontsize=8)
    ax.set(ylabel="ECE on test (%)")
    ax.set_title("Calibration error before and after T", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)


def _clean(value):
    """JSON-safe copy: NaN and infinities become None (strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_json(record: dict, path: str) -> None:
    """Writes the record as strict JSON (no NaN), sorted keys, indented."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(_clean(record), f, indent=1, sort_keys=True, allow_nan=False)
        f.write("\n")
    os.replace(tmp, path)
