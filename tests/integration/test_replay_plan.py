"""The names a replay gives an index version (topics and consumer groups per stage), now derived from
shared/topology.py, are the ones replays have always used: versions already registered in Redis and
consumer groups already in Kafka keep working."""

import redis

from ops.replay import first_stage, plan_version
from shared.config import KafkaSettings
from shared.index_registry import IndexRegistry


def test_version_names_per_stage(infra):
    client = redis.Redis(host="127.0.0.1", port=infra.config.redis_port)
    client.delete(*client.keys("plan-test:*") or ["none"])
    registry = IndexRegistry(client, "plan-test", alias="posts")
    registry.bootstrap("posts", "p.pipeline.posts.embedded", "p-indexer")
    kafka = KafkaSettings(topic_prefix="p", source_database="db")

    index = plan_version(kafka, registry, "index", "int8")
    assert (index.collection, index.source_topic, index.indexer_group) == (
        "posts_v2", "p.pipeline.posts.embedded", "p-indexer-posts_v2")
    assert first_stage(kafka, index) == ("p-indexer-posts_v2", ["p.pipeline.posts.embedded"])

    embed = plan_version(kafka, registry, "embed", "int8")
    assert (embed.source_topic, embed.indexer_group, embed.embed_from_topic, embed.embedder_group) == (
        "p.pipeline.posts.embedded.posts_v2", "p-indexer-posts_v2", "p.pipeline.posts.viable", "p-embedder-posts_v2")
    assert first_stage(kafka, embed) == ("p-embedder-posts_v2", ["p.pipeline.posts.viable"])

    pipeline = plan_version(kafka, registry, "pipeline", "int8")
    assert (pipeline.embed_from_topic, pipeline.viability_group) == (
        "p.pipeline.posts.viable.posts_v2", "p-viability-posts_v2")
    assert first_stage(kafka, pipeline) == ("p-viability-posts_v2", ["p.db.accounts", "p.db.posts"])
    client.delete(*client.keys("plan-test:*") or ["none"])
