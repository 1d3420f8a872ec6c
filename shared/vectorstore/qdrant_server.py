"""VectorStore on a Qdrant server through qdrant-client (REST): the production path."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import httpx
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

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

_SCROLL_PAGE = 1024
# Statuses of a server (or its proxy) that is down or overloaded, as opposed to a bad request.
_UNAVAILABLE_STATUSES = frozenset({429, 502, 503, 504})
_CONFLICT = 409


class ServerVectorStore:
    def __init__(
        self,
        url: str | None = None,
        *,
        client: QdrantClient | None = None,
        api_key: str | None = None,
        timeout: float = 10,
    ) -> None:
        if client is None and url is None:
            raise ValueError("ServerVectorStore needs a url or a client")
        self._owns_client = client is None
        # No version check at construction: it would call the server, and a service must be able to
        # start while Qdrant is still down (calls then raise StoreUnavailable).
        self._client = client or QdrantClient(url=url, api_key=api_key, timeout=timeout, check_compatibility=False)

    def ensure_collection(self, name: str, dim: int) -> None:
        with _unavailable_on_connection_errors():
            if not self._client.collection_exists(name):
                self._create_collection(name, dim)
            info = self._client.get_collection(name)
            _check_vectors(name, info, dim)
            for field, schema in INDEXED_FIELDS.items():
                if field not in info.payload_schema:
                    self._client.create_payload_index(name, field, models.PayloadSchemaType(schema), wait=True)

    def upsert(self, name: str, points: Sequence[PointRecord]) -> None:
        if not points:
            return
        batch = models.Batch(
            ids=[p.id for p in points], vectors=vector_rows(points), payloads=[p.payload for p in points]
        )
        with _unavailable_on_connection_errors():
            self._client.upsert(name, points=batch, wait=True)

    def delete(self, name: str, ids: Sequence[str]) -> None:
        if not ids:
            return
        selector = models.PointIdsList(points=[canonical_id(i) for i in ids])
        with _unavailable_on_connection_errors():
            self._client.delete(name, points_selector=selector, wait=True)

    def delete_where(self, name: str, flt: SearchFilter) -> None:
        if flt.is_unconstrained():
            raise ValueError("delete_where needs at least one constraint; it would delete every point")
        selector = models.FilterSelector(filter=to_qdrant_filter(flt))
        with _unavailable_on_connection_errors():
            self._client.delete(name, points_selector=selector, wait=True)

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

    def _create_collection(self, name: str, dim: int) -> None:
        try:
            self._client.create_collection(
                name, vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE)
            )
        except UnexpectedResponse as exc:
            # Another replica created it between our check and our call: that is the state we wanted.
            if exc.status_code != _CONFLICT:
                raise


def to_qdrant_filter(flt: SearchFilter | None) -> models.Filter | None:
    if flt is None or flt.is_unconstrained():
        return None
    must: list[models.Condition] = [
        models.FieldCondition(key=key, match=models.MatchAny(any=values)) for key, values in flt.matches().items()
    ]
    must += [
        models.FieldCondition(key=key, range=models.Range(gte=gte, lt=lt)) for key, (gte, lt) in flt.ranges().items()
    ]
    return models.Filter(must=must)


def _check_vectors(name: str, info: models.CollectionInfo, dim: int) -> None:
    params = info.config.params.vectors
    if not isinstance(params, models.VectorParams) or params.size != dim or params.distance != models.Distance.COSINE:
        raise ValueError(f"collection {name!r} exists with vectors {params!r}, expected {dim}-d cosine")


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
