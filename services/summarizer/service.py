"""The summarizer's loops, built from adapters and settings by an entry point: ``services/summarizer/main.py``
(its own process, Qdrant server) or ``services/query/edge_host.py`` (next to the API, which shares the
in-process edge store).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson
import redis
from confluent_kafka import Message

from services.summarizer.dirty import DirtyAccounts
from services.summarizer.llm_tier import LlmSummaryWriter
from services.summarizer.refresh import AccountRefresher, SummaryWorker, TouchedAccounts
from shared import topology
from shared.bootstrap import open_registry
from shared.cache import connect_redis
from shared.classification.taxonomy import TaxonomyCatalog
from shared.config import (
    KafkaSettings,
    LlmSettings,
    RedisSettings,
    SummarizerSettings,
    TaxonomySettings,
    VectorStoreSettings,
    dlq_topic,
)
from shared.embedding import TextEmbedder, model_variant_of
from shared.events import EMBEDDING_DIM, MalformedEvent, parse_embedded_topic_event
from shared.health import Heartbeat
from shared.index_registry import IndexRegistry, IndexVersion, accounts_collection_for
from shared.kafka import BatchLoop, BatchResult, ensure_topics, make_consumer, make_producer
from shared.llm import build_llm_client
from shared.logging import get_logger
from shared.vectorstore import VectorStore
from shared.version_loops import VersionLoops

log = get_logger("summarizer")
MAX_ACCOUNTS = 1_000_000  # facet limit when every account is marked due (the large demo has ~17,000)
LabelFilter = Callable[[str, str], bool]


class SummarizerService:
    def __init__(self, touched: TouchedAccounts) -> None:
        self.touched = touched

    def handle_batch(self, messages: list[Message]) -> BatchResult:
        result = BatchResult()
        self.touched.apply(result.parse_each(messages, with_account))
        return result


def with_account(message: Message) -> tuple[int, object]:
    event = parse_embedded_topic_event(message.value())
    return account_id_of(event, message.key()), event


def account_id_of(event: object, key: bytes | None) -> int:
    """The event's account: from the event, else from the message key ({"account_id": ...})."""
    post = getattr(event, "post", None)
    account_id = post.account_id if post is not None else getattr(event, "account_id", None)
    if account_id is None and key:
        try:
            account_id = orjson.loads(key).get("account_id")
        except (orjson.JSONDecodeError, AttributeError):
            account_id = None
    if not isinstance(account_id, int):
        raise MalformedEvent("event names no account (neither in the event nor in the key)")
    return account_id


def summarizer_group(kafka: KafkaSettings, registry: IndexRegistry, version: IndexVersion) -> str:
    if version.collection == registry.alias:
        return topology.live_group("summarizer", kafka.topic_prefix)
    return topology.version_group("summarizer", kafka.topic_prefix, version.collection)


@dataclass(frozen=True)
class SummarizerParts:
    """What every index version's summarizer shares."""

    kafka: KafkaSettings
    store: VectorStore
    registry: IndexRegistry
    redis: redis.Redis
    embedder: TextEmbedder
    settings: SummarizerSettings
    accounts_base: str
    label_enabled: LabelFilter | None = None
    llm: LlmSummaryWriter | None = None
    heartbeat: Heartbeat | None = None

    def accounts_collection(self, posts_collection: str) -> str:
        return accounts_collection_for(posts_collection, self.registry.alias, self.accounts_base)

    def build(self, version: IndexVersion, stop: threading.Event) -> BatchLoop:
        """The version's consumer loop (returned, run by VersionLoops) and its worker (started here;
        both end when ``stop`` is set)."""
        accounts = self.accounts_collection(version.collection)
        self.store.ensure_collection(version.collection, EMBEDDING_DIM)
        dirty = DirtyAccounts(self.redis, self.kafka.topic_prefix, accounts)
        refresher = AccountRefresher(self.store, version.collection, accounts, self.embedder, self.settings,
                                     self.label_enabled, self.llm)
        if refresher.recreated:
            mark_all_accounts(self.store, version.collection, dirty)
        worker = SummaryWorker(dirty, refresher, self.settings, stop)
        threading.Thread(target=worker.run, name=f"summarizer-worker-{accounts}", daemon=True).start()
        touched = TouchedAccounts(self.store, accounts, dirty, int(self.settings.summarizer_debounce_s * 1000))
        return summarizer_loop(self.kafka, touched, stop, self.heartbeat,
                               group=summarizer_group(self.kafka, self.registry, version), topic=version.source_topic)


def mark_all_accounts(store: VectorStore, posts_collection: str, dirty: DirtyAccounts) -> None:
    """Every account with indexed posts is due now: their summaries are rebuilt into a new collection."""
    accounts = store.facet(posts_collection, "account_id", None, limit=MAX_ACCOUNTS)
    dirty.mark({int(a.value): None for a in accounts}, int(time.time() * 1000))
    log.warning("every account marked for a new summary", accounts=len(accounts), collection=posts_collection)


def summarizer_versions(parts: SummarizerParts, stop: threading.Event) -> VersionLoops:
    """Per registered index version a consumer marking accounts dirty and a worker refreshing them, into
    that version's accounts collection (so a replay's alias switch brings its summaries along)."""
    return VersionLoops(parts.registry, service="summarizer", wants=lambda version: True, build=parts.build, stop=stop)


def summarizer_loop(kafka: KafkaSettings, touched: TouchedAccounts, stop: threading.Event,
                    heartbeat: Heartbeat | None = None, *, group: str, topic: str) -> BatchLoop:
    ensure_topics(kafka, [topic, dlq_topic(topic)])
    return BatchLoop(service="summarizer", settings=kafka, consumer=make_consumer(kafka, group),
                     producer=make_producer(kafka), topics=[topic], handle_batch=SummarizerService(touched).handle_batch,
                     stop=stop, heartbeat=heartbeat)


@dataclass(frozen=True)
class SummarizerConfig:
    """The settings the summarizer is wired from, read once by the entry point that hosts it."""

    kafka: KafkaSettings
    store: VectorStoreSettings
    redis: RedisSettings
    summarizer: SummarizerSettings
    llm: LlmSettings
    taxonomies: TaxonomySettings


def open_summarizer(store: VectorStore, embedder: TextEmbedder, stop: threading.Event, config: SummarizerConfig, *,
                    label_enabled: LabelFilter | None = None, heartbeat: Heartbeat | None = None) -> VersionLoops:
    """Wired from the settings; the registry registers the live version if Redis has none."""
    kafka, store_settings, settings = config.kafka, config.store, config.summarizer
    redis_client = connect_redis(config.redis.redis_url)
    if label_enabled is None:
        label_enabled = TaxonomyCatalog.load(config.taxonomies.taxonomy_dir).is_enabled
    cache_client = connect_redis(config.redis.cache_url)
    client = build_llm_client(config.llm, redis_client, cache_client) if settings.summarizer_llm else None
    parts = SummarizerParts(kafka=kafka, store=store, registry=open_registry(kafka, store_settings, redis_client, model_variant_of(embedder.model_id)),
                            redis=redis_client, embedder=embedder, settings=settings,
                            accounts_base=store_settings.accounts_collection, label_enabled=label_enabled,
                            llm=LlmSummaryWriter(client, settings.summarizer_llm_token_budget) if client else None,
                            heartbeat=heartbeat)
    return summarizer_versions(parts, stop)


def start_summarizer(store: VectorStore, embedder: TextEmbedder, stop: threading.Event, config: SummarizerConfig,
                     label_enabled: LabelFilter | None = None) -> threading.Thread:
    """The summarizer inside another process (the edge host owns the edge shards), restarted in place
    when Redis or the broker fails (a standalone one would be restarted by Kubernetes)."""

    def run() -> None:
        while not stop.is_set():
            try:
                open_summarizer(store, embedder, stop, config, label_enabled=label_enabled).run()
            except Exception as exc:  # noqa: BLE001 (any failure: log it and start again)
                log.warning("summarizer failed, restarting in 2 s", error=repr(exc))
                stop.wait(2)

    thread = threading.Thread(target=run, name="summarizer-supervisor", daemon=True)
    thread.start()
    return thread
