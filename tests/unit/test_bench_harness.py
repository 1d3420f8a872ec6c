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
            "model_vs_pipeline": {"summary": {"raw_texts_per_s": 140.0, "pipeline_posts_per_s": 126.0,
                                              "pipeline_over_raw": 0.9}, "runs": [{}]},
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


# --- benchmark 7 (scaling): the pure parts --------------------------------------------------------

from bench.run import default_name  # noqa: E402
from bench.scaling_report import (  # noqa: E402
    growth_exponent,
    growth_word,
    latest_per_scale,
    model_time_s,
    plot_against_posts,
    scaling_table,
    served_accounts,
    signal_accounts,
    stage_row,
    summaries_from_log,
)


def test_model_time_is_texts_over_the_measured_rate():
    assert model_time_s(1_000_000, 125.0) == pytest.approx(8000.0)
    assert math.isnan(model_time_s(10, 0.0))


def test_stage_row_falls_back_to_events_over_wall_time_only_without_a_drain_rate():
    assert stage_row(wall_s=4.0, cpu_s=1.0, events=100, events_per_s=None, peak_rss_mb=None)["events_per_s"] == 25
    assert stage_row(wall_s=4.0, cpu_s=1.0, events=100, events_per_s=80.0, peak_rss_mb=50.0)["events_per_s"] == 80
    assert stage_row(wall_s=1.0, cpu_s=None, events=None, events_per_s=None, peak_rss_mb=None,
                     process="query")["process"] == "query"


def test_signalled_accounts_are_distinct_and_served_ones_come_from_cdc_posts_lines():
    assert signal_accounts([[1, 2], [2, 3], []]) == {1, 2, 3}
    lines = [json.dumps({"event": "incremental snapshot", "table": "posts", "values": 3, "rows": 70}),
             json.dumps({"event": "incremental snapshot", "table": "accounts", "values": 9}),
             "not json", json.dumps({"event": "streaming binlog"}),
             json.dumps({"event": "incremental snapshot", "table": "posts", "values": 2, "rows": 5})]
    assert served_accounts(lines) == 5
    assert summaries_from_log([json.dumps({"event": "account summarized", "posts": 120}), "{",
                               json.dumps({"event": "account summarized", "posts": 7})]) == [120, 7]


def test_growth_exponent_tells_flat_linear_and_quadratic_apart():
    posts = [20_000, 200_000, 1_000_000]
    assert growth_exponent(posts, [p * 0.01 for p in posts]) == pytest.approx(1.0)
    assert growth_exponent(posts, [(p / 1000) ** 2 for p in posts]) == pytest.approx(2.0)
    assert growth_exponent(posts, [300.0, 300.0, 300.0]) == pytest.approx(0.0)
    assert math.isnan(growth_exponent([20_000], [1.0]))
    assert [growth_word(x) for x in (0.0, 0.5, 1.0, 1.9, math.nan)] == [
        "flat", "sublinear", "linear", "superlinear", "one scale only"]


def _scaling_result(scale: str, posts: int, wall: float) -> dict:
    stages = {"cdc_snapshot": {"wall_s": wall, "cpu_s": wall / 2, "events_per_s": 30_000.0, "peak_rss_mb": 90.0},
              "indexer": {"wall_s": wall * 3, "events_per_s": 1_500.0}}
    return {"meta": {"scale": scale}, "benchmarks": {"scaling": {
        "summary": {"posts": posts, "redis_used_mb": posts / 1000, "index_disk_mb": posts / 500}, "stages": stages}}}


def test_latest_result_per_scale_sorted_by_posts_with_the_current_run_last_word(tmp_path):
    (tmp_path / "2026-12-01-scaling-medium.json").write_text(json.dumps(_scaling_result("medium", 200_000, 10.0)))
    (tmp_path / "2026-12-01-scaling-small.json").write_text(json.dumps(_scaling_result("small", 20_000, 9.0)))
    (tmp_path / "2026-12-02-scaling-small.json").write_text(json.dumps(_scaling_result("small", 20_000, 1.0)))
    (tmp_path / "2026-12-02-small.json").write_text(json.dumps(_scaling_result("small", 1, 1.0)))  # not scaling
    broken = {"meta": {"scale": "large"}, "benchmarks": {"scaling": {"error": "boom", "summary": {}}}}
    (tmp_path / "2026-12-02-scaling-large.json").write_text(json.dumps(broken))
    runs = latest_per_scale(tmp_path)
    assert [(r["meta"]["scale"], r["benchmarks"]["scaling"]["stages"]["cdc_snapshot"]["wall_s"]) for r in runs] == [
        ("small", 1.0), ("medium", 10.0)]
    current = _scaling_result("medium", 200_000, 5.0)
    assert latest_per_scale(tmp_path, current)[-1] is current


def test_scaling_table_has_a_column_per_scale_and_says_how_each_grows():
    runs = [_scaling_result("small", 20_000, 2.0), _scaling_result("medium", 200_000, 20.0)]
    table = scaling_table(runs)
    assert "| small (20,000 posts) | medium (200,000 posts) |" in table
    assert "| cdc_snapshot | wall time | 2.00 s | 20.00 s | linear (exponent 1.00) |" in table
    assert "| cdc_snapshot | events/s | 30,000 | 30,000 | rate exponent +0.00 |" in table
    assert "| all | index on disk | 40.00 MB | 400 MB | linear (exponent 1.00) |" in table
    assert scaling_table([]) == ""


def test_plot_against_posts_needs_two_scales(tmp_path):
    one = [_scaling_result("small", 20_000, 2.0)]
    assert plot_against_posts(one, tmp_path / "one.png") is None
    path = plot_against_posts([*one, _scaling_result("medium", 200_000, 20.0)], tmp_path / "two.png")
    assert path and (tmp_path / "two.png").stat().st_size > 0


def test_scaling_alone_names_its_result_by_scale():
    assert default_name("medium", False, {"7"}) == "scaling-medium"
    assert default_name("small", True, {"1", "7"}) == "small-quick"
    assert default_name("small", False, {"2"}) == "small"


def test_scale_shape_counts_what_the_viability_rules_index():
    from datetime import datetime, timedelta
    from types import SimpleNamespace

    from bench.scale_shape import shape_of
    from services.viability.core import ViabilityRules

    now = datetime(2026, 12, 1)
    rules = ViabilityRules(min_followers=100, min_posts=2, active_within_days=30, max_posts_per_account=3)
    accounts = [SimpleNamespace(id=1, followers=500), SimpleNamespace(id=2, followers=50),
                SimpleNamespace(id=3, followers=500)]

    def post(pid, account, days_ago, title):
        return SimpleNamespace(id=pid, account_id=account, published_at=now - timedelta(days=days_ago), title=title,
                               description=None)

    posts = [post(1, 1, 1, "a"), post(2, 1, 2, "a"), post(3, 1, 3, "b"), post(4, 1, 90, "c"),  # viable, cap 3
             post(5, 2, 1, "d"), post(6, 2, 1, "e"),  # too few followers
             post(7, 3, 60, "f"), post(8, 3, 61, "g")]  # inactive
    shape = shape_of(accounts, posts, rules, now).as_dict()
    assert shape == {"accounts": 3, "posts": 8, "viable_accounts": 1, "viable_posts": 3, "distinct_texts": 2,
                     "accounts_over_5000_viable_posts": 0, "largest_viable_account_posts": 3}


def test_soak_growth_tells_a_leak_from_a_level_working_set():
    from bench.soak import growth

    rows = [{"t_s": t, "rss_mb": {"level": 100.0 + (t % 20) / 10, "leak": 100.0 + t / 36},
             "redis_mb": 50.0, "points": 1000} for t in range(0, 1800, 10)]
    out = growth(rows, warm_up_s=300)
    assert abs(out["processes"]["level"]["slope_mb_per_h"]) < 1
    assert out["processes"]["leak"]["slope_mb_per_h"] == 100.0  # 1 MB per 36 s
    assert out["processes"]["leak"]["growth_mb"] > 40
    assert out["processes"]["redis_used"]["growth_mb"] == 0
