"""The vector store interface shared by the edge (in-process) and server (Qdrant) adapters.

Payload keys the filters and indexes rely on: account_id (int), platform (str),
published_at (int, epoch milliseconds), views (int), likes (int), indexed_at_ms (int, epoch ms),
model_id (str), verticals (list of {taxonomy, vertical, confidence}) and vertical_labels
(list of "taxonomy:vertical" strings, for facets).

Collection layout: an unnamed dense vector (cosine) and a sparse vector named SPARSE_VECTOR_NAME
whose IDF is applied by the engine at query time (modifier IDF), so documents carry term
frequencies only and a new document never forces the others to be re-encoded.
A collection may hold more named vectors (a VectorLayout: dense, MaxSim multivectors, sparse with
IDF), searched together by weighted_search; the accounts collection does (shared.account_vectors).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Never change: every stored point id is derived from it, so a new namespace orphans the whole index.
_POINT_ID_NAMESPACE = uuid.UUID("b6229d05-db28-418e-9984-37a8bade1155")
_NAMESPACE_BYTES = _POINT_ID_NAMESPACE.bytes
_CANONICAL_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

# Payload indexes created by ensure_collection; values are Qdrant schema type names.
INDEXED_FIELDS: dict[str, str] = {
    "account_id": "integer",
    "platform": "keyword",
    "published_at": "integer",
    "views": "integer",
    "likes": "integer",
    "followers": "integer",  # account summaries: the min_followers filter
    "indexed_at_ms": "integer",  # freshness window and its order_by need a range index
    "model_id": "keyword",  # facet: which embedding models the index holds (mid-reindex or not)
    "vertical_labels": "keyword",  # facet: vertical counts per "taxonomy:vertical"
    "verticals[].taxonomy": "keyword",
    "verticals[].vertical": "keyword",
    "verticals[].confidence": "float",
}

# The sparse (keyword) vector next to the unnamed dense one. Never rename: stored points use it.
SPARSE_VECTOR_NAME = "text"
# Reciprocal rank fusion constant: 60 is the value of the original paper and Qdrant's default.
RRF_K = 60


class LayoutMismatch(ValueError):
    """An existing collection lacks vectors the caller's layout needs (e.g. created by an older version)."""


class StoreUnavailable(Exception):
    """The backend cannot be reached (or the store is closed): callers should back off or answer 503."""


def point_id(kind: str, source_id: int | str) -> str:
    """Deterministic point id, so a replayed change event overwrites the point instead of duplicating it.

    point_id("post", 42) == point_id("post", "42"). It is uuid.uuid5(_POINT_ID_NAMESPACE, "kind:id")
    spelled out (SHA-1, version and variant bits, hyphenated hex) at a third of its cost: the indexer
    derives one or two per point written.
    """
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + f"{kind}:{source_id}".encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    hexed = digest.hex()
    return f"{hexed[:8]}-{hexed[8:12]}-{hexed[12:16]}-{hexed[16:20]}-{hexed[20:]}"


def canonical_id(value: str) -> str:
    """Lower-case hyphenated form: both backends return ids like this, so comparisons work."""
    if _CANONICAL_ID.fullmatch(value):
        return value  # already canonical (every id point_id makes): no parse per id and batch
    return str(uuid.UUID(value))


class SparseVector(BaseModel):
    """Term weights by hashed term index (see shared.sparse); absent terms weigh zero."""

    model_config = ConfigDict(frozen=True)

    indices: list[int] = Field(default_factory=list)
    values: list[float] = Field(default_factory=list)

    @model_validator(mode="after")
    def _same_length(self) -> SparseVector:
        if len(self.indices) != len(self.values):
            raise ValueError(f"{len(self.indices)} indices but {len(self.values)} values")
        return self

    def is_empty(self) -> bool:
        return not self.indices


class VectorLayout(BaseModel):
    """Named vectors a collection holds beside the unnamed dense one and the ``text`` sparse one.

    All dense ones have the collection's dimension and cosine distance; ``multi`` ones hold several
    vectors per point, compared with a query by MaxSim (the best-matching one); ``sparse`` ones get
    the engine's IDF modifier like ``text``.
    """

    model_config = ConfigDict(frozen=True)

    dense: tuple[str, ...] = ()
    multi: tuple[str, ...] = ()
    sparse: tuple[str, ...] = ()

    def names(self) -> tuple[str, ...]:
        return self.dense + self.multi + self.sparse


class WeightedQuery(BaseModel):
    """One part of a weighted_search: a query against one named vector and the weight of its score."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    using: str = Field(description='Name of the vector; "" is the unnamed dense one.')
    weight: float
    dense: list[float] | None = None
    sparse: SparseVector | None = None
    multi: bool = Field(False, description="The named vector is a multivector: the dense query is "
                                           "compared with each of its vectors, the best counts.")

    @model_validator(mode="after")
    def _one_query(self) -> WeightedQuery:
        if (self.dense is None) == (self.sparse is None):
            raise ValueError("a weighted query has either a dense or a sparse vector")
        return self


class PointRecord(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    id: str
    # ndarray first, left to right: the default "smart" union would first validate an array as
    # list[float], element by element (~100 us per 384-d vector instead of ~2 us).
    vector: np.ndarray | list[float] = Field(union_mode="left_to_right")
    # Keyword vector; None leaves the point out of keyword search (it still ranks semantically).
    sparse: SparseVector | None = None
    # Vectors of the collection's VectorLayout by name: a list (dense), a list of lists (multi) or a
    # SparseVector. A name left out leaves the point out of searches on that vector.
    named: dict[str, Any] = Field(default_factory=dict)
    payload: dict[str, Any] = Field(default_factory=dict)

    @field_validator("id")
    @classmethod
    def _uuid(cls, value: str) -> str:
        return canonical_id(value)


class VerticalCondition(BaseModel):
    """Posts labelled with any of ``verticals`` in ``taxonomy`` with at least ``min_confidence``.

    One label must satisfy all three at once (a nested condition), so a post labelled "food" at
    0.3 and "travel" at 0.9 does not match food >= 0.5.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    taxonomy: str = Field(min_length=1)
    verticals: list[str] = Field(min_length=1)
    min_confidence: float = Field(0.0, ge=0.0, le=1.0)


class SearchFilter(BaseModel):
    """Constraints combined with AND; None means no constraint.

    The publication window is half-open, [published_after, published_before), so adjacent
    windows neither overlap nor leave gaps. min_views / min_likes / min_followers are inclusive.

    tenant_account_id / tenant_platform are the data a client may see at all. They are separate
    from account_id / platform (what a request asks for) so both apply: a tenant restricted to
    accounts {1, 2} asking for accounts {2, 3} gets account 2 only, and a request can never
    widen its tenant's scope.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    # An empty list would silently match nothing; require None for "any" instead.
    platform: list[str] | None = Field(None, min_length=1)
    account_id: list[int] | None = Field(None, min_length=1)
    published_after: int | None = None
    published_before: int | None = None
    min_views: int | None = None
    min_likes: int | None = None
    min_followers: int | None = None
    verticals: VerticalCondition | None = None
    tenant_account_id: list[int] | None = Field(None, min_length=1)
    tenant_platform: list[str] | None = Field(None, min_length=1)
    ids: list[str] | None = Field(None, min_length=1, description="Only these point ids.")
    exclude_ids: list[str] | None = Field(None, min_length=1, description="Never these point ids.")
    indexed_after: int | None = Field(None, description="indexed_at_ms >= this (epoch ms).")
    has_sparse_vector: bool | None = Field(None, description="True: only points with a keyword vector.")

    @field_validator("ids", "exclude_ids")
    @classmethod
    def _uuids(cls, values: list[str] | None) -> list[str] | None:
        return None if values is None else [canonical_id(v) for v in values]

    def is_unconstrained(self) -> bool:
        return not self.model_dump(exclude_none=True)

    def matches(self) -> dict[str, list[str] | list[int]]:
        """Payload key -> accepted values (match any), for the request's own constraints."""
        pairs = {"platform": self.platform, "account_id": self.account_id}
        return {key: values for key, values in pairs.items() if values is not None}

    def match_conditions(self) -> list[tuple[str, list[str] | list[int]]]:
        """Every (payload key, accepted values) condition, tenant scope included; one key may repeat."""
        pairs = [("platform", self.platform), ("account_id", self.account_id),
                 ("platform", self.tenant_platform), ("account_id", self.tenant_account_id)]
        return [(key, values) for key, values in pairs if values is not None]

    def ranges(self) -> dict[str, tuple[int | None, int | None]]:
        """Payload key -> (gte, lt) bounds; None is open."""
        bounds = {
            "published_at": (self.published_after, self.published_before),
            "views": (self.min_views, None),
            "likes": (self.min_likes, None),
            "followers": (self.min_followers, None),
            "indexed_at_ms": (self.indexed_after, None),
        }
        return {key: (gte, lt) for key, (gte, lt) in bounds.items() if gte is not None or lt is not None}

    def without(self, *fields: str) -> SearchFilter:
        """A copy without the request constraints named (facets count as if they were not set)."""
        return self.model_copy(update={name: None for name in fields})


class FacetCount(BaseModel):
    value: str | int | bool
    count: int


class ScoredPoint(BaseModel):
    id: str
    score: float
    payload: dict[str, Any]


@runtime_checkable
class VectorStore(Protocol):
    def ensure_collection(self, name: str, dim: int, layout: VectorLayout | None = None) -> None:
        """Create the collection (cosine distance) and its payload indexes if missing. Idempotent.

        Raises ValueError if it exists with another dimension, LayoutMismatch if it lacks a vector
        of ``layout`` (a collection is opened with the layout it was created with).
        """

    def drop_collection(self, name: str) -> None:
        """Delete the collection and every point in it (no-op if missing)."""

    def weighted_search(
        self, name: str, parts: Sequence[WeightedQuery], limit: int, flt: SearchFilter | None = None,
        depth: int = 100,
    ) -> list[ScoredPoint]:
        """Candidates of every part (``depth`` each, filtered), ranked by the weighted sum of their
        part scores; a candidate another part did not return adds 0 for that part. Scores are the sums."""

    def upsert(self, name: str, points: Sequence[PointRecord]) -> None:
        """Insert or replace points (the whole payload is replaced). Durable when it returns."""

    def delete(self, name: str, ids: Sequence[str]) -> None: ...

    def set_payloads(self, name: str, payloads: Mapping[str, dict[str, Any]]) -> None:
        """Per point id, overwrite the given top-level payload keys (others are kept). Existing
        points only: callers check with ``retrieve`` first. Durable when it returns."""

    def delete_where(self, name: str, flt: SearchFilter) -> None:
        """Delete the points matching flt. Raises ValueError on an unconstrained filter."""

    def search(
        self, name: str, vector: Sequence[float], limit: int, flt: SearchFilter | None = None, offset: int = 0
    ) -> list[ScoredPoint]:
        """Nearest points by cosine similarity, best first."""

    def retrieve(self, name: str, ids: Sequence[str]) -> list[ScoredPoint]:
        """Points in request order with score 0; missing ids are simply absent."""

    def sparse_search(
        self, name: str, sparse: SparseVector, limit: int, flt: SearchFilter | None = None, offset: int = 0
    ) -> list[ScoredPoint]:
        """Keyword search: dot product of the sparse vectors with IDF applied, best first."""

    def hybrid_search(
        self, name: str, vector: Sequence[float], sparse: SparseVector, limit: int,
        flt: SearchFilter | None = None, offset: int = 0, depth: int = 100,
    ) -> list[ScoredPoint]:
        """Dense and keyword candidates (``depth`` of each, filtered), fused by reciprocal rank.

        Scores are RRF scores. Pages of one query agree with each other as long as ``depth`` is
        the same for all of them and offset + limit <= depth.
        """

    def facet(self, name: str, key: str, flt: SearchFilter | None = None, limit: int = 50) -> list[FacetCount]:
        """Exact counts of the values of payload ``key`` among points matching flt, largest first."""

    def scroll_points(
        self, name: str, flt: SearchFilter | None = None, limit: int = 100,
        order_by: str | None = None, descending: bool = True, fields: Sequence[str] | None = None,
    ) -> list[ScoredPoint]:
        """Up to ``limit`` matching points (score 0), ordered by an indexed numeric key if given.

        ``fields`` limits the payload to those keys (None: the whole payload).
        """

    def dense_vectors(self, name: str, ids: Sequence[str]) -> dict[str, list[float]]:
        """Dense vectors of the points that exist, by canonical id."""

    def collection_exists(self, name: str) -> bool:
        """True if the collection exists (for the edge store: open here or present on disk)."""

    def count(self, name: str, flt: SearchFilter | None = None) -> int:
        """Exact count."""

    def scroll_ids(self, name: str, flt: SearchFilter | None = None) -> Iterator[str]:
        """Every matching point id (for tests and verification, not for request paths)."""

    def close(self) -> None: ...


def vector_rows(points: Sequence[PointRecord], dim: int | None = None) -> list[list[float]]:
    """Vectors as float lists, converted in one numpy call rather than float by float in Python.

    Neither client takes numpy arrays natively: qdrant_edge 0.9 reads an array element by element
    (slower than one tolist() of the whole batch), qdrant-client serialises lists.
    """
    matrix = np.asarray([p.vector for p in points], dtype=np.float32)
    if matrix.ndim != 2 or (dim is not None and matrix.shape[1] != dim):
        raise ValueError(f"expected {len(points)} vectors of dimension {dim}, got shape {matrix.shape}")
    return matrix.tolist()


def query_vector(vector: Sequence[float] | np.ndarray) -> list[float]:
    return np.asarray(vector, dtype=np.float32).tolist()


def in_request_order(ids: Sequence[str], found: Sequence[ScoredPoint]) -> list[ScoredPoint]:
    by_id = {p.id: p for p in found}
    return [by_id[i] for i in dict.fromkeys(ids) if i in by_id]
