"""Dead letters can be listed and re-published to the topic they failed on (real broker)."""

from __future__ import annotations

import time

from confluent_kafka import Consumer

from ops.dlq import main as dlq_main, read_dead_letters, redrive, select
from shared.config import KafkaSettings, dlq_topic
from shared.kafka import OutboundMessage, ensure_topics, make_producer, produce_all


def test_redrive_republishes_selected_dead_letters_to_their_topic(infra, monkeypatch, capsys):
    settings = KafkaSettings(kafka_bootstrap_servers=f"127.0.0.1:{infra.config.broker_port}")
    topic = f"redrive-{int(time.time() * 1000)}"
    ensure_topics(settings, [topic, dlq_topic(topic)])
    letters = [
        OutboundMessage(dlq_topic(topic), b"k%d" % i, b"payload %d" % i, [
            ("trace", b"abc"), ("dlq.topic", topic.encode()), ("dlq.offset", str(i).encode()),
            ("dlq.error.class", (b"MalformedEvent" if i % 2 else b"TimeoutError")),
            ("dlq.error.message", b"why"), ("dlq.service", b"viability"),
        ]) for i in range(4)
    ]
    produce_all(make_producer(settings), letters)

    chosen = select(read_dead_letters(settings, topic), error_class="MalformedEvent", from_offset=None, to_offset=None)
    assert [r.value for r in chosen] == [b"payload 1", b"payload 3"]
    assert redrive(settings, chosen) == 2

    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": topic,
                         "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
    consumer.subscribe([topic])
    received = []
    deadline = time.monotonic() + 20
    while len(received) < 2 and time.monotonic() < deadline:
        received += [m for m in consumer.consume(10, 0.5) if m.error() is None]
    consumer.close()
    assert [(m.key(), m.value()) for m in received] == [(b"k1", b"payload 1"), (b"k3", b"payload 3")]
    headers = dict(received[0].headers())
    assert headers["trace"] == b"abc" and headers["dlq.redriven_from"] == b"1" and "dlq.error.class" not in headers

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", settings.kafka_bootstrap_servers)
    assert dlq_main(["list", "--topic", topic]) == 0
    assert "4 dead letters" in capsys.readouterr().out
