"""One writer per point: a person's correction made while the indexer rewrites the same post is kept
(real broker, real Redis stream, real edge engine, real model; the indexer runs its Kafka loop)."""

from __future__ import annotations

import threading
import uuid

import pytest
import redis

from services.classifier.feedback import FeedbackLearner, TopicPublisher
from services.indexer.core import post_point_id
from services.indexer.service import indexer_loop
from shared.classification.feedback import VerticalFeedback, record_feedback
from shared.classification.fewshot import FewShotStore
from shared.classification.labelling import TierOneLabeller
from shared.classification.taxonomy import TaxonomyCatalog
from shared.config import KafkaSettings
from shared.embedding import load_text_embedder
from shared.events import AccountFields, EmbeddedPostUpsert, PostRecord, PostUpsert, SourcePosition, account_key, encode
from shared.index_registry import IndexRegistry
from shared.kafka import OutboundMessage, make_producer, produce_all
from shared.vectorstore import EdgeVectorStore
from tests.conftest import MODEL_CACHE_DIR, wait_for

TEXT = "Everyday look: oversized blazer, loafers and a bold red lipstick"


class StoreWithAWindow(EdgeVectorStore):
    """The real engine; ``between`` runs once, right before the next upsert of ``post_id`` is written,
    i.e. after the indexer read the stored payloads it builds the new point from."""

    def __init__(self, path, post_id: int) -> None:
        super().__init__(path)
        self.point = post_point_id(post_id)
        self.action = None

    def upsert(self, name, points):
        if self.action is not None and any(p.id == self.point for p in points):
            action, self.action = self.action, None
            action()
        return super().upsert(name, points)


@pytest.fixture(scope="module")
def embedder():
    return load_text_embedder(MODEL_CACHE_DIR)


def test_a_correction_made_while_the_indexer_rewrites_the_post_is_kept(infra, tmp_path, embedder):
    prefix = f"ow{uuid.uuid4().hex[:8]}"
    kafka = KafkaSettings(kafka_bootstrap_servers=f"127.0.0.1:{infra.config.broker_port}", topic_prefix=prefix)
    client = redis.Redis(host="127.0.0.1", port=infra.config.redis_port, db=6)
    client.flushdb()
    fewshot = FewShotStore(client)
    labeller = TierOneLabeller(TaxonomyCatalog.load(), embedder.embed, fewshot, refresh_s=3600)
    store = StoreWithAWindow(tmp_path / "edge", post_id=1)
    registry = IndexRegistry(client, prefix, alias="posts")
    registry.bootstrap("posts", kafka.embedded_posts_topic, f"{prefix}-indexer")
    learner = FeedbackLearner(client, store, lambda: "posts", labeller, fewshot, TopicPublisher(kafka, registry))
    stop = threading.Event()
    loop = indexer_loop(kafka, store, "posts", stop, group=f"{prefix}-indexer", labeller=labeller)
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    producer = make_producer(kafka)
    vector = embedder.embed([TEXT])[0]

    def publish_post(pos: int, views: int) -> None:
        post = PostRecord(id=1, account_id=7, platform="instagram", title=TEXT, published_at=1, views=views)
        event = EmbeddedPostUpsert.build(PostUpsert(post=post, account=AccountFields(handle="h"),
                                                    position=SourcePosition(ts_ms=1, pos=pos)), "m", vector)
        produce_all(producer, [OutboundMessage(kafka.embedded_posts_topic, account_key(7), encode(event))])

    def stored() -> dict:
        found = store.retrieve("posts", [post_point_id(1)])
        return found[0].payload if found else {}

    def default_labels() -> dict[str, str]:
        return {v["vertical"]: v["tier"] for v in stored().get("verticals", []) if v["taxonomy"] == "default"}

    try:
        publish_post(pos=1, views=10)
        wait_for(lambda: stored().get("views") == 10, timeout=60, what="the post indexed")
        wrong = next(iter(default_labels()), "fashion")
        right = "beauty" if wrong != "beauty" else "fashion"
        record_feedback(client, VerticalFeedback(tenant="t", api_key_id="k", post_id=1, account_id=7,
                                                 taxonomy="default", vertical=wrong, correct_vertical=right))
        # The person's correction is learned exactly between the indexer's read and its write of post 1.
        store.action = learner.drain
        publish_post(pos=2, views=900)
        wait_for(lambda: stored().get("views") == 900, timeout=60, what="the views update indexed")
        assert store.action is None, "the correction did not run inside the indexer's write window"
        wait_for(lambda: default_labels().get(right) == "human", timeout=30,
                 what=f"the person's label {right!r} on the post (labels: {default_labels()})")
        assert wrong not in default_labels() and stored().get("views") == 900
    finally:
        stop.set()
        thread.join(20)
        store.close()
        client.flushdb()
