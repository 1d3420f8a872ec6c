"""What an account is about, as vectors the accounts collection searches (pure; no store, no model).

Measured on eval/data/wordnet_accounts.jsonl (`make eval-accounts`, docs/account-search.md): the
plain mean of an account's post vectors beats the summary text, but it blurs a generalist's topics
into one point, and one-vector-per-theme alone lets a generalist's single theme tie with a
specialist. So each account point carries three views, fused by a weighted sum of their scores
(FUSION, chosen on the eval's tuning half; a view weighted 0 is left out of the query):

- ``centroid``: the normalised mean of its post vectors (what the account is about overall);
- ``themes``: a multivector, one normalised centre per theme of its posts, compared by MaxSim
  (its best-matching theme, so a generalist is still found for each of its topics);
- ``terms``: a sparse vector, per word the share of its posts using it, with the collection's IDF
  (how many of its posts use the query's words: names and jargon the dense model blurs).

The unnamed dense vector (the summary's text) and the ``text`` sparse vector stay as they were; the
summary's dense vector is a fourth part of the fused score, with a small weight (it names the
account's keywords, which helps topic queries).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from shared.vectorstore.base import SparseVector, VectorLayout, WeightedQuery

CENTROID_VECTOR = "centroid"
THEMES_VECTOR = "themes"
TERMS_VECTOR = "terms"
ACCOUNTS_LAYOUT = VectorLayout(dense=(CENTROID_VECTOR,), multi=(THEMES_VECTOR,), sparse=(TERMS_VECTOR,))
THEMES = 8  # theme vectors per account: 16 and 32 measured no better on the tuning half (docs/account-search.md)


@dataclass(frozen=True)
class FusionWeights:
    """Weights of the fused score's parts. Both dense views and the summary are cosines; a term score
    is a sum of share x idf (idf ~ 1-4 per query word), hence its small weight. 0 leaves a part out."""

    centroid: float
    themes: float
    terms: float
    summary: float = 0.0


# Chosen by `make eval-accounts` on the tuning half of the WordNet set only (its accounts drawn with a
# fixed seed), as the grid point with the best tuning MRR@10 (titles + topics) among those that rank no
# specialist below its generalist where the plain centroid ranks it above; the test half reports it.
FUSION = FusionWeights(centroid=0.8, themes=0.2, terms=0.1, summary=0.1)


@dataclass(frozen=True)
class AccountVectors:
    centroid: list[float]
    themes: list[list[float]]
    terms: SparseVector

    def named(self) -> dict[str, list[float] | list[list[float]] | SparseVector]:
        return {CENTROID_VECTOR: self.centroid, THEMES_VECTOR: self.themes, TERMS_VECTOR: self.terms}


def normalised(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


def centroid(vectors: np.ndarray) -> np.ndarray:
    return normalised(normalised(np.asarray(vectors, dtype=np.float32)).mean(axis=0))


def theme_centres(vectors: np.ndarray, medoid_rows: Sequence[int]) -> np.ndarray:
    """Every post joins its most similar medoid; a theme's vector is its members' normalised mean
    (smoother than the medoid post alone)."""
    unit = normalised(np.asarray(vectors, dtype=np.float32))
    medoids = unit[list(medoid_rows)]
    assignment = (unit @ medoids.T).argmax(axis=1)
    centres = [unit[assignment == j].mean(axis=0) for j in range(len(medoids)) if (assignment == j).any()]
    return normalised(np.stack(centres))


def term_shares(post_terms: Sequence[Sequence[int]]) -> SparseVector:
    """post_terms: each post's distinct term indices. Value = share of the posts using the term."""
    counts: dict[int, int] = defaultdict(int)
    for terms in post_terms:
        for term in set(terms):
            counts[term] += 1
    n = max(len(post_terms), 1)
    indices = sorted(counts)
    return SparseVector(indices=indices, values=[round(counts[i] / n, 6) for i in indices])


def account_vectors(vectors: np.ndarray, medoid_rows: Sequence[int], post_terms: Sequence[Sequence[int]]) -> AccountVectors:
    return AccountVectors(centroid=centroid(vectors).tolist(), themes=theme_centres(vectors, medoid_rows).tolist(),
                          terms=term_shares(post_terms))


def fused_queries(dense: Sequence[float], sparse: SparseVector | None,
                  weights: FusionWeights = FUSION) -> list[WeightedQuery]:
    """The weighted parts of an account search; the store adds their scores up. ``summary`` is the
    summary text's own (unnamed) dense vector."""
    parts = [WeightedQuery(using=CENTROID_VECTOR, dense=list(dense), weight=weights.centroid),
             WeightedQuery(using=THEMES_VECTOR, dense=list(dense), weight=weights.themes, multi=True)]
    if weights.terms and sparse is not None and not sparse.is_empty():
        parts.append(WeightedQuery(using=TERMS_VECTOR, sparse=sparse, weight=weights.terms))
    if weights.summary:
        parts.append(WeightedQuery(using="", dense=list(dense), weight=weights.summary))
    return [part for part in parts if part.weight]


def fused_score(query: np.ndarray, vectors: AccountVectors, term_score: float = 0.0, summary_cosine: float = 0.0,
                weights: FusionWeights = FUSION) -> float:
    """The score the store computes for one account (reference for tests): term_score is the IDF-weighted
    dot product of the query's terms with the account's term shares, which only the store knows."""
    q = normalised(np.asarray(query, dtype=np.float32))
    return (weights.centroid * float(q @ np.asarray(vectors.centroid, dtype=np.float32))
            + weights.themes * float((np.asarray(vectors.themes, dtype=np.float32) @ q).max())
            + weights.terms * term_score + weights.summary * summary_cosine)
