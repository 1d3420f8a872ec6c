"""Posts: search (hybrid, semantic or keyword), one post, similar posts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from services.query.models.common import AccountId, Name, NonNegativeInt64, Platform, QueryText, StageTimings
from shared.stored_post import PostCard

SearchMode = Literal["hybrid", "semantic", "keyword"]


def _iso_string(value: object) -> object:
    # FastAPI validates parsed JSON (Python objects), where strict datetimes refuse strings; so parse
    # leniently but only from a string, as the schema says (lax mode alone would take 0 as 1970).
    if not isinstance(value, str):
        raise ValueError("expected an ISO 8601 date-time string")
    return value


IsoDateTime = Annotated[datetime, Field(strict=False), BeforeValidator(_iso_string)]
FacetName = Literal["platform", "vertical"]


class VerticalFilter(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # JSON types as documented: no false for 0

    taxonomy: Name = Field("default", description="Taxonomy the verticals belong to (GET /v1/taxonomies).")
    verticals: list[Name] = Field(min_length=1, max_length=50, description="Any of these verticals.",
                                  examples=[["food", "travel"]])
    min_confidence: float | None = Field(
        None, ge=0.0, le=1.0, description="The label's confidence must be at least this. Default: post search uses "
        "the label floor (LABEL_CONFIDENCE_FLOOR, 0.5: labels under it are neither shown nor counted); account "
        "search 0.")


class PostFilters(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # JSON types as documented: no false for 0

    platform: list[Platform] | None = Field(None, min_length=1, max_length=20, description="Any of these platforms.")
    account_id: list[AccountId] | None = Field(None, min_length=1, max_length=1000, description="Any of these accounts.")
    verticals: VerticalFilter | None = None
    published_after: IsoDateTime | None = Field(None, description="Inclusive; ISO 8601 date-time, naive means UTC.")
    published_before: IsoDateTime | None = Field(None, description="Exclusive; ISO 8601 date-time, naive means UTC.")
    min_views: NonNegativeInt64 | None = None
    min_likes: NonNegativeInt64 | None = None


class PostSearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # JSON types as documented: no false for 0

    query: QueryText
    mode: SearchMode = Field("hybrid", description="hybrid: meaning and keywords fused by rank (default); "
                                                  "semantic: meaning only; keyword: BM25 terms only.")
    limit: int = Field(10, ge=1, le=100)
    cursor: str | None = Field(None, max_length=512, description="next_cursor of the previous page of this query.")
    filters: PostFilters = Field(default_factory=PostFilters)
    facets: list[FacetName] = Field(default_factory=lambda: ["platform", "vertical"], max_length=2,
                                    description="Counts to return with the first page ([] for none).")
    index_version: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,64}$",
                                      description="Search this index version (e.g. posts_v2) instead of the active "
                                                  "one, to compare before a switch; needs the admin scope.")

    @model_validator(mode="after")
    def _unique_facets(self) -> PostSearchRequest:
        self.facets = list(dict.fromkeys(self.facets))
        return self


class VerticalLabelOut(BaseModel):
    taxonomy: str
    vertical: str
    confidence: float
    version: str | None = Field(None, description="Version of the taxonomy the label was decided with.")
    tier: str | None = Field(None, description='Who decided: "embedding" (tier 1) or "llm" (tier 2).')


class Post(PostCard):
    """A post as the index holds it (text trimmed for display; the vector saw it all)."""

    verticals: list[VerticalLabelOut] = Field(default_factory=list, description="Labels of enabled verticals.")


class PostHit(BaseModel):
    id: str = Field(description="Point id (deterministic from the post id).")
    post_id: int
    score: float = Field(description="hybrid: RRF score; semantic: cosine similarity; keyword: BM25; lookups: 0.")
    post: Post


class PlatformCount(BaseModel):
    value: str
    count: int


class VerticalCount(BaseModel):
    taxonomy: str
    vertical: str
    count: int


class Facets(BaseModel):
    basis: Literal["filtered_set"] = Field(
        "filtered_set",
        description="Counts are over every post matching the filters (exact, Qdrant facet API), each facet "
                    "ignoring its own filter so other choices stay visible; ranking does not change them.",
    )
    platform: list[PlatformCount] | None = None
    vertical: list[VerticalCount] | None = None


class PostSearchResponse(BaseModel):
    mode: SearchMode
    results: list[PostHit]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null on the last page.")
    facets: Facets | None = Field(None, description="On the first page only, when asked for.")
    timings: StageTimings


class SimilarPostsResponse(BaseModel):
    post_id: int
    results: list[PostHit]
    timings: StageTimings


