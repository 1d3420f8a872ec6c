"""Viability's per-event cost as its state grows to the large seed's, without MariaDB, cdc or Kafka:

    python -m bench.viability_state [--scale large] [--batch 500] [--window 100000] [--catch-up-only] [--out FILE]

The generator's account plans at ``--scale`` (followers, post counts with their heavy tail; posts
grouped by account as a snapshot reads them) become Debezium envelopes, fed through the viability
service's own batch handler (parse, pure core, its Redis state calls, outbound encoding, the
after-durable recording) against a private redis-server. Only the Kafka consume and produce are left
out: benchmark 7 measures those with the whole pipeline.

Passes, over one state: "fill", cdc's initial snapshot (every account and post new to the state);
"reread", the incremental snapshot of the accounts that became viable (what their signals ask cdc
for); "catch_up" is the two together, what a new source costs; "filled", every row again as a streamed
update over the full state (a live pipeline's steady state: each viable account's post forwarded).
Events are generated as a pass goes, never all held. Each pass reports events/s and events per CPU
second of this process (and Redis's CPU next to it), per window of ``--window`` events, so the growth
of per-event cost with the state's size shows.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from itertools import islice
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


# How each pass's rows come: cdc's initial snapshot (every row has the binlog position it started at),
# the incremental snapshot viability asks for, or the binlog streaming updates.
SOURCES = {
    "snapshot": {"op": "r", "snapshot": "true", "file": "mysql-bin.000001"},
    "incremental": {"op": "r", "snapshot": "incremental", "file": "mysql-bin.000002"},
    "streamed": {"op": "u", "snapshot": "false", "file": "mysql-bin.000003"},
}


def envelope(table: str, row: dict, position: int, mode: str) -> bytes:
    source = SOURCES[mode]
    pos = position if mode == "streamed" else 4
    return orjson.dumps({"before": row if mode == "streamed" else None, "after": row, "op": source["op"], "ts_ms": 1,
                         "source": {"ts_ms": 1, "snapshot": source["snapshot"], "db": "bench", "table": table,
                                    "file": source["file"], "pos": pos, "row": position}})


def epoch_ms(moment: datetime) -> int:
    return int(moment.replace(tzinfo=timezone.utc).timestamp() * 1000)


def source_messages(kafka: KafkaSettings, plans: list, mode: str,
                    accounts: set[int] | None = None) -> Iterator[SnapshotMessage]:
    """Accounts, then posts grouped by account, as a snapshot reads the two tables; ``accounts``: only
    the posts of these (an incremental snapshot of the accounts viability asked for)."""
    for plan in plans if accounts is None else ():
        row = plan.row
        yield SnapshotMessage(kafka.accounts_topic, orjson.dumps({"id": row.id}), envelope("accounts", {
            "id": row.id, "platform": row.platform, "handle": row.handle, "display_name": row.display_name,
            "followers": row.followers}, row.id, mode))
    post_id = 0
    for plan in plans:
        if accounts is not None and plan.row.id not in accounts:
            post_id += plan.n_posts
            continue
        rng = random.Random(f"posts:7:{plan.row.id}")
        for published in _publish_times(rng, plan):
            post_id += 1
            yield SnapshotMessage(kafka.posts_topic, orjson.dumps({"id": post_id}), envelope("posts", {
                "id": post_id, "account_id": plan.row.id, "platform": plan.row.platform, "title": TITLE,
                "description": DESCRIPTION, "published_at": epoch_ms(published)}, post_id, mode))


def redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def run_pass(service: ViabilityService, client: redis.Redis, messages: Iterator[SnapshotMessage], batch: int,
             window: int) -> dict:
    """Every message through the handler in batches; rates per window of events and overall. The
    CPU and wall time include generating the messages (``snapshot_generation_cpu_s`` of the first pass)."""
    windows, outputs, done = [], 0, 0
    start = mark = (0, time.perf_counter(), time.process_time(), redis_cpu(client))
    while chunk := list(islice(messages, batch)):
        result = service.handle_batch(chunk)
        for hook in result.after_durable:
            hook()
        outputs += len(result.outputs)
        done += len(chunk)
        if done - mark[0] >= window:
            now = (done, time.perf_counter(), time.process_time(), redis_cpu(client))
            windows.append(rates(now, mark, events_before=mark[0]))
            mark = now
    end = (done, time.perf_counter(), time.process_time(), redis_cpu(client))
    if end[0] > mark[0]:
        windows.append(rates(end, mark, events_before=mark[0]))
    return {**rates(end, start), "outputs": outputs, "windows": windows}


def combined(*passes: dict) -> dict:
    """The snapshot and the re-read it asks for: what catching up with a new source costs."""
    events = sum(p["events"] for p in passes)
    cpu = sum(p["events"] / p["events_per_cpu_s"] for p in passes)
    wall = sum(p["events"] / p["events_per_s"] for p in passes)
    return {"events": events, "events_per_s": round(events / wall), "events_per_cpu_s": round(events / cpu),
            "outputs": sum(p["outputs"] for p in passes)}


def generation_cpu_s(kafka: KafkaSettings, plans: list) -> float:
    """CPU seconds spent only making the messages of one pass (subtracted from the pass's own)."""
    started = time.process_time()
    for _ in source_messages(kafka, plans, "snapshot"):
        pass
    return time.process_time() - started


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
    parser.add_argument("--catch-up-only", action="store_true", help="skip the 'filled' pass")
    args = parser.parse_args(argv)
    kafka = KafkaSettings()
    n_accounts, n_posts = SCALES[args.scale]
    plans = _plan_accounts(7, n_accounts, n_posts, default_anchor(), POPULATIONS[args.scale])
    report: dict = {"scale": args.scale, "batch": args.batch}
    with tempfile.TemporaryDirectory() as root, private_redis(Path(root)) as url:
        client = redis.Redis.from_url(url)
        state = RedisViabilityState(client, NAMESPACE)
        pending = PendingSnapshots(client, NAMESPACE)
        service = ViabilityService(kafka, ViabilityFilter(state, ViabilityRules()), "bench.viable", pending=pending)
        report["fill"] = run_pass(service, client, source_messages(kafka, plans, "snapshot"), args.batch, args.window)
        requested = {int(account) for account in client.zrange(pending.key, 0, -1)}  # what signals would ask for
        report["reread"] = run_pass(service, client, source_messages(kafka, plans, "incremental", requested),
                                    args.batch, args.window)
        report["reread"]["accounts"] = len(requested)
        report["catch_up"] = combined(report["fill"], report["reread"])
        if not args.catch_up_only:
            report["filled"] = run_pass(service, client, source_messages(kafka, plans, "streamed"), args.batch,
                                        args.window)
        for name in [n for n in ("fill", "reread", "catch_up", "filled") if n in report]:
            print(name, {k: v for k, v in report[name].items() if k != "windows"}, flush=True)
        report["snapshot_generation_cpu_s"] = round(generation_cpu_s(kafka, plans), 2)
        report["viable_accounts"] = len(state.viable_accounts())
        report["redis_used_memory_mb"] = round(client.info("memory")["used_memory"] / 1e6, 1)
    text = orjson.dumps(report, option=orjson.OPT_INDENT_2).decode()
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
