"""Accounts (creators): search by topic, one account with summary, verticals and top posts."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from services.query.models.common import INT64_MAX, Platform, QueryText, StageTimings
from services.query.models.posts import PostHit, VerticalFilter

AccountSource = Literal["accounts_collection", "post_hits"]


class AccountFilters(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # JSON types as documented: no false for 0

    platform: list[Platform] | None = Field(None, min_length=1, max_length=20)
    verticals: VerticalFilter | None = None
    min_followers: int | None = Field(None, ge=0, le=INT64_MAX, description="Accounts with at least this many "
                                      "followers.")


class AccountSearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # JSON types as documented: no false for 0

    query: QueryText
    limit: int = Field(10, ge=1, le=50)
    filters: AccountFilters = Field(default_factory=AccountFilters)


class Account(BaseModel):
    account_id: int
    platform: str
    handle: str
    display_name: str | None = None
    followers: int = 0


class AccountVertical(BaseModel):
    taxonomy: str
    vertical: str
    posts: int = Field(description="Indexed posts of the account with this label.")
    share: float = Field(description="posts / the account's indexed posts.")


class AccountHit(BaseModel):
    account: Account
    score: float
    matching_posts: int = Field(description="Posts of this account among the candidates (post_hits), else 0.")
    summary: str | None = None
    top_posts: list[PostHit] = Field(description="Best matching posts of the account (post_hits), else [].")


class AccountSearchResponse(BaseModel):
    source: AccountSource = Field(description="accounts_collection: ranked by the account vectors the summarizer "
                                              "writes (centroid, themes, summary); post_hits: no summaries yet, "
                                              "accounts ranked by their best matching posts.")
    results: list[AccountHit]
    timings: StageTimings


class AccountDetail(BaseModel):
    account: Account
    summary: str | None = Field(description="null until the summarizer has written one.")
    post_count: int = Field(description="Indexed posts of the account.")
    verticals: list[AccountVertical]
    top_posts: list[PostHit] = Field(description="Most viewed indexed posts.")
    timings: StageTimings
