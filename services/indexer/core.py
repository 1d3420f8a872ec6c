"""Turn pipeline events into vector store writes: deterministic point ids, deletes honoured.

Within a batch, the last event per post wins and an account purge is a barrier: everything
before it is written first, so a purge never deletes a post that came after it, nor misses one
that came before it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache

from shared.events import AccountPurge, EmbeddedPostUpsert, PostDelete
from shared.metrics import FRESHNESS_SECONDS, INDEX_OPERATIONS
from shared.sparse import SPARSE_MODEL_ID, SparseEncoder
from shared.vectorstore import PointRecord, SearchFilter, VectorStore, point_id

PAYLOAD_TEXT_CHARS = 4_000  # what a result card shows; the vector already saw the full text

IndexEvent = EmbeddedPostUpsert | PostDelete | AccountPurge


def post_point_id(post_id: int) -> str:
    return point_id("post", post_id)


def post_payload(event: EmbeddedPostUpsert, indexed_at_ms: int | None = None) -> dict:
    post, account = event.post, event.account
    return {
        "post_id": post.id,
        "account_id": post.account_id,
        "platform": post.platform,
        "title": post.title,
        "description": (post.description or "")[:PAYLOAD_TEXT_CHARS],
        "url": post.url,
        "published_at": post.published_at,
        "views": post.views,
        "likes": post.likes,
        "comments": post.comments,
        "handle": account.handle,
        "display_name": account.display_name,
        "followers": account.followers,
        "model_id": event.model_id,
        "source_ts_ms": event.position.ts_ms,
        "source_gtid": event.position.gtid,
        # Commit -> written, measured per point: the query API's status reports freshness from these
        # two (snapshot reads excluded: their ts_ms is when the snapshot read the row, not a commit).
        "source_snapshot": event.position.snapshot,
        "indexed_at_ms": indexed_at_ms if indexed_at_ms is not None else int(time.time() * 1000),
        "sparse_model_id": SPARSE_MODEL_ID,
        "source_version": event.position.order_key(),
    }


@dataclass
class WriteStep:
    upserts: dict[str, PointRecord] = field(default_factory=dict)
    deletes: set[str] = field(default_factory=set)
    purge_account: int | None = None  # applied after the upserts/deletes of this step


def post_point(event: EmbeddedPostUpsert, indexed_at_ms: int | None = None) -> PointRecord:
    """Dense vector from the embedder, keyword vector of the same text, and the payload."""
    return PointRecord(id=post_point_id(event.post.id), vector=event.vector(),
                       sparse=_sparse_encoder().document(event.post.embedding_text()),
                       payload=post_payload(event, indexed_at_ms))


@cache
def _sparse_encoder() -> SparseEncoder:
    return SparseEncoder()


def plan_writes(events: Sequence[IndexEvent]) -> list[WriteStep]:
    indexed_at_ms = int(time.time() * 1000)
    steps, current = [], WriteStep()
    for event in events:
        if isinstance(event, AccountPurge):
            current.purge_account = event.account_id
            steps.append(current)
            current = WriteStep()
        elif isinstance(event, PostDelete):
            pid = post_point_id(event.post_id)
            current.upserts.pop(pid, None)
            current.deletes.add(pid)
        else:
            pid = post_point_id(event.post.id)
            current.deletes.discard(pid)
            current.upserts[pid] = post_point(event, indexed_at_ms)
    steps.append(current)
    return [s for s in steps if s.upserts or s.deletes or s.purge_account is not None]


class PostIndexer:
    def __init__(self, store: VectorStore, collection: str, dim: int) -> None:
        self.store = store
        self.collection = collection
        store.ensure_collection(collection, dim)

    def apply(self, events: Sequence[IndexEvent]) -> None:
        """Write the batch; returns only when the store has it (callers commit offsets after).

        Redelivery and replays can bring an older version of a post after a newer one: each point
        keeps its source version, and a write older than what is stored is dropped.
        """
        for step in plan_writes(events):
            self._drop_stale(step, events)
            if step.upserts:
                self.store.upsert(self.collection, list(step.upserts.values()))
                INDEX_OPERATIONS.labels(op="upsert").inc(len(step.upserts))
            if step.deletes:
                self.store.delete(self.collection, sorted(step.deletes))
                INDEX_OPERATIONS.labels(op="delete").inc(len(step.deletes))
            if step.purge_account is not None:
                self.store.delete_where(self.collection, SearchFilter(account_id=[step.purge_account]))
                INDEX_OPERATIONS.labels(op="purge").inc()
        now_ms = time.time() * 1000
        for event in events:
            if isinstance(event, EmbeddedPostUpsert) and not event.position.snapshot:
                FRESHNESS_SECONDS.observe(max(0.0, now_ms - event.position.ts_ms) / 1000)

    def _drop_stale(self, step: WriteStep, events: Sequence[IndexEvent]) -> None:
        ids = [*step.upserts, *step.deletes]
        if not ids:
            return
        stored = {p.id: p.payload.get("source_version") for p in self.store.retrieve(self.collection, ids)}
        incoming = _delete_versions(events)
        for pid in [pid for pid in step.upserts if _older(step.upserts[pid].payload["source_version"], stored.get(pid))]:
            del step.upserts[pid]
            INDEX_OPERATIONS.labels(op="stale_skipped").inc()
        for pid in [pid for pid in step.deletes if _older(incoming.get(pid), stored.get(pid))]:
            step.deletes.discard(pid)
            INDEX_OPERATIONS.labels(op="stale_skipped").inc()


def _older(incoming: list[int] | None, stored: list[int] | None) -> bool:
    return incoming is not None and stored is not None and list(incoming) < list(stored)


def _delete_versions(events: Sequence[IndexEvent]) -> dict[str, list[int]]:
    return {post_point_id(e.post_id): e.position.order_key() for e in events if isinstance(e, PostDelete)}
