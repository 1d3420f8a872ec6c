"""Accounts: POST /v1/search/accounts, GET /v1/accounts/{account_id}."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from services.query.api.deps import KEYED_RESPONSES, NOT_FOUND, Clock, ContextDep, PostsIndex, SearchKey
from services.query.models.accounts import AccountDetail, AccountSearchRequest, AccountSearchResponse
from services.query.models.common import INT64_MAX

router = APIRouter(tags=["accounts"], responses=KEYED_RESPONSES)


@router.post("/v1/search/accounts", response_model=AccountSearchResponse)
def search_accounts(body: AccountSearchRequest, clock: Clock, context: ContextDep, key: SearchKey,
                    posts: PostsIndex, response: Response) -> AccountSearchResponse:
    """Creators by topic: by what their posts are about (centroid, themes and words of each summarized
    account, fused), else, before any summary exists, by their best matching posts."""
    result = context.accounts.search(body, posts, context.accounts_index(key.data_scope, posts.collection, key.tenant), clock)
    clock.report("search_accounts", response, result.timings)
    return result


@router.get("/v1/accounts/{account_id}", response_model=AccountDetail, responses=NOT_FOUND)
def get_account(account_id: Annotated[int, Path(ge=0, le=INT64_MAX)], clock: Clock, context: ContextDep,
                key: SearchKey, posts: PostsIndex, response: Response) -> AccountDetail:
    """An account with its summary (null until summarized), verticals and most viewed posts."""
    result = context.accounts.detail(account_id, posts, context.accounts_index(key.data_scope, posts.collection, key.tenant), clock)
    clock.report("get_account", response, result.timings)
    return result
