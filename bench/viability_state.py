"""Viability's per-event cost as its state grows to the large seed's, without MariaDB, cdc or Kafka:

    python -m bench.viability_state [--scale large] [--batch 500] [--window 100000] [--out FILE]

The generator's account plans at ``--scale`` (followers, post counts with their heavy tail; posts
grouped by account as a snapshot reads them) become Debezium snapshot envelopes, fed through the
viability service's own batch handler (parse, pure core, one pipelined Redis round trip, outbound
encoding, the after-durable recording) against a private redis-server. Only the Kafka consume and
produce are left out: benchmark 7 measures those with the whole pipeline.

Two passes: "fill" is the snapshot catching up (every account and post new to the state), "filled"
the same events again over the full state (a live pipeline's steady state). Each pass reports
events/s and events per CPU second of this process (and Redis's CPU next to it), per window of
``--window`` events, so the growth of per-event cost with the state's size is visible.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import orjson
import redis

from demo.generator import POPULATIONS, SCALES, _plan_accounts, _publish_times
from demo.seed import default_anchor
from services.viability.core import ViabilityFilter, ViabilityRules
from services.viability.main import ViabilityService
from services.viability.signals import PendingSnapshots
from services.viability.state import RedisViabilityState
from shared.config import KafkaSettings
from tests.support.redis_server import private_redis

NAMESPACE = "benchstate"
# A post's text in the field: a title and a description a few hundred characters long.
TITLE = "Weekly roundup: the five things that mattered this week, explained"
DESCRIPTION = ("In this episode we go through the news of the week, what it means for you and what to "
               "watch next. Chapters: 00:00 intro, 01:30 the big story, 07:45 three smaller ones, "
               "15:10 your questions. Links and sources in the comments. ") * 2


class SnapshotMessage:
    """What the batch handler reads of a consumed Kafka message."""

    __slots__ = ("_topic", "_key", "_value")

    def __init__(self, topic: str, key: bytes, value: bytes) -> None:
        self._topic, self._key, self._value = topic, key, value

    def topic(self) -> str:
        return self._topic

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes:
        return self._value


def envelope(table: str, row: dict, position: int) -> bytes:
    return orjson.dumps({"before": None, "after": row, "op": "r", "ts_ms": 1, "source": {
        "ts_ms": 1, "snapshot": "true", "db": "bench", "table": table, "file": "mysql-bin.000001", "pos": position}})


def epoch_ms(moment: datetime) -> int:
    return int(moment.replace(tzinfo=timezone.utc).timestamp() * 1000)


def snapshot_messages(kafka: KafkaSettings, scale: str, anchor: datetime) -> Iterator[SnapshotMessage]:
    """Accounts, then posts grouped by account, as Debezium's snapshot reads the two tables."""
    n_accounts, n_posts = SCALES[scale]
    plans = _plan_accounts(7, n_accounts, n_posts, anchor, POPULATIONS[scale])
    for plan in plans:
        row = plan.row
        yield SnapshotMessage(kafka.accounts_topic, orjson.dumps({"id": row.id}), envelope("accounts", {
            "id": row.id, "platform": row.platform, "handle": row.handle, "display_name": row.display_name,
            "followers": row.followers}, row.id))
    post_id = 0
    for plan in plans:
        rng = random.Random(f"posts:7:{plan.row.id}")
        for published in _publish_times(rng, plan):
            post_id += 1
            yield SnapshotMessage(kafka.posts_topic, orjson.dumps({"id": post_id}), envelope("posts", {
                "id": post_id, "account_id": plan.row.id, "platform": plan.row.platform, "title": TITLE,
                "description": DESCRIPTION, "published_at": epoch_ms(published)}, post_id))


def redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def run_pass(service: ViabilityService, client: redis.Redis, messages: list[SnapshotMessage], batch: int,
             window: int) -> dict:
    """Every message through the handler in batches; rates per window of events and overall."""
    windows, outputs = [], 0
    start = mark = (0, time.perf_counter(), time.process_time(), redis_cpu(client))
    for at in range(0, len(messages), batch):
        result = service.handle_batch(messages[at:at + batch])
        for hook in result.after_durable:
            hook()
        outputs += len(result.outputs)
        done = min(at + batch, len(messages))
        if done - mark[0] >= window or done == len(messages):
            now = (done, time.perf_counter(), time.process_time(), redis_cpu(client))
            windows.append(rates(now, mark, events_before=mark[0]))
            mark = now
    return {**rates(mark, start), "outputs": outputs, "windows": windows}


def rates(now: tuple, before: tuple, **extra) -> dict:
    events, wall, cpu, redis_s = (now[i] - before[i] for i in range(4))
    return {"events": events, "events_per_s": round(events / wall), "events_per_cpu_s": round(events / cpu),
            "redis_cpu_s_per_10k_events": round(redis_s / events * 10_000, 3), **extra}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.viability_state", description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="large", choices=sorted(SCALES))
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--window", type=int, default=100_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    kafka = KafkaSettings()
    messages = list(snapshot_messages(kafka, args.scale, default_anchor()))
    print(f"{len(messages)} events generated", flush=True)
    report: dict = {"scale": args.scale, "batch": args.batch, "events": len(messages)}
    with tempfile.TemporaryDirectory() as root, private_redis(Path(root)) as url:
        client = redis.Redis.from_url(url)
        state = RedisViabilityState(client, NAMESPACE)
        service = ViabilityService(kafka, ViabilityFilter(state, ViabilityRules()), "bench.viable",
                                   pending=PendingSnapshots(client, NAMESPACE))
        for name in ("fill", "filled"):
            report[name] = run_pass(service, client, messages, args.batch, args.window)
            print(name, {k: v for k, v in report[name].items() if k != "windows"}, flush=True)
        report["viable_accounts"] = len(state.viable_accounts())
        report["redis_used_memory_mb"] = round(client.info("memory")["used_memory"] / 1e6, 1)
    text = orjson.dumps(report, option=orjson.OPT_INDENT_2).decode()
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
