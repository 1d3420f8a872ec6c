"""Benchmark 8: a soak. Does any process's memory grow with the stream beyond what its state needs?

The whole pipeline (cdc, viability, embedder, the query process with its indexer and summarizer)
indexes the seed, then runs for `--soak-s` seconds (30 minutes by default) under a steady write load
whose state does not grow: every second `SOAK_RATE` new posts of viable accounts (new texts: the
model embeds them), four times as many updates to existing posts (views and likes change, the text
does not), and the deletion of the posts the load inserted a minute earlier. The medium seed's own
arrival rate (200k posts over two years) is a post every few minutes; this is ~1,500× that, and
leaves the model most of its ~65 texts/s on two cores. The index, Redis's
state and every process's working set should therefore level off; a leak shows as RSS that keeps
rising. Every process's RSS, Redis's used memory and the index's points are sampled every 10 s;
reported per process: RSS after the warm-up, at the end, the least-squares slope over the run after
the warm-up (MB per hour) and the growth in that window.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from dataclasses import dataclass, field

from bench.benchmarks import Options, embedder, full_run
from bench.harness import Bench, _rss_mb, log

SOAK_RATE = 5  # new posts per second, and as many deletes
UPDATES_PER_INSERT = 4
SAMPLE_EVERY_S = 10.0
DELETE_AFTER_S = 60.0
WARM_UP_S = 300.0  # caches fill, the first summaries run; growth is judged after this


@dataclass
class Samples:
    started: float = field(default_factory=time.monotonic)
    rows: list[dict] = field(default_factory=list)

    def add(self, values: dict) -> None:
        self.rows.append({"t_s": round(time.monotonic() - self.started, 1), **values})


def soak(bench: Bench, opts: Options) -> dict:
    bench.stop_live()
    loaded = bench.load_embedding_cache(embedder().model_id)
    log(f"8. soak: {loaded} cached vectors loaded; indexing the {bench.scale} seed")
    settle_s = full_run(bench, f"soak{uuid.uuid4().hex[:6]}", keep=True)
    stack = bench.live
    log(f"8. seed indexed in {settle_s:.0f}s; steady load {SOAK_RATE} inserts, {SOAK_RATE * UPDATES_PER_INSERT} "
        f"updates, {SOAK_RATE} deletes per second"
        f" for {opts.soak_s:.0f}s")
    pids = {name: process.process.pid for name, process in {**bench.infra.infra, **stack.services}.items()}
    samples, load = Samples(), SteadyLoad(bench, SOAK_RATE)
    stop = threading.Event()
    writer = threading.Thread(target=load.run, args=(stop,), daemon=True)
    writer.start()
    try:
        while time.monotonic() - samples.started < opts.soak_s:
            time.sleep(SAMPLE_EVERY_S)
            if not writer.is_alive():
                raise RuntimeError(f"the load stopped: {load.error!r}")
            samples.add({"rss_mb": {n: _rss_mb(p) for n, p in pids.items()},
                         "redis_mb": bench.redis.info("memory")["used_memory"] / 2**20,
                         "points": bench.points(stack.api_url), **load.counts()})
    finally:
        stop.set()
        writer.join(timeout=30)
    summary = {"seed_indexed_s": settle_s, "soak_s": opts.soak_s, "rate_per_s": SOAK_RATE, **load.counts(),
               **growth(samples.rows, WARM_UP_S)}
    return {"method": __doc__.split("\n\n", 1)[1].replace("\n", " "), "samples": samples.rows, "summary": summary}


class SteadyLoad:
    """Inserts, updates and deletes at a fixed rate, so the data's size stays level."""

    def __init__(self, bench: Bench, rate: int) -> None:
        self.bench, self.rate = bench, rate
        self.texts = bench.sample_texts(2_000, seed=8)
        self.existing = [r[0] for r in bench.sql("SELECT id FROM posts WHERE id < 900000000 ORDER BY id")]
        self.rng = random.Random(8)
        self.inserted: list[tuple[float, int]] = []
        self.n_inserted = self.n_updated = self.n_deleted = self.late_ticks = 0
        self.error: BaseException | None = None

    def counts(self) -> dict:
        return {"inserted": self.n_inserted, "updated": self.n_updated, "deleted": self.n_deleted,
                "late_ticks": self.late_ticks}

    def run(self, stop: threading.Event) -> None:
        tick = time.monotonic()
        try:
            while not stop.is_set():
                self.second(tick)
                tick += 1.0
                pause = tick - time.monotonic()
                if pause > 0:
                    stop.wait(pause)
                else:
                    self.late_ticks += 1  # the source could not take the load: reported, not hidden
        except BaseException as exc:  # noqa: BLE001 - the sampler reports it and stops the soak
            self.error = exc

    def second(self, now: float) -> None:
        texts = [self.texts[self.rng.randrange(len(self.texts))] for _ in range(self.rate)]
        rows = self.bench.new_posts(texts, f"soak{int(now)}")
        self.bench.insert_posts(rows)
        self.inserted.extend((now, row[0]) for row in rows)
        self.n_inserted += len(rows)
        ids = [self.existing[self.rng.randrange(len(self.existing))] for _ in range(self.rate * UPDATES_PER_INSERT)]
        self.bench.sql("UPDATE posts SET views = views + 1, likes = likes + 1, updated_at = UTC_TIMESTAMP(3) "
                       f"WHERE id IN ({', '.join(['%s'] * len(ids))})", tuple(ids))
        self.n_updated += len(ids)
        due = [post_id for at, post_id in self.inserted if now - at >= DELETE_AFTER_S]
        if due:
            self.bench.sql(f"DELETE FROM posts WHERE id IN ({', '.join(['%s'] * len(due))})", tuple(due))
            self.inserted = self.inserted[len(due):]
            self.n_deleted += len(due)


def growth(rows: list[dict], warm_up_s: float) -> dict:
    """Per process: RSS after the warm-up and at the end, the least-squares slope after the warm-up
    in MB per hour, and the growth in that window; the same for Redis and the index's points."""
    after = [r for r in rows if r["t_s"] >= warm_up_s] or rows
    series = {name: [(r["t_s"], r["rss_mb"].get(name)) for r in after if r["rss_mb"].get(name) is not None]
              for name in (after[0]["rss_mb"] if after else {})}
    series["redis_used"] = [(r["t_s"], r["redis_mb"]) for r in after]
    out: dict = {"warm_up_s": warm_up_s, "processes": {}}
    for name, points in series.items():
        if len(points) < 2:
            continue
        out["processes"][name] = {"start_mb": round(points[0][1], 1), "end_mb": round(points[-1][1], 1),
                                  "max_mb": round(max(v for _, v in points), 1),
                                  "growth_mb": round(points[-1][1] - points[0][1], 1),
                                  "slope_mb_per_h": round(slope(points) * 3600, 1)}
    point_counts = [r["points"] for r in after if r["points"] >= 0]
    if point_counts:
        out["points_min"], out["points_max"] = min(point_counts), max(point_counts)
    return out


def slope(points: list[tuple[float, float]]) -> float:
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / var if var else 0.0
