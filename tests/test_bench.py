"""Smoke tests of the benchmark harnesses (bench/), in their quick mode.

They check that every registered case runs, that ours and the baseline
agree, and that the JSON records hold finite, sane values; they never
assert a timing.
"""

import inspect
import json
import math
import os
import pathlib
import sys
import types

import jax.numpy as jnp
import numpy as np
import pytest

# bench/ is a top-level folder of the repository, not an installed package.
_ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from bench import __main__ as cli  # noqa: E402
from bench import (  # noqa: E402
    cases_softmax,
    cost_ladder,
    registry,
    report,
    softmax_error,
    timing,
    ulp,
)

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


# The smoke test runs the report on two cases of the softmax family only:
# compiling dominates quick runs, and every case of every family would not
# fit this file's time budget. Each family's cases are smoke-tested by
# test_make_args_give_the_requested_dtype below and by running
# `python -m bench speed --quick --family NAME`.
REPORT_CASES = ["softmax", "log_softmax"]


def _check_speed_records(records, setting):
    assert set(REPORT_CASES) == {r["case"] for r in records}, setting
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
        label = f"{setting} {r['case']} {r['shape']} {r['dtype']} {r['mode']}"
        assert "error" not in r, label + "\n" + r["error"]
        assert r["agree"], (label, r["max_scaled_difference"])
        for name in ("ours", "baseline", "copy"):
            stats = r["ms"][name]
            assert stats["n"] == r["repeats"] == 3, label
            assert _finite_positive(stats["median"]), label
            assert stats["min"] <= stats["median"] <= stats["max"], label
        assert _finite_positive(r["ratio"]["median"]), label
        assert _finite_positive(r["roofline_fraction"]["ours"]), label
        assert _finite_positive(r["bandwidth_gbs"]["copy"]), label
        assert r["traffic_bytes"] > 0, label
        assert all(_finite_positive(t) for t in r["compile_s"].values())
        if "torch" in r["ms"]:  # PyTorch is optional: checked when there
            assert r["torch_agree"], (label, r["max_scaled_difference"])
            assert _finite_positive(r["ratio_vs_torch"]["median"]), label


def _check_accuracy_records(records):
    assert set(REPORT_CASES) == {r["case"] for r in records}
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


# Records in the form bench/memory.py returns them (one per variant).
_MEMORY_RECORDS = [
    {"comparison": "logits", "variant": "ours", "N": 64, "D": None},
    {"comparison": "logits", "variant": "optax", "N": 64, "D": None},
]
for _record in _MEMORY_RECORDS:
    _record.update(V=1000, temp_MiB=0.5, temp_ratio=0.5, median_ms=1.0)
    _record.update(cpu_ratio=1.0, max_rel_diff=1e-7)
_MEMORY_RECORDS[0].update(time_ratio=0.9, time_ratio_q25=0.8)
_MEMORY_RECORDS[0].update(time_ratio_q75=1.0)


def test_memory_harness_takes_what_the_report_passes():
    # The report calls bench.memory.run(quick=..., out=..., repeats=...)
    # for the keywords it declares; the smoke test below stands a stub in
    # for it (its own quick run compiles six programs).
    memory = pytest.importorskip("bench.memory")
    params = inspect.signature(memory.run).parameters
    assert {"quick", "out"} <= set(params)


def test_quick_report(tmp_path, capsys, monkeypatch):
    # The README command in quick mode: speed in one fresh process per
    # allocator setting, accuracy, report.md, report.json and the plots.
    calls = []

    def fake_memory_run(quick, out):
        calls.append((quick, out))
        return [dict(r) for r in _MEMORY_RECORDS]

    stub = types.ModuleType("bench.memory")
    stub.run = fake_memory_run
    monkeypatch.setitem(sys.modules, "bench.memory", stub)

    argv = ["report", "--quick", "--out", str(tmp_path), "--case"]
    argv += [*REPORT_CASES, "--note", "smoke test", "--memory", "on"]
    assert cli.main(argv) == 0, capsys.readouterr().out[-3000:]
    assert calls == [(True, tmp_path)]
    printed = capsys.readouterr().out
    assert "ours/base" in printed  # the speed processes' tables came through

    doc = _strict_json(tmp_path / "report.json")
    assert doc["kind"] == "report"
    _check_meta(doc["meta"])
    assert doc["meta"]["options"]["notes"] == ["smoke test"]
    assert list(doc["speed"]) == ["default", "hugepages"]
    for setting, phase in doc["speed"].items():
        tunables = phase["glibc_tunables"] or ""
        assert ("glibc.malloc.hugetlb=1" in tunables) == (
            setting == "hugepages"
        )
        # The setting reached the speed process, which recorded it.
        assert phase["meta"]["env"]["GLIBC_TUNABLES"] == phase["glibc_tunables"]
        assert phase["meta"]["options"]["quick"] is True
        assert phase["returncode"] == 0
        _check_speed_records(phase["records"], setting)
        on_disk = _strict_json(tmp_path / f"speed-{setting}" / "speed.json")
        assert len(on_disk["records"]) == len(phase["records"])
    _check_accuracy_records(doc["accuracy"]["records"])
    assert _strict_json(tmp_path / "accuracy.json")["kind"] == "accuracy"

    goals = doc["goals"]
    assert goals["no_float32_slower"]["rows_checked"] == 8
    # Quick shapes are tiny: the roofline goal has no row to judge.
    assert goals["softmax_roofline"]["rows"] == []
    assert doc["timing"]["wall_s"] > 0

    text = (tmp_path / "report.md").read_text()
    for heading in (
        "## Goals",
        "## Summary",
        "## Speed with default malloc",
        "## Speed with huge-page malloc",
        "## Accuracy",
        "## Memory",
        "## Plots",
        "## Problems",
    ):
        assert heading in text, heading
    assert "glibc.malloc.hugetlb=1" in text
    assert "smoke test" in text
    assert "| softmax | 8x128 | fwd |" in text
    assert doc["memory"]["records"] == _MEMORY_RECORDS
    assert "| logits | ours | 64, 1000 | 0.500 |" in text
    assert "0.90 [0.80-1.00]" in text

    # Rendering again from report.json alone gives the same report.
    argv = ["report", "--rerender", "--no-plots", "--out", str(tmp_path)]
    (tmp_path / "report.md").unlink()
    assert cli.main(argv) == 0
    assert (tmp_path / "report.md").read_text() == text

    plots = doc["plots"]
    assert "plots/time_softmax_softmax.png" in plots
    assert "plots/ratio_softmax.png" in plots
    assert "plots/roofline.png" in plots
    for rel in plots:
        assert f"]({rel})" in text
        head = (tmp_path / rel).read_bytes()[:8]
        assert head == b"\x89PNG\r\n\x1a\n", rel


def _fake_row(case, shape, dtype, mode, ratio, fraction, family="softmax"):
    ms = {"median": 1.0, "q25": 1.0, "q75": 1.0, "n": 5}
    return {
        "family": family,
        "case": case,
        "shape": list(shape),
        "dtype": dtype,
        "mode": mode,
        "agree": True,
        "ms": {"ours": ms, "baseline": ms, "copy": ms},
        "ratio": {"median": ratio, "q25": ratio, "q75": ratio},
        "roofline_fraction": {"ours": fraction, "baseline": 0.5},
        "bandwidth_gbs": {"ours": 20.0, "copy": 30.0, "baseline": 15.0},
    }


def test_goals_are_judged_from_the_records():
    big = (4096, 4096)
    speed = {
        "default": {
            "records": [
                _fake_row("softmax", big, "float32", "fwd", 1.04, 0.2),
                # bfloat16 rows do not count against the float32 goal.
                _fake_row("softmax", big, "bfloat16", "fwd", 1.5, 0.2),
            ]
        },
        "hugepages": {
            "records": [
                _fake_row("softmax", big, "float32", "fwd", 1.06, 0.65),
                _fake_row("softmax", (64, 131072), "float32", "fwd", 1, 0.7),
                # Small rows are not judged against the roofline.
                _fake_row("softmax", (32, 1024), "float32", "fwd", 1, 0.01),
                _fake_row("sigmoid", big, "float32", "fwd", 0.9, 0.1),
            ]
        },
    }
    accuracy = [
        {"case": "softmax", "dtype": "float32", "ours": {"worst": 2.0}},
        {"case": "softmax", "dtype": "float32", "ours": {"worst": 3.0}},
    ]
    goals = report.evaluate_goals(speed, accuracy)
    slower = goals["no_float32_slower"]
    assert slower["rows_checked"] == 5
    assert not slower["holds"]
    (row,) = slower["slower"]
    assert (row["allocator"], row["ratio"]) == ("hugepages", 1.06)
    assert row["ours_worst_ulp"] == 3.0
    roof = goals["softmax_roofline"]
    assert [r["shape"] for r in roof["rows"]] == [[4096, 4096], [64, 131072]]
    assert roof["holds"]
    speed["hugepages"]["records"][1]["roofline_fraction"]["ours"] = 0.55
    assert not report.evaluate_goals(speed, [])["softmax_roofline"]["holds"]


def test_speed_environment_sets_only_the_allocator():
    base = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1:glibc.foo=2", "A": "b"}
    huge = report.speed_environment(report.ALLOCATORS["hugepages"], "/c", base)
    default = report.speed_environment(report.ALLOCATORS["default"], "/c", base)
    assert huge["GLIBC_TUNABLES"] == "glibc.foo=2:glibc.malloc.hugetlb=1"
    assert default["GLIBC_TUNABLES"] == "glibc.foo=2"
    assert "GLIBC_TUNABLES" not in report.speed_environment(
        report.ALLOCATORS["default"], "/c", {}
    )
    for env in (huge, default):
        assert env["A"] == "b"
        assert env["JAX_COMPILATION_CACHE_DIR"] == "/c"
        assert env["PYTHONPATH"].split(os.pathsep)[0] == str(_ROOT)
    assert (
        report.speed_environment(
            report.ALLOCATORS["default"], "/c", {"OMP_WAIT_POLICY": "ACTIVE"}
        )["OMP_WAIT_POLICY"]
        == "ACTIVE"
    )


def test_rounds_within_budget():
    assert (
        timing.rounds_within(0.1, repeats=15, budget_s=None, min_repeats=5)
        == 15
    )
    assert (
        timing.rounds_within(0.1, repeats=15, budget_s=0.5, min_repeats=5) == 5
    )
    assert (
        timing.rounds_within(0.01, repeats=15, budget_s=0.5, min_repeats=5)
        == 15
    )
    assert (
        timing.rounds_within(0.05, repeats=15, budget_s=0.5, min_repeats=5)
        == 10
    )
    assert (
        timing.rounds_within(1.0, repeats=3, budget_s=0.5, min_repeats=5) == 3
    )


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


def test_memory_runs_unless_filtered_to_other_cases():
    assert report.memory_wanted(None, None)
    assert report.memory_wanted(["losses"], None)
    assert not report.memory_wanted(["softmax"], None)
    assert not report.memory_wanted(None, ["softmax"])


def test_softmax_error_budget_mirrors_the_library():
    figures = softmax_error.run(rows=4, width=512, scale=10.0)
    # The step-by-step copy computes what jax_act.softmax computes.
    assert figures["softmax_ulp"] == pytest.approx(
        figures["jax_act_softmax_ulp"], abs=0.51
    )
    assert 0 < figures["exp_alone_ulp"] <= figures["numerator_ulp"] + 1
    assert figures["softmax_ulp"] <= 6


def test_cost_ladder_rungs_trade_time_for_accuracy():
    rows = cost_ladder.run(
        families=("softmax", "gelu_sigmoid"),
        shape=(8, 256),
        repeats=2,
        points=8192,
    )
    worst = {(r["family"], r["rung"]): r["worst_ulp"] for r in rows}
    assert len(worst) == len(cost_ladder.LADDERS["softmax"]) + len(
        cost_ladder.LADDERS["gelu_sigmoid"]
    )
    assert all(r["ms"] > 0 and r["ratio"]["median"] > 0 for r in rows)
    # The last rung is the library, within its documented bounds; the
    # plain formulas are not (64 ULP from x - max; a flushed left tail).
    assert worst[("softmax", "jax_act")] <= 6
    assert worst[("softmax", "plain")] > 20
    assert worst[("gelu_sigmoid", "jax_act")] <= 4
    assert worst[("gelu_sigmoid", "plain")] > 1e6
    assert 4 < worst[("gelu_sigmoid", "tail kept normal")] < 1e3
