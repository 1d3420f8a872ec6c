"""The edge host: the search API and the writers of the in-process (edge) store, in one process.

An edge shard has one owner (VECTOR_STORE=edge), so what writes the store runs here next to the API
that reads it, sharing one open store: one indexer loop per registered index version, the learner of
people's corrections (it feeds the indexer's tier 1 and rewrites labels in the store) and the account
summarizer. ``make dev`` and the end-to-end tests run this; production (a Qdrant server) runs
``python -m services.query.main``, the API alone, and each writer as its own service.
"""

from __future__ import annotations

import threading

from services.classifier.feedback import TopicPublisher, start_feedback_learner
from services.indexer.service import indexer_versions
from services.query.app import CoHosted, QuerySettings, create_app
from services.query.context import QueryContext
from services.query.main import serve
from services.summarizer.service import SummarizerConfig, start_summarizer
from shared.bootstrap import open_labeller, open_registry
from shared.classification.labelling import TierOneLabeller
from shared.config import (
    ClassifierSettings,
    KafkaSettings,
    LlmSettings,
    RedisSettings,
    SummarizerSettings,
    TaxonomySettings,
    VectorStoreSettings,
)
from shared.logging import get_logger

log = get_logger("query")


def start_indexer(context: QueryContext, stop: threading.Event, kafka: KafkaSettings,
                  store_settings: VectorStoreSettings, labeller: TierOneLabeller) -> threading.Thread:
    """One indexer loop per registered index version (the live one, and any replay being built)."""
    thread = threading.Thread(target=run_indexers, args=(context, stop, kafka, store_settings, labeller),
                              name="indexer-supervisor", daemon=True)
    thread.start()
    return thread


def run_indexers(context: QueryContext, stop: threading.Event, kafka: KafkaSettings,
                 store_settings: VectorStoreSettings, labeller: TierOneLabeller) -> None:
    """The supervisor fails when Redis (its registry) does; a standalone indexer would then be restarted
    by Kubernetes, so here it is restarted in place. Offsets were committed only after writes, so the
    restarted loops resume where the store is."""
    while not stop.is_set():
        try:
            # open_registry registers the live version again if Redis came back empty.
            registry = open_registry(kafka, store_settings, context.redis, context.posts_collection.live_variant)
            indexer_versions(kafka, context.store, registry, stop=stop, labeller=labeller,
                             batch_size=store_settings.indexer_batch_size,
                             deleted_retention_s=store_settings.indexer_deleted_version_retention_days * 86_400).run()
        except Exception as exc:  # noqa: BLE001 (any failure: log it and start again)
            log.warning("indexer supervisor failed, restarting in 2 s", error=repr(exc))
            stop.wait(2)


def edge_writers(kafka: KafkaSettings, store_settings: VectorStoreSettings, classifier: ClassifierSettings,
                 summarizer: SummarizerConfig) -> CoHosted:
    """The store's writers, started by the API once its context (store, Redis, embedder) is open."""

    def start(context: QueryContext, stop: threading.Event) -> dict[str, threading.Thread]:
        embedder = context.posts.encoder.embedder
        labeller = open_labeller(embedder.embed, context.redis, context.catalog, classifier)
        return {
            "indexer": start_indexer(context, stop, kafka, store_settings, labeller),
            # Corrections need post vectors: the learner runs where the store is, like the indexer. Its label
            # changes go through the indexer (one writer per point), as events on the version's topic.
            "feedback": start_feedback_learner(context.redis, context.store, context.posts_collection.name,
                                               labeller, TopicPublisher(kafka, context.posts_collection.registry),
                                               stop),
            "summarizer": start_summarizer(context.store, embedder, stop, summarizer, context.catalog.is_enabled),
        }

    # The indexer's batch and store metrics are this process's: the status page reads them here.
    return CoHosted(start=start, metrics_in_process=("indexer",))


def main() -> None:
    settings, kafka, store_settings = QuerySettings(), KafkaSettings(), VectorStoreSettings()
    taxonomies = TaxonomySettings()
    summarizer = SummarizerConfig(kafka=kafka, store=store_settings, redis=RedisSettings(),
                                  summarizer=SummarizerSettings(), llm=LlmSettings(), taxonomies=taxonomies)
    writers = edge_writers(kafka, store_settings, ClassifierSettings(), summarizer)
    serve(create_app(settings, cohosted=writers, taxonomies=taxonomies), settings)


if __name__ == "__main__":
    main()
