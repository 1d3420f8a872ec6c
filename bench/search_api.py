"""Benchmark 4: the search API next to its engine and its model, all in one run at 200k points.

Five measurements on one edge shard, in this order (the shard has one owner, so the engine's own run
comes before the API opens it):

1. engine: the shard opened in this process, the same 30 query vectors (the API's model), the same
   filter mix, limit 10 with payloads, on as many threads as the API's request threadpool;
2. model: one query text embedded at a time, each text new, in this process (the API's model settings);
3. API warm, closed loop: ``search_clients`` clients, each sends its next request when the last
   returned: the most the API serves;
4. API warm, open loop at 80% of (3): Poisson arrivals that do not wait for responses, latency from
   each request's scheduled time (a late server is not forgiven by sending later), and the CPU
   seconds the load generator (this process) spent;
5. API cold: every query text new, so every request runs the model (closed loop).

The goals (issue 14): warm API >= 0.6x the engine, p95 <= 50 ms in (4), cold API within 10% of (2).
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
import time
import uuid
from datetime import datetime

from bench.benchmarks import (QUERIES, Options, _filters, _load, _points_note, build_search_shard, embedder,
                              search_answered)
from bench.harness import Bench, Profiler, log
from bench.stats import latency_summary, median_of_runs, ratio

# Starlette runs the API's sync routes on anyio's default thread limiter: at most this many at once.
API_THREADS = 40
OPEN_LOOP_SHARE = 0.8  # of the closed-loop throughput
OPEN_LOOP_CONNECTIONS = 200  # a pool the arrivals never wait on unless the server is far behind


def search(bench: Bench, opts: Options) -> dict:
    bench.stop_live()
    path, info = _shard(bench, opts)
    accounts = [r[0] for r in bench.sql("SELECT id FROM accounts ORDER BY followers DESC LIMIT 200")]
    runs, profile_top = [], {}
    for rep in range(opts.repeats):
        run = {**engine_rate(path, opts, accounts, seed=rep), **model_rate(opts)}
        run.update(_api(bench, opts, path, accounts, rep, profile_top if rep == 0 else None))
        _ratios(run)
        log(f"4. rep {rep + 1}: engine {run['engine_rps']:.0f} req/s, API warm {run['warm_rps']:.0f} "
            f"({run['api_over_engine']:.2f}x); open loop {run['open_rate']:.0f}/s p95 {run['open_p95_ms']:.1f} ms "
            f"(load generator {run['open_generator_cpu_s']:.1f} CPU s); cold {run['cold_rps']:.1f} req/s vs model "
            f"{run['model_rps']:.1f} ({run['cold_over_model']:.2f}x)")
        runs.append(run)
    keys = [k for k in runs[0] if isinstance(runs[0][k], (int, float))]
    return {
        "method": _method(opts, info),
        "runs": runs,
        "summary": {k: median_of_runs(runs, k) for k in keys},
        "shard": info,
        "profile_top": profile_top,
    }


def _shard(bench: Bench, opts: Options) -> tuple[str, dict]:
    """The index benchmark 7 just built from the seed (real vectors, the indexer's own points) when it
    ran first in this invocation (`--only 7,4`: at the large seed, ~200k points); else a built shard."""
    built = getattr(bench, "scaling_shard", None)
    if built is None:
        return build_search_shard(bench, opts)
    points = bench.viable_count()
    return str(built), {"points": points, "distinct_posts_with_real_vectors": points, "path": str(built),
                        "from": "benchmark 7's index of the seed"}


def engine_rate(path: str, opts: Options, accounts: list[int], seed: int, threads: int = API_THREADS) -> dict:
    """The engine alone: the edge shard's own query call on ``threads`` threads for search_s seconds."""
    import qdrant_edge as qe

    from shared.vectorstore.qdrant_edge import EdgeVectorStore, _edge_filter, query_vector

    vectors = {q: query_vector(v) for q, v in zip(QUERIES, embedder().embed(QUERIES), strict=True)}
    store = EdgeVectorStore(path)
    store.ensure_collection("posts", 384)
    shard = store._collection("posts").shard
    counts, stop = [0] * threads, threading.Event()

    def worker(n: int) -> None:
        rng = random.Random(seed * 1000 + n)
        while not stop.is_set():
            query = rng.choice(QUERIES)
            flt = _search_filter(_filters(rng, accounts)) if rng.random() < 0.5 else None
            shard.query(qe.QueryRequest(limit=10, query=qe.Query.Nearest(vectors[query]),
                                        filter=_edge_filter(flt), with_payload=True))
            counts[n] += 1

    workers = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(threads)]
    started, cpu_started = time.perf_counter(), time.process_time()
    for thread in workers:
        thread.start()
    time.sleep(opts.search_s)
    stop.set()
    for thread in workers:
        thread.join(30)
    elapsed, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    store.close()
    return {"engine_rps": sum(counts) / elapsed, "engine_requests": sum(counts), "engine_cpu_s": cpu_s,
            "engine_per_cpu_s": ratio(sum(counts), cpu_s)}


def model_rate(opts: Options) -> dict:
    """The model's own single-query rate: one new text per call, one call at a time."""
    model = embedder()
    model.embed(["warm up the session"])
    count, deadline = 0, time.monotonic() + opts.search_s / 2
    started, cpu_started = time.perf_counter(), time.process_time()
    while time.monotonic() < deadline:
        model.embed([f"{QUERIES[count % len(QUERIES)]} {uuid.uuid4().hex[:8]}"])
        count += 1
    elapsed = time.perf_counter() - started
    cpu_s = time.process_time() - cpu_started
    return {"model_rps": count / elapsed, "model_texts": count, "model_cpu_s": cpu_s, "model_per_cpu_s": ratio(count, cpu_s)}


def _api(bench: Bench, opts: Options, path: str, accounts: list[int], rep: int, profile_top: dict | None) -> dict:
    stack = bench.stack("search", QDRANT_EDGE_PATH=path)
    stack.config.api_only = True  # the API alone on the loaded shard: nothing indexes it
    run: dict = {}
    try:
        process = stack.start_service("query", timeout=600)
        bench.sampler.watch("query", process.process.pid)
        import httpx

        with httpx.Client(base_url=stack.api_url, timeout=30, headers=bench.headers) as client:
            run["points"] = client.get("/v1/status").json()["points"]
            for query in QUERIES:  # warm the query-embedding cache
                client.post("/v1/search/posts", json={"query": query, "limit": 10, "mode": "semantic", "facets": []})
        cpu = bench.sampler.cpu_seconds
        before = cpu().get("query", 0.0)
        profiler = None
        if profile_top is not None and opts.profile:
            profiler = Profiler(process.process.pid, stack.config.log_dir / "query.pyspy.txt")
        warm = asyncio.run(_load(stack.api_url, bench.headers, opts, "warm", accounts, seed=rep))
        if profiler:
            profile_top["query (warm closed loop)"] = profiler.stop()
        run.update({f"warm_{k}": v for k, v in warm.items()})
        run["warm_api_cpu_s"] = cpu().get("query", 0.0) - before
        run["open_rate"] = warm["rps"] * OPEN_LOOP_SHARE
        before = cpu().get("query", 0.0)
        run.update({f"open_{k}": v for k, v in
                    asyncio.run(open_loop(stack.api_url, bench.headers, opts, run["open_rate"], accounts, rep)).items()})
        run["open_api_cpu_s"] = cpu().get("query", 0.0) - before
        before = cpu().get("query", 0.0)
        cold = asyncio.run(_load(stack.api_url, bench.headers, opts, "cold", accounts, seed=rep))
        run.update({f"cold_{k}": v for k, v in cold.items()})
        run["cold_api_cpu_s"] = cpu().get("query", 0.0) - before
    finally:
        stack.stop()
    return run


async def open_loop(api_url: str, headers: dict, opts: Options, rate: float, accounts: list[int], seed: int) -> dict:
    """Poisson arrivals at ``rate`` for search_s seconds, each request sent at its time whatever the
    earlier ones are doing; latency counts from the scheduled time."""
    import httpx

    rng = random.Random(seed * 31 + 5)
    latencies: list[float] = []
    errors = 0

    async def one(client: httpx.AsyncClient, scheduled: float, body: dict) -> None:
        nonlocal errors
        if await search_answered(client, body):
            latencies.append(time.perf_counter() - scheduled)
        else:
            errors += 1

    limits = httpx.Limits(max_connections=OPEN_LOOP_CONNECTIONS, max_keepalive_connections=OPEN_LOOP_CONNECTIONS)
    cpu_started = time.process_time()
    async with httpx.AsyncClient(base_url=api_url, timeout=60, limits=limits, headers=headers) as client:
        started = time.perf_counter()
        scheduled, tasks, late = started, [], 0
        while scheduled < started + opts.search_s:
            scheduled += rng.expovariate(rate)
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.005:
                late += 1  # the generator itself fell behind: its CPU figure says why
            body = {"query": rng.choice(QUERIES), "limit": 10, "mode": "semantic", "facets": []}
            if rng.random() < 0.5:
                body["filters"] = _filters(rng, accounts)
            tasks.append(asyncio.create_task(one(client, scheduled, body)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    summary = latency_summary(latencies)
    return {"p50_ms": summary["p50_ms"], "p95_ms": summary["p95_ms"], "p99_ms": summary["p99_ms"],
            "rps": len(latencies) / elapsed, "errors": errors, "requests": len(tasks),
            "sent_late": late, "generator_cpu_s": time.process_time() - cpu_started}


def _search_filter(body: dict):
    """The API's filter body as the store filter the API builds from it (services.query.posts.post_filter)."""
    from shared.vectorstore import SearchFilter

    after = body.get("published_after")
    return SearchFilter(platform=body.get("platform"), account_id=body.get("account_id"),
                        min_views=body.get("min_views"), min_likes=body.get("min_likes"),
                        published_after=int(datetime.fromisoformat(after + "+00:00").timestamp() * 1000)
                        if after else None)


def _ratios(run: dict) -> None:
    run["api_over_engine"] = ratio(run["warm_rps"], run["engine_rps"])
    run["api_per_cpu_s"] = ratio(run["warm_requests"], run["warm_api_cpu_s"])
    run["api_over_engine_per_cpu_s"] = ratio(run["api_per_cpu_s"], run["engine_per_cpu_s"])
    run["cold_over_model"] = ratio(run["cold_rps"], run["model_rps"])
    # On a machine shared with other work the wall-clock rates say how much of the cores each side got;
    # per CPU second they say what a request costs.
    run["cold_per_cpu_s"] = ratio(run["cold_requests"], run["cold_api_cpu_s"])
    run["cold_over_model_per_cpu_s"] = ratio(run["cold_per_cpu_s"], run["model_per_cpu_s"])
    run["open_generator_cpu_share"] = ratio(run["open_generator_cpu_s"], run["open_requests"] / run["open_rate"]
                                            if run["open_rate"] else math.nan)


def _method(opts: Options, info: dict) -> str:
    return (f"{info['points']:,} points in an edge shard loaded directly (HNSW built). Engine: the shard opened "
            f"in the benchmark process, the same 30 query vectors and filter mix, limit 10 with payloads, "
            f"{API_THREADS} threads (the API's request threadpool), {opts.search_s:.0f} s. Model: one new text per "
            f"embed call, {opts.search_s / 2:.0f} s. API (services.query.main alone on the shard): warm = the 30 "
            f"queries' vectors cached; closed loop = {opts.search_clients} httpx clients, each sends when its last "
            f"returned, {opts.search_s:.0f} s; open loop = Poisson arrivals at {OPEN_LOOP_SHARE:.0%} of that "
            f"closed-loop rate, not waiting for responses, latency from the scheduled send time, with the load "
            f"generator's CPU seconds; cold = every query text new (the model runs), closed loop. Half the "
            f"requests carry filters (platform, min_views, published_after, account_id list, combined); "
            f"mode=semantic, no facets. Everything runs on the same 2-core machine. Points: " + _points_note(info))


__all__ = ["search", "engine_rate", "model_rate", "open_loop"]
