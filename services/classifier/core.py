"""Which posts deserve a second opinion, and what the opinion becomes: pure over two small interfaces.

Tier 1 (the post vector against each taxonomy's prototypes) has already labelled every post in
the indexer. Here the same tier 1 runs again only to find the posts it is unsure about; those go
to tier 2 (an LLM), batched per taxonomy, and each answer becomes a ``post.labels`` event for the
indexer. With no LLM configured nothing is sent, but the share that would have been is still
counted: that share times the price per post is the cost of turning tier 2 on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from services.classifier.llm_tier import PostToLabel, TierTwoResult
from shared.classification.taxonomy import Taxonomy, VerticalLabel
from shared.classification.tier_one import TierOneResult
from shared.events import EmbeddedPostUpsert, PostLabels, content_hash


class TierOne(Protocol):
    def results(self, vectors: np.ndarray) -> list[list[TierOneResult]]: ...
    def without_negated(self, labels: Sequence[VerticalLabel], content_hash: str) -> list[VerticalLabel]: ...


class TierTwo(Protocol):
    def classify(self, taxonomy: Taxonomy, posts: Sequence[PostToLabel]) -> TierTwoResult: ...


@dataclass
class ClassifiedBatch:
    opinions: list[PostLabels] = field(default_factory=list)
    posts: int = 0  # distinct posts looked at
    uncertain: dict[str, int] = field(default_factory=dict)  # taxonomy -> posts tier 1 was unsure about
    failed: dict[str, int] = field(default_factory=dict)  # taxonomy -> posts tier 2 could not answer
    results: list[list[TierOneResult]] = field(default_factory=list)  # for drift metrics


def latest_upserts(events: Sequence[object]) -> list[EmbeddedPostUpsert]:
    """The last upsert of each post in the batch (earlier ones describe text already replaced)."""
    latest: dict[int, EmbeddedPostUpsert] = {}
    for event in events:
        if isinstance(event, EmbeddedPostUpsert):
            latest.pop(event.post.id, None)
            latest[event.post.id] = event
    return list(latest.values())


class PostClassifier:
    def __init__(self, tier_one: TierOne, taxonomies: Mapping[str, Taxonomy], tier_two: TierTwo | None = None,
                 tier_two_model: str = "") -> None:
        self.tier_one = tier_one
        self.taxonomies = taxonomies
        self.tier_two = tier_two
        self.tier_two_model = tier_two_model  # recorded on each opinion

    def process(self, events: Sequence[object]) -> ClassifiedBatch:
        upserts = latest_upserts(events)
        batch = ClassifiedBatch(posts=len(upserts))
        if not upserts:
            return batch
        batch.results = self.tier_one.results(np.stack([e.vector() for e in upserts]))
        for name, taxonomy in self.taxonomies.items():
            unsure = [event for event, results in zip(upserts, batch.results, strict=True)
                      if any(r.taxonomy == name and r.uncertain for r in results)]
            batch.uncertain[name] = len(unsure)
            if unsure and self.tier_two is not None:
                batch.opinions += self._second_opinions(taxonomy, unsure, batch)
        return batch

    def _second_opinions(self, taxonomy: Taxonomy, unsure: list[EmbeddedPostUpsert],
                         batch: ClassifiedBatch) -> list[PostLabels]:
        posts = {e.post.id: e for e in unsure}
        hashes = {post_id: content_hash(e.post.embedding_text()) for post_id, e in posts.items()}
        asked = [PostToLabel(post_id, hashes[post_id], e.post.embedding_text()) for post_id, e in posts.items()]
        answer = self.tier_two.classify(taxonomy, asked)
        batch.failed[taxonomy.name] = len(answer.failed)
        return [
            # an LLM's answer (fresh or cached) is not allowed to give back a label people corrected away
            PostLabels(post_id=post_id, account_id=posts[post_id].post.account_id, content_hash=hashes[post_id],
                       taxonomy=taxonomy.name, taxonomy_version=taxonomy.version,
                       labels=self.tier_one.without_negated(labels, hashes[post_id]), model=self.tier_two_model)
            for post_id, labels in answer.labels.items() if post_id in posts
        ]
