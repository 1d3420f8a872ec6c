"""What building the HNSW index does to an edge shard's search: the engine's own throughput on a shard
as the live indexer left it, the time `optimize()` takes, and the throughput after it.

    python -m bench.hnsw_effect PATH [--search-s 20]

PATH is an edge shard directory benchmark 7 left (`.dev/bench/<scale>/runs/*-qdrant`). The live edge
path never calls optimize() (it holds the GIL for its whole run), so every search there scans all
vectors; this measures what that costs at the shard's size. The shard is changed (indexed) in place.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timezone
from pathlib import Path

from bench.benchmarks import Options
from bench.harness import log
from bench.search_api import engine_rate
from shared.vectorstore.qdrant_edge import EdgeVectorStore

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hnsw_effect", description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--search-s", type=float, default=20.0)
    parser.add_argument("--name", default="hnsw-effect")
    args = parser.parse_args(argv)
    opts, accounts = Options(search_s=args.search_s), list(range(1, 201))
    before = engine_rate(args.path, opts, accounts, seed=0)
    log(f"before optimize: {before['engine_rps']:.1f} req/s, {before['engine_per_cpu_s']:.1f} per CPU s")
    store = EdgeVectorStore(args.path)
    store.ensure_collection("posts", 384)
    started, cpu = time.perf_counter(), time.process_time()
    store.optimize("posts")
    optimize = {"optimize_s": time.perf_counter() - started, "optimize_cpu_s": time.process_time() - cpu}
    store.close()
    log(f"optimize: {optimize['optimize_s']:.1f} s ({optimize['optimize_cpu_s']:.1f} CPU s)")
    after = engine_rate(args.path, opts, accounts, seed=0)
    log(f"after optimize: {after['engine_rps']:.1f} req/s, {after['engine_per_cpu_s']:.1f} per CPU s")
    result = {"path": args.path, "started": datetime.now(timezone.utc).isoformat(), "search_s": args.search_s,
              "before": before, **optimize, "after": after,
              "speedup": after["engine_rps"] / before["engine_rps"] if before["engine_rps"] else None}
    out = RESULTS_DIR / f"{datetime.now(timezone.utc):%Y-%m-%d}-{args.name}.json"
    out.write_text(json.dumps(result, indent=2))
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
