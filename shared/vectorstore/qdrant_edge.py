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
- Layout: the unnamed dense vector plus a sparse vector (IDF modifier). Loading a shard with a
  config that names only the dense vector inherits the sparse one; a shard created before the
  sparse vector existed gets it added in place (create_sparse_vector keeps every point), and its
  old points have no keyword vector until they are written again (a replay).
- Hybrid: prefetch + Fusion.Rrf run inside the engine, filters applied in each prefetch.
- scroll() with order_by returns no next offset: one page only, which is all scroll_points needs.
"""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import qdrant_edge as qe

from shared.logging import get_logger

from shared.vectorstore.base import (
    INDEXED_FIELDS,
    RRF_K,
    LayoutMismatch,
    VectorLayout,
    WeightedQuery,
    SPARSE_VECTOR_NAME,
    FacetCount,
    PointRecord,
    ScoredPoint,
    SearchFilter,
    SparseVector,
    StoreUnavailable,
    VerticalCondition,
    canonical_id,
    in_request_order,
    query_vector,
    vector_rows,
)

log = get_logger(__name__)

# Collection names become directory names: keep them to one safe path component.
_COLLECTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SCROLL_PAGE = 1024
_SCHEMA_TYPES = {"integer": qe.PayloadSchemaType.Integer, "keyword": qe.PayloadSchemaType.Keyword,
                 "float": qe.PayloadSchemaType.Float}


@dataclass(frozen=True)
class _Collection:
    shard: qe.EdgeShard
    dim: int
    layout: VectorLayout | None = None


class EdgeVectorStore:
    """Collections live in root_dir/<name>/; they are opened (or created) by ensure_collection."""

    def __init__(self, root_dir: Path) -> None:
        self._root = Path(root_dir)
        self._collections: dict[str, _Collection] = {}
        self._closed = False
        # Serialises writes, optimize, open and close. Reads take no lock (see module docstring).
        self._write_lock = threading.Lock()

    def ensure_collection(self, name: str, dim: int, layout: VectorLayout | None = None) -> None:
        with self._write_lock:
            self._check_open()
            existing = self._collections.get(name)
            if existing is not None:
                if existing.dim != dim:
                    raise ValueError(f"collection {name!r} has dimension {existing.dim}, not {dim}")
                if layout is not None and existing.layout != layout:
                    raise LayoutMismatch(f"collection {name!r} is open with vectors {existing.layout}, not {layout}")
                return
            shard = _open_shard(self._shard_dir(name), dim, layout)
            _ensure_indexes(shard)
            self._collections[name] = _Collection(shard, dim, layout)

    def drop_collection(self, name: str) -> None:
        with self._write_lock:
            self._check_open()
            collection = self._collections.pop(name, None)
            if collection is not None:
                collection.shard.close()
            shutil.rmtree(self._shard_dir(name), ignore_errors=True)

    def weighted_search(
        self, name: str, parts: Sequence[WeightedQuery], limit: int, flt: SearchFilter | None = None,
        depth: int = 100,
    ) -> list[ScoredPoint]:
        edge_filter = _edge_filter(flt)
        prefetches = [qe.Prefetch(limit=depth, query=_part_query(part), filter=edge_filter) for part in parts]
        request = qe.QueryRequest(limit=limit, prefetches=prefetches, query=_weighted_sum(parts),
                                  filter=edge_filter, with_payload=True)
        return self._query(name, request)

    def upsert(self, name: str, points: Sequence[PointRecord]) -> None:
        if not points:
            return
        collection = self._collection(name)
        rows = vector_rows(points, collection.dim)
        batch = [qe.Point(p.id, _point_vectors(row, p.sparse, p.named), p.payload)
                 for p, row in zip(points, rows, strict=True)]
        self._write(collection.shard, qe.UpdateOperation.upsert_points(batch))

    def delete(self, name: str, ids: Sequence[str]) -> None:
        if ids:
            self._write(self._collection(name).shard, qe.UpdateOperation.delete_points([canonical_id(i) for i in ids]))

    def set_payloads(self, name: str, payloads: Mapping[str, dict[str, Any]]) -> None:
        if not payloads:
            return
        shard = self._collection(name).shard
        with self._write_lock, _engine_faults_as_unavailable():
            for point, payload in payloads.items():
                shard.update(qe.UpdateOperation.set_payload([canonical_id(point)], payload))
            shard.flush()  # one fsync for the whole batch of patches

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
        with _engine_faults_as_unavailable():
            hits = self._collection(name).shard.query(request)
        return [ScoredPoint(id=str(h.id), score=h.score, payload=h.payload or {}) for h in hits]

    def sparse_search(
        self, name: str, sparse: SparseVector, limit: int, flt: SearchFilter | None = None, offset: int = 0
    ) -> list[ScoredPoint]:
        if sparse.is_empty():
            return []  # no known term: nothing can score above zero
        request = qe.QueryRequest(limit=limit, offset=offset, query=_sparse_query(sparse),
                                  filter=_edge_filter(flt), with_payload=True)
        return self._query(name, request)

    def hybrid_search(
        self, name: str, vector: Sequence[float], sparse: SparseVector, limit: int,
        flt: SearchFilter | None = None, offset: int = 0, depth: int = 100,
    ) -> list[ScoredPoint]:
        edge_filter = _edge_filter(flt)
        prefetches = [qe.Prefetch(limit=depth, query=qe.Query.Nearest(query_vector(vector)), filter=edge_filter)]
        if not sparse.is_empty():
            prefetches.append(qe.Prefetch(limit=depth, query=_sparse_query(sparse), filter=edge_filter))
        request = qe.QueryRequest(limit=limit, offset=offset, prefetches=prefetches, query=qe.Fusion.Rrf(k=RRF_K),
                                  filter=edge_filter, with_payload=True)
        return self._query(name, request)

    def facet(self, name: str, key: str, flt: SearchFilter | None = None, limit: int = 50) -> list[FacetCount]:
        request = qe.FacetRequest(key, limit=limit, exact=True, filter=_edge_filter(flt))
        with _engine_faults_as_unavailable():
            response = self._collection(name).shard.facet(request)
        return [FacetCount(value=hit.value, count=hit.count) for hit in response.hits]

    def scroll_points(
        self, name: str, flt: SearchFilter | None = None, limit: int = 100,
        order_by: str | None = None, descending: bool = True, fields: Sequence[str] | None = None,
    ) -> list[ScoredPoint]:
        direction = qe.Direction.Desc if descending else qe.Direction.Asc
        request = qe.ScrollRequest(
            limit=limit, filter=_edge_filter(flt), with_vector=False,
            with_payload=qe.PayloadSelector.Include(list(fields)) if fields else True,
            order_by=qe.OrderBy(order_by, direction=direction) if order_by else None,
        )
        with _engine_faults_as_unavailable():
            records, _ = self._collection(name).shard.scroll(request)
        return [ScoredPoint(id=str(r.id), score=0.0, payload=r.payload or {}) for r in records]

    def dense_vectors(self, name: str, ids: Sequence[str]) -> dict[str, list[float]]:
        wanted = [canonical_id(i) for i in ids]
        with _engine_faults_as_unavailable():
            records = self._collection(name).shard.retrieve(wanted, with_payload=False, with_vector=[""])
        return {str(r.id): _dense_part(r.vector) for r in records}

    def collection_exists(self, name: str) -> bool:
        if name in self._collections:
            return True
        path = self._shard_dir(name)
        return path.is_dir() and any(path.iterdir())

    def retrieve(self, name: str, ids: Sequence[str]) -> list[ScoredPoint]:
        wanted = [canonical_id(i) for i in ids]
        with _engine_faults_as_unavailable():
            records = self._collection(name).shard.retrieve(wanted, with_payload=True, with_vector=False)
        found = [ScoredPoint(id=str(r.id), score=0.0, payload=r.payload or {}) for r in records]
        return in_request_order(wanted, found)

    def count(self, name: str, flt: SearchFilter | None = None) -> int:
        with _engine_faults_as_unavailable():
            return self._collection(name).shard.count(qe.CountRequest(exact=True, filter=_edge_filter(flt)))

    def scroll_ids(self, name: str, flt: SearchFilter | None = None) -> Iterator[str]:
        shard, edge_filter = self._collection(name).shard, _edge_filter(flt)
        offset = None
        while True:
            request = qe.ScrollRequest(
                offset=offset, limit=_SCROLL_PAGE, filter=edge_filter, with_payload=False, with_vector=False
            )
            with _engine_faults_as_unavailable():
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
        with self._write_lock, _engine_faults_as_unavailable():
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

    def _query(self, name: str, request: qe.QueryRequest) -> list[ScoredPoint]:
        with _engine_faults_as_unavailable():
            hits = self._collection(name).shard.query(request)
        return [ScoredPoint(id=str(h.id), score=h.score, payload=h.payload or {}) for h in hits]

    def _write(self, shard: qe.EdgeShard, operation: qe.UpdateOperation) -> None:
        with self._write_lock, _engine_faults_as_unavailable():
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


def _sparse_params() -> qe.EdgeSparseVectorParams:
    return qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)


def _layout_config(dim: int, layout: VectorLayout | None, *, with_sparse: bool) -> qe.EdgeConfig:
    """The dense vectors (and, for a new shard, the sparse ones) of a collection with ``layout``."""
    if layout is None:
        vectors: qe.EdgeVectorParams | dict = qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine)
    else:
        maxsim = qe.MultiVectorConfig(qe.MultiVectorComparator.MaxSim)
        vectors = {"": qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine)}
        vectors |= {n: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine) for n in layout.dense}
        vectors |= {n: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine, multivector_config=maxsim)
                    for n in layout.multi}
    if not with_sparse:
        return qe.EdgeConfig(vectors=vectors)
    sparse = {name: _sparse_params() for name in (SPARSE_VECTOR_NAME, *(layout.sparse if layout else ()))}
    return qe.EdgeConfig(vectors=vectors, sparse_vectors=sparse)


def _open_shard(path: Path, dim: int, layout: VectorLayout | None = None) -> qe.EdgeShard:
    if not (path.is_dir() and any(path.iterdir())):
        return qe.EdgeShard.create(str(path), _layout_config(dim, layout, with_sparse=True))
    try:
        # Only the dense vectors are named: load() checks them (all of them: a shard with other dense
        # vectors than asked is refused) and inherits whatever sparse vectors exist.
        shard = qe.EdgeShard.load(str(path), _layout_config(dim, layout, with_sparse=False))
    except Exception as exc:
        if "expected vector storages" in str(exc):
            raise LayoutMismatch(f"{path} holds other vectors than {layout}: {exc}") from exc
        if "incompatible" in str(exc).lower():
            raise ValueError(f"{path}: {exc}") from exc
        if "WouldBlock" in str(exc):  # WAL lock: e.g. the previous pod of a rolling restart still runs
            raise StoreUnavailable(f"{path} is open in another process or store") from exc
        raise
    _add_sparse_vector_if_missing(shard, path)
    return shard


def _add_sparse_vector_if_missing(shard: qe.EdgeShard, path: Path) -> None:
    """Migrate a dense-only shard (layout before hybrid search) in place; its points keep working."""
    probe = qe.QueryRequest(limit=1, query=_sparse_query(SparseVector()))
    try:
        shard.query(probe)
        return
    except Exception as exc:
        if "not existing vector name" not in str(exc).lower():
            raise
    shard.update(qe.UpdateOperation.create_sparse_vector(SPARSE_VECTOR_NAME, modifier=qe.Modifier.Idf))
    shard.flush()
    log.warning("added the keyword vector to an existing shard: points written before have none until "
                "they are indexed again (replay the embedded-posts topic)", vector=SPARSE_VECTOR_NAME, path=str(path))


def _point_vectors(dense: list[float], sparse: SparseVector | None, named: dict | None = None) -> list[float] | dict:
    if (sparse is None or sparse.is_empty()) and not named:
        return dense  # the unnamed dense vector only: the point just never matches keywords
    vectors: dict = {"": dense}
    if sparse is not None and not sparse.is_empty():
        vectors[SPARSE_VECTOR_NAME] = qe.SparseVector(sparse.indices, sparse.values)
    for name, vector in (named or {}).items():
        if isinstance(vector, SparseVector):
            if not vector.is_empty():
                vectors[name] = qe.SparseVector(vector.indices, vector.values)
        else:
            vectors[name] = vector
    return vectors


def _part_query(part: WeightedQuery) -> qe.Query:
    if part.sparse is not None:
        return qe.Query.Nearest(qe.SparseVector(part.sparse.indices, part.sparse.values), using=part.using)
    dense = query_vector(part.dense)
    return qe.Query.Nearest([dense] if part.multi else dense, using=part.using or None)


def _weighted_sum(parts: Sequence[WeightedQuery]) -> qe.Formula:
    """sum of weight_i * $score[i]; a candidate prefetch i did not return scores 0 there."""
    terms = [qe.Expression.Mult([qe.Expression.Constant(p.weight), qe.Expression.Variable(f"$score[{i}]")])
             for i, p in enumerate(parts)]
    return qe.Formula(qe.Expression.Sum(terms), defaults={f"$score[{i}]": 0.0 for i in range(len(parts))})


def _sparse_query(sparse: SparseVector) -> qe.Query:
    return qe.Query.Nearest(qe.SparseVector(sparse.indices, sparse.values), using=SPARSE_VECTOR_NAME)


def _dense_part(vector: object) -> list[float]:
    """retrieve() gives the unnamed vector as a list, or a dict of named vectors with key ""."""
    if isinstance(vector, dict):
        vector = vector[""]
    return list(vector)


def _ensure_indexes(shard: qe.EdgeShard) -> None:
    present = shard.info().payload_schema
    for field, schema in INDEXED_FIELDS.items():
        if field not in present:
            shard.update(qe.UpdateOperation.create_field_index(field, _SCHEMA_TYPES[schema]))
    shard.flush()


def _edge_filter(flt: SearchFilter | None) -> qe.Filter | None:
    if flt is None or flt.is_unconstrained():
        return None
    must: list = [qe.FieldCondition(key, match=qe.MatchAny(values)) for key, values in flt.match_conditions()]
    # RangeFloat is the only numeric range type; epoch milliseconds are far below 2**53, so exact.
    must += [qe.FieldCondition(key, range=qe.RangeFloat(gte=gte, lt=lt)) for key, (gte, lt) in flt.ranges().items()]
    if flt.verticals is not None:
        must.append(_vertical_condition(flt.verticals))
    if flt.ids is not None:
        must.append(qe.HasIdCondition(set(flt.ids)))
    if flt.has_sparse_vector is True:
        must.append(qe.HasVectorCondition(SPARSE_VECTOR_NAME))
    must_not: list = []
    if flt.exclude_ids is not None:
        must_not.append(qe.HasIdCondition(set(flt.exclude_ids)))
    if flt.has_sparse_vector is False:
        must_not.append(qe.HasVectorCondition(SPARSE_VECTOR_NAME))
    return qe.Filter(must=must or None, must_not=must_not or None)


def _vertical_condition(condition: VerticalCondition) -> qe.NestedCondition:
    label = [
        qe.FieldCondition("taxonomy", match=qe.MatchValue(condition.taxonomy)),
        qe.FieldCondition("vertical", match=qe.MatchAny(condition.verticals)),
    ]
    if condition.min_confidence > 0:
        label.append(qe.FieldCondition("confidence", range=qe.RangeFloat(gte=condition.min_confidence)))
    return qe.NestedCondition("verticals", qe.Filter(must=label))


@contextmanager
def _engine_faults_as_unavailable() -> Iterator[None]:
    """The engine's failures that are not about the request, reported as the store being unavailable,
    so the batch loop holds and retries the batch instead of dead-lettering it as poison: a call racing
    close() (the shard is gone), and the engine's service errors, which wrap the disk's own failures
    (a WAL flush answering "Os { code: 5, kind: InputOutputError ... }", a full disk). A bad request is
    Qdrant's "Wrong input" and stays an error of the request."""
    try:
        yield
    except Exception as exc:
        message = str(exc)
        if "not initialized" in message:
            raise StoreUnavailable("edge vector store is closed") from exc
        if message.startswith(_ENGINE_SERVICE_ERROR) or "Os { code:" in message:
            raise StoreUnavailable(f"edge vector store failed: {message[:300]}") from exc
        raise


_ENGINE_SERVICE_ERROR = "Service runtime error"  # Qdrant's OperationError::ServiceError display text
