"""Query text -> dense vector (embedding cached in memory, then in Redis by model id + text hash) and
keyword terms. The in-memory layer spares the Redis round trip for the queries people repeat most;
Redis shares the rest between replicas and restarts.

A query is embedded by the model of the index version it searches (fp32 and int8 vectors differ, and a
cosine across the two ranks wrong), so both cache layers are keyed by model id and a second model is
loaded the first time a version that needs it is searched."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from shared.cache import EmbeddingCache
from shared.embedding import TextEmbedder, model_variant_of
from shared.events import content_hash
from shared.sparse import SparseEncoder
from shared.vectorstore import SparseVector


@dataclass(frozen=True)
class EncodedQuery:
    dense: np.ndarray | None
    sparse: SparseVector | None
    embedding_cached: bool | None


class RecentVectors:
    """The last ``size`` query vectors by model id + text hash, least recently used out first. Thread-safe."""

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


QueryModel = tuple[TextEmbedder, EmbeddingCache]
ModelLoader = Callable[[str], QueryModel]  # model variant ("fp32", "int8") -> its embedder and query cache


class UnknownQueryModel(LookupError):
    pass


class QueryEncoder:
    def __init__(self, embedder: TextEmbedder, cache: EmbeddingCache, sparse: SparseEncoder,
                 recent: int = 0, load_model: ModelLoader | None = None) -> None:
        self.embedder = embedder  # the live pipeline's model, loaded at startup
        self.cache = cache
        self.sparse = sparse
        self.recent = RecentVectors(recent)
        self.live_variant = model_variant_of(embedder.model_id)
        self._models: dict[str, QueryModel] = {self.live_variant: (embedder, cache)}
        self._load_model = load_model
        self._load_lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return self.embedder.model_id

    def model(self, variant: str | None) -> QueryModel:
        """The embedder (and its cache) of ``variant`` (None: the live model), loaded on first use."""
        variant = variant or self.live_variant
        found = self._models.get(variant)
        if found is not None:
            return found
        if self._load_model is None:
            raise UnknownQueryModel(f"no query model {variant!r} in this process")
        with self._load_lock:  # one load per variant, however many requests ask at once
            if variant not in self._models:
                self._models[variant] = self._load_model(variant)
        return self._models[variant]

    def encode(self, text: str, *, dense: bool = True, sparse: bool = True,
               model_variant: str | None = None) -> EncodedQuery:
        text = normalise(text)
        vector, cached = self.dense_vector(text, model_variant) if dense else (None, None)
        return EncodedQuery(dense=vector, sparse=self.sparse.query(text) if sparse else None, embedding_cached=cached)

    def dense_vector(self, text: str, model_variant: str | None = None) -> tuple[np.ndarray, bool]:
        """A Redis outage only costs the cache: get/put log and count the error and go on."""
        embedder, cache = self.model(model_variant)
        text_hash = content_hash(text)
        recent_key = f"{embedder.model_id}:{text_hash}"
        recent = self.recent.get(recent_key)
        if recent is not None:
            return recent, True
        cached = cache.get_many([text_hash])[0]
        if cached is not None:
            self.recent.put(recent_key, cached)
            return cached, True
        vector = embedder.embed([text])[0]
        cache.put_many([(text_hash, vector)])
        self.recent.put(recent_key, vector)
        return vector, False


def normalise(text: str) -> str:
    """Identical queries share a cache entry; lone surrogates (valid JSON, invalid UTF-8) are replaced."""
    return " ".join(text.encode("utf-8", "replace").decode("utf-8").split())
