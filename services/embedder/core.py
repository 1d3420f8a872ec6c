"""Turn viable posts into embedded posts: cache first, then one model call for all misses.

Batching across messages is where the speed is: the model runs on every miss of a Kafka batch at
once, sorted by length inside the embedder. Cache keys are model id + content hash, so a replay
with the same model pays nothing and a new model never reads an old model's vectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from shared.events import AccountPurge, EmbeddedPostUpsert, PostDelete, PostUpsert, content_hash


class Embedder(Protocol):
    model_id: str

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class VectorCache(Protocol):
    def get_many(self, text_hashes: Sequence[str]) -> list[np.ndarray | None]: ...
    def put_many(self, items: Sequence[tuple[str, np.ndarray]]) -> None: ...


PassThrough = PostDelete | AccountPurge


class PostEmbedding:
    def __init__(self, embedder: Embedder, cache: VectorCache) -> None:
        self.embedder = embedder
        self.cache = cache

    def process(self, events: Sequence[PostUpsert | PassThrough]) -> list[EmbeddedPostUpsert | PassThrough]:
        """Same events, same order; upserts carry their vector."""
        upserts = [e for e in events if isinstance(e, PostUpsert)]
        vectors = iter(self.vectors_for([e.post.embedding_text() for e in upserts]))
        model_id = self.embedder.model_id
        return [EmbeddedPostUpsert.build(e, model_id, next(vectors)) if isinstance(e, PostUpsert) else e
                for e in events]

    def vectors_for(self, texts: Sequence[str]) -> list[np.ndarray]:
        hashes = [content_hash(text) for text in texts]
        found = self.cache.get_many(hashes)
        missing = sorted({h: i for i, (h, v) in enumerate(zip(hashes, found)) if v is None}.items())
        if missing:
            computed = self.embedder.embed([texts[i] for _, i in missing])
            by_hash = {h: computed[n] for n, (h, _) in enumerate(missing)}
            self.cache.put_many(list(by_hash.items()))
            found = [v if v is not None else by_hash[h] for h, v in zip(hashes, found)]
        return found
