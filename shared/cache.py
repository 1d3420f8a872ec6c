"""Redis-backed caches. A cache failure never stops processing: it is counted, logged, and the
caller computes the value instead (uncached) until Redis answers again."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import redis

from shared.logging import get_logger
from shared.metrics import CACHE_ERRORS, CACHE_REQUESTS

log = get_logger(__name__)

EMBEDDING_TTL_S = 60 * 60 * 24 * 30  # a month: a replay within that window pays nothing twice


def connect_redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2, health_check_interval=15)


class EmbeddingCache:
    """Vectors keyed by model id + content hash, stored as raw float32 bytes."""

    def __init__(self, client: redis.Redis, model_id: str, *, name: str = "embedding") -> None:
        self.client = client
        self.model_id = model_id
        self.name = name

    def key(self, text_hash: str) -> str:
        return f"emb:{self.model_id}:{text_hash}"

    def get_many(self, text_hashes: Sequence[str]) -> list[np.ndarray | None]:
        if not text_hashes:
            return []
        try:
            raw = self.client.mget([self.key(h) for h in text_hashes])
        except redis.RedisError as exc:
            self._failed("get", exc)
            return [None] * len(text_hashes)
        found = [np.frombuffer(value, dtype="<f4") if value else None for value in raw]
        hits = sum(v is not None for v in found)
        CACHE_REQUESTS.labels(cache=self.name, result="hit").inc(hits)
        CACHE_REQUESTS.labels(cache=self.name, result="miss").inc(len(found) - hits)
        return found

    def put_many(self, items: Sequence[tuple[str, np.ndarray]]) -> None:
        if not items:
            return
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for text_hash, vector in items:
                    pipe.set(self.key(text_hash), np.asarray(vector, dtype="<f4").tobytes(), ex=EMBEDDING_TTL_S)
                pipe.execute()
        except redis.RedisError as exc:
            self._failed("put", exc)

    def _failed(self, operation: str, exc: Exception) -> None:
        CACHE_ERRORS.labels(cache=self.name).inc()
        log.warning("cache unavailable, continuing uncached", cache=self.name, operation=operation, error=str(exc))
