"""The indexer next to its engine, in one process, on the same points: benchmark 7's indexer ratio
without the rest of the pipeline, quick enough to run before and after a change to the write path.

N post events of the small seed (demo/generator.py: titles, descriptions, accounts), each with its
text's vector from the real model (kept in .dev/bench-cache after the first run: tier-1 labels, and so
the payload's ``verticals``, depend on it), encoded as the embedder publishes them.

- indexer: what its batch loop does per batch of INDEXER_BATCH_SIZE messages (parse each message,
  ``PostIndexer.apply``: plan, tier-1 labels, the stored versions read, the upsert and its flush) into
  a fresh edge shard through the project's store adapter.
- engine: qdrant-edge alone, into another fresh shard with the same payload indexes: the points the
  indexer wrote (read back from its shard: ids, vectors, keyword vectors, payloads exactly as stored),
  built as ``qe.Point`` and written with ``update(upsert_points)`` + ``flush()`` per batch of the
  same size. Building the points is the engine's own API (its conversion of the payload included).

Both rates per wall second and per CPU second of this process (the engine's threads included); the
ratio per CPU second does not depend on the share of the cores a loaded machine gives each run.
The labeller runs without Redis (no people's corrections): its per-batch matrix product is the same.

    python -m bench.indexer_engine --points 10000 [--profile out.txt] [--out result.json]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

import numpy as np
import orjson

from bench.harness import log

RESULTS = Path(__file__).parent / "results"
CACHE = Path(__file__).parent.parent / ".dev" / "bench-cache"
ANCHOR = datetime(2026, 11, 1, tzinfo=UTC)
MODEL_ID = "bench-model"


def embedded_messages(n: int, embed, seed: int = 7) -> list[bytes]:
    """N post.embedded events as the embedder writes them to the topic (snapshot reads, with GTIDs)."""
    from demo.generator import generate
    from shared.events import AccountFields, EmbeddedPostUpsert, PostRecord, PostUpsert, SourcePosition, encode

    accounts, posts = generate("small", seed=seed, anchor=ANCHOR)
    by_id = {a.id: a for a in accounts}
    rows = list(islice(posts, n))
    vectors = _vectors([PostRecord(id=r.id, account_id=r.account_id, platform=r.platform, title=r.title,
                                   description=r.description, published_at=0).embedding_text() for r in rows], embed)
    messages = []
    for i, row in enumerate(rows):
        account = by_id[row.account_id]
        post = PostRecord(id=row.id, account_id=row.account_id, platform=row.platform, title=row.title,
                          description=row.description, url=row.url, published_at=_ms(row.published_at),
                          views=row.views, likes=row.likes, comments=row.comments, updated_at=_ms(row.updated_at))
        upsert = PostUpsert(post=post, account=AccountFields(handle=account.handle, display_name=account.display_name,
                                                             followers=account.followers),
                            position=SourcePosition(ts_ms=_ms(row.updated_at), file="mysql-bin.000001", pos=4 + i,
                                                    gtid=f"0-1-{1000 + i}", snapshot=True))
        messages.append(encode(EmbeddedPostUpsert.build(upsert, MODEL_ID, vectors[i])))
    return messages


def _vectors(texts: list[str], embed) -> np.ndarray:
    """The model's vectors of these texts, embedded once and kept (the model's time is not measured here)."""
    from shared.events import content_hash

    key = content_hash("\n".join(texts))[:16]
    path = CACHE / f"indexer-engine-{len(texts)}-{key}.npy"
    if path.exists():
        return np.load(path)
    log(f"embedding {len(texts)} texts once (kept in {path})")
    vectors = np.asarray(embed(texts), dtype=np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def _ms(dt: datetime) -> int:
    return int(dt.replace(tzinfo=dt.tzinfo or UTC).timestamp() * 1000)


def run_indexer(messages: list[bytes], root: Path, labeller, batch: int, profile: cProfile.Profile | None) -> dict:
    from services.indexer.core import PostIndexer
    from shared.events import EMBEDDING_DIM, parse_embedded_topic_event
    from shared.vectorstore.qdrant_edge import EdgeVectorStore

    store = EdgeVectorStore(root)
    indexer = PostIndexer(store, "posts", EMBEDDING_DIM, labeller)
    wall, cpu = time.perf_counter(), time.process_time()
    if profile:
        profile.enable()
    for start in range(0, len(messages), batch):
        indexer.apply([parse_embedded_topic_event(m) for m in messages[start:start + batch]])
    if profile:
        profile.disable()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    stored = store.count("posts")
    store.close()
    return {"points": stored, "wall_s": wall, "cpu_s": cpu}


def read_points(root: Path, collection: str = "posts") -> list:
    """The indexer's points as its shard holds them (ids, dense and keyword vectors, payloads), in id order."""
    from shared.vectorstore.qdrant_edge import EdgeVectorStore

    store = EdgeVectorStore(root)
    store.ensure_collection(collection, 384)
    shard = store._collection(collection).shard
    ids = list(store.scroll_ids(collection))
    records = shard.retrieve(ids, with_payload=True, with_vector=True)
    store.close()
    return records


def run_engine(records: list, root: Path, batch: int) -> dict:
    """qdrant-edge's bulk upsert of these records into a fresh shard: build the points, update, flush."""
    import qdrant_edge as qe

    from shared.vectorstore.qdrant_edge import _ensure_indexes, _open_shard

    shard = _open_shard(root / "posts", 384)
    _ensure_indexes(shard)
    wall, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(records), batch):
        points = [qe.Point(r.id, r.vector, r.payload) for r in records[start:start + batch]]
        shard.update(qe.UpdateOperation.upsert_points(points))
        shard.flush()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    count = shard.count(qe.CountRequest(exact=True))
    shard.close()
    return {"points": count, "wall_s": wall, "cpu_s": cpu}


def payload_bytes(records: list) -> float:
    return sum(len(orjson.dumps(r.payload)) for r in records) / max(len(records), 1)


def main(argv: list[str] | None = None) -> None:
    from shared.bootstrap import load_embedder
    from shared.classification.labelling import TierOneLabeller
    from shared.classification.taxonomy import TaxonomyCatalog
    from shared.config import ModelSettings, TaxonomySettings, VectorStoreSettings

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--profile", type=Path, help="cProfile of the indexer's batches (cumulative, top 40)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--work-dir", type=Path, default=CACHE.parent,
                        help="where the two shards are written (a flush's cost depends on the disk)")
    args = parser.parse_args(argv)
    batch = VectorStoreSettings().indexer_batch_size
    model = load_embedder(ModelSettings())
    messages = embedded_messages(args.points, model.embed)
    labeller = TierOneLabeller(TaxonomyCatalog.load(TaxonomySettings().taxonomy_dir), model.embed)
    labeller.labels(np.zeros((1, 384), dtype=np.float32))  # prototypes embedded before the clock starts
    profile = cProfile.Profile(time.process_time) if args.profile else None  # CPU, not a loaded machine's wall
    args.work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
        indexer = run_indexer(messages, Path(tmp) / "indexer", labeller, batch, profile)
        records = read_points(Path(tmp) / "indexer")
        engine = run_engine(records, Path(tmp) / "engine", batch)
    labels = sum(len(r.payload.get("verticals") or ()) for r in records) / max(len(records), 1)
    result = {"points": args.points, "batch": batch, "labels_per_point": round(labels, 2), "commit": _commit(), "at": datetime.now(UTC).isoformat(),
              "payload_json_bytes_per_point": round(payload_bytes(records)), "payload_keys": len(records[0].payload),
              "indexer": indexer, "engine": engine}
    for side in (indexer, engine):
        side["points_per_s"] = round(side["points"] / side["wall_s"])
        side["points_per_cpu_s"] = round(side["points"] / side["cpu_s"])
    result["indexer_over_engine"] = round(indexer["points_per_s"] / engine["points_per_s"], 3)
    result["indexer_over_engine_per_cpu_s"] = round(indexer["points_per_cpu_s"] / engine["points_per_cpu_s"], 3)
    log(f"indexer {indexer['points_per_s']} points/s ({indexer['points_per_cpu_s']}/CPU-s), engine "
        f"{engine['points_per_s']} points/s ({engine['points_per_cpu_s']}/CPU-s): ratio "
        f"{result['indexer_over_engine']} wall, {result['indexer_over_engine_per_cpu_s']} per CPU s")
    if profile:
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats("cumulative").print_stats(40)
        pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(25)
        args.profile.write_text(text.getvalue())
    out = args.out or RESULTS / f"{datetime.now(UTC):%Y-%m-%d}-indexer-engine-{args.points}.json"
    out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    log(f"written {out}")


def _commit() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()


if __name__ == "__main__":
    main()
