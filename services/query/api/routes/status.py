"""Pipeline status: GET /v1/status (the status page polls it)."""

from __future__ import annotations

from fastapi import APIRouter

from services.query.api.deps import KEYED_RESPONSES, ContextDep, StatusKey
from services.query.models.status import StatusResponse

router = APIRouter(tags=["status"], responses=KEYED_RESPONSES)


@router.get("/v1/status", response_model=StatusResponse)
def pipeline_status(context: ContextDep, _: StatusKey) -> StatusResponse:
    """Per service lag, throughput and errors; caches; freshness; index version; LLM spend."""
    return context.status.snapshot(context.indexer_alive())
