"""Consumer-group positions and topic end offsets, read without joining any group.

The local broker (tansu, in-memory) answers ListOffsets(latest) with the base offset of the last
record batch + 1 instead of the offset after the last record, so the end offset is confirmed by
reading that last batch: on Apache Kafka this reads one record, on tansu the whole batch.
"""

from __future__ import annotations

import threading
import time

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

_NO_OFFSET = -1001  # librdkafka's OFFSET_INVALID: the group never committed this partition


class KafkaOffsets:
    def __init__(self, bootstrap_servers: str, reader_group: str, timeout_s: float = 2.0) -> None:
        self.timeout_s = timeout_s
        self._admin = AdminClient({"bootstrap.servers": bootstrap_servers, "socket.timeout.ms": int(timeout_s * 1000)})
        # Never subscribes or commits: assign() + poll() only, to read the last batch of a partition.
        self._reader = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": reader_group,
                                 "enable.auto.commit": False, "enable.partition.eof": True,
                                 "fetch.wait.max.ms": 10,  # an empty fetch (the end) answers at once
                                 "socket.timeout.ms": int(timeout_s * 1000)})
        self._lock = threading.Lock()  # one reader consumer: assignments must not interleave

    def partitions(self) -> dict[str, int]:
        """Topic -> partition count. Raises KafkaException when the broker does not answer."""
        metadata = self._admin.list_topics(timeout=self.timeout_s)
        return {name: len(topic.partitions) for name, topic in metadata.topics.items() if topic.error is None}

    def end_offset(self, topic: str, partition: int) -> tuple[int, int]:
        """(low, end) of a partition, end = offset after the last record."""
        with self._lock:
            low, high = self._reader.get_watermark_offsets(TopicPartition(topic, partition), timeout=self.timeout_s,
                                                           cached=False)
            return low, self._confirmed_end(topic, partition, high) if high > low else high

    def committed(self, group: str, topic_partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int | None]:
        """Committed offset per partition; None where the group has not committed yet."""
        request = ConsumerGroupTopicPartitions(group, [TopicPartition(t, p) for t, p in topic_partitions])
        future = self._admin.list_consumer_group_offsets([request])[group]
        result = future.result(timeout=self.timeout_s)
        return {(tp.topic, tp.partition): (None if tp.offset == _NO_OFFSET else tp.offset)
                for tp in result.topic_partitions}

    def close(self) -> None:
        with self._lock:
            self._reader.close()

    def _confirmed_end(self, topic: str, partition: int, high: int) -> int:
        self._reader.assign([TopicPartition(topic, partition, high - 1)])
        last, deadline = high - 1, time.monotonic() + self.timeout_s
        try:
            while time.monotonic() < deadline:
                message = self._reader.poll(0.2)
                if message is None:
                    continue
                if message.error() is not None:
                    break  # partition EOF (or an error): what was read so far is the end
                last = max(last, message.offset())
        finally:
            self._reader.unassign()
        return last + 1
