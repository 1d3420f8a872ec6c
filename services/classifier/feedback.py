"""People's label corrections flow back into tier 1, and the posts they affect are relabelled.

``POST /v1/feedback`` appends a correction to a Redis stream. The learner reads it with a consumer
group (at least once: an entry is acknowledged only after everything below is done, and every
step is idempotent):

1. the corrected post's vector becomes a few-shot example of the right vertical, and stops being
   one of the wrong vertical (``FewShotStore``), so tier 1 everywhere rebuilds within seconds; the
   wrong vertical is remembered as "not this" for the post's text (content hash), so neither tier 1
   nor an LLM gives that text the label again on a re-index;
2. the post itself shows what the person said within a batch (tier "human": neither tier 1 nor an LLM
   overrides it while the text stays the same);
3. its nearest neighbours, the posts a new example can change, are labelled again by the updated
   tier 1. A full reprocess of everything is a replay (``make replay ARGS="--stage index"``).

Steps 2 and 3 are not written to the store here: they are published as ``post.correction`` and
``post.relabel`` events on the searched version's embedded-posts topic, keyed by account, and the
indexer applies them. One writer per point: a correction written between the indexer's read of a
payload and its write of the whole point would otherwise be lost.

It needs the post vectors, so it runs where the vector store is: in the query process with the
in-process engine (like the indexer), or beside the indexer with a Qdrant server.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import numpy as np
import redis

from services.indexer.core import post_point_id
from shared.auth import DataScope
from shared.classification.feedback import FEEDBACK_STREAM, VerticalFeedback
from shared.classification.fewshot import FewShotStore
from shared.classification.labelling import TierOneLabeller
from shared.config import KafkaSettings
from shared.events import PostCorrection, PostRelabel, account_key, encode
from shared.index_registry import IndexRegistry
from shared.kafka import OutboundMessage, make_producer, produce_all
from shared.logging import get_logger
from shared.metrics import FEEDBACK_APPLIED
from shared.stored_post import payload_fields
from shared.vectorstore import SearchFilter, VectorStore

log = get_logger("feedback")
GROUP = "feedback-learner"
NEIGHBOURS = 200  # posts relabelled around each correction: those a new example can plausibly move
BLOCK_MS = 1000  # a stream read waits this long for news: under the Redis client's 2 s socket timeout


LabelEvents = Callable[[Sequence[PostCorrection | PostRelabel]], None]  # durably published when it returns


class TopicPublisher:
    """Label events onto the embedded-posts topic of the version search reads (the indexer of that version
    reads it), keyed by account like the posts' other events; returns once the broker has them."""

    def __init__(self, kafka: KafkaSettings, registry: IndexRegistry) -> None:
        self.kafka = kafka
        self.registry = registry
        self.producer = make_producer(kafka)

    def topic(self) -> str:
        active = self.registry.versions().get(self.registry.active() or self.registry.alias)
        return active.source_topic if active else self.kafka.embedded_posts_topic

    def __call__(self, events: Sequence[PostCorrection | PostRelabel]) -> None:
        topic = self.topic()
        produce_all(self.producer, [OutboundMessage(topic, account_key(e.account_id), encode(e)) for e in events])


class FeedbackLearner:
    def __init__(self, client: redis.Redis, store: VectorStore, collection: Callable[[], str],
                 labeller: TierOneLabeller, fewshot: FewShotStore, publish: LabelEvents, *,
                 consumer: str = "learner-1") -> None:
        self.client = client
        self.store = store
        self.collection = collection  # the active posts version, read per correction
        self.labeller = labeller
        self.fewshot = fewshot
        self.publish = publish  # the post's and its neighbours' new labels go to the indexer, never to the store
        self.consumer = consumer

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self._ensure_group()
                self.drain(block_ms=BLOCK_MS, pending_first=True)
            except Exception as exc:  # Redis or the store down: corrections wait in the stream
                log.warning("feedback learner paused", error=repr(exc)[:300])
                stop.wait(2)

    def drain(self, block_ms: int | None = None, pending_first: bool = False) -> int:
        """Process what is waiting (entries delivered before a crash first); returns how many."""
        self._ensure_group()
        done, start = 0, "0" if pending_first else ">"
        while True:
            reply = self.client.xreadgroup(GROUP, self.consumer, {FEEDBACK_STREAM: start}, count=50, block=block_ms)
            entries = reply[0][1] if reply else []
            if not entries:
                if start == "0":
                    start = ">"
                    continue
                return done
            for entry_id, fields in entries:
                self.learn(VerticalFeedback.model_validate_json(fields[b"json"]))
                self.client.xack(FEEDBACK_STREAM, GROUP, entry_id)
                done += 1
            block_ms = None  # after the first wait, take what is there and return

    def learn(self, feedback: VerticalFeedback) -> None:
        collection, pid = self.collection(), post_point_id(feedback.post_id)
        vectors = self.store.dense_vectors(collection, [pid])
        if pid not in vectors:
            log.info("corrected post is no longer indexed: nothing to learn", post_id=feedback.post_id)
            FEEDBACK_APPLIED.labels(outcome="post_gone").inc()
            return
        vector = np.asarray(vectors[pid], dtype=np.float32)
        [post] = self.store.retrieve(collection, [pid])
        stored = payload_fields(post.payload)
        relabels = self.teach(feedback, stored, vector, collection, pid) if feedback.teaches else []
        correction = PostCorrection(
            post_id=feedback.post_id, account_id=stored.get("account_id", feedback.account_id or 0),
            taxonomy=feedback.taxonomy, taxonomy_version=self.labeller.versions().get(feedback.taxonomy, "1"),
            vertical=feedback.vertical, correct_vertical=feedback.correct_vertical)
        self.publish([correction, *relabels])
        FEEDBACK_APPLIED.labels(outcome="learned" if feedback.teaches else "post_only").inc()
        log.info("correction learned", post_id=feedback.post_id, taxonomy=feedback.taxonomy, tenant=feedback.tenant,
                 wrong=feedback.vertical, right=feedback.correct_vertical, relabelled=len(relabels))

    def teach(self, feedback: VerticalFeedback, payload: dict, vector: np.ndarray, collection: str,
              pid: str) -> list[PostRelabel]:
        """Tier 1 learns from the correction (examples, "not X" for the text); returns the new labels of the
        neighbours the corrector may see."""
        self.fewshot.remove(feedback.taxonomy, feedback.vertical, feedback.post_id)
        text_hash = payload.get("content_hash")
        if text_hash:
            self.fewshot.add_negative(feedback.taxonomy, feedback.vertical, feedback.post_id, text_hash)
        if feedback.correct_vertical is not None:
            self.fewshot.add(feedback.taxonomy, feedback.correct_vertical, feedback.post_id, vector,
                             at_ms=feedback.created_at_ms)
            if text_hash:
                self.fewshot.remove_negative(feedback.taxonomy, feedback.correct_vertical, text_hash)
        self.labeller.refresh()
        return self.relabel_neighbours(collection, vector, exclude=pid, scope=feedback.data_scope)

    def relabel_neighbours(self, collection: str, vector: np.ndarray, exclude: str,
                           scope: DataScope | None = None) -> list[PostRelabel]:
        """New tier-1 labels of the posts nearest the corrected one (applied by the indexer), among the posts
        ``scope`` sees (a tenant's correction never relabels another tenant's posts)."""
        visible = SearchFilter(tenant_account_id=scope.account_ids, tenant_platform=scope.platforms) if scope else None
        hits = [h for h in self.store.search(collection, vector, limit=NEIGHBOURS + 1, flt=visible) if h.id != exclude]
        if not hits:
            return []
        vectors = self.store.dense_vectors(collection, [h.id for h in hits])
        posts = {h.id: payload_fields(h.payload) for h in hits}
        hits = [h for h in hits if h.id in vectors and isinstance(posts[h.id].get("post_id"), int)
                and isinstance(posts[h.id].get("account_id"), int) and posts[h.id].get("content_hash")]
        fresh = self.labeller.labels(np.asarray([vectors[h.id] for h in hits], dtype=np.float32),
                                     [posts[h.id]["content_hash"] for h in hits])
        return [PostRelabel(post_id=posts[hit.id]["post_id"], account_id=posts[hit.id]["account_id"],
                            content_hash=posts[hit.id]["content_hash"], labels=labels)
                for hit, labels in zip(hits, fresh, strict=True)]

    def _ensure_group(self) -> None:
        try:
            self.client.xgroup_create(FEEDBACK_STREAM, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


def start_feedback_learner(client: redis.Redis, store: VectorStore, collection: Callable[[], str],
                           labeller: TierOneLabeller, publish: LabelEvents, stop: threading.Event) -> threading.Thread:
    learner = FeedbackLearner(client, store, collection, labeller, FewShotStore(client), publish)
    thread = threading.Thread(target=learner.run, args=(stop,), name="feedback-learner", daemon=True)
    thread.start()
    return thread

