"""All routers of the API, one per resource."""

from __future__ import annotations

from fastapi import APIRouter

from services.query.api.routes import accounts, feedback, health, pages, posts, status, taxonomies

api_router = APIRouter()
for module in (posts, accounts, taxonomies, feedback, status, health, pages):
    api_router.include_router(module.router)
