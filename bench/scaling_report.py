"""Pure parts of benchmark 7 (scaling): stage rows, signal counts, growth across scales, the table
and the plots against posts. Tested without a stack in tests/unit/test_bench_harness.py.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

# The stages benchmark 7 measures, in pipeline order.
STAGES = ("cdc_snapshot", "viability", "embedder", "indexer", "query_startup", "summarizer_drain")
# Per stage, what is measured (key in the stage's row, label, unit).
STAGE_METRICS = (("wall_s", "wall time", "s"), ("cpu_s", "CPU", "s"), ("events_per_s", "events/s", "events/s"),
                 ("peak_rss_mb", "peak RSS", "MB"))
# Whole-run figures plotted against posts besides the stage metrics.
TOTAL_METRICS = (("redis_used_mb", "Redis used memory", "MB"), ("index_disk_mb", "index on disk", "MB"))
RESULT_NAME = re.compile(r"^(\d{4}-\d{2}-\d{2})-scaling-(\w+)\.json$")


def stage_row(*, wall_s: float, cpu_s: float | None, events: int | float | None, events_per_s: float | None,
              peak_rss_mb: float | None, **extra: object) -> dict:
    """One stage's measured figures; events/s falls back to events ÷ wall time when the stage has no
    steadier rate of its own (a drain rate that leaves start-up out)."""
    if events_per_s is None and events:
        events_per_s = events / wall_s if wall_s > 0 else math.nan
    return {"wall_s": wall_s, "cpu_s": cpu_s, "events": events, "events_per_s": events_per_s,
            "peak_rss_mb": peak_rss_mb, **extra}


def model_time_s(texts: int, texts_per_s: float) -> float:
    """The model's share of a full run at a scale: every distinct text once, at the measured rate."""
    if texts_per_s <= 0 or math.isnan(texts_per_s):
        return math.nan
    return texts / texts_per_s


def signal_accounts(requests: Iterable[Sequence[int]]) -> set[int]:
    """Distinct accounts asked for by execute-snapshot signals (one id list per request)."""
    return {int(account) for values in requests for account in values}


def served_accounts(log_lines: Iterable[str], table: str = "posts") -> int:
    """Accounts whose posts cdc re-read, summed from its "incremental snapshot" log lines (values = how
    many account ids the request named)."""
    served = 0
    for line in log_lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == "incremental snapshot" and entry.get("table") == table:
            served += int(entry.get("values", 0))
    return served


def summaries_from_log(log_lines: Iterable[str]) -> list[int]:
    """Posts per "account summarized" line (one per summary the summarizer wrote)."""
    posts = []
    for line in log_lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == "account summarized":
            posts.append(int(entry.get("posts", 0)))
    return posts


def growth_exponent(posts: Sequence[float], values: Sequence[float]) -> float:
    """Slope of log(value) against log(posts), least squares: 1 = linear, 0 = flat, 2 = quadratic."""
    pairs = [(math.log(p), math.log(v)) for p, v in zip(posts, values, strict=True)
             if p and v and p > 0 and v > 0 and not math.isnan(v)]
    if len(pairs) < 2:
        return math.nan
    mean_x = sum(x for x, _ in pairs) / len(pairs)
    mean_y = sum(y for _, y in pairs) / len(pairs)
    spread = sum((x - mean_x) ** 2 for x, _ in pairs)
    if spread == 0:
        return math.nan
    return sum((x - mean_x) * (y - mean_y) for x, y in pairs) / spread


def growth_word(exponent: float) -> str:
    if math.isnan(exponent):
        return "one scale only"
    if exponent < 0.2:
        return "flat"
    if exponent < 0.8:
        return "sublinear"
    if exponent <= 1.2:
        return "linear"
    return "superlinear"


def latest_per_scale(results_dir: Path, current: dict | None = None) -> list[dict]:
    """The newest scaling result per scale in results_dir (plus the run being written), by posts."""
    chosen: dict[str, tuple[str, dict]] = {}
    for path in sorted(results_dir.glob("*-scaling-*.json")):
        match = RESULT_NAME.match(path.name)
        if not match:
            continue
        try:
            data = json.loads(path.read_text())
        except ValueError:
            continue
        if "scaling" in data.get("benchmarks", {}) and "error" not in data["benchmarks"]["scaling"]:
            chosen[match.group(2)] = (match.group(1), data)
    if current is not None and "error" not in current.get("benchmarks", {}).get("scaling", {"error": 1}):
        chosen[current.get("meta", {}).get("scale", "?")] = ("9999", current)
    runs = [data for _, data in chosen.values()]
    return sorted(runs, key=lambda r: r["benchmarks"]["scaling"]["summary"].get("posts", 0))


def series(runs: Sequence[dict], stage: str | None, key: str) -> tuple[list[float], list[float]]:
    """(posts, value) over runs for one stage metric (stage None: a whole-run summary key)."""
    xs, ys = [], []
    for run in runs:
        scaling = run["benchmarks"]["scaling"]
        value = scaling["summary"].get(key) if stage is None else scaling.get("stages", {}).get(stage, {}).get(key)
        if isinstance(value, (int, float)) and not math.isnan(value):
            xs.append(scaling["summary"]["posts"])
            ys.append(value)
    return xs, ys


def scaling_table(runs: Sequence[dict]) -> str:
    """Markdown: one row per stage and metric, one column per scale, and how it grows."""
    if not runs:
        return ""
    scales = [r["meta"]["scale"] + f" ({r['benchmarks']['scaling']['summary']['posts']:,} posts)" for r in runs]
    lines = ["| stage | measure | " + " | ".join(scales) + " | growth |", "|---|---|" + "---:|" * len(runs) + "---|"]
    for stage in STAGES:
        for key, label, unit in STAGE_METRICS:
            xs, ys = series(runs, stage, key)
            cells = [_cell(r["benchmarks"]["scaling"].get("stages", {}).get(stage, {}).get(key), unit) for r in runs]
            if any(cells):
                lines.append(f"| {stage} | {label} | " + " | ".join(cells) + f" | {_growth(xs, ys, key)} |")
    for key, label, unit in TOTAL_METRICS:
        xs, ys = series(runs, None, key)
        cells = [_cell(r["benchmarks"]["scaling"]["summary"].get(key), unit) for r in runs]
        lines.append(f"| all | {label} | " + " | ".join(cells) + f" | {_growth(xs, ys, key)} |")
    return "\n".join(lines)


def _growth(xs: list[float], ys: list[float], key: str) -> str:
    if key == "events_per_s":  # a rate that keeps up is flat; growth words describe totals
        exponent = growth_exponent(xs, ys)
        return "one scale only" if math.isnan(exponent) else f"rate exponent {exponent:+.2f}"
    exponent = growth_exponent(xs, ys)
    return growth_word(exponent) + ("" if math.isnan(exponent) else f" (exponent {exponent:.2f})")


def _cell(value: object, unit: str) -> str:
    if not isinstance(value, (int, float)) or (isinstance(value, float) and math.isnan(value)):
        return ""
    text = f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{text} {unit}" if unit != "events/s" else text


def plot_against_posts(runs: Sequence[dict], out_path: Path) -> str | None:
    """One panel per measure, a line per stage, against posts; None when fewer than two scales."""
    if len(runs) < 2:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    panels = [*STAGE_METRICS, *TOTAL_METRICS]
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    for ax, (key, label, unit) in zip(axes.flat, panels):
        if (key, label, unit) in TOTAL_METRICS:
            xs, ys = series(runs, None, key)
            ax.plot(xs, ys, marker="o", label="all")
        else:
            for n, stage in enumerate(STAGES):
                xs, ys = series(runs, stage, key)
                if ys:  # a colour per stage, the same in every panel
                    ax.plot(xs, ys, marker="o", label=stage, color=f"C{n}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("posts in MariaDB")
        ax.set_title(f"{label} ({unit})")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return str(out_path)


def main(argv: list[str] | None = None) -> None:
    """`python -m bench.scaling_report`: the table and the plot from the newest result of every scale."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.scaling_report", description=main.__doc__)
    parser.add_argument("--results", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args(argv)
    runs = latest_per_scale(args.results)
    print(scaling_table(runs))
    if runs:
        date = max(r["meta"]["started"][:10] for r in runs)
        image = plot_against_posts(runs, args.results / f"{date}-scaling-against-posts.png")
        print(f"\n{image or 'no plot: results of fewer than two scales'}")


if __name__ == "__main__":
    main()
