"""People's label corrections flow back into tier 1, and the posts they affect are relabelled.

``POST /v1/feedback`` appends a correction to a Redis stream. The learner reads it with a consumer
group (at least once: an entry is acknowledged only after everything below is done, and every
step is idempotent):

1. the corrected post's vector becomes a few-shot example of the right vertical, and stops being
   one of the wrong vertical (``FewShotStore``), so tier 1 everywhere rebuilds within seconds;
2. the post itself shows what the person said at once (tier "human": neither tier 1 nor an LLM
   overrides it while the text stays the same);
3. its nearest neighbours, the posts a new example can change, are labelled again by the updated
   tier 1. A full reprocess of everything is a replay (``make replay ARGS="--stage index"``).

It needs the post vectors, so it runs where the vector store is: in the query process with the
in-process engine (like the indexer), or beside the indexer with a Qdrant server.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import numpy as np
import redis

from services.indexer.core import keep_second_opinions, post_point_id, replace_taxonomy_labels, stored_labels
from shared.feedback import FEEDBACK_STREAM, VerticalFeedback
from shared.fewshot import FewShotStore
from shared.labelling import Tier1Labeller
from shared.logging import get_logger
from shared.metrics import FEEDBACK_APPLIED
from shared.taxonomy import VerticalLabel, verticals_payload
from shared.vectorstore import VectorStore

log = get_logger("feedback")
GROUP = "feedback-learner"
NEIGHBOURS = 200  # posts relabelled around each correction: those a new example can plausibly move
BLOCK_MS = 1000  # a stream read waits this long for news: under the Redis client's 2 s socket timeout


def apply_correction(labels: Sequence[VerticalLabel], feedback: VerticalFeedback, version: str) -> list[VerticalLabel]:
    """The post's labels after a person said ``vertical`` is wrong (and maybe what is right): the wrong
    one goes, the right one is added as the person's; the taxonomy's other labels stay."""
    dropped = {feedback.vertical, feedback.correct_vertical}
    kept = [label for label in labels if label.taxonomy == feedback.taxonomy and label.vertical not in dropped]
    if feedback.correct_vertical is not None:
        kept.append(VerticalLabel(taxonomy=feedback.taxonomy, vertical=feedback.correct_vertical, confidence=1.0,
                                  version=version, tier="human"))
    return replace_taxonomy_labels(labels, feedback.taxonomy, kept)


class FeedbackLearner:
    def __init__(self, client: redis.Redis, store: VectorStore, collection: Callable[[], str],
                 labeller: Tier1Labeller, fewshot: FewShotStore, *, consumer: str = "learner-1") -> None:
        self.client = client
        self.store = store
        self.collection = collection  # the active posts version, read per correction
        self.labeller = labeller
        self.fewshot = fewshot
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
        self.fewshot.remove(feedback.taxonomy, feedback.vertical, feedback.post_id)
        if feedback.correct_vertical is not None:
            self.fewshot.add(feedback.taxonomy, feedback.correct_vertical, feedback.post_id, vector,
                             at_ms=feedback.created_at_ms)
        self.labeller.refresh()
        version = self.labeller.versions().get(feedback.taxonomy, "1")
        [post] = self.store.retrieve(collection, [pid])
        self.store.set_payloads(collection, {pid: verticals_payload(apply_correction(
            stored_labels(post.payload), feedback, version))})
        relabelled = self.relabel_neighbours(collection, vector, exclude=pid)
        FEEDBACK_APPLIED.labels(outcome="learned").inc()
        log.info("correction learned", post_id=feedback.post_id, taxonomy=feedback.taxonomy,
                 wrong=feedback.vertical, right=feedback.correct_vertical, relabelled=relabelled)

    def relabel_neighbours(self, collection: str, vector: np.ndarray, exclude: str) -> int:
        hits = [h for h in self.store.search(collection, vector, limit=NEIGHBOURS + 1) if h.id != exclude]
        if not hits:
            return 0
        vectors = self.store.dense_vectors(collection, [h.id for h in hits])
        hits = [h for h in hits if h.id in vectors]
        fresh = self.labeller.labels(np.asarray([vectors[h.id] for h in hits], dtype=np.float32))
        versions = self.labeller.versions()
        patches = {hit.id: verticals_payload(keep_second_opinions(labels, stored_labels(hit.payload), versions))
                   for hit, labels in zip(hits, fresh, strict=True)}
        self.store.set_payloads(collection, patches)
        return len(patches)

    def _ensure_group(self) -> None:
        try:
            self.client.xgroup_create(FEEDBACK_STREAM, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


def start_feedback_learner(client: redis.Redis, store: VectorStore, collection: Callable[[], str],
                           labeller: Tier1Labeller, stop: threading.Event) -> threading.Thread:
    learner = FeedbackLearner(client, store, collection, labeller, FewShotStore(client))
    thread = threading.Thread(target=learner.run, args=(stop,), name="feedback-learner", daemon=True)
    thread.start()
    return thread

