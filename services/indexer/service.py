"""The indexer's loops: one per registered index version, each applying its embedded topic to its
collection. Built from adapters by an entry point: ``services/indexer/main.py`` (its own process) or
``services/query/edge_host.py`` (next to the API, which shares the in-process edge store).
"""

from __future__ import annotations

import threading

from confluent_kafka import Message

from services.indexer.core import DELETED_VERSION_RETENTION_S, Labeller, PostIndexer
from shared.bootstrap import live_indexer_group
from shared.config import KafkaSettings, dlq_topic
from shared.events import EMBEDDING_DIM, parse_embedded_topic_event
from shared.health import Heartbeat
from shared.index_registry import IndexRegistry, IndexVersion
from shared.kafka import BatchLoop, BatchResult, ensure_topics, make_consumer, make_producer
from shared.metrics import STAGE_SECONDS
from shared.version_loops import VersionLoops
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
                 topic: str | None = None, labeller: Labeller | None = None,
                 batch_size: int | None = None,
                 deleted_retention_s: float = DELETED_VERSION_RETENTION_S) -> BatchLoop:
    source = topic or kafka.embedded_posts_topic
    ensure_topics(kafka, [source, dlq_topic(source)])
    service = IndexerService(PostIndexer(store, collection, EMBEDDING_DIM, labeller, deleted_retention_s))
    consumer = make_consumer(kafka, group or live_indexer_group(kafka))
    # Larger batches than the other services: the store's sync is paid once per batch (bench 2).
    return BatchLoop(service="indexer", settings=kafka, consumer=consumer, producer=make_producer(kafka),
                     topics=[source], handle_batch=service.handle_batch, stop=stop, heartbeat=heartbeat,
                     batch_size=batch_size)


def indexer_versions(kafka: KafkaSettings, store: VectorStore, registry: IndexRegistry, *, stop: threading.Event,
                     heartbeat: Heartbeat | None = None, labeller: Labeller | None = None,
                     batch_size: int, deleted_retention_s: float = DELETED_VERSION_RETENTION_S,
                     poll_s: float = 2.0) -> VersionLoops:
    """One indexer loop per registered index version: the live one and any version a replay is building
    run side by side (each its own consumer group), so live changes reach both; a dropped version's loop
    stops. The labeller is shared by every version's loop: same taxonomies, same corrections. The loops
    also register the live version again if Redis came back empty, and report each collection's point
    count to the registry (a replay's progress and verification)."""

    def build(version: IndexVersion, loop_stop: threading.Event) -> BatchLoop:
        return indexer_loop(kafka, store, version.collection, loop_stop, heartbeat, group=version.indexer_group,
                            topic=version.source_topic, labeller=labeller, batch_size=batch_size,
                            deleted_retention_s=deleted_retention_s)

    return VersionLoops(registry, service="indexer", wants=lambda version: True, build=build, stop=stop,
                        poll_s=poll_s, keep_live_registered=True, count_points=store.count)
