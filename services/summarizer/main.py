"""summarizer: one extractive summary per account, recomputed when its posts change materially.

Reads:   <prefix>.pipeline.posts.embedded   post.embedded | post.delete | account.purge (keyed by account)
         (group <prefix>-summarizer; a replay's version <prefix>-summarizer-<collection> on its topic)
Marks:   Redis <prefix>:summarizer:<accounts collection>:dirty   account -> due time (debounce)
Reads:   the posts collection (the account's most recent posts and their vectors)
Writes:  the accounts collection (accounts for posts, accounts_vN for posts_vN): one point per account
         <prefix>.pipeline.posts.embedded.dlq
Offsets are committed once the batch's dirty marks are in Redis (and purged summaries deleted).

With the edge engine a shard belongs to one process, so locally the edge host
(services/query/edge_host.py) runs it next to the API (``start_summarizer``); production runs
``python -m services.summarizer.main`` against the Qdrant server.
"""

from __future__ import annotations

from services.summarizer.service import SummarizerConfig, open_summarizer
from shared.bootstrap import load_embedder, open_store
from shared.cache import connect_redis
from shared.config import (
    KafkaSettings,
    LlmSettings,
    ModelSettings,
    RedisSettings,
    ServiceSettings,
    SummarizerSettings,
    TaxonomySettings,
    VectorStoreSettings,
)
from shared.health import Heartbeat, HealthServer, kafka_reachable, redis_reachable, shutdown_event
from shared.logging import configure_logging


def main() -> None:
    settings, kafka, store_settings, model = ServiceSettings(), KafkaSettings(), VectorStoreSettings(), ModelSettings()
    redis_settings = RedisSettings()
    configure_logging(settings.log_level, service="summarizer")
    store = open_store(store_settings)
    embedder = load_embedder(model)
    heartbeat, stop = Heartbeat(), shutdown_event()
    HealthServer(settings.metrics_port, heartbeat, {
        "kafka": kafka_reachable(kafka.kafka_bootstrap_servers),
        "redis": redis_reachable(connect_redis(redis_settings.redis_url)),
    }).start()
    config = SummarizerConfig(kafka=kafka, store=store_settings, redis=redis_settings,
                              summarizer=SummarizerSettings(), llm=LlmSettings(), taxonomies=TaxonomySettings())
    try:
        open_summarizer(store, embedder, stop, config, heartbeat=heartbeat).run()
    finally:
        store.close()


if __name__ == "__main__":
    main()
