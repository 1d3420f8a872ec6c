"""Topics the services create get their role's production settings (shared/kafka.py new_topic).

Upstream facts: Debezium's Kafka signal channel consumes partition 0 of signal.kafka.topic only (Debezium
docs, "Sending signals to a Debezium connector", Kafka channel: the topic must have a single partition);
a broker with min.insync.replicas 2 rejects acks=all writes to a topic with fewer in-sync replicas
(NOT_ENOUGH_REPLICAS), so a replication factor of 1 cannot be produced to in production.
"""

from __future__ import annotations

import os
from unittest import mock

from confluent_kafka.admin import AdminClient, ConfigResource

from shared.config import KafkaSettings, TopicSettings, dlq_topic
from shared.kafka import ensure_topics, new_topic


def test_new_topic_takes_replication_min_isr_and_partitions_by_role():
    kafka = KafkaSettings(topic_partitions=12)
    production = {"KAFKA_TOPIC_REPLICATION_FACTOR": "3", "KAFKA_TOPIC_MIN_INSYNC_REPLICAS": "2"}
    with mock.patch.dict(os.environ, production):
        topics = TopicSettings()
    replay_topic = f"{kafka.embedded_posts_topic}.posts_v2"  # ops/replay.py: <embedded topic>.<collection>
    expected = {kafka.signal_topic: 1, kafka.posts_topic: 12, kafka.viable_posts_topic: 12, replay_topic: 12,
                dlq_topic(kafka.posts_topic): 1}
    for name, partitions in expected.items():
        topic = new_topic(kafka, name, topics)
        assert (topic.num_partitions, topic.replication_factor) == (partitions, 3), name
        assert topic.config["min.insync.replicas"] == "2", name
    assert new_topic(kafka, kafka.accounts_topic, topics).config["cleanup.policy"] == "compact"
    assert new_topic(kafka, replay_topic, topics).config["cleanup.policy"] == "delete"


def test_ensure_topics_creates_them_so_on_the_broker(infra):
    kafka = KafkaSettings(kafka_bootstrap_servers=f"127.0.0.1:{infra.config.broker_port}",
                          topic_prefix="i13topics", topic_partitions=3)
    replay_topic = f"{kafka.viable_posts_topic}.posts_v7"
    names = [kafka.signal_topic, kafka.posts_topic, replay_topic, dlq_topic(kafka.posts_topic)]
    ensure_topics(kafka, names)
    admin = AdminClient({"bootstrap.servers": kafka.kafka_bootstrap_servers})
    listed = admin.list_topics(timeout=10).topics
    partitions = {name: len(listed[name].partitions) for name in names}
    assert partitions == {kafka.signal_topic: 1, kafka.posts_topic: 3, replay_topic: 3,
                          dlq_topic(kafka.posts_topic): 1}
    resource = ConfigResource(ConfigResource.Type.TOPIC, kafka.posts_topic)
    config = admin.describe_configs([resource])[resource].result(timeout=10)
    assert config["cleanup.policy"].value == "compact"
