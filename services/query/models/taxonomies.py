"""Taxonomies and their verticals (enabled or not)."""

from __future__ import annotations

from pydantic import BaseModel

from shared.taxonomy import Taxonomy


class TaxonomyList(BaseModel):
    taxonomies: list[Taxonomy]
