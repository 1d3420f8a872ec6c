"""viability: forwards only viable accounts' posts downstream.

Reads:   <prefix>.<db>.accounts, <prefix>.<db>.posts        (Debezium envelopes, plain or schema-wrapped)
Writes:  <prefix>.pipeline.posts.viable  key {"account_id"}  post.upsert | post.delete | account.purge
         <prefix>-signal                 key <prefix>        execute-snapshot (posts of newly viable accounts,
                                                             batched: services/viability/signals.py)
         <topic>.dlq                                         malformed input, with the reason in headers
State:   Redis (accounts, post index per account, viable set)

A whole-pipeline replay (``ops.replay --stage pipeline``) registers an index version; this process
then runs one more loop for it: the same topics from the replay's start offsets, its own consumer
group, its own state namespace and rules, writing the version's viable topic
(<prefix>.pipeline.posts.viable.<collection>). Dropping the version stops the loop and deletes its state.
"""

from __future__ import annotations

import threading
import time

import redis
from confluent_kafka import Message
from pydantic import Field

from services.viability.core import SnapshotRequest, SourceChange, SourceTombstone, ViabilityFilter, ViabilityRules
from services.viability.signals import PendingSnapshots, SignalSender, snapshot_signals
from services.viability.state import RedisViabilityState, delete_state, replay_namespaces
from shared.cache import connect_redis
from shared.config import KafkaSettings, RedisSettings, ServiceSettings, VectorStoreSettings, dlq_topic
from shared.events import (
    account_key,
    encode,
    parse_change_event,
    parse_key_id,
)
from shared.health import Heartbeat, HealthServer, kafka_reachable, redis_reachable, shutdown_event
from shared.index_registry import IndexRegistry, IndexVersion
from shared.kafka import BatchLoop, BatchResult, OutboundMessage, ensure_topics, make_consumer, make_producer
from shared.logging import configure_logging, get_logger
from shared.metrics import VIABILITY_DECISIONS
from shared.version_loops import VersionLoops

log = get_logger("viability")


class ViabilitySettings(ServiceSettings):
    viability_min_followers: int = Field(10_000, description="Minimum followers of a viable account.")
    viability_min_posts: int = Field(20, description="Minimum number of posts of a viable account.")
    viability_active_within_days: int = Field(180, description="A viable account posted within this many days.")
    viability_max_posts_per_account: int = Field(20_000, description="Only the N most recent posts are indexed.")
    viability_snapshot_accounts: int = Field(
        500, ge=1, le=2_000, description="Most accounts one execute-snapshot signal asks posts for: Debezium keeps "
        "one offset entry per pending signal, so a backfill makes ceil(accounts / this) entries (docs/deploy.md).")
    viability_snapshot_wait_s: float = Field(
        1.0, gt=0, description="Longest a newly viable account waits for others to share its snapshot signal.")

    def rules(self) -> ViabilityRules:
        return ViabilityRules(
            min_followers=self.viability_min_followers, min_posts=self.viability_min_posts,
            active_within_days=self.viability_active_within_days,
            max_posts_per_account=self.viability_max_posts_per_account,
        )


class ViabilityService:
    """Adapts Kafka messages to the pure filter and its decisions back to Kafka messages."""

    def __init__(self, kafka: KafkaSettings, decide: ViabilityFilter, output_topic: str | None = None, *,
                 pending: PendingSnapshots | None = None) -> None:
        self.kafka = kafka
        self.decide = decide
        self.pending = pending
        self.output_topic = output_topic or kafka.viable_posts_topic

    def handle_batch(self, messages: list[Message]) -> BatchResult:
        result = BatchResult()
        changes = [c for c in result.parse_each(messages, self._parse) if c is not None]
        now_ms = int(time.time() * 1000)
        verdict = self.decide.decide(changes, now_ms)
        result.outputs = [self._outbound(d) for d in verdict.decisions if not isinstance(d, SnapshotRequest)]
        if self.pending is None:  # no Redis queue (a caller of its own): this batch's accounts, bounded signals
            result.outputs += snapshot_signals(self.kafka, requested_accounts(verdict.decisions),
                                               ViabilitySettings().viability_snapshot_accounts)
        else:
            result.after_durable.append(lambda: self._request_snapshots(verdict.decisions, now_ms))
        result.after_durable.append(lambda: self.decide.record(verdict))
        return result

    def _request_snapshots(self, decisions, now_ms: int) -> None:
        """Newly viable accounts wait in Redis for a batched signal (SignalSender sends it)."""
        requested = requested_accounts(decisions)
        VIABILITY_DECISIONS.labels(to="viable").inc(len(requested))
        self.pending.add(requested, now_ms)

    def _parse(self, message: Message) -> SourceChange | SourceTombstone | None:
        table = "accounts" if message.topic() == self.kafka.accounts_topic else "posts"
        change = parse_change_event(message.value())
        if change is None:
            return self._tombstone(table, message)
        return SourceChange.of(table, change)

    @staticmethod
    def _tombstone(table: str, message: Message) -> SourceTombstone | None:
        """A tombstone deletes the row of its key (the primary key, Debezium's key {"id": ...}). After
        compaction it may be all that is left of a delete; when the delete event was there too, the
        second delete finds nothing left to do (docs/deploy.md "Deletes")."""
        if message.value() is not None:
            return None  # a schema-wrapped null payload: nothing to act on
        return SourceTombstone(table, parse_key_id(message.key()))

    def _outbound(self, decision) -> OutboundMessage:
        # Snapshot requests become batched signals (signals.py). Debezium only acts on signals whose key is
        # its topic.prefix. A replay's loop signals the same source as the live one: the re-read rows land at
        # the end of the CDC topics, which the replay reads too, and the rows are current, so its new version
        # gets the account's posts as they are now. The live loop sees those rows as well, and that is
        # harmless: its state takes them idempotently, an account viable there forwards the row again and
        # the indexer rewrites the point in place (deterministic id, newer source version), and an account
        # not viable there forwards nothing. The same holds the other way round.
        if decision.kind == "account.purge":
            VIABILITY_DECISIONS.labels(to="not_viable").inc()
        account_id = decision.account_id if decision.kind != "post.upsert" else decision.post.account_id
        return OutboundMessage(self.output_topic, account_key(account_id or 0), encode(decision))


def requested_accounts(decisions) -> list[int]:
    return [a for d in decisions if isinstance(d, SnapshotRequest) for a in d.account_ids]


def viability_loop(kafka: KafkaSettings, redis_client: redis.Redis, rules: ViabilityRules, *, namespace: str,
                   group: str, output_topic: str, stop: threading.Event, heartbeat: Heartbeat) -> BatchLoop:
    inputs = [kafka.accounts_topic, kafka.posts_topic]
    ensure_topics(kafka, [*inputs, output_topic, kafka.signal_topic, *map(dlq_topic, inputs)])
    state = RedisViabilityState(redis_client, namespace=namespace)
    pending = PendingSnapshots(redis_client, namespace)
    settings = ViabilitySettings()
    SignalSender(kafka, pending, make_producer(kafka), max_accounts=settings.viability_snapshot_accounts,
                 max_wait_s=settings.viability_snapshot_wait_s).start(stop)
    service = ViabilityService(kafka, ViabilityFilter(state, rules), output_topic, pending=pending)
    return BatchLoop(service="viability", settings=kafka, consumer=make_consumer(kafka, group),
                     producer=make_producer(kafka), topics=inputs, handle_batch=service.handle_batch, stop=stop,
                     heartbeat=heartbeat)


def replay_viability(kafka: KafkaSettings, redis_client: redis.Redis, registry: IndexRegistry,
                     stop: threading.Event, heartbeat: Heartbeat) -> VersionLoops:
    """One more loop per whole-pipeline replay version, with that version's rules and state."""

    def build(version: IndexVersion, loop_stop: threading.Event) -> BatchLoop:
        return viability_loop(kafka, redis_client, ViabilityRules(**(version.viability_rules or {})),
                              namespace=version.viability_namespace, group=version.viability_group,
                              output_topic=version.embed_from_topic, stop=loop_stop, heartbeat=heartbeat)

    def forget(version: IndexVersion) -> None:
        deleted = delete_state(redis_client, version.viability_namespace)
        log.info("dropped version's viability state deleted", collection=version.collection, keys=deleted)

    return VersionLoops(registry, service="viability", wants=lambda v: v.stage == "pipeline", build=build,
                        stop=stop, on_dropped=forget)


def delete_orphaned_states(kafka: KafkaSettings, redis_client: redis.Redis, registry: IndexRegistry) -> None:
    """States of versions dropped while this service was down (a running one deletes on drop)."""
    registered = {v.viability_namespace for v in registry.versions().values() if v.viability_namespace}
    for namespace in replay_namespaces(redis_client, kafka.topic_prefix) - registered:
        log.info("deleting an orphaned replay state", namespace=namespace,
                 keys=delete_state(redis_client, namespace))


def main() -> None:
    settings, kafka, redis_settings = ViabilitySettings(), KafkaSettings(), RedisSettings()
    configure_logging(settings.log_level, service="viability")
    redis_client = connect_redis(redis_settings.redis_url)
    heartbeat, stop = Heartbeat(), shutdown_event()
    HealthServer(settings.metrics_port, heartbeat, {
        "kafka": kafka_reachable(kafka.kafka_bootstrap_servers), "redis": redis_reachable(redis_client),
    }).start()
    registry = IndexRegistry(redis_client, kafka.topic_prefix, alias=VectorStoreSettings().posts_collection)
    delete_orphaned_states(kafka, redis_client, registry)
    replay_viability(kafka, redis_client, registry, stop, heartbeat).start()
    viability_loop(kafka, redis_client, settings.rules(), namespace=kafka.topic_prefix,
                   group=f"{kafka.topic_prefix}-viability", output_topic=kafka.viable_posts_topic, stop=stop,
                   heartbeat=heartbeat).run()


if __name__ == "__main__":
    main()
