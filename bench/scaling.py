"""Benchmark 7: the pipeline end to end on one seed, stage by stage, and two stages next to their engine.

Each stage runs alone on what the previous one left in Kafka (a fresh topic prefix), so its wall time,
CPU seconds, events/s and peak RSS are its own: cdc's snapshot of MariaDB; viability over the whole
snapshot, with cdc still running to serve the incremental snapshots viability asks for (every newly
viable account's posts); the embedder with the embedding cache warmed beforehand (the model's time at
a scale is texts ÷ the model's rate, measured in the same run); the indexer into an edge shard; the
query process starting on that shard; its summarizer draining the accounts queue. After each stage,
Redis's used memory; after the indexer, the shard's size on disk.

Engine ratios, each against the engine in the same run: the indexer's points/s vs qdrant-edge's own
bulk upsert of the same points (read back from the indexer's shard, exactly as written: vectors,
keyword vectors, payloads with labels; then built and written straight into a fresh shard); the search API's warm throughput vs the engine's in-process throughput for the same
query vectors, filters and limit.
"""

from __future__ import annotations

import asyncio
import math
import os
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from bench.benchmarks import QUERIES, Options, _load, _snapshot_seconds, embedder, embedding_text
from bench.harness import DATABASE, VIABLE_POSTS_PARAMS, VIABLE_POSTS_SQL, Bench, log
from bench.scaling_report import model_time_s, served_accounts, signal_accounts, stage_row, summaries_from_log
from bench.search_api import engine_rate
from shared.events import content_hash

ENGINE_SEARCH_THREADS = 4
SHOWCASE_POSTS = 5_000  # issue 14: the summarizer's queue for accounts this large drains in a stated time


def scaling(bench: Bench, opts: Options) -> dict:
    bench.stop_live()
    prefix = f"sc{uuid.uuid4().hex[:6]}"
    shard_root = bench.root / "runs" / f"{prefix}-qdrant"
    stack = bench.stack(prefix, QDRANT_EDGE_PATH=str(shard_root), SUMMARIZER_DEBOUNCE_S="1")
    stack.config.api_only = True  # the indexer runs as its own stage; the API only opens the shard
    db = DATABASE
    sources = [f"{prefix}.{db}.accounts", f"{prefix}.{db}.posts"]
    viable_topic, embedded_topic = f"{prefix}.pipeline.posts.viable", f"{prefix}.pipeline.posts.embedded"
    accounts, posts = bench.sql("SELECT (SELECT COUNT(*) FROM accounts), (SELECT COUNT(*) FROM posts)")[0]
    viable_posts, viable_accounts = bench.viable_count(), len(bench.viable_accounts())
    summary: dict = {"posts": posts, "accounts": accounts, "viable_posts": viable_posts,
                     "viable_accounts": viable_accounts}
    stages: dict[str, dict] = {}
    redis_mb: dict[str, float] = {}
    notes: list[str] = []

    model_id = embedder().model_id
    model = warm_cache(bench, summary)
    redis_mb["warm cache"] = _redis_used_mb(bench)
    try:
        stages["cdc_snapshot"], cdc = _cdc_snapshot(bench, stack, posts + accounts)
        redis_mb["cdc_snapshot"] = _redis_used_mb(bench)
        stages["viability"], signals = _viability(bench, stack, sources, cdc)
        summary.update(signals)
        redis_mb["viability"] = _redis_used_mb(bench)
        cdc.stop()
        cached_before = _count_keys(bench, f"emb:{model_id}:*")
        stages["embedder"] = _drained_stage(bench, stack, "embedder", f"{prefix}-embedder", [viable_topic])
        stages["embedder"]["cache_misses"] = _count_keys(bench, f"emb:{model_id}:*") - cached_before
        redis_mb["embedder"] = _redis_used_mb(bench)
        stages["indexer"] = _drained_stage(bench, stack, "indexer", f"{prefix}-indexer", [embedded_topic],
                                           module="services.indexer.main")
        summary["index_disk_mb"], summary["index_apparent_mb"] = _disk_mb(shard_root)
        redis_mb["indexer"] = _redis_used_mb(bench)
        stages["query_startup"], stages["summarizer_drain"], search = _query(bench, stack, opts, viable_posts)
        redis_mb["query"] = _redis_used_mb(bench)
        summary["points"] = search.pop("points")
        summary.update(search)
        summary.update(_indexer_vs_engine(bench, shard_root, stages["indexer"]["events_per_s"],
                                          stages["indexer"]["cpu_s_after_ready"]))
        summary.update(_search_engine(shard_root, opts, bench, summary))
        bench.scaling_shard = shard_root  # benchmark 4 measures search on it when run after this one
    finally:
        stack.stop()
    summary["redis_used_mb"] = max(redis_mb.values())
    summary["model_texts_per_s"] = model["texts_per_s"]
    summary["model_s_at_this_scale"] = model_time_s(summary["distinct_texts"], model["texts_per_s"])
    summary["cdc_events_per_s"] = stages["cdc_snapshot"]["events_per_s"]
    summary["viability_events_per_s"] = stages["viability"]["events_per_s"]
    summary["indexer_points_per_s"] = stages["indexer"]["events_per_s"]
    summary["query_startup_s"] = stages["query_startup"]["wall_s"]
    summary["summarizer_drain_s"] = stages["summarizer_drain"]["wall_s"]
    summary["showcase_accounts"] = stages["summarizer_drain"]["showcase_accounts"]
    summary["showcase_summarized_after_s"] = stages["summarizer_drain"]["showcase_summarized_after_s"]
    summary["all_viable_indexed"] = summary["points"] >= viable_posts
    # Upserts viability forwarded per viable post: > 1 when an incremental snapshot re-read posts it had
    # already forwarded (the embedder and indexer then do that work twice; the points stay right).
    summary["forwarded_per_viable_post"] = stages["embedder"]["events"] / max(viable_posts, 1)
    if stages["embedder"].get("cache_misses"):
        notes.append(f"{stages['embedder']['cache_misses']} texts missed the warmed cache: the embedder's time "
                     "includes the model for them.")
    for stage, row in stages.items():
        peaks = bench.sampler.peaks.get(row.pop("process", stage), {})
        row["peak_rss_mb"] = peaks.get(f"7.{stage}")
    return {"method": __doc__.split("\n\n", 1)[1].replace("\n", " "), "summary": summary, "stages": stages,
            "redis_used_mb_after": redis_mb, "model": model, "notes": notes, "runs": []}


# --- the embedding cache, warmed once per scale and kept in .dev/bench-cache ----------------------


def warm_cache(bench: Bench, summary: dict) -> dict:
    """Load the kept vectors into Redis; embed (in this process) the viable texts still missing and keep
    them; measure the model's rate on what was embedded, or on a fixed sample when nothing was."""
    model = embedder()
    loaded = bench.load_embedding_cache(model.model_id)
    rows = bench.sql(f"SELECT p.title, p.description FROM ({VIABLE_POSTS_SQL}) v JOIN posts p USING (id)",
                     VIABLE_POSTS_PARAMS)
    texts = {content_hash(t): t for t in (embedding_text(title, description) for title, description in rows)}
    summary["distinct_texts"] = len(texts)
    known = {key.decode().rsplit(":", 1)[1] for key in bench.redis.scan_iter(match=f"emb:{model.model_id}:*",
                                                                              count=5000)}
    missing = [texts[h] for h in texts if h not in known]
    # The kept file holds every scale's vectors; Redis keeps only this seed's, so its memory is this scale's.
    others = [f"emb:{model.model_id}:{h}" for h in known if h not in texts]
    for start in range(0, len(others), 5000):
        bench.redis.unlink(*others[start:start + 5000])
    log(f"7. cache: {loaded} vectors loaded, {len(texts)} distinct viable texts, {len(missing)} to embed")
    sample = missing or list(texts.values())[:300]
    model.embed(sample[:16])  # session warm-up
    started = time.perf_counter()
    cpu = time.process_time()
    vectors = []
    for start in range(0, len(sample), 512):
        vectors.extend(model.embed(sample[start:start + 512]))
        if missing and start % 2048 == 0:
            log(f"7. embedded {start + len(sample[start:start + 512])}/{len(sample)}")
    seconds = time.perf_counter() - started
    if missing:
        prefix = f"emb:{model.model_id}:"
        with bench.redis.pipeline(transaction=False) as pipe:
            for text, vector in zip(missing, vectors, strict=True):
                pipe.set(prefix + content_hash(text), vector.astype("<f4").tobytes())
            pipe.execute()
        bench.save_embedding_cache(model.model_id)
    return {"texts": len(sample), "seconds": seconds, "cpu_s": time.process_time() - cpu,
            "texts_per_s": len(sample) / seconds, "embedded_now": len(missing), "loaded_from_disk": loaded,
            "other_scales_vectors_dropped": len(others)}


# --- the stages ------------------------------------------------------------------------------------


def _cdc_snapshot(bench: Bench, stack, rows: int):
    bench.sampler.bench = "7.cdc_snapshot"
    started = time.monotonic()
    cdc = stack.start_service("cdc", wait=False)
    bench.sampler.watch("cdc", cdc.process.pid)
    deadline = started + 7200
    while b'"streaming binlog"' not in cdc.log_path.read_bytes():  # logged after the snapshot's flush
        if not cdc.alive or time.monotonic() > deadline:
            raise RuntimeError(cdc.tail())
        time.sleep(0.05)
    wall = time.monotonic() - started
    snapshot_s = _snapshot_seconds(cdc.log_path)
    bench.sampler.sample()
    row = stage_row(wall_s=wall, cpu_s=bench.sampler.cpu_seconds().get("cdc"), events=rows,
                    events_per_s=rows / snapshot_s, peak_rss_mb=None, snapshot_s=snapshot_s, process="cdc")
    log(f"7. cdc snapshot: {rows} rows in {snapshot_s:.1f}s ({row['events_per_s']:.0f}/s), wall {wall:.1f}s")
    return row, cdc


def _viability(bench: Bench, stack, sources: list[str], cdc):
    """Real viability service with cdc still running: done when viability has consumed everything in
    the source topics and cdc has served every account the signals asked for, twice in a row."""
    bench.sampler.bench = "7.viability"
    prefix = stack.config.topic_prefix
    group, signal_topic = f"{prefix}-viability", f"{prefix}-signal"
    cpu_cdc_before = bench.sampler.cpu_seconds().get("cdc", 0.0)
    started = time.monotonic()
    process = stack.start_service("viability", timeout=600)
    ready = time.monotonic()
    bench.sampler.watch("viability", process.process.pid)
    first_commit, caught_up, settled, deadline = None, None, 0, started + 7200
    requested: set[int] = set()
    served = 0
    while settled < 2:
        if time.monotonic() > deadline or not process.alive or not cdc.alive:
            raise RuntimeError(f"viability did not settle: {process.tail()}\n{cdc.tail()}")
        committed = bench.kafka.committed(group, sources)
        if committed and first_commit is None:
            first_commit = (time.monotonic(), committed)
        end = bench.kafka.end_offsets(sources)
        if committed and committed >= end and caught_up is None:  # the snapshot itself consumed
            caught_up = (time.monotonic(), committed)
        requested = signal_accounts(_signal_requests(bench, signal_topic))
        served = served_accounts(cdc.log_path.read_text(errors="replace").splitlines())
        done = committed and committed >= end and served >= len(requested)
        settled = settled + 1 if done else 0
        time.sleep(0.5 if caught_up else 0.05)
    wall = time.monotonic() - started - 0.5 * settled  # the confirming polls are not work
    events = bench.kafka.count_messages(sources)
    total_offsets = bench.kafka.committed(group, sources)
    # Rate while catching up with the snapshot, from the first commit (start-up and group join out);
    # offsets → records as in Kafka.drain_time (the local broker's offsets are not dense).
    if caught_up[1] > first_commit[1]:
        snapshot_events = events * (caught_up[1] - first_commit[1]) / total_offsets
        rate = snapshot_events / max(caught_up[0] - first_commit[0], 1e-3)
    else:  # consumed in the first commit (a tiny seed): from ready, group join included
        rate = events * caught_up[1] / total_offsets / max(caught_up[0] - ready, 1e-3)
    cpu = bench.sampler.cpu_seconds()
    process.stop()
    row = stage_row(wall_s=wall, cpu_s=cpu.get("viability"), events=events, events_per_s=rate, peak_rss_mb=None,
                    signals_settled_after_catch_up_s=round(time.monotonic() - caught_up[0] - 0.5 * settled, 2),
                    cdc_cpu_s_serving_signals=round(cpu.get("cdc", 0.0) - cpu_cdc_before, 2))
    log(f"7. viability: {events} events, {rate:.0f}/s while catching up, {len(requested)} accounts signalled, "
        f"{served} served, wall {wall:.1f}s")
    return row, {"signalled_accounts": len(requested), "served_accounts": served,
                 "all_signals_served": served >= len(requested)}


def _signal_requests(bench: Bench, topic: str) -> list[list[int]]:
    from services.cdc.core import parse_snapshot_signal

    consumer = Consumer({"bootstrap.servers": bench.kafka.bootstrap, "group.id": f"bench-signals-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    consumer.assign([TopicPartition(topic, 0, -2)])
    requests, deadline = [], time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):  # empty until the fetch starts: wait for EOF
                if message.error() is not None:
                    if message.error().code() == -191:  # _PARTITION_EOF
                        return requests
                    continue
                for request in parse_snapshot_signal(message.value(), database=DATABASE, tables={"accounts", "posts"}):
                    requests.append(list(request.values))
    finally:
        consumer.close()
    return requests


def _drained_stage(bench: Bench, stack, name: str, group: str, topics: list[str], module: str | None = None) -> dict:
    bench.sampler.bench = f"7.{name}"
    started = time.monotonic()
    if module is None:
        process = stack.start_service(name, timeout=600)
        bench.sampler.watch(name, process.process.pid)
    else:
        process = bench.start_module(stack, name, module)
    cpu_ready = bench.sampler.cpu_seconds().get(name, 0.0)  # start-up (imports, models) is not per event
    drained = bench.kafka.drain_time(group, topics, timeout=7200, alive=lambda: process.alive)
    wall = time.monotonic() - started
    bench.sampler.sample()
    cpu = bench.sampler.cpu_seconds().get(name)
    process.stop()
    log(f"7. {name}: {drained['total']} events, {drained['events_per_s']:.0f}/s, wall {wall:.1f}s, cpu {cpu}s")
    return stage_row(wall_s=wall, cpu_s=cpu, events=drained["total"], events_per_s=drained["events_per_s"],
                     peak_rss_mb=None, drain_s=drained["seconds"], cpu_s_after_ready=round((cpu or 0.0) - cpu_ready, 2))


def _query(bench: Bench, stack, opts: Options, expected: int):
    """The summarizer's drain in the edge host (the API with the store's writers: its indexer loop idles on
    the drained topic, its summarizer summarizes every account the embedded topic touched until the queue
    is empty), then start-up of the query process alone on the shard (spawn → API answers), then the warm
    search load. The API alone has no summarizer: measured in it, the drain waited out its deadline."""
    bench.sampler.bench = "7.summarizer_drain"
    stack.config.api_only = False
    started = time.monotonic()
    host = stack.start_service("query", timeout=1800)
    bench.sampler.watch("query", host.process.pid)
    host_ready = time.monotonic()
    summary_row = _summarizer_drain(bench, stack, host, started_at=host_ready,
                                    cpu_before=bench.sampler.cpu_seconds().get("query", 0.0))
    summary_row["host_startup_s"] = round(host_ready - started, 2)
    host.stop()
    stack.config.api_only = True
    bench.sampler.bench = "7.query_startup"
    started = time.monotonic()
    process = stack.start_service("query", timeout=1800)
    startup = time.monotonic() - started
    bench.sampler.watch("query", process.process.pid)
    bench.sampler.sample()
    cpu_startup = bench.sampler.cpu_seconds().get("query")
    points = bench.points(stack.api_url)
    log(f"7. query started on {points} points in {startup:.1f}s")
    query_row = stage_row(wall_s=startup, cpu_s=cpu_startup, events=points, events_per_s=None, peak_rss_mb=None,
                          process="query")
    query_row["events_per_s"] = None  # points per start-up second is not a rate anyone needs
    bench.sampler.bench = "7.search"
    accounts = [r[0] for r in bench.sql("SELECT id FROM accounts ORDER BY followers DESC LIMIT 200")]
    import httpx

    with httpx.Client(base_url=stack.api_url, timeout=60, headers=bench.headers) as client:
        for query in QUERIES:  # the query-embedding cache, warm as benchmark 4 has it
            client.post("/v1/search/posts", json={"query": query, "limit": 10, "mode": "semantic", "facets": []})
    cpu_before = bench.sampler.cpu_seconds().get("query", 0.0)
    load_cpu = time.process_time()
    result = asyncio.run(_load(stack.api_url, bench.headers, opts, "warm", accounts, seed=7))
    search = {"points": points, "api_warm_rps": result["rps"], "api_warm_p50_ms": result["p50_ms"],
              "api_warm_p95_ms": result["p95_ms"], "api_errors": result["errors"],
              "api_requests": result["requests"],
              "api_query_cpu_s": round(bench.sampler.cpu_seconds().get("query", 0.0) - cpu_before, 2),
              "load_generator_cpu_s": round(time.process_time() - load_cpu, 2), "search_clients": opts.search_clients,
              "search_s": opts.search_s}
    log(f"7. API warm search: {result['rps']:.0f} req/s, p95 {result['p95_ms']:.0f} ms")
    process.stop()  # the engine's own run opens the same shard, which takes one process at a time
    return query_row, summary_row, search


def _summarizer_drain(bench: Bench, stack, process, *, started_at: float, cpu_before: float) -> dict:
    """Until the summarizer wrote a summary for every account it was told about and nothing is queued:
    its accounts queue (Redis sorted sets <prefix>:summarizer:*:dirty / :processing) stays empty for
    3 s after at least one summary."""
    prefix = stack.config.topic_prefix
    deadline, quiet_since, showcase_done = started_at + 3600, None, None
    showcase = _showcase_accounts(bench)
    while time.monotonic() < deadline:
        if not process.alive:
            raise RuntimeError(process.tail())
        queued = sum(bench.redis.zcard(k) for pattern in (f"{prefix}:summarizer:*:dirty",
                                                          f"{prefix}:summarizer:*:processing")
                     for k in bench.redis.scan_iter(match=pattern))
        summaries = summaries_from_log(process.log_path.read_text(errors="replace").splitlines())
        if showcase_done is None and sum(p >= SHOWCASE_POSTS for p in summaries) >= showcase:
            showcase_done = time.monotonic() - started_at
        if summaries and queued == 0:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= 3:
                break
        else:
            quiet_since = None
        time.sleep(0.5)
    wall = (quiet_since or time.monotonic()) - started_at
    cpu = bench.sampler.cpu_seconds().get("query", 0.0) - cpu_before
    log(f"7. summarizer: {len(summaries)} accounts summarized in {wall:.1f}s (largest {max(summaries or [0])} posts)")
    return stage_row(wall_s=wall, cpu_s=round(cpu, 2), events=len(summaries), events_per_s=None, peak_rss_mb=None,
                     largest_account_posts=max(summaries or [0]), process="query",
                     accounts_summarized=len(summaries), showcase_accounts=showcase,
                     showcase_summarized=sum(p >= SHOWCASE_POSTS for p in summaries),
                     showcase_summarized_after_s=None if showcase_done is None else round(showcase_done, 1))


def _showcase_accounts(bench: Bench) -> int:
    """Viable accounts with at least SHOWCASE_POSTS viable posts: the ones the product team shows."""
    return bench.sql(f"SELECT COUNT(*) FROM (SELECT p.account_id FROM ({VIABLE_POSTS_SQL}) v JOIN posts p USING (id) "
                     f"GROUP BY p.account_id HAVING COUNT(*) >= %s) big", (*VIABLE_POSTS_PARAMS, SHOWCASE_POSTS))[0][0]


# --- close to the engine -----------------------------------------------------------------------------


def _indexer_vs_engine(bench: Bench, shard_root: Path, indexer_rate: float, indexer_cpu_s: float | None) -> dict:
    """The points the indexer wrote, read back from its shard (the query process, which held it, has
    stopped), written into a fresh edge shard with qdrant-edge directly in batches of the indexer's
    size: build (qe.Point, the payload's conversion into the engine) + update + flush per batch."""
    from bench.indexer_engine import read_points, run_engine
    from shared.config import VectorStoreSettings

    collection = next(p for p in shard_root.iterdir() if p.is_dir() and p.name.startswith("posts")
                      and not p.name.endswith("-deleted"))
    records = read_points(shard_root, collection.name)
    batch_size = VectorStoreSettings().indexer_batch_size
    with tempfile.TemporaryDirectory(dir=bench.root) as tmp:
        engine = run_engine(records, Path(tmp), batch_size)
    points, engine_s, engine_cpu_s = records, engine["wall_s"], engine["cpu_s"]
    engine_rate = len(points) / engine_s
    # Per CPU second as well: on a loaded machine the two runs get different shares of the cores,
    # CPU time per point does not depend on that share.
    indexer_per_cpu_s = len(points) / indexer_cpu_s if indexer_cpu_s else math.nan
    engine_per_cpu_s = len(points) / engine_cpu_s if engine_cpu_s else math.nan
    log(f"7. engine bulk upsert: {engine_rate:.0f} points/s (indexer {indexer_rate:.0f}/s, ratio "
        f"{indexer_rate / engine_rate:.2f})")
    return {"engine_upsert_points_per_s": engine_rate, "engine_upsert_points": len(points),
            "indexer_over_engine": indexer_rate / engine_rate,
            "engine_upsert_batch": batch_size, "engine_upsert_points_per_cpu_s": engine_per_cpu_s,
            "indexer_points_per_cpu_s": indexer_per_cpu_s,
            "indexer_over_engine_per_cpu_s": indexer_per_cpu_s / engine_per_cpu_s}


def _search_engine(shard_root: Path, opts: Options, bench: Bench, summary: dict) -> dict:
    """The engine alone, in this process: benchmark 4's engine run (the same 30 queries' vectors from the
    API's query model, the same filter mix, limit 10 with payloads) on ENGINE_SEARCH_THREADS threads."""
    if not (shard_root / "posts").is_dir():
        return {"engine_search_error": f"no posts collection under {shard_root}"}
    accounts = [r[0] for r in bench.sql("SELECT id FROM accounts ORDER BY followers DESC LIMIT 200")]
    engine = engine_rate(str(shard_root), opts, accounts, seed=7, threads=ENGINE_SEARCH_THREADS)
    engine_rps = engine["engine_rps"]
    api = summary.get("api_warm_rps", math.nan)
    # Requests per CPU second of the serving process (the API's own process; the engine's is this one),
    # robust to how much of the machine each run got.
    engine_per_cpu_s = engine["engine_per_cpu_s"]
    api_per_cpu_s = (summary.get("api_requests", 0) / summary["api_query_cpu_s"]
                     if summary.get("api_query_cpu_s") else math.nan)
    log(f"7. engine in-process search: {engine_rps:.0f} req/s (API {api:.0f}, ratio {api / engine_rps:.2f})")
    return {"engine_search_rps": engine_rps, "engine_search_threads": ENGINE_SEARCH_THREADS,
            "search_api_over_engine": api / engine_rps, "engine_search_per_cpu_s": engine_per_cpu_s,
            "api_search_per_cpu_s": api_per_cpu_s, "search_api_over_engine_per_cpu_s": api_per_cpu_s / engine_per_cpu_s}


def _count_keys(bench: Bench, pattern: str) -> int:
    return sum(1 for _ in bench.redis.scan_iter(match=pattern, count=5000))


def _redis_used_mb(bench: Bench) -> float:
    return bench.redis.info("memory")["used_memory"] / 2**20


def _disk_mb(path: Path) -> tuple[float, float]:
    """(allocated, apparent) MB under path: the engine's files are sparse (preallocated mmap segments
    and WAL), so what the disk really holds is the allocated blocks, not the files' lengths."""
    allocated = apparent = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                stat = os.stat(os.path.join(root, name))
            except OSError:
                continue
            allocated += stat.st_blocks * 512
            apparent += stat.st_size
    return allocated / 2**20, apparent / 2**20


__all__ = ["scaling", "warm_cache"]
