"""Examples people gave by correcting labels, as vectors in Redis: tier 1's few-shot memory.

A correction ("post 42 is beauty, not fashion") stores post 42's vector as an example of beauty
and removes it from fashion's examples. Classifiers add these vectors to the vertical's
prototypes; a revision counter per taxonomy tells every process when to rebuild, so a correction
changes tier 1 everywhere within seconds, without a redeploy.

A correction also remembers "not <vertical>" for the post's text (its content hash): re-indexing the
same text must not bring the wrong label back, whether tier 1 or an LLM proposes it. A later
correction saying the text *is* that vertical lifts it.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import redis

MAX_EXAMPLES_PER_VERTICAL = 500  # oldest corrections beyond this stop counting (bounded memory)


class FewShotStore:
    def __init__(self, client: redis.Redis, namespace: str = "fewshot") -> None:
        self.client = client
        self.namespace = namespace

    def _examples_key(self, taxonomy: str) -> str:
        return f"{self.namespace}:{taxonomy}:examples"  # hash "<vertical>|<post id>" -> float32 bytes

    def _order_key(self, taxonomy: str, vertical: str) -> str:
        return f"{self.namespace}:{taxonomy}:order:{vertical}"  # zset of post ids by time added

    def _negatives_key(self, taxonomy: str) -> str:
        return f"{self.namespace}:{taxonomy}:negatives"  # hash "<content hash>|<vertical>" -> post id

    def _revision_key(self, taxonomy: str) -> str:
        return f"{self.namespace}:{taxonomy}:revision"

    def add(self, taxonomy: str, vertical: str, post_id: int, vector: np.ndarray, at_ms: int) -> None:
        """Remember ``vector`` as an example of ``vertical``; the oldest beyond the cap are forgotten."""
        order_key = self._order_key(taxonomy, vertical)
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(self._examples_key(taxonomy), f"{vertical}|{post_id}", np.asarray(vector, dtype="<f4").tobytes())
            pipe.zadd(order_key, {str(post_id): at_ms})
            pipe.zrange(order_key, 0, -MAX_EXAMPLES_PER_VERTICAL - 1)
            pipe.incr(self._revision_key(taxonomy))
            *_, evicted, _ = pipe.execute()
        for post in evicted:
            self.remove(taxonomy, vertical, int(post))

    def remove(self, taxonomy: str, vertical: str, post_id: int) -> bool:
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hdel(self._examples_key(taxonomy), f"{vertical}|{post_id}")
            pipe.zrem(self._order_key(taxonomy, vertical), str(post_id))
            removed, _ = pipe.execute()
        if removed:
            self.client.incr(self._revision_key(taxonomy))
        return bool(removed)

    def add_negative(self, taxonomy: str, vertical: str, post_id: int, text_hash: str) -> None:
        """Remember that the text ``text_hash`` is not ``vertical`` (idempotent)."""
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(self._negatives_key(taxonomy), f"{text_hash}|{vertical}", str(post_id))
            pipe.incr(self._revision_key(taxonomy))
            pipe.execute()

    def remove_negative(self, taxonomy: str, vertical: str, text_hash: str) -> bool:
        removed = self.client.hdel(self._negatives_key(taxonomy), f"{text_hash}|{vertical}")
        if removed:
            self.client.incr(self._revision_key(taxonomy))
        return bool(removed)

    def negatives(self, taxonomy: str) -> dict[str, frozenset[str]]:
        """Content hash -> the verticals people said that text is not."""
        grouped: dict[str, set[str]] = defaultdict(set)
        for field in self.client.hkeys(self._negatives_key(taxonomy)):
            text_hash, vertical = field.decode().split("|", 1)
            grouped[text_hash].add(vertical)
        return {text_hash: frozenset(verticals) for text_hash, verticals in grouped.items()}

    def examples(self, taxonomy: str) -> dict[str, np.ndarray]:
        """Vertical -> (k, dim) example vectors."""
        grouped: dict[str, list[np.ndarray]] = defaultdict(list)
        for field, raw in self.client.hgetall(self._examples_key(taxonomy)).items():
            vertical = field.decode().split("|", 1)[0]
            grouped[vertical].append(np.frombuffer(raw, dtype="<f4"))
        return {vertical: np.stack(vectors) for vertical, vectors in grouped.items()}

    def revision(self, taxonomy: str) -> int:
        return int(self.client.get(self._revision_key(taxonomy)) or 0)
