"""Configuration read from environment variables, one pydantic-settings class per concern.

Every variable has a default that works for the local stack (`make dev`); production overrides
them through ConfigMaps/Secrets. Field names map to upper-case env vars (``kafka_bootstrap_servers``
-> ``KAFKA_BOOTSTRAP_SERVERS``). The README lists them all.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

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

    def source_topic(self, table: str) -> str:
        return f"{self.topic_prefix}.{self.source_database}.{table}"

    @property
    def accounts_topic(self) -> str:
        return self.source_topic("accounts")

    @property
    def posts_topic(self) -> str:
        return self.source_topic("posts")

    @property
    def signal_topic(self) -> str:
        # Debezium's default for signal.kafka.topic.
        return f"{self.topic_prefix}-signal"

    @property
    def viable_posts_topic(self) -> str:
        return f"{self.topic_prefix}.pipeline.posts.viable"

    @property
    def embedded_posts_topic(self) -> str:
        return f"{self.topic_prefix}.pipeline.posts.embedded"


def dlq_topic(topic: str) -> str:
    """Kafka Connect's naming for dead letters of ``topic``."""
    return f"{topic}.dlq"


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
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis for caches and viability state.")


class VectorStoreSettings(_EnvSettings):
    vector_store: str = Field("edge", pattern="^(edge|server)$", description="edge (in-process Qdrant engine) or server.")
    qdrant_url: str | None = Field(None, description="Qdrant server URL when VECTOR_STORE=server.")
    qdrant_api_key: str | None = Field(None, description="Qdrant server API key.")
    qdrant_edge_path: Path = Field(PROJECT_ROOT / ".dev" / "qdrant", description="Edge shard directory.")
    posts_collection: str = Field("posts", description="Collection holding post vectors.")


class ModelSettings(_EnvSettings):
    model_cache_dir: Path = Field(PROJECT_ROOT / ".dev" / "models", description="Where the ONNX model is built once.")
    embedding_batch_size: int = Field(32, ge=1, description="Texts per ONNX Runtime call (32 measured best).")
    embedding_threads: int = Field(2, ge=1, description="ONNX Runtime intra-op threads.")


class ClassifierSettings(_EnvSettings):
    taxonomy_dir: Path = Field(PROJECT_ROOT / "config" / "taxonomies", description="Directory of taxonomy YAML files "
                               "(every enabled taxonomy labels every post).")
    fewshot_refresh_s: float = Field(10.0, gt=0, description="How often tier 1 checks Redis for new corrections.")


class ServiceSettings(_EnvSettings):
    log_level: str = Field("INFO", description="Log level.")
    metrics_port: int = Field(0, description="Prometheus /metrics port for worker services (0 = off).")
