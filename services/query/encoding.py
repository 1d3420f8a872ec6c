"""Query text -> dense vector (embedding cached in Redis by model id + text hash) and keyword terms."""

from __future__ import annotations

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


class QueryEncoder:
    def __init__(self, embedder: TextEmbedder, cache: EmbeddingCache, sparse: SparseEncoder) -> None:
        self.embedder = embedder
        self.cache = cache
        self.sparse = sparse

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
        cached = self.cache.get_many([text_hash])[0]
        if cached is not None:
            return cached, True
        vector = self.embedder.embed([text])[0]
        self.cache.put_many([(text_hash, vector)])
        return vector, False


def normalise(text: str) -> str:
    """Identical queries share a cache entry; lone surrogates (valid JSON, invalid UTF-8) are replaced."""
    return " ".join(text.encode("utf-8", "replace").decode("utf-8").split())
