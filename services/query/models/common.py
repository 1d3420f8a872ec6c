"""Schemas shared by every resource: errors, stage timings, bounded scalar types."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

INT64_MAX = 2**63 - 1  # Qdrant stores integers as i64: larger values are rejected up front (422)

NonNegativeInt64 = Annotated[int, Field(ge=0, le=INT64_MAX)]
PostId = Annotated[int, Field(ge=0, le=INT64_MAX, description="Post id in the source database.")]
AccountId = Annotated[int, Field(ge=0, le=INT64_MAX, description="Account id in the source database.")]
Platform = Annotated[str, Field(pattern=r"^[a-z0-9_]{1,32}$", description="e.g. youtube, instagram, tiktok.")]
Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
# At least one visible character: a blank query has no meaning to rank by.
QueryText = Annotated[str, Field(min_length=1, max_length=2000, pattern=r"\S",
                                 examples=["easy vegan dinner recipes"],
                                 description="What to look for, in plain words.")]


class FieldError(BaseModel):
    field: str | None = Field(description="Where the problem is, e.g. body.filters.min_views; null if global.")
    reason: str


class ErrorBody(BaseModel):
    error: str = Field(description="What went wrong, in one sentence.")
    detail: list[FieldError] | str | None = None


class StageTimings(BaseModel):
    """Wall time per stage of this request (also in the Server-Timing header)."""

    embed_ms: float = Field(description="Query encoding: dense embedding (or its cache hit) and keyword terms.")
    search_ms: float = Field(description="The ranking query in the vector store.")
    fetch_ms: float = Field(description="Other store reads: facets, lookups, top posts, summaries.")
    total_ms: float
    embedding_cached: bool | None = Field(None, description="Query embedding came from the Redis cache.")
