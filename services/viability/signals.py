"""Snapshot requests -> Debezium ``execute-snapshot`` signals, batched with a bound.

Why batch: Debezium keeps every pending incremental snapshot in the connector's offsets. Each signal
becomes one entry of the offset field ``incremental_snapshot_collections`` (a JSON list of
{id, additional_condition, surrogate_key}), and that whole list is written with every offset record
until the queue drains. One signal per newly viable account made a backfill (3,300 viable accounts)
grow every offset record towards Kafka's 1 MB default message limit. Here newly viable accounts wait
in Redis (at most VIABILITY_SNAPSHOT_WAIT_S) and leave as signals of at most
VIABILITY_SNAPSHOT_ACCOUNTS accounts each, so the queue holds ceil(N / that) entries.

The pending set is viability state (namespace ``<ns>:viability:``, deleted with a dropped replay's):
accounts are added once their batch's outputs are durable, removed only after their signal is
acknowledged by the broker. A crash in between sends a signal twice, which re-reads the same rows
(idempotent downstream); nothing is lost.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence

import redis
from confluent_kafka import Producer

from shared.config import KafkaSettings
from shared.events import incremental_snapshot_signal
from shared.kafka import OutboundMessage, produce_all
from shared.logging import get_logger

log = get_logger("viability.signals")

# Debezium's Kafka signal channel reads the signal topic with the default consumer limits and the
# connector's producer writes offsets with max.request.size 1 MB: keep any signal far below that.
SIGNAL_MAX_BYTES = 64 * 1024


def snapshot_signals(kafka: KafkaSettings, ids: Sequence[int], max_per_signal: int,
                     column: str = "account_id") -> list[OutboundMessage]:
    """Signals asking for the posts with ``column IN ids`` (the posts of accounts, or single posts by
    ``id``), at most max_per_signal ids each.

    The key is Debezium's topic.prefix: its Kafka channel acts only on signals keyed so."""
    ordered = sorted(set(ids))
    signals = []
    for start in range(0, len(ordered), max_per_signal):
        value = incremental_snapshot_signal(kafka.source_database, "posts", column,
                                            ordered[start:start + max_per_signal])
        if len(value) > SIGNAL_MAX_BYTES:
            raise ValueError(f"a signal of {max_per_signal} ids is {len(value)} bytes (> {SIGNAL_MAX_BYTES}): "
                             "lower VIABILITY_SNAPSHOT_ACCOUNTS")
        signals.append(OutboundMessage(kafka.signal_topic, kafka.topic_prefix.encode(), value))
    return signals


class PendingSnapshots:
    """Newly viable accounts waiting for their snapshot signal (a Redis sorted set, score = first seen)."""

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.client = client
        self.key = f"{namespace}:viability:snapshot-pending"

    def add(self, account_ids: Iterable[int], now_ms: int) -> None:
        members = {str(int(a)): now_ms for a in account_ids}
        if members:
            self.client.zadd(self.key, members, nx=True)  # nx: a retried batch keeps the first time

    def due(self, now_ms: int, max_accounts: int, max_wait_ms: int) -> list[int]:
        """Up to max_accounts oldest accounts, if that many wait or the oldest waited max_wait_ms."""
        oldest = self.client.zrange(self.key, 0, 0, withscores=True)
        if not oldest:
            return []
        if self.client.zcard(self.key) < max_accounts and now_ms - oldest[0][1] < max_wait_ms:
            return []
        return [int(member) for member in self.client.zrange(self.key, 0, max_accounts - 1)]

    def remove(self, account_ids: Iterable[int]) -> None:
        members = [str(int(a)) for a in account_ids]
        if members:
            self.client.zrem(self.key, *members)

    def __len__(self) -> int:
        return int(self.client.zcard(self.key))


class SignalSender:
    """Turns pending accounts into signals: one signal per max_accounts, at least every max_wait_s."""

    def __init__(self, kafka: KafkaSettings, pending: PendingSnapshots, producer: Producer, *,
                 max_accounts: int, max_wait_s: float) -> None:
        self.kafka = kafka
        self.pending = pending
        self.producer = producer
        self.max_accounts = max_accounts
        self.max_wait_ms = int(max_wait_s * 1000)

    def send_due(self, now_ms: int | None = None) -> int:
        """Send every signal that is due; returns how many accounts they asked for."""
        sent = 0
        while True:
            due = self.pending.due(int(time.time() * 1000) if now_ms is None else now_ms,
                                   self.max_accounts, self.max_wait_ms)
            if not due:
                return sent
            produce_all(self.producer, snapshot_signals(self.kafka, due, self.max_accounts))
            self.pending.remove(due)
            sent += len(due)
            log.info("snapshot signal sent", accounts=len(due), pending=len(self.pending))

    def run(self, stop: threading.Event, poll_s: float = 0.5) -> None:
        while not stop.is_set():
            try:
                self.send_due()
            except Exception as exc:  # Redis or Kafka down: the accounts stay pending, try again
                log.warning("snapshot signals not sent", error=repr(exc)[:300])
            stop.wait(poll_s)

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stop,), name="viability-signals", daemon=True)
        thread.start()
        return thread
