"""indexer: embedded posts → vector store (Qdrant), deletes and account purges applied.

Reads:   <prefix>.pipeline.posts.embedded   post.embedded | post.delete | account.purge
Writes:  the posts collection (VECTOR_STORE=server: a Qdrant server; edge: the in-process engine)
         and <collection>-deleted (versions of deleted posts and purged accounts, same store)
         <prefix>.pipeline.posts.embedded.dlq
Offsets are committed only after the store acknowledged the batch.

With the edge engine a shard belongs to one process, so locally the edge host
(services/query/edge_host.py) runs these loops next to the API instead of this process.
"""

from __future__ import annotations

from services.classifier.feedback import TopicPublisher, start_feedback_learner
from services.indexer.service import indexer_versions
from shared.bootstrap import load_embedder, open_labeller, open_registry_without_redis, open_store
from shared.cache import connect_redis
from shared.classification.taxonomy import TaxonomyCatalog
from shared.config import (
    ClassifierSettings,
    KafkaSettings,
    ModelSettings,
    RedisSettings,
    ServiceSettings,
    TaxonomySettings,
    VectorStoreSettings,
)
from shared.embedding import model_variant_of
from shared.health import Heartbeat, HealthServer, kafka_reachable, shutdown_event
from shared.logging import configure_logging


def main() -> None:
    settings, kafka, store_settings = ServiceSettings(), KafkaSettings(), VectorStoreSettings()
    configure_logging(settings.log_level, service="indexer")
    store = open_store(store_settings)
    heartbeat, stop = Heartbeat(), shutdown_event()
    HealthServer(settings.metrics_port, heartbeat, {
        "kafka": kafka_reachable(kafka.kafka_bootstrap_servers),
        "vector_store": lambda: store.count(store_settings.posts_collection) >= 0,
    }).start()
    embedder = load_embedder(ModelSettings())
    redis_client = connect_redis(RedisSettings().redis_url)
    catalog = TaxonomyCatalog.load(TaxonomySettings().taxonomy_dir)
    labeller = open_labeller(embedder.embed, redis_client, catalog, ClassifierSettings())
    registry = open_registry_without_redis(kafka, store_settings, redis_client, model_variant_of(embedder.model_id))
    # Corrections need the store's vectors: the learner runs with the writer.
    start_feedback_learner(redis_client, store, lambda: registry.active() or store_settings.posts_collection,
                           labeller, TopicPublisher(kafka, registry), stop)
    try:
        indexer_versions(kafka, store, registry, stop=stop, heartbeat=heartbeat, labeller=labeller,
                         batch_size=store_settings.indexer_batch_size,
                         deleted_retention_s=store_settings.indexer_deleted_version_retention_days * 86_400).run()
    finally:
        store.close()


if __name__ == "__main__":
    main()
