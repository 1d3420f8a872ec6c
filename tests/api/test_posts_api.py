"""POST /v1/search/posts, GET /v1/posts/{id}, GET /v1/posts/{id}/similar against a real index.

Expected values come from the demo generator's ground truth and tests/api/corpus.labels_of, not
from the code under test.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime, timezone

import pytest

from services.query.posts import DEFAULT_LABEL_FLOOR
from tests.api.corpus import labels_of

# 120 posts, 3 per account: 9 to 18 posts per vertical used here. On so few posts a plain word
# ("day", "budget") is rare enough for BM25 to weigh it highly, so hybrid pulls in some of them.
TOPICS = [("semantic", "leg day workout to build muscle at the gym", "fitness"),
          ("semantic", "budget travel itinerary and hidden beaches", "travel"),
          ("hybrid", "budget travel itinerary and hidden beaches", "travel"),
          ("hybrid", "easy vegan dinner recipes", "food"),
          ("hybrid", "streetwear outfit ideas", "fashion")]


def search(client, key, query, **body):
    response = client.post("/v1/search/posts", json={"query": query, **body}, headers=key)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def internal(keys):
    return keys.headers(keys.internal)


@pytest.mark.parametrize(("mode", "query", "vertical"), TOPICS)
def test_search_finds_posts_on_topic(client, internal, corpus, mode, query, vertical):
    page = search(client, internal, query, mode=mode, limit=5)
    assert page["mode"] == mode
    on_topic = [corpus.vertical_of(hit["post_id"]) == vertical for hit in page["results"]]
    assert on_topic[0] and sum(on_topic) >= 3, [(h["post"]["title"], corpus.vertical_of(h["post_id"]))
                                                for h in page["results"]]
    scores = [hit["score"] for hit in page["results"]]
    assert scores == sorted(scores, reverse=True)


def test_keyword_mode_matches_terms_only(client, internal, corpus):
    page = search(client, internal, "vegan", mode="keyword", limit=50)
    assert page["results"], "some demo posts say vegan"
    assert all("vegan" in (h["post"]["title"] + " " + h["post"]["description"]).lower() for h in page["results"])
    expected = {p.id for p in corpus.posts.values() if "vegan" in f"{p.title} {p.description or ''}".lower()}
    assert {h["post_id"] for h in page["results"]} == expected
    assert search(client, internal, "zzqxv unknownword", mode="keyword")["results"] == []


def _words(post) -> set[str]:
    return {w for w in re.findall(r"[a-z]+", f"{post.title} {post.description or ''}".lower()) if len(w) >= 7}


def test_hybrid_ranks_a_rare_exact_word_first(client, internal, corpus):
    """Why keywords join the vectors: a word the model has little feel for (a name, a product)."""
    frequency = Counter(w for p in corpus.posts.values() for w in _words(p))
    post = next(p for p in corpus.posts.values() if any(frequency[w] == 1 for w in _words(p)))
    word = sorted(w for w in _words(post) if frequency[w] == 1)[0]
    assert [h["post_id"] for h in search(client, internal, word, mode="keyword")["results"]] == [post.id]
    assert search(client, internal, word, limit=3)["results"][0]["post_id"] == post.id


def test_response_reports_stage_timings_and_caches_the_query_embedding(client, internal):
    query = f"stage timing probe {datetime.now(timezone.utc).timestamp()}"
    first = client.post("/v1/search/posts", json={"query": query}, headers=internal)
    second = client.post("/v1/search/posts", json={"query": f"  {query}  "}, headers=internal)
    for response in (first, second):
        timings = response.json()["timings"]
        assert {"embed_ms", "search_ms", "fetch_ms", "total_ms"} <= set(timings)
        assert timings["total_ms"] >= timings["embed_ms"] + timings["search_ms"] + timings["fetch_ms"] - 0.01
        server_timing = response.headers["server-timing"]
        assert all(f"{stage};dur=" in server_timing for stage in ("embed", "search", "fetch", "total"))
    assert first.json()["timings"]["embedding_cached"] is False
    assert second.json()["timings"]["embedding_cached"] is True  # same text after whitespace normalisation


def test_stage_histograms_are_exported(client, internal):
    search(client, internal, "histogram probe")
    metrics = client.get("/metrics/").text
    for stage in ("embed", "search", "fetch"):
        assert f'query_stage_seconds_count{{route="search_posts",stage="{stage}"}}' in metrics


# --- filters -----------------------------------------------------------------------------------


def _ms(post) -> int:
    return int(post.published_at.replace(tzinfo=timezone.utc).timestamp() * 1000)


FILTER_CASES = {
    "platform": ({"platform": ["youtube", "x"]}, lambda p: p.platform in ("youtube", "x")),
    "account": ({"account_id": [1, 2, 3]}, lambda p: p.account_id in (1, 2, 3)),
    "views_and_likes": ({"min_views": 2000, "min_likes": 50}, lambda p: p.views >= 2000 and p.likes >= 50),
    "published": ({"published_after": "2024-09-01T00:00:00Z", "published_before": "2025-01-01T00:00:00"},
                  lambda p: datetime(2024, 9, 1) <= p.published_at < datetime(2025, 1, 1)),
    "vertical": ({"verticals": {"taxonomy": "default", "verticals": ["food", "travel"], "min_confidence": 0.7}},
                 lambda p: any(lbl.taxonomy == "default" and lbl.vertical in ("food", "travel") and lbl.confidence >= 0.7
                               for lbl in labels_of(p))),
    "second_vertical_low_confidence": (
        {"verticals": {"verticals": ["comedy"], "min_confidence": 0.25}},
        lambda p: any(lbl.vertical == "comedy" and lbl.confidence >= 0.25 for lbl in labels_of(p))),
}


@pytest.mark.parametrize("case", FILTER_CASES, ids=list(FILTER_CASES))
@pytest.mark.parametrize("mode", ["hybrid", "semantic"])
def test_filters_are_exact(client, internal, corpus, case, mode):
    filters, keep = FILTER_CASES[case]
    expected = {p.id for p in corpus.posts.values() if keep(p)}
    assert 0 < len(expected) < len(corpus.posts), "the case must exclude something"
    page = search(client, internal, "tips and ideas", mode=mode, limit=100, filters=filters)
    assert {h["post_id"] for h in page["results"]} == expected
    assert sum(f["count"] for f in page["facets"]["platform"] if not filters.get("platform")
               or f["value"] in filters["platform"]) == len(expected)


def test_facets_count_the_filtered_set_and_ignore_their_own_filter(client, internal, corpus):
    page = search(client, internal, "anything", filters={"platform": ["tiktok"], "min_views": 1000})
    viewed = [p for p in corpus.posts.values() if p.views >= 1000]
    # platform counts ignore the platform filter (other platforms stay choosable) but keep min_views
    assert {f["value"]: f["count"] for f in page["facets"]["platform"]} == Counter(p.platform for p in viewed)
    tiktok = [p for p in viewed if p.platform == "tiktok"]
    labels = Counter((lbl.taxonomy, lbl.vertical) for p in tiktok for lbl in labels_of(p)
                     if (lbl.taxonomy, lbl.vertical) != ("brand_safety", "offensive")
                     and lbl.confidence >= DEFAULT_LABEL_FLOOR)
    assert {(f["taxonomy"], f["vertical"]): f["count"] for f in page["facets"]["vertical"]} == labels


def test_labels_under_the_floor_are_neither_shown_nor_counted(client, internal, corpus):
    """Every odd post carries a second label at 0.3 (comedy, or music on comedy posts): under the
    0.5 floor it must not show on the post, in results, in the facet, nor pass a default filter."""
    post = next(p for p in corpus.posts.values() if p.id % 2 and p.vertical == "food")
    weak = next(lbl for lbl in labels_of(post) if lbl.confidence < DEFAULT_LABEL_FLOOR)
    shown = client.get(f"/v1/posts/{post.id}", headers=internal).json()["post"]["verticals"]
    assert (weak.taxonomy, weak.vertical) not in {(v["taxonomy"], v["vertical"]) for v in shown}
    assert ("default", post.vertical) in {(v["taxonomy"], v["vertical"]) for v in shown}
    page = search(client, internal, "vegan dinner recipes", limit=100)
    assert len(page["results"]) == 100
    for hit in page["results"]:
        assert all(v["confidence"] >= DEFAULT_LABEL_FLOOR for v in hit["post"]["verticals"]), hit
    facet = {(f["taxonomy"], f["vertical"]): f["count"] for f in page["facets"]["vertical"]}
    comedy_posts = sum(p.vertical == "comedy" for p in corpus.posts.values())
    assert facet[("default", "comedy")] == comedy_posts  # not the ~60 posts with comedy at 0.3
    assert facet[("default", "food")] == sum(p.vertical == "food" for p in corpus.posts.values())
    filtered = search(client, internal, "anything", limit=100, filters={"verticals": {"verticals": ["comedy"]}})
    assert {h["post_id"] for h in filtered["results"]} == {p.id for p in corpus.posts.values() if p.vertical == "comedy"}


def test_switched_off_verticals_are_never_shown(client, internal, corpus):
    post = next(p for p in corpus.posts.values() if p.id % 4 == 0)  # labelled brand_safety:offensive
    shown = client.get(f"/v1/posts/{post.id}", headers=internal).json()["post"]["verticals"]
    assert ("brand_safety", "offensive") not in {(v["taxonomy"], v["vertical"]) for v in shown}
    assert ("default", post.vertical) in {(v["taxonomy"], v["vertical"]) for v in shown}
    facets = search(client, internal, "anything")["facets"]["vertical"]
    assert "offensive" not in {f["vertical"] for f in facets}


def test_no_facets_when_not_asked_and_not_on_later_pages(client, internal):
    assert search(client, internal, "gym", facets=[])["facets"] is None
    first = search(client, internal, "gym", limit=5)
    assert first["facets"]["platform"]
    assert search(client, internal, "gym", limit=5, cursor=first["next_cursor"])["facets"] is None


# --- pagination --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["hybrid", "semantic", "keyword"])
def test_cursor_pages_equal_one_long_page(client, internal, mode):
    query = "recipes workout travel tips"
    whole = search(client, internal, query, mode=mode, limit=30)["results"]
    pages, cursor = [], None
    for _ in range(3):
        page = search(client, internal, query, mode=mode, limit=10, **({"cursor": cursor} if cursor else {}))
        pages += page["results"]
        cursor = page["next_cursor"]
    assert [h["post_id"] for h in pages] == [h["post_id"] for h in whole]


def test_last_page_has_no_cursor(client, internal, corpus):
    account_posts = [p.id for p in corpus.posts.values() if p.account_id == 5]
    first = search(client, internal, "a", limit=2, filters={"account_id": [5]})
    assert first["next_cursor"]
    second = search(client, internal, "a", limit=2, filters={"account_id": [5]}, cursor=first["next_cursor"])
    assert second["next_cursor"] is None
    assert sorted(h["post_id"] for h in first["results"] + second["results"]) == sorted(account_posts)


def test_a_cursor_only_works_for_its_own_query(client, internal):
    cursor = search(client, internal, "gym", limit=3)["next_cursor"]
    for body in ({"query": "beach", "cursor": cursor}, {"query": "gym", "mode": "keyword", "cursor": cursor},
                 {"query": "gym", "cursor": cursor, "filters": {"platform": ["x"]}}):
        response = client.post("/v1/search/posts", json=body, headers=internal)
        assert response.status_code == 422
        assert response.json()["detail"][0]["field"] == "body.cursor"
    forged = client.post("/v1/search/posts", json={"query": "gym", "cursor": "bm90IGEgY3Vyc29y"}, headers=internal)
    assert forged.status_code == 422 and forged.json()["detail"][0]["field"] == "body.cursor"


# --- one post, similar posts -------------------------------------------------------------------


def test_get_post_returns_the_indexed_post(client, internal, corpus):
    post = corpus.posts[next(iter(corpus.posts))]
    response = client.get(f"/v1/posts/{post.id}", headers=internal)
    assert response.status_code == 200
    body = response.json()
    assert body["post_id"] == post.id and body["score"] == 0
    assert body["post"]["title"] == post.title
    assert body["post"]["account_id"] == post.account_id
    assert body["post"]["published_at"] == _ms(post)
    assert body["post"]["handle"] == corpus.accounts[post.account_id].handle
    assert "fetch;dur=" in response.headers["server-timing"]


def test_unknown_post_is_a_json_404(client, internal):
    for path in ("/v1/posts/987654321", "/v1/posts/987654321/similar"):
        response = client.get(path, headers=internal)
        assert response.status_code == 404
        assert response.json() == {"error": "post 987654321 not found", "detail": None}


def test_similar_posts_exclude_the_post_and_share_its_topic(client, internal, corpus):
    post = next(p for p in corpus.posts.values() if p.vertical == "travel")
    body = client.get(f"/v1/posts/{post.id}/similar?limit=5", headers=internal).json()
    ids = [h["post_id"] for h in body["results"]]
    assert post.id not in ids and len(ids) == 5
    assert sum(corpus.vertical_of(i) == "travel" for i in ids) >= 3
    assert [h["score"] for h in body["results"]] == sorted((h["score"] for h in body["results"]), reverse=True)
