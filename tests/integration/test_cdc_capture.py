"""The cdc reader against a real MariaDB binlog and the real broker."""

from __future__ import annotations

import itertools
import threading
import time

import orjson
import pymysql
import pytest
from confluent_kafka import Consumer, Producer

from devstack.processes import apply_schema
from services.cdc.capture import ChangeCapture, Checkpoint
from shared.config import KafkaSettings, MariaDBSettings, dlq_topic
from shared.events import GTID_ORDER, SourcePosition, incremental_snapshot_signal, parse_change_event
from shared.kafka import ensure_topics, make_consumer, make_producer
from tests.conftest import wait_for

_run = itertools.count()


class CaptureRun:
    """One cdc reader in a thread, with its own database and topic prefix."""

    def __init__(self, infra, tmp_path, name: str) -> None:
        port = infra.config.mariadb_port
        self.database = name
        self.mariadb = MariaDBSettings(mariadb_port=port, mariadb_database=name)
        self.kafka = KafkaSettings(kafka_bootstrap_servers=f"127.0.0.1:{infra.config.broker_port}",
                                   topic_prefix=name, source_database=name)
        self.checkpoint = Checkpoint(tmp_path / "checkpoint.json")
        apply_schema(port, name)
        ensure_topics(self.kafka, [self.kafka.posts_topic, self.kafka.accounts_topic, self.kafka.signal_topic])
        self.reader = Consumer({"bootstrap.servers": self.kafka.kafka_bootstrap_servers, "group.id": f"{name}-reader",
                                "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
        self.reader.subscribe([self.kafka.posts_topic])
        self.thread: threading.Thread | None = None

    def sql(self, statement: str, params: tuple = ()) -> None:
        connection = pymysql.connect(**self.mariadb.connect_kwargs(), autocommit=True)
        try:
            with connection.cursor() as cursor:
                cursor.execute(statement, params)
        finally:
            connection.close()

    def insert_post(self, post_id: int, account_id: int = 1, title: str = "t") -> None:
        self.sql("INSERT INTO posts VALUES (%s, %s, 'youtube', %s, 'd', NULL, '2024-05-01 10:00:00.250', 1, 1, 1,"
                 " UTC_TIMESTAMP(3))", (post_id, account_id, title))

    def start(self) -> None:
        self.stop_event = threading.Event()
        consumer = make_consumer(self.kafka, f"{self.database}-signals")
        consumer.subscribe([self.kafka.signal_topic])
        self.capture = ChangeCapture(mariadb=self.mariadb, kafka=self.kafka, producer=make_producer(self.kafka),
                                     signals=consumer, checkpoint=self.checkpoint, tables=("accounts", "posts"),
                                     server_id=6000 + next(_run), stop=self.stop_event)
        self.thread = threading.Thread(target=self.capture.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=20)
        assert not self.thread.is_alive()

    def read(self, count: int, timeout: float = 30) -> list[tuple[int, dict | None]]:
        """The next ``count`` records of the posts topic as (key id, value or None)."""
        records: list = []
        deadline = time.monotonic() + timeout
        while len(records) < count and time.monotonic() < deadline:
            for message in self.reader.consume(100, 0.3):
                if message.error() is None:
                    value = orjson.loads(message.value()) if message.value() is not None else None
                    records.append((orjson.loads(message.key())["id"], value))
        assert len(records) == count, f"expected {count} records, got {len(records)}: {records}"
        return records

    def assert_quiet(self, seconds: float = 2.0) -> None:
        extra = [m for m in self.reader.consume(100, seconds) if m.error() is None]
        assert extra == [], [m.value() for m in extra]


@pytest.fixture
def capture(infra, tmp_path, request):
    run = CaptureRun(infra, tmp_path, name=f"cdc{request.node.name[-12:].lower().replace('_', '')}{next(_run)}")
    yield run
    if run.thread and run.thread.is_alive():
        run.stop()
    run.reader.close()


def test_snapshot_then_stream_in_debezium_format(capture):
    capture.insert_post(1, title="before start")
    capture.start()
    [(key, snapshot)] = capture.read(1)
    assert key == 1 and snapshot["op"] == "r" and snapshot["source"]["snapshot"] == "true"
    assert snapshot["after"]["published_at"] == 1714557600250  # DATETIME(3) as epoch ms (UTC)

    capture.insert_post(2, title="new")
    capture.sql("UPDATE posts SET title = 'renamed' WHERE id = 2")
    capture.sql("DELETE FROM posts WHERE id = 1")
    records = capture.read(4)
    assert [(k, v and v["op"]) for k, v in records] == [(2, "c"), (2, "u"), (1, "d"), (1, None)]
    update = parse_change_event(orjson.dumps(records[1][1]))
    assert (update.before["title"], update.after["title"]) == ("new", "renamed")
    assert update.source.gtid and update.source.file.startswith("mariadb-bin") and update.source.pos > 0
    # The order keys from the real binlog: GTID keys, the snapshot row before the changes streamed after it.
    keys = [SourcePosition.of(parse_change_event(orjson.dumps(v)).source).order_key() for v in
            [snapshot, *(v for _, v in records if v)]]
    assert all(key[0] == GTID_ORDER for key in keys) and keys == sorted(keys) and len(set(map(tuple, keys))) == 4
    assert records[2][1]["before"]["id"] == 1 and records[2][1]["after"] is None


def test_restart_resumes_from_the_checkpoint_without_loss_or_snapshot(capture):
    capture.start()
    capture.insert_post(1)
    capture.read(1)
    wait_for(lambda: capture.checkpoint.load() and capture.checkpoint.load().gtid, timeout=10, what="checkpoint")
    capture.stop()
    for post_id in range(2, 12):  # written while cdc is down
        capture.insert_post(post_id)
    capture.start()
    records = capture.read(10)
    assert [k for k, _ in records] == list(range(2, 12))
    assert {v["op"] for _, v in records} == {"c"}  # streamed, not a second snapshot
    capture.assert_quiet()


def test_incremental_snapshot_signal_re_emits_only_the_requested_rows(capture):
    capture.start()
    for post_id, account_id in [(1, 7), (2, 7), (3, 8)]:
        capture.insert_post(post_id, account_id=account_id)
    capture.read(3)
    producer = Producer({"bootstrap.servers": capture.kafka.kafka_bootstrap_servers})
    producer.produce(capture.kafka.signal_topic, key=capture.database.encode(),
                     value=incremental_snapshot_signal(capture.database, "posts", "account_id", [7]))
    producer.flush(10)
    records = capture.read(2)
    assert sorted(k for k, _ in records) == [1, 2]
    assert {(v["op"], v["source"]["snapshot"]) for _, v in records} == {("r", "incremental")}
    capture.assert_quiet()


def test_a_malformed_signal_is_dead_lettered_and_cdc_keeps_streaming(capture):
    collection = f"{capture.database}.posts"
    bad = [
        {"type": "execute-snapshot", "data": {"data-collections": [collection], "additional-conditions": ["x"]}},
        {"type": "execute-snapshot", "data": {"data-collections": [42]}},
        {"type": "execute-snapshot", "data": {"data-collections": [collection], "additional-conditions": [
            {"data-collection": collection, "filter": "no_such_column IN (1)"}]}},
    ]
    capture.start()
    capture.insert_post(1, account_id=7)
    capture.read(1)
    producer = Producer({"bootstrap.servers": capture.kafka.kafka_bootstrap_servers})
    for signal in bad:
        producer.produce(capture.kafka.signal_topic, key=capture.database.encode(), value=orjson.dumps(signal))
    producer.produce(capture.kafka.signal_topic, key=capture.database.encode(),
                     value=incremental_snapshot_signal(capture.database, "posts", "account_id", [7]))
    producer.flush(10)
    [(key, snapshot)] = capture.read(1)  # the good signal after the bad ones is served
    assert key == 1 and snapshot["source"]["snapshot"] == "incremental"
    capture.insert_post(2)  # and the binlog is still streamed
    assert [k for k, _ in capture.read(1)] == [2]
    assert capture.thread.is_alive()

    dlq = Consumer({"bootstrap.servers": capture.kafka.kafka_bootstrap_servers, "group.id": f"{capture.database}-dlq",
                    "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
    dlq.subscribe([dlq_topic(capture.kafka.signal_topic)])
    letters: list = []
    deadline = time.monotonic() + 20
    while len(letters) < 3 and time.monotonic() < deadline:
        letters += [m for m in dlq.consume(10, 0.5) if m.error() is None]
    dlq.close()
    assert [orjson.loads(m.value()) for m in letters] == bad
    reasons = [dict(m.headers())["dlq.error.message"].decode() for m in letters]
    assert "additional-conditions" in reasons[0] and "42" in reasons[1] and "no_such_column" in reasons[2], reasons
    assert {dict(m.headers())["dlq.error.class"] for m in letters} == {b"InvalidSignal"}

    capture.stop()  # the bad signals were committed: a restart serves nothing again and streams on
    capture.start()
    capture.insert_post(3)
    assert [k for k, _ in capture.read(1)] == [3]
    capture.assert_quiet()
