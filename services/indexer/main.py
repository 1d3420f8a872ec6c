"""indexer: embedded posts → vector store (Qdrant), deletes and account purges applied.

Reads:   <prefix>.pipeline.posts.embedded   post.embedded | post.delete | account.purge
Writes:  the posts collection (VECTOR_STORE=server: a Qdrant server; edge: the in-process engine)
         and <collection>-deleted (versions of deleted posts and purged accounts, same store)
         <prefix>.pipeline.posts.embedded.dlq
Offsets are committed only after the store acknowledged the batch.

With the edge engine a shard belongs to one process, so locally the query service runs this loop
in a thread (QUERY_RUN_INDEXER=true) instead of as its own process.
"""

from __future__ import annotations

import threading

import redis

from confluent_kafka import Message

from services.indexer.core import Labeller, PostIndexer
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
from shared.embedding import load_text_embedder
from shared.events import EMBEDDING_DIM, parse_embedded_topic_event
from shared.fewshot import FewShotStore
from shared.health import Heartbeat, HealthServer, kafka_reachable, shutdown_event
from shared.index_registry import IndexRegistry
from shared.kafka import BatchLoop, BatchResult, ensure_topics, make_consumer, make_producer
from shared.labelling import Tier1Labeller
from shared.logging import configure_logging
from shared.metrics import STAGE_SECONDS
from shared.taxonomy import TaxonomyCatalog
from shared.vectorstore import VectorStore, open_vector_store
from shared.verticals import EmbedTexts



class IndexerService:
    def __init__(self, indexer: PostIndexer) -> None:
        self.indexer = indexer

    def handle_batch(self, messages: list[Message]) -> BatchResult:
        result = BatchResult()
        events = result.parse_each(messages, lambda message: parse_embedded_topic_event(message.value()))
        with STAGE_SECONDS.labels(stage="index_batch").time():
            self.indexer.apply(events)
        return result


def open_store(settings: VectorStoreSettings) -> VectorStore:
    return open_vector_store(settings.vector_store, edge_path=str(settings.qdrant_edge_path),
                             url=settings.qdrant_url, api_key=settings.qdrant_api_key)


def live_indexer_group(kafka: KafkaSettings) -> str:
    return f"{kafka.topic_prefix}-indexer"


def open_labeller(embed: EmbedTexts, redis_client: redis.Redis) -> Tier1Labeller:
    """Tier-1 labels for every taxonomy under TAXONOMY_DIR, with people's corrections from Redis."""
    settings = ClassifierSettings()
    return Tier1Labeller(TaxonomyCatalog.load(settings.taxonomy_dir), embed, FewShotStore(redis_client),
                         refresh_s=settings.fewshot_refresh_s)


def indexer_loop(kafka: KafkaSettings, store: VectorStore, collection: str, stop: threading.Event,
                 heartbeat: Heartbeat | None = None, *, group: str | None = None,
                 topic: str | None = None, labeller: Labeller | None = None) -> BatchLoop:
    source = topic or kafka.embedded_posts_topic
    ensure_topics(kafka, [source, dlq_topic(source)])
    retention_s = VectorStoreSettings().indexer_deleted_version_retention_days * 86_400
    service = IndexerService(PostIndexer(store, collection, EMBEDDING_DIM, labeller, deleted_retention_s=retention_s))
    consumer = make_consumer(kafka, group or live_indexer_group(kafka))
    # Larger batches than the other services: the store's sync is paid once per batch (bench 2).
    return BatchLoop(service="indexer", settings=kafka, consumer=consumer, producer=make_producer(kafka),
                     topics=[source], handle_batch=service.handle_batch, stop=stop, heartbeat=heartbeat,
                     batch_size=VectorStoreSettings().indexer_batch_size)


def open_registry(kafka: KafkaSettings, store_settings: VectorStoreSettings) -> IndexRegistry:
    """The registry, with the live pipeline registered as version 1 on first start."""
    registry = IndexRegistry(connect_redis(RedisSettings().redis_url), kafka.topic_prefix,
                             alias=store_settings.posts_collection)
    registry.bootstrap(store_settings.posts_collection, kafka.embedded_posts_topic, live_indexer_group(kafka))
    return registry


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

    model = ModelSettings()
    embedder = load_text_embedder(model.model_cache_dir, batch_size=model.embedding_batch_size,
                                  intra_op_threads=model.embedding_threads)
    redis_client = connect_redis(RedisSettings().redis_url)
    labeller = open_labeller(embedder.embed, redis_client)
    registry = open_registry(kafka, store_settings)
    from services.classifier.feedback import start_feedback_learner  # corrections need the store's vectors

    start_feedback_learner(redis_client, store, lambda: registry.active() or store_settings.posts_collection,
                           labeller, stop)
    try:
        IndexerSupervisor(kafka, store, registry, stop=stop, heartbeat=heartbeat, labeller=labeller).run()
    finally:
        store.close()


if __name__ == "__main__":
    main()
