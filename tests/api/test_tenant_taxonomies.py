"""Corrections stay inside the tenant, and a taxonomy may belong to one: through the real API, with the
real feedback learner and indexer on a real edge store, real Redis and the real model."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from services.classifier.feedback import FeedbackLearner
from services.indexer.core import PostIndexer
from services.query.app import QuerySettings, create_app
from shared.auth import DataScope, Scope
from shared.classification.fewshot import FewShotStore
from shared.classification.labelling import TierOneLabeller
from shared.classification.taxonomy import TaxonomyCatalog
from shared.config import PROJECT_ROOT
from shared.vectorstore import EdgeVectorStore
from tests.api.conftest import UNLIMITED
from tests.api.corpus import _event, build_context

ACME_TAXONOMY = """\
name: acme_brands
tenant: acme
description: acme's own client segments.
verticals:
  - name: premium
    description: Premium, high-end, luxury products and experiences.
    keywords: [luxury, high-end, designer]
  - name: everyday
    description: Everyday, affordable, budget-friendly products and tips.
    keywords: [budget, cheap, affordable]
"""


@dataclass
class World:
    client: TestClient
    redis: redis.Redis
    acme: dict[str, str]
    globex: dict[str, str]
    internal: dict[str, str]
    acme_accounts: set[int]
    learner: FeedbackLearner
    published: list = field(default_factory=list)


def _taxonomies(root: Path, with_tenant_taxonomy: bool) -> Path:
    root.mkdir(parents=True)
    shutil.copy(PROJECT_ROOT / "config" / "taxonomies" / "default.yaml", root / "default.yaml")
    if with_tenant_taxonomy:
        (root / "acme_brands.yaml").write_text(ACME_TAXONOMY)
    return root


def _world(root: Path, corpus, embedder, infra, kafka_settings, *, with_tenant_taxonomy: bool) -> Iterator[World]:
    client = redis.Redis(host="127.0.0.1", port=infra.config.redis_port, db=7)  # examples and stream of its own
    client.flushdb()
    taxonomies = _taxonomies(root / "taxonomies", with_tenant_taxonomy)
    labeller = TierOneLabeller(TaxonomyCatalog.load(taxonomies), embedder.embed, FewShotStore(client), refresh_s=3600)
    store = EdgeVectorStore(root / "qdrant")
    indexer = PostIndexer(store, "posts", 384, labeller)
    rows = list(corpus.posts.values())
    vectors = embedder.embed([f"{p.title}\n{p.description or ''}".strip() for p in rows])
    indexer.apply([_event(p, corpus.accounts[p.account_id], embedder.model_id, v) for p, v in zip(rows, vectors)])
    ctx = build_context(store=store, embedder=embedder, redis_client=client, taxonomies=taxonomies,
                        kafka=kafka_settings)
    acme_accounts = set(sorted(corpus.accounts)[::3])
    published: list = []

    def publish(events) -> None:  # what the indexer reads from the keyed topic, applied by it
        published.extend(events)
        indexer.apply(events)

    world = World(
        client=TestClient(create_app(QuerySettings(), context=ctx)), redis=client,
        acme={"X-API-Key": ctx.keys.create("acme", [Scope.search, Scope.feedback], UNLIMITED,
                                           DataScope(account_ids=sorted(acme_accounts))).key},
        globex={"X-API-Key": ctx.keys.create("globex", [Scope.search, Scope.feedback], UNLIMITED,
                                             DataScope(platforms=["youtube"])).key},
        internal={"X-API-Key": ctx.keys.create("internal", list(Scope), UNLIMITED).key},
        acme_accounts=acme_accounts, published=published,
        learner=FeedbackLearner(client, store, lambda: "posts", labeller, FewShotStore(client), publish))
    yield world
    ctx.status.close()
    store.close()
    client.flushdb()


@pytest.fixture
def shared_world(tmp_path, corpus, embedder, infra, kafka_settings) -> Iterator[World]:
    yield from _world(tmp_path, corpus, embedder, infra, kafka_settings, with_tenant_taxonomy=False)


@pytest.fixture
def tenant_world(tmp_path, corpus, embedder, infra, kafka_settings) -> Iterator[World]:
    yield from _world(tmp_path, corpus, embedder, infra, kafka_settings, with_tenant_taxonomy=True)


def _own_post(world: World, corpus, vertical: str | None = None):
    return next(p for p in corpus.posts.values() if p.account_id in world.acme_accounts
                and (vertical is None or p.vertical == vertical))


def test_a_restricted_tenants_correction_of_a_shared_taxonomy_changes_only_its_post(shared_world, corpus):
    world = shared_world
    post = _own_post(world, corpus)
    response = world.client.post("/v1/feedback", headers=world.acme, json={
        "post_id": post.id, "vertical": post.vertical, "correct_vertical": "comedy" if post.vertical != "comedy"
        else "music"})
    assert response.status_code == 202, response.text
    assert world.learner.drain() == 1
    # the shared taxonomy's examples (tier 1 for every tenant) did not move, no other post was relabelled
    assert FewShotStore(world.redis).examples("default") == {}
    assert FewShotStore(world.redis).revision("default") == 0
    assert {event.post_id for event in world.published} == {post.id}
    shown = world.client.get(f"/v1/posts/{post.id}", headers=world.acme).json()["post"]["verticals"]
    assert any(v["tier"] == "human" for v in shown)


def test_a_tenants_taxonomy_is_its_own(tenant_world, corpus):
    world, client = tenant_world, tenant_world.client

    def names(headers) -> set[str]:
        return {t["name"] for t in client.get("/v1/taxonomies", headers=headers).json()["taxonomies"]}

    assert names(world.acme) == {"default", "acme_brands"}
    assert names(world.globex) == names(world.internal) == {"default"}
    assert client.get("/v1/taxonomies/acme_brands", headers=world.acme).status_code == 200
    assert client.get("/v1/taxonomies/acme_brands", headers=world.globex).status_code == 404

    def search(headers, **filters):
        return client.post("/v1/search/posts", headers=headers, json={
            "query": "products and tips", "limit": 100, "facets": ["vertical"], "filters": filters})

    by_premium = {"verticals": {"taxonomy": "acme_brands", "verticals": ["premium", "everyday"]}}
    assert search(world.acme, **by_premium).status_code == 200
    refused = search(world.globex, **by_premium)
    assert refused.status_code == 422 and refused.json()["detail"][0]["field"] == "body.filters.verticals.taxonomy"
    # every post carries tier-1 labels of every taxonomy; only acme is shown those of its own
    acme_page, internal_page = search(world.acme).json(), search(world.internal).json()
    assert any(f["taxonomy"] == "acme_brands" for f in acme_page["facets"]["vertical"])
    assert all(f["taxonomy"] != "acme_brands" for f in internal_page["facets"]["vertical"])
    assert all(v["taxonomy"] != "acme_brands" for hit in internal_page["results"] for v in hit["post"]["verticals"])

    # globex cannot correct acme's taxonomy; acme's correction of it teaches it, on acme's posts only
    post = _own_post(world, corpus)
    assert client.post("/v1/feedback", headers=world.globex, json={
        "post_id": post.id, "taxonomy": "acme_brands", "vertical": "premium"}).status_code == 422
    response = client.post("/v1/feedback", headers=world.acme, json={
        "post_id": post.id, "taxonomy": "acme_brands", "vertical": "everyday", "correct_vertical": "premium"})
    assert response.status_code == 202, response.text
    assert world.learner.drain() == 1
    assert set(FewShotStore(world.redis).examples("acme_brands")) == {"premium"}
    relabelled = {event.account_id for event in world.published if event.post_id != post.id}
    assert relabelled and relabelled <= world.acme_accounts
    # a key that sees every post still teaches the shared taxonomy
    other = next(p for p in corpus.posts.values() if p.account_id not in world.acme_accounts)
    assert client.post("/v1/feedback", headers=world.internal, json={
        "post_id": other.id, "vertical": other.vertical, "correct_vertical": "comedy" if other.vertical != "comedy"
        else "music"}).status_code == 202
    assert world.learner.drain() == 1
    assert FewShotStore(world.redis).examples("default")
