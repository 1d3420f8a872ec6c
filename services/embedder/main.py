"""embedder: all-MiniLM-L6-v2 (ONNX Runtime) vectors for viable posts, cached in Redis.

Reads:   <prefix>.pipeline.posts.viable    post.upsert | post.delete | account.purge
Writes:  <prefix>.pipeline.posts.embedded  key {"account_id"}  post.embedded (+ deletes/purges unchanged)
         <prefix>.pipeline.posts.viable.dlq
Cache:   Redis emb:<model id>:<sha256 of text> → float32 bytes
Replays: one more loop per index version that re-embeds (stages "embed" and "pipeline").
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable

from confluent_kafka import Message

from services.embedder.core import PostEmbedding
from shared import topology
from shared.bootstrap import load_embedder
from shared.cache import EmbeddingCache, connect_redis
from shared.config import KafkaSettings, ModelSettings, RedisSettings, ServiceSettings, VectorStoreSettings, dlq_topic
from shared.events import MalformedEvent, account_key, encode, parse_pipeline_event
from shared.health import Heartbeat, HealthServer, kafka_reachable, shutdown_event
from shared.index_registry import IndexRegistry, IndexVersion
from shared.kafka import BatchLoop, BatchResult, DeadLetter, OutboundMessage, ensure_topics, make_consumer, make_producer
from shared.logging import configure_logging, get_logger
from shared.metrics import STAGE_SECONDS
from shared.version_loops import VersionLoops

log = get_logger("embedder")


class EmbedderService:
    def __init__(self, kafka: KafkaSettings, embedding: PostEmbedding, output_topic: str | None = None) -> None:
        self.kafka = kafka
        self.embedding = embedding
        self.output_topic = output_topic or kafka.embedded_posts_topic

    def handle_batch(self, messages: list[Message]) -> BatchResult:
        result, events = BatchResult(), []
        for message in messages:
            try:
                event = parse_pipeline_event(message.value())
                if event.kind in ("post.embedded", "post.labels", "post.correction", "post.relabel"):
                    raise MalformedEvent(f"{event.kind} is not an embedder input: wrong topic")
                events.append(event)
            except MalformedEvent as exc:
                result.dead_letters.append(DeadLetter(message, exc))
        with STAGE_SECONDS.labels(stage="embed_batch").time():
            processed = self.embedding.process(events)
        for event in processed:
            account_id = event.post.account_id if event.kind == "post.embedded" else event.account_id
            result.outputs.append(OutboundMessage(self.output_topic, account_key(account_id or 0), encode(event)))
        return result


def embedder_loop(kafka: KafkaSettings, embedding: PostEmbedding, *, group: str, output_topic: str,
                  stop: threading.Event, heartbeat: Heartbeat, source: str | None = None) -> BatchLoop:
    source = source or kafka.viable_posts_topic
    ensure_topics(kafka, [source, output_topic, dlq_topic(source)])
    service = EmbedderService(kafka, embedding, output_topic)
    return BatchLoop(service="embedder", settings=kafka, consumer=make_consumer(kafka, group),
                     producer=make_producer(kafka), topics=[source], handle_batch=service.handle_batch, stop=stop,
                     heartbeat=heartbeat)


def replay_embedders(kafka: KafkaSettings, registry: IndexRegistry, embeddings: Callable[[str], PostEmbedding],
                     stop: threading.Event, heartbeat: Heartbeat) -> VersionLoops:
    """Extra embedder loops for index versions a replay re-embeds: stage "embed" reads the live viable
    topic, stage "pipeline" its own version's viable topic; each with its own consumer group, output
    topic and model variant. The live loop is not one of them."""

    def build(version: IndexVersion, loop_stop: threading.Event) -> BatchLoop:
        return embedder_loop(kafka, embeddings(version.model_variant), group=version.embedder_group,
                             output_topic=version.source_topic, source=version.embed_from_topic, stop=loop_stop,
                             heartbeat=heartbeat)

    return VersionLoops(registry, service="embedder", wants=lambda v: v.embed_from_topic is not None,
                        build=build, stop=stop)


def main() -> None:
    settings, kafka, model, redis_settings = ServiceSettings(), KafkaSettings(), ModelSettings(), RedisSettings()
    configure_logging(settings.log_level, service="embedder")
    redis_client = connect_redis(redis_settings.redis_url)  # index versions
    cache_client = connect_redis(redis_settings.cache_url)

    @functools.cache
    def embeddings(variant: str) -> PostEmbedding:
        embedder = load_embedder(model, variant)
        log.info("model loaded", model_id=embedder.model_id)
        return PostEmbedding(embedder, EmbeddingCache(cache_client, embedder.model_id))

    heartbeat, stop = Heartbeat(), shutdown_event()
    # Redis is a cache here: the embedder keeps working without it, so it is not a readiness check.
    HealthServer(settings.metrics_port, heartbeat, {"kafka": kafka_reachable(kafka.kafka_bootstrap_servers)}).start()
    registry = IndexRegistry(redis_client, kafka.topic_prefix, alias=VectorStoreSettings().posts_collection)
    replay_embedders(kafka, registry, embeddings, stop, heartbeat).start()
    embedder_loop(kafka, embeddings(model.embedding_model_variant), group=topology.live_group("embedder", kafka.topic_prefix),
                  output_topic=kafka.embedded_posts_topic, stop=stop, heartbeat=heartbeat).run()


if __name__ == "__main__":
    main()
