"""POST /v1/search/accounts and GET /v1/accounts/{id}: by post hits now, by summaries once an
accounts collection exists (here on the Qdrant server adapter, QdrantClient(":memory:"))."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pytest
from fastapi.testclient import TestClient
from qdrant_client import QdrantClient

from services.query.app import QuerySettings, create_app
from services.query.posts import DEFAULT_LABEL_FLOOR
from services.summarizer.refresh import AccountRefresher
from shared.account_vectors import CENTROID_VECTOR, THEMES_VECTOR, AccountVectors, fused_score
from shared.auth import Scope
from shared.config import SummarizerSettings
from shared.sparse import SparseEncoder
from shared.stored_post import payload_fields
from shared.vectorstore import PointRecord, SearchFilter, ServerVectorStore, SparseVector, point_id
from tests.api.conftest import UNLIMITED
from tests.api.corpus import COLLECTION, build_context, labels_of

# Local mode warns that it ignores payload indexes; filtering still works there.
pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")


@pytest.fixture
def internal(keys):
    return keys.headers(keys.internal)


def test_account_search_without_summaries_ranks_accounts_by_their_posts(client, internal, corpus):
    body = client.post("/v1/search/accounts", json={"query": "travel vlog hidden beaches itinerary"},
                       headers=internal).json()
    assert body["source"] == "post_hits"
    results = body["results"]
    assert 1 <= len(results) <= 10
    assert corpus.accounts[results[0]["account"]["account_id"]].vertical == "travel"
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    for result in results:
        account_id = result["account"]["account_id"]
        assert result["account"]["handle"] == corpus.accounts[account_id].handle
        assert result["summary"] is None
        assert 1 <= len(result["top_posts"]) <= 3 and result["matching_posts"] >= len(result["top_posts"])
        assert all(p["post"]["account_id"] == account_id for p in result["top_posts"])
    assert len({r["account"]["account_id"] for r in results}) == len(results)


def test_account_search_filters_by_platform(client, internal, corpus):
    body = client.post("/v1/search/accounts", json={"query": "ideas", "filters": {"platform": ["instagram"]}},
                       headers=internal).json()
    assert body["results"]
    assert all(corpus.accounts[r["account"]["account_id"]].platform == "instagram" for r in body["results"])


def test_account_detail_has_fields_verticals_and_top_posts(client, internal, corpus):
    account = corpus.accounts[7]
    body = client.get("/v1/accounts/7", headers=internal).json()
    assert body["account"] == {"account_id": 7, "platform": account.platform, "handle": account.handle,
                               "display_name": account.display_name, "followers": account.followers}
    assert body["summary"] is None
    posts = [p for p in corpus.posts.values() if p.account_id == 7]
    assert body["post_count"] == len(posts)
    assert [p["post"]["views"] for p in body["top_posts"]] == sorted((p.views for p in posts), reverse=True)
    expected = Counter((lbl.taxonomy, lbl.vertical) for p in posts for lbl in labels_of(p)
                       if lbl.vertical != "offensive")
    assert {(v["taxonomy"], v["vertical"]): v["posts"] for v in body["verticals"]} == expected
    top = next(v for v in body["verticals"] if v["vertical"] == account.vertical)
    assert top["share"] == 1.0


def test_account_results_and_pages_hide_labels_under_the_floor(client, internal, corpus):
    """Every odd post carries a second label at 0.3: the posts an account search shows (post hits) and
    an account page's top posts show labels as post search does, none under the floor."""
    shown = []
    for query in ("vegan dinner recipes", "travel vlog hidden beaches itinerary", "stand-up comedy night"):
        body = client.post("/v1/search/accounts", json={"query": query, "limit": 20}, headers=internal).json()
        assert body["source"] == "post_hits"
        shown += [hit for result in body["results"] for hit in result["top_posts"]]
    for account_id in sorted(corpus.accounts)[:6]:
        shown += client.get(f"/v1/accounts/{account_id}", headers=internal).json()["top_posts"]
    assert any(hit["post_id"] % 2 for hit in shown)  # posts that carry a label under the floor are shown
    for hit in shown:
        assert all(v["confidence"] >= DEFAULT_LABEL_FLOOR for v in hit["post"]["verticals"]), hit
        assert hit["post"]["verticals"], hit  # the true label is above the floor and still shown


def test_unknown_account_is_a_json_404(client, internal):
    response = client.get("/v1/accounts/424242", headers=internal)
    assert response.status_code == 404
    assert response.json()["error"] == "account 424242 not found"


# --- once the summarizer has written an accounts collection ----------------------------------------


def _one_account_per_vertical(corpus, how_many: int = 6) -> list[int]:
    chosen: dict[str, int] = {}
    for account_id in sorted(corpus.accounts):
        chosen.setdefault(corpus.accounts[account_id].vertical, account_id)
    return sorted(chosen.values())[:how_many]


@pytest.fixture(scope="module")
def summarized(context, embedder, redis_client, kafka_settings, scratch, corpus):
    """Posts of accounts of different verticals copied to a Qdrant (server adapter) store, and their
    summaries with centroid, theme and term vectors written by the summarizer's own refresher."""
    store = ServerVectorStore(client=QdrantClient(":memory:"))
    store.ensure_collection(COLLECTION, 384)
    chosen = _one_account_per_vertical(corpus)
    points = context.store.scroll_points(COLLECTION, SearchFilter(account_id=chosen), limit=10_000)
    vectors = context.store.dense_vectors(COLLECTION, [p.id for p in points])
    sparse = SparseEncoder()
    store.upsert(COLLECTION, [PointRecord(id=p.id, vector=vectors[p.id], payload=p.payload,
                                          sparse=sparse.document(payload_fields(p.payload)["title"])) for p in points])
    refresher = AccountRefresher(store, COLLECTION, "accounts", embedder,
                                 SummarizerSettings(summarizer_background_posts=0))
    for account_id in chosen:
        refresher.write(refresher.compute(account_id, int(time.time() * 1000)), 0)
    ctx = build_context(store=store, embedder=embedder, redis_client=redis_client,
                        taxonomies=scratch / "taxonomies", kafka=kafka_settings)
    app = create_app(QuerySettings(), context=ctx)
    key = ctx.keys.create("internal", list(Scope), UNLIMITED).key
    yield TestClient(app), {"X-API-Key": key}, chosen, store
    ctx.status.close()
    store.close()


def test_account_search_uses_summaries_when_they_exist(summarized, corpus):
    client, headers, chosen, store = summarized
    for account_id in chosen:
        vertical = corpus.accounts[account_id].vertical
        body = client.post("/v1/search/accounts", json={"query": f"{vertical} ideas and tips"}, headers=headers).json()
        assert body["source"] == "accounts_collection"
        assert body["results"][0]["account"]["account_id"] == account_id, (vertical, body["results"][0])
        assert [r["score"] for r in body["results"]] == sorted((r["score"] for r in body["results"]), reverse=True)
        assert body["results"][0]["summary"].startswith(f"{corpus.accounts[account_id].display_name} (@")
    detail = client.get(f"/v1/accounts/{chosen[0]}", headers=headers).json()
    assert detail["summary"] is not None and f"@{corpus.accounts[chosen[0]].handle}" in detail["summary"]
    assert detail["post_count"] == sum(p.account_id == chosen[0] for p in corpus.posts.values())


def test_account_search_scores_are_the_fused_account_vectors(summarized, corpus, embedder):
    """The score is centroid, best-theme and summary cosines (plus a term part when it weighs anything),
    weighted (shared.account_vectors)."""
    client, headers, chosen, store = summarized
    query = "quick weeknight dinner recipes"
    body = client.post("/v1/search/accounts", json={"query": query}, headers=headers).json()
    dense = embedder.embed([query])[0]
    for result in body["results"]:
        account_id = result["account"]["account_id"]
        vectors, summary = account_vectors_of(store, account_id)
        cosine = float(np.dot(summary, dense) / np.linalg.norm(summary) / np.linalg.norm(dense))
        without_terms = fused_score(dense, vectors, summary_cosine=cosine)
        assert result["score"] == pytest.approx(without_terms, abs=1e-4) or result["score"] > without_terms


def test_account_search_keeps_its_filters_on_summaries(summarized, corpus):
    client, headers, chosen, _ = summarized
    followers = sorted(corpus.accounts[a].followers for a in chosen)
    floor = followers[len(followers) // 2]
    body = client.post("/v1/search/accounts", json={"query": "ideas", "filters": {"min_followers": floor}},
                       headers=headers).json()
    assert body["source"] == "accounts_collection"
    assert {r["account"]["account_id"] for r in body["results"]} == {a for a in chosen if corpus.accounts[a].followers >= floor}
    platform = corpus.accounts[chosen[0]].platform
    body = client.post("/v1/search/accounts", json={"query": "ideas", "filters": {"platform": [platform]}},
                       headers=headers).json()
    assert {r["account"]["account_id"] for r in body["results"]} == {a for a in chosen if corpus.accounts[a].platform == platform}
    vertical = corpus.accounts[chosen[1]].vertical
    body = client.post("/v1/search/accounts", json={"query": "ideas", "filters": {"verticals": {
        "taxonomy": "default", "verticals": [vertical], "min_confidence": 0.5}}}, headers=headers).json()
    assert [r["account"]["account_id"] for r in body["results"]] == [chosen[1]]


def account_vectors_of(store: ServerVectorStore, account_id: int) -> tuple[AccountVectors, np.ndarray]:
    """The stored centroid, themes and summary vector of an account, read back through qdrant-client."""
    record = store._client.retrieve("accounts", [point_id("account", account_id)], with_vectors=True)[0]
    return (AccountVectors(centroid=record.vector[CENTROID_VECTOR], themes=record.vector[THEMES_VECTOR],
                           terms=SparseVector()), np.asarray(record.vector[""], dtype=np.float32))
