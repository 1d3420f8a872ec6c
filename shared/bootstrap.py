"""Where the adapters are built: the vector store, the index registry, the tier-1 labeller, the
embedder and Redis clients, each from settings objects an entry point read once and passes in.

Entry points (``services/*/main.py``, ``services/query/edge_host.py``) call these; nothing else reads
the environment to open a connection. What two services share is built here, never imported from
another service's ``main``.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from shared import topology
from shared.cache import connect_redis
from shared.classification.fewshot import FewShotStore
from shared.classification.labelling import TierOneLabeller
from shared.classification.taxonomy import TaxonomyCatalog
from shared.classification.tier_one import EmbedTexts
from shared.config import ClassifierSettings, KafkaSettings, ModelSettings, RedisSettings, VectorStoreSettings
from shared.embedding import TextEmbedder, load_text_embedder
from shared.index_registry import IndexRegistry, IndexVersion
from shared.logging import get_logger
from shared.vectorstore import VectorStore, open_vector_store

log = get_logger(__name__)


@dataclass(frozen=True)
class RedisClients:
    state: redis.Redis  # what must not be lost: index versions, corrections, keys, spend
    cache: redis.Redis  # what may be evicted: embeddings, query vectors, LLM answers


def connect_redis_clients(settings: RedisSettings) -> RedisClients:
    return RedisClients(state=connect_redis(settings.redis_url), cache=connect_redis(settings.cache_url))


def load_embedder(model: ModelSettings, variant: str | None = None) -> TextEmbedder:
    """The live model (EMBEDDING_MODEL_VARIANT), or ``variant``'s (an index version built with another)."""
    return load_text_embedder(model.model_cache_dir, batch_size=model.embedding_batch_size,
                              intra_op_threads=model.embedding_threads,
                              quantize=(variant or model.embedding_model_variant) == "int8")


def open_store(settings: VectorStoreSettings) -> VectorStore:
    return open_vector_store(settings.vector_store, edge_path=str(settings.qdrant_edge_path),
                             url=settings.qdrant_url, api_key=settings.qdrant_api_key)


def live_indexer_group(kafka: KafkaSettings) -> str:
    return topology.live_group("indexer", kafka.topic_prefix)


def open_labeller(embed: EmbedTexts, redis_client: redis.Redis, catalog: TaxonomyCatalog,
                  settings: ClassifierSettings) -> TierOneLabeller:
    """Tier-1 labels for every taxonomy of the catalog (TAXONOMY_DIR), with people's corrections from Redis."""
    return TierOneLabeller(catalog, embed, FewShotStore(redis_client), refresh_s=settings.fewshot_refresh_s)


def open_registry(kafka: KafkaSettings, store_settings: VectorStoreSettings,
                  redis_client: redis.Redis, live_variant: str) -> IndexRegistry:
    """The registry, with the live pipeline registered as version 1 on first start, its vectors made by the
    live model (``live_variant``, EMBEDDING_MODEL_VARIANT): what queries of that version are embedded with."""
    registry = IndexRegistry(redis_client, kafka.topic_prefix, alias=store_settings.posts_collection)
    registry.bootstrap(store_settings.posts_collection, kafka.embedded_posts_topic, live_indexer_group(kafka),
                       live_variant)
    return registry


def open_registry_without_redis(kafka: KafkaSettings, store_settings: VectorStoreSettings,
                                redis_client: redis.Redis, live_variant: str) -> IndexRegistry:
    """The standalone indexer's registry: Redis down at start is not fatal, since the live version's writes
    need only the broker and the store. Its version loops register the live version once Redis answers."""
    try:
        return open_registry(kafka, store_settings, redis_client, live_variant)
    except redis.RedisError as exc:
        log.warning("Redis unreachable: indexing the live version; replays and corrections wait for Redis",
                    error=str(exc))
        registry = IndexRegistry(redis_client, kafka.topic_prefix, alias=store_settings.posts_collection)
        registry.live = IndexVersion(collection=store_settings.posts_collection, version=1,
                                     source_topic=kafka.embedded_posts_topic, indexer_group=live_indexer_group(kafka),
                                     model_variant=live_variant)
        return registry
