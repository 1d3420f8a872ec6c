"""indexer: embedded posts → vector store (Qdrant), deletes and account purges applied.

Reads:   <prefix>.pipeline.posts.embedded   post.embedded | post.delete | account.purge
Writes:  the posts collection (VECTOR_STORE=server: a Qdrant server; edge: the in-process engine)
         <prefix>.pipeline.posts.embedded.dlq
Offsets are committed only after the store acknowledged the batch.

With the edge engine a shard belongs to one process, so locally the query service runs this loop
in a thread (QUERY_RUN_INDEXER=true) instead of as its own process.
"""

from __future__ import annotations

import threading

from confluent_kafka import Message

from services.indexer.core import Labeller, PostIndexer
from shared.bootstrap import live_indexer_group, load_embedder, open_labeller, open_registry, open_store
from shared.cache import connect_redis
from shared.config import (
    ClassifierSettings,
    KafkaSettings,
    ModelSettings,
    RedisSettings,
    ServiceSettings,
    VectorStoreSettings,
    dlq_topic,
)
from shared.events import EMBEDDING_DIM, parse_embedded_topic_event
from shared.health import Heartbeat, HealthServer, kafka_reachable, shutdown_event
from shared.kafka import BatchLoop, BatchResult, ensure_topics, make_consumer, make_producer
from shared.logging import configure_logging
from shared.metrics import STAGE_SECONDS
from shared.vectorstore import VectorStore



class IndexerService:
    def __init__(self, indexer: PostIndexer) -> None:
        self.indexer = indexer

    def handle_batch(self, messages: list[Message]) -> BatchResult:
        result = BatchResult()
        events = result.parse_each(messages, lambda message: parse_embedded_topic_event(message.value()))
        with STAGE_SECONDS.labels(stage="index_batch").time():
            self.indexer.apply(events)
        return result


def indexer_loop(kafka: KafkaSettings, store: VectorStore, collection: str, stop: threading.Event,
                 heartbeat: Heartbeat | None = None, *, group: str | None = None,
                 topic: str | None = None, labeller: Labeller | None = None) -> BatchLoop:
    source = topic or kafka.embedded_posts_topic
    ensure_topics(kafka, [source, dlq_topic(source)])
    service = IndexerService(PostIndexer(store, collection, EMBEDDING_DIM, labeller))
    consumer = make_consumer(kafka, group or live_indexer_group(kafka))
    # Larger batches than the other services: the store's sync is paid once per batch (bench 2).
    return BatchLoop(service="indexer", settings=kafka, consumer=consumer, producer=make_producer(kafka),
                     topics=[source], handle_batch=service.handle_batch, stop=stop, heartbeat=heartbeat,
                     batch_size=VectorStoreSettings().indexer_batch_size)


def main() -> None:
    settings, kafka, store_settings = ServiceSettings(), KafkaSettings(), VectorStoreSettings()
    configure_logging(settings.log_level, service="indexer")
    store = open_store(store_settings)
    heartbeat, stop = Heartbeat(), shutdown_event()
    HealthServer(settings.metrics_port, heartbeat, {
        "kafka": kafka_reachable(kafka.kafka_bootstrap_servers),
        "vector_store": lambda: store.count(store_settings.posts_collection) >= 0,
    }).start()
    from services.indexer.supervisor import IndexerSupervisor  # imports this module

    embedder = load_embedder(ModelSettings())
    redis_client = connect_redis(RedisSettings().redis_url)
    labeller = open_labeller(embedder.embed, redis_client, ClassifierSettings())
    registry = open_registry(kafka, store_settings, redis_client)
    from services.classifier.feedback import start_feedback_learner  # corrections need the store's vectors

    start_feedback_learner(redis_client, store, lambda: registry.active() or store_settings.posts_collection,
                           labeller, stop)
    try:
        IndexerSupervisor(kafka, store, registry, stop=stop, heartbeat=heartbeat, labeller=labeller).run()
    finally:
        store.close()


if __name__ == "__main__":
    main()
