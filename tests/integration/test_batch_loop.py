"""BatchLoop's ordering against a real broker: outputs, then the after-durable hooks, then the commit."""

from __future__ import annotations

import time

from confluent_kafka import TopicPartition

from shared.config import KafkaSettings
from shared.kafka import BatchLoop, BatchResult, OutboundMessage, ensure_topics, make_consumer, make_producer, produce_all


def committed(loop: BatchLoop, topic: str) -> int:
    [partition] = loop.consumer.committed([TopicPartition(topic, 0)], timeout=10)
    return partition.offset


def test_hooks_run_after_the_outputs_and_before_the_commit_and_not_when_the_outputs_fail(infra):
    settings = KafkaSettings(kafka_bootstrap_servers=f"127.0.0.1:{infra.config.broker_port}", topic_partitions=1,
                             kafka_session_timeout_ms=6000)
    source, sink = f"loop-in-{time.time_ns()}", f"loop-out-{time.time_ns()}"
    ensure_topics(settings, [source, sink])
    produce_all(make_producer(settings), [OutboundMessage(source, None, b"m%d" % i) for i in range(3)])
    hook_saw: list[int] = []
    too_big = [True]  # the first attempt's output exceeds message.max.bytes: produce fails

    def handle(messages) -> BatchResult:
        value = b"x" * 9_000_000 if too_big[0] else b"ok"
        result = BatchResult(outputs=[OutboundMessage(sink, None, value)])
        result.after_durable.append(lambda: hook_saw.append(committed(loop, source)))
        return result

    loop = BatchLoop(service="loop-test", settings=settings, consumer=make_consumer(settings, source),
                     producer=make_producer(settings), topics=[source], handle_batch=handle)
    loop.consumer.subscribe([source])
    failed = False
    deadline = time.monotonic() + 30
    while not failed and time.monotonic() < deadline:
        try:
            loop.run_once()
        except Exception as exc:  # noqa: BLE001 - the produce failure under test
            failed = "size" in str(exc).lower() or "large" in str(exc).lower()
    assert failed and hook_saw == []
    too_big[0] = False
    consumed = 0
    while consumed < 3 and time.monotonic() < deadline:
        consumed += loop.run_once()  # the rewind makes this the same three messages again
    assert consumed == 3
    assert hook_saw and all(offset < 3 for offset in hook_saw)  # the batch was not committed yet
    assert committed(loop, source) == 3
    loop.consumer.close()
