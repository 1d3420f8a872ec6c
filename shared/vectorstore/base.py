"""The vector store interface shared by the edge (in-process) and server (Qdrant) adapters.

Payload keys the filters and indexes rely on: account_id (int), platform (str),
published_at (int, epoch milliseconds), views (int), likes (int).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

# Never change: every stored point id is derived from it, so a new namespace orphans the whole index.
_POINT_ID_NAMESPACE = uuid.UUID("b6229d05-db28-418e-9984-37a8bade1155")

# Payload indexes created by ensure_collection; values are Qdrant schema type names.
INDEXED_FIELDS: dict[str, str] = {
    "account_id": "integer",
    "platform": "keyword",
    "published_at": "integer",
    "views": "integer",
    "likes": "integer",
}


class StoreUnavailable(Exception):
    """The backend cannot be reached (or the store is closed): callers should back off or answer 503."""


def point_id(kind: str, source_id: int | str) -> str:
    """Deterministic point id, so a replayed change event overwrites the point instead of duplicating it.

    point_id("post", 42) == point_id("post", "42").
    """
    return str(uuid.uuid5(_POINT_ID_NAMESPACE, f"{kind}:{source_id}"))


def canonical_id(value: str) -> str:
    """Lower-case hyphenated form: both backends return ids like this, so comparisons work."""
    return str(uuid.UUID(value))


class PointRecord(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    id: str
    # ndarray first, left to right: the default "smart" union would first validate an array as
    # list[float], element by element (~100 us per 384-d vector instead of ~2 us).
    vector: np.ndarray | list[float] = Field(union_mode="left_to_right")
    payload: dict[str, Any] = Field(default_factory=dict)

    @field_validator("id")
    @classmethod
    def _uuid(cls, value: str) -> str:
        return canonical_id(value)


class SearchFilter(BaseModel):
    """Constraints combined with AND; None means no constraint.

    The publication window is half-open, [published_after, published_before), so adjacent
    windows neither overlap nor leave gaps. min_views / min_likes are inclusive.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    # An empty list would silently match nothing; require None for "any" instead.
    platform: list[str] | None = Field(None, min_length=1)
    account_id: list[int] | None = Field(None, min_length=1)
    published_after: int | None = None
    published_before: int | None = None
    min_views: int | None = None
    min_likes: int | None = None

    def is_unconstrained(self) -> bool:
        return not self.model_dump(exclude_none=True)

    def matches(self) -> dict[str, list[str] | list[int]]:
        """Payload key -> accepted values (match any)."""
        pairs = {"platform": self.platform, "account_id": self.account_id}
        return {key: values for key, values in pairs.items() if values is not None}

    def ranges(self) -> dict[str, tuple[int | None, int | None]]:
        """Payload key -> (gte, lt) bounds; None is open."""
        bounds = {
            "published_at": (self.published_after, self.published_before),
            "views": (self.min_views, None),
            "likes": (self.min_likes, None),
        }
        return {key: (gte, lt) for key, (gte, lt) in bounds.items() if gte is not None or lt is not None}


class ScoredPoint(BaseModel):
    id: str
    score: float
    payload: dict[str, Any]


@runtime_checkable
class VectorStore(Protocol):
    def ensure_collection(self, name: str, dim: int) -> None:
        """Create the collection (cosine distance) and its payload indexes if missing. Idempotent.

        Raises ValueError if it exists with another dimension.
        """

    def upsert(self, name: str, points: Sequence[PointRecord]) -> None:
        """Insert or replace points (the whole payload is replaced). Durable when it returns."""

    def delete(self, name: str, ids: Sequence[str]) -> None: ...

    def delete_where(self, name: str, flt: SearchFilter) -> None:
        """Delete the points matching flt. Raises ValueError on an unconstrained filter."""

    def search(
        self, name: str, vector: Sequence[float], limit: int, flt: SearchFilter | None = None, offset: int = 0
    ) -> list[ScoredPoint]:
        """Nearest points by cosine similarity, best first."""

    def retrieve(self, name: str, ids: Sequence[str]) -> list[ScoredPoint]:
        """Points in request order with score 0; missing ids are simply absent."""

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
