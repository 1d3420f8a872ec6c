"""BatchLoop's ordering against a real broker: outputs, then the after-durable hooks, then the commit."""

from __future__ import annotations

import time

import redis
from confluent_kafka import TopicPartition

from shared.config import KafkaSettings, dlq_topic
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


def _settings(infra) -> KafkaSettings:
    return KafkaSettings(kafka_bootstrap_servers=f"127.0.0.1:{infra.config.broker_port}", topic_partitions=1,
                         kafka_session_timeout_ms=6000)


def _drain(consumer, count: int, timeout: float = 20) -> list:
    received: list = []
    deadline = time.monotonic() + timeout
    while len(received) < count and time.monotonic() < deadline:
        received += [m for m in consumer.consume(50, 0.3) if m.error() is None]
    return received


def _run_until_committed(loop: BatchLoop, topic: str, offset: int, timeout: float = 40) -> list[str]:
    """run_once as run() does, without its backoff sleeps; the errors it raised, by class."""
    raised: list[str] = []
    deadline = time.monotonic() + timeout
    while committed(loop, topic) < offset and time.monotonic() < deadline:
        try:
            loop.run_once()
        except Exception as exc:  # noqa: BLE001 - a retried batch, what run() logs and backs off on
            raised.append(type(exc).__name__)
    return raised


def test_a_message_that_always_fails_is_dead_lettered_and_every_good_one_goes_on(infra):
    settings = _settings(infra)
    source, sink = f"poison-in-{time.time_ns()}", f"poison-out-{time.time_ns()}"
    ensure_topics(settings, [source, sink, dlq_topic(source)])
    values = [b"m%d" % i for i in range(10)]
    values[6] = b"poison"
    produce_all(make_producer(settings), [OutboundMessage(source, b"k", v) for v in values])

    def handle(messages) -> BatchResult:  # a bug in a core: the same message fails the same way every time
        if any(m.value() == b"poison" for m in messages):
            raise RuntimeError("core cannot handle 'poison'")
        return BatchResult(outputs=[OutboundMessage(sink, m.key(), m.value()) for m in messages])

    loop = BatchLoop(service="poison-test", settings=settings, consumer=make_consumer(settings, source),
                     producer=make_producer(settings), topics=[source], handle_batch=handle, batch_size=10,
                     poison_attempts=3)
    loop.consumer.subscribe([source])
    _run_until_committed(loop, source, 10)
    assert committed(loop, source) == 10  # the partition moved past the poison
    loop.consumer.close()

    out = make_consumer(settings, f"{sink}-reader")
    out.subscribe([sink])
    assert [m.value() for m in _drain(out, 9)] == [v for v in values if v != b"poison"]  # order kept, none lost
    out.close()
    dlq = make_consumer(settings, f"{sink}-dlq-reader")
    dlq.subscribe([dlq_topic(source)])
    [letter] = _drain(dlq, 1)
    headers = dict(letter.headers())
    assert letter.value() == b"poison" and headers["dlq.offset"] == b"6"
    assert headers["dlq.error.class"] == b"RuntimeError" and b"cannot handle" in headers["dlq.error.message"]
    assert _drain(dlq, 1, timeout=2) == []
    dlq.close()


def test_an_unreachable_dependency_holds_the_batch_and_never_dead_letters(infra):
    settings = _settings(infra)
    source, sink = f"outage-in-{time.time_ns()}", f"outage-out-{time.time_ns()}"
    ensure_topics(settings, [source, sink, dlq_topic(source)])
    produce_all(make_producer(settings), [OutboundMessage(source, b"k", b"m%d" % i) for i in range(4)])
    down = redis.Redis(host="127.0.0.1", port=infra.config.redis_port + 7, socket_connect_timeout=0.2)
    outage = [8]  # more failures in a row than poison_attempts allows for a deterministic error

    def handle(messages) -> BatchResult:
        if outage[0]:
            outage[0] -= 1
            down.ping()  # nothing listens there: a real redis ConnectionError
        return BatchResult(outputs=[OutboundMessage(sink, m.key(), m.value()) for m in messages])

    loop = BatchLoop(service="outage-test", settings=settings, consumer=make_consumer(settings, source),
                     producer=make_producer(settings), topics=[source], handle_batch=handle, poison_attempts=2)
    loop.consumer.subscribe([source])
    raised = _run_until_committed(loop, source, 4)
    assert raised.count("ConnectionError") == 8 and committed(loop, source) == 4
    loop.consumer.close()
    out = make_consumer(settings, f"{sink}-reader")
    out.subscribe([sink])
    assert sorted(m.value() for m in _drain(out, 4)) == [b"m%d" % i for i in range(4)]
    out.close()
    dlq = make_consumer(settings, f"{sink}-dlq-reader")
    dlq.subscribe([dlq_topic(source)])
    assert _drain(dlq, 1, timeout=3) == []
    dlq.close()
