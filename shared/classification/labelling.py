"""Tier-1 labels for every enabled taxonomy, kept up to date with people's corrections.

One instance per process (indexer, classifier). Prototype texts are embedded once at start; the
classifiers are rebuilt only when a taxonomy's few-shot revision moves (checked at most every
``refresh_s``), which costs one prototype embedding call, not a redeploy. Redis being down only
means the last examples stay in use.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence

import numpy as np
import redis

from shared.classification.fewshot import FewShotStore
from shared.classification.taxonomy import Taxonomy, TaxonomyCatalog, VerticalLabel
from shared.classification.tier_one import EmbedTexts, TierOneResult, VerticalClassifier
from shared.logging import get_logger

log = get_logger(__name__)


class TierOneLabeller:
    def __init__(self, catalog: TaxonomyCatalog, embed: EmbedTexts, fewshot: FewShotStore | None = None,
                 refresh_s: float = 10.0) -> None:
        self.embed = embed
        self.fewshot = fewshot
        self.refresh_s = refresh_s
        self.taxonomies = [t for t in catalog.all() if any(v.enabled for v in t.verticals)]
        self._lock = threading.Lock()
        self._revisions: dict[str, int] = {}
        self._checked_at = 0.0
        self._negatives: dict[str, dict[str, frozenset[str]]] = {}  # taxonomy -> content hash -> "not these"
        self._classifiers: dict[str, VerticalClassifier] = {}
        self._classifiers = {t.name: self._build(t, self._revision(t)) for t in self.taxonomies}

    def versions(self) -> Mapping[str, str]:
        return {t.name: t.version for t in self.taxonomies}

    def results(self, vectors: np.ndarray) -> list[list[TierOneResult]]:
        """Per post, one result per taxonomy (scores, labels, whether tier 2 should look)."""
        classifiers = self._current()
        if not classifiers or len(vectors) == 0:
            return [[] for _ in range(len(vectors))]
        per_taxonomy = [c.classify(vectors) for c in classifiers]
        return [list(results) for results in zip(*per_taxonomy, strict=True)]

    def labels(self, vectors: np.ndarray, content_hashes: Sequence[str] | None = None) -> list[list[VerticalLabel]]:
        """Per post its labels in every taxonomy; with the posts' content hashes, without any label a person
        said that text does not have."""
        labels = [[label for result in results for label in result.labels] for results in self.results(vectors)]
        if content_hashes is None:
            return labels
        return [self.without_negated(post_labels, text_hash)
                for post_labels, text_hash in zip(labels, content_hashes, strict=True)]

    def without_negated(self, labels: Sequence[VerticalLabel], content_hash: str) -> list[VerticalLabel]:
        """``labels`` less those people corrected away for this text (any tier proposing them: tier 1, an LLM)."""
        return [label for label in labels
                if label.vertical not in self._negatives.get(label.taxonomy, {}).get(content_hash, ())]

    def refresh(self) -> None:
        """Rebuild the classifiers whose examples changed (also called by the feedback learner)."""
        with self._lock:
            self._checked_at = time.monotonic()
            for taxonomy in self.taxonomies:
                revision = self._revision(taxonomy)
                if revision is not None and revision != self._revisions.get(taxonomy.name):
                    self._classifiers[taxonomy.name] = self._build(taxonomy, revision)
                    log.info("few-shot examples changed: classifier rebuilt", taxonomy=taxonomy.name,
                             revision=revision)

    def _current(self) -> list[VerticalClassifier]:
        if self.fewshot is not None and time.monotonic() - self._checked_at >= self.refresh_s:
            self.refresh()
        return list(self._classifiers.values())

    def _revision(self, taxonomy: Taxonomy) -> int | None:
        if self.fewshot is None:
            return 0
        try:
            return self.fewshot.revision(taxonomy.name)
        except redis.RedisError as exc:
            log.warning("few-shot examples unavailable: keeping the current ones", error=str(exc))
            return None

    def _build(self, taxonomy: Taxonomy, revision: int | None) -> VerticalClassifier:
        examples = {}
        if self.fewshot is not None and revision:
            try:
                examples = self.fewshot.examples(taxonomy.name)
                self._negatives[taxonomy.name] = self.fewshot.negatives(taxonomy.name)
            except redis.RedisError as exc:
                # The revision is not recorded as loaded, so the next refresh tries again (recording it
                # left the examples missing until the next correction moved the revision).
                log.warning("few-shot examples unavailable: keeping the current ones, retrying", error=str(exc))
                return self._classifiers.get(taxonomy.name) or VerticalClassifier.build(taxonomy, self.embed, {})
        self._revisions[taxonomy.name] = revision or 0
        return VerticalClassifier.build(taxonomy, self.embed, examples)
