"""POST /v1/search/accounts and GET /v1/accounts/{id}: by post hits now, by summaries once an
accounts collection exists (here on the Qdrant server adapter, QdrantClient(":memory:"))."""

from __future__ import annotations

from collections import Counter

import pytest
from fastapi.testclient import TestClient
from qdrant_client import QdrantClient

from services.query.app import QuerySettings, create_app
from shared.auth import Scope
from shared.sparse import SparseEncoder
from shared.taxonomy import VerticalLabel, verticals_payload
from shared.vectorstore import PointRecord, SearchFilter, ServerVectorStore, point_id
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


def test_unknown_account_is_a_json_404(client, internal):
    response = client.get("/v1/accounts/424242", headers=internal)
    assert response.status_code == 404
    assert response.json()["error"] == "account 424242 not found"


# --- once the summarizer has written an accounts collection ----------------------------------------


@pytest.fixture(scope="module")
def summarized(context, embedder, redis_client, kafka_settings, scratch, corpus):
    """Posts of two accounts copied to a Qdrant (server adapter) store, plus account summaries."""
    store = ServerVectorStore(client=QdrantClient(":memory:"))
    store.ensure_collection(COLLECTION, 384)
    chosen = [7, 8]
    points = context.store.scroll_points(COLLECTION, SearchFilter(account_id=chosen), limit=100)
    vectors = context.store.dense_vectors(COLLECTION, [p.id for p in points])
    sparse = SparseEncoder()
    store.upsert(COLLECTION, [PointRecord(id=p.id, vector=vectors[p.id], payload=p.payload,
                                          sparse=sparse.document(p.payload["title"])) for p in points])
    store.ensure_collection("accounts", 384)
    summaries = {7: "Tutorials and reviews, mostly about " + corpus.accounts[7].vertical,
                 8: "Weekly vlogs about " + corpus.accounts[8].vertical}
    store.upsert("accounts", [
        PointRecord(id=point_id("account", a), vector=embedder.embed([text])[0], sparse=sparse.document(text),
                    payload={"account_id": a, "platform": corpus.accounts[a].platform,
                             "handle": corpus.accounts[a].handle, "display_name": corpus.accounts[a].display_name,
                             "followers": corpus.accounts[a].followers, "summary": text,
                             **verticals_payload([VerticalLabel(taxonomy="default", vertical=corpus.accounts[a].vertical,
                                                                confidence=0.9)])})
        for a, text in summaries.items()])
    ctx = build_context(store=store, embedder=embedder, redis_client=redis_client,
                        taxonomies=scratch / "taxonomies", kafka=kafka_settings)
    app = create_app(QuerySettings(), context=ctx)
    key = ctx.keys.create("internal", list(Scope), UNLIMITED).key
    yield TestClient(app), {"X-API-Key": key}, summaries
    ctx.status.close()
    store.close()


def test_account_search_uses_summaries_when_they_exist(summarized, corpus):
    client, headers, summaries = summarized
    vertical = corpus.accounts[8].vertical
    body = client.post("/v1/search/accounts", json={"query": f"weekly vlogs about {vertical}"}, headers=headers).json()
    assert body["source"] == "accounts_collection"
    assert body["results"][0]["account"]["account_id"] == 8
    assert body["results"][0]["summary"] == summaries[8]
    detail = client.get("/v1/accounts/7", headers=headers).json()
    assert detail["summary"] == summaries[7]
    assert detail["post_count"] == sum(p.account_id == 7 for p in corpus.posts.values())
