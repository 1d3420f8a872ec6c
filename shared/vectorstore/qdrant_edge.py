"""VectorStore on qdrant_edge (Qdrant's engine in-process): one shard directory per collection.

Behaviour of qdrant_edge 0.9 this adapter is built around (checked by experiment):
- Threading: a shard may be called from several threads at once (the engine locks internally) and
  query() releases the GIL while scoring, so FastAPI threads search in parallel without a Python
  lock. Writes are serialised here so that update + flush is one step. optimize() holds the GIL.
- Durability: update() appends to a memory-mapped WAL that is not synced; only flush() syncs the WAL
  and the segments. Every write here is followed by flush() before returning. flush() has a fixed
  cost (it fsyncs every segment file: ~350 ms on a VM disk, ~5 ms on tmpfs), so send large batches.
- Single owner: an open shard locks its WAL; a second open of the same directory (even from
  another process) fails, so indexer and query API must share one process to use the edge store.
- Engine errors are plain Exception; after close() the shard raises "Shard is not initialized".
- Vectors: a numpy array is read element by element, slower than one tolist() of the whole batch.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import qdrant_edge as qe

from shared.vectorstore.base import (
    INDEXED_FIELDS,
    PointRecord,
    ScoredPoint,
    SearchFilter,
    StoreUnavailable,
    canonical_id,
    in_request_order,
    query_vector,
    vector_rows,
)

# Collection names become directory names: keep them to one safe path component.
_COLLECTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SCROLL_PAGE = 1024
_SCHEMA_TYPES = {"integer": qe.PayloadSchemaType.Integer, "keyword": qe.PayloadSchemaType.Keyword}


@dataclass(frozen=True)
class _Collection:
    shard: qe.EdgeShard
    dim: int


class EdgeVectorStore:
    """Collections live in root_dir/<name>/; they are opened (or created) by ensure_collection."""

    def __init__(self, root_dir: Path) -> None:
        self._root = Path(root_dir)
        self._collections: dict[str, _Collection] = {}
        self._closed = False
        # Serialises writes, optimize, open and close. Reads take no lock (see module docstring).
        self._write_lock = threading.Lock()

    def ensure_collection(self, name: str, dim: int) -> None:
        with self._write_lock:
            self._check_open()
            existing = self._collections.get(name)
            if existing is not None:
                if existing.dim != dim:
                    raise ValueError(f"collection {name!r} has dimension {existing.dim}, not {dim}")
                return
            shard = _open_shard(self._shard_dir(name), dim)
            _ensure_indexes(shard)
            self._collections[name] = _Collection(shard, dim)

    def upsert(self, name: str, points: Sequence[PointRecord]) -> None:
        if not points:
            return
        collection = self._collection(name)
        rows = vector_rows(points, collection.dim)
        batch = [qe.Point(p.id, row, p.payload) for p, row in zip(points, rows, strict=True)]
        self._write(collection.shard, qe.UpdateOperation.upsert_points(batch))

    def delete(self, name: str, ids: Sequence[str]) -> None:
        if ids:
            self._write(self._collection(name).shard, qe.UpdateOperation.delete_points([canonical_id(i) for i in ids]))

    def delete_where(self, name: str, flt: SearchFilter) -> None:
        if flt.is_unconstrained():
            raise ValueError("delete_where needs at least one constraint; it would delete every point")
        self._write(self._collection(name).shard, qe.UpdateOperation.delete_points_by_filter(_edge_filter(flt)))

    def search(
        self, name: str, vector: Sequence[float], limit: int, flt: SearchFilter | None = None, offset: int = 0
    ) -> list[ScoredPoint]:
        request = qe.QueryRequest(
            limit=limit,
            offset=offset,
            query=qe.Query.Nearest(query_vector(vector)),
            filter=_edge_filter(flt),
            with_payload=True,
        )
        with _closed_as_unavailable():
            hits = self._collection(name).shard.query(request)
        return [ScoredPoint(id=str(h.id), score=h.score, payload=h.payload or {}) for h in hits]

    def retrieve(self, name: str, ids: Sequence[str]) -> list[ScoredPoint]:
        wanted = [canonical_id(i) for i in ids]
        with _closed_as_unavailable():
            records = self._collection(name).shard.retrieve(wanted, with_payload=True, with_vector=False)
        found = [ScoredPoint(id=str(r.id), score=0.0, payload=r.payload or {}) for r in records]
        return in_request_order(wanted, found)

    def count(self, name: str, flt: SearchFilter | None = None) -> int:
        with _closed_as_unavailable():
            return self._collection(name).shard.count(qe.CountRequest(exact=True, filter=_edge_filter(flt)))

    def scroll_ids(self, name: str, flt: SearchFilter | None = None) -> Iterator[str]:
        shard, edge_filter = self._collection(name).shard, _edge_filter(flt)
        offset = None
        while True:
            request = qe.ScrollRequest(
                offset=offset, limit=_SCROLL_PAGE, filter=edge_filter, with_payload=False, with_vector=False
            )
            with _closed_as_unavailable():
                records, offset = shard.scroll(request)
            yield from (str(r.id) for r in records)
            if offset is None:
                return

    def optimize(self, name: str) -> bool:
        """Build the HNSW index (and merge/vacuum segments); True if anything changed.

        Until this runs, searches scan every vector. It blocks the whole process, not only the
        caller: qdrant_edge holds the GIL throughout (about 8 s for 20k x 384-d points), so other
        threads, FastAPI's included, stop meanwhile. Run it after bulk loads or at quiet times,
        never per upsert. Writes wait for it; points upserted later stay unindexed until the next run.
        """
        with self._write_lock, _closed_as_unavailable():
            shard = self._collection(name).shard
            changed = shard.optimize()
            shard.flush()
            return changed

    def close(self) -> None:
        """Flush and release every shard (and its WAL lock). Later calls raise StoreUnavailable."""
        with self._write_lock:
            collections, self._collections = self._collections, {}
            self._closed = True
            for collection in collections.values():
                collection.shard.close()  # close() flushes

    def _write(self, shard: qe.EdgeShard, operation: qe.UpdateOperation) -> None:
        with self._write_lock, _closed_as_unavailable():
            shard.update(operation)
            shard.flush()  # update() alone is not durable: the WAL is an unsynced mmap

    def _collection(self, name: str) -> _Collection:
        collection = self._collections.get(name)
        if collection is None:
            self._check_open()
            raise ValueError(f"collection {name!r} is not open: call ensure_collection first")
        return collection

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable("edge vector store is closed")

    def _shard_dir(self, name: str) -> Path:
        if not _COLLECTION_NAME.match(name):
            raise ValueError(f"invalid collection name {name!r}")
        return self._root / name


def _open_shard(path: Path, dim: int) -> qe.EdgeShard:
    config = qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine))
    if not (path.is_dir() and any(path.iterdir())):
        return qe.EdgeShard.create(str(path), config)
    try:
        return qe.EdgeShard.load(str(path), config)  # with a config, load() checks it matches
    except Exception as exc:
        if "incompatible" in str(exc).lower():
            raise ValueError(f"{path}: {exc}") from exc
        if "WouldBlock" in str(exc):  # WAL lock: e.g. the previous pod of a rolling restart still runs
            raise StoreUnavailable(f"{path} is open in another process or store") from exc
        raise


def _ensure_indexes(shard: qe.EdgeShard) -> None:
    present = shard.info().payload_schema
    for field, schema in INDEXED_FIELDS.items():
        if field not in present:
            shard.update(qe.UpdateOperation.create_field_index(field, _SCHEMA_TYPES[schema]))
    shard.flush()


def _edge_filter(flt: SearchFilter | None) -> qe.Filter | None:
    if flt is None or flt.is_unconstrained():
        return None
    must: list[qe.FieldCondition] = [
        qe.FieldCondition(key, match=qe.MatchAny(values)) for key, values in flt.matches().items()
    ]
    # RangeFloat is the only numeric range type; epoch milliseconds are far below 2**53, so exact.
    must += [qe.FieldCondition(key, range=qe.RangeFloat(gte=gte, lt=lt)) for key, (gte, lt) in flt.ranges().items()]
    return qe.Filter(must=must)


@contextmanager
def _closed_as_unavailable() -> Iterator[None]:
    """A call racing close() finds the shard gone: report that as unavailable, not as a bug."""
    try:
        yield
    except Exception as exc:
        if "not initialized" in str(exc):
            raise StoreUnavailable("edge vector store is closed") from exc
        raise
