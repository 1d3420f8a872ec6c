"""Inspect dead-letter topics and re-publish (redrive) selected records after a fix.

    python -m ops.dlq list    --topic influential.influential.posts
    python -m ops.dlq redrive --topic influential.influential.posts [--error-class MalformedEvent]
                              [--from-offset N] [--to-offset M] [--dry-run]

A redriven record goes back to the topic it failed on, with its original key, value and headers
plus ``dlq.redriven_from`` (the DLQ offset), so the service processes it again; if it fails again
it lands in the DLQ again, nothing is lost.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from shared.config import KafkaSettings, dlq_topic
from shared.kafka import OutboundMessage, make_producer, produce_all

DLQ_HEADERS = ("dlq.service", "dlq.topic", "dlq.partition", "dlq.offset", "dlq.error.class", "dlq.error.message",
               "dlq.ts_ms")


@dataclass(frozen=True)
class DeadLetterRecord:
    dlq_partition: int
    dlq_offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]

    def header(self, name: str) -> str:
        for key, value in self.headers:
            if key == name:
                return value.decode("utf-8", "replace")
        return ""

    @property
    def original_headers(self) -> list[tuple[str, bytes]]:
        return [(k, v) for k, v in self.headers if not k.startswith("dlq.")]


def read_dead_letters(settings: KafkaSettings, topic: str, *, idle_s: float = 2.0) -> Iterator[DeadLetterRecord]:
    """Every record of ``<topic>.dlq`` from the beginning, without joining a consumer group."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": "ops-dlq-reader",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    name = dlq_topic(topic)
    try:
        metadata = consumer.list_topics(name, timeout=10).topics.get(name)
        if metadata is None or metadata.error is not None:
            return
        partitions = [TopicPartition(name, p, 0) for p in metadata.partitions]
        consumer.assign(partitions)
        open_partitions = {p.partition for p in partitions}
        deadline = time.monotonic() + idle_s
        # EOF events end each partition; the idle deadline guards brokers that under-report the end.
        while open_partitions and time.monotonic() < deadline:
            for message in consumer.consume(500, 0.5):
                deadline = time.monotonic() + idle_s
                if message.error() is None:
                    yield _record(message)
                elif message.error().code() == KafkaError._PARTITION_EOF:
                    open_partitions.discard(message.partition())
    finally:
        consumer.close()


def _record(message: Message) -> DeadLetterRecord:
    return DeadLetterRecord(message.partition(), message.offset(), message.key(), message.value(),
                            list(message.headers() or []))


def select(records: Iterator[DeadLetterRecord], *, error_class: str | None, from_offset: int | None,
           to_offset: int | None) -> list[DeadLetterRecord]:
    chosen = []
    for record in records:
        if error_class and record.header("dlq.error.class") != error_class:
            continue
        if from_offset is not None and record.dlq_offset < from_offset:
            continue
        if to_offset is not None and record.dlq_offset > to_offset:
            continue
        chosen.append(record)
    return chosen


def redrive(settings: KafkaSettings, records: list[DeadLetterRecord]) -> int:
    messages = [
        OutboundMessage(record.header("dlq.topic"), record.key, record.value,
                        [*record.original_headers, ("dlq.redriven_from", str(record.dlq_offset).encode())])
        for record in records if record.header("dlq.topic")
    ]
    if messages:
        produce_all(make_producer(settings), messages)
    return len(messages)


def _print(records: list[DeadLetterRecord]) -> None:
    for r in records:
        print(f"{r.dlq_partition}:{r.dlq_offset}  {r.header('dlq.service')}  {r.header('dlq.topic')}"
              f"@{r.header('dlq.partition')}:{r.header('dlq.offset')}  {r.header('dlq.error.class')}: "
              f"{r.header('dlq.error.message')[:160]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.dlq", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["list", "redrive"])
    parser.add_argument("--topic", required=True, help="the topic whose dead letters to read (not the .dlq name)")
    parser.add_argument("--error-class", help="only records that failed with this error class")
    parser.add_argument("--from-offset", type=int, help="first DLQ offset to include")
    parser.add_argument("--to-offset", type=int, help="last DLQ offset to include")
    parser.add_argument("--dry-run", action="store_true", help="redrive: show what would be re-published")
    args = parser.parse_args(argv)
    settings = KafkaSettings()
    records = select(read_dead_letters(settings, args.topic), error_class=args.error_class,
                     from_offset=args.from_offset, to_offset=args.to_offset)
    _print(records)
    if args.command == "list" or args.dry_run:
        print(f"{len(records)} dead letters" + (" would be redriven" if args.command == "redrive" else ""))
        return 0
    print(f"redriven {redrive(settings, records)} records")
    return 0


if __name__ == "__main__":
    sys.exit(main())
