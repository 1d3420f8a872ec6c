"""Seconds per account summary at the 20,000-post cap: scroll, vectors, summarize, embed, write.

    python -m bench.summarizer [--posts 20000] [--distinct 2000] [--repeats 5]

Runs on its own (no stack): an edge store in /dev/shm, the real model. ``--distinct`` demo posts of
several verticals are embedded for real, then tiled with small noise (new ids and dates) up to
``--posts``, as the search benchmark does with its points: the cost of a summary depends on the
number of posts, not on how original each one is. Writes bench/results/<date>-summarizer.json.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import orjson

from demo.generator import generate
from services.indexer.core import post_point_id
from services.summarizer.core import POST_FIELDS, AccountProfile, PostView, summarize
from services.summarizer.refresh import AccountRefresher, ComputedSummary
from shared.config import PROJECT_ROOT, ModelSettings, SummarizerSettings
from shared.embedding import load_text_embedder
from shared.vectorstore import EdgeVectorStore, PointRecord, SearchFilter

RESULTS_DIR = Path(__file__).resolve().parent / "results"
ACCOUNT_ID = 1
HOUR_MS = 3_600_000


def demo_texts(count: int) -> list[tuple[str, str]]:
    """(title, description) of demo posts from accounts of different verticals."""
    _, stream = generate("small", anchor=datetime(2025, 6, 1))
    return [(p.title, p.description or "") for p in itertools.islice(stream, 0, count * 7, 7)]


def fill(store: EdgeVectorStore, posts: int, distinct: int) -> None:
    embedder = load_text_embedder(ModelSettings().model_cache_dir)
    texts = demo_texts(distinct)
    vectors = embedder.embed([f"{t}\n{d}".strip() for t, d in texts])
    rng = np.random.default_rng(7)
    now_ms = int(time.time() * 1000)
    batch = []
    for i in range(posts):
        title, description = texts[i % len(texts)]
        vector = vectors[i % len(texts)] + rng.normal(0, 0.01, vectors.shape[1]).astype(np.float32)
        batch.append(PointRecord(id=post_point_id(i + 1), vector=vector / np.linalg.norm(vector), payload={
            "post_id": i + 1, "account_id": ACCOUNT_ID, "platform": "youtube", "handle": "bench",
            "display_name": "Bench", "followers": 100_000, "title": title, "description": description,
            "published_at": now_ms - i * HOUR_MS, "views": int(rng.integers(100, 1_000_000)),
            "likes": int(rng.integers(0, 50_000)), "comments": int(rng.integers(0, 2_000)),
            "verticals": [{"taxonomy": "default", "vertical": ["food", "travel", "tech"][i % 3], "confidence": 0.8}],
        }))
        if len(batch) == 2_000:
            store.upsert("posts", batch)
            batch = []
    store.upsert("posts", batch)
    store.optimize("posts")


def measure(store: EdgeVectorStore, repeats: int) -> dict:
    settings = SummarizerSettings()
    model = ModelSettings()
    embedder = load_text_embedder(model.model_cache_dir, intra_op_threads=model.embedding_threads)
    refresher = AccountRefresher(store, "posts", "accounts", embedder, settings)
    refresher.background()  # drawn once an hour in the service, not per summary
    stages: dict[str, list[float]] = {k: [] for k in ("scroll", "vectors", "summarize", "account_vectors",
                                                      "embed_and_write", "total")}
    for _ in range(repeats):
        started = time.perf_counter()
        points = store.scroll_points("posts", SearchFilter(account_id=[ACCOUNT_ID]), limit=settings.summarizer_max_posts,
                                     order_by="published_at", fields=POST_FIELDS)
        scrolled = time.perf_counter()
        vectors = store.dense_vectors("posts", [p.id for p in points])
        fetched = time.perf_counter()
        views = [PostView.from_payload(p.payload) for p in points]
        matrix = np.asarray([vectors[p.id] for p in points], dtype=np.float32)
        summary = summarize(AccountProfile.from_payload(points[0].payload), views, matrix,
                            now_ms=int(time.time() * 1000), background=refresher.background(), options=refresher.options)
        summarized = time.perf_counter()
        account_vectors = refresher.vectors(views, matrix)  # centroid, themes, term shares
        described = time.perf_counter()
        refresher.write(ComputedSummary(summary, vectors=account_vectors), len(points))
        done = time.perf_counter()
        for name, seconds in (("scroll", scrolled - started), ("vectors", fetched - scrolled),
                              ("summarize", summarized - fetched), ("account_vectors", described - summarized),
                              ("embed_and_write", done - described), ("total", done - started)):
            stages[name].append(seconds)
    return {"posts_summarized": summary.posts, "repeats": repeats,
            "median_seconds": {k: round(statistics.median(v), 3) for k, v in stages.items()},
            "max_total_seconds": round(max(stages["total"]), 3)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.summarizer", description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=20_000)
    parser.add_argument("--distinct", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    root = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(dir=root, prefix="bench-summarizer-") as scratch:
        store = EdgeVectorStore(Path(scratch))
        store.ensure_collection("posts", 384)
        fill(store, args.posts, args.distinct)
        result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "posts": args.posts,
                  "distinct_texts": args.distinct, **measure(store, args.repeats)}
        store.close()
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"{datetime.now(timezone.utc):%Y-%m-%d}-summarizer.json"
    out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    print(f"written to {out.relative_to(PROJECT_ROOT)}")


if __name__ == "__main__":
    main()
