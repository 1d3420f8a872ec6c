"""Taxonomies: GET /v1/taxonomies, GET /v1/taxonomies/{name}."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from services.query.api.deps import KEYED_RESPONSES, NOT_FOUND, ContextDep, SearchKey
from services.query.errors import not_found
from services.query.models.taxonomies import TaxonomyList
from shared.classification.taxonomy import Taxonomy

router = APIRouter(tags=["taxonomies"], responses=KEYED_RESPONSES)


@router.get("/v1/taxonomies", response_model=TaxonomyList)
def list_taxonomies(context: ContextDep, key: SearchKey) -> TaxonomyList:
    """Every taxonomy this key's tenant sees (the shared ones and its own) with all its verticals, switched
    off ones included (enabled: false)."""
    return TaxonomyList(taxonomies=context.catalog.visible_to(key.tenant).all())


@router.get("/v1/taxonomies/{name}", response_model=Taxonomy, responses=NOT_FOUND)
def get_taxonomy(name: Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")], context: ContextDep,
                 key: SearchKey) -> Taxonomy:
    taxonomy = context.catalog.visible_to(key.tenant).get(name)  # another tenant's: not found
    if taxonomy is None:
        raise not_found(f"taxonomy {name!r}")
    return taxonomy
