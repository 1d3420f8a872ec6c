"""A redriven dead letter is an old event arriving late: it must not undo a newer delete or purge.

The live indexer loop against the real broker and edge engine; the old events go back onto the
topic the way an operator sends them, through ``ops.dlq redrive``.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from confluent_kafka import Consumer, TopicPartition

from ops.dlq import read_dead_letters, redrive, select
from services.indexer.core import post_point_id
from services.indexer.service import indexer_loop
from shared.config import KafkaSettings, dlq_topic
from shared.events import (
    AccountFields,
    AccountPurge,
    EmbeddedPostUpsert,
    PostDelete,
    PostRecord,
    PostUpsert,
    SourcePosition,
    account_key,
    encode,
)
from shared.kafka import OutboundMessage, ensure_topics, make_producer, produce_all
from shared.stored_post import payload_fields
from shared.vectorstore import EdgeVectorStore
from tests.conftest import wait_for


def at(sequence: int, *, snapshot: bool = False) -> SourcePosition:
    return SourcePosition(ts_ms=1, file="mariadb-bin.000001", pos=100 + sequence, gtid=f"0-1-{sequence}",
                          snapshot=snapshot)


def upsert(post_id: int, account_id: int, title: str, position: SourcePosition) -> EmbeddedPostUpsert:
    post = PostRecord(id=post_id, account_id=account_id, platform="x", title=title, published_at=1)
    vector = np.random.default_rng(post_id).standard_normal(384).astype("float32")
    return EmbeddedPostUpsert.build(PostUpsert(post=post, account=AccountFields(handle="h"), position=position),
                                    "m", vector / np.linalg.norm(vector))


class LiveIndexer:
    def __init__(self, infra, tmp_path) -> None:
        self.kafka = KafkaSettings(kafka_bootstrap_servers=f"127.0.0.1:{infra.config.broker_port}", topic_partitions=1)
        self.topic, self.group = f"redrive-embedded-{time.time_ns()}", f"redrive-indexer-{time.time_ns()}"
        ensure_topics(self.kafka, [self.topic, dlq_topic(self.topic)])
        self.store = EdgeVectorStore(tmp_path / "edge")
        self.stop = threading.Event()
        self.loop = indexer_loop(self.kafka, self.store, "posts", self.stop, group=self.group, topic=self.topic)
        self.thread = threading.Thread(target=self.loop.run, daemon=True)
        self.thread.start()
        self.producer = make_producer(self.kafka)
        self.sent = 0

    def send(self, *events) -> None:
        produce_all(self.producer, [OutboundMessage(self.topic, account_key(e.account_id if not isinstance(
            e, EmbeddedPostUpsert) else e.post.account_id), encode(e)) for e in events])
        self.sent += len(events)
        self.wait_applied()

    def dead_letter(self, event) -> None:
        """As if ``event`` had failed once and been dead-lettered by the indexer, long ago."""
        produce_all(self.producer, [OutboundMessage(dlq_topic(self.topic), b"k", encode(event), [
            ("dlq.service", b"indexer"), ("dlq.topic", self.topic.encode()), ("dlq.offset", b"0"),
            ("dlq.error.class", b"StoreUnavailable"), ("dlq.error.message", b"store was down")])])

    def redrive_all(self) -> None:
        records = select(read_dead_letters(self.kafka, self.topic), error_class=None, from_offset=None, to_offset=None)
        self.sent += redrive(self.kafka, records)
        self.wait_applied()

    def wait_applied(self) -> None:
        reader = Consumer({"bootstrap.servers": self.kafka.kafka_bootstrap_servers, "group.id": self.group})
        try:
            wait_for(lambda: reader.committed([TopicPartition(self.topic, 0)], timeout=5)[0].offset >= self.sent,
                     timeout=30, what=f"the indexer past offset {self.sent}")
        finally:
            reader.close()

    def titles(self) -> dict[int, str]:
        posts = [payload_fields(p.payload) for p in self.store.retrieve("posts", [post_point_id(i) for i in range(1, 100)])]
        return {post["post_id"]: post["title"] for post in posts}

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=20)
        self.store.close()


@pytest.fixture
def live(infra, tmp_path):
    indexer = LiveIndexer(infra, tmp_path)
    yield indexer
    indexer.close()


def test_a_redriven_old_upsert_does_not_bring_a_deleted_post_back(live):
    old = upsert(1, 7, "first version", at(10))
    live.dead_letter(old)  # failed once; meanwhile the post was written again and deleted
    live.send(upsert(1, 7, "second version", at(11)), upsert(2, 7, "neighbour", at(12)))
    live.send(PostDelete(post_id=1, account_id=7, position=at(13)))
    assert live.titles() == {2: "neighbour"}
    live.redrive_all()
    assert live.titles() == {2: "neighbour"}
    live.send(upsert(1, 7, "written again later", at(14)))  # a newer change still comes through
    assert live.titles() == {1: "written again later", 2: "neighbour"}


def test_a_redriven_old_purge_does_not_wipe_an_account_that_is_viable_again(live):
    live.send(upsert(3, 8, "before the purge", at(20)), upsert(4, 9, "another account", at(21)))
    purge = AccountPurge(account_id=8, reason="not viable", position=at(22))
    live.send(purge)
    assert live.titles() == {4: "another account"}
    live.dead_letter(purge)  # the same purge, dead-lettered once and redriven after the account is back
    live.send(upsert(3, 8, "re-snapshotted", at(24, snapshot=True)), upsert(5, 8, "new post", at(25)))
    live.redrive_all()
    assert live.titles() == {3: "re-snapshotted", 4: "another account", 5: "new post"}
    live.send(upsert(6, 8, "older than the purge, redelivered", at(21)))  # an old upsert after the purge
    assert 6 not in live.titles()
