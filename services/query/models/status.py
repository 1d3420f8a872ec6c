"""Pipeline status: lag, throughput, errors, caches, freshness, index version, LLM spend."""

from __future__ import annotations

from pydantic import BaseModel, Field

from shared.spend import LlmSpend


class SweepStatus(BaseModel):
    """The viability service's last sweep of its live loop (time-based transitions)."""

    as_of_ms: int = Field(description="Clock of the last completed sweep; events are decided by it until the next.")
    accounts_checked: int = Field(description="Viable accounts the last sweep evaluated.")
    accounts_purged: int = Field(description="Accounts the last sweep purged (no post within N days).")
    accounts_purged_total: int = Field(description="Accounts purged by sweeps since the service started.")


class ServiceStatus(BaseModel):
    service: str
    consumer_group: str | None = Field(description="null for producers (cdc).")
    topics: list[str] = Field(description="Topics it reads (cdc: the topics it writes).")
    lag: int | None = Field(None, description="Messages not yet committed by the group, all partitions.")
    position: int | None = Field(None, description="Sum of committed offsets (cdc: of end offsets).")
    throughput_per_s: float | None = Field(None, description="Messages/s over the last window; null until two samples.")
    dlq_messages: int | None = Field(None, description="Messages in the dead-letter topics of its inputs.")
    errors: int | None = Field(None, description="Dead letters plus cache failures it reported (when its metrics are reachable).")
    poison_messages: int | None = Field(None, description="Of its dead letters, the messages that failed "
                                        "processing the same way every time (found by splitting their batch).")
    dependency_retries: int | None = Field(None, description="Batches it held and retried because a dependency "
                                           "was down or timing out (nothing is dead-lettered for those).")
    metrics: str = Field(description="Where its counters came from: a /metrics URL, 'in-process', or why none.")
    problem: str | None = None
    sweep: SweepStatus | None = Field(None, description="viability only: its last sweep, from its /metrics.")


class CacheStatus(BaseModel):
    cache: str
    service: str
    hits: int
    misses: int
    hit_rate: float | None
    errors: int


class FreshnessStatus(BaseModel):
    window_s: int
    samples: int = Field(description="Posts written in the window from live changes (snapshot reads excluded).")
    p50_s: float | None
    p95_s: float | None
    max_s: float | None
    basis: str


class ModelCount(BaseModel):
    model_id: str
    points: int


class IndexVersionStatus(BaseModel):
    collection: str
    version: int
    active: bool = Field(description="The posts alias points at it: search reads it.")
    stage: str = Field(description="Where its replay started: index (re-index) or embed (re-embed).")
    model_variant: str
    points: int = Field(description="As last reported by its indexer.")


class IndexStatus(BaseModel):
    collection: str = Field(description="The active index version: what search reads.")
    layout: str
    points: int
    keyword_vectors: int = Field(description="Points with a keyword vector; fewer than points until a replay.")
    embedding_model: str = Field(description="Model this API embeds queries with.")
    models_in_index: list[ModelCount] = Field(description="More than one: a re-index is under way.")
    sparse_model: str
    versions: list[IndexVersionStatus] = Field(description="Registered index versions (replays); [] without a "
                                                           "registry.")


class KafkaStatus(BaseModel):
    reachable: bool
    problem: str | None = None


class StatusResponse(BaseModel):
    collection: str
    points: int
    model_id: str
    indexer_running: bool
    generated_at_ms: int
    kafka: KafkaStatus
    services: list[ServiceStatus]
    caches: list[CacheStatus]
    freshness: FreshnessStatus
    index: IndexStatus
    llm_spend: LlmSpend
    llm_spend_note: str
