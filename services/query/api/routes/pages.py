"""The search page (/) and the status page (/status): static files, no build step."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC_DIR = Path(__file__).resolve().parents[2] / "static"
router = APIRouter(include_in_schema=False)


@router.get("/")
def search_page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/status")
def status_page() -> FileResponse:
    return FileResponse(STATIC_DIR / "status.html", headers={"Cache-Control": "no-cache"})
