"""The six benchmarks. Each returns {"method", "runs", "summary", "notes"}; run.py orders them,
repeats them and writes the report."""

from __future__ import annotations

import asyncio
import math
import random
import threading
import time
import uuid
from dataclasses import dataclass

import numpy as np
import orjson
import pymysql
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from bench.harness import DATABASE, Bench, Profiler, cpu_used_between, log
from bench.stats import latency_summary, median, median_of_runs, percentile, ratio
from shared.embedding import load_text_embedder
from shared.events import MAX_TEXT_CHARS, content_hash


@dataclass
class Options:
    repeats: int = 3
    quick: bool = False
    pipeline_posts: int = 2000  # benchmark 1: long enough that the first batch's start-up does not dominate
    freshness_rate: float = 50.0  # benchmark 3
    freshness_s: float = 120.0
    search_points: int = 200_000  # benchmark 4
    search_clients: int = 50
    search_s: float = 20.0
    soak_s: float = 1800.0  # benchmark 8
    replay_warm_only: bool = False  # benchmark 5 without its cold run (the kept cache is warm)
    replay_repeats: int = 3  # benchmark 5
    profile: bool = True


def embedding_text(title: str, description: str | None) -> str:
    return f"{title}\n{(description or '')[:MAX_TEXT_CHARS]}".strip()


_EMBEDDER = None


def embedder():
    global _EMBEDDER
    if _EMBEDDER is None:
        from shared.config import ModelSettings

        model = ModelSettings()
        from bench.harness import MODEL_CACHE_DIR

        _EMBEDDER = load_text_embedder(MODEL_CACHE_DIR, batch_size=model.embedding_batch_size,
                                       intra_op_threads=model.embedding_threads)
    return _EMBEDDER


# --- 5. replay, and the live stack the other benchmarks use ----------------------------------


def full_run(bench: Bench, prefix: str, *, keep: bool, timing: dict | None = None) -> float:
    """Start cdc, viability, embedder, query on a fresh prefix and index; seconds until every
    viable post of MariaDB is searchable (service start-up included). ``timing`` gets the start-up
    part too ("startup_s": until the last service reported ready) and every process's CPU seconds at the end
    ("cpu_end", read before the stack stops: a stopped process has no CPU time to read)."""
    expected = bench.viable_count()
    stack = bench.stack(prefix)
    started = time.monotonic()
    try:
        bench.start_services(stack)
        ready = time.monotonic()
        bench.wait_points(stack, expected, timeout=7200)
        seconds = time.monotonic() - started
    except BaseException:
        stack.stop()
        raise
    if timing is not None:
        timing.update(startup_s=ready - started, stack=stack, cpu_end=bench.sampler.cpu_seconds())
    if keep:
        bench.stop_live()
        bench.live = stack
    else:
        stack.stop()
    return seconds


def ensure_live(bench: Bench) -> None:
    if bench.live is None:
        model_id = embedder().model_id
        loaded = bench.load_embedding_cache(model_id)
        log(f"starting a live pipeline ({loaded} cached vectors loaded into Redis)")
        seconds = full_run(bench, f"live{uuid.uuid4().hex[:6]}", keep=True)
        log(f"live pipeline settled in {seconds:.1f}s")
        bench.save_embedding_cache(model_id)
    log(f"summaries of the load so far done after {bench.wait_summaries_idle(bench.live):.0f}s more")


def replay(bench: Bench, opts: Options) -> dict:
    model_id = embedder().model_id
    expected = bench.viable_count()
    runs = []
    for rep in range(opts.replay_repeats):
        bench.stop_live()
        if opts.replay_warm_only:  # medium and large: the kept cache is the warm one; a cold run is the model's time
            cold = math.nan
            log(f"replay {rep + 1}/{opts.replay_repeats}: warm only, {bench.load_embedding_cache(model_id)} "
                f"kept vectors loaded, {expected} posts")
        else:
            flushed = bench.flush_embedding_cache()
            log(f"replay {rep + 1}/{opts.replay_repeats}: cold (flushed {flushed} cached vectors), {expected} posts")
            cold = full_run(bench, f"rc{rep}{uuid.uuid4().hex[:4]}", keep=False)
            log(f"  cold {cold:.1f}s; warm…")
        timing: dict = {}
        cpu_before = bench.sampler.cpu_seconds()
        warm = full_run(bench, f"rw{rep}{uuid.uuid4().hex[:4]}", keep=False, timing=timing)
        cpu = cpu_used_between(cpu_before, timing["cpu_end"])
        indexer = indexer_alone(bench, timing["stack"])
        run = {"posts": expected, "cold_s": cold, "warm_s": warm, "cold_over_warm": cold / warm,
               "warm_startup_s": timing["startup_s"], "warm_posts_per_s": expected / warm,
               # once every service is up: what a long (medium, large) replay converges to
               "warm_posts_per_s_after_startup": expected / (warm - timing["startup_s"]),
               "indexer_points_per_s": indexer["events_per_s"], "warm_cpu_s": cpu}
        run["warm_over_indexer"] = run["warm_posts_per_s"] / run["indexer_points_per_s"]
        run["warm_after_startup_over_indexer"] = run["warm_posts_per_s_after_startup"] / run["indexer_points_per_s"]
        log(f"  warm {warm:.1f}s → {cold / warm:.1f}×; warm {run['warm_posts_per_s']:.0f} posts/s "
            f"({run['warm_posts_per_s_after_startup']:.0f} after start-up), indexer alone "
            f"{run['indexer_points_per_s']:.0f} points/s → {run['warm_over_indexer']:.2f} "
            f"({run['warm_after_startup_over_indexer']:.2f})")
        runs.append(run)
    bench.save_embedding_cache(model_id)
    keys = ("cold_s", "warm_s", "cold_over_warm", "warm_startup_s", "warm_posts_per_s",
            "warm_posts_per_s_after_startup", "indexer_points_per_s", "warm_over_indexer",
            "warm_after_startup_over_indexer")
    return {
        "method": ("Full reprocess from MariaDB: cdc snapshot → viability → embedder → indexer on a new topic "
                   "prefix (new consumer groups, new viability state) and an empty edge index, timed from "
                   "starting the services until every viable post is searchable. Cold = Redis embedding cache "
                   "flushed first; warm = the cache the cold run filled. Cold and warm alternate per repeat. "
                   "Indexer alone: after the warm run stops, the indexer process (services.indexer.main, a fresh "
                   "edge store) drains the warm run's embedded topic again from offset 0 with the same consumer "
                   "group; its rate counts from its first commit (Kafka.drain_time). warm_over_indexer = warm "
                   "posts/s / indexer points/s, in the same repeat; warm_cpu_s: CPU seconds per process during "
                   "the warm run (where its time went)."),
        "runs": runs,
        "summary": {"posts": expected, **{k: median_of_runs(runs, k) for k in keys}},
    }


def indexer_alone(bench: Bench, stack) -> dict:
    """The indexer's own write rate on the topic a warm replay just embedded: its group rewound to the
    start, a fresh edge store, nothing else running."""
    prefix = stack.config.topic_prefix
    group, topic = f"{prefix}-indexer", f"{prefix}.pipeline.posts.embedded"
    rewind_group(bench, group, topic)
    process = bench.start_module(stack, "indexer-alone", "services.indexer.main", VECTOR_STORE="edge",
                                 QDRANT_EDGE_PATH=str(stack.config.root / "qdrant-indexer-alone"))
    try:
        return bench.kafka.drain_time(group, [topic], timeout=3600, alive=lambda: process.alive)
    finally:
        process.stop()


def rewind_group(bench: Bench, group: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bench.kafka.bootstrap, "log_level": 4})
    futures = admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 0)])])
    for future in futures.values():
        future.result(timeout=15)
    bench.kafka.forget(group)


# --- 1. model floor vs pipeline --------------------------------------------------------------


def model_vs_pipeline(bench: Bench, opts: Options) -> dict:
    ensure_live(bench)
    model = embedder()
    runs, profiles = [], {}
    for rep in range(opts.repeats):
        if rep:
            bench.wait_summaries_idle(bench.live)
        texts = bench.sample_texts(opts.pipeline_posts, seed=1000 + rep)
        rows = bench.new_posts(texts, tag=f"m{rep}{uuid.uuid4().hex[:4]}")
        strings = [embedding_text(r[3], r[4]) for r in rows]
        model.embed(strings[:32])  # warm-up (graph already built)
        started, cpu_started = time.perf_counter(), time.process_time()
        model.embed(strings)
        raw_s, raw_cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
        base = bench.points(bench.live.api_url)
        profilers = _profile_services(bench, ("embedder", "query"), f"m{rep}") if opts.profile and rep == 0 else {}
        cpu_before = bench.sampler.cpu_seconds()
        started = time.monotonic()
        bench.insert_posts(rows)
        inserted_s = time.monotonic() - started
        pipe_s = bench.wait_points(bench.live, base + len(rows), timeout=3600, interval=0.1) + inserted_s
        cpu = cpu_used_between(cpu_before, bench.sampler.cpu_seconds())
        profiles.update({name: profiler.stop() for name, profiler in profilers.items()})
        run = {"posts": len(rows), "raw_s": raw_s, "raw_texts_per_s": len(rows) / raw_s,
               "insert_s": inserted_s, "pipeline_s": pipe_s, "pipeline_posts_per_s": len(rows) / pipe_s,
               # where the two cores went meanwhile (the harness polls the API every 0.1 s)
               "cpu_s": cpu, "cpu_share_embedder": cpu.get("embedder", 0.0) / max(sum(cpu.values()), 1e-9),
               # per CPU second: the same comparison with what other processes on the machine took out
               "raw_cpu_s": raw_cpu_s, "raw_texts_per_cpu_s": len(rows) / raw_cpu_s,
               "embedder_posts_per_cpu_s": len(rows) / max(cpu.get("embedder", 0.0), 1e-9),
               "pipeline_posts_per_cpu_s": len(rows) / max(sum(v for k, v in cpu.items() if k != "bench-harness"),
                                                           1e-9)}
        run["pipeline_over_raw"] = run["pipeline_posts_per_s"] / run["raw_texts_per_s"]
        run["embedder_over_raw_per_cpu_s"] = run["embedder_posts_per_cpu_s"] / run["raw_texts_per_cpu_s"]
        run["pipeline_over_raw_per_cpu_s"] = run["pipeline_posts_per_cpu_s"] / run["raw_texts_per_cpu_s"]
        log(f"1. rep {rep + 1}: raw {run['raw_texts_per_s']:.0f}/s, pipeline {run['pipeline_posts_per_s']:.0f}/s "
            f"→ {run['pipeline_over_raw']:.2f}")
        runs.append(run)
    return {
        "method": (f"{opts.pipeline_posts} new posts (texts sampled from the demo data, made unique so every one "
                   "misses the cache) for viable accounts. Raw: the same texts through shared.embedding in one "
                   "process (the model floor). Pipeline: INSERT into MariaDB (500 rows per transaction) until "
                   "the last one is searchable, all services running. Raw and pipeline alternate per repeat; "
                   "the ratio is taken per repeat, then the median. cpu_s: CPU time per process during the "
                   "pipeline part. Per CPU second (robust to other load on the machine): raw = texts / CPU time "
                   "of the embedding call (all its threads); embedder = posts / the embedder process's CPU time; "
                   "pipeline = posts / CPU time of every pipeline process."),
        "runs": runs,
        "summary": {k: median_of_runs(runs, k) for k in ("raw_texts_per_s", "pipeline_posts_per_s",
                                                          "pipeline_over_raw", "raw_texts_per_cpu_s",
                                                          "embedder_posts_per_cpu_s", "embedder_over_raw_per_cpu_s",
                                                          "pipeline_over_raw_per_cpu_s")},
        "profile_top": profiles,  # py-spy during the first repeat's pipeline part
    }


def _profile_services(bench: Bench, names: tuple[str, ...], tag: str) -> dict[str, Profiler]:
    return {name: Profiler(bench.live.services[name].process.pid, bench.live.config.log_dir / f"{name}-{tag}.pyspy.txt")
            for name in names if name in bench.live.services}


# --- 3. freshness under steady load ------------------------------------------------------------


def freshness(bench: Bench, opts: Options) -> dict:
    ensure_live(bench)
    runs = []
    for rep in range(opts.repeats):
        if rep:
            bench.wait_summaries_idle(bench.live)
        runs.append(_freshness_once(bench, opts, rep))
        log(f"3. rep {rep + 1}: p50 {runs[-1]['p50_ms']:.0f} ms, p95 {runs[-1]['p95_ms']:.0f} ms, "
            f"stages {runs[-1]['stages_ms']}, cpu s {runs[-1]['cpu_s']}")
    summary = {k: median_of_runs(runs, k) for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms", "achieved_rate")}
    return {
        "method": (f"{opts.freshness_rate:.0f} posts/s, one INSERT per transaction, for {opts.freshness_s:.0f} s "
                   "into the live pipeline (texts unique, so each is embedded). Searchable time = the first "
                   "moment (polled every 20 ms) the indexer's committed offset passes the post's message in the "
                   "embedded topic; the indexer commits only after the edge shard flushed the write, and a search "
                   "sees it from then on. Latency = searchable time − INSERT commit returned. stages_ms splits "
                   "it by the produce time of each post's message on the viable and embedded topics; cpu_s is "
                   "the CPU time each process used during the run."),
        "runs": [{**r, "latencies_s": r["latencies_s"]} for r in runs],
        "summary": summary,
    }


def _freshness_once(bench: Bench, opts: Options, rep: int) -> dict:
    prefix = bench.live.config.topic_prefix
    embedded_topic = f"{prefix}.pipeline.posts.embedded"
    total = int(opts.freshness_rate * opts.freshness_s)
    rows = bench.new_posts(bench.sample_texts(total, seed=2000 + rep), tag=f"f{rep}{uuid.uuid4().hex[:4]}")
    wanted = {r[0] for r in rows}
    committed_at: dict[int, float] = {}
    committed_wall: dict[int, float] = {}
    offset_of: dict[int, int] = {}
    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    viable_topic = f"{prefix}.pipeline.posts.viable"
    reader = Consumer({"bootstrap.servers": bench.kafka.bootstrap, "group.id": f"bench-fresh-{uuid.uuid4().hex}",
                       "auto.offset.reset": "latest", "enable.auto.commit": False})
    reader.subscribe([embedded_topic, viable_topic])
    deadline = time.monotonic() + 30
    while not reader.assignment() and time.monotonic() < deadline:
        reader.poll(0.1)
    start_offsets = bench.kafka.end_offsets([embedded_topic])
    # Wall-clock times a post's message was produced to each topic (the producer's CreateTime).
    produced_at: dict[str, dict[int, float]] = {"viable": {}, "embedded": {}}

    def read() -> None:
        while not stop.is_set():
            for message in reader.consume(500, 0.1):
                if message.error() or not message.value():
                    continue
                event = orjson.loads(message.value())
                kind = event.get("kind")
                if kind not in ("post.upsert", "post.embedded") or event["post"]["id"] not in wanted:
                    continue
                post_id = event["post"]["id"]
                produced_at["embedded" if kind == "post.embedded" else "viable"][post_id] = message.timestamp()[1] / 1000
                if kind == "post.embedded":
                    offset_of[post_id] = message.offset()

    def poll_commits() -> None:
        group = f"{prefix}-indexer"
        while not stop.is_set():
            samples.append((time.monotonic(), bench.kafka.committed(group, [embedded_topic])))
            time.sleep(0.02)

    threads = [threading.Thread(target=read, daemon=True), threading.Thread(target=poll_commits, daemon=True)]
    for thread in threads:
        thread.start()
    connection = pymysql.connect(host="127.0.0.1", port=bench.ports["mariadb"], user="root", database=DATABASE,
                                 autocommit=True, charset="utf8mb4")
    statement = ("INSERT INTO posts (id, account_id, platform, title, description, url, published_at, views,"
                 " likes, comments, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)")
    cpu_before = bench.sampler.cpu_seconds()
    started = time.monotonic()
    with connection.cursor() as cursor:
        for i, row in enumerate(rows):
            delay = started + i / opts.freshness_rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            cursor.execute(statement, row)
            committed_at[row[0]] = time.monotonic()
            committed_wall[row[0]] = time.time()
    connection.close()
    achieved = total / (time.monotonic() - started)
    wait_until = time.monotonic() + 120
    while time.monotonic() < wait_until:
        if len(offset_of) == total and samples and samples[-1][1] > max(offset_of.values()):
            break
        time.sleep(0.2)
    stop.set()
    cpu = cpu_used_between(cpu_before, bench.sampler.cpu_seconds())
    for thread in threads:
        thread.join(5)
    reader.close()
    latencies = []
    for post_id, offset in offset_of.items():
        seen = next((t for t, committed in samples if committed > offset), None)
        if seen is not None:
            latencies.append(seen - committed_at[post_id])
    missing = total - len(latencies)
    return {"posts": total, "measured": len(latencies), "missing": missing, "achieved_rate": achieved,
            "start_offset": start_offsets, **latency_summary(latencies), "latencies_s": [round(x, 4) for x in latencies],
            "stages_ms": _stage_latencies(committed_wall, produced_at), "cpu_s": cpu}


def _stage_latencies(committed: dict[int, float], produced: dict[str, dict[int, float]]) -> dict[str, dict]:
    """Where the commit → searchable time goes: p50/p95 of commit → on the viable topic (cdc + viability)
    and viable → on the embedded topic (embedder), from the messages' produce times."""
    hops = {"cdc+viability": [(produced["viable"][p] - committed[p]) for p in produced["viable"] if p in committed],
            "embedder": [(produced["embedded"][p] - produced["viable"][p]) for p in produced["embedded"]
                         if p in produced["viable"]]}
    return {hop: {"p50": round(percentile(values, 50) * 1000), "p95": round(percentile(values, 95) * 1000)}
            for hop, values in hops.items() if values}


# --- 2. non-model overhead per process ----------------------------------------------------------


def overhead(bench: Bench, opts: Options) -> dict:
    bench.stop_live()
    model_id = embedder().model_id
    cached = bench.load_embedding_cache(model_id)
    runs, profiles = [], {}
    for rep in range(opts.repeats):
        run, prof = _stages_once(bench, opts, rep, profile=opts.profile and rep == 0)
        profiles.update(prof)
        if rep == 0 and not cached:  # the first run on this scale embedded every post: keep the vectors
            run["embedder_cache_was_cold"] = True
            bench.save_embedding_cache(model_id)
        log("2. rep %d: %s" % (rep + 1, ", ".join(f"{k} {v:.0f}" for k, v in run.items() if k.endswith("_per_s"))))
        runs.append(run)
    keys = sorted({k for r in runs for k in r if k.endswith("_per_s") or k.endswith("speedup")})
    return {
        "method": ("Each process alone on pre-filled topics of a fresh topic prefix, one after the other: cdc "
                   "takes a snapshot of all of MariaDB (accounts + posts) into the source topics; viability "
                   "reads them all twice (bench.viability_pass, no cdc running). The first pass fills its Redis "
                   "state, meeting accounts and posts in whatever order the two topics interleave (a post seen "
                   "before its account is not forwarded; the snapshot request that re-reads it is not served); "
                   "the measured second pass, with a new consumer group over the filled state, is the steady "
                   "state of a live pipeline and forwards every viable post. The embedder reads that output "
                   "with every vector already in Redis (model stubbed out by a fully warm cache); the indexer "
                   "(own process, edge store) reads the embedder's output. "
                   "Rate = messages between the group's first commit and the end / that time (start-up and "
                   "group join excluded); cdc: watermark growth of its topics. viability_baseline = the same "
                   "viability code with one Redis call per fact (the code before pipelining), the same second "
                   "pass over the same state, in the same run."),
        "runs": runs,
        "summary": {k: median_of_runs(runs, k) for k in keys},
        "profile_top": profiles,
    }


def _stages_once(bench: Bench, opts: Options, rep: int, profile: bool) -> tuple[dict, dict]:
    prefix = f"st{rep}{uuid.uuid4().hex[:5]}"
    stack = bench.stack(prefix)
    db = DATABASE
    sources = [f"{prefix}.{db}.accounts", f"{prefix}.{db}.posts"]
    viable = f"{prefix}.pipeline.posts.viable"
    embedded = f"{prefix}.pipeline.posts.embedded"
    run, profiles = {}, {}
    rows = bench.sql("SELECT (SELECT COUNT(*) FROM accounts) + (SELECT COUNT(*) FROM posts)")[0][0]
    try:
        cdc = stack.start_service("cdc", wait=False)
        bench.sampler.watch("cdc", cdc.process.pid)
        deadline = time.monotonic() + 3600
        while b'"streaming binlog"' not in cdc.log_path.read_bytes():  # logged after the snapshot's flush
            if not cdc.alive or time.monotonic() > deadline:
                raise RuntimeError(cdc.tail())
            time.sleep(0.05)
        run["cdc_events_per_s"] = rows / _snapshot_seconds(cdc.log_path)
        run["cdc_events"] = rows
        cdc.stop()

        def stage(name: str, module: str | None, group: str, topics: list[str], **env: str) -> dict:
            if module is None:
                process = stack.start_service(name, timeout=300)
                bench.sampler.watch(name, process.process.pid)
            else:
                process = bench.start_module(stack, name, module, **env)
            profiler = Profiler(process.process.pid, stack.config.log_dir / f"{name}.pyspy.txt") if profile else None
            result = bench.kafka.drain_time(group, topics, timeout=3600, alive=lambda: process.alive)
            if profiler:
                profiles[name] = profiler.stop()
            process.stop()
            return result

        def viability_pass(name: str, group: str, output: str, **env: str) -> dict:
            return stage(name, "bench.viability_pass", group, sources, BENCH_VIABILITY_GROUP=group,
                         BENCH_VIABILITY_OUTPUT=output, **env)

        first = viability_pass("viability-first-pass", f"{prefix}-viability-first", f"{viable}.first-pass")
        run["viability_first_pass_events_per_s"] = first["events_per_s"]
        v = viability_pass("viability", f"{prefix}-viability", viable)
        run["viability_events_per_s"] = v["events_per_s"]
        run["viability_events"] = v["total"]
        e = stage("embedder", None, f"{prefix}-embedder", [viable])
        run["embedder_events_per_s"] = e["events_per_s"]
        run["embedder_events"] = e["total"]
        i = stage("indexer", "services.indexer.main", f"{prefix}-indexer", [embedded],
                  VECTOR_STORE="edge", QDRANT_EDGE_PATH=str(stack.config.root / "qdrant-indexer"))
        run["indexer_events_per_s"] = i["events_per_s"]
        run["indexer_events"] = i["total"]
        b = viability_pass("viability-baseline", f"{prefix}-viability-baseline", f"{viable}.baseline",
                           BENCH_VIABILITY_ONE_CALL_PER_FACT="1")
        run["viability_baseline_events_per_s"] = b["events_per_s"]
        run["viability_speedup"] = run["viability_events_per_s"] / b["events_per_s"]
    finally:
        stack.stop()
    return run, profiles


def _snapshot_seconds(log_path) -> float:
    """From cdc's own log: "taking a consistent snapshot" → "streaming binlog" (both after start-up)."""
    from datetime import datetime

    stamps = {}
    for line in log_path.read_text().splitlines():
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        event = entry.get("event", "")
        if "snapshot" in event and "taking" in event or event == "streaming binlog":
            stamps.setdefault("start" if event != "streaming binlog" else "end",
                              datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00")))
    return (stamps["end"] - stamps["start"]).total_seconds()


# --- 4. search API ---------------------------------------------------------------------------------

QUERIES = [
    "easy vegan dinner recipes", "leg day workout to build muscle", "budget travel itinerary hidden beaches",
    "best mirrorless camera for beginners", "how to start investing with little money", "skincare routine for dry skin",
    "small apartment makeover ideas", "sourdough bread for beginners", "learn python programming fast",
    "marathon training plan", "cheap healthy meal prep", "home office desk setup tour", "indie game review",
    "gardening tips for tomatoes", "wedding makeup tutorial", "electric car road trip", "guitar chords for songs",
    "minimalist wardrobe essentials", "dog training basics for puppies", "productivity tips for students",
    "street food tour in asia", "yoga for back pain", "diy furniture woodworking project", "crypto market news",
    "photography lighting tricks", "kids science experiments at home", "high protein breakfast ideas",
    "hiking gear checklist", "smartphone comparison review", "meditation for anxiety",
]


def build_search_shard(bench: Bench, opts: Options) -> tuple[str, dict]:
    """200k (by default) points with real vectors: every demo post with a vector in the on-disk
    embedding cache is one point; more points are copies of those posts with small noise added
    to the vector (re-normalised) and fresh ids, so the index is not full of exact duplicates."""
    from bench.harness import CACHE_DIR, load_npz
    from services.indexer.core import post_point_id
    from shared.vectorstore import PointRecord
    from shared.vectorstore.qdrant_edge import EdgeVectorStore

    model_id = embedder().model_id
    vectors = load_npz(bench.cache_file(model_id))
    path = CACHE_DIR / f"search-{bench.scale}-{opts.search_points}-{len(vectors)}"
    rows = bench.sql("SELECT p.id, p.account_id, p.platform, p.title, p.description, p.published_at, p.views, "
                     "p.likes, p.comments, a.handle, a.display_name, a.followers FROM posts p JOIN accounts a "
                     "ON a.id = p.account_id WHERE p.id < 900000000 ORDER BY p.id")
    base = []
    for r in rows:
        vector = vectors.get(content_hash(embedding_text(r[3], r[4])))
        if vector is not None:
            base.append((r, vector))
    info = {"points": opts.search_points, "distinct_posts_with_real_vectors": len(base),
            "cached_vectors": len(vectors), "path": str(path)}
    if (path / "READY").exists():
        return str(path), info
    if not base:
        raise RuntimeError("no cached vectors: run benchmark 5 or 1 first (they fill the cache)")
    import shutil

    shutil.rmtree(path, ignore_errors=True)
    log(f"4. building a {opts.search_points}-point edge shard from {len(base)} real vectors (once, kept in {path})")
    store = EdgeVectorStore(path)
    store.ensure_collection("posts", 384)
    rng = np.random.default_rng(7)
    batch = []
    for i in range(opts.search_points):
        r, vector = base[i % len(base)]
        if i >= len(base):
            noisy = vector + rng.normal(0, 0.03, vector.shape).astype(np.float32)
            vector = noisy / np.linalg.norm(noisy)
        published = int(r[5].replace(tzinfo=None).timestamp() * 1000) if r[5] else 0
        payload = {"post_id": i + 1, "account_id": r[1], "platform": r[2], "title": r[3],
                   "description": (r[4] or "")[:4000], "url": None, "published_at": published, "views": r[6],
                   "likes": r[7], "comments": r[8], "handle": r[9], "display_name": r[10], "followers": r[11],
                   "model_id": model_id, "source_ts_ms": published, "source_gtid": None}
        batch.append(PointRecord(id=post_point_id(i + 1), vector=vector, payload=payload))
        if len(batch) == 5000:
            store.upsert("posts", batch)
            batch = []
    store.upsert("posts", batch)
    started = time.monotonic()
    store.optimize("posts")
    info["optimize_s"] = time.monotonic() - started
    store.close()
    (path / "READY").write_text("ok")
    return str(path), info


def _points_note(info: dict) -> str:
    if info.get("from"):
        return f"{info['points']:,} points: {info['from']} (every viable post once, its real vector)."
    return (f"{info['distinct_posts_with_real_vectors']:,} demo posts with their real vectors, tiled to "
            f"{info['points']:,} points; copies get N(0, 0.03) noise per dimension, re-normalised, and new ids "
            "(real payloads of the source posts).")


def _filters(rng: random.Random, accounts: list[int]) -> dict:
    choice = rng.randrange(6)
    if choice == 0:
        return {"platform": [rng.choice(["youtube", "instagram", "tiktok"])]}
    if choice == 1:
        return {"min_views": rng.choice([1000, 10000, 100000])}
    if choice == 2:
        return {"published_after": "2025-01-01T00:00:00"}
    if choice == 3:
        return {"account_id": rng.sample(accounts, min(5, len(accounts)))}
    if choice == 4:
        return {"platform": ["youtube", "tiktok"], "min_likes": 100}
    return {}


async def search_answered(client, body: dict) -> bool:
    """One search request of a load generator: True when the API answered it (200)."""
    import httpx

    try:
        return (await client.post("/v1/search/posts", json=body)).status_code == 200
    except httpx.HTTPError:
        return False


async def _load(api_url: str, headers: dict, opts: Options, mode: str, accounts: list[int], seed: int,
                rate: float | None = None) -> dict:
    """Closed loop (each client sends its next request when the last returns), or paced to ``rate``
    requests/s in all (each client waits for its next slot; a late request does not catch up)."""
    import httpx

    rng = random.Random(seed * 7 + (mode == "cold"))
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + opts.search_s

    async def client_loop(client: httpx.AsyncClient, n: int) -> None:
        nonlocal errors
        count = 0
        interval = opts.search_clients / rate if rate else 0.0
        next_at = time.monotonic() + rng.random() * interval  # spread the clients' first requests
        while time.monotonic() < deadline:
            if interval:
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                next_at = max(next_at + interval, time.monotonic())
            query = rng.choice(QUERIES)
            if mode == "cold":
                query = f"{query} {uuid.uuid4().hex[:8]}"
            body = {"query": query, "limit": 10, "mode": "semantic", "facets": []}
            if rng.random() < 0.5:
                body["filters"] = _filters(rng, accounts)
            started = time.perf_counter()
            if await search_answered(client, body):
                latencies.append(time.perf_counter() - started)
            else:
                errors += 1
            count += 1

    limits = httpx.Limits(max_connections=opts.search_clients, max_keepalive_connections=opts.search_clients)
    async with httpx.AsyncClient(base_url=api_url, timeout=60, limits=limits, headers=headers) as client:
        started = time.monotonic()
        await asyncio.gather(*(client_loop(client, n) for n in range(opts.search_clients)))
        elapsed = time.monotonic() - started
    summary = latency_summary(latencies)
    return {"p50_ms": summary["p50_ms"], "p95_ms": summary["p95_ms"], "p99_ms": summary["p99_ms"],
            "rps": len(latencies) / elapsed, "errors": errors, "requests": len(latencies)}


__all__ = ["Options", "replay", "model_vs_pipeline", "freshness", "overhead", "build_search_shard", "median",
           "percentile", "ratio"]
