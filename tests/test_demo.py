"""The `jax-act demo` command: a tiny run, its outputs, and its errors."""

import contextlib
import io
import json
import math
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest

from jax_act import cli
from jax_act.demo import _data, _report, _train
from jax_act.demo._config import DemoConfig

TINY = [
    "demo",
    "--epochs",
    "1",
    "--subset",
    "200",
    "--activations",
    "relu,prelu",
    "--hidden",
    "16",
    "--batch-size",
    "32",
    "--no-progress",
]


def _main(argv):
    """Runs the CLI in-process; returns (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli.main(argv)
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("demo") / "nested" / "out"
    status, stdout, stderr = _main([*TINY, "--out", str(out_dir)])
    return status, stdout, stderr, out_dir


def _strict_json(path):
    def reject(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    with open(path, encoding="utf-8") as f:
        return json.load(f, parse_constant=reject)


# --- the tiny run ----------------------------------------------------------


def test_tiny_run_succeeds_and_prints_the_tables(tiny_run):
    status, stdout, stderr, out_dir = tiny_run
    assert status == 0, stderr
    assert "Traceback" not in stderr
    header = stdout.splitlines()[0]
    for column in ("activation", "test acc %", "NLL (fit T)", "ECE % (T=1)"):
        assert column in header
    assert "| relu " in stdout and "| prelu " in stdout
    assert "where ReLU units die" in stdout
    assert str(out_dir / "demo.png") in stdout


def test_tiny_run_json_record_is_complete_and_sane(tiny_run):
    _, _, _, out_dir = tiny_run
    record = _strict_json(out_dir / "demo.json")

    assert record["config"]["epochs"] == 1
    assert record["config"]["activations"] == ["relu", "prelu"]
    assert record["data"] == {
        "source": "sklearn.datasets.load_digits",
        "features": 64,
        "classes": 10,
        "train": 120,
        "validation": 40,
        "test": 40,
    }
    assert record["environment"]["backend"] == "cpu"

    for group in (record["results"], record["dying_relu"]["results"]):
        assert [r["activation"] for r in group] == ["relu", "prelu"]
        for r in group:
            assert 0.0 <= r["test_accuracy"] <= 1.0
            for key in ("test_nll_before", "test_nll_after"):
                assert math.isfinite(r[key]) and r[key] > 0
            for key in ("ece_before", "ece_after"):
                assert 0.0 <= r[key] <= 1.0
            assert 0.0 < r["temperature"] < 100.0
            assert abs(r["temperature_grad"]) < 1e-3  # the fit converged
            assert 0.0 <= r["dead_fraction_final"] <= r["dead_fraction_max"]
            assert r["dead_fraction_max"] <= 1.0
            assert len(r["dead_fraction_final_per_layer"]) == 1
            assert r["compile_time_s"] > 0 and r["train_time_s"] > 0
            assert r["diverged"] is False
    assert record["dying_relu"]["learning_rate"] == 0.05
    prelu = record["results"][1]["prelu_slopes"]
    assert prelu["min"][0] <= prelu["mean"][0] <= prelu["max"][0]

    figures = record["figures"]["demo.png"]
    for panel in (
        "training_loss",
        "validation_accuracy",
        "dead_fraction",
        "dead_fraction_high_lr",
    ):
        series = figures[panel]["series"]
        assert set(series) == {"relu", "prelu"}
        assert all(len(v) == 2 for v in series.values())  # epochs 0 and 1
    assert figures["training_loss"]["series"]["relu"][0] is None
    reliability = figures["reliability"]["relu"]
    for tag in ("before", "after"):
        assert sum(reliability[tag]["count"]) == 40
        assert len(reliability[tag]["bin_edges"]) == 16
    assert record["table"] == _report.format_table(
        [r | {"curves": None} for r in record["results"]]
    )


def test_tiny_run_png_and_table_files(tiny_run):
    _, _, _, out_dir = tiny_run
    png = out_dir / "demo.png"
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    image = matplotlib.image.imread(png)
    assert image.shape[0] > 500 and image.shape[1] > 1000
    assert float(np.std(image[..., :3])) > 0.05  # not a blank canvas
    table = (out_dir / "table.md").read_text()
    assert table.startswith("| activation")
    assert "layer 1 dead %" in table


# --- bad arguments ---------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--activations", "relu,swishy"], "unknown activation 'swishy'"),
        (["--activations", ""], "unknown activation"),
        (["--epochs", "0"], "--epochs: must be a positive whole number"),
        (["--epochs", "-3"], "--epochs: must be a positive whole number"),
        (["--epochs", "1.5"], "--epochs: must be a positive whole number"),
        (["--lr", "0"], "--lr: must be a positive finite number"),
        (["--lr=-1e-3"], "--lr: must be a positive finite number"),
        (["--lr", "-1e-3"], "--lr: expected one argument"),
        (["--lr", "nan"], "--lr: must be a positive finite number"),
        (["--lr", "fast"], "--lr: must be a positive finite number"),
        (["--dying-lr", "0"], "--dying-lr: must be a positive"),
        (["--hidden", "16,0"], "--hidden: must be comma-separated"),
        (["--schedule", "linear"], "invalid choice: 'linear'"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(args, message):
    status, stdout, stderr = _main(["demo", *args])
    assert status == 2
    assert message in stderr
    assert "Traceback" not in stderr
    assert stdout == ""


def test_no_subcommand_is_a_usage_error():
    status, _, stderr = _main([])
    assert status == 2
    assert "required" in stderr


def test_help_exits_0():
    status, stdout, _ = _main(["demo", "--help"])
    assert status == 0
    assert "--data FILE.npz" in stdout


def test_exit_status_in_a_subprocess_and_no_flax_before_training():
    # A fresh interpreter: the exit status as a shell sees it, and proof
    # that the CLI and the demo package do not import Flax until they
    # train (so `jax-act --help` works without the demo extra).
    script = textwrap.dedent(
        """
        import sys
        from jax_act import cli
        import jax_act.demo
        status = cli.main(["demo", "--activations", "relu,elu"])
        print("flax_loaded", "flax" in sys.modules)
        sys.exit(status)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "unknown activation 'elu'" in done.stderr
    assert "Traceback" not in done.stderr
    assert "flax_loaded False" in done.stdout


# --- bad data files --------------------------------------------------------


def _write(tmp_path, name, **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


def _bad_files(tmp_path):
    x = np.zeros((30, 4))
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a zip archive")
    single = tmp_path / "single.npy"
    np.save(single, x)
    return [
        (str(tmp_path / "absent.npz"), "no such file"),
        (_write(tmp_path, "no_y.npz", x=x), "no array named 'y'"),
        (
            _write(tmp_path, "keys.npz", features=x, labels=np.zeros(30)),
            "no array named 'x' or 'y'",
        ),
        (
            _write(tmp_path, "lengths.npz", x=x, y=np.zeros(29, int)),
            "`x` has 30 rows but `y` has 29 labels",
        ),
        (
            _write(tmp_path, "frac.npz", x=x, y=np.full(30, 0.5)),
            "non-integer value 0.5 at index 0",
        ),
        (
            _write(tmp_path, "names.npz", x=x, y=np.array(["a"] * 30)),
            "must hold integer class labels",
        ),
        (
            _write(tmp_path, "neg.npz", x=x, y=np.full(30, -1)),
            "negative label -1",
        ),
        (
            _write(tmp_path, "flat.npz", x=np.zeros(30), y=np.zeros(30, int)),
            "expected (N, features)",
        ),
        (
            _write(tmp_path, "nan.npz", x=x * np.nan, y=np.zeros(30, int)),
            "NaN or infinite",
        ),
        (
            _write(tmp_path, "few.npz", x=x[:10], y=np.arange(10) % 2),
            "each needs at least",
        ),
        (str(single), "holds a single array"),
        (str(garbage), "cannot be read as a NumPy .npz archive"),
        (str(tmp_path), "is a directory"),
    ]


def test_bad_data_files_exit_2_with_a_message(tmp_path):
    for path, message in _bad_files(tmp_path):
        status, stdout, stderr = _main(
            ["demo", "--data", path, "--out", str(tmp_path / "out")]
        )
        assert status == 2, (path, stderr)
        assert message in stderr, (path, stderr)
        assert "Traceback" not in stderr
        assert stdout == ""


def test_out_that_is_a_file_exits_2(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    status, _, stderr = _main(["demo", "--out", str(blocker / "sub")])
    assert status == 2
    assert "cannot create the folder" in stderr


def test_user_data_loads_and_splits_deterministically(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3))
    y = np.arange(50) % 3
    # Whole-valued float labels are accepted as integers.
    path = _write(tmp_path, "ok.npz", x=x, y=y.astype(np.float64))
    x_loaded, y_loaded, source = _data.load_npz(path)
    assert source == path and y_loaded.dtype == np.int64
    first = _data.split(x_loaded, y_loaded, source, seed=3)
    again = _data.split(x_loaded, y_loaded, source, seed=3)
    other = _data.split(x_loaded, y_loaded, source, seed=4)
    assert (len(first.y_train), len(first.y_val), len(first.y_test)) == (
        30,
        10,
        10,
    )
    np.testing.assert_array_equal(first.x_test, again.x_test)
    assert not np.array_equal(first.y_train, other.y_train)
    # Standardised with training statistics.
    np.testing.assert_allclose(first.x_train.mean(axis=0), 0, atol=1e-6)
    np.testing.assert_allclose(first.x_train.std(axis=0), 1, atol=1e-5)
    assert first.num_classes == 3


# --- pieces of the computation --------------------------------------------


def test_expected_calibration_error_known_cases():
    # Confidence 0.8 in every row, right 4 times in 5: calibrated, ECE 0.
    probs = np.tile([0.8, 0.2], (5, 1))
    labels = np.array([0, 0, 0, 0, 1])
    ece, diagram = _train.expected_calibration_error(probs, labels)
    assert ece == pytest.approx(0.0, abs=1e-12)
    assert sum(diagram["count"]) == 5
    # Always confident, always wrong: ECE equals the confidence.
    probs = np.tile([0.1, 0.9], (4, 1))
    ece, _ = _train.expected_calibration_error(probs, np.zeros(4, int))
    assert ece == pytest.approx(0.9)


def test_fit_temperature_recovers_a_known_temperature():
    # Labels drawn from softmax(z); logits 2.5 z are overconfident by T=2.5.
    rng = np.random.default_rng(0)
    z = rng.normal(scale=2.0, size=(4000, 5))
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(5, p=row) for row in p])
    temperature, grad = _train.fit_temperature(
        jnp.asarray(2.5 * z, jnp.float32), jnp.asarray(labels), steps=300
    )
    assert temperature == pytest.approx(2.5, rel=0.06)
    assert abs(grad) < 1e-4


def test_learning_rates_schedules():
    cosine = _train.learning_rates(0.01, "cosine", 10, 10)
    assert cosine.shape == (10, 10)
    assert 0 < cosine[0, 0] < 0.01 and cosine.max() == pytest.approx(0.01)
    assert cosine[-1, -1] == pytest.approx(0.0, abs=1e-7)
    np.testing.assert_array_equal(
        _train.learning_rates(0.05, "constant", 2, 3),
        np.full((2, 3), 0.05, np.float32),
    )


def test_every_activation_starts_from_the_same_weights():
    # The tiny run's shapes, so that a worker that ran it reuses its
    # compiled initialisers.
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 64)), np.arange(60) % 10
    data = _data.split(x, y, "test", seed=0)
    config = DemoConfig(widths=(16,), epochs=1)
    batches, _ = _train.epoch_batches(len(data.y_train), config)
    kernels = []
    for name in ("relu", "prelu", "gelu_exact"):
        params = _train.Trainer(name, data, config, batches).initial_params
        kernels.append(
            (params["linears"][0]["kernel"][...], params["head"]["kernel"][...])
        )
    for other in kernels[1:]:
        for a, b in zip(kernels[0], other, strict=True):
            np.testing.assert_array_equal(a, b)
