"""Smoke tests of the benchmark harnesses (bench/), in their quick mode.

They check that every registered case runs, that ours and the baseline
agree, and that the JSON records hold finite, sane values; they never
assert a timing.
"""

import json
import math
import pathlib
import sys

import jax.numpy as jnp
import numpy as np
import pytest

# bench/ is a top-level folder of the repository, not an installed package.
_ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from bench import __main__ as cli  # noqa: E402
from bench import cases_softmax, registry, timing, ulp  # noqa: E402

SOFTMAX_FAMILY = {"softmax", "log_softmax", "logsumexp", "sigmoid"}
SOFTMAX_FAMILY |= {"log_sigmoid"}


def _strict_json(path):
    """Loads JSON, refusing NaN and Infinity (the files must be strict)."""

    def refuse(token):
        raise ValueError(f"{path.name} holds the non-JSON number {token}")

    return json.loads(path.read_text(), parse_constant=refuse)


def _finite_positive(value):
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def _check_meta(meta):
    assert meta["versions"]["jax"]
    assert meta["versions"]["numpy"]
    assert meta["backend"]
    assert meta["device_kind"]
    assert meta["cpu_model"]
    assert meta["date"]
    assert "GLIBC_TUNABLES" in meta["env"]
    assert meta["options"]["quick"] is True


def test_quick_speed(tmp_path, capsys):
    assert cli.main(["speed", "--quick", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "ours/base" in printed

    doc = _strict_json(tmp_path / "speed.json")
    assert doc["kind"] == "speed"
    _check_meta(doc["meta"])
    assert (tmp_path / "speed.txt").read_text().strip()

    records = doc["records"]
    assert SOFTMAX_FAMILY <= {r["case"] for r in records}
    assert {"fwd", "fwd+bwd"} <= {r["mode"] for r in records}
    # Least traffic of softmax on float32 (8, 128): x in and y out forward;
    # x, the cotangent and the gradient for forward plus backward.
    traffic = {
        r["mode"]: r["traffic_bytes"]
        for r in records
        if r["case"] == "softmax" and r["dtype"] == "float32"
    }
    assert traffic == {"fwd": 2 * 8 * 128 * 4, "fwd+bwd": 3 * 8 * 128 * 4}

    for r in records:
        label = f"{r['case']} {r['shape']} {r['dtype']} {r['mode']}"
        assert "error" not in r, label + "\n" + r["error"]
        assert r["agree"], (label, r["max_scaled_difference"])
        for name in ("ours", "baseline", "copy"):
            stats = r["ms"][name]
            assert stats["n"] == r["repeats"], label
            assert _finite_positive(stats["median"]), label
            assert stats["min"] <= stats["median"] <= stats["max"], label
        assert _finite_positive(r["ratio"]["median"]), label
        assert _finite_positive(r["roofline_fraction"]["ours"]), label
        assert _finite_positive(r["bandwidth_gbs"]["copy"]), label
        assert r["traffic_bytes"] > 0, label
        assert all(_finite_positive(t) for t in r["compile_s"].values())


def test_quick_accuracy(tmp_path):
    assert cli.main(["accuracy", "--quick", "--out", str(tmp_path)]) == 0

    doc = _strict_json(tmp_path / "accuracy.json")
    assert doc["kind"] == "accuracy"
    _check_meta(doc["meta"])

    records = doc["records"]
    assert SOFTMAX_FAMILY <= {r["case"] for r in records}
    for r in records:
        label = f"{r['case']} {r['dtype']} {r['inputs']}"
        assert "error" not in r, label + "\n" + r["error"]
        assert 0 < r["counted"] <= r["points"], label
        for name in ("ours", "baseline"):
            if name not in r:
                continue
            stats = r[name]
            assert math.isfinite(stats["worst"]), label
            assert 0 <= stats["median"] <= stats["worst"], label

    # The harness must see what the tests see: jax.nn.log_softmax loses the
    # largest entry of a confident row (about 1e7 ULP), ours does not.
    (confident,) = [
        r
        for r in records
        if r["case"] == "log_softmax" and r["inputs"].startswith("confident")
    ]
    assert confident["ours"]["worst"] <= 6
    assert confident["baseline"]["worst"] > 1e5


@pytest.mark.parametrize("quick", [True, False], ids=["quick", "full"])
def test_inputs_are_representable(quick):
    # Cheap (no compilation): every case of every family, every dtype, in
    # both modes, hands the harness values its dtype holds exactly.
    for case in registry.select(registry.AccuracyCase):
        for dtype_name in case.dtypes:
            dtype = jnp.dtype(dtype_name)
            sets = case.inputs(dtype_name, quick)
            assert sets, (case.name, dtype_name)
            for set_name, values in sets:
                values = np.asarray(values)
                assert values.dtype == np.float64, (case.name, set_name)
                with np.errstate(over="ignore"):
                    back = values.astype(dtype).astype(np.float64)
                same = (back == values) | (np.isnan(back) & np.isnan(values))
                assert same.all(), (case.name, dtype_name, set_name)


def test_make_args_give_the_requested_dtype():
    for case in registry.select(registry.SpeedCase):
        for shape in case.quick_shapes:
            for dtype_name in case.dtypes:
                rng = np.random.default_rng(0)
                args = case.make_args(shape, dtype_name, rng)
                assert isinstance(args, tuple) and args, case.name
                first = np.asarray(args[0])
                assert first.dtype == jnp.dtype(dtype_name), case.name


@pytest.mark.parametrize(
    "reference",
    [
        cases_softmax.softmax_reference,
        cases_softmax.log_softmax_reference,
        cases_softmax.logsumexp_reference,
    ],
    ids=lambda f: f.__name__,
)
def test_float64_row_references_match_mpmath(reference):
    # The full run uses the float64 formulas; they must be exact to far
    # below a float32 ULP, including the confident row.
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((4, 256)) * [[1], [10], [30], [1]]).astype(
        np.float32
    )
    x[3, 0] = 40.0  # confident: the others sum to about 1e-15 of it
    x = x.astype(np.float64)
    fast = reference(x, method="float64")
    exact = reference(x, method="mp")
    dist = ulp.ulp_distance(fast.astype(np.float32), exact)
    assert np.max(dist) <= 0.5 + 1e-6
    np.testing.assert_allclose(fast, exact, rtol=1e-13, atol=0)


@pytest.mark.parametrize(
    "reference",
    [cases_softmax.sigmoid_reference, cases_softmax.log_sigmoid_reference],
    ids=lambda f: f.__name__,
)
def test_float64_elementwise_references_match_mpmath(reference):
    (_, x), *_ = cases_softmax._sigmoid_inputs("float32", quick=True)
    fast = reference(x, method="float64")
    exact = reference(x, method="mp")
    normal = ulp.normal_mask(exact, np.float64)
    np.testing.assert_allclose(fast[normal], exact[normal], rtol=1e-14)
    assert np.array_equal(fast[~normal], exact[~normal])


def test_ulp_distance_and_normal_mask():
    one = np.float32(1)
    above = np.nextafter(one, np.float32(2))
    assert ulp.ulp_distance(np.array([above]), [1.0])[0] == 1
    assert ulp.ulp_distance(np.array([one]), [1.0])[0] == 0
    assert ulp.ulp_distance(np.array([np.nan], np.float32), [1.0])[0] == np.inf
    assert ulp.ulp_distance(np.array([np.nan], np.float32), [np.nan])[0] == 0
    bf16 = np.array([1.0078125], dtype=jnp.bfloat16)  # 1 + 2^-7
    assert ulp.ulp_distance(bf16, [1.0])[0] == 1

    info = np.finfo(np.float32)
    values = [0.0, float(info.smallest_subnormal), float(info.tiny), 1.0]
    values += [float(info.max), 1e39, np.inf, np.nan, -1.0]
    mask = ulp.normal_mask(values, np.float32)
    assert mask.tolist()[:5] == [False, False, True, True, True]
    assert mask.tolist()[5:] == [False, False, False, True]


def test_registry_filters_and_checks():
    names = {c.name for c in registry.select(registry.SpeedCase, ["softmax"])}
    assert names >= SOFTMAX_FAMILY
    picked = registry.select(registry.AccuracyCase, ["softmax"], ["log_*"])
    assert {c.name for c in picked} == {"log_softmax", "log_sigmoid"}
    assert all(c.family == "softmax" for c in picked)

    existing = registry.select(registry.SpeedCase, ["softmax"])[0]
    with pytest.raises(ValueError, match="already registered"):
        registry.register(existing)
    with pytest.raises(TypeError, match="SpeedCase or AccuracyCase"):
        registry.register("softmax")


def test_missing_case_module_is_skipped(capsys):
    registry.load_cases(["bench.cases_not_written_yet"])
    assert "not found, skipped" in capsys.readouterr().err


def test_timer_interleaves_and_summarises():
    calls = []
    thunks = {name: (lambda n=name: calls.append(n)) for name in "abc"}
    out = timing.time_interleaved(thunks, repeats=4, min_sample_s=0)
    assert set(out) == set("abc")
    for stats in out.values():
        assert stats["n"] == 4 and stats["number"] == 1
        assert stats["min"] <= stats["q25"] <= stats["median"]
        assert stats["median"] <= stats["q75"] <= stats["max"]
    # After the warm-up calls, each round starts from the next variant.
    timed = calls[-12:]
    assert [timed[i] for i in (0, 3, 6, 9)] == ["a", "b", "c", "a"]


def test_max_scaled_difference():
    e = np.array([1.0, -2.0, np.inf, np.nan])
    assert timing.max_scaled_difference(e.copy(), e) == 0
    a = e.copy()
    a[0] = 1.0 + 3e-3
    assert 5e-4 < timing.max_scaled_difference(a, e) < 2e-3
    a = e.copy()
    a[1] = np.nan
    assert timing.max_scaled_difference(a, e) == np.inf
    assert timing.max_scaled_difference(e[:2], e) == np.inf
