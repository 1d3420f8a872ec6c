"""What an account is about, as vectors the accounts collection searches (pure; no store, no model).

Measured on eval/data/wordnet_accounts.jsonl (`make eval-accounts`, docs/account-search.md): the
plain mean of an account's post vectors beats the summary text, but it blurs a generalist's topics
into one point, and one-vector-per-theme alone lets a generalist's single theme tie with a
specialist. So each account point carries three views, fused by a weighted sum of their scores:

- ``centroid``: the normalised mean of its post vectors (what the account is about overall);
- ``themes``: a multivector, one normalised centre per theme of its posts, compared by MaxSim
  (its best-matching theme, so a generalist is still found for each of its topics);
- ``terms``: a sparse vector, per word the share of its posts using it, with the collection's IDF
  (how many of its posts use the query's words: names and jargon the dense model blurs).

The unnamed dense vector (the summary's text) and the ``text`` sparse vector stay as they were.
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
THEMES = 8  # theme vectors per account: 5, 8, 12, 16 and 32 measured within 0.005 MRR@10 of each other
# Weights of the fused score. Both dense views are cosines; the centroid weighs a little more, since
# it is what keeps a specialist above a generalist who has one theme on the same topic. A term score
# is a sum of share x idf (idf ~ 1-4 per query word), hence its small weight. Chosen on the WordNet
# set among 0.5/0.6 x 0.05/0.1/0.2 (docs/account-search.md): the fewest specialists that lose to
# their generalist more often than with the plain centroid, at the same MRR.
CENTROID_WEIGHT = 0.6
THEMES_WEIGHT = 0.4
TERMS_WEIGHT = 0.2


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


def fused_queries(dense: Sequence[float], sparse: SparseVector | None) -> list[WeightedQuery]:
    """The weighted parts of an account search; the store adds their scores up."""
    parts = [WeightedQuery(using=CENTROID_VECTOR, dense=list(dense), weight=CENTROID_WEIGHT),
             WeightedQuery(using=THEMES_VECTOR, dense=list(dense), weight=THEMES_WEIGHT, multi=True)]
    if sparse is not None and not sparse.is_empty():
        parts.append(WeightedQuery(using=TERMS_VECTOR, sparse=sparse, weight=TERMS_WEIGHT))
    return parts


def fused_score(query: np.ndarray, vectors: AccountVectors, term_score: float = 0.0) -> float:
    """The score the store computes for one account (reference for tests): term_score is the IDF-weighted
    dot product of the query's terms with the account's term shares, which only the store knows."""
    q = normalised(np.asarray(query, dtype=np.float32))
    return (CENTROID_WEIGHT * float(q @ np.asarray(vectors.centroid, dtype=np.float32))
            + THEMES_WEIGHT * float((np.asarray(vectors.themes, dtype=np.float32) @ q).max())
            + TERMS_WEIGHT * term_score)
