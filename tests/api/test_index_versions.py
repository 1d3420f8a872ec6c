"""Search follows the index registry's alias: a replay's switch moves every request to the new
version at once, a rollback moves them back; the status page lists the versions."""

from __future__ import annotations

import time

import numpy as np
from fastapi.testclient import TestClient

from services.query.active_collection import ActiveCollection
from services.query.app import QuerySettings, create_app
from shared.auth import Scope
from shared.index_registry import IndexRegistry, IndexVersion
from shared.vectorstore import EdgeVectorStore, PointRecord, point_id
from tests.api.conftest import UNLIMITED
from tests.api.corpus import build_context, taxonomy_dir


def _post(post_id: int, title: str, model_id: str) -> PointRecord:
    vector = np.random.default_rng(post_id).standard_normal(384).tolist()
    return PointRecord(id=point_id("post", post_id), vector=vector, payload={
        "post_id": post_id, "account_id": 1, "platform": "x", "title": title, "published_at": 0, "model_id": model_id})


def test_search_reads_the_collection_the_alias_points_at(tmp_path, embedder, redis_client, kafka_settings):
    store = EdgeVectorStore(tmp_path / "qdrant")
    for collection, title, model in (("posts", "live version", "fp32"), ("posts_v2", "replayed version", "int8")):
        store.ensure_collection(collection, 384)
        store.upsert(collection, [_post(1, title, model)])
    registry = IndexRegistry(redis_client, f"versions{tmp_path.name[-6:]}", alias="posts")
    registry.bootstrap("posts", "t.embedded", "g-indexer")
    registry.register(IndexVersion(collection="posts_v2", version=2, stage="embed", source_topic="t.v2",
                                   indexer_group="g-v2", model_variant="int8"))
    ctx = build_context(store=store, embedder=embedder, redis_client=redis_client, kafka=kafka_settings,
                        taxonomies=taxonomy_dir(tmp_path / "taxonomies"))
    ctx.posts_collection = ActiveCollection(store, "posts", registry)
    ctx.status.collection = ctx.posts_collection
    client = TestClient(create_app(QuerySettings(), context=ctx))
    headers = {"X-API-Key": ctx.keys.create("ops", [Scope.search, Scope.status, Scope.admin], UNLIMITED).key}
    reader = {"X-API-Key": ctx.keys.create("reader", [Scope.search], UNLIMITED).key}

    def title() -> str:
        return client.get("/v1/posts/1", headers=headers).json()["post"]["title"]

    assert title() == "live version"

    def search(key: dict, version: str) -> object:
        response = client.post("/v1/search/posts", json={"query": "version", "index_version": version}, headers=key)
        return response.json()["results"][0]["post"]["title"] if response.status_code == 200 else response

    # before a switch, an operator compares the candidate version; nobody else sees it
    assert search(headers, "posts_v2") == "replayed version" and title() == "live version"
    assert search(reader, "posts_v2").status_code == 403
    refused = search(headers, "posts_v9")
    assert refused.status_code == 422 and refused.json()["detail"][0]["field"] == "body.index_version"

    registry.switch("posts_v2")
    assert title() == "replayed version"  # the very next request
    status = client.get("/v1/status", headers=headers).json()
    assert status["collection"] == status["index"]["collection"] == "posts_v2"
    assert [(v["collection"], v["active"]) for v in status["index"]["versions"]] == [("posts", False),
                                                                                     ("posts_v2", True)]
    registry.switch(registry.previous())
    assert title() == "live version"
    ctx.status.close()
    store.close()


def test_a_cached_alias_spares_redis_and_a_switch_lands_within_the_cache_time(tmp_path, redis_client):
    """QUERY_ALIAS_CACHE_S: the active version is read from Redis at most once per cache period."""
    store = EdgeVectorStore(tmp_path / "qdrant")
    registry = IndexRegistry(redis_client, f"aliascache{tmp_path.name[-6:]}", alias="posts")
    registry.bootstrap("posts", "t.embedded", "g-indexer")
    registry.register(IndexVersion(collection="posts_v2", version=2, stage="embed", source_topic="t.v2",
                                   indexer_group="g-v2"))
    for collection in ("posts", "posts_v2"):  # opened before: opening a shard takes longer than the cache time
        store.ensure_collection(collection, 384)
    active = ActiveCollection(store, "posts", registry, alias_cache_s=1.0)
    assert active.name() == "posts"
    registry.switch("posts_v2")
    assert active.name() == "posts"  # still the version read within the cache time
    time.sleep(1.1)
    assert active.name() == "posts_v2"
    store.close()
