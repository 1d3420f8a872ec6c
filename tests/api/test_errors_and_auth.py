"""Every error is clear JSON: 422 names the field and why, 401/403 for keys and scopes, 404 for
unknown ids, 429 and 503 with Retry-After, and a bug is a bare 500 without a stack trace."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from services.query.app import QuerySettings, create_app
from shared.auth import ApiKeyStore, DataScope, InvalidKey, RateLimit, Scope
from shared.metrics import CACHE_REQUESTS
from shared.vectorstore import EdgeVectorStore
from tests.api.conftest import UNLIMITED
from tests.api.corpus import COLLECTION, build_context, taxonomy_dir

INVALID_SEARCHES = {
    "blank query": ({"query": "   "}, "body.query"),
    "missing query": ({"limit": 3}, "body.query"),
    "limit 0": ({"query": "a", "limit": 0}, "body.limit"),
    "limit too big": ({"query": "a", "limit": 1000}, "body.limit"),
    "unknown mode": ({"query": "a", "mode": "fuzzy"}, "body.mode"),
    "unknown field": ({"query": "a", "sort": "views"}, "body.sort"),
    "unknown filter": ({"query": "a", "filters": {"country": ["US"]}}, "body.filters.country"),
    "negative views": ({"query": "a", "filters": {"min_views": -1}}, "body.filters.min_views"),
    "views beyond int64": ({"query": "a", "filters": {"min_views": 2**63}}, "body.filters.min_views"),
    "empty platform list": ({"query": "a", "filters": {"platform": []}}, "body.filters.platform"),
    "bad platform": ({"query": "a", "filters": {"platform": ["You Tube"]}}, "body.filters.platform.0"),
    "bad date": ({"query": "a", "filters": {"published_after": "last week"}}, "body.filters.published_after"),
    "dates reversed": ({"query": "a", "filters": {"published_after": "2025-01-02T00:00:00Z",
                                                  "published_before": "2025-01-01T00:00:00Z"}},
                       "body.filters.published_before"),
    "epoch number as date": ({"query": "a", "filters": {"published_after": 0}}, "body.filters.published_after"),
    "unknown taxonomy": ({"query": "a", "filters": {"verticals": {"taxonomy": "nope", "verticals": ["food"]}}},
                         "body.filters.verticals.taxonomy"),
    "unknown vertical": ({"query": "a", "filters": {"verticals": {"verticals": ["astrology"]}}},
                         "body.filters.verticals.verticals"),
    "switched-off vertical": ({"query": "a", "filters": {"verticals": {"taxonomy": "brand_safety",
                                                                     "verticals": ["offensive"]}}},
                              "body.filters.verticals.verticals"),
    "confidence above 1": ({"query": "a", "filters": {"verticals": {"verticals": ["food"], "min_confidence": 2}}},
                           "body.filters.verticals.min_confidence"),
    "unknown facet": ({"query": "a", "facets": ["country"]}, "body.facets.0"),
}


@pytest.fixture
def internal(keys):
    return keys.headers(keys.internal)


@pytest.mark.parametrize("case", INVALID_SEARCHES, ids=list(INVALID_SEARCHES))
def test_invalid_search_is_a_422_naming_the_field(client, internal, case):
    body, field = INVALID_SEARCHES[case]
    response = client.post("/v1/search/posts", json=body, headers=internal)
    assert response.status_code == 422, response.text
    payload = response.json()
    assert payload["error"] == "invalid request"
    assert field in [d["field"] for d in payload["detail"]], payload
    assert all(d["reason"] for d in payload["detail"])


def test_malformed_json_is_a_422(client, internal):
    response = client.post("/v1/search/posts", content=b'{"query": ', headers={**internal,
                                                                             "content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"].startswith("body")


@pytest.mark.parametrize(("path", "field"), [("/v1/posts/abc", "path.post_id"), ("/v1/posts/-1", "path.post_id"),
                                             ("/v1/posts/1/similar?limit=0", "query.limit"),
                                             ("/v1/accounts/99999999999999999999", "path.account_id")])
def test_invalid_path_and_query_parameters_are_422s(client, internal, path, field):
    response = client.get(path, headers=internal)
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == field


# --- keys -------------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": ""}, {"X-API-Key": "not-a-key"},
                                     {"X-API-Key": "ik_0123456789ab_" + "x" * 43}], ids=["none", "empty", "malformed",
                                                                                       "unknown"])
def test_missing_or_invalid_key_is_401(client, headers):
    response = client.post("/v1/search/posts", json={"query": "a"}, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] in ("missing API key", "invalid API key")
    assert response.headers["www-authenticate"] == "ApiKey"


def test_a_key_with_a_wrong_secret_is_401(client, keys):
    key_id = keys.internal.split("_")[1]
    response = client.get("/v1/taxonomies", headers={"X-API-Key": f"ik_{key_id}_{'y' * 43}"})
    assert response.status_code == 401


def test_revoked_key_is_401(client, context):
    issued = context.keys.create("temp", [Scope.search], UNLIMITED)
    headers = {"X-API-Key": issued.key}
    assert client.get("/v1/taxonomies", headers=headers).status_code == 200
    context.keys.revoke(issued.record.key_id)
    assert client.get("/v1/taxonomies", headers=headers).status_code == 401


def test_keys_are_stored_hashed(context, redis_client):
    issued = context.keys.create("hashcheck", [Scope.search], UNLIMITED)
    secret = issued.key.split("_", 2)[2]
    stored = b"".join(redis_client.get(k) or b"" for k in redis_client.keys("apikey:*"))
    assert secret.encode() not in stored and issued.record.secret_sha256.encode() in stored


@pytest.mark.parametrize(("method", "path", "body"), [("POST", "/v1/feedback", {"post_id": 1, "vertical": "food"}),
                                                      ("GET", "/v1/status", None)])
def test_a_key_without_the_scope_is_403(client, keys, method, path, body):
    response = client.request(method, path, json=body, headers=keys.headers(keys.search_only))
    assert response.status_code == 403
    assert "scope" in response.json()["error"]


def test_rate_limit_is_per_key_with_retry_after(client, context, keys):
    limited = context.keys.create("tiny", [Scope.search], RateLimit(requests=3, per_seconds=60)).key
    statuses = [client.get("/v1/taxonomies", headers={"X-API-Key": limited}) for _ in range(4)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429]
    assert statuses[0].headers["x-ratelimit-remaining"] == "2"
    assert 1 <= int(statuses[3].headers["retry-after"]) <= 60
    assert statuses[3].json()["error"] == "rate limit exceeded"
    assert client.get("/v1/taxonomies", headers=keys.headers(keys.internal)).status_code == 200  # other keys go on


def test_a_rate_window_counter_expires_after_its_window(redis_client):
    """One round trip counts the hit and sets the window's expiry, so old windows leave no keys behind."""
    from shared.auth import RateLimiter

    limiter, rate, now = RateLimiter(redis_client), RateLimit(requests=5, per_seconds=60), 1_800_000_030.0
    decisions = [limiter.hit("expiring", rate, now=now) for _ in range(2)]
    assert [d.remaining for d in decisions] == [4, 3]
    counter = f"ratelimit:expiring:{int(now // 60)}"
    assert 0 < redis_client.ttl(counter) <= 61
    assert decisions[1].retry_after_s == 30


# --- dependencies down, and bugs ----------------------------------------------------------------------


def _app_with(tmp_path: Path, embedder, redis_client, kafka_settings, store) -> TestClient:
    ctx = build_context(store=store, embedder=embedder, redis_client=redis_client,
                        taxonomies=taxonomy_dir(tmp_path / "taxonomies"), kafka=kafka_settings)
    return TestClient(create_app(QuerySettings(), context=ctx), raise_server_exceptions=False)


def test_vector_store_down_is_a_503_with_retry_after(tmp_path, embedder, redis_client, kafka_settings, keys, context):
    store = EdgeVectorStore(tmp_path / "qdrant")
    store.ensure_collection(COLLECTION, 384)
    client = _app_with(tmp_path, embedder, redis_client, kafka_settings, store)
    store.close()  # what a crashed or restarting store looks like to the API
    headers = keys.headers(keys.internal)  # same Redis: the key is valid here too
    for response in (client.post("/v1/search/posts", json={"query": "a"}, headers=headers),
                     client.get("/v1/posts/1", headers=headers), client.get("/v1/accounts/1", headers=headers)):
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "5"
        assert response.json()["error"] == "vector store unavailable, retry later"


def test_redis_down_is_a_503_with_retry_after(tmp_path, embedder, kafka_settings, context):
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    client = _app_with(tmp_path, embedder, dead, kafka_settings, context.store)
    response = client.post("/v1/search/posts", json={"query": "a"}, headers={"X-API-Key": "ik_0123456789ab_" + "z" * 43})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert "Redis" in response.json()["error"]


def test_a_bug_is_a_500_without_details(tmp_path, embedder, redis_client, kafka_settings, keys):
    store = EdgeVectorStore(tmp_path / "qdrant")
    store.ensure_collection(COLLECTION, 16)  # a misconfiguration: 16-d, the model makes 384-d vectors
    client = _app_with(tmp_path, embedder, redis_client, kafka_settings, store)
    response = client.get("/v1/posts/1", headers=keys.headers(keys.internal))
    assert response.status_code == 500
    assert response.json() == {"error": "internal error", "detail": None}
    assert "Traceback" not in response.text and "dimension" not in response.text
    store.close()


def test_unknown_route_is_a_json_404(client):
    response = client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.json() == {"error": "Not Found", "detail": None}


def test_pages_and_health_need_no_key(client):
    assert client.get("/healthz").json() == {"status": "ok", "indexer_running": False}
    for path in ("/", "/status", "/static/search.js", "/static/app.css"):
        assert client.get(path).status_code == 200, path


def test_openapi_declares_the_key_and_every_error(client):
    spec = client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["APIKeyHeader"] == {
        "type": "apiKey", "in": "header", "name": "X-API-Key",
        "description": "Per-client key (`python -m services.query.admin_keys create`)."}
    search = spec["paths"]["/v1/search/posts"]["post"]
    assert {"200", "401", "403", "422", "429", "503"} <= set(search["responses"])
    assert "Retry-After" in search["responses"]["429"]["headers"]
    assert "404" in spec["paths"]["/v1/posts/{post_id}"]["get"]["responses"]


def test_data_scope_of_a_key_is_kept(context):
    issued = context.keys.create("scoped", [Scope.search], UNLIMITED, DataScope(platforms=["x"]))
    assert context.keys.authenticate(issued.key).data_scope.platforms == ["x"]


def test_a_key_cache_saves_redis_reads_and_a_revocation_elsewhere_lands_within_it(redis_client):
    """The API reuses key records for QUERY_KEY_CACHE_S; the admin CLI revokes through its own store."""
    api, admin = ApiKeyStore(redis_client, cache_s=0.5), ApiKeyStore(redis_client)
    issued = admin.create("cached", [Scope.search], UNLIMITED)
    assert api.authenticate(issued.key).key_id == issued.record.key_id
    admin.revoke(issued.record.key_id)
    assert api.authenticate(issued.key).key_id == issued.record.key_id  # still the cached record
    time.sleep(0.6)
    with pytest.raises(InvalidKey):
        api.authenticate(issued.key)
    other = admin.create("cached", [Scope.search], UNLIMITED)
    api.revoke(other.record.key_id)  # revoked through this store: no grace at all
    with pytest.raises(InvalidKey):
        api.authenticate(other.key)


def test_repeated_queries_are_served_from_memory_without_redis(context):
    from services.query.encoding import QueryEncoder

    base = context.posts.encoder
    encoder = QueryEncoder(base.embedder, base.cache, base.sparse, recent=2)
    hits = lambda: CACHE_REQUESTS.labels(cache=base.cache.name, result="hit")._value.get()  # noqa: E731
    first, cached = encoder.dense_vector("memory cached query one")
    assert cached is False
    before = hits()
    again, cached = encoder.dense_vector("memory cached query one")
    assert cached is True and hits() == before and (again == first).all()  # no Redis read
    for text in ("memory cached query two", "memory cached query three"):  # evicts "one" (size 2)
        encoder.dense_vector(text)
    _, cached = encoder.dense_vector("memory cached query one")
    assert cached is True and hits() == before + 1  # back from Redis
