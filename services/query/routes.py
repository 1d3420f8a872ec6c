"""HTTP routes of the query API."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request

from services.indexer.core import post_point_id
from services.query.models import ErrorBody, PostHit, PostSearchRequest, PostSearchResponse, StatusResponse

router = APIRouter()


def _context(request: Request):
    return request.app.state.context


@router.get("/healthz")
def healthz(request: Request) -> dict:
    context = _context(request)
    return {"status": "ok", "indexer_running": bool(context.indexer and context.indexer.is_alive())}


@router.post("/v1/search/posts", response_model=PostSearchResponse, responses={422: {"model": ErrorBody}})
def search_posts(body: PostSearchRequest, request: Request) -> PostSearchResponse:
    return _context(request).search.search(body)


@router.get("/v1/posts/{post_id}", response_model=PostHit, responses={404: {"model": ErrorBody}})
def get_post(post_id: int, request: Request) -> PostHit:
    context = _context(request)
    found = context.store.retrieve(context.collection, [post_point_id(post_id)])
    if not found:
        raise HTTPException(status_code=404, detail=f"post {post_id} is not in the index")
    point = found[0]
    return PostHit(id=point.id, post_id=post_id, score=0.0, post=point.payload)


@router.get("/v1/status", response_model=StatusResponse)
def status(request: Request) -> StatusResponse:
    context = _context(request)
    return StatusResponse(collection=context.collection, points=context.store.count(context.collection),
                          model_id=context.model_id,
                          indexer_running=bool(context.indexer and context.indexer.is_alive()))
