"""`make bench`: run the benchmarks on the private local stack and write bench/results/.

    python -m bench.run [--scale small|medium|large] [--only 1,2,...] [--repeats N] [--quick] [--name NAME]

Benchmarks: 1 model floor vs pipeline, 2 non-model overhead per process, 3 freshness under load,
4 search API next to its engine and model, 5 replay cold vs warm; 6 (peak RSS per process) is sampled during all of them;
7 scaling: the pipeline end to end, stage by stage, with the indexer and search next to their engine
(`--only 7` alone writes <date>-scaling-<scale>; see docs/scaling.md); 8 soak: RSS of every process
under a steady load for `--soak-s` (`--only 8` alone writes <date>-soak-<scale>).
"""

from __future__ import annotations

import argparse
import os
import signal
import time
from datetime import datetime, timezone
from pathlib import Path

from bench.benchmarks import Options, freshness, model_vs_pipeline, overhead, replay
from bench.harness import Bench, log
from bench.report import markdown_table, write_report
from bench.scaling import scaling
from bench.search_api import search
from bench.soak import soak

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# Order matters: replay leaves a settled pipeline (and a filled cache) that 1 and 3 reuse; 4 after 7 searches
# the index 7 built of the seed.
ORDER = [("5", "replay", replay), ("1", "model_vs_pipeline", model_vs_pipeline), ("3", "freshness", freshness),
         ("2", "overhead", overhead), ("7", "scaling", scaling), ("4", "search", search),
         ("8", "soak", soak)]


def options(args: argparse.Namespace) -> Options:
    if args.quick:
        opts = Options(repeats=1, quick=True, pipeline_posts=2000, freshness_s=30, search_points=50_000, search_s=8,
                       replay_repeats=1)
    else:
        opts = Options(replay_repeats=3 if args.scale == "small" else 1)
    if args.repeats:
        opts.repeats = args.repeats
        opts.replay_repeats = min(opts.replay_repeats, args.repeats) if not args.quick else args.repeats
    for field in ("pipeline_posts", "freshness_s", "search_points", "search_s", "soak_s"):
        value = getattr(args, field)
        if value is not None:
            setattr(opts, field, value)
    opts.profile = not args.no_profile
    opts.replay_warm_only = args.replay_warm_only
    return opts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=["tiny", "small", "medium", "large"], default=os.environ.get("SCALE", "medium"))
    parser.add_argument("--only", default="1,2,3,4,5", help="comma-separated benchmark numbers (6 is always on)")
    parser.add_argument("--repeats", type=int, default=None, help="repeats per benchmark (default 3, quick 1)")
    parser.add_argument("--quick", action="store_true", help="1 repeat, fewer posts, shorter loads")
    parser.add_argument("--name", default=None, help="result file name part (default: scale[-quick])")
    parser.add_argument("--pipeline-posts", type=int, dest="pipeline_posts")
    parser.add_argument("--freshness-s", type=float, dest="freshness_s")
    parser.add_argument("--search-points", type=int, dest="search_points")
    parser.add_argument("--search-s", type=float, dest="search_s")
    parser.add_argument("--soak-s", type=float, dest="soak_s")
    parser.add_argument("--replay-warm-only", action="store_true", dest="replay_warm_only",
                        help="benchmark 5 without its cold run: the kept embedding cache is the warm one")
    parser.add_argument("--no-profile", action="store_true", help="do not attach py-spy in benchmark 2")
    args = parser.parse_args(argv)
    opts = options(args)
    wanted = {part.strip() for part in args.only.split(",") if part.strip()}
    name = args.name or default_name(args.scale, args.quick, wanted)
    started = datetime.now(timezone.utc)
    stem = f"{started:%Y-%m-%d}-{name}"
    results = {"name": stem, "meta": {"scale": args.scale, "repeats": opts.repeats, "quick": opts.quick,
                                      "replay_repeats": opts.replay_repeats, "started": started.isoformat(),
                                      "cpus": os.cpu_count(), "options": vars(opts),
                                      # the machine is shared: its load says how far to trust absolute figures
                                      "load_average_start": os.getloadavg()},
               "benchmarks": {}}
    wall = time.monotonic()
    signal.signal(signal.SIGTERM, _interrupt)  # so `kill` still stops the private stack
    bench = Bench(args.scale)
    try:
        log(f"starting private infrastructure ({bench.ports}) for scale {args.scale}")
        bench.start()
        for number, key, function in ORDER:
            if number not in wanted:
                continue
            log(f"benchmark {number}: {key}")
            bench.sampler.bench = f"{number}.{key}"
            bench_started = time.monotonic()
            try:
                results["benchmarks"][key] = function(bench, opts)
            except Exception as exc:  # keep the other benchmarks' numbers
                log(f"benchmark {number} failed: {exc!r}")
                results["benchmarks"][key] = {"error": repr(exc)[:2000], "summary": {}}
            results["benchmarks"][key]["wall_s"] = time.monotonic() - bench_started
            bench.sampler.sample()
    finally:
        bench.stop()
        results["peak_rss_mb"] = {name: dict(per) for name, per in bench.sampler.peaks.items()}
        results["meta"]["wall_s"] = time.monotonic() - wall
        results["meta"]["load_average_end"] = os.getloadavg()
        paths = write_report(results, RESULTS_DIR, stem)
        print("\n" + markdown_table(results) + "\n")
        log(f"wrote {', '.join(paths.values())}")


def default_name(scale: str, quick: bool, wanted: set[str]) -> str:
    """Result file name part: the scaling benchmark alone is "scaling-<scale>", so the results of
    several scales sit side by side for the plots against posts."""
    if "7" in wanted and wanted <= {"7", "4"}:  # 4 then searches the index 7 built
        return f"scaling-{scale}"
    if wanted == {"8"}:
        return f"soak-{scale}"
    return scale + ("-quick" if quick else "")


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    main()
