"""Newly viable accounts leave as batched execute-snapshot signals, small enough at the field's scale.

Upstream facts (Debezium, debezium-core AbstractIncrementalSnapshotContext): while an incremental snapshot
runs, every offset record carries `incremental_snapshot_collections`, a JSON string of the list of pending
snapshots, one object per signalled data collection {"incremental_snapshot_collections_id",
"incremental_snapshot_collections_additional_condition", "incremental_snapshot_collections_surrogate_key"};
signals append to that queue. Kafka's default message.max.bytes / max.request.size is 1 MB (1,048,576 B),
which an offset record must stay under. Field scale (PRODUCT.md, docs/capacity.md): 3,300 viable accounts.
"""

from __future__ import annotations

import json
import math
import time

import orjson
import redis
from confluent_kafka import Consumer

from services.cdc.core import parse_snapshot_signal
from services.viability.main import ViabilitySettings
from services.viability.signals import SIGNAL_MAX_BYTES, PendingSnapshots, SignalSender, snapshot_signals
from shared.config import KafkaSettings
from shared.kafka import ensure_topics, make_producer

VIABLE_ACCOUNTS = 3_300
# Worst case for the size: BIGINT ids of 19 digits (accounts.id is BIGINT, db/schema.sql).
ACCOUNT_IDS = [9_223_372_036_854_000_000 + i for i in range(VIABLE_ACCOUNTS)]
KAFKA_MESSAGE_LIMIT = 1_048_576
OFFSET_BUDGET = KAFKA_MESSAGE_LIMIT // 8  # leave the limit far away, whatever else the offset holds


def debezium_offset_bytes(signals: list[bytes]) -> int:
    """Size of one connector offset record with every signal still queued, as Debezium stores it."""
    queue = []
    for value in signals:
        data = orjson.loads(value)["data"]
        conditions = {c["data-collection"]: c["filter"] for c in data.get("additional-conditions", [])}
        queue += [{"incremental_snapshot_collections_id": name,
                   "incremental_snapshot_collections_additional_condition": conditions.get(name),
                   "incremental_snapshot_collections_surrogate_key": None} for name in data["data-collections"]]
    offset = {"file": "mysql-bin.000123", "pos": 123456789, "gtids": "0-1-123456789", "row": 1, "event": 2,
              "incremental_snapshot_collections": json.dumps(queue, separators=(",", ":")),
              "incremental_snapshot_primary_key": "ac" * 200, "incremental_snapshot_maximum_key": "ac" * 200,
              "incremental_snapshot_correlation_id": None}
    return len(json.dumps(offset, separators=(",", ":")).encode())


def test_largest_signal_and_offset_at_3300_viable_accounts():
    kafka = KafkaSettings()
    batch = ViabilitySettings().viability_snapshot_accounts
    signals = snapshot_signals(kafka, ACCOUNT_IDS, batch)
    values = [s.value for s in signals]
    assert len(signals) == math.ceil(VIABLE_ACCOUNTS / batch)
    largest = max(map(len, values))
    offset = debezium_offset_bytes(values)
    print(f"{len(signals)} signals, largest {largest} B, offset with all pending {offset} B")
    assert largest <= SIGNAL_MAX_BYTES
    assert offset <= OFFSET_BUDGET, f"offset record {offset} B with every signal pending"
    # Keyed for Debezium (its topic.prefix), and the local cdc serves every one of them.
    assert {s.key for s in signals} == {kafka.topic_prefix.encode()}
    served = [v for value in values
              for request in parse_snapshot_signal(value, database=kafka.source_database, tables={"posts"})
              for v in request.values]
    assert sorted(served) == ACCOUNT_IDS


def test_pending_accounts_leave_as_bounded_signals(infra):
    kafka = KafkaSettings(kafka_bootstrap_servers=f"127.0.0.1:{infra.config.broker_port}", topic_prefix="i13signals")
    ensure_topics(kafka, [kafka.signal_topic])
    client = redis.Redis(host="127.0.0.1", port=infra.config.redis_port)
    pending = PendingSnapshots(client, "i13signals")
    client.delete(pending.key)
    sender = SignalSender(kafka, pending, make_producer(kafka), max_accounts=500, max_wait_s=5)
    now = int(time.time() * 1000)
    # A backfill: accounts turn viable a few per batch.
    for start in range(0, VIABLE_ACCOUNTS, 7):
        pending.add(ACCOUNT_IDS[start:start + 7], now)
    assert sender.send_due(now) == 3_000, "six full signals go at once, the rest waits to fill up"
    assert len(pending) == 300
    assert sender.send_due(now + 1_000) == 0
    assert sender.send_due(now + 5_000) == 300, "the rest goes when the oldest waited max_wait_s"
    consumer = Consumer({"bootstrap.servers": kafka.kafka_bootstrap_servers, "group.id": "i13signals-reader",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([kafka.signal_topic])
    values, deadline = [], time.monotonic() + 30
    while len(values) < 7 and time.monotonic() < deadline:
        values += [m.value() for m in consumer.consume(10, 1) if m.error() is None]
    consumer.close()
    requests = [parse_snapshot_signal(v, database=kafka.source_database, tables={"posts"}) for v in values]
    assert [len(r.values) for (r,) in requests] == [500] * 6 + [300]
    assert sorted(v for (r,) in requests for v in r.values) == ACCOUNT_IDS
    assert len(pending) == 0
