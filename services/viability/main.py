"""viability: forwards only viable accounts' posts downstream.

Reads:   <prefix>.<db>.accounts, <prefix>.<db>.posts        (Debezium envelopes, plain or schema-wrapped)
Writes:  <prefix>.pipeline.posts.viable  key {"account_id"}  post.upsert | post.delete | account.purge
         <prefix>-signal                 key <prefix>        execute-snapshot (posts of a newly viable account)
         <topic>.dlq                                         malformed input, with the reason in headers
State:   Redis (accounts, post index per account, viable set)
"""

from __future__ import annotations

import time

from confluent_kafka import Message
from pydantic import Field

from services.viability.core import SnapshotRequest, ViabilityFilter, ViabilityRules
from services.viability.state import RedisViabilityState
from shared.cache import connect_redis
from shared.config import KafkaSettings, RedisSettings, ServiceSettings, dlq_topic
from shared.events import (
    MalformedEvent,
    account_key,
    encode,
    incremental_snapshot_signal,
    parse_change_event,
)
from shared.health import Heartbeat, HealthServer, kafka_reachable, redis_reachable, shutdown_event
from shared.kafka import BatchLoop, BatchResult, DeadLetter, OutboundMessage, ensure_topics, make_consumer, make_producer
from shared.logging import configure_logging
from shared.metrics import VIABILITY_DECISIONS


class ViabilitySettings(ServiceSettings):
    viability_min_followers: int = Field(10_000, description="Minimum followers of a viable account.")
    viability_min_posts: int = Field(20, description="Minimum number of posts of a viable account.")
    viability_active_within_days: int = Field(180, description="A viable account posted within this many days.")
    viability_max_posts_per_account: int = Field(20_000, description="Only the N most recent posts are indexed.")

    def rules(self) -> ViabilityRules:
        return ViabilityRules(
            min_followers=self.viability_min_followers, min_posts=self.viability_min_posts,
            active_within_days=self.viability_active_within_days,
            max_posts_per_account=self.viability_max_posts_per_account,
        )


class ViabilityService:
    """Adapts Kafka messages to the pure filter and its decisions back to Kafka messages."""

    def __init__(self, kafka: KafkaSettings, decide: ViabilityFilter) -> None:
        self.kafka = kafka
        self.decide = decide

    def handle_batch(self, messages: list[Message]) -> BatchResult:
        result = BatchResult()
        now_ms = int(time.time() * 1000)
        for message in messages:
            try:
                result.outputs += self._handle(message, now_ms)
            except (MalformedEvent, ValueError) as exc:
                result.dead_letters.append(DeadLetter(message, exc))
        return result

    def _handle(self, message: Message, now_ms: int) -> list[OutboundMessage]:
        change = parse_change_event(message.value())
        if change is None:  # tombstone: the delete before it was already acted on
            return []
        if message.topic() == self.kafka.accounts_topic:
            decisions = self.decide.on_account(change, now_ms)
        else:
            decisions = self.decide.on_post(change, now_ms)
        return [self._outbound(decision) for decision in decisions]

    def _outbound(self, decision) -> OutboundMessage:
        if isinstance(decision, SnapshotRequest):
            VIABILITY_DECISIONS.labels(to="viable").inc()
            value = incremental_snapshot_signal(self.kafka.source_database, "posts", "account_id",
                                                list(decision.account_ids))
            # Debezium only acts on signals whose key is its topic.prefix.
            return OutboundMessage(self.kafka.signal_topic, self.kafka.topic_prefix.encode(), value)
        if decision.kind == "account.purge":
            VIABILITY_DECISIONS.labels(to="not_viable").inc()
        account_id = decision.account_id if decision.kind != "post.upsert" else decision.post.account_id
        return OutboundMessage(self.kafka.viable_posts_topic, account_key(account_id or 0), encode(decision))


def main() -> None:
    settings, kafka, redis_settings = ViabilitySettings(), KafkaSettings(), RedisSettings()
    configure_logging(settings.log_level, service="viability")
    inputs = [kafka.accounts_topic, kafka.posts_topic]
    ensure_topics(kafka, [*inputs, kafka.viable_posts_topic, kafka.signal_topic, *map(dlq_topic, inputs)])
    redis_client = connect_redis(redis_settings.redis_url)
    state = RedisViabilityState(redis_client, namespace=kafka.topic_prefix)
    service = ViabilityService(kafka, ViabilityFilter(state, settings.rules()))
    heartbeat, stop = Heartbeat(), shutdown_event()
    HealthServer(settings.metrics_port, heartbeat, {
        "kafka": kafka_reachable(kafka.kafka_bootstrap_servers), "redis": redis_reachable(redis_client),
    }).start()
    BatchLoop(service="viability", settings=kafka, consumer=make_consumer(kafka, f"{kafka.topic_prefix}-viability"),
              producer=make_producer(kafka), topics=inputs, handle_batch=service.handle_batch, stop=stop,
              heartbeat=heartbeat).run()


if __name__ == "__main__":
    main()
