"""Everything a request needs, built once at startup (or handed in by tests)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import redis

from services.query.accounts import AccountSearch
from services.query.active_collection import EMBEDDING_DIM, ActiveCollection
from services.query.index import TenantIndex
from services.query.posts import PostSearch
from services.query.status import PipelineStatus
from shared.auth import ApiKeyStore, DataScope, RateLimiter
from shared.taxonomy import TaxonomyCatalog
from shared.vectorstore import VectorStore


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
    indexer: threading.Thread | None = None  # the indexer supervisor, when it runs in this process
    _accounts_open: bool = field(default=False, repr=False)
    _accounts_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def indexer_alive(self) -> bool:
        return bool(self.indexer and self.indexer.is_alive())

    def posts_index(self, scope: DataScope, collection: str | None = None) -> TenantIndex:
        """The active index version, or ``collection`` (already checked to be a registered version)."""
        return TenantIndex(self.store, collection or self.posts_collection.name(), scope)

    def accounts_index(self, scope: DataScope) -> TenantIndex | None:
        """The summarizer's accounts collection as this tenant sees it, or None while it does not exist."""
        with self._accounts_lock:
            if not self._accounts_open:
                if not self.store.collection_exists(self.accounts_collection):
                    return None
                self.store.ensure_collection(self.accounts_collection, EMBEDDING_DIM)  # opens an edge shard
                self._accounts_open = True
        return TenantIndex(self.store, self.accounts_collection, scope)
