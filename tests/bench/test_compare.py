"""bench/compare.py's arithmetic: which way is better for a figure, medians, spreads, ratios
and verdicts, and a benchmark that is missing or fails in one tree reported, not raised."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load_compare():
    # The benchmarks are scripts, not a package: they import their helpers as `_common`.
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_compare", BENCH / "compare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


compare = _load_compare()


@pytest.mark.parametrize(("path", "better"), [
    ("sequential.ours_per_s", "bigger"),              # a rate also ends in _s
    ("push_file.engine_mb_per_s", "bigger"),
    ("batched.ratio_vs_raw", "bigger"),
    ("push_values.ratio", "bigger"),
    ("populate_s", "smaller"),
    ("cases.label_equality.ours.p50_ms", "smaller"),
    ("capture_to_confirmed.max_ms", "smaller"),
    ("push_file.sync_process_peak_rss_mb", "smaller"),
    ("benchdata_version.x_baseline", "smaller"),
    ("ui.stall.worst", "smaller"),
    ("sequential.count", "unknown"),
    ("rows", "unknown"),
])
def test_direction_is_inferred_from_the_figure_name(path: str, better: str) -> None:
    assert compare.direction(path) == better


def test_a_drop_larger_than_both_spreads_is_worse() -> None:
    # base median 105, spread 10/105; current median 81, spread 2/81: ratio 0.771
    figure = compare.compare_figure("x.ours_per_s", [100.0, 110.0], [80.0, 82.0])
    assert figure["base_median"] == 105.0 and figure["current_median"] == 81.0
    assert figure["ratio"] == 0.771
    assert figure["base_spread"] == 0.095 and figure["current_spread"] == 0.025
    assert figure["verdict"] == "worse"


def test_a_change_inside_the_larger_spread_is_noise() -> None:
    # ratio 97.5 / 115 = 0.848, but base runs alone spread 30 / 115 = 0.26
    figure = compare.compare_figure("x.ours_per_s", [100.0, 130.0], [95.0, 100.0])
    assert figure["verdict"] == "within noise"


def test_smaller_times_are_better_and_bigger_times_worse() -> None:
    assert compare.compare_figure("a.p50_ms", [10.0, 10.5], [8.0, 8.1])["verdict"] == "better"
    assert compare.compare_figure("a.p50_ms", [8.0, 8.1], [10.0, 10.5])["verdict"] == "worse"


def test_a_figure_of_unknown_direction_gets_no_verdict() -> None:
    figure = compare.compare_figure("x.widgets", [1.0, 1.0], [3.0, 3.0])
    assert figure["better"] == "unknown" and figure["verdict"] == "unknown"
    assert figure["ratio"] == 3.0


def test_a_zero_base_median_has_no_ratio() -> None:
    figure = compare.compare_figure("x.stall_ms", [0.0, 0.0], [1.0, 2.0])
    assert figure["ratio"] is None and figure["verdict"] == "unknown"
    # around a zero median the spread is unbounded: written as null, JSON has no Infinity
    mixed = compare.compare_figure("x.stall_ms", [-1.0, 1.0], [1.0, 1.0])
    assert mixed["base_spread"] is None and mixed["verdict"] == "unknown"
    json.dumps(mixed, allow_nan=False)


def test_spread_is_range_over_median() -> None:
    assert compare.spread([4.0]) == 0.0
    assert compare.spread([2.0, 2.0, 2.0]) == 0.0
    assert compare.spread([9.0, 10.0, 12.0]) == pytest.approx(0.3)


def test_runs_are_compared_figure_by_figure() -> None:
    def run(ours: float, raw: float, extra: dict[str, float]) -> dict:
        return {"benchmark": "value_capture", "sequential": {
            "count": 300, "ours_per_s": ours, "raw_sqlite3_per_s": raw, "goal": ">= 2000/s",
            "ok": True, "round_ratios": [0.5, 0.6]}, **extra}

    report = compare.compare_runs(
        [run(2000.0, 3000.0, {"old_only": 1.0}), run(2100.0, 3100.0, {"old_only": 2.0})],
        [run(1500.0, 2000.0, {"new_only": 1.0}), run(1520.0, 2050.0, {"new_only": 1.0})])
    assert report["constant"] == ["sequential.count"]   # a parameter, not a figure
    assert set(report["figures"]) == {"sequential.ours_per_s", "sequential.raw_sqlite3_per_s"}
    assert report["figures"]["sequential.raw_sqlite3_per_s"]["baseline"] is True
    # the in-run baseline got slower too, but only our figure counts as worse
    assert report["figures"]["sequential.raw_sqlite3_per_s"]["verdict"] == "worse"
    assert report["worse"] == ["sequential.ours_per_s"]
    assert report["only_in_base"] == ["old_only"] and report["only_in_current"] == ["new_only"]


def test_output_after_other_lines_is_parsed() -> None:
    assert compare.parse_output('seeding...\n{\n  "a": {"b": 1}\n}\n') == {"a": {"b": 1}}
    with pytest.raises(ValueError):
        compare.parse_output("no json here\n")


def test_quick_arguments_unless_given_for_one_benchmark() -> None:
    chosen = compare.bench_args(["bench_capture", "bench_query", "bench_other"], True,
                                ["bench_query=--rows 500 --repeat 3"])
    assert chosen == {"bench_capture": compare.QUICK_ARGS["bench_capture"],
                      "bench_query": ["--rows", "500", "--repeat", "3"], "bench_other": []}
    assert compare.bench_args(["bench_capture"], False, []) == {"bench_capture": []}


def test_a_missing_or_failing_benchmark_is_reported_not_raised(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    (old / "bench").mkdir(parents=True)
    (new / "bench").mkdir(parents=True)
    (old / "bench" / "bench_fails.py").write_text("import sys; sys.exit('old flags differ')\n")
    (new / "bench" / "bench_fails.py").write_text(
        f"print({json.dumps(json.dumps({'speed_per_s': 5}))})\n")
    report = compare.compare_bench({"base": old, "current": new}, "bench_fails", [], 2, 60)
    assert "old flags differ" in report["errors"]["base"]
    assert report["runs"] == {"base": 0, "current": 2}
    assert "figures" not in report
    (new / "bench" / "bench_hangs.py").write_text("import time; time.sleep(60)\n")
    assert compare.run_bench(new, "bench_hangs", [], 0.5) == {"error": "timed out after 0.5 s"}
    missing = compare.compare_bench({"base": old, "current": new}, "bench_absent", [], 1, 60)
    assert set(missing["errors"]) == {"base", "current"}
    assert "no bench/bench_absent.py" in missing["errors"]["base"]
