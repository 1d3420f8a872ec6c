"""A person's correction reaches tier 1 without a redeploy, and the posts it affects are relabelled
(real Redis stream and consumer group, real model, real edge engine)."""

from __future__ import annotations

import numpy as np
import pytest
import redis

from services.classifier.core import PostClassifier
from services.classifier.feedback import FeedbackLearner
from services.classifier.llm_tier import LlmVerticalClassifier
from services.indexer.core import PostIndexer, post_point_id
from shared.classification.feedback import FEEDBACK_STREAM, VerticalFeedback, record_feedback
from shared.classification.fewshot import FewShotStore
from shared.classification.labelling import TierOneLabeller
from shared.classification.taxonomy import TaxonomyCatalog, VerticalLabel
from shared.config import LlmSettings
from shared.embedding import load_text_embedder
from shared.events import (
    AccountFields,
    EmbeddedPostUpsert,
    PostLabels,
    PostRecord,
    PostUpsert,
    SourcePosition,
    content_hash,
)
from shared.llm import LlmClient
from shared.vectorstore import EdgeVectorStore
from tests.conftest import MODEL_CACHE_DIR
from tests.support.fake_llm import FakeLlmServer

CORRECTED = "Everyday look: oversized blazer, loafers and a bold red lipstick"
SIBLING = "My everyday look with an oversized blazer, loafers and bold red lipstick"
OTHERS = ["Chicken curry from scratch, recipe in the comments", "Ranked match highlights: clutch 1v4 win",
          "How I save 30% of my salary with three bank accounts", "Puppy's first week at home: crate training"]
GADGETS = "Testing gadgets: tech for travel and music lovers"  # tier 1 is unsure: the LLM is asked


@pytest.fixture(scope="module")
def embedder():
    return load_text_embedder(MODEL_CACHE_DIR)


@pytest.fixture
def world(infra, tmp_path, embedder):
    client = redis.Redis(host="127.0.0.1", port=infra.config.redis_port, db=5)  # a database of its own
    client.flushdb()
    fewshot = FewShotStore(client)
    labeller = TierOneLabeller(TaxonomyCatalog.load(), embedder.embed, fewshot, refresh_s=3600)
    store = EdgeVectorStore(tmp_path / "edge")
    indexer = PostIndexer(store, "posts", 384, labeller)
    # the learner's label events go to the indexer (here directly; in production through the keyed topic)
    learner = FeedbackLearner(client, store, lambda: "posts", labeller, fewshot, indexer.apply)
    yield client, store, indexer, learner, labeller
    store.close()
    client.flushdb()


def upsert(embedder, post_id: int, text: str, pos: int, views: int = 0) -> EmbeddedPostUpsert:
    post = PostRecord(id=post_id, account_id=1, platform="instagram", title=text, published_at=1, views=views)
    event = PostUpsert(post=post, account=AccountFields(handle="h"), position=SourcePosition(ts_ms=1, pos=pos))
    return EmbeddedPostUpsert.build(event, "m", embedder.embed([post.embedding_text()])[0])


def labels(store, post_id: int) -> dict[str, str]:
    [point] = store.retrieve("posts", [post_point_id(post_id)])
    return {v["vertical"]: v["tier"] for v in point.payload["verticals"] if v["taxonomy"] == "default"}


def correct(client, post_id: int, wrong: str, right: str | None) -> None:
    record_feedback(client, VerticalFeedback(tenant="t", api_key_id="k", post_id=post_id, account_id=1,
                                             taxonomy="default", vertical=wrong, correct_vertical=right))


def test_a_correction_becomes_an_example_and_relabels_the_post_and_its_neighbours(world, embedder):
    client, store, indexer, learner, labeller = world
    indexer.apply([upsert(embedder, 1, CORRECTED, 1), upsert(embedder, 2, SIBLING, 2),
                   *(upsert(embedder, 10 + i, text, 10 + i) for i, text in enumerate(OTHERS))])
    sibling_vector = embedder.embed([SIBLING])
    before = labeller.results(sibling_vector)[0][0].scores["beauty"]
    wrong = next(iter(labels(store, 1)), "fashion")

    correct(client, 1, wrong, "beauty")
    assert learner.drain() == 1

    assert labels(store, 1).get("beauty") == "human" and wrong not in labels(store, 1)
    assert set(FewShotStore(client).examples("default")) == {"beauty"}
    # Tier 1 moved towards the person's answer, and the near-identical post was relabelled by it.
    assert labeller.results(sibling_vector)[0][0].scores["beauty"] > before + 0.05
    expected = {label.vertical for label in labeller.labels(sibling_vector)[0] if label.taxonomy == "default"}
    assert set(labels(store, 2)) == expected and "beauty" in expected
    # Posts about other things were looked at but not dragged into beauty.
    assert all("beauty" not in labels(store, 10 + i) for i in range(len(OTHERS)))


def test_the_persons_label_survives_reindexing_and_llm_opinions(world, embedder):
    client, store, indexer, learner, _ = world
    indexer.apply([upsert(embedder, 1, CORRECTED, 1)])
    correct(client, 1, "fashion", "beauty")
    learner.drain()
    indexer.apply([upsert(embedder, 1, CORRECTED, 5, views=900)])  # same text, new counts
    indexer.apply([PostLabels(post_id=1, account_id=1, content_hash=content_hash(CORRECTED), taxonomy="default",
                              taxonomy_version="1", model="llm",
                              labels=[VerticalLabel(taxonomy="default", vertical="travel", confidence=0.9)])])
    assert labels(store, 1)["beauty"] == "human" and "travel" not in labels(store, 1)


def test_a_correction_delivered_twice_is_applied_once(world, embedder):
    """The learner died after learning but before acknowledging: the entry comes back; same result."""
    client, store, indexer, learner, _ = world
    indexer.apply([upsert(embedder, 1, CORRECTED, 1)])
    correct(client, 1, "fashion", "beauty")
    learner._ensure_group()
    client.xreadgroup("feedback-learner", "learner-1", {FEEDBACK_STREAM: ">"}, count=10)  # read, never acked
    assert learner.drain(pending_first=True) == 1
    assert learner.drain(pending_first=True) == 0  # acknowledged now
    stored = FewShotStore(client).examples("default")
    assert list(stored) == ["beauty"] and len(stored["beauty"]) == 1
    assert labels(store, 1)["beauty"] == "human"


def test_a_correction_of_a_post_no_longer_indexed_is_acknowledged_and_changes_nothing(world, embedder):
    client, store, indexer, learner, labeller = world
    indexer.apply([upsert(embedder, 2, SIBLING, 2)])
    correct(client, 99, "fashion", "beauty")
    revision = FewShotStore(client).revision("default")
    assert learner.drain() == 1 and learner.drain() == 0
    assert FewShotStore(client).revision("default") == revision
    assert np.isfinite(labeller.results(embedder.embed([SIBLING]))[0][0].scores["beauty"])


def test_not_x_is_remembered_when_the_same_text_is_indexed_again(world, embedder):
    client, store, indexer, learner, _ = world
    indexer.apply([upsert(embedder, 1, CORRECTED, 1)])
    assert labels(store, 1), "tier 1 should give the post a label to correct"
    wrong = next(iter(labels(store, 1)))
    correct(client, 1, wrong, None)  # "not this", without saying what is right
    learner.drain()
    assert wrong not in labels(store, 1)
    indexer.apply([upsert(embedder, 1, CORRECTED, 5, views=900)])  # same text, new counts: tier 1 runs again
    assert wrong not in labels(store, 1)
    # a person saying later that the text is that vertical after all lifts the "not"
    other = next(iter(labels(store, 1)), None) or "travel"
    correct(client, 1, other, wrong)
    learner.drain()
    indexer.apply([upsert(embedder, 1, CORRECTED, 6, views=901)])
    assert labels(store, 1).get(wrong) == "human"


def test_not_x_is_respected_by_the_llm_tier(world, embedder):
    client, store, indexer, learner, labeller = world
    event = upsert(embedder, 3, GADGETS, 1)
    indexer.apply([event])
    catalog = TaxonomyCatalog.load()

    def second_opinion(classifier: PostClassifier) -> set[str]:
        """What the LLM tier says about the post (fresh or from its answer cache), applied by the indexer."""
        opinions = [o for o in classifier.process([event]).opinions if o.taxonomy == "default"]
        indexer.apply(opinions)
        return {label.vertical for opinion in opinions for label in opinion.labels}

    with FakeLlmServer() as server, LlmClient(LlmSettings(llm_base_url=server.base_url, llm_model="judge"),
                                                 client) as llm:
        classifier = PostClassifier(labeller, {t.name: t for t in catalog.all()}, LlmVerticalClassifier(llm))
        assert second_opinion(classifier) == {"tech", "travel", "music"}
        assert labels(store, 3) == {"tech": "llm", "travel": "llm", "music": "llm"}
        correct(client, 3, "travel", None)  # "not travel"
        learner.drain()
        assert set(labels(store, 3)) == {"tech", "music"}
        # the same text judged again (the LLM's answer is cached by text): travel does not come back
        assert second_opinion(classifier) == {"tech", "music"}
        assert set(labels(store, 3)) == {"tech", "music"}
