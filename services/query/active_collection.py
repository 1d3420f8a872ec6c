"""Which collection search reads: the one the index registry's alias points at.

A replay builds a new index version next to the live one and switches the alias (one Redis SET,
shared.index_registry); requests read the alias, so all API replicas move together, and rollback
is as quick. A process may reuse what it read for ``alias_cache_s`` (QUERY_ALIAS_CACHE_S): that
spares every search a Redis round trip, and a switch reaches every replica within that time.
Without a registry (tests, a fixed deployment) it is the configured name.
"""

from __future__ import annotations

import threading
import time

import redis

from shared.events import EMBEDDING_DIM
from shared.index_registry import IndexRegistry, IndexVersion
from shared.logging import get_logger
from shared.vectorstore import VectorStore

log = get_logger("query.collections")


class ActiveCollection:
    def __init__(self, store: VectorStore, default: str, registry: IndexRegistry | None = None,
                 alias_cache_s: float = 0.0, live_variant: str = "fp32") -> None:
        self.store = store
        self.default = default
        self.registry = registry
        self.alias_cache_s = alias_cache_s
        self.live_variant = live_variant  # EMBEDDING_MODEL_VARIANT: a collection the registry does not know is the live one
        self._last = default
        self._read_at = -float("inf")  # monotonic time _last was read from the registry
        self._opened: set[str] = set()
        self._lock = threading.Lock()
        self._models: dict[str, str] = {}  # collection -> model variant, fixed for a version's life

    def name(self) -> str:
        """The active collection, open in this store (an edge shard is opened on first use)."""
        active = self._read_alias()
        self._open(active)
        self._last = active
        return active

    def version(self, collection: str) -> str | None:
        """A registered index version by name (open in this store), active or not; None if unknown."""
        known = {v.collection for v in self.versions()} | {self.default}
        if collection not in known:
            return None
        self._open(collection)
        return collection

    def model_variant(self, collection: str) -> str:
        """The embedding model the registry records for ``collection``. A version's model never changes
        and its name is never reused (IndexRegistry.next_version), so each is read from Redis once."""
        found = self._models.get(collection)
        if found is None:
            version = self.registry.versions().get(collection) if self.registry else None
            found = version.model_variant if version else self.live_variant
            if version is not None or self.registry is None:
                self._models[collection] = found
        return found

    def _open(self, collection: str) -> None:
        if collection not in self._opened:
            with self._lock:
                self.store.ensure_collection(collection, EMBEDDING_DIM)
                self._opened.add(collection)

    def versions(self) -> list[IndexVersion]:
        return sorted(self.registry.versions().values(), key=lambda v: v.version) if self.registry else []

    def _read_alias(self) -> str:
        if self.registry is None:
            return self.default
        now = time.monotonic()
        if now - self._read_at < self.alias_cache_s:
            return self._last
        try:
            active = self.registry.active() or self.default
            self._read_at = now
            return active
        except redis.RedisError as exc:  # keep serving the last known version; keys fail with 503 anyway
            log.warning("index registry unreadable, using the last active collection", error=str(exc))
            return self._last
