"""Request and response schemas of the search API (the OpenAPI contract)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class PostFilters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    platform: list[str] | None = Field(None, max_length=20, description="Any of these platforms.")
    account_id: list[int] | None = Field(None, max_length=1000, description="Any of these accounts.")
    published_after: datetime | None = Field(None, description="ISO 8601; naive means UTC.")
    published_before: datetime | None = Field(None, description="ISO 8601; naive means UTC.")
    min_views: int | None = Field(None, ge=0)
    min_likes: int | None = Field(None, ge=0)


class PostSearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=2000, description="What to look for, in plain words.")
    limit: int = Field(10, ge=1, le=100)
    filters: PostFilters = Field(default_factory=PostFilters)


class PostHit(BaseModel):
    id: str = Field(description="Point id (deterministic from the post id).")
    post_id: int
    score: float
    post: dict[str, Any]


class StageTimings(BaseModel):
    embed_ms: float
    search_ms: float
    total_ms: float
    embedding_cached: bool


class PostSearchResponse(BaseModel):
    results: list[PostHit]
    timings: StageTimings


class ErrorBody(BaseModel):
    error: str
    detail: Any = None


class StatusResponse(BaseModel):
    collection: str
    points: int
    model_id: str
    indexer_running: bool
