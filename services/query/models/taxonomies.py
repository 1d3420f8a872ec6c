"""Taxonomies and their verticals (enabled or not)."""

from __future__ import annotations

from pydantic import BaseModel

from shared.classification.taxonomy import Taxonomy


class TaxonomyList(BaseModel):
    taxonomies: list[Taxonomy]
