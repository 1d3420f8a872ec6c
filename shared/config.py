"""Configuration read from environment variables, one pydantic-settings class per concern.

Every variable has a default that works for the local stack (`make dev`); production overrides
them through ConfigMaps/Secrets. Field names map to upper-case env vars (``kafka_bootstrap_servers``
-> ``KAFKA_BOOTSTRAP_SERVERS``). docs/configuration.md lists them all (``python -m shared.config_doc --write``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared import topology

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class _EnvSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)


class KafkaSettings(_EnvSettings):
    kafka_bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers.")
    topic_prefix: str = Field("influential", description="Debezium topic.prefix: topics are <prefix>.<db>.<table>.")
    source_database: str = Field("influential", description="Source database name, the middle part of CDC topics.")
    topic_partitions: int = Field(1, ge=1, description="Partitions for topics this project creates.")
    kafka_session_timeout_ms: int = Field(6000, description="Consumer group session timeout (joins wait ~half of it).")
    kafka_batch_size: int = Field(256, ge=1, description="Max messages a service takes per batch.")
    kafka_batch_timeout_s: float = Field(0.05, gt=0, description="How long a service waits to fill a batch.")
    kafka_fetch_wait_max_ms: int = Field(100, ge=1, description="Longest a fetch waits at the broker for new data "
                                         "(librdkafka fetch.wait.max.ms). Kafka answers as soon as data arrives; "
                                         "the local broker (tansu) waits the whole time, so this is added per hop.")
    kafka_fetch_buffer_kbytes: int = Field(16_384, ge=1, description="Per consumer: KB of prefetched messages held "
                                           "in memory (librdkafka queued.max.messages.kbytes); with one batch, "
                                           "what a consumer holds while its output is down.")
    kafka_poison_attempts: int = Field(3, ge=1, description="How many times a batch that fails with a "
                                       "deterministic error (not a dependency being down) is retried before it is "
                                       "split to find the failing message(s), which are dead-lettered.")

    # The names come from the one declaration of the topology (shared/topology.py).
    def source_topic(self, table: str) -> str:
        return topology.source_topic(table, self.topic_prefix, self.source_database)

    def topic(self, role: str) -> str:
        return topology.topic(role, self.topic_prefix, self.source_database)

    @property
    def accounts_topic(self) -> str:
        return self.topic("accounts")

    @property
    def posts_topic(self) -> str:
        return self.topic("posts")

    @property
    def signal_topic(self) -> str:
        return self.topic("signal")

    @property
    def viable_posts_topic(self) -> str:
        return self.topic("viable")

    @property
    def embedded_posts_topic(self) -> str:
        return self.topic("embedded")


def dlq_topic(topic: str) -> str:
    """Kafka Connect's naming for dead letters of ``topic``."""
    return f"{topic}.dlq"


_DAY_MS = 24 * 3600 * 1000


class TopicSettings(_EnvSettings):
    """How the services create a missing topic, by its role (shared/kafka.py topic_role): source (Debezium's
    CDC topics), pipeline (derived topics, a replay's version topics too), signal, dlq. k8s declares the
    same settings as KafkaTopic resources (k8s/base/kafka-topics.yaml); docs/deploy.md "Deletes" explains
    the source topics' promise."""

    kafka_topic_replication_factor: int = Field(1, ge=1, description="Replicas of every topic the services "
                                                "create (production: 3, one per broker).")
    kafka_topic_min_insync_replicas: int = Field(1, ge=1, description="min.insync.replicas of those topics "
                                                 "(production: 2, so acks=all survives one broker down).")
    kafka_dlq_partitions: int = Field(1, ge=1, description="Partitions of dead-letter topics (low volume).")
    kafka_pipeline_retention_ms: int = Field(7 * _DAY_MS, ge=-1, description="retention.ms of pipeline topics.")
    kafka_dlq_retention_ms: int = Field(30 * _DAY_MS, ge=-1, description="retention.ms of dead-letter topics "
                                        "(time to inspect and re-drive).")
    kafka_source_delete_retention_ms: int = Field(
        7 * _DAY_MS, ge=0, description="delete.retention.ms of the compacted source topics: how long a tombstone "
        "stays after compaction, i.e. how long a consumer may be down and still see a delete (docs/deploy.md).")
    kafka_source_max_compaction_lag_ms: int = Field(
        _DAY_MS, ge=1, description="max.compaction.lag.ms of the source topics: a deleted row's older events "
        "are compacted away within this time, after which only its tombstone says it was deleted.")


class MariaDBSettings(_EnvSettings):
    mariadb_host: str = Field("127.0.0.1", description="MariaDB host (source of truth).")
    mariadb_port: int = Field(3307, description="MariaDB port; the local stack runs a private server here.")
    mariadb_user: str = Field("root", description="MariaDB user (needs REPLICATION SLAVE/CLIENT for cdc).")
    mariadb_password: str = Field("", description="MariaDB password.")
    mariadb_database: str = Field("influential", description="Database holding accounts and posts.")

    def connect_kwargs(self, *, with_database: bool = True) -> dict:
        kwargs = {
            "host": self.mariadb_host,
            "port": self.mariadb_port,
            "user": self.mariadb_user,
            "password": self.mariadb_password,
            "charset": "utf8mb4",
        }
        if with_database:
            kwargs["database"] = self.mariadb_database
        return kwargs


class RedisSettings(_EnvSettings):
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis holding state that must not be lost: "
                           "viability state, index versions, API keys, corrections, spend ledger.")
    redis_cache_url: str | None = Field(None, description="Redis for caches (embeddings, query vectors, LLM answers), "
                                        "which may evict; none = REDIS_URL. Production points it at an LRU Redis.")

    @property
    def cache_url(self) -> str:
        return self.redis_cache_url or self.redis_url


class VectorStoreSettings(_EnvSettings):
    vector_store: str = Field("edge", pattern="^(edge|server)$", description="edge (in-process Qdrant engine) or server.")
    qdrant_url: str | None = Field(None, description="Qdrant server URL when VECTOR_STORE=server.")
    qdrant_api_key: str | None = Field(None, description="Qdrant server API key.")
    qdrant_edge_path: Path = Field(PROJECT_ROOT / ".dev" / "qdrant", description="Edge shard directory.")
    posts_collection: str = Field("posts", description="Collection holding post vectors.")
    accounts_collection: str = Field("accounts", description="Collection of account summaries (for the "
                                     "posts collection's first version; a replay's posts_vN gets accounts_vN).")
    query_alias_cache_s: float = Field(1.0, ge=0, description="Seconds a query process reuses the active index "
                                       "version (the registry's alias) in-process (saves a Redis round trip per "
                                       "search); a replay's switch or rollback waits this long before it returns, "
                                       "so when it returns every replica searches the version it switched to.")
    indexer_batch_size: int = Field(1024, ge=1, description="Max events the indexer writes per batch (instead of "
                                    "KAFKA_BATCH_SIZE): every write ends with a sync whose cost is per batch, "
                                    "not per point (edge: an fsync of each segment file, 28-400 ms here).")
    indexer_deleted_version_retention_days: float = Field(
        37, gt=0, description="How long the indexer remembers the source version of a deleted post or purged "
        "account (in <collection>-deleted), so an older upsert arriving later is dropped; must cover the longest "
        "an old event can come back: dead-letter retention (30 days) + derived topics' retention (7 days).")


class QdrantPlanSettings(_EnvSettings):
    """How the Qdrant server lays out every collection the system creates (posts, accounts and a replay's
    posts_vN/accounts_vN alike); the defaults fit one node. docs/capacity.md explains the production numbers."""

    qdrant_expected_peers: int = Field(1, ge=1, description="Qdrant nodes that must have joined the cluster "
                                       "(GET /cluster) before a collection is created; until then creation waits, "
                                       "so shards and replicas spread over every node instead of the first one.")
    qdrant_shard_number: int = Field(1, ge=1, description="Shards per collection (a multiple of the node count).")
    qdrant_replication_factor: int = Field(1, ge=1, description="Copies of each shard (at most the node count).")
    qdrant_write_consistency_factor: int = Field(1, ge=1, description="Replicas that must confirm a write "
                                                 "(at most QDRANT_REPLICATION_FACTOR).")
    qdrant_on_disk: bool = Field(False, description="Original vectors, sparse index and payload on disk (RAM "
                                 "holds the quantized vectors and the HNSW graph).")
    qdrant_quantization: str = Field("none", pattern="^(none|int8)$", description="Scalar int8 quantization of "
                                     "the dense vectors (kept in RAM), or none.")
    qdrant_write_ordering: str = Field("medium", pattern="^(weak|medium|strong)$", description="Ordering of "
                                       "writes when QDRANT_REPLICATION_FACTOR > 1 (Qdrant's `ordering` parameter): "
                                       "medium routes a point's writes through one leader, so replicas agree.")


class ModelSettings(_EnvSettings):
    model_cache_dir: Path = Field(PROJECT_ROOT / ".dev" / "models", description="Where the ONNX model is built once.")
    embedding_batch_size: int = Field(32, ge=1, description="Texts per ONNX Runtime call (32 measured best).")
    embedding_threads: int = Field(2, ge=1, description="ONNX Runtime intra-op threads.")
    embedding_model_variant: Literal["fp32", "int8"] = Field(
        "fp32", description="The model live ingestion embeds posts with (and queries of the versions it builds): "
        "fp32, or int8 (dynamic quantisation: 1.56x the texts per CPU second here, vectors at cosine 0.997 to fp32's, "
        "search and tier-1 quality within the labelled sets' noise; the table is in docs/performance.md). An index keeps the model it was built with: to change it under "
        "existing data, build a new version with `ops.replay --model` rather than flipping this.")


class TaxonomySettings(_EnvSettings):
    taxonomy_dir: Path = Field(PROJECT_ROOT / "config" / "taxonomies", description="Directory of taxonomy YAML files "
                               "(every enabled taxonomy labels every post; switched-off verticals stay out of "
                               "search facets and account summaries).")


class ClassifierSettings(_EnvSettings):
    fewshot_refresh_s: float = Field(10.0, gt=0, description="How often tier 1 checks Redis for new corrections.")


class ServiceSettings(_EnvSettings):
    log_level: str = Field("INFO", description="Log level.")
    metrics_port: int = Field(0, description="Prometheus /metrics port for worker services (0 = off).")


class LlmSettings(_EnvSettings):
    """The optional LLM tier (tier-2 classification, LLM summaries): any OpenAI-compatible endpoint.

    Field figures behind the defaults: a 70B model on a managed endpoint classified 550k posts of
    4-5k tokens each for about $2,500, i.e. about $1 per million tokens and $0.0045 per post; such
    endpoints time out at 120 s and throttle (429) under parallel load.
    """

    llm_base_url: str | None = Field(
        None, description="OpenAI-compatible base URL (…/v1); requests go to {base}/chat/completions. None = no LLM tier.")
    llm_model: str = Field("local-model", description="Model name sent in requests; part of every cache key.")
    llm_api_key: SecretStr | None = Field(None, description="Bearer key for the endpoint (none for a local server).")
    # ~$1 per 1M tokens: $2,500 / (550k posts x ~4.5k tokens) on a managed 70B endpoint.
    llm_price_prompt_per_mtok: float = Field(1.0, ge=0, description="US dollars per 1M prompt tokens (cost model).")
    llm_price_completion_per_mtok: float = Field(
        1.0, ge=0, description="US dollars per 1M completion tokens (cost model).")
    llm_max_concurrency: int = Field(
        4, ge=1, description="Most requests in flight per process; halved on 429, regrown by one per window of successes.")
    # Below the endpoints' own 120 s, so we give up (and retry) before they do.
    llm_request_timeout_s: float = Field(60.0, gt=0, description="Timeout of one HTTP request.")
    llm_deadline_s: float = Field(300.0, gt=0, description="Total time for one batch of posts, retries included.")
    llm_max_retries: int = Field(4, ge=0, description="Retries of a request (429, 5xx, timeouts, malformed answers).")
    llm_backoff_base_s: float = Field(
        1.0, gt=0, description="Backoff before retry n is uniform in [0, base x 2^n] (full jitter), at least Retry-After.")
    llm_batch_size: int = Field(16, ge=1, description="Posts per classification request.")
    llm_post_token_budget: int = Field(
        400, ge=16, description="A post's text is cut to about this many tokens before it is sent (the field sent 4-5k).")
    llm_budget_usd: float | None = Field(
        None, ge=0, description="Hard spend cap over the Redis ledger: when reached, no more calls (tier 1 only).")
    llm_prompt_version: str = Field("v1", description="Bump when prompts change: part of every cache key.")
    llm_json_mode: bool = Field(
        True, description='Send response_format={"type": "json_object"} (turn off for endpoints that reject it).')
    llm_json_schema: bool = Field(
        False, description="Also send the answer's JSON schema in response_format (llama.cpp-style constrained "
        "decoding: small models keep to the shape and the vertical names); off for endpoints that reject it.")


class SummarizerSettings(_EnvSettings):
    summarizer_debounce_s: float = Field(
        30.0, gt=0, description="An account touched by a post event is summarized this long after the first "
        "event (later events in the window join the same recomputation).")
    summarizer_max_posts: int = Field(20_000, ge=1, description="Summarize at most this many most recent posts.")
    summarizer_representatives: int = Field(5, ge=1, le=20, description="Themes (representative posts) per summary.")
    summarizer_keywords: int = Field(12, ge=0, le=50, description="Distinctive words per summary.")
    summarizer_hashtags: int = Field(8, ge=0, le=50, description="Distinctive hashtags per summary.")
    summarizer_min_new_posts: int = Field(
        10, ge=1, description="Material change: this many posts newer than the summary's last post...")
    summarizer_min_change_ratio: float = Field(
        0.05, gt=0, description="...or the post count changed by this fraction (deletes, first posts).")
    summarizer_min_interval_s: float = Field(
        600.0, ge=0, description="An account that keeps posting is summarized again at most this often (a first "
        "summary is not held back): recomputing busy accounts every debounce window took CPU from the model.")
    summarizer_catch_up_timeout_s: float = Field(
        120.0, gt=0, description="Wait at most this long for the posts index to show an account's latest event "
        "before summarizing what it has.")
    summarizer_lease_s: float = Field(
        600.0, gt=0, description="A claimed account not finished within this time (a crashed worker) is due again.")
    summarizer_background_posts: int = Field(
        5_000, ge=0, description="Posts sampled from the whole index as the keyword background (what is ordinary).")
    summarizer_background_refresh_s: float = Field(3_600.0, gt=0, description="How often that sample is redrawn.")
    summarizer_poll_s: float = Field(0.5, gt=0, description="How often the worker looks for due accounts.")
    summarizer_llm: bool = Field(True, description="Add an LLM-written profile when LLM_BASE_URL is set.")
    summarizer_llm_token_budget: int = Field(
        4_000, ge=500, description="Prompt tokens one account's LLM summary may use, all requests together.")
    summarizer_llm_posts_per_theme: int = Field(
        8, ge=1, le=50, description="Posts per theme the LLM reads (those closest to the theme's representative).")
