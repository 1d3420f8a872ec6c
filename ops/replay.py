"""Reprocess into a new index version while live ingestion keeps serving the current one, verify
it, and switch the alias atomically.

    python -m ops.replay --stage pipeline                    # everything again, from the CDC topics
    python -m ops.replay --stage embed --model int8          # re-embed everything with a new model
    python -m ops.replay --stage index --from 2026-11-01T00:00  # re-index from a point in time
    python -m ops.replay --stage classify                    # re-classify after a taxonomy change
    python -m ops.replay --dry-run --stage embed --model int8 # what it would cost, nothing changes
    python -m ops.replay --rollback                          # point the alias back
    python -m ops.replay --drop posts_v2                     # discard a version that is not active
    python -m ops.replay --status

Stages: ``pipeline`` re-reads the CDC source topics through a viability loop of its own (own
consumer group, own state in Redis, the VIABILITY_* rules of this command's environment), then
embeds and indexes into the new version: the way to reprocess after a viability rule change or a
bug fix. ``embed`` re-reads the viable-posts topic, embeds with the chosen model (cache first) into
a version topic, and indexes that. ``index`` re-reads the embedded topic into a new collection (a
collection setting or payload change); ``classify`` is the same, named for what it is used for: tier-1
labels are decided when a point is written, and the classifier runs a tier-2 loop for the version
(LLM answers already cached cost nothing). The dry run prices that LLM stage too. The new version gets its own consumer groups, so live
changes reach it as well; consumer offsets are set through the Kafka admin API, topics are never
deleted. Switching needs: the new version holds as many points as MariaDB has viable posts (by the
version's rules, counted again while it catches up), and canary queries' top results overlap the
current version's (or ``--override``). A pipeline replay from an offset or a time starts with an
empty state, so it only knows accounts and posts changed since then: verification will say so.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

import httpx
import pymysql
import redis
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient
from pydantic import Field, SecretStr

from services.viability.core import ViabilityRules
from services.viability.main import ViabilitySettings
from services.viability.state import RedisViabilityState, replay_namespace
from shared import topology
from shared.bootstrap import load_embedder
from shared.cache import connect_redis
from services.classifier.estimate import TierTwoEstimate, estimate_tier_two
from shared.config import (
    KafkaSettings,
    LlmSettings,
    MariaDBSettings,
    ModelSettings,
    RedisSettings,
    ServiceSettings,
    TaxonomySettings,
    VectorStoreSettings,
)
from shared.embedding import embedding_model_id
from shared.events import (
    EmbeddedPostUpsert,
    MalformedEvent,
    PostRecord,
    PostUpsert,
    content_hash,
    parse_change_event,
    parse_pipeline_event,
)
from shared.index_registry import IndexRegistry, IndexVersion
from shared.classification.labelling import TierOneLabeller
from shared.llm import LlmAnswerCache
from ops.gate import replay_gate
from shared.classification.taxonomy import TaxonomyCatalog

CANARY_QUERIES = (
    "easy vegan dinner recipes", "leg day workout at the gym", "budget travel itinerary for europe",
    "unboxing the new smartphone", "how to invest in index funds", "skincare routine for dry skin",
    "toddler sleep schedule tips", "speedrun of a retro platformer", "training a puppy to sit",
    "acoustic guitar cover of a pop song",
)


class ReplaySettings(ServiceSettings):
    replay_api_url: str | None = Field(None, description="Query API the replay's canary queries go to; none = "
                                       "http://127.0.0.1:$QUERY_PORT (the local stack's).")
    replay_api_key: SecretStr | None = Field(None, description="API key (search and admin scopes) for the canary "
                                             "queries; none = the dev key `make dev` saves in $DEV_DIR/dev-api-key.")


# --- planning ------------------------------------------------------------------------------


def plan_version(kafka: KafkaSettings, registry: IndexRegistry, stage: str, model_variant: str,
                 rules: ViabilityRules | None = None) -> IndexVersion:
    number = registry.next_version()
    collection = f"{registry.alias}_v{number}"
    prefix = kafka.topic_prefix  # the version's topics and groups are named by shared/topology.py
    if stage == "index":
        # Its vectors are the live embedder's (read from the live embedded topic): that is the model
        # search must embed its queries with, whatever --model says. bootstrap recorded it.
        return IndexVersion(collection=collection, version=number, stage="index",
                            source_topic=kafka.embedded_posts_topic,
                            indexer_group=topology.version_group("indexer", prefix, collection),
                            model_variant=registry.live.model_variant if registry.live else "fp32")
    embed = IndexVersion(
        collection=collection, version=number, stage="embed",
        source_topic=topology.version_topic(kafka.embedded_posts_topic, collection),
        indexer_group=topology.version_group("indexer", prefix, collection),
        embed_from_topic=kafka.viable_posts_topic, embedder_group=topology.version_group("embedder", prefix, collection),
        model_variant=model_variant,
    )
    if stage == "embed":
        return embed
    # Whole pipeline: a viability loop of its own writes a viable topic of its own for the embedder.
    return embed.model_copy(update={
        "stage": "pipeline",
        "embed_from_topic": topology.version_topic(kafka.viable_posts_topic, collection),
        "viability_group": topology.version_group("viability", prefix, collection),
        "viability_namespace": replay_namespace(kafka.topic_prefix, collection, embed.created_ms),
        "viability_rules": (rules or ViabilitySettings().rules()).model_dump(),
    })


def first_stage(kafka: KafkaSettings, version: IndexVersion) -> tuple[str, list[str]]:
    """The (group, topics) that read the already-existing history for this version."""
    if version.stage == "pipeline":
        return version.viability_group, [kafka.topic(role) for role in topology.stage("viability").inputs]
    if version.stage == "embed":
        return version.embedder_group, [version.embed_from_topic]
    return version.indexer_group, [version.source_topic]


def version_rules(version: IndexVersion) -> ViabilityRules:
    """The rules the version's posts were chosen by: its own (stage pipeline) or the live service's."""
    if version.viability_rules is not None:
        return ViabilityRules(**version.viability_rules)
    return ViabilitySettings().rules()


def parse_start(value: str) -> int | datetime | None:
    """``earliest`` → None, an integer → that offset, else an ISO timestamp (naive = UTC)."""
    if value == "earliest":
        return None
    if value.lstrip("-").isdigit():
        return int(value)
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def start_offsets(kafka: KafkaSettings, topics: list[str], start: int | datetime | None) -> list[TopicPartition]:
    return [offset for topic in topics for offset in _topic_start_offsets(kafka, topic, start)]


def _topic_start_offsets(kafka: KafkaSettings, topic: str, start: int | datetime | None) -> list[TopicPartition]:
    consumer = Consumer({"bootstrap.servers": kafka.kafka_bootstrap_servers, "group.id": "ops-replay-planner"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        if isinstance(start, datetime):
            millis = int(start.timestamp() * 1000)
            return consumer.offsets_for_times([TopicPartition(topic, p, millis) for p in partitions], timeout=10)
        low = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[0] for p in partitions}
        return [TopicPartition(topic, p, low[p] if start is None else max(low[p], start)) for p in partitions]
    finally:
        consumer.close()


def set_group_offsets(kafka: KafkaSettings, group: str, offsets: list[TopicPartition]) -> None:
    """Where the new version's first consumer starts, set before it ever joins (admin API)."""
    # log_level 4: librdkafka's info line about its background queue at teardown is not for operators.
    admin = AdminClient({"bootstrap.servers": kafka.kafka_bootstrap_servers, "log_level": 4})
    futures = admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, offsets)])
    for future in futures.values():
        future.result(timeout=15)


# --- dry run -------------------------------------------------------------------------------


@dataclass
class CostEstimate:
    messages: int
    upserts: int
    cache_hits: int
    model_calls: int
    snapshot_accounts: int = 0  # stage pipeline: accounts whose posts the source is asked for again
    tier_two: TierTwoEstimate | None = None  # what the LLM stage would cost (or would, if turned on)

    def render(self, version: IndexVersion, topics: list[str]) -> str:
        lines = [
            f"would build {version.collection} (stage {version.stage}, model {version.model_variant}) "
            f"from {', '.join(topics)}",
            f"  messages to reprocess : {self.messages:,}",
            f"  posts to (re)index    : {self.upserts:,}",
        ]
        if version.stage == "pipeline":
            lines += [f"  viability rules       : {version_rules(version).model_dump()}",
                      f"  accounts re-read      : ~{self.snapshot_accounts:,} (incremental snapshots of their posts)"]
        if version.stage != "index":
            lines += [f"  embedding cache hits  : {self.cache_hits:,}",
                      f"  model calls (texts)   : {self.model_calls:,} (local model: no per-call cost)"]
        if self.tier_two is not None:
            lines.append(self.tier_two.render(LlmSettings()))
        return "\n".join(lines)


def estimate(kafka: KafkaSettings, version: IndexVersion, offsets: list[TopicPartition], cache_url: str) -> CostEstimate:
    """Read what would be reprocessed; for re-embedding, ask the cache which texts it already has."""
    model_id = embedding_model_id(version.model_variant == "int8")
    client = connect_redis(cache_url)  # the embedding and LLM answer caches
    cost = CostEstimate(0, 0, 0, 0)
    if version.stage == "pipeline":
        hashes = _viable_post_texts(kafka, version, offsets, cost)
    else:
        hashes = _pipeline_post_texts(kafka, offsets, cost)
    if version.stage != "index":
        ordered = sorted(hashes)
        for i in range(0, len(ordered), 1000):
            with client.pipeline(transaction=False) as pipe:
                for text_hash in ordered[i:i + 1000]:
                    pipe.exists(f"emb:{model_id}:{text_hash}")
                cost.cache_hits += sum(pipe.execute())
        cost.model_calls = len(hashes) - cost.cache_hits
    # Tier 2 runs on what the version indexes; its posts' vectors are on the embedded topic already
    # (for stages embed and pipeline: the live one's, which the unsure set hardly depends on).
    embedded = offsets if version.stage == "index" else start_offsets(kafka, [kafka.embedded_posts_topic], None)
    cost.tier_two = _tier_two(kafka, embedded, client)
    return cost


def _tier_two(kafka: KafkaSettings, offsets: list[TopicPartition], client) -> TierTwoEstimate:
    """Run tier 1 over the posts (it is free) and price the unsure ones not yet in the LLM cache."""
    upserts: dict[int, EmbeddedPostUpsert] = {}
    for message in _read_from(kafka, offsets):
        try:
            event = parse_pipeline_event(message.value())
        except MalformedEvent:
            continue
        if isinstance(event, EmbeddedPostUpsert):
            upserts[event.post.id] = event
    model, catalog = ModelSettings(), TaxonomyCatalog.load(TaxonomySettings().taxonomy_dir)
    embedder = load_embedder(model)  # the live model: tier 1 labels with it
    return estimate_tier_two(list(upserts.values()), TierOneLabeller(catalog, embedder.embed),
                             {t.name: t for t in catalog.all()}, LlmSettings(), LlmAnswerCache(client))


def _pipeline_post_texts(kafka: KafkaSettings, offsets: list[TopicPartition], cost: CostEstimate) -> set[str]:
    hashes: set[str] = set()
    for message in _read_from(kafka, offsets):
        cost.messages += 1
        try:
            event = parse_pipeline_event(message.value())
        except MalformedEvent:
            continue
        if isinstance(event, PostUpsert) or event.kind == "post.embedded":
            cost.upserts += 1
            hashes.add(content_hash(event.post.embedding_text()))
    return hashes


def _viable_post_texts(kafka: KafkaSettings, version: IndexVersion, offsets: list[TopicPartition],
                       cost: CostEstimate) -> set[str]:
    """Texts of the posts the version's rules keep, as the CDC topics carry them; every account with
    such posts becomes viable during the replay and has its posts read again from the source once."""
    viable = viable_posts(MariaDBSettings(), version_rules(version))
    cost.snapshot_accounts = len(set(viable.values()))
    hashes: set[str] = set()
    for message in _read_from(kafka, offsets):
        cost.messages += 1
        try:
            change = parse_change_event(message.value())
        except (MalformedEvent, ValueError):
            continue
        if message.topic() == kafka.posts_topic and change is not None and change.op != "d":
            post = PostRecord.model_validate(change.row)
            if post.id in viable:
                hashes.add(content_hash(post.embedding_text()))
    cost.upserts = len(viable)
    return hashes


def _read_from(kafka: KafkaSettings, offsets: list[TopicPartition], idle_s: float = 2.0) -> Iterator[Message]:
    consumer = Consumer({"bootstrap.servers": kafka.kafka_bootstrap_servers, "group.id": "ops-replay-estimate",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    consumer.assign(offsets)
    remaining, deadline = {tp.partition for tp in offsets}, time.monotonic() + idle_s
    try:
        while remaining and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):
                deadline = time.monotonic() + idle_s
                if message.error() is None:
                    yield message
                else:
                    remaining.discard(message.partition())
    finally:
        consumer.close()


# --- progress and verification -------------------------------------------------------------


def expected_points(mariadb: MariaDBSettings, rules: ViabilityRules, as_of_ms: int | None = None) -> int:
    """Viable posts in the source of truth, by the same rules the viability service applies, with
    the activity rule evaluated as of ``as_of_ms`` (its last sweep's clock, see ``viability_clock``)."""
    viable_sql, params = rules.viable_posts_sql(as_of_ms)
    return _query(mariadb, f"SELECT COUNT(*) FROM ({viable_sql}) viable", params)[0][0]


def viability_clock(client, namespace: str) -> int | None:
    """The clock the viability loop of ``namespace`` decides "active within N days" by: its last
    sweep's. Verification counts by it, so it moves when the index does, not with the wall clock."""
    return RedisViabilityState(client, namespace=namespace).swept_at()


def version_clock(kafka: KafkaSettings, version: IndexVersion) -> Callable[[], int | None]:
    """Whose sweep chose the version's posts: its own viability loop (stage pipeline) or the live one."""
    client = connect_redis(RedisSettings().redis_url)
    namespace = version.viability_namespace or kafka.topic_prefix
    return lambda: viability_clock(client, namespace)


def viable_posts(mariadb: MariaDBSettings, rules: ViabilityRules, as_of_ms: int | None = None) -> dict[int, int]:
    """post id → account id of every post the rules keep (as of the viability clock ``as_of_ms``)."""
    viable_sql, params = rules.viable_posts_sql(as_of_ms)
    return dict(_query(mariadb, f"SELECT p.id, p.account_id FROM ({viable_sql}) viable JOIN posts p USING (id)",
                       params))


def _query(mariadb: MariaDBSettings, sql: str, params: tuple) -> list[tuple]:
    connection = pymysql.connect(**mariadb.connect_kwargs())
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall())
    finally:
        connection.close()


def progress_line(done: int, total: int, started: float) -> str:
    elapsed = max(time.monotonic() - started, 1e-6)
    rate = done / elapsed
    eta = (total - done) / rate if rate > 0 and total > done else 0
    width = 30
    filled = int(width * min(done / total, 1)) if total else width
    return f"[{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,} points  {rate:,.0f}/s  ETA {eta:,.0f}s"


def wait_until_caught_up(registry: IndexRegistry, collection: str, count_expected: Callable[[], int],
                         timeout_s: float, out=sys.stdout, recount_s: float = 5.0) -> tuple[int, int]:
    """Poll the version's point count until it equals the source of truth's; (points, expected).

    The source is counted again every ``recount_s``: live changes keep arriving while a replay
    catches up, and they reach the new version too, so a count taken once at the start goes stale.
    """
    started, points, stable_since = time.monotonic(), -1, None
    expected, counted_at = count_expected(), time.monotonic()
    while time.monotonic() - started < timeout_s:
        if time.monotonic() - counted_at >= recount_s:
            expected, counted_at = count_expected(), time.monotonic()
        version = registry.versions().get(collection)
        current = version.points if version else 0
        out.write("\r" + progress_line(current, expected, started))
        out.flush()
        if current == expected:
            stable_since = stable_since or time.monotonic()
            if time.monotonic() - stable_since >= 4:  # two indexer reports in a row agree
                expected = count_expected()  # and the source has not moved meanwhile
                if current == expected:
                    out.write("\n")
                    return current, expected
                stable_since = None
        else:
            stable_since = None
        points = current
        time.sleep(1)
    out.write("\n")
    return points, expected


def canary_overlap(api_url: str, api_key: str | None, active: str, candidate: str, queries=CANARY_QUERIES,
                   limit: int = 10, keep: set[int] | None = None) -> float:
    """Mean share of the current version's top results that the new version also returns.

    ``keep``: the posts the new version may hold at all (its viability rules differ from the
    live ones): the current version's hits outside it are not counted as missing.
    """
    headers = {"X-API-Key": api_key} if api_key else {}
    overlaps = []
    with httpx.Client(base_url=api_url, headers=headers, timeout=30) as client:
        for query in queries:
            tops = []
            for collection in (active, candidate):
                response = client.post("/v1/search/posts",
                                       json={"query": query, "limit": limit, "index_version": collection})
                response.raise_for_status()
                tops.append({hit["post_id"] for hit in response.json()["results"]})
            expected = tops[0] if keep is None else tops[0] & keep
            if expected:
                overlaps.append(len(expected & tops[1]) / len(expected))
    return sum(overlaps) / len(overlaps) if overlaps else 0.0


class OperatorError(Exception):
    """Something the operator can fix: printed as one line saying what to do, exit code 1."""


def api_defaults() -> tuple[str, str | None, str]:
    """(API URL, key, where the key came from) when the command line gives none: REPLAY_API_URL /
    REPLAY_API_KEY, else the local stack's API and the dev key `make dev` saves in DEV_DIR."""
    from devstack.run import DEV_KEY_FILE, DevSettings
    from services.query.app import QuerySettings

    settings = ReplaySettings()
    url = settings.replay_api_url or f"http://127.0.0.1:{QuerySettings().query_port}"
    if settings.replay_api_key is not None:
        return url, settings.replay_api_key.get_secret_value(), "REPLAY_API_KEY"
    key_file = DevSettings().dev_dir / DEV_KEY_FILE
    key = key_file.read_text().strip() if key_file.exists() else None
    return url, key or None, str(key_file) if key else "no key (REPLAY_API_KEY unset, no dev key file)"


def checked_canary_overlap(args: argparse.Namespace, active: str, candidate: str,
                           keep: set[int] | None) -> float:
    """The canary queries, with a refused key or an unreachable API turned into what to do."""
    url, key, key_source = api_defaults()
    url, key = args.api_url or url, args.api_key or key
    key_source = "--api-key" if args.api_key else key_source
    kept = (f"{candidate} is built but not switched (`--drop {candidate}` discards it; a new replay with the "
            "fix verifies again)")
    try:
        return canary_overlap(url, key, active, candidate, keep=keep)
    except httpx.HTTPStatusError as exc:
        code = exc.response.status_code
        if code in (401, 403):
            raise OperatorError(
                f"the query API at {url} refused the canary queries ({code}) with the key from {key_source}: "
                f"set REPLAY_API_KEY (or --api-key) to a key with the search and admin scopes (`make dev` saves "
                f"one in .dev/dev-api-key); {kept}") from exc
        raise OperatorError(f"the query API at {url} answered {code} to a canary query: see its log; {kept}") from exc
    except httpx.TransportError as exc:
        raise OperatorError(
            f"the query API at {url} is unreachable ({type(exc).__name__}): start the stack (`make dev`) or set "
            f"REPLAY_API_URL (or --api-url) to where it runs; {kept}") from exc


# --- commands ------------------------------------------------------------------------------


def registry_from_env(kafka: KafkaSettings) -> IndexRegistry:
    registry = IndexRegistry(connect_redis(RedisSettings().redis_url), kafka.topic_prefix,
                             alias=VectorStoreSettings().posts_collection)
    registry.bootstrap(VectorStoreSettings().posts_collection, kafka.embedded_posts_topic,
                       topology.live_group("indexer", kafka.topic_prefix), ModelSettings().embedding_model_variant)
    return registry


def print_status(registry: IndexRegistry) -> None:
    active = registry.active()
    for name, version in sorted(registry.versions().items(), key=lambda item: item[1].version):
        marker = "*" if name == active else " "
        print(f"{marker} {name:<14} v{version.version}  stage={version.stage:<5} model={version.model_variant:<4} "
              f"points={version.points:,}")


def run(args: argparse.Namespace) -> int:
    kafka = KafkaSettings()
    registry = registry_from_env(kafka)
    if args.status:
        print_status(registry)
        return 0
    if args.drop:
        return drop(registry, args.drop)
    if args.rollback:
        previous = registry.previous()
        if not previous or previous not in registry.versions():
            print("nothing to roll back to", file=sys.stderr)
            return 1
        registry.switch(previous)
        wait_for_replicas()
        print(f"alias {registry.alias} → {previous}")
        return 0
    if args.stage == "classify" and not args.dry_run and not replay_gate(TaxonomySettings().taxonomy_dir, args.override):
        print("not building: a taxonomy's golden-set macro F1 dropped (ops/gate.py; --override to build anyway)",
              file=sys.stderr)
        return 3
    # Tier-1 labels are decided when a point is written and tier 2 runs per version, so re-classifying
    # (a new taxonomy version, new thresholds) is re-indexing from the embedded topic: no model call.
    stage = "index" if args.stage == "classify" else args.stage
    version = plan_version(kafka, registry, stage, args.model or ModelSettings().embedding_model_variant)
    group, topics = first_stage(kafka, version)
    offsets = start_offsets(kafka, topics, parse_start(args.start))
    if args.dry_run:
        print(estimate(kafka, version, offsets, RedisSettings().cache_url).render(version, topics))
        return 0
    set_group_offsets(kafka, group, offsets)
    if version.stage == "index":  # the version's tier-2 loop reads the same topic from the same place
        set_group_offsets(kafka, topology.classifier_group(group), offsets)
    registry.register(version)
    print(f"building {version.collection} from {', '.join(topics)} (group {group}); "
          f"live keeps serving {registry.active()}")
    return finish(args, registry, version)


def drop(registry: IndexRegistry, collection: str) -> int:
    """Forget a version: every service stops its loops for it, viability deletes its state. Its
    topics, consumer groups and collection stay (nothing is deleted from Kafka), and its number is
    never given out again."""
    if collection not in registry.versions():
        print(f"unknown index version {collection!r}", file=sys.stderr)
        return 1
    try:
        registry.drop(collection)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(f"dropped {collection}; its loops stop within seconds")
    return 0


def finish(args: argparse.Namespace, registry: IndexRegistry, version: IndexVersion) -> int:
    rules, clock = version_rules(version), version_clock(KafkaSettings(), version)
    points, expected = wait_until_caught_up(registry, version.collection,
                                            lambda: expected_points(MariaDBSettings(), rules, clock()), args.timeout)
    active = registry.active()
    problems = []
    if points != expected:
        problems.append(f"{version.collection} has {points:,} points, MariaDB has {expected:,} viable posts")
    else:
        # A version with rules of its own can only hold what they keep: judge the overlap on that.
        keep = set(viable_posts(MariaDBSettings(), rules, clock())) if version.viability_rules else None
        overlap = checked_canary_overlap(args, active, version.collection, keep)
        print(f"canary overlap with {active}: {overlap:.2f} (threshold {args.min_overlap})")
        if overlap < args.min_overlap:
            problems.append(f"canary overlap {overlap:.2f} < {args.min_overlap}")
    if problems and not args.override:
        print(f"not switching to {version.collection}: " + "; ".join(problems) + ". It stays built: `--status` "
              f"lists it, `--drop {version.collection}` discards it; replay again with `--override` to switch "
              "anyway, or with a longer `--timeout` if it was still catching up", file=sys.stderr)
        return 2
    if args.no_switch:
        print(f"verified; alias left on {active}")
        return 0
    registry.switch(version.collection)
    wait_for_replicas()
    print(f"alias {registry.alias} → {version.collection} (was {active}); `--rollback` switches back")
    return 0


def wait_for_replicas() -> None:
    """Query processes reuse the active version for QUERY_ALIAS_CACHE_S: returning after that long means
    every replica searches the version just switched to when the command returns."""
    time.sleep(VectorStoreSettings().query_alias_cache_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.replay", description=__doc__.split("\n\n")[0].replace("\n", " "),
                                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", choices=["pipeline", "embed", "index", "classify"], default="embed",
                        help="where reprocessing starts: pipeline = from the CDC topics through viability; "
                             "classify = index (labels are decided at indexing)")
    parser.add_argument("--model", choices=["fp32", "int8"], default=None,
                        help="embedding model (stages embed and pipeline; default: EMBEDDING_MODEL_VARIANT, the live one)")
    parser.add_argument("--from", dest="start", default="earliest",
                        help="earliest (default), an offset, or an ISO timestamp")
    parser.add_argument("--dry-run", action="store_true", help="print what would be reprocessed and its cost")
    parser.add_argument("--rollback", action="store_true", help="point the alias back at the previous version")
    parser.add_argument("--status", action="store_true", help="list index versions and the active one")
    parser.add_argument("--drop", metavar="COLLECTION", help="discard a version that is not active")
    parser.add_argument("--override", action="store_true",
                        help="switch even if verification fails (and, stage classify, the classification gate)")
    parser.add_argument("--no-switch", action="store_true", help="verify, but leave the alias where it is")
    parser.add_argument("--min-overlap", type=float, default=0.6, help="canary top-10 overlap needed to switch")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the new version")
    parser.add_argument("--api-url", default=None,
                        help="query API for the canary queries (default: REPLAY_API_URL, else the local stack's)")
    parser.add_argument("--api-key", default=None, help="API key with the search and admin scopes for the canary "
                        "queries (default: REPLAY_API_KEY, else the dev key `make dev` saves in DEV_DIR)")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except OperatorError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 1
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        print(f"replay: Redis ({RedisSettings().redis_url}) is unreachable ({exc}): start the stack (`make dev`) "
              "or set REDIS_URL", file=sys.stderr)
        return 1
    except pymysql.err.OperationalError as exc:
        mariadb = MariaDBSettings()
        print(f"replay: MariaDB ({mariadb.mariadb_host}:{mariadb.mariadb_port}) is unreachable ({exc.args[-1]}): "
              "start the stack (`make dev`) or set MARIADB_HOST/MARIADB_PORT", file=sys.stderr)
        return 1
    except KafkaException as exc:
        print(f"replay: Kafka ({KafkaSettings().kafka_bootstrap_servers}) did not answer ({exc}): start the stack "
              "(`make dev`) or set KAFKA_BOOTSTRAP_SERVERS", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
