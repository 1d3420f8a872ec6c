"""Kafka adapter: producer/consumer factories, topic creation, dead letters and the batch loop.

Every consuming service runs the same at-least-once loop: take a batch, let the service's pure
core turn it into outputs, make the outputs durable (produce + flush, or a vector store write),
and only then commit the batch's offsets. A message the core cannot parse goes to ``<topic>.dlq``
with its original bytes and the reason in headers; the rest of the batch goes on.

A batch that fails is rewound and retried. If a dependency is down (shared/failures.py) it is
retried with backoff for as long as that takes, and nothing is dead-lettered. If it fails for
any other reason ``poison_attempts`` times in a row, it is split in halves, each processed and
committed in order, until the message(s) that fail alone are found: those are dead-lettered with
the reason and the partition goes on past them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from shared.config import KafkaSettings, TopicSettings, dlq_topic
from shared.failures import is_dependency_unavailable
from shared.health import Heartbeat
from shared.logging import get_logger
from shared.metrics import (
    BATCH_RETRIES,
    DLQ_MESSAGES,
    LAST_BATCH_TS,
    MESSAGES_CONSUMED,
    MESSAGES_PRODUCED,
    POISON_MESSAGES,
)
from shared.retry import backoff_delay

T = TypeVar("T")
log = get_logger(__name__)


@dataclass(frozen=True)
class OutboundMessage:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)


@dataclass(frozen=True)
class DeadLetter:
    """A message that could not be processed, and why."""

    message: Message
    error: Exception


@dataclass
class BatchResult:
    outputs: list[OutboundMessage] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    # Run once the outputs are durable and before the offsets are committed: state that must not
    # run ahead of what downstream has seen (viability's recorded transitions).
    after_durable: list[Callable[[], None]] = field(default_factory=list)

    def parse_each(self, messages: Iterable[Message], parse: Callable[[Message], T]) -> list[T]:
        """What each message parses to; one that does not (a ValueError, which MalformedEvent is)
        becomes a dead letter with the reason, and the rest of the batch goes on."""
        parsed = []
        for message in messages:
            try:
                parsed.append(parse(message))
            except ValueError as exc:
                self.dead_letters.append(DeadLetter(message, exc))
        return parsed


def make_producer(settings: KafkaSettings, **overrides: object) -> Producer:
    config = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "enable.idempotence": True,  # retries never duplicate or reorder within a partition
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "message.max.bytes": 8_000_000,
    }
    config.update(overrides)
    return Producer(config)


def make_consumer(settings: KafkaSettings, group_id: str, **overrides: object) -> Consumer:
    config = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "group.id": group_id,
        "enable.auto.commit": False,  # committed only after the batch's output is durable
        "auto.offset.reset": "earliest",
        "session.timeout.ms": settings.kafka_session_timeout_ms,
        "max.poll.interval.ms": 600_000,  # a slow model batch must not cost a rebalance
        "fetch.message.max.bytes": 8_000_000,
        "fetch.wait.max.ms": settings.kafka_fetch_wait_max_ms,
        # Prefetched messages wait here; with one batch in hand this is all a consumer holds while
        # its output is down and the batch is retried (backpressure instead of a growing backlog).
        "queued.max.messages.kbytes": settings.kafka_fetch_buffer_kbytes,
    }
    config.update(overrides)
    return Consumer(config)


def topic_role(settings: KafkaSettings, topic: str) -> str:
    """source (Debezium's CDC topics), signal (Debezium's signal channel), dlq, or pipeline (the rest,
    a replay's version topics included)."""
    if topic == settings.signal_topic:
        return "signal"
    if topic.endswith(dlq_topic("")):
        return "dlq"
    if topic in (settings.accounts_topic, settings.posts_topic):
        return "source"
    return "pipeline"


def new_topic(settings: KafkaSettings, topic: str, topics: TopicSettings | None = None) -> NewTopic:
    """How a missing topic is created: partitions, replication and config by its role."""
    topics = topics or TopicSettings()
    role = topic_role(settings, topic)
    # Debezium's Kafka signal channel reads partition 0 only: a second partition would lose signals.
    partitions = {"signal": 1, "dlq": topics.kafka_dlq_partitions}.get(role, settings.topic_partitions)
    config = {"min.insync.replicas": str(topics.kafka_topic_min_insync_replicas)}
    if role == "source":  # compacted: a replay from offset 0 is the current state of every row
        config |= {"cleanup.policy": "compact",
                   "delete.retention.ms": str(topics.kafka_source_delete_retention_ms),
                   "max.compaction.lag.ms": str(topics.kafka_source_max_compaction_lag_ms)}
    else:
        retention = topics.kafka_dlq_retention_ms if role == "dlq" else topics.kafka_pipeline_retention_ms
        config |= {"cleanup.policy": "delete", "retention.ms": str(retention)}
    return NewTopic(topic, num_partitions=partitions, replication_factor=topics.kafka_topic_replication_factor,
                    config=config)


def ensure_topics(settings: KafkaSettings, topics: Iterable[str]) -> None:
    """Create missing topics with their role's settings (new_topic); existing ones are left as they are."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    existing = set(admin.list_topics(timeout=10).topics)
    wanted = [t for t in dict.fromkeys(topics) if t not in existing]
    if not wanted:
        return
    futures = admin.create_topics([new_topic(settings, t) for t in wanted])
    for topic, future in futures.items():
        try:
            future.result(timeout=10)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise


class DeliveryTracker:
    """Collects delivery reports so a flush can tell whether everything was written."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.first_error: KafkaError | None = None  # kept whole: its code says whether a retry can help

    def __call__(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.errors.append(f"{msg.topic()}: {err}")
            self.first_error = self.first_error or err


def produce_all(producer: Producer, messages: Sequence[OutboundMessage], *, flush_timeout_s: float = 30) -> None:
    """Produce and wait until every message is acknowledged; raise if any was not."""
    tracker = DeliveryTracker()
    for message in messages:
        _produce_one(producer, message, tracker)
    remaining = producer.flush(flush_timeout_s)
    if tracker.first_error is not None:
        raise KafkaException(tracker.first_error)
    if remaining:
        raise KafkaException(f"{remaining} undelivered after {flush_timeout_s} s")
    for message in messages:
        MESSAGES_PRODUCED.labels(topic=message.topic).inc()


def _produce_one(producer: Producer, message: OutboundMessage, tracker: DeliveryTracker) -> None:
    while True:
        try:
            producer.produce(message.topic, key=message.key, value=message.value,
                             headers=message.headers or None, on_delivery=tracker)
            return
        except BufferError:  # local queue full: let the client drain, then try again
            producer.poll(0.5)


def dead_letter_message(letter: DeadLetter, service: str) -> OutboundMessage:
    """The original bytes plus Kafka Connect-style error headers."""
    original = letter.message
    headers = list(original.headers() or [])
    headers += [
        ("dlq.service", service.encode()),
        ("dlq.topic", str(original.topic()).encode()),
        ("dlq.partition", str(original.partition()).encode()),
        ("dlq.offset", str(original.offset()).encode()),
        ("dlq.error.class", type(letter.error).__name__.encode()),
        ("dlq.error.message", str(letter.error)[:2000].encode("utf-8", "replace")),
        ("dlq.ts_ms", str(int(time.time() * 1000)).encode()),
    ]
    return OutboundMessage(dlq_topic(str(original.topic())), original.key(), original.value(), headers)


BatchHandler = Callable[[list[Message]], BatchResult]


class BatchLoop:
    """consume → handle → produce outputs and dead letters → commit, until stopped.

    A sink (the indexer) writes to its store inside ``handle_batch`` and returns only once the
    write is durable, so the commit that follows never runs ahead of the data.
    """

    def __init__(
        self,
        *,
        service: str,
        settings: KafkaSettings,
        consumer: Consumer,
        producer: Producer,
        topics: Sequence[str],
        handle_batch: BatchHandler,
        stop: threading.Event | None = None,
        heartbeat: Heartbeat | None = None,
        batch_size: int | None = None,
        poison_attempts: int | None = None,
    ) -> None:
        self.service = service
        self.settings = settings
        self.consumer = consumer
        self.producer = producer
        self.topics = list(topics)
        self.handle_batch = handle_batch
        self.stop = stop or threading.Event()
        self.heartbeat = heartbeat or Heartbeat()
        self.batch_size = batch_size or settings.kafka_batch_size  # a sink may want larger ones (the indexer)
        self.poison_attempts = poison_attempts or settings.kafka_poison_attempts
        self._deterministic_failures = 0  # in a row, of the batch at the committed offsets

    def run(self) -> None:
        self.consumer.subscribe(self.topics)
        log.info("consuming", service=self.service, topics=self.topics)
        failures, name = 0, f"{self.service}:{','.join(self.topics)}"
        try:
            while not self.stop.is_set():
                self.heartbeat.beat()
                try:
                    if self.run_once():  # an empty poll right after a rewind proves nothing
                        self.heartbeat.batch_succeeded(name)
                    failures = 0
                except Exception as exc:  # the batch was rewound (run_once): retry it, never skip it
                    failures += 1
                    self.heartbeat.batch_failed(name)
                    delay = backoff_delay(failures)
                    log.error("batch failed, retrying", service=self.service, error=repr(exc)[:500],
                              attempt=failures, retry_in_s=round(delay, 2))
                    self.stop.wait(delay)
        finally:
            self.consumer.close()
            self.producer.flush(10)
            log.info("stopped", service=self.service)

    def run_once(self) -> int:
        messages = self.consumer.consume(self.batch_size, self.settings.kafka_batch_timeout_s)
        messages = [m for m in messages if not self._is_transport_error(m)]
        if not messages:
            return 0
        try:
            self._process(messages)
        except Exception as exc:
            if not self._poison_suspected(exc):
                self._rewind(messages)
                raise
            self._isolate_poison(messages)
        self._deterministic_failures = 0
        LAST_BATCH_TS.labels(service=self.service).set_to_current_time()
        return len(messages)

    def _poison_suspected(self, exc: Exception) -> bool:
        """Count the failure; True once a deterministic one has repeated ``poison_attempts`` times."""
        if is_dependency_unavailable(exc):
            BATCH_RETRIES.labels(service=self.service, cause="dependency").inc()
            return False
        self._deterministic_failures += 1
        if self._deterministic_failures < self.poison_attempts:
            BATCH_RETRIES.labels(service=self.service, cause="deterministic").inc()
            return False
        return True

    def _isolate_poison(self, messages: list[Message]) -> None:
        """Bisect a batch that keeps failing: halves are processed and committed in order, a half
        that fails is split again, and a single message that fails is dead-lettered. A dependency
        going down meanwhile rewinds to the first uncommitted message and raises (hold, retry)."""
        log.warning("batch keeps failing, splitting it to find the poison", service=self.service,
                    messages=len(messages), attempts=self._deterministic_failures)
        pending = _halves(messages)
        while pending:
            chunk = pending.pop(0)
            try:
                self._process(chunk)
            except Exception as exc:
                if is_dependency_unavailable(exc):
                    self._rewind([m for c in [chunk, *pending] for m in c])
                    raise
                if len(chunk) > 1:
                    pending[0:0] = _halves(chunk)
                    continue
                try:
                    self._dead_letter_poison(chunk[0], exc)
                except Exception:
                    self._rewind([m for c in [chunk, *pending] for m in c])
                    raise

    def _dead_letter_poison(self, message: Message, error: Exception) -> None:
        produce_all(self.producer, [dead_letter_message(DeadLetter(message, error), self.service)])
        DLQ_MESSAGES.labels(service=self.service, topic=message.topic()).inc()
        POISON_MESSAGES.labels(service=self.service, topic=message.topic()).inc()
        log.error("poison message dead-lettered", service=self.service, topic=message.topic(),
                  partition=message.partition(), offset=message.offset(), error=repr(error)[:500])
        self._commit([message])

    def _process(self, messages: list[Message]) -> None:
        for message in messages:
            MESSAGES_CONSUMED.labels(service=self.service, topic=message.topic()).inc()
        result = self.handle_batch(messages)
        dead = [dead_letter_message(letter, self.service) for letter in result.dead_letters]
        for letter in result.dead_letters:
            DLQ_MESSAGES.labels(service=self.service, topic=letter.message.topic()).inc()
            log.warning("dead-lettered", service=self.service, topic=letter.message.topic(),
                        offset=letter.message.offset(), error=str(letter.error)[:300])
        if result.outputs or dead:
            produce_all(self.producer, [*result.outputs, *dead])
        for hook in result.after_durable:
            hook()
        self._commit(messages)

    def _rewind(self, messages: list[Message]) -> None:
        """Seek back to the batch's first offsets so the next consume retries it."""
        first: dict[tuple[str, int], int] = {}
        for message in messages:
            first.setdefault((message.topic(), message.partition()), message.offset())
        for (topic, partition), offset in first.items():
            try:
                self.consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:  # partition revoked meanwhile: its new owner starts at the commit
                log.warning("seek failed", topic=topic, partition=partition, error=str(exc))

    def _commit(self, messages: list[Message]) -> None:
        last: dict[tuple[str, int], int] = {}
        for message in messages:
            last[(message.topic(), message.partition())] = message.offset()
        offsets = [TopicPartition(t, p, o + 1) for (t, p), o in last.items()]
        self.consumer.commit(offsets=offsets, asynchronous=False)

    def _is_transport_error(self, message: Message) -> bool:
        error = message.error()
        if error is None:
            return False
        if error.code() != KafkaError._PARTITION_EOF:
            log.warning("consumer error", service=self.service, error=str(error))
        return True


def _halves(messages: list[Message]) -> list[list[Message]]:
    middle = (len(messages) + 1) // 2
    return [part for part in (messages[:middle], messages[middle:]) if part]
