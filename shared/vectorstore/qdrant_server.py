"""VectorStore on a Qdrant server through qdrant-client (REST): the production path.

Layout: the unnamed dense vector plus the sparse vector SPARSE_VECTOR_NAME with the IDF modifier.
A collection created before hybrid search gets the sparse vector added in place
(create_vector_name, Qdrant >= 1.16); its existing points have no keyword vector until re-indexed.

Every collection this adapter creates (posts, accounts, a replay's posts_vN/accounts_vN) gets the one
CollectionPlan from settings (shards, replicas, write consistency, on-disk, quantization, payload
indexes), and only once the expected number of peers has joined the cluster: a collection created on
the first node alone keeps all its shards there. No other code creates collections on the server.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from shared.config import QdrantPlanSettings
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

_SCROLL_PAGE = 1024
# Statuses of a server (or its proxy) that is down or overloaded, as opposed to a bad request.
_UNAVAILABLE_STATUSES = frozenset({429, 502, 503, 504})
_CONFLICT = 409
_HNSW_M = 16  # HNSW graph degree (Qdrant's default), the value the capacity figures were measured with
_INT8_QUANTILE = 0.99  # clip the 1% most extreme components so int8 keeps resolution for the rest


@dataclass(frozen=True)
class CollectionPlan:
    """The layout of every collection the system creates on the server."""

    expected_peers: int = 1
    shard_number: int = 1
    replication_factor: int = 1
    write_consistency_factor: int = 1
    on_disk: bool = False
    quantization: str = "none"
    write_ordering: str = "medium"

    def __post_init__(self) -> None:
        if self.write_consistency_factor > self.replication_factor:
            raise ValueError("QDRANT_WRITE_CONSISTENCY_FACTOR must not exceed QDRANT_REPLICATION_FACTOR")
        if self.replication_factor > self.expected_peers:
            raise ValueError("QDRANT_REPLICATION_FACTOR must not exceed QDRANT_EXPECTED_PEERS (one copy per node)")

    @classmethod
    def from_settings(cls, settings: QdrantPlanSettings | None = None) -> CollectionPlan:
        s = settings or QdrantPlanSettings()
        return cls(expected_peers=s.qdrant_expected_peers, shard_number=s.qdrant_shard_number,
                   replication_factor=s.qdrant_replication_factor,
                   write_consistency_factor=s.qdrant_write_consistency_factor, on_disk=s.qdrant_on_disk,
                   quantization=s.qdrant_quantization, write_ordering=s.qdrant_write_ordering)

    @property
    def ordering(self) -> models.WriteOrdering | None:
        """Write ordering for replicated collections; one copy needs none (Qdrant's default, weak)."""
        return models.WriteOrdering(self.write_ordering) if self.replication_factor > 1 else None

    def quantization_config(self) -> models.ScalarQuantization | None:
        if self.quantization == "none":
            return None
        return models.ScalarQuantization(scalar=models.ScalarQuantizationConfig(
            type=models.ScalarType.INT8, quantile=_INT8_QUANTILE, always_ram=True))


class WaitingForPeers(StoreUnavailable):
    """The cluster has fewer peers than the plan expects: collection creation waits (callers retry)."""


class ServerVectorStore:
    def __init__(
        self,
        url: str | None = None,
        *,
        client: QdrantClient | None = None,
        api_key: str | None = None,
        timeout: float = 10,
        plan: CollectionPlan | None = None,
    ) -> None:
        if client is None and url is None:
            raise ValueError("ServerVectorStore needs a url or a client")
        self._plan = plan or CollectionPlan.from_settings()
        self._owns_client = client is None
        # No version check at construction: it would call the server, and a service must be able to
        # start while Qdrant is still down (calls then raise StoreUnavailable).
        self._client = client or QdrantClient(url=url, api_key=api_key, timeout=timeout, check_compatibility=False)

    def ensure_collection(self, name: str, dim: int, layout: VectorLayout | None = None) -> None:
        with _unavailable_on_connection_errors():
            if not self._client.collection_exists(name):
                self._create_collection(name, dim, layout)
            info = self._client.get_collection(name)
            _check_vectors(name, info, dim)
            _check_layout(name, info, layout)
            if SPARSE_VECTOR_NAME not in (info.config.params.sparse_vectors or {}):
                self._add_sparse_vector(name)
            for field, schema in INDEXED_FIELDS.items():
                if field not in info.payload_schema:
                    self._client.create_payload_index(name, field, models.PayloadSchemaType(schema), wait=True)

    def drop_collection(self, name: str) -> None:
        with _unavailable_on_connection_errors():
            self._client.delete_collection(name)

    def weighted_search(
        self, name: str, parts: Sequence[WeightedQuery], limit: int, flt: SearchFilter | None = None,
        depth: int = 100,
    ) -> list[ScoredPoint]:
        qdrant_filter = to_qdrant_filter(flt)
        prefetch = [models.Prefetch(query=_part_query(p), using=p.using or None, limit=depth, filter=qdrant_filter)
                    for p in parts]
        with _unavailable_on_connection_errors():
            response = self._client.query_points(name, prefetch=prefetch, query=_weighted_sum(parts), limit=limit,
                                                 query_filter=qdrant_filter, with_payload=True)
        return _scored(response.points)

    def upsert(self, name: str, points: Sequence[PointRecord]) -> None:
        if not points:
            return
        rows = vector_rows(points)
        batch = [models.PointStruct(id=p.id, vector=_point_vectors(row, p.sparse, p.named), payload=p.payload)
                 for p, row in zip(points, rows, strict=True)]
        with _unavailable_on_connection_errors():
            self._client.upsert(name, points=batch, wait=True, ordering=self._plan.ordering)

    def delete(self, name: str, ids: Sequence[str]) -> None:
        if not ids:
            return
        selector = models.PointIdsList(points=[canonical_id(i) for i in ids])
        with _unavailable_on_connection_errors():
            self._client.delete(name, points_selector=selector, wait=True, ordering=self._plan.ordering)

    def set_payloads(self, name: str, payloads: Mapping[str, dict[str, Any]]) -> None:
        if not payloads:
            return
        operations = [models.SetPayloadOperation(set_payload=models.SetPayload(
            payload=payload, points=[canonical_id(point)])) for point, payload in payloads.items()]
        with _unavailable_on_connection_errors():
            self._client.batch_update_points(name, update_operations=operations, wait=True,
                                             ordering=self._plan.ordering)

    def delete_where(self, name: str, flt: SearchFilter) -> None:
        if flt.is_unconstrained():
            raise ValueError("delete_where needs at least one constraint; it would delete every point")
        selector = models.FilterSelector(filter=to_qdrant_filter(flt))
        with _unavailable_on_connection_errors():
            self._client.delete(name, points_selector=selector, wait=True, ordering=self._plan.ordering)

    def search(
        self, name: str, vector: Sequence[float], limit: int, flt: SearchFilter | None = None, offset: int = 0
    ) -> list[ScoredPoint]:
        with _unavailable_on_connection_errors():
            response = self._client.query_points(
                name,
                query=query_vector(vector),
                limit=limit,
                offset=offset,
                query_filter=to_qdrant_filter(flt),
                with_payload=True,
            )
        return [ScoredPoint(id=str(p.id), score=p.score, payload=p.payload or {}) for p in response.points]

    def sparse_search(
        self, name: str, sparse: SparseVector, limit: int, flt: SearchFilter | None = None, offset: int = 0
    ) -> list[ScoredPoint]:
        if sparse.is_empty():
            return []  # no known term: nothing can score above zero
        with _unavailable_on_connection_errors():
            response = self._client.query_points(
                name, query=_sparse(sparse), using=SPARSE_VECTOR_NAME, limit=limit, offset=offset,
                query_filter=to_qdrant_filter(flt), with_payload=True,
            )
        return _scored(response.points)

    def hybrid_search(
        self, name: str, vector: Sequence[float], sparse: SparseVector, limit: int,
        flt: SearchFilter | None = None, offset: int = 0, depth: int = 100,
    ) -> list[ScoredPoint]:
        qdrant_filter = to_qdrant_filter(flt)
        prefetch = [models.Prefetch(query=query_vector(vector), limit=depth, filter=qdrant_filter)]
        if not sparse.is_empty():
            prefetch.append(models.Prefetch(query=_sparse(sparse), using=SPARSE_VECTOR_NAME, limit=depth,
                                            filter=qdrant_filter))
        with _unavailable_on_connection_errors():
            response = self._client.query_points(
                name, prefetch=prefetch, query=models.RrfQuery(rrf=models.Rrf(k=RRF_K)), limit=limit,
                offset=offset, query_filter=qdrant_filter, with_payload=True,
            )
        return _scored(response.points)

    def facet(self, name: str, key: str, flt: SearchFilter | None = None, limit: int = 50) -> list[FacetCount]:
        with _unavailable_on_connection_errors():
            response = self._client.facet(name, key=key, facet_filter=to_qdrant_filter(flt), limit=limit, exact=True)
        return [FacetCount(value=hit.value, count=hit.count) for hit in response.hits]

    def scroll_points(
        self, name: str, flt: SearchFilter | None = None, limit: int = 100,
        order_by: str | None = None, descending: bool = True, fields: Sequence[str] | None = None,
    ) -> list[ScoredPoint]:
        direction = models.Direction.DESC if descending else models.Direction.ASC
        with _unavailable_on_connection_errors():
            records, _ = self._client.scroll(
                name, scroll_filter=to_qdrant_filter(flt), limit=limit, with_payload=list(fields) if fields else True,
                with_vectors=False,
                order_by=models.OrderBy(key=order_by, direction=direction) if order_by else None,
            )
        return [ScoredPoint(id=str(r.id), score=0.0, payload=r.payload or {}) for r in records]

    def dense_vectors(self, name: str, ids: Sequence[str]) -> dict[str, list[float]]:
        wanted = [canonical_id(i) for i in ids]
        with _unavailable_on_connection_errors():
            records = self._client.retrieve(name, ids=wanted, with_payload=False, with_vectors=[""])
        return {str(r.id): _dense_part(r.vector) for r in records}

    def collection_exists(self, name: str) -> bool:
        with _unavailable_on_connection_errors():
            return self._client.collection_exists(name)

    def retrieve(self, name: str, ids: Sequence[str]) -> list[ScoredPoint]:
        wanted = [canonical_id(i) for i in ids]
        with _unavailable_on_connection_errors():
            records = self._client.retrieve(name, ids=wanted, with_payload=True, with_vectors=False)
        found = [ScoredPoint(id=str(r.id), score=0.0, payload=r.payload or {}) for r in records]
        return in_request_order(wanted, found)

    def count(self, name: str, flt: SearchFilter | None = None) -> int:
        with _unavailable_on_connection_errors():
            return self._client.count(name, count_filter=to_qdrant_filter(flt), exact=True).count

    def scroll_ids(self, name: str, flt: SearchFilter | None = None) -> Iterator[str]:
        qdrant_filter = to_qdrant_filter(flt)
        offset: models.ExtendedPointId | None = None
        while True:
            with _unavailable_on_connection_errors():
                records, offset = self._client.scroll(
                    name,
                    scroll_filter=qdrant_filter,
                    limit=_SCROLL_PAGE,
                    offset=offset,
                    with_payload=False,
                    with_vectors=False,
                )
            yield from (str(r.id) for r in records)
            if offset is None:
                return

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def _create_collection(self, name: str, dim: int, layout: VectorLayout | None = None) -> None:
        self._wait_for_peers(name)
        plan = self._plan

        def dense_params(multi: bool = False) -> models.VectorParams:
            maxsim = models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM) if multi else None
            return models.VectorParams(size=dim, distance=models.Distance.COSINE, on_disk=plan.on_disk,
                                       multivector_config=maxsim)

        def sparse_params() -> models.SparseVectorParams:
            return models.SparseVectorParams(modifier=models.Modifier.IDF,
                                             index=models.SparseIndexParams(on_disk=plan.on_disk))

        vectors: models.VectorParams | dict = dense_params()
        sparse = {SPARSE_VECTOR_NAME: sparse_params()}
        if layout is not None:
            vectors = {"": dense_params()} | {n: dense_params() for n in layout.dense}
            vectors |= {n: dense_params(multi=True) for n in layout.multi}
            sparse |= {n: sparse_params() for n in layout.sparse}
        try:
            self._client.create_collection(
                name, vectors_config=vectors, sparse_vectors_config=sparse,
                shard_number=plan.shard_number,
                replication_factor=plan.replication_factor,
                write_consistency_factor=plan.write_consistency_factor,
                on_disk_payload=plan.on_disk,
                hnsw_config=models.HnswConfigDiff(m=_HNSW_M),
                quantization_config=plan.quantization_config(),
            )
        except UnexpectedResponse as exc:
            # Another replica created it between our check and our call: that is the state we wanted.
            if exc.status_code != _CONFLICT:
                raise
        log.info("collection created", collection=name, shards=plan.shard_number,
                 replication=plan.replication_factor, quantization=plan.quantization, on_disk=plan.on_disk)

    def _wait_for_peers(self, name: str) -> None:
        """Raise WaitingForPeers while the cluster has fewer peers than planned (GET /cluster)."""
        if self._plan.expected_peers == 1:
            return  # one node (also qdrant-client's local mode, which has no REST cluster API)
        status = self._client.http.distributed_api.cluster_status().result
        peers = len(status.peers) if getattr(status, "status", None) == "enabled" else 1  # "disabled": one node
        if peers < self._plan.expected_peers:
            raise WaitingForPeers(f"not creating collection {name!r}: {peers} of {self._plan.expected_peers} "
                                  f"Qdrant peers have joined the cluster")

    def _add_sparse_vector(self, name: str) -> None:
        """Migrate a dense-only collection (layout before hybrid search) in place."""
        config = models.SparseVectorNameConfig(sparse=models.SparseVectorConfig(modifier=models.Modifier.IDF))
        try:
            self._client.create_vector_name(name, SPARSE_VECTOR_NAME, config, wait=True)
        except UnexpectedResponse as exc:
            raise ValueError(
                f"collection {name!r} has no keyword vector {SPARSE_VECTOR_NAME!r} and the server could not add it "
                f"(HTTP {exc.status_code}; Qdrant >= 1.16 can): recreate the collection and replay"
            ) from exc
        log.warning("added the keyword vector to an existing collection: points written before have none until "
                    "they are indexed again (replay the embedded-posts topic)", collection=name)


def _point_vectors(dense: list[float], sparse: SparseVector | None, named: dict | None = None) -> list[float] | dict:
    if (sparse is None or sparse.is_empty()) and not named:
        return dense
    vectors: dict = {"": dense}
    if sparse is not None and not sparse.is_empty():
        vectors[SPARSE_VECTOR_NAME] = _sparse(sparse)
    for name, vector in (named or {}).items():
        if isinstance(vector, SparseVector):
            if not vector.is_empty():
                vectors[name] = _sparse(vector)
        else:
            vectors[name] = vector
    return vectors


def _part_query(part: WeightedQuery) -> models.SparseVector | list:
    if part.sparse is not None:
        return _sparse(part.sparse)
    dense = query_vector(part.dense)
    return [dense] if part.multi else dense


def _weighted_sum(parts: Sequence[WeightedQuery]) -> models.FormulaQuery:
    """sum of weight_i * $score[i]; a candidate prefetch i did not return scores 0 there."""
    terms = [models.MultExpression(mult=[p.weight, f"$score[{i}]"]) for i, p in enumerate(parts)]
    return models.FormulaQuery(formula=models.SumExpression(sum=terms),
                               defaults={f"$score[{i}]": 0.0 for i in range(len(parts))})


def _sparse(sparse: SparseVector) -> models.SparseVector:
    return models.SparseVector(indices=sparse.indices, values=sparse.values)


def _scored(points: Sequence[models.ScoredPoint]) -> list[ScoredPoint]:
    return [ScoredPoint(id=str(p.id), score=p.score, payload=p.payload or {}) for p in points]


def _dense_part(vector: object) -> list[float]:
    if isinstance(vector, dict):
        vector = vector[""]
    return list(vector)


def to_qdrant_filter(flt: SearchFilter | None) -> models.Filter | None:
    if flt is None or flt.is_unconstrained():
        return None
    must: list[models.Condition] = [
        models.FieldCondition(key=key, match=models.MatchAny(any=values)) for key, values in flt.match_conditions()
    ]
    must += [
        models.FieldCondition(key=key, range=models.Range(gte=gte, lt=lt)) for key, (gte, lt) in flt.ranges().items()
    ]
    if flt.verticals is not None:
        must.append(_vertical_condition(flt.verticals))
    if flt.ids is not None:
        must.append(models.HasIdCondition(has_id=list(flt.ids)))
    if flt.has_sparse_vector is True:
        must.append(models.HasVectorCondition(has_vector=SPARSE_VECTOR_NAME))
    must_not: list[models.Condition] = []
    if flt.exclude_ids is not None:
        must_not.append(models.HasIdCondition(has_id=list(flt.exclude_ids)))
    if flt.has_sparse_vector is False:
        must_not.append(models.HasVectorCondition(has_vector=SPARSE_VECTOR_NAME))
    return models.Filter(must=must or None, must_not=must_not or None)


def _vertical_condition(condition: VerticalCondition) -> models.NestedCondition:
    label: list[models.Condition] = [
        models.FieldCondition(key="taxonomy", match=models.MatchValue(value=condition.taxonomy)),
        models.FieldCondition(key="vertical", match=models.MatchAny(any=condition.verticals)),
    ]
    if condition.min_confidence > 0:
        label.append(models.FieldCondition(key="confidence", range=models.Range(gte=condition.min_confidence)))
    return models.NestedCondition(nested=models.Nested(key="verticals", filter=models.Filter(must=label)))


def _check_vectors(name: str, info: models.CollectionInfo, dim: int) -> None:
    params = info.config.params.vectors
    if isinstance(params, dict):
        params = params.get("")
    if not isinstance(params, models.VectorParams) or params.size != dim or params.distance != models.Distance.COSINE:
        raise ValueError(f"collection {name!r} exists with vectors {params!r}, expected {dim}-d cosine")


def _check_layout(name: str, info: models.CollectionInfo, layout: VectorLayout | None) -> None:
    if layout is None:
        return
    dense = info.config.params.vectors if isinstance(info.config.params.vectors, dict) else {}
    present = set(dense) | set(info.config.params.sparse_vectors or {})
    missing = [n for n in layout.names() if n not in present]
    if missing:
        raise LayoutMismatch(f"collection {name!r} lacks the vectors {missing} of its layout")


@contextmanager
def _unavailable_on_connection_errors() -> Iterator[None]:
    try:
        yield
    except (ResponseHandlingException, httpx.TransportError) as exc:
        # ResponseHandlingException wraps transport failures: refused connections, timeouts, resets.
        raise StoreUnavailable(f"qdrant unreachable: {exc}") from exc
    except UnexpectedResponse as exc:
        if exc.status_code in _UNAVAILABLE_STATUSES:
            raise StoreUnavailable(f"qdrant unavailable: HTTP {exc.status_code}") from exc
        raise
