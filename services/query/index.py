"""The posts index as one tenant sees it: every read carries the tenant's data scope in the store
filter, so no code path can return another tenant's data by forgetting a check afterwards."""

from __future__ import annotations

from collections.abc import Sequence

from shared.auth import DataScope
from shared.classification.taxonomy import TaxonomyCatalog
from shared.vectorstore import FacetCount, ScoredPoint, SearchFilter, SparseVector, VectorStore, point_id
from shared.vectorstore.base import WeightedQuery


class TenantIndex:
    def __init__(self, store: VectorStore, collection: str, scope: DataScope,
                 model_variant: str | None = None, catalog: TaxonomyCatalog | None = None) -> None:
        self.store = store
        self.collection = collection
        self.scope = scope
        self.catalog = catalog  # the taxonomies this tenant sees (None: the caller's own catalog)
        # the model this collection's vectors were made with (None: the live one): queries use it too
        self.model_variant = model_variant

    def scoped(self, flt: SearchFilter | None = None) -> SearchFilter:
        return (flt or SearchFilter()).model_copy(update={
            "tenant_account_id": self.scope.account_ids, "tenant_platform": self.scope.platforms})

    def semantic(self, vector: Sequence[float], limit: int, flt: SearchFilter, offset: int = 0) -> list[ScoredPoint]:
        return self.store.search(self.collection, vector, limit, self.scoped(flt), offset)

    def keyword(self, sparse: SparseVector, limit: int, flt: SearchFilter, offset: int = 0) -> list[ScoredPoint]:
        return self.store.sparse_search(self.collection, sparse, limit, self.scoped(flt), offset)

    def hybrid(self, vector: Sequence[float], sparse: SparseVector, limit: int, flt: SearchFilter,
               offset: int, depth: int) -> list[ScoredPoint]:
        return self.store.hybrid_search(self.collection, vector, sparse, limit, self.scoped(flt), offset, depth)

    def weighted(self, parts: Sequence[WeightedQuery], limit: int, flt: SearchFilter, depth: int) -> list[ScoredPoint]:
        return self.store.weighted_search(self.collection, parts, limit, self.scoped(flt), depth)

    def facet(self, key: str, flt: SearchFilter, limit: int = 50) -> list[FacetCount]:
        return self.store.facet(self.collection, key, self.scoped(flt), limit)

    def count(self, flt: SearchFilter) -> int:
        return self.store.count(self.collection, self.scoped(flt))

    def top(self, flt: SearchFilter, limit: int, order_by: str) -> list[ScoredPoint]:
        return self.store.scroll_points(self.collection, self.scoped(flt), limit, order_by=order_by)

    def get(self, kind: str, source_id: int) -> ScoredPoint | None:
        """The point for (kind, id) if this tenant may see it: an id lookup inside the tenant filter."""
        found = self.store.scroll_points(self.collection, self.scoped(SearchFilter(ids=[point_id(kind, source_id)])), 1)
        return found[0] if found else None

    def dense_vector(self, point: ScoredPoint) -> list[float] | None:
        """Only for a point already obtained through get(): the tenant check happened there."""
        return self.store.dense_vectors(self.collection, [point.id]).get(point.id)
