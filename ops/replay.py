"""Reprocess into a new index version while live ingestion keeps serving the current one, verify
it, and switch the alias atomically.

    python -m ops.replay --stage embed --model int8          # re-embed everything with a new model
    python -m ops.replay --stage index --from 2026-11-01T00:00  # re-index from a point in time
    python -m ops.replay --dry-run --stage embed --model int8 # what it would cost, nothing changes
    python -m ops.replay --rollback                          # point the alias back
    python -m ops.replay --status

Stages: ``index`` re-reads the embedded topic into a new collection (a collection setting or
payload change); ``embed`` re-reads the viable-posts topic, embeds with the chosen model (cache
first) into a version topic, and indexes that. The new version gets its own consumer groups, so
live changes reach it as well; consumer offsets are set through the Kafka admin API, topics are
never deleted. Switching needs: the new version holds as many points as MariaDB has viable posts,
and canary queries' top results overlap the current version's (or ``--override``).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import httpx
import pymysql
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from services.viability.main import ViabilitySettings
from shared.cache import connect_redis
from shared.config import KafkaSettings, MariaDBSettings, RedisSettings, VectorStoreSettings
from shared.embedding import embedding_model_id
from shared.events import MalformedEvent, PostUpsert, content_hash, parse_pipeline_event
from shared.index_registry import IndexRegistry, IndexVersion

CANARY_QUERIES = (
    "easy vegan dinner recipes", "leg day workout at the gym", "budget travel itinerary for europe",
    "unboxing the new smartphone", "how to invest in index funds", "skincare routine for dry skin",
    "toddler sleep schedule tips", "speedrun of a retro platformer", "training a puppy to sit",
    "acoustic guitar cover of a pop song",
)


# --- planning ------------------------------------------------------------------------------


def plan_version(kafka: KafkaSettings, registry: IndexRegistry, stage: str, model_variant: str) -> IndexVersion:
    number = registry.next_version()
    collection = f"{registry.alias}_v{number}"
    if stage == "index":
        return IndexVersion(collection=collection, version=number, stage="index",
                            source_topic=kafka.embedded_posts_topic, indexer_group=f"{kafka.topic_prefix}-indexer-{collection}",
                            model_variant=model_variant)
    return IndexVersion(
        collection=collection, version=number, stage="embed",
        source_topic=f"{kafka.embedded_posts_topic}.{collection}",
        indexer_group=f"{kafka.topic_prefix}-indexer-{collection}",
        embed_from_topic=kafka.viable_posts_topic, embedder_group=f"{kafka.topic_prefix}-embedder-{collection}",
        model_variant=model_variant,
    )


def first_stage(version: IndexVersion) -> tuple[str, str]:
    """The (group, topic) that reads the already-existing history for this version."""
    if version.stage == "embed":
        return version.embedder_group, version.embed_from_topic
    return version.indexer_group, version.source_topic


def parse_start(value: str) -> int | datetime | None:
    """``earliest`` → None, an integer → that offset, else an ISO timestamp (naive = UTC)."""
    if value == "earliest":
        return None
    if value.lstrip("-").isdigit():
        return int(value)
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def start_offsets(kafka: KafkaSettings, topic: str, start: int | datetime | None) -> list[TopicPartition]:
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
    admin = AdminClient({"bootstrap.servers": kafka.kafka_bootstrap_servers})
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
    llm_tokens: int = 0
    llm_dollars: float = 0.0

    def render(self, version: IndexVersion) -> str:
        lines = [
            f"would build {version.collection} (stage {version.stage}, model {version.model_variant}) "
            f"from {first_stage(version)[1]}",
            f"  messages to reprocess : {self.messages:,}",
            f"  posts to (re)index    : {self.upserts:,}",
        ]
        if version.stage == "embed":
            lines += [f"  embedding cache hits  : {self.cache_hits:,}",
                      f"  model calls (texts)   : {self.model_calls:,} (local model: no per-call cost)"]
        lines.append(f"  LLM tokens / dollars  : {self.llm_tokens:,} / ${self.llm_dollars:,.2f} "
                     "(no LLM stage in this replay)")
        return "\n".join(lines)


def estimate(kafka: KafkaSettings, version: IndexVersion, offsets: list[TopicPartition], redis_url: str) -> CostEstimate:
    """Read what would be reprocessed; for re-embedding, ask the cache which texts it already has."""
    model_id = embedding_model_id(version.model_variant == "int8")
    client = connect_redis(redis_url)
    cost = CostEstimate(0, 0, 0, 0)
    hashes: set[str] = set()
    for value in _read_from(kafka, offsets):
        cost.messages += 1
        try:
            event = parse_pipeline_event(value)
        except MalformedEvent:
            continue
        if isinstance(event, PostUpsert) or event.kind == "post.embedded":
            cost.upserts += 1
            hashes.add(content_hash(event.post.embedding_text()))
    if version.stage == "embed":
        ordered = sorted(hashes)
        for i in range(0, len(ordered), 1000):
            with client.pipeline(transaction=False) as pipe:
                for text_hash in ordered[i:i + 1000]:
                    pipe.exists(f"emb:{model_id}:{text_hash}")
                cost.cache_hits += sum(pipe.execute())
        cost.model_calls = len(hashes) - cost.cache_hits
    return cost


def _read_from(kafka: KafkaSettings, offsets: list[TopicPartition], idle_s: float = 2.0):
    consumer = Consumer({"bootstrap.servers": kafka.kafka_bootstrap_servers, "group.id": "ops-replay-estimate",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    consumer.assign(offsets)
    remaining, deadline = {tp.partition for tp in offsets}, time.monotonic() + idle_s
    try:
        while remaining and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):
                deadline = time.monotonic() + idle_s
                if message.error() is None:
                    yield message.value()
                else:
                    remaining.discard(message.partition())
    finally:
        consumer.close()


# --- progress and verification -------------------------------------------------------------


def expected_points(mariadb: MariaDBSettings, rules) -> int:
    """Viable posts in the source of truth, by the same rules the viability service applies."""
    viable_sql, params = rules.viable_posts_sql()
    connection = pymysql.connect(**mariadb.connect_kwargs())
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*) FROM ({viable_sql}) viable", params)
            return cursor.fetchone()[0]
    finally:
        connection.close()


def progress_line(done: int, total: int, started: float) -> str:
    elapsed = max(time.monotonic() - started, 1e-6)
    rate = done / elapsed
    eta = (total - done) / rate if rate > 0 and total > done else 0
    width = 30
    filled = int(width * min(done / total, 1)) if total else width
    return f"[{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,} points  {rate:,.0f}/s  ETA {eta:,.0f}s"


def wait_until_caught_up(registry: IndexRegistry, collection: str, expected: int, timeout_s: float,
                         out=sys.stdout) -> int:
    started, points, stable_since = time.monotonic(), -1, None
    while time.monotonic() - started < timeout_s:
        version = registry.versions().get(collection)
        current = version.points if version else 0
        out.write("\r" + progress_line(current, expected, started))
        out.flush()
        if current == expected:
            stable_since = stable_since or time.monotonic()
            if time.monotonic() - stable_since >= 4:  # two indexer reports in a row agree
                out.write("\n")
                return current
        else:
            stable_since = None
        points = current
        time.sleep(1)
    out.write("\n")
    return points


def canary_overlap(api_url: str, api_key: str | None, active: str, candidate: str, queries=CANARY_QUERIES,
                   limit: int = 10) -> float:
    """Mean share of the current version's top results that the new version also returns."""
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
            if tops[0]:
                overlaps.append(len(tops[0] & tops[1]) / len(tops[0]))
    return sum(overlaps) / len(overlaps) if overlaps else 0.0


# --- commands ------------------------------------------------------------------------------


def registry_from_env(kafka: KafkaSettings) -> IndexRegistry:
    registry = IndexRegistry(connect_redis(RedisSettings().redis_url), kafka.topic_prefix,
                             alias=VectorStoreSettings().posts_collection)
    registry.bootstrap(VectorStoreSettings().posts_collection, kafka.embedded_posts_topic,
                       f"{kafka.topic_prefix}-indexer")
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
    if args.rollback:
        previous = registry.previous()
        if not previous or previous not in registry.versions():
            print("nothing to roll back to", file=sys.stderr)
            return 1
        registry.switch(previous)
        print(f"alias {registry.alias} → {previous}")
        return 0
    version = plan_version(kafka, registry, args.stage, args.model)
    group, topic = first_stage(version)
    offsets = start_offsets(kafka, topic, parse_start(args.start))
    if args.dry_run:
        print(estimate(kafka, version, offsets, RedisSettings().redis_url).render(version))
        return 0
    set_group_offsets(kafka, group, offsets)
    registry.register(version)
    print(f"building {version.collection} from {topic} (group {group}); live keeps serving {registry.active()}")
    return finish(args, registry, version)


def finish(args: argparse.Namespace, registry: IndexRegistry, version: IndexVersion) -> int:
    expected = expected_points(MariaDBSettings(), ViabilitySettings().rules())
    points = wait_until_caught_up(registry, version.collection, expected, args.timeout)
    active = registry.active()
    problems = []
    if points != expected:
        problems.append(f"{version.collection} has {points:,} points, MariaDB has {expected:,} viable posts")
    else:
        overlap = canary_overlap(args.api_url, args.api_key, active, version.collection)
        print(f"canary overlap with {active}: {overlap:.2f} (threshold {args.min_overlap})")
        if overlap < args.min_overlap:
            problems.append(f"canary overlap {overlap:.2f} < {args.min_overlap}")
    if problems and not args.override:
        print("not switching: " + "; ".join(problems) + " (--override to switch anyway)", file=sys.stderr)
        return 2
    if args.no_switch:
        print(f"verified; alias left on {active}")
        return 0
    registry.switch(version.collection)
    print(f"alias {registry.alias} → {version.collection} (was {active}); `--rollback` switches back")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.replay", description=__doc__.split("\n\n")[0].replace("\n", " "),
                                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", choices=["index", "embed"], default="embed", help="where reprocessing starts")
    parser.add_argument("--model", choices=["fp32", "int8"], default="fp32", help="embedding model (stage embed)")
    parser.add_argument("--from", dest="start", default="earliest",
                        help="earliest (default), an offset, or an ISO timestamp")
    parser.add_argument("--dry-run", action="store_true", help="print what would be reprocessed and its cost")
    parser.add_argument("--rollback", action="store_true", help="point the alias back at the previous version")
    parser.add_argument("--status", action="store_true", help="list index versions and the active one")
    parser.add_argument("--override", action="store_true", help="switch even if verification fails")
    parser.add_argument("--no-switch", action="store_true", help="verify, but leave the alias where it is")
    parser.add_argument("--min-overlap", type=float, default=0.6, help="canary top-10 overlap needed to switch")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the new version")
    parser.add_argument("--api-url", default="http://127.0.0.1:8000", help="query API (for canary queries)")
    parser.add_argument("--api-key", default=None, help="API key with the admin scope (canary queries)")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
