"""Tier-1 vertical classification: a post's embedding scored against each vertical's prototype.

Field experience (and a measurement here) says nearest prototypes on the post embedding beat small
LLMs at a tiny fraction of the cost. So tier 1 labels every post, locally and for free, and only
the posts it is unsure about may go to an LLM (tier 2, services/classifier).

How a vertical's prototype is made, and why (numbers: ``make eval``, docs/classification.md "Quality of
tier 1"):

- Its description is split into facets ("Makeup, skincare, hair care" -> three texts), each facet
  and keyword is embedded alone and the unit vectors are averaged with the whole sentence's. One
  embedding of a list-like sentence is dominated by its first words; averaging facets lifted top-1
  accuracy from 0.81 to 0.84 (creator posts) and from 0.83 to 0.87 (BBC News).
- Example posts (the YAML's ``examples`` plus people's corrections) are averaged separately and
  blended in with weight ``EXAMPLE_WEIGHT``: a plain mean over all vectors lets five examples
  drown the description, which measured worse than the description alone.
- Scores are plain cosine similarities. Removing the mean of the prototypes ("centring") spread
  the scores but cost 4-6 points of top-1 accuracy; per-vertical thresholds calibrated by
  ``make eval --calibrate`` handle the narrow score band instead.

A label is given when the score clears the vertical's threshold and is within ``LABEL_MARGIN`` of
the post's best score; its confidence is a logistic of the distance to that threshold. A taxonomy
may list ``off_topic`` posts (greetings, giveaways, schedule news): a post clearly closer to them
than to any vertical gets no label. ``VerticalDrift`` keeps a sliding window of predictions per
taxonomy and exports the share of each vertical, so drift shows on a dashboard.
"""

from __future__ import annotations

import re
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from shared.classification.calibration import CONFIDENCE_SCALE, IDENTITY
from shared.classification.taxonomy import Taxonomy, VerticalLabel
from shared.metrics import VERTICAL_DRIFT, VERTICAL_SHARE, VERTICAL_WINDOW

EmbedTexts = Callable[[Sequence[str]], np.ndarray]  # texts -> (n, dim) unit vectors

# Similarity a label needs where no calibrated threshold exists: between the median top score of
# creator posts (0.33) and of BBC News leads (0.20); `make eval --calibrate` replaces it per vertical.
DEFAULT_THRESHOLD = 0.25
EXAMPLE_WEIGHT = 0.3  # share of the example posts' mean in a prototype (0.3 measured best of 0.2-0.5)
# CONFIDENCE_SCALE (shared/classification/calibration.py): similarity units per logit of the raw confidence.
UNCERTAIN_BAND = (0.35, 0.65)  # top confidence in here: tier 1 is unsure, an LLM may decide
MIN_MARGIN = 0.02  # two verticals this close at the top: unsure too
MAX_LABELS = 3  # a post is rarely about more than three things; more is noise
# A label beyond the best one must also score within this of the best: thresholds alone (each
# vertical deciding on its own) gave micro F1 0.69 / 0.71 on the two evaluation sets, thresholds
# fitted under this rule 0.75 / 0.83 (0.03-0.05 measured alike; make eval fits under it too).
LABEL_MARGIN = 0.04
# A post is off-topic (no label) when the taxonomy's off-topic prototype beats its best vertical by
# this much. At 0 the generic openers of topical posts ("you asked for it, so here it is") cost
# labels: 7% of demo posts went unlabelled; at 0.04 4.6%, while 77% of hand-written off-topic posts
# stay unlabelled (27% with no off-topic prototype) and micro F1 on creator posts gains 1.7 points.
OFF_TOPIC_MARGIN = 0.04
NO_LABEL = "-"  # the drift histogram's bucket for posts that got no label


@dataclass(frozen=True)
class TierOneResult:
    taxonomy: str
    version: str
    labels: tuple[VerticalLabel, ...]  # decided labels, best first (may be empty)
    scores: Mapping[str, float]  # similarity per enabled vertical
    uncertain: bool  # worth a second opinion (tier 2)

    @property
    def top(self) -> tuple[str, float] | None:
        if not self.scores:
            return None
        name = max(self.scores, key=self.scores.__getitem__)
        return name, self.scores[name]


def description_facets(description: str) -> list[str]:
    """The comma/semicolon/"and"-separated parts of a description, when it is a list of things."""
    parts = [p.strip(" .") for p in re.split(r",|;|\band\b|\bor\b", description)]
    parts = [p for p in parts if p]
    return parts if len(parts) > 1 else []


def prototype_texts(taxonomy: Taxonomy, vertical_name: str) -> list[str]:
    """Texts that say what a vertical is: its description, each facet of it, its keywords."""
    vertical = taxonomy.vertical(vertical_name)
    if vertical is None:
        raise KeyError(vertical_name)
    label = vertical_name.replace("_", " ")
    return [f"{label}: {vertical.description}", *description_facets(vertical.description), *vertical.keywords]


def label_mask(scores: np.ndarray, thresholds: np.ndarray, margin: float = LABEL_MARGIN,
               max_labels: int = MAX_LABELS, off_topic: np.ndarray | None = None) -> np.ndarray:
    """(n, k) booleans: which verticals each post is labelled with. A vertical qualifies when it
    clears its threshold and scores within ``margin`` of the post's best; at most ``max_labels``
    of them, those furthest above their thresholds; none where ``off_topic`` (n booleans) is set."""
    scores = np.atleast_2d(scores)
    eligible = (scores >= thresholds) & (scores >= scores.max(axis=1, keepdims=True) - margin)
    if off_topic is not None:
        eligible &= ~np.asarray(off_topic, dtype=bool)[:, None]
    if scores.shape[1] > max_labels:
        rank = np.argsort(np.argsort(-(scores - thresholds), axis=1), axis=1)
        eligible &= rank < max_labels
    return eligible


class VerticalClassifier:
    """One taxonomy's tier-1 classifier: pure numpy over prototype vectors, thread-safe to call."""

    def __init__(self, taxonomy: Taxonomy, descriptions: Mapping[str, np.ndarray],
                 examples: Mapping[str, np.ndarray] | None = None,
                 default_threshold: float = DEFAULT_THRESHOLD, off_topic: np.ndarray | None = None) -> None:
        """``descriptions``: vertical -> (m, dim) vectors of its prototype texts; ``examples``:
        vertical -> (k, dim) vectors of posts known to belong to it (may be empty); ``off_topic``:
        (j, dim) vectors of posts about none of the verticals (the taxonomy's ``off_topic``)."""
        names = [v.name for v in taxonomy.verticals if v.enabled and v.name in descriptions]
        if not names:
            raise ValueError(f"taxonomy {taxonomy.name!r} has no enabled vertical with prototypes")
        self.taxonomy = taxonomy
        self.names = names
        examples = examples or {}
        self.centroids = np.stack([_prototype(descriptions[n], examples.get(n)) for n in names])
        self.thresholds = np.array([_threshold(taxonomy, n, default_threshold) for n in names], dtype=np.float32)
        self.off_topic = None if off_topic is None or len(off_topic) == 0 else _prototype(off_topic, None)
        self.calibration = taxonomy.calibration or IDENTITY

    @classmethod
    def build(cls, taxonomy: Taxonomy, embed: EmbedTexts, extra_examples: Mapping[str, np.ndarray] | None = None,
              default_threshold: float = DEFAULT_THRESHOLD) -> VerticalClassifier:
        """Embed every vertical's prototype texts and YAML examples (one model call);
        ``extra_examples`` are vectors of posts people labelled (vertical -> (k, dim))."""
        enabled = [v for v in taxonomy.verticals if v.enabled]
        groups = [(v.name, "description", prototype_texts(taxonomy, v.name)) for v in enabled]
        groups += [(v.name, "examples", list(v.examples)) for v in enabled if v.examples]
        if taxonomy.off_topic:
            groups.append(("", "off_topic", list(taxonomy.off_topic)))
        vectors = np.asarray(embed([t for _, _, texts in groups for t in texts]), dtype=np.float32)
        descriptions: dict[str, np.ndarray] = {}
        examples: dict[str, list[np.ndarray]] = {}
        off_topic = None
        start = 0
        for name, kind, texts in groups:
            block, start = vectors[start:start + len(texts)], start + len(texts)
            if kind == "description":
                descriptions[name] = block
            elif kind == "off_topic":
                off_topic = block
            else:
                examples.setdefault(name, []).append(block)
        for name, extra in (extra_examples or {}).items():
            if name in descriptions and len(extra):
                examples.setdefault(name, []).append(np.asarray(extra, dtype=np.float32))
        stacked = {name: np.vstack(blocks) for name, blocks in examples.items()}
        return cls(taxonomy, descriptions, stacked, default_threshold, off_topic)

    def scores(self, vectors: np.ndarray) -> np.ndarray:
        """(n, verticals) cosine similarities of unit post vectors to the prototypes."""
        return np.atleast_2d(np.asarray(vectors, dtype=np.float32)) @ self.centroids.T

    def off_topic_margin(self, vectors: np.ndarray, scores: np.ndarray | None = None) -> np.ndarray | None:
        """Per post, similarity to the off-topic prototype minus the best vertical's; None when the
        taxonomy lists no off-topic posts. At ``OFF_TOPIC_MARGIN`` or more the post gets no label."""
        if self.off_topic is None:
            return None
        matrix = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        best = (self.scores(matrix) if scores is None else scores).max(axis=1)
        return matrix @ self.off_topic - best

    def off_topic_rows(self, vectors: np.ndarray, scores: np.ndarray | None = None) -> np.ndarray | None:
        """Per post, whether it is off-topic (gets no label whatever the thresholds)."""
        margin = self.off_topic_margin(vectors, scores)
        return None if margin is None else margin >= OFF_TOPIC_MARGIN

    def classify(self, vectors: np.ndarray) -> list[TierOneResult]:
        """One result per post. The decisions are taken for the whole batch in numpy; only building
        each post's labels is per post (the indexer labels up to a thousand posts per batch)."""
        similarity = self.scores(vectors)
        off_margin = self.off_topic_margin(vectors, similarity)
        if off_margin is None:
            off_margin = np.full(len(similarity), -np.inf)
        confidence = 1.0 / (1.0 + np.exp(-(similarity - self.thresholds) / CONFIDENCE_SCALE))
        chosen = label_mask(similarity, self.thresholds, off_topic=off_margin >= OFF_TOPIC_MARGIN)
        # Labels carry the calibrated confidence; routing to tier 2 stays on the raw one (its band was
        # measured on it).
        shown = self.calibration.confidence(self.names, similarity, self.thresholds)
        by_confidence = np.argsort(-shown, axis=1, kind="stable")
        top = confidence.max(axis=1)
        best_two = -np.sort(-similarity, axis=1)[:, :2]
        runner_up = best_two[:, 1] if similarity.shape[1] > 1 else np.full(len(similarity), -np.inf)
        close_call = best_two[:, 0] - runner_up < MIN_MARGIN
        unsure_top = top >= UNCERTAIN_BAND[0]
        uncertain = ((unsure_top & (top <= UNCERTAIN_BAND[1])) | (close_call & unsure_top)
                     # Off-topic or not is itself a close call when the two prototypes are about as near.
                     | ((np.abs(off_margin - OFF_TOPIC_MARGIN) < MIN_MARGIN) & unsure_top))
        return [self._result(chosen[row], by_confidence[row].tolist(), shown[row].tolist(),
                             similarity[row].tolist(), bool(uncertain[row]))
                for row in range(len(similarity))]

    def _result(self, chosen: np.ndarray, by_confidence: list[int], confidence: list[float],
                similarity: list[float], uncertain: bool) -> TierOneResult:
        labels = tuple(
            VerticalLabel(taxonomy=self.taxonomy.name, vertical=self.names[i], confidence=_round(confidence[i]),
                          version=self.taxonomy.version, tier="embedding")
            for i in by_confidence if chosen[i]
        )
        scores = {name: round(value, 4) for name, value in zip(self.names, similarity)}
        return TierOneResult(self.taxonomy.name, self.taxonomy.version, labels, scores, uncertain)


class VerticalDrift:
    """Sliding window of the last ``window`` tier-1 predictions per taxonomy, exported as metrics.

    ``vertical_predicted_share{taxonomy,vertical}`` is the share of windowed posts carrying each
    label (``-`` = no label); ``vertical_drift_distance{taxonomy}`` is the total-variation distance
    between the current window's histogram and the first full window after start (or the one set
    with ``set_reference``): 0 = same mix of verticals, 1 = nothing in common. Call ``observe``
    with the results of every classified batch; it is cheap and thread-safe.
    """

    def __init__(self, window: int = 5000) -> None:
        if window < 1:
            raise ValueError("window must be >= 1")
        self.window = window
        self._lock = threading.Lock()
        self._recent: dict[str, deque[tuple[str, ...]]] = {}
        self._counts: dict[str, Counter[str]] = {}
        self._reference: dict[str, dict[str, float]] = {}
        self._exported: dict[str, set[str]] = {}

    def observe(self, results: Iterable[TierOneResult | Iterable[TierOneResult]]) -> None:
        """Results of one batch: a flat list, or per post a list of one result per taxonomy."""
        touched: set[str] = set()
        with self._lock:
            for item in results:
                for result in ([item] if isinstance(item, TierOneResult) else item):
                    self._add(result)
                    touched.add(result.taxonomy)
            for taxonomy in touched:
                self._export(taxonomy)

    def shares(self, taxonomy: str) -> dict[str, float]:
        """Share of windowed posts per label (a post with two labels counts in both)."""
        with self._lock:
            return self._shares(taxonomy)

    def distance(self, taxonomy: str) -> float | None:
        """Total-variation distance to the reference histogram; None before a reference exists."""
        with self._lock:
            reference = self._reference.get(taxonomy)
            return None if reference is None else _total_variation(reference, self._shares(taxonomy))

    def set_reference(self, taxonomy: str, shares: Mapping[str, float] | None = None) -> None:
        """Compare from now on with ``shares`` (default: the current window), e.g. after a deploy."""
        with self._lock:
            self._reference[taxonomy] = dict(shares) if shares is not None else self._shares(taxonomy)
            self._export(taxonomy)

    def _add(self, result: TierOneResult) -> None:
        recent = self._recent.setdefault(result.taxonomy, deque())
        counts = self._counts.setdefault(result.taxonomy, Counter())
        labels = tuple(label.vertical for label in result.labels) or (NO_LABEL,)
        recent.append(labels)
        counts.update(labels)
        if len(recent) > self.window:
            counts.subtract(recent.popleft())
        if len(recent) == self.window and result.taxonomy not in self._reference:
            self._reference[result.taxonomy] = self._shares(result.taxonomy)

    def _shares(self, taxonomy: str) -> dict[str, float]:
        posts = len(self._recent.get(taxonomy, ()))
        counts = self._counts.get(taxonomy, Counter())
        return {label: count / posts for label, count in counts.items() if count > 0} if posts else {}

    def _export(self, taxonomy: str) -> None:
        shares = self._shares(taxonomy)
        # A vertical that left the window goes to 0 rather than keeping its last share.
        for label in self._exported.get(taxonomy, set()) | set(shares):
            VERTICAL_SHARE.labels(taxonomy=taxonomy, vertical=label).set(shares.get(label, 0.0))
        self._exported[taxonomy] = self._exported.get(taxonomy, set()) | set(shares)
        VERTICAL_WINDOW.labels(taxonomy=taxonomy).set(len(self._recent.get(taxonomy, ())))
        reference = self._reference.get(taxonomy)
        if reference is not None:
            VERTICAL_DRIFT.labels(taxonomy=taxonomy).set(_total_variation(reference, shares))


def _total_variation(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    """Half the L1 distance of the two histograms, each normalised to sum 1 (labels overlap)."""
    total_a, total_b = sum(a.values()) or 1.0, sum(b.values()) or 1.0
    return 0.5 * sum(abs(a.get(k, 0.0) / total_a - b.get(k, 0.0) / total_b) for k in set(a) | set(b))


def _prototype(description_vectors: np.ndarray, example_vectors: np.ndarray | None) -> np.ndarray:
    text = _unit(_unit_rows(np.asarray(description_vectors, dtype=np.float32)).mean(axis=0))
    if example_vectors is None or len(example_vectors) == 0:
        return text
    examples = _unit(_unit_rows(np.asarray(example_vectors, dtype=np.float32)).mean(axis=0))
    return _unit((1.0 - EXAMPLE_WEIGHT) * text + EXAMPLE_WEIGHT * examples)


def _threshold(taxonomy: Taxonomy, name: str, default: float) -> float:
    vertical = taxonomy.vertical(name)
    return vertical.threshold if vertical is not None and vertical.threshold is not None else default


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


def _round(value: float) -> float:
    return round(min(1.0, max(0.0, float(value))), 4)
