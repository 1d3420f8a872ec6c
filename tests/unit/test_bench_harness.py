"""The benchmark harness's pure parts (stats, report writing) stay working; `make bench` itself
is not part of the test suite."""

import json
import math

import pytest

from bench.report import headline_rows, markdown_table, write_report
from bench.stats import goal_met, latency_summary, median, median_of_runs, percentile, rate, ratio


def test_percentiles_interpolate_like_numpy():
    values = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]
    assert percentile(values, 50) == pytest.approx(5.5)
    assert percentile(values, 95) == pytest.approx(9.55)
    assert percentile([3.0], 99) == 3.0
    assert math.isnan(percentile([], 50))
    assert median([5, 1, 3]) == 3


def test_ratios_medians_and_goals():
    assert ratio(170, 200) == pytest.approx(0.85)
    assert math.isnan(ratio(1, 0))
    assert rate(100, 2) == 50
    runs = [{"x": 1.0}, {"x": 9.0}, {"x": 3.0}, {"y": 2.0}, {"x": float("nan")}]
    assert median_of_runs(runs, "x") == 3.0
    assert goal_met(0.9, 0.85, ">=") is True
    assert goal_met(31, 30, "<=") is False
    assert goal_met(float("nan"), 30, "<=") is None
    summary = latency_summary([0.010, 0.020, 0.030])
    assert summary["p50_ms"] == pytest.approx(20) and summary["n"] == 3


def test_report_writes_json_markdown_and_marks_goals(tmp_path):
    results = {
        "name": "2000-01-01-test", "meta": {"scale": "small", "repeats": 1, "quick": True},
        "benchmarks": {
            "model_vs_pipeline": {"summary": {"raw_texts_per_s": 140.0, "pipeline_posts_per_s": 119.0,
                                              "pipeline_over_raw": 0.85}, "runs": [{}]},
            "search": {"summary": {"warm_p50_ms": 10.0, "warm_p95_ms": 45.0, "warm_p99_ms": 60.0, "warm_rps": 900.0,
                                   "cold_p50_ms": 50.0, "cold_p95_ms": 90.0, "cold_p99_ms": 99.0}, "runs": []},
            "freshness": {"summary": {"p95_ms": 900.0}, "runs": [{"latencies_s": [0.5, 0.7, 1.2]}]},
        },
        "peak_rss_mb": {"query": {"4.search": 512.0}},
    }
    met = {row["key"]: row["met"] for row in headline_rows(results)}
    assert met["pipeline_over_raw"] is True and met["warm_p95_ms"] is False and met["p95_ms"] is True
    assert "| 4. search p95 (query cache warm) | 45.00 ms | <= 30 ms | **no** |" in markdown_table(results)
    paths = write_report(results, tmp_path, results["name"], plots=False)
    assert json.loads((tmp_path / "2000-01-01-test.json").read_text())["meta"]["scale"] == "small"
    text = (tmp_path / "2000-01-01-test.md").read_text()
    assert "Peak RSS" in text and "| query | 512 MB |" in text.replace("512.00", "512")
    assert set(paths) == {"json", "markdown"}
