"""The classifier's choice of posts for tier 2 and the opinions it makes of the answers (real model,
real Redis cache, the LLM endpoint as a real HTTP server)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from services.classifier.core import PostClassifier
from services.classifier.estimate import estimate_tier_two
from services.classifier.llm_tier import LlmVerticalClassifier
from shared.classification.labelling import TierOneLabeller
from shared.classification.taxonomy import TaxonomyCatalog
from shared.config import LlmSettings
from shared.embedding import load_text_embedder
from shared.events import AccountFields, EmbeddedPostUpsert, PostDelete, PostRecord, PostUpsert, SourcePosition, content_hash
from shared.llm import LlmAnswerCache, LlmClient
from tests.conftest import MODEL_CACHE_DIR
from tests.support.fake_llm import FakeLlmServer
from tests.support.redis_server import private_redis

TEXTS = ["Homemade ramen: pork broth simmered for twelve hours, soft eggs, chashu",
         "Sunday vlog: a bit of food, a bit of music, mostly chaos",
         "Deadlift technique for beginners: hinge, brace, pull the slack out of the bar",
         "Random thoughts about music and travel while stuck in traffic",
         "Unboxing the new noise-cancelling headphones and testing the battery",
         "Q&A: my pets, my gaming setup and what I eat in a day",
         "Behind the scenes of a music video shoot at a food market",
         "Travel day! Airport food, music on repeat, a very long queue",
         "Answering your questions about my life lately",
         "What I got for my birthday: some tech, some fashion",
         "Weekly update and some news about business and sport",
         "Storytime: the weirdest thing happened at work today"]


@pytest.fixture(scope="module")
def embedder():
    return load_text_embedder(MODEL_CACHE_DIR)


@pytest.fixture(scope="module")
def redis_client(tmp_path_factory) -> Iterator[redis.Redis]:
    with private_redis(tmp_path_factory.mktemp("classifier-redis")) as url:
        yield redis.Redis.from_url(url)


@pytest.fixture
def catalog() -> TaxonomyCatalog:
    return TaxonomyCatalog.load()


def events(embedder) -> list[EmbeddedPostUpsert]:
    posts = [PostRecord(id=i + 1, account_id=100 + i, platform="tiktok", title=t, published_at=1) for i, t in enumerate(TEXTS)]
    vectors = embedder.embed([p.embedding_text() for p in posts])
    return [EmbeddedPostUpsert.build(PostUpsert(post=p, account=AccountFields(handle="h"),
                                                position=SourcePosition(ts_ms=1, pos=p.id)), "m", v)
            for p, v in zip(posts, vectors, strict=True)]


def test_only_unsure_posts_go_to_the_llm_and_each_answer_becomes_an_opinion(embedder, redis_client, catalog):
    labeller = TierOneLabeller(catalog, embedder.embed)
    batch_events = events(embedder)
    unsure = {e.post.id for e, results in zip(batch_events, labeller.results(
        [e.vector() for e in batch_events]), strict=True) if any(r.uncertain for r in results)}
    assert 0 < len(unsure) < len(TEXTS), "the texts should mix clear and unsure posts"
    with FakeLlmServer() as server, LlmClient(LlmSettings(llm_base_url=server.base_url, llm_model="judge"),
                                                 redis_client) as client:
        classifier = PostClassifier(labeller, {t.name: t for t in catalog.all()}, LlmVerticalClassifier(client),
                                    tier_two_model="judge")
        deleted = PostDelete(post_id=1, account_id=100, position=SourcePosition(ts_ms=1, pos=99))
        batch = classifier.process([*batch_events, deleted])  # deletes are not the classifier's business
        sent = {p["text"] for r in server.requests for p in r.posts}
        requests = len(server.requests)
        again = classifier.process(batch_events)  # a replay of the same posts: answers come from the cache
        assert len(server.requests) == requests

    assert sent == {e.post.embedding_text() for e in batch_events if e.post.id in unsure}
    assert batch.posts == len(TEXTS) and sum(batch.uncertain.values()) >= len(unsure)
    opinions = {(o.post_id, o.taxonomy): o for o in batch.opinions}
    assert {post_id for post_id, _ in opinions} == unsure
    for (post_id, taxonomy), opinion in opinions.items():
        text = TEXTS[post_id - 1]
        assert opinion.content_hash == content_hash(text) and opinion.model == "judge"
        assert opinion.taxonomy_version == catalog.get(taxonomy).version
        names = {v.name for v in catalog.get(taxonomy).verticals if v.enabled}
        assert {label.vertical for label in opinion.labels} == {n for n in names if n in text.lower()}
    assert [(o.post_id, o.taxonomy, o.labels) for o in again.opinions] == \
        [(o.post_id, o.taxonomy, o.labels) for o in batch.opinions]


def test_without_an_llm_nothing_is_sent_but_the_unsure_share_is_measured(embedder, catalog):
    classifier = PostClassifier(TierOneLabeller(catalog, embedder.embed), {t.name: t for t in catalog.all()})
    batch = classifier.process(events(embedder))
    assert batch.opinions == [] and batch.posts == len(TEXTS) and sum(batch.uncertain.values()) > 0


def test_only_the_latest_version_of_a_post_in_a_batch_is_judged(embedder, catalog):
    first, *_ = events(embedder)
    edited = first.model_copy(update={"post": first.post.model_copy(update={"title": "edited"})})
    batch = PostClassifier(TierOneLabeller(catalog, embedder.embed), {t.name: t for t in catalog.all()}).process(
        [first, edited])
    assert batch.posts == 1


def test_the_dry_run_estimate_prices_only_unsure_posts_not_yet_answered(embedder, redis_client, catalog):
    labeller, batch_events = TierOneLabeller(catalog, embedder.embed), events(embedder)
    taxonomies = {t.name: t for t in catalog.all()}
    with FakeLlmServer() as server:
        settings = LlmSettings(llm_base_url=server.base_url, llm_model="estimate-judge", llm_batch_size=4)
        cold = estimate_tier_two(batch_events, labeller, taxonomies, settings, LlmAnswerCache(redis_client))
        assert server.requests == []  # an estimate never calls the model
        unsure = sum(cold.unsure.values())
        assert cold.posts == len(TEXTS) and 0 < unsure < len(TEXTS) * len(taxonomies)
        assert cold.cached == 0 and cold.to_ask == unsure and cold.usd > 0
        assert cold.requests == sum(-(-n // 4) for n in cold.unsure.values() if n)
        with LlmClient(settings, redis_client) as client:
            PostClassifier(labeller, taxonomies, LlmVerticalClassifier(client)).process(batch_events)
        asked = len(server.requests)
        warm = estimate_tier_two(batch_events, labeller, taxonomies, settings, LlmAnswerCache(redis_client))
        assert len(server.requests) == asked
    assert warm.cached == unsure and warm.to_ask == 0 and warm.usd == 0 and warm.requests == 0
