"""Write one benchmark run: bench/results/<date>-<name>.json, a Markdown summary and PNG plots.

Pure except for file writing; plotting needs matplotlib (the `bench` extra) and is skipped,
with a note in the summary, when it is missing.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

from bench.stats import goal_met

# (benchmark, metric key in its "summary", label, goal, direction, unit)
HEADLINES = [
    ("model_vs_pipeline", "pipeline_over_raw", "1. pipeline / raw model throughput", 0.9, ">=", "×"),
    ("model_vs_pipeline", "raw_texts_per_s", "1. raw model throughput", None, None, "texts/s"),
    ("model_vs_pipeline", "embedder_over_raw_per_cpu_s", "1. embedder / raw model, posts per CPU second", 0.9, ">=",
     "×"),
    ("model_vs_pipeline", "pipeline_over_raw_per_cpu_s", "1. whole pipeline / raw model, posts per CPU second", None,
     None, "×"),
    ("model_vs_pipeline", "pipeline_posts_per_s", "1. pipeline throughput (insert → searchable)", None, None,
     "posts/s"),
    ("overhead", "cdc_events_per_s", "2. cdc events/s (snapshot → Kafka)", 5000, ">=", "events/s"),
    ("overhead", "viability_events_per_s", "2. viability events/s (steady state, one round trip per batch)", 5000,
     ">=", "events/s"),
    ("overhead", "viability_first_pass_events_per_s", "2. viability events/s (first pass, state filling)", None,
     None, "events/s"),
    ("overhead", "viability_baseline_events_per_s", "2. viability events/s (before: one call per fact)", None,
     None, "events/s"),
    ("overhead", "viability_speedup", "2. viability after / before", None, None, "×"),
    ("overhead", "embedder_events_per_s", "2. embedder events/s (cache warm)", None, None, "events/s"),
    ("overhead", "indexer_events_per_s", "2. indexer events/s", 5000, ">=", "events/s"),
    ("freshness", "p50_ms", "3. commit → searchable p50", None, None, "ms"),
    ("freshness", "p95_ms", "3. commit → searchable p95", 2000, "<=", "ms"),
    ("freshness", "p99_ms", "3. commit → searchable p99", None, None, "ms"),
    ("search", "engine_rps", "4. engine in-process search throughput (API's threads)", None, None, "req/s"),
    ("search", "warm_rps", "4. search API warm throughput (closed loop)", None, None, "req/s"),
    ("search", "api_over_engine", "4. search API / engine", 0.6, ">=", "×"),
    ("search", "api_over_engine_per_cpu_s", "4. search API / engine, requests per CPU second", None, None, "×"),
    ("search", "warm_p50_ms", "4. search p50 (query cache warm)", None, None, "ms"),
    ("search", "warm_p95_ms", "4. search p95 (query cache warm)", 30, "<=", "ms"),
    ("search", "warm_p99_ms", "4. search p99 (query cache warm)", None, None, "ms"),
    ("search", "open_rate", "4. open-loop arrivals (80% of the warm throughput)", None, None, "req/s"),
    ("search", "open_p50_ms", "4. open-loop p50", None, None, "ms"),
    ("search", "open_p95_ms", "4. open-loop p95", 50, "<=", "ms"),
    ("search", "open_p99_ms", "4. open-loop p99", None, None, "ms"),
    ("search", "open_generator_cpu_s", "4. open-loop load generator CPU", None, None, "s"),
    ("search", "model_rps", "4. model's own single-query rate", None, None, "texts/s"),
    ("search", "cold_rps", "4. search requests/s (cold: every query embedded)", None, None, "req/s"),
    ("search", "cold_over_model", "4. cold search / model single-query rate", 0.9, ">=", "×"),
    ("search", "cold_over_model_per_cpu_s", "4. cold search / model, per CPU second", None, None, "×"),
    ("search", "cold_p95_ms", "4. search p95 (every query embedded)", None, None, "ms"),
    ("replay", "cold_s", "5. replay, cold Redis", None, None, "s"),
    ("replay", "warm_s", "5. replay, warm Redis", None, None, "s"),
    ("replay", "cold_over_warm", "5. replay cold / warm", 10, ">=", "×"),
    ("replay", "warm_posts_per_s", "5. warm replay posts/s (start-up included)", None, None, "posts/s"),
    ("replay", "indexer_points_per_s", "5. indexer alone on the same embedded topic", None, None, "points/s"),
    ("replay", "warm_over_indexer", "5. warm replay / indexer alone", 0.8, ">=", "×"),
    ("replay", "warm_after_startup_over_indexer", "5. warm replay after start-up / indexer alone", 0.8, ">=", "×"),
    ("scaling", "cdc_events_per_s", "7. cdc snapshot events/s", 5000, ">=", "events/s"),
    ("scaling", "viability_events_per_s", "7. viability events/s (catching up with the snapshot)", 5000, ">=",
     "events/s"),
    ("scaling", "indexer_points_per_s", "7. indexer points/s into the edge store", 5000, ">=", "points/s"),
    ("scaling", "engine_upsert_points_per_s", "7. engine's own bulk upsert, same points", None, None, "points/s"),
    ("scaling", "indexer_over_engine", "7. indexer / engine bulk upsert", 0.8, ">=", "×"),
    ("scaling", "indexer_over_engine_per_cpu_s", "7. indexer / engine, points per CPU second", 0.8, ">=", "×"),
    ("scaling", "api_warm_rps", "7. search API warm throughput", None, None, "req/s"),
    ("scaling", "engine_search_rps", "7. engine in-process search throughput", None, None, "req/s"),
    ("scaling", "search_api_over_engine", "7. search API / engine", 0.6, ">=", "×"),
    ("scaling", "search_api_over_engine_per_cpu_s", "7. search API / engine, requests per CPU second", 0.6, ">=",
     "×"),
    ("scaling", "query_startup_s", "7. query process start-up on the shard", None, None, "s"),
    ("scaling", "summarizer_drain_s", "7. summarizer queue drain", None, None, "s"),
    ("scaling", "model_texts_per_s", "7. model rate (this run)", None, None, "texts/s"),
    ("scaling", "model_s_at_this_scale", "7. model time at this scale (texts ÷ rate)", None, None, "s"),
]


def fmt(value: object, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        text = f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    else:
        text = f"{value:,}" if isinstance(value, int) else str(value)
    return f"{text} {unit}".strip()


def headline_rows(results: dict) -> list[dict]:
    rows = []
    for bench, key, label, goal, direction, unit in HEADLINES:
        summary = results.get("benchmarks", {}).get(bench, {}).get("summary")
        if summary is None or key not in summary:
            continue
        value = summary[key]
        met = goal_met(value, goal, direction) if goal is not None else None
        rows.append({"bench": bench, "key": key, "label": label, "value": value, "unit": unit,
                     "goal": None if goal is None else f"{direction} {fmt(goal, unit)}",
                     "met": met})
    return rows


def markdown_table(results: dict) -> str:
    lines = ["| measure | median | goal | met |", "|---|---:|---|:-:|"]
    for row in headline_rows(results):
        met = {True: "yes", False: "**no**", None: ""}[row["met"]]
        lines.append(f"| {row['label']} | {fmt(row['value'], row['unit'])} | {row['goal'] or ''} | {met} |")
    return "\n".join(lines)


def rss_table(results: dict) -> str:
    peaks = results.get("peak_rss_mb", {})
    if not peaks:
        return ""
    benches = sorted({b for per in peaks.values() for b in per})
    lines = ["| process | " + " | ".join(benches) + " |", "|---|" + "---:|" * len(benches)]
    for process in sorted(peaks):
        cells = [fmt(peaks[process].get(b), "MB") if b in peaks[process] else "" for b in benches]
        lines.append(f"| {process} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def soak_table(results: dict) -> str:
    processes = results.get("benchmarks", {}).get("soak", {}).get("summary", {}).get("processes", {})
    if not processes:
        return ""
    lines = ["| process (soak, after the warm-up) | start | end | max | growth | slope |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, row in sorted(processes.items()):
        lines.append(f"| {name} | {fmt(row['start_mb'], 'MB')} | {fmt(row['end_mb'], 'MB')} | "
                     f"{fmt(row['max_mb'], 'MB')} | {fmt(row['growth_mb'], 'MB')} | "
                     f"{fmt(row['slope_mb_per_h'], 'MB/h')} |")
    return "\n".join(lines)


def render_markdown(results: dict, images: list[str]) -> str:
    meta = results.get("meta", {})
    out = [f"# Benchmark {results.get('name', '')}", "",
           f"scale **{meta.get('scale')}**, repeats **{meta.get('repeats')}**, quick={meta.get('quick')}, "
           f"started {meta.get('started')}, {meta.get('cpus')} CPUs, wall time {fmt(meta.get('wall_s'), 's')}",
           "", *_load_line(meta), "Medians over repeats; ratios are taken within one run.", ""]
    if meta.get("invocations"):
        out += ["Assembled from these invocations:", ""] + [f"- {line}" for line in meta["invocations"]] + [""]
    out += [markdown_table(results), ""]
    if soak_table(results):
        out += [soak_table(results), ""]
    rss = rss_table(results)
    if rss:
        out += ["## Peak RSS per process and benchmark", "", rss, ""]
    for bench, data in results.get("benchmarks", {}).items():
        out += [f"## {bench}", ""]
        if data.get("method"):
            out += [data["method"], ""]
        if data.get("table"):
            out += [data["table"], ""]
        if data.get("notes"):
            out += [f"- {note}" for note in data["notes"]] + [""]
        if data.get("profile_top"):
            out += ["Profile (py-spy, self time, top frames):", "", "```"]
            for stage, frames in data["profile_top"].items():
                out.append(f"[{stage}]")
                out += [f"  {share:5.1f}%  {frame}" for frame, share in frames]
            out += ["```", ""]
        out += ["<details><summary>summary and runs (JSON)</summary>", "", "```json",
                json.dumps({"summary": data.get("summary"), "runs": data.get("runs")}, indent=1, default=str)[:6000],
                "```", "</details>", ""]
    if images:
        out += ["## Plots", ""] + [f"![{Path(i).stem}]({Path(i).name})" for i in images] + [""]
    elif importlib.util.find_spec("matplotlib") is None:
        out += ["(plots skipped: matplotlib is not installed; `pip install -e .[bench]`)", ""]
    return "\n".join(out)


def _load_line(meta: dict) -> list[str]:
    if "load_average_start" not in meta:
        return []
    loads = [f"{name} {', '.join(f'{x:.2f}' for x in meta[key])}" for name, key in
             (("start", "load_average_start"), ("end", "load_average_end")) if meta.get(key)]
    return [f"Load average (1, 5, 15 min) at {'; '.join(loads)}.", ""]


def plot(results: dict, out_dir: Path, stem: str) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    images = []
    benches = results.get("benchmarks", {})
    if "scaling" in benches:
        from bench.scaling_report import latest_per_scale, plot_against_posts

        # one plot per day, whichever scale ran last (python -m bench.scaling_report redraws it)
        image = plot_against_posts(latest_per_scale(out_dir, results),
                                   out_dir / f"{stem.split('-scaling-')[0]}-scaling-against-posts.png")
        if image:
            images.append(image)
    overhead = benches.get("overhead", {}).get("summary", {})
    stages = [(k.removesuffix("_events_per_s"), v) for k, v in overhead.items()
              if k.endswith("_events_per_s") and isinstance(v, (int, float)) and not math.isnan(v)]
    if stages:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.barh([s for s, _ in stages], [v for _, v in stages], color="#4c72b0")
        ax.axvline(5000, color="red", linestyle="--", label="goal 5,000/s")
        ax.set_xlabel("events/s (median)")
        ax.set_title("2. non-model overhead per process")
        ax.legend()
        fig.tight_layout()
        images.append(_save(fig, out_dir / f"{stem}-overhead.png"))
    fresh = benches.get("freshness", {})
    samples = [s for run in fresh.get("runs", []) for s in run.get("latencies_s", [])]
    if samples:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        ordered = sorted(samples)
        ax.plot(ordered, [i / len(ordered) for i in range(len(ordered))])
        ax.axvline(2.0, color="red", linestyle="--", label="goal p95 ≤ 2 s")
        ax.set_xlabel("commit → searchable (s)")
        ax.set_ylabel("fraction of posts")
        ax.set_title("3. freshness under 50 posts/s")
        ax.legend()
        fig.tight_layout()
        images.append(_save(fig, out_dir / f"{stem}-freshness.png"))
    search = benches.get("search", {}).get("summary", {})
    if search:
        modes = [m for m in ("warm", "open", "cold") if f"{m}_p50_ms" in search]
        fig, ax = plt.subplots(figsize=(7, 3.5))
        width = 0.25
        for i, pct in enumerate(("p50", "p95", "p99")):
            ax.bar([m + i * width for m in range(len(modes))], [search[f"{mode}_{pct}_ms"] for mode in modes],
                   width, label=pct)
        ax.set_xticks([m + width for m in range(len(modes))], [{"warm": "warm, closed", "open": "warm, open 80%", "cold": "cold"}[m] for m in modes])
        ax.axhline(50, color="red", linestyle="--", label="goal p95 ≤ 50 ms (open loop)")
        ax.set_ylabel("latency (ms)")
        ax.set_yscale("log")
        ax.set_title("4. search API at 200k points")
        ax.legend()
        fig.tight_layout()
        images.append(_save(fig, out_dir / f"{stem}-search.png"))
    throughput = benches.get("model_vs_pipeline", {}).get("summary", {})
    replay = benches.get("replay", {}).get("summary", {})
    if throughput or replay:
        fig, axes = plt.subplots(1, 2, figsize=(8, 3.5))
        if throughput:
            axes[0].bar(["raw model", "pipeline"], [throughput.get("raw_texts_per_s", 0),
                                                    throughput.get("pipeline_posts_per_s", 0)], color="#55a868")
            axes[0].set_ylabel("texts/s")
            axes[0].set_title(f"1. pipeline/raw = {fmt(throughput.get('pipeline_over_raw'))}")
        if replay:
            axes[1].bar(["cold Redis", "warm Redis"], [replay.get("cold_s", 0), replay.get("warm_s", 0)],
                        color="#c44e52")
            axes[1].set_ylabel("seconds")
            axes[1].set_title(f"5. replay cold/warm = {fmt(replay.get('cold_over_warm'))}×")
        fig.tight_layout()
        images.append(_save(fig, out_dir / f"{stem}-throughput-replay.png"))
    return images


def _save(fig, path: Path) -> str:
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return str(path)


def write_report(results: dict, out_dir: Path, stem: str, *, plots: bool = True) -> dict[str, str]:
    """Write <stem>.json, <stem>.md and <stem>-*.png into out_dir; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    scaling = results.get("benchmarks", {}).get("scaling")
    if scaling and "error" not in scaling:  # this run's stages next to the other scales' latest
        from bench.scaling_report import latest_per_scale, scaling_table

        scaling["table"] = scaling_table(latest_per_scale(out_dir, results))
    json_path = out_dir / f"{stem}.json"
    json_path.write_text(json.dumps(results, indent=1, default=str, allow_nan=True))
    images = plot(results, out_dir, stem) if plots else []
    md_path = out_dir / f"{stem}.md"
    md_path.write_text(render_markdown(results, images))
    return {"json": str(json_path), "markdown": str(md_path), **{f"png{i}": p for i, p in enumerate(images)}}
