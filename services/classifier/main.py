"""classifier: second opinions (tier 2, an LLM) on the posts tier 1 is unsure about.

Reads:   <prefix>.pipeline.posts.embedded   post.embedded (other kinds are not for it: skipped)
Writes:  <prefix>.pipeline.posts.embedded   key {"account_id"}  post.labels
         <prefix>.pipeline.posts.embedded.dlq
It writes to the topic it reads, keyed like the post's other events, so an opinion always lands
after the upsert it was decided from, on the partition the indexer reads in order. Its own
post.labels events come back to it and are skipped.

Without LLM_BASE_URL no LLM is called: the service still measures the uncertain share (what tier 2
would cost) and the sliding-window histogram of predicted verticals (drift). Index versions a replay builds from their own topic get
a loop of their own; LLM answers are cached, so a replay's opinions are free.
"""

from __future__ import annotations

import threading

import redis

from confluent_kafka import Message

from services.classifier.core import ClassifiedBatch, PostClassifier
from services.classifier.llm_tier import LlmVerticalClassifier
from shared import topology
from shared.bootstrap import live_indexer_group, load_embedder, open_labeller
from shared.cache import connect_redis
from shared.classification.taxonomy import TaxonomyCatalog
from shared.classification.tier_one import VerticalDrift
from shared.config import (
    ClassifierSettings,
    KafkaSettings,
    LlmSettings,
    ModelSettings,
    RedisSettings,
    ServiceSettings,
    TaxonomySettings,
    VectorStoreSettings,
    dlq_topic,
)
from shared.events import account_key, encode, parse_embedded_topic_event
from shared.health import Heartbeat, HealthServer, kafka_reachable, shutdown_event
from shared.index_registry import IndexRegistry, IndexVersion
from shared.kafka import BatchLoop, BatchResult, OutboundMessage, ensure_topics, make_consumer, make_producer
from shared.llm import LlmClient
from shared.logging import configure_logging, get_logger
from shared.metrics import CLASSIFIER_OPINIONS, CLASSIFIER_POSTS, STAGE_SECONDS
from shared.version_loops import VersionLoops

log = get_logger("classifier")


class ClassifierService:
    def __init__(self, classifier: PostClassifier, output_topic: str, drift: VerticalDrift | None = None) -> None:
        self.classifier = classifier
        self.output_topic = output_topic
        self.drift = drift  # the live loop's: what the index is being filled with

    def handle_batch(self, messages: list[Message]) -> BatchResult:
        result = BatchResult()
        events = result.parse_each(messages, lambda message: parse_embedded_topic_event(message.value()))
        with STAGE_SECONDS.labels(stage="classify_batch").time():
            batch = self.classifier.process(events)
        count(batch)
        if self.drift is not None:
            self.drift.observe(batch.results)
        for opinion in batch.opinions:
            result.outputs.append(OutboundMessage(self.output_topic, account_key(opinion.account_id), encode(opinion)))
        return result


def count(batch: ClassifiedBatch) -> None:
    for taxonomy, uncertain in batch.uncertain.items():
        CLASSIFIER_POSTS.labels(taxonomy=taxonomy, route="uncertain").inc(uncertain)
        CLASSIFIER_POSTS.labels(taxonomy=taxonomy, route="confident").inc(batch.posts - uncertain)
    for opinion in batch.opinions:
        CLASSIFIER_OPINIONS.labels(taxonomy=opinion.taxonomy).inc()


def classifier_loop(kafka: KafkaSettings, classifier: PostClassifier, *, topic: str, group: str,
                    stop: threading.Event, heartbeat: Heartbeat | None = None,
                    drift: VerticalDrift | None = None) -> BatchLoop:
    ensure_topics(kafka, [topic, dlq_topic(topic)])
    service = ClassifierService(classifier, output_topic=topic, drift=drift)
    return BatchLoop(service="classifier", settings=kafka, consumer=make_consumer(kafka, group),
                     producer=make_producer(kafka), topics=[topic], handle_batch=service.handle_batch, stop=stop,
                     heartbeat=heartbeat)


def replay_classifiers(kafka: KafkaSettings, registry: IndexRegistry, classifier: PostClassifier,
                       stop: threading.Event, heartbeat: Heartbeat) -> VersionLoops:
    """A loop per index version a replay builds. Stages embed and pipeline have an embedded topic of their
    own; a stage-index (re-classify) version reads the live one again from where the replay started it,
    publishing its opinions there too, where the live indexer applies them as well."""

    def build(version: IndexVersion, loop_stop: threading.Event) -> BatchLoop:
        return classifier_loop(kafka, classifier, topic=version.source_topic,
                               group=topology.classifier_group(version.indexer_group), stop=loop_stop,
                               heartbeat=heartbeat)

    live = live_indexer_group(kafka)
    return VersionLoops(registry, service="classifier", wants=lambda v: v.indexer_group != live, build=build,
                        stop=stop)


def build_classifier(redis_client: redis.Redis, cache_client: redis.Redis, model: ModelSettings,
                     settings: ClassifierSettings, llm: LlmSettings, taxonomies: TaxonomySettings) -> PostClassifier:
    embedder = load_embedder(model)
    catalog = TaxonomyCatalog.load(taxonomies.taxonomy_dir)
    tier_two = LlmVerticalClassifier(LlmClient(llm, redis_client, cache_client=cache_client)) \
        if llm.llm_base_url else None
    log.info("classifier ready", taxonomies=[t.name for t in catalog.all()],
             tier_two=llm.llm_model if tier_two else "off (no LLM_BASE_URL)")
    return PostClassifier(open_labeller(embedder.embed, redis_client, catalog, settings),
                          {t.name: t for t in catalog.all()}, tier_two, tier_two_model=llm.llm_model)


def main() -> None:
    settings, kafka = ServiceSettings(), KafkaSettings()
    configure_logging(settings.log_level, service="classifier")
    redis_settings = RedisSettings()
    redis_client = connect_redis(redis_settings.redis_url)
    classifier = build_classifier(redis_client, connect_redis(redis_settings.cache_url), ModelSettings(),
                                  ClassifierSettings(), LlmSettings(), TaxonomySettings())
    heartbeat, stop = Heartbeat(), shutdown_event()
    # Redis holds caches and corrections here: the classifier works without it, so not a readiness check.
    HealthServer(settings.metrics_port, heartbeat, {"kafka": kafka_reachable(kafka.kafka_bootstrap_servers)}).start()
    registry = IndexRegistry(redis_client, kafka.topic_prefix, alias=VectorStoreSettings().posts_collection)
    replay_classifiers(kafka, registry, classifier, stop, heartbeat).start()
    classifier_loop(kafka, classifier, topic=kafka.embedded_posts_topic,
                    group=topology.live_group("classifier", kafka.topic_prefix), stop=stop, heartbeat=heartbeat,
                    drift=VerticalDrift()).run()


if __name__ == "__main__":
    main()
