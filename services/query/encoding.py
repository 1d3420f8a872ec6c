"""Query text -> dense vector (embedding cached in memory, then in Redis by model id + text hash) and
keyword terms. The in-memory layer spares the Redis round trip for the queries people repeat most;
Redis shares the rest between replicas and restarts."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from shared.cache import EmbeddingCache
from shared.embedding import TextEmbedder
from shared.events import content_hash
from shared.sparse import SparseEncoder
from shared.vectorstore import SparseVector


@dataclass(frozen=True)
class EncodedQuery:
    dense: np.ndarray | None
    sparse: SparseVector | None
    embedding_cached: bool | None


class RecentVectors:
    """The last ``size`` query vectors by text hash, least recently used out first. Thread-safe."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, text_hash: str) -> np.ndarray | None:
        with self._lock:
            vector = self._vectors.get(text_hash)
            if vector is not None:
                self._vectors.move_to_end(text_hash)
            return vector

    def put(self, text_hash: str, vector: np.ndarray) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._vectors[text_hash] = vector
            self._vectors.move_to_end(text_hash)
            while len(self._vectors) > self.size:
                self._vectors.popitem(last=False)


class QueryEncoder:
    def __init__(self, embedder: TextEmbedder, cache: EmbeddingCache, sparse: SparseEncoder,
                 recent: int = 0) -> None:
        self.embedder = embedder
        self.cache = cache
        self.sparse = sparse
        self.recent = RecentVectors(recent)

    @property
    def model_id(self) -> str:
        return self.embedder.model_id

    def encode(self, text: str, *, dense: bool = True, sparse: bool = True) -> EncodedQuery:
        text = normalise(text)
        vector, cached = self.dense_vector(text) if dense else (None, None)
        return EncodedQuery(dense=vector, sparse=self.sparse.query(text) if sparse else None, embedding_cached=cached)

    def dense_vector(self, text: str) -> tuple[np.ndarray, bool]:
        """A Redis outage only costs the cache: get/put log and count the error and go on."""
        text_hash = content_hash(text)
        recent = self.recent.get(text_hash)
        if recent is not None:
            return recent, True
        cached = self.cache.get_many([text_hash])[0]
        if cached is not None:
            self.recent.put(text_hash, cached)
            return cached, True
        vector = self.embedder.embed([text])[0]
        self.cache.put_many([(text_hash, vector)])
        self.recent.put(text_hash, vector)
        return vector, False


def normalise(text: str) -> str:
    """Identical queries share a cache entry; lone surrogates (valid JSON, invalid UTF-8) are replaced."""
    return " ".join(text.encode("utf-8", "replace").decode("utf-8").split())
