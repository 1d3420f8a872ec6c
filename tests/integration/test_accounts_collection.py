"""The accounts collection with its account vectors (centroid, themes multivector, term shares), on both
adapters: the edge store (Qdrant Edge in-process) and the server adapter (qdrant-client's local mode).

The summarizer's own refresher writes the points from indexed posts embedded by the real model; the
store's fused ranking must be the weighted sum shared.account_vectors defines. Upstream facts relied on
(Qdrant documentation, for the server the manifests pin, qdrant/qdrant v1.20.0): a multivector with the
max_sim comparator scores a query by the best of a point's vectors ("Multivectors", as of v1.10); the
Query API's formula ("Search Relevance: Score Boosting", as of v1.14) rescores prefetch candidates, with
``$score[i]`` the score of prefetch i and ``defaults`` the value of a variable a point lacks.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient

from services.indexer.core import post_point
from services.summarizer.refresh import AccountRefresher, open_accounts_collection
from shared.account_vectors import (
    ACCOUNTS_LAYOUT,
    CENTROID_VECTOR,
    THEMES,
    THEMES_VECTOR,
    AccountVectors,
    FusionWeights,
    centroid,
    fused_queries,
    fused_score,
)
from shared.config import SummarizerSettings
from shared.embedding import TextEmbedder, load_text_embedder
from shared.events import AccountFields, EmbeddedPostUpsert, PostRecord, PostUpsert, SourcePosition
from shared.sparse import SparseEncoder
from shared.vectorstore import EdgeVectorStore, SearchFilter, ServerVectorStore, VectorStore, point_id
from shared.vectorstore.base import LayoutMismatch, PointRecord, VerticalCondition, WeightedQuery
from tests.conftest import MODEL_CACHE_DIR

pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")

POSTS, ACCOUNTS = "posts", "accounts"
DIM = 384
# account id -> (platform, followers, posts); 1 and 2 are specialists, 3 posts about all three topics.
TOPICS = {
    "bread": ["Sourdough starter feeding schedule", "Rye bread with caraway", "Shaping a baguette at home",
              "Why my focaccia is flat", "Overnight ciabatta dough", "Whole wheat sandwich loaf"],
    "cycling": ["Replacing a road bike chain", "Tubeless tyres setup", "Climbing out of the saddle",
                "Gravel bike bikepacking kit", "Truing a wheel", "Indoor trainer workouts"],
    "astronomy": ["Photographing the Andromeda galaxy", "Choosing a first telescope", "Saturn's rings at opposition",
                  "Meteor shower viewing tips", "Star hopping to the Orion nebula", "Lunar eclipse timings"],
}
ACCOUNTS_SPEC = {1: ("youtube", 5_000, TOPICS["bread"]), 2: ("tiktok", 50_000, TOPICS["cycling"]),
                 3: ("youtube", 500_000, TOPICS["bread"][:2] + TOPICS["cycling"][:2] + TOPICS["astronomy"])}


@pytest.fixture(scope="module")
def embedder() -> TextEmbedder:
    return load_text_embedder(MODEL_CACHE_DIR)


def _events(embedder: TextEmbedder) -> list[EmbeddedPostUpsert]:
    events, post_id = [], 0
    for account_id, (platform, followers, titles) in ACCOUNTS_SPEC.items():
        vectors = embedder.embed(titles)
        for title, vector in zip(titles, vectors, strict=True):
            post_id += 1
            record = PostRecord(id=post_id, account_id=account_id, platform=platform, title=title,
                                published_at=1_700_000_000_000 + post_id * 86_400_000)
            upsert = PostUpsert(post=record, account=AccountFields(handle=f"acct{account_id}", followers=followers),
                                position=SourcePosition(ts_ms=1, pos=post_id))
            events.append(EmbeddedPostUpsert.build(upsert, embedder.model_id, vector))
    return events


@pytest.fixture(params=["edge", "server"])
def store(request: pytest.FixtureRequest) -> Iterator[VectorStore]:
    with tempfile.TemporaryDirectory(prefix="account-vectors-") as root:
        store = EdgeVectorStore(Path(root)) if request.param == "edge" else ServerVectorStore(client=QdrantClient(":memory:"))
        yield store
        store.close()


@pytest.fixture
def summarized(store: VectorStore, embedder: TextEmbedder) -> dict[int, np.ndarray]:
    """Posts indexed as the indexer writes them, then one summary point per account; returns each
    account's post vectors."""
    store.ensure_collection(POSTS, DIM)
    events = _events(embedder)
    points = [post_point(e) for e in events]
    for point in points:  # a vertical label per post, as tier 1 adds them: account 1 is all food
        vertical = "food" if point.payload["account_id"] == 1 else "sports"
        point.payload |= {"verticals": [{"taxonomy": "default", "vertical": vertical, "confidence": 0.9}]}
    store.upsert(POSTS, points)
    refresher = AccountRefresher(store, POSTS, ACCOUNTS, embedder, SummarizerSettings(summarizer_background_posts=0))
    for account_id in ACCOUNTS_SPEC:
        refresher.write(refresher.compute(account_id, int(time.time() * 1000)), 0)
    by_account: dict[int, list[np.ndarray]] = {}
    for event in events:
        by_account.setdefault(event.post.account_id, []).append(event.vector())
    return {a: np.stack(v) for a, v in by_account.items()}


def _ranked(store: VectorStore, parts: list[WeightedQuery], flt: SearchFilter | None = None) -> list[tuple[int, float]]:
    return [(p.payload["account_id"], p.score) for p in store.weighted_search(ACCOUNTS, parts, 10, flt, depth=50)]


def test_the_centroid_vector_is_the_mean_of_the_account_posts(store, summarized):
    for account_id, vectors in summarized.items():
        mean = centroid(vectors).tolist()
        ranked = _ranked(store, [WeightedQuery(using=CENTROID_VECTOR, dense=mean, weight=1.0)])
        assert ranked[0][0] == account_id
        assert ranked[0][1] == pytest.approx(1.0, abs=1e-4)


def test_a_generalist_is_found_by_its_best_theme_and_a_specialist_by_its_centroid(store, summarized, embedder):
    query = embedder.embed(["where to watch the meteor shower"])[0].tolist()
    themes = _ranked(store, [WeightedQuery(using=THEMES_VECTOR, dense=query, weight=1.0, multi=True)])
    assert themes[0][0] == 3  # only the generalist posts about astronomy
    bread = embedder.embed(["sourdough and rye bread baking"])[0]
    fused = _ranked(store, fused_queries(bread, SparseEncoder().query("sourdough and rye bread baking")))
    assert [a for a, _ in fused].index(1) < [a for a, _ in fused].index(3)  # specialist above generalist


def test_fused_scores_are_the_weighted_sum_the_core_defines(store, summarized, embedder):
    query = embedder.embed(["bike maintenance"])[0]
    ranked = _ranked(store, fused_queries(query, None))
    assert len(ranked) == len(ACCOUNTS_SPEC)
    for account_id, score in ranked:
        vectors = summarized[account_id]
        themes = _themes_of(store, account_id)
        summary = _summary_vector_of(store, account_id)
        expected = fused_score(query, AccountVectors(centroid=centroid(vectors).tolist(), themes=themes, terms=None),
                               summary_cosine=float(summary @ query / np.linalg.norm(summary) / np.linalg.norm(query)))
        assert score == pytest.approx(expected, abs=1e-4)
        assert 1 <= len(themes) <= THEMES


def test_the_term_part_adds_to_accounts_using_the_query_words(store, summarized, embedder):
    words = "caraway"  # only in account 1's and 3's rye bread post
    query = embedder.embed([words])[0]
    weights = FusionWeights(centroid=0.6, themes=0.4, terms=0.2)  # the part is measured at weight 0 now, kept
    dense_only = dict(_ranked(store, fused_queries(query, None, weights)))
    with_terms = dict(_ranked(store, fused_queries(query, SparseEncoder().query(words), weights)))
    assert with_terms[1] > dense_only[1] and with_terms[3] > dense_only[3]
    assert with_terms[2] == pytest.approx(dense_only[2], abs=1e-6)
    assert with_terms[1] - dense_only[1] > with_terms[3] - dense_only[3]  # 1 of 6 posts beats 1 of 10


def test_filters_apply_to_the_fused_search(store, summarized, embedder):
    parts = fused_queries(embedder.embed(["bread"])[0], None)
    assert {a for a, _ in _ranked(store, parts, SearchFilter(platform=["youtube"]))} == {1, 3}
    assert {a for a, _ in _ranked(store, parts, SearchFilter(min_followers=50_000))} == {2, 3}
    food = VerticalCondition(taxonomy="default", verticals=["food"], min_confidence=0.5)
    assert {a for a, _ in _ranked(store, parts, SearchFilter(verticals=food))} == {1}


def test_an_accounts_collection_without_the_vectors_is_recreated(store):
    store.ensure_collection(ACCOUNTS, DIM)  # as written before the account vectors
    store.upsert(ACCOUNTS, [PointRecord(id=point_id("account", 1), vector=[1.0] + [0.0] * (DIM - 1))])
    with pytest.raises(LayoutMismatch):
        store.ensure_collection(ACCOUNTS, DIM, ACCOUNTS_LAYOUT)
    assert open_accounts_collection(store, ACCOUNTS) is True
    assert store.count(ACCOUNTS) == 0
    assert open_accounts_collection(store, ACCOUNTS) is False


def test_an_edge_shard_on_disk_is_opened_only_with_its_own_vectors(tmp_path):
    first = EdgeVectorStore(tmp_path)
    first.ensure_collection(ACCOUNTS, DIM)
    first.close()
    second = EdgeVectorStore(tmp_path)
    with pytest.raises(LayoutMismatch):
        second.ensure_collection(ACCOUNTS, DIM, ACCOUNTS_LAYOUT)
    assert open_accounts_collection(second, ACCOUNTS) is True
    second.close()
    third = EdgeVectorStore(tmp_path)
    assert open_accounts_collection(third, ACCOUNTS) is False  # the new layout is what is on disk now
    third.close()
    fourth = EdgeVectorStore(tmp_path)
    with pytest.raises(LayoutMismatch):  # and it is not opened as a plain collection either
        fourth.ensure_collection(ACCOUNTS, DIM)
    fourth.close()


def _summary_vector_of(store: VectorStore, account_id: int) -> np.ndarray:
    pid = point_id("account", account_id)
    return np.asarray(store.dense_vectors(ACCOUNTS, [pid])[pid], dtype=np.float32)


def _themes_of(store: VectorStore, account_id: int) -> list[list[float]]:
    pid = point_id("account", account_id)
    if isinstance(store, ServerVectorStore):
        return store._client.retrieve(ACCOUNTS, [pid], with_vectors=[THEMES_VECTOR])[0].vector[THEMES_VECTOR]
    shard = store._collections[ACCOUNTS].shard
    return shard.retrieve([pid], with_payload=False, with_vector=[THEMES_VECTOR])[0].vector[THEMES_VECTOR]
