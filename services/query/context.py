"""Everything a request needs, built once at startup (or handed in by tests)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import redis

from services.query.accounts import AccountSearch
from services.query.active_collection import ActiveCollection
from services.query.index import TenantIndex
from services.query.posts import PostSearch
from services.query.status import PipelineStatus
from shared.account_vectors import ACCOUNTS_LAYOUT
from shared.auth import ApiKeyStore, DataScope, RateLimiter
from shared.classification.taxonomy import TaxonomyCatalog
from shared.events import EMBEDDING_DIM
from shared.index_registry import accounts_collection_for
from shared.vectorstore import VectorStore
from shared.vectorstore.base import LayoutMismatch


@dataclass
class QueryContext:
    store: VectorStore
    posts_collection: ActiveCollection
    accounts_collection: str
    redis: redis.Redis
    keys: ApiKeyStore
    limiter: RateLimiter
    catalog: TaxonomyCatalog
    posts: PostSearch
    accounts: AccountSearch
    status: PipelineStatus
    model_id: str
    hosted: dict[str, threading.Thread] = field(default_factory=dict)  # work run next to the API (edge host)
    _accounts_opened: set[str] = field(default_factory=set, repr=False)  # holding summaries, open here
    _accounts_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def indexer_alive(self) -> bool:
        indexer = self.hosted.get("indexer")
        return bool(indexer and indexer.is_alive())

    def posts_index(self, scope: DataScope, collection: str | None = None, tenant: str | None = None) -> TenantIndex:
        """The active index version, or ``collection`` (already checked to be a registered version), with the
        model its vectors were made by (the query is embedded by it too)."""
        name = collection or self.posts_collection.name()
        return TenantIndex(self.store, name, scope, self.posts_collection.model_variant(name),
                           self.catalog.visible_to(tenant))

    def accounts_index(self, scope: DataScope, posts_collection: str | None = None,
                       tenant: str | None = None) -> TenantIndex | None:
        """The account summaries of the posts version searched (the active one by default) as this tenant
        sees them, or None while there are none (an empty collection would hide every account)."""
        name = accounts_collection_for(posts_collection or self.posts_collection.name(),
                                       self.posts_collection.default, self.accounts_collection)
        with self._accounts_lock:
            if name not in self._accounts_opened:
                if not self.store.collection_exists(name):
                    return None
                try:  # opens an edge shard
                    self.store.ensure_collection(name, EMBEDDING_DIM, ACCOUNTS_LAYOUT)
                except LayoutMismatch:
                    return None  # written before the account vectors: the summarizer recreates it
                if self.store.count(name) == 0:
                    return None
                self._accounts_opened.add(name)
        # Summaries of every version are embedded by the summarizer's one (live) model.
        return TenantIndex(self.store, name, scope, None, self.catalog.visible_to(tenant))
