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
from collections.abc import Callable
from functools import lru_cache

import redis
from confluent_kafka import Message
from pydantic import Field

from services.viability.core import SnapshotRequest, SourceChange, SourceTombstone, ViabilityFilter, ViabilityRules
from services.viability.signals import PendingSnapshots, SignalSender, snapshot_signals
from services.viability.state import RedisViabilityState, delete_state, replay_namespaces
from shared import topology
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
from shared.kafka import (
    BatchLoop,
    BatchResult,
    OutboundMessage,
    ensure_topics,
    make_consumer,
    make_producer,
    produce_all,
)
from shared.logging import configure_logging, get_logger
from shared.metrics import SWEEP_AS_OF, SWEEP_CHECKED, SWEEP_PURGED, SWEEP_PURGED_TOTAL, VIABILITY_DECISIONS
from shared.version_loops import VersionLoops

log = get_logger("viability")


DEFAULT_SNAPSHOT_ACCOUNTS = 500  # accounts per execute-snapshot signal (docs/deploy.md)


class ViabilitySettings(ServiceSettings):
    viability_min_followers: int = Field(10_000, description="Minimum followers of a viable account.")
    viability_min_posts: int = Field(20, description="Minimum number of posts of a viable account.")
    viability_active_within_days: int = Field(180, description="A viable account posted within this many days.")
    viability_max_posts_per_account: int = Field(20_000, description="Only the N most recent posts are indexed.")
    viability_sweep_interval_s: float = Field(
        300.0, gt=0, description="How often the viability loop re-evaluates the time rule (a post within N days) "
        "over every viable account, purging those that went quiet without any event; events in between are "
        "decided by the last sweep's clock, which replay verification uses too.")
    viability_snapshot_accounts: int = Field(
        DEFAULT_SNAPSHOT_ACCOUNTS, ge=1, le=2_000, description="Most accounts one execute-snapshot signal asks posts for: Debezium keeps "
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
                 pending: PendingSnapshots | None = None, max_per_signal: int = DEFAULT_SNAPSHOT_ACCOUNTS) -> None:
        self.kafka = kafka
        self.decide = decide
        self.pending = pending
        self.max_per_signal = max_per_signal  # VIABILITY_SNAPSHOT_ACCOUNTS, read once by the entry point
        self.output_topic = output_topic or kafka.viable_posts_topic
        self.accounts_topic = kafka.accounts_topic  # a property that builds the name: read once, not per message
        self.as_of_ms: int | None = None  # the last completed sweep's clock (None: none yet, use now)

    def clock_ms(self) -> int:
        """What "now" is for the activity rule: the last sweep's clock, so an account crosses the
        "within N days" line only at a sweep, exactly when replay verification's count moves."""
        return self.as_of_ms if self.as_of_ms is not None else int(time.time() * 1000)

    def handle_batch(self, messages: list[Message]) -> BatchResult:
        result = BatchResult()
        changes = [c for c in result.parse_each(messages, self._parse) if c is not None]
        verdict = self.decide.decide(changes, self.clock_ms())
        result.outputs = [self._outbound(d) for d in verdict.decisions if not isinstance(d, SnapshotRequest)]
        # Single-post refills (a top-N delete) are few: they go out with the batch.
        result.outputs += snapshot_signals(self.kafka, requested_posts(verdict.decisions), self.max_per_signal,
                                           column="id")
        if self.pending is None:  # no Redis queue (a caller of its own): this batch's accounts, bounded signals
            result.outputs += snapshot_signals(self.kafka, requested_accounts(verdict.decisions),
                                               self.max_per_signal)
        else:
            result.after_durable.append(lambda: self._request_snapshots(verdict.decisions, int(time.time() * 1000)))
        result.after_durable.append(lambda: self.decide.record(verdict))
        return result

    def _request_snapshots(self, decisions, now_ms: int) -> None:
        """Newly viable accounts wait in Redis for a batched signal (SignalSender sends it)."""
        requested = requested_accounts(decisions)
        VIABILITY_DECISIONS.labels(to="viable").inc(len(requested))
        self.pending.add(requested, now_ms)

    def sweep(self, loop: str) -> BatchResult:
        """Evaluate the time rule over every viable account as of now; its purges go out and its
        transitions and clock are recorded like a batch's (``after_durable``, same thread as the
        batches, so no batch writes the state in between)."""
        state = self.decide.state
        sweep = self.decide.sweep(state.viable_accounts(), int(time.time() * 1000))
        result = BatchResult(outputs=[self._outbound(decision) for decision in sweep.verdict.decisions])

        def record() -> None:
            self.decide.record(sweep.verdict)
            state.record_sweep(sweep.as_of_ms)
            self.as_of_ms = sweep.as_of_ms
            SWEEP_AS_OF.labels(loop=loop).set(sweep.as_of_ms / 1000)
            SWEEP_CHECKED.labels(loop=loop).set(sweep.checked)
            SWEEP_PURGED.labels(loop=loop).set(sweep.purged)
            SWEEP_PURGED_TOTAL.labels(loop=loop).inc(sweep.purged)
            if sweep.purged:
                log.info("sweep purged accounts that went quiet", loop=loop, checked=sweep.checked,
                         purged=sweep.purged)

        result.after_durable.append(record)
        return result

    def _parse(self, message: Message) -> SourceChange | SourceTombstone | None:
        table = "accounts" if message.topic() == self.accounts_topic else "posts"
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
        return OutboundMessage(self.output_topic, _account_key(account_id or 0), encode(decision))


class SweepingBatchLoop(BatchLoop):
    """The viability batch loop, which also runs the sweep when it is due, between two batches.

    In the loop's own thread, so a sweep and a batch never interleave their state reads and
    writes; a sweep that fails (Kafka or Redis down) raises like a batch and is retried first.
    """

    def __init__(self, *, sweep: Callable[[], BatchResult], sweep_interval_s: float, **loop_args) -> None:
        super().__init__(**loop_args)
        self.sweep = sweep
        self.sweep_interval_s = sweep_interval_s
        self.next_sweep = 0.0  # the first turn sweeps: it sets the clock events are decided by

    def run_once(self) -> int:
        if time.monotonic() >= self.next_sweep:
            result = self.sweep()
            if result.outputs:
                produce_all(self.producer, result.outputs)
            for hook in result.after_durable:
                hook()
            self.next_sweep = time.monotonic() + self.sweep_interval_s
        return super().run_once()


# An account's posts come in runs (a snapshot reads them in order): its key is encoded once.
_account_key = lru_cache(maxsize=65_536)(account_key)


def requested_accounts(decisions) -> list[int]:
    return [a for d in decisions if isinstance(d, SnapshotRequest) for a in d.account_ids]


def requested_posts(decisions) -> list[int]:
    return [p for d in decisions if isinstance(d, SnapshotRequest) for p in d.post_ids]


def viability_loop(kafka: KafkaSettings, redis_client: redis.Redis, rules: ViabilityRules, *, namespace: str,
                   group: str, output_topic: str, stop: threading.Event, heartbeat: Heartbeat,
                   sweep_interval_s: float | None = None, loop: str = "live") -> BatchLoop:
    inputs = [kafka.accounts_topic, kafka.posts_topic]
    ensure_topics(kafka, [*inputs, output_topic, kafka.signal_topic, *map(dlq_topic, inputs)])
    state = RedisViabilityState(redis_client, namespace=namespace)
    pending = PendingSnapshots(redis_client, namespace)
    settings = ViabilitySettings()
    SignalSender(kafka, pending, make_producer(kafka), max_accounts=settings.viability_snapshot_accounts,
                 max_wait_s=settings.viability_snapshot_wait_s).start(stop)
    service = ViabilityService(kafka, ViabilityFilter(state, rules), output_topic, pending=pending,
                               max_per_signal=settings.viability_snapshot_accounts)
    return SweepingBatchLoop(service="viability", settings=kafka, consumer=make_consumer(kafka, group),
                             producer=make_producer(kafka), topics=inputs, handle_batch=service.handle_batch,
                             stop=stop, heartbeat=heartbeat, sweep=lambda: service.sweep(loop),
                             sweep_interval_s=sweep_interval_s or settings.viability_sweep_interval_s)


def replay_viability(kafka: KafkaSettings, redis_client: redis.Redis, registry: IndexRegistry,
                     stop: threading.Event, heartbeat: Heartbeat, sweep_interval_s: float) -> VersionLoops:
    """One more loop per whole-pipeline replay version, with that version's rules and state."""

    def build(version: IndexVersion, loop_stop: threading.Event) -> BatchLoop:
        return viability_loop(kafka, redis_client, ViabilityRules(**(version.viability_rules or {})),
                              namespace=version.viability_namespace, group=version.viability_group,
                              output_topic=version.embed_from_topic, stop=loop_stop, heartbeat=heartbeat,
                              sweep_interval_s=sweep_interval_s, loop=version.collection)

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
    replay_viability(kafka, redis_client, registry, stop, heartbeat, settings.viability_sweep_interval_s).start()
    viability_loop(kafka, redis_client, settings.rules(), namespace=kafka.topic_prefix,
                   group=topology.live_group("viability", kafka.topic_prefix), output_topic=kafka.viable_posts_topic, stop=stop,
                   heartbeat=heartbeat, sweep_interval_s=settings.viability_sweep_interval_s).run()


if __name__ == "__main__":
    main()
