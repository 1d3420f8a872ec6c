"""What the index remembers about points it deleted: the source version of the delete.

A delete removes the point, and with it the version an older upsert is compared with. A redriven
dead letter, a consumer group reset or any late redelivery then brought the post back. So each
delete and each account purge leaves a small record in a sidecar collection of the same store
(``<collection>-deleted``), written before the point is deleted: the indexer's writes stay in one
place and need nothing else (no Redis). Records are kept for INDEXER_DELETED_VERSION_RETENTION_DAYS,
which must cover the longest time an old event can come back: the dead-letter topics' retention
(30 days) plus the derived topics' (7 days). See docs/source-versions.md.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from shared.vectorstore import PointRecord, VectorStore, point_id

PRUNE_INTERVAL_S = 3600
PRUNE_PAGE = 1000


def purge_record_id(account_id: int) -> str:
    return point_id("purged-account", account_id)


class DeletedVersions:
    """Per post point id (the same id as the post's point) and per purged account: the version of
    the newest delete, and when it was written (``indexed_at_ms``, which the store indexes)."""

    def __init__(self, store: VectorStore, collection: str, retention_s: float) -> None:
        self.store = store
        self.collection = f"{collection}-deleted"
        self.retention_ms = int(retention_s * 1000)
        self._next_prune = 0.0
        store.ensure_collection(self.collection, 1)

    def versions(self, ids: Iterable[str]) -> dict[str, list[int]]:
        """Remembered versions of these record ids (post point ids or purge_record_id)."""
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return {}
        cutoff = int(time.time() * 1000) - self.retention_ms
        return {record.id: record.payload["source_version"] for record in self.store.retrieve(self.collection, wanted)
                if record.payload.get("indexed_at_ms", 0) >= cutoff and record.payload.get("source_version")}

    def remember(self, versions: Mapping[str, list[int] | None]) -> None:
        """Record each id's delete version, unless a newer one is remembered already. Durable on return."""
        known = self.versions(versions)
        now_ms = int(time.time() * 1000)
        records = [PointRecord(id=rid, vector=[1.0], payload={"source_version": list(version), "indexed_at_ms": now_ms})
                   for rid, version in versions.items()
                   if version is not None and (rid not in known or list(known[rid]) <= list(version))]
        if records:
            self.store.upsert(self.collection, records)
        self._prune_if_due(now_ms)

    def _prune_if_due(self, now_ms: int) -> None:
        """Drop records older than the retention, a page an hour (deletes are rare next to upserts)."""
        if time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + PRUNE_INTERVAL_S
        oldest = self.store.scroll_points(self.collection, limit=PRUNE_PAGE, order_by="indexed_at_ms",
                                          descending=False, fields=["indexed_at_ms"])
        expired = [p.id for p in oldest if p.payload.get("indexed_at_ms", 0) < now_ms - self.retention_ms]
        if expired:
            self.store.delete(self.collection, expired)
