"""Pipeline status for people: lag, throughput, dead letters, cache hit rates, freshness, index
version and LLM spend, gathered from Kafka, the services' /metrics, the index and Redis.

Each source may be down; the status then says so for that part instead of failing as a whole.
Kafka and /metrics are read at most every ``refresh_s`` seconds, however many pages poll.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import httpx
import numpy as np
import redis
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from services.query.active_collection import ActiveCollection
from services.query.kafka_offsets import KafkaOffsets
from services.query.models.status import (
    CacheStatus,
    FreshnessStatus,
    IndexStatus,
    IndexVersionStatus,
    KafkaStatus,
    ModelCount,
    ServiceStatus,
    StatusResponse,
    SweepStatus,
)
from shared import topology
from shared.config import KafkaSettings, dlq_topic
from shared.logging import get_logger
from shared.spend import LlmSpend, read_llm_spend
from shared.sparse import SPARSE_MODEL_ID
from shared.stored_post import PACKED_KEY, payload_fields
from shared.vectorstore import SearchFilter, VectorStore

log = get_logger("query.status")
logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per /metrics scrape would flood the log
FRESHNESS_SAMPLE = 2_000  # most recent writes looked at: enough for a p95, cheap to read
THROUGHPUT_WINDOW_S = 60
IN_PROCESS = "in-process"
SERVICE_CACHES = {"embedder": ("embedding",), "query": ("query",)}  # caches each service owns
Sample = tuple[str, dict[str, str], float]


@dataclass(frozen=True)
class PipelineService:
    name: str
    group: str | None  # None: a producer (cdc), measured by what it wrote
    topics: tuple[str, ...]


def pipeline_services(kafka: KafkaSettings) -> list[PipelineService]:
    """The stages the status page follows through Kafka, from the one declaration (shared/topology.py)."""
    return [_pipeline_service(kafka, stage) for stage in topology.STAGES if stage.on_status_page]


def _pipeline_service(kafka: KafkaSettings, stage: topology.Stage) -> PipelineService:
    if stage.source:  # it reads the database: measured by what it wrote
        return PipelineService(stage.name, None, tuple(kafka.topic(role) for role in stage.outputs))
    return PipelineService(stage.name, topology.live_group(stage.name, kafka.topic_prefix),
                           tuple(kafka.topic(role) for role in stage.inputs))


class PipelineStatus:
    def __init__(self, *, kafka: KafkaSettings, store: VectorStore, collection: ActiveCollection,
                 redis_client: redis.Redis,
                 embedding_model: str, metrics_urls: dict[str, str], freshness_window_s: int = 900,
                 refresh_s: float = 2.0) -> None:
        self.services = pipeline_services(kafka)
        self.store, self.collection, self.redis = store, collection, redis_client
        self.embedding_model, self.metrics_urls = embedding_model, metrics_urls
        self.freshness_window_s, self.refresh_s = freshness_window_s, refresh_s
        self._kafka = kafka
        self._offsets_client: KafkaOffsets | None = None  # created on first use: no broker connection before
        self._positions: dict[str, deque[tuple[float, int]]] = {s.name: deque() for s in self.services}
        self._cached: StatusResponse | None = None
        self._cached_at = 0.0
        self._lock = threading.Lock()
        # One client for every /metrics read: httpx.get() builds a client, and with it an SSL context (the CA
        # bundle parsed), per call; that was 37% of the query process's samples while a script polled the
        # status page during benchmark 1 (2026-12-07-tiny-5-1, query-m0.pyspy.txt).
        self._http = httpx.Client(timeout=1.0)

    def snapshot(self, indexer_running: bool) -> StatusResponse:
        with self._lock:
            if self._cached is None or time.monotonic() - self._cached_at >= self.refresh_s:
                self._cached, self._cached_at = self._gather(), time.monotonic()
            cached = self._cached
        # The point count is live: scripts poll it to wait for the index to settle.
        return cached.model_copy(update={"points": self.store.count(self.collection.name()),
                                         "indexer_running": indexer_running})

    def close(self) -> None:
        self._http.close()
        if self._offsets_client is not None:
            self._offsets_client.close()
            self._offsets_client = None

    @property
    def _offsets(self) -> KafkaOffsets:
        if self._offsets_client is None:
            kafka = self._kafka
            self._offsets_client = KafkaOffsets(kafka.kafka_bootstrap_servers, f"{kafka.topic_prefix}-status-reader")
        return self._offsets_client

    # --- gathering -----------------------------------------------------------------------------

    def _gather(self) -> StatusResponse:
        collection = self.collection.name()
        metrics = {s.name: self._metrics(s.name) for s in self.services}
        metrics["query"] = (_registry_samples(), IN_PROCESS)
        kafka, positions = self._kafka_positions()
        spend, spend_note = self._spend()
        index = self._index(collection)
        return StatusResponse(
            collection=collection, points=index.points, model_id=self.embedding_model,
            indexer_running=False, generated_at_ms=int(time.time() * 1000), kafka=kafka,
            services=[self._service(s, positions.get(s.name), metrics[s.name], kafka) for s in self.services],
            caches=_caches(metrics), freshness=self._freshness(collection), index=index, llm_spend=spend,
            llm_spend_note=spend_note,
        )

    def _metrics(self, service: str) -> tuple[list[Sample] | None, str]:
        if service == "indexer" and self.metrics_urls.get("indexer") == IN_PROCESS:
            return _registry_samples(), IN_PROCESS
        url = self.metrics_urls.get(service)
        if not url or url == IN_PROCESS:
            return None, "not configured (STATUS_METRICS_URLS)"
        try:
            response = self._http.get(url)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            return None, f"{url} unreachable: {type(exc).__name__}"
        return _parse_samples(response.text), url

    def _kafka_positions(self) -> tuple[KafkaStatus, dict[str, dict]]:
        try:
            partitions = self._offsets.partitions()
            return KafkaStatus(reachable=True), {s.name: self._position(s, partitions) for s in self.services}
        except Exception as exc:  # the broker (or one call) timed out: report, do not fail the page
            log.warning("status: kafka unavailable", error=str(exc))
            return KafkaStatus(reachable=False, problem=f"broker unreachable: {exc}"), {}

    def _position(self, service: PipelineService, partitions: dict[str, int]) -> dict:
        tps = [(t, p) for t in service.topics for p in range(partitions.get(t, 0))]
        ends = {tp: self._offsets.end_offset(*tp)[1] for tp in tps}
        dlq = sum(_topic_size(self._offsets, dlq_topic(t), partitions) for t in service.topics)
        if service.group is None:
            return {"position": sum(ends.values()), "lag": None, "dlq": None}
        committed = self._offsets.committed(service.group, tps) if tps else {}
        # A partition never committed counts from the start of the topic: all of it is lag.
        position = sum(committed.get(tp) or 0 for tp in tps)
        lag = sum(max(0, ends[tp] - (committed.get(tp) or 0)) for tp in tps)
        return {"position": position, "lag": lag, "dlq": dlq}

    def _service(self, service: PipelineService, position: dict | None, metrics: tuple[list[Sample] | None, str],
                 kafka: KafkaStatus) -> ServiceStatus:
        samples, source = metrics
        errors = poison = retries = None
        if samples is not None:
            poison = int(_sum(samples, "pipeline_poison_messages_total", service=service.name))
            retries = int(_sum(samples, "pipeline_batch_retries_total", service=service.name, cause="dependency"))
            cache_errors = sum(_sum(samples, "pipeline_cache_errors_total", cache=cache)
                               for cache in SERVICE_CACHES.get(service.name, ()))
            errors = int(_sum(samples, "pipeline_dlq_messages_total", service=service.name) + cache_errors)
        elif position is not None and position["dlq"] is not None:
            errors = position["dlq"]
        return ServiceStatus(
            service=service.name, consumer_group=service.group, topics=list(service.topics),
            lag=position["lag"] if position else None, position=position["position"] if position else None,
            throughput_per_s=self._throughput(service.name, position["position"]) if position else None,
            dlq_messages=position["dlq"] if position else None, errors=errors, poison_messages=poison,
            dependency_retries=retries, metrics=source,
            problem=None if kafka.reachable else "broker unreachable",
            sweep=sweep_status(samples) if service.name == "viability" and samples is not None else None,
        )

    def _throughput(self, service: str, position: int) -> float | None:
        history, now = self._positions[service], time.monotonic()
        history.append((now, position))
        while len(history) > 2 and now - history[1][0] >= THROUGHPUT_WINDOW_S:
            history.popleft()
        first_at, first = history[0]
        return None if now - first_at < 1.0 else max(0.0, (position - first) / (now - first_at))

    def _freshness(self, collection: str) -> FreshnessStatus:
        since = int(time.time() * 1000) - self.freshness_window_s * 1000
        points = self.store.scroll_points(collection, SearchFilter(indexed_after=since), FRESHNESS_SAMPLE,
                                          order_by="indexed_at_ms", fields=["indexed_at_ms", "source_ts_ms",
                                                                            "source_snapshot", PACKED_KEY])
        posts = [payload_fields(p.payload) for p in points]
        delays = np.array([(post["indexed_at_ms"] - post["source_ts_ms"]) / 1000 for post in posts
                           if not post.get("source_snapshot") and "source_ts_ms" in post])
        quantile = (lambda q: round(float(np.quantile(delays, q)), 3)) if delays.size else (lambda q: None)
        return FreshnessStatus(
            window_s=self.freshness_window_s, samples=int(delays.size), p50_s=quantile(0.5), p95_s=quantile(0.95),
            max_s=round(float(delays.max()), 3) if delays.size else None,
            basis=f"MariaDB commit (binlog timestamp, 1 s resolution) to written in the index, for the "
                  f"{FRESHNESS_SAMPLE} most recent writes within the window; snapshot reads excluded",
        )

    def _index(self, collection: str) -> IndexStatus:
        models = self.store.facet(collection, "model_id", limit=20)
        return IndexStatus(
            collection=collection, layout="dense (cosine) + sparse 'text' (BM25, IDF at query time), RRF fusion",
            points=self.store.count(collection),
            keyword_vectors=self.store.count(collection, SearchFilter(has_sparse_vector=True)),
            embedding_model=self.embedding_model, sparse_model=SPARSE_MODEL_ID,
            models_in_index=[ModelCount(model_id=str(m.value), points=m.count) for m in models],
            versions=self._versions(collection),
        )

    def _versions(self, active: str) -> list[IndexVersionStatus]:
        try:
            versions = self.collection.versions()
        except redis.RedisError:
            return []
        return [IndexVersionStatus(collection=v.collection, version=v.version, active=v.collection == active,
                                   stage=v.stage, model_variant=v.model_variant, points=v.points) for v in versions]

    def _spend(self) -> tuple[LlmSpend, str]:
        try:
            spend = read_llm_spend(self.redis)
        except redis.RedisError as exc:
            return LlmSpend(usd=0.0, calls=0, by_model=[]), f"Redis unreachable: {exc}"
        note = "recorded by the LLM stages (shared.spend)" if spend.calls else "no LLM call recorded yet"
        return spend, note


def _topic_size(offsets: KafkaOffsets, topic: str, partitions: dict[str, int]) -> int:
    total = 0
    for partition in range(partitions.get(topic, 0)):
        low, end = offsets.end_offset(topic, partition)
        total += end - low
    return total


def _registry_samples() -> list[Sample]:
    return [(s.name, s.labels, s.value) for family in REGISTRY.collect() for s in family.samples]


def _parse_samples(text: str) -> list[Sample]:
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples]


def _sum(samples: Iterable[Sample], name: str, **labels: str) -> float:
    return sum(v for n, lbl, v in samples if n == name and all(lbl.get(k) == w for k, w in labels.items()))


def sweep_status(samples: list[Sample], loop: str = "live") -> SweepStatus | None:
    """The last sweep of one viability loop, from its /metrics; None before its first sweep."""
    found = {n: v for n, lbl, v in samples if n.startswith("viability_sweep") and lbl.get("loop") == loop}
    if "viability_sweep_as_of_timestamp_seconds" not in found:
        return None
    return SweepStatus(as_of_ms=int(found["viability_sweep_as_of_timestamp_seconds"] * 1000),
                       accounts_checked=int(found.get("viability_sweep_last_checked_accounts", 0)),
                       accounts_purged=int(found.get("viability_sweep_last_purged_accounts", 0)),
                       accounts_purged_total=int(found.get("viability_sweep_accounts_purged_total", 0)))


def _caches(metrics: dict[str, tuple[list[Sample] | None, str]]) -> list[CacheStatus]:
    found = []
    for service, (samples, source) in metrics.items():
        if samples is None or (source == IN_PROCESS and service != "query"):
            continue  # an in-process indexer shares the query process's registry: count its caches once
        names = sorted({lbl["cache"] for n, lbl, _ in samples if n == "pipeline_cache_requests_total"})
        for cache in names:
            hits = int(_sum(samples, "pipeline_cache_requests_total", cache=cache, result="hit"))
            misses = int(_sum(samples, "pipeline_cache_requests_total", cache=cache, result="miss"))
            errors = int(_sum(samples, "pipeline_cache_errors_total", cache=cache))
            found.append(CacheStatus(cache=cache, service=service, hits=hits, misses=misses, errors=errors,
                                     hit_rate=round(hits / (hits + misses), 4) if hits + misses else None))
    return sorted(found, key=lambda c: (c.service, c.cache))
