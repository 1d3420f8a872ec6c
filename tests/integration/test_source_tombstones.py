"""A delete known only by its tombstone reaches the viability output (the indexer's input).

Upstream facts: with tombstones.on.delete=true (the connector config) Debezium follows a row's delete
event (`op: "d"`) with a tombstone: same key (the row's primary key, `{"id": ...}`), null value. Kafka's
log compaction keeps only the latest record per key, so once the segment is compacted only the tombstone
of a deleted row is left (and it too goes delete.retention.ms after that). A consumer that was down
longer than the compaction lag therefore sees a tombstone and nothing else of the delete.
"""

from __future__ import annotations

import threading
import time

import orjson
import redis
from confluent_kafka import Consumer

from services.viability.core import ViabilityRules
from services.viability.main import viability_loop
from shared.config import KafkaSettings
from shared.health import Heartbeat
from shared.kafka import OutboundMessage, ensure_topics, make_producer, produce_all


def row_event(table: str, row: dict, op: str = "c") -> bytes:
    return orjson.dumps({"before": None, "after": row, "op": op, "ts_ms": 1,
                         "source": {"ts_ms": 1, "db": "influential", "table": table, "file": "mysql-bin.000001",
                                    "pos": 4}})


def account(account_id: int) -> dict:
    return {"id": account_id, "platform": "youtube", "handle": f"h{account_id}", "followers": 50_000}


def post(post_id: int, account_id: int) -> dict:
    return {"id": post_id, "account_id": account_id, "platform": "youtube", "title": f"post {post_id}",
            "description": "d", "published_at": int(time.time() * 1000)}


def key(row_id: int) -> bytes:
    return orjson.dumps({"id": row_id})  # Debezium's key: the primary key (JsonConverter, schemas off)


def test_tombstone_only_deletes_reach_the_viability_output(infra):
    kafka = KafkaSettings(kafka_bootstrap_servers=f"127.0.0.1:{infra.config.broker_port}",
                          topic_prefix=f"i13tomb{int(time.time())}")
    output = kafka.viable_posts_topic
    ensure_topics(kafka, [kafka.accounts_topic, kafka.posts_topic, output])
    rows = [
        OutboundMessage(kafka.accounts_topic, key(1), row_event("accounts", account(1))),
        OutboundMessage(kafka.accounts_topic, key(2), row_event("accounts", account(2))),
        *[OutboundMessage(kafka.posts_topic, key(p), row_event("posts", post(p, 1))) for p in (11, 12)],
        OutboundMessage(kafka.posts_topic, key(21), row_event("posts", post(21, 2))),
    ]
    tombstones = [
        # Compacted: the delete events are gone, only the tombstones are left.
        OutboundMessage(kafka.posts_topic, key(11), None),
        OutboundMessage(kafka.accounts_topic, key(2), None),
        # A post nobody knows (its delete was handled long ago): nothing to do.
        OutboundMessage(kafka.posts_topic, key(99), None),
    ]
    producer = make_producer(kafka)
    produce_all(producer, rows)
    client = redis.Redis(host="127.0.0.1", port=infra.config.redis_port)
    stop = threading.Event()
    loop = viability_loop(kafka, client, ViabilityRules(min_followers=1, min_posts=1, active_within_days=30),
                          namespace=kafka.topic_prefix, group=f"{kafka.topic_prefix}-viability", output_topic=output,
                          stop=stop, heartbeat=Heartbeat())
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    events = []
    consumer = Consumer({"bootstrap.servers": kafka.kafka_bootstrap_servers, "group.id": f"{kafka.topic_prefix}-r",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([output])

    def read_until(done) -> None:
        deadline = time.monotonic() + 120  # a new consumer group's first join can take a while here
        while time.monotonic() < deadline and not done():
            events.extend(orjson.loads(m.value()) for m in consumer.consume(50, 0.5) if m.error() is None)

    try:
        # Both accounts viable and indexed first (the two topics have no order between them).
        read_until(lambda: {e["post"]["id"] for e in events if e["kind"] == "post.upsert"} == {11, 12, 21})
        produce_all(producer, tombstones)
        read_until(lambda: any(e["kind"] == "account.purge" for e in events))
    finally:
        consumer.close()
        stop.set()
        thread.join(timeout=30)
    kinds = [(e["kind"], e.get("post_id") or e.get("post", {}).get("id") or e.get("account_id")) for e in events]
    assert ("post.delete", 11) in kinds, kinds
    assert ("account.purge", 2) in kinds, kinds
    deletes = [e for e in events if e["kind"] in ("post.delete", "account.purge")]
    assert all(e["position"] is None for e in deletes), "a tombstone has no source position: unversioned"
    assert not any(e["kind"] == "post.delete" and e["post_id"] == 99 for e in events)
    assert next(e for e in deletes if e["kind"] == "post.delete")["account_id"] == 1
