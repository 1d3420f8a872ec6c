"""GET /healthz: liveness for probes and scripts (no key needed, no data)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from services.query.api.deps import ContextDep

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    indexer_running: bool


@router.get("/healthz", response_model=Health)
def healthz(context: ContextDep) -> Health:
    return Health(status="ok", indexer_running=context.indexer_alive())
