"""Posts: POST /v1/search/posts, GET /v1/posts/{post_id}, GET /v1/posts/{post_id}/similar."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from services.query.api.deps import (
    KEYED_RESPONSES,
    NOT_FOUND,
    Clock,
    ContextDep,
    PostsIndex,
    SearchKey,
    json_response,
    posts_index,
)
from services.query.context import QueryContext
from services.query.errors import ApiError, invalid_field
from services.query.index import TenantIndex
from services.query.models.common import INT64_MAX
from services.query.models.posts import PostHit, PostSearchRequest, PostSearchResponse, SimilarPostsResponse
from shared.auth import ApiKeyRecord, Scope

router = APIRouter(tags=["posts"], responses=KEYED_RESPONSES)


def version_index(context: QueryContext, key: ApiKeyRecord, collection: str) -> TenantIndex:
    """An index version other than the active one: an operator's tool, still under the key's data scope."""
    if Scope.admin not in key.scopes:
        raise ApiError(403, "this key lacks the 'admin' scope", "index_version is for operators")
    if context.posts_collection.version(collection) is None:
        raise invalid_field("body.index_version", f"{collection!r} is not a registered index version")
    return context.posts_index(key.data_scope, collection, key.tenant)


PostIdPath = Annotated[int, Path(ge=0, le=INT64_MAX, description="Post id in the source database.")]


@router.post("/v1/search/posts", response_model=PostSearchResponse)
def search_posts(body: PostSearchRequest, clock: Clock, context: ContextDep, key: SearchKey,
                 response: Response) -> Response:
    """Hybrid (meaning + keywords), semantic or keyword search with filters, facets and a cursor."""
    # The index is looked up here rather than as a dependency, and the model is sent as JSON here:
    # each of those would be one more threadpool hop per search.
    if body.index_version is not None:
        index = version_index(context, key, body.index_version)
    else:
        index = posts_index(context, key)
    result = context.posts.search(body, index, clock)
    clock.report("search_posts", response, result.timings)
    return json_response(result, response)


@router.get("/v1/posts/{post_id}", response_model=PostHit, responses=NOT_FOUND)
def get_post(post_id: PostIdPath, clock: Clock, context: ContextDep, index: PostsIndex,
             response: Response) -> PostHit:
    """One indexed post (404 if it is not indexed or not visible to this key)."""
    hit = context.posts.get(post_id, index, clock)
    clock.report("get_post", response, clock.timings())
    return hit


@router.get("/v1/posts/{post_id}/similar", response_model=SimilarPostsResponse, responses=NOT_FOUND)
def similar_posts(post_id: PostIdPath, clock: Clock, context: ContextDep, index: PostsIndex, response: Response,
                  limit: Annotated[int, Query(ge=1, le=50)] = 10) -> SimilarPostsResponse:
    """Posts closest in meaning to this one (itself excluded)."""
    result = context.posts.similar(post_id, limit, index, clock)
    clock.report("similar_posts", response, result.timings)
    return result
