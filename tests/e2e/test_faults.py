"""Faults during a 20k-post ingest: every service SIGKILLed and restarted, Redis stopped and
restarted (what the embedder does without Redis is pinned down in
tests/integration/test_cache_outage.py). The final index must equal the viable rows in MariaDB exactly: no missing, no extra,
no duplicate points, and the latest version of every row."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pymysql
import pytest

from demo.seed import seed_database
from devstack.processes import apply_schema, port_open
from devstack.stack import LocalStack
from services.indexer.core import post_point_id
from shared.stored_post import payload_fields
from shared.vectorstore import EdgeVectorStore
from tests.conftest import api_headers, wait_for
from tests.e2e.source_of_truth import VIABLE_POSTS_SQL

pytestmark = pytest.mark.slow

DATABASE = PREFIX = "faults"
ANCHOR = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0, tzinfo=None)


def sql(port: int, statement: str) -> list[tuple]:
    connection = pymysql.connect(host="127.0.0.1", port=port, user="root", database=DATABASE, autocommit=True,
                                 charset="utf8mb4")
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
            return list(cursor.fetchall())
    finally:
        connection.close()


def indexed_points(stack: LocalStack) -> int:
    try:
        response = httpx.get(f"{stack.api_url}/v1/status", headers=api_headers(stack), timeout=5)
        return response.json()["points"] if response.status_code == 200 else -1
    except httpx.HTTPError:
        return -1  # the query process is restarting


def kill_and_restart(stack: LocalStack, name: str, log: list[str]) -> None:
    before = indexed_points(stack)
    stack.services[name].kill()  # SIGKILL: no flush, no commit, no checkpoint
    stack.start_service(name)
    log.append(f"killed {name} at {before} points")


@pytest.fixture(scope="module")
def stack(infra, tmp_path_factory):
    config = replace(infra.config, root=Path(tmp_path_factory.mktemp("faults")), database=DATABASE,
                     topic_prefix=PREFIX)
    apply_schema(config.mariadb_port, DATABASE)
    stack = LocalStack(config)
    try:
        stack.start_services()
        yield stack
    finally:
        stack.stop()


def test_every_service_killed_mid_ingest_and_redis_restarted_loses_nothing(stack, infra):
    port = stack.config.mariadb_port
    seeding = threading.Thread(target=seed_database, kwargs=dict(
        port=port, database=DATABASE, scale="small", anchor=ANCHOR))
    seeding.start()  # streamed through the binlog while the faults happen, not a snapshot
    events: list[str] = []
    progress = lambda n: wait_for(lambda: indexed_points(stack) >= n, timeout=240, what=f"{n} points")  # noqa: E731

    time.sleep(2)
    kill_and_restart(stack, "cdc", events)
    seeding.join()
    progress(500)
    kill_and_restart(stack, "viability", events)
    sql(port, "UPDATE posts SET title = CONCAT(title, ' (edited)') WHERE id % 40 = 0")
    progress(1500)
    kill_and_restart(stack, "embedder", events)
    progress(2000)
    kill_and_restart(stack, "classifier", events)
    progress(2500)
    redis_process = infra.infra["redis"]
    redis_process.stop()
    events.append("redis stopped")
    time.sleep(5)  # embedder goes on uncached, viability retries its batch
    redis_process.start()
    wait_for(lambda: port_open("127.0.0.1", infra.config.redis_port), timeout=15, what="Redis back")
    events.append("redis restarted")
    progress(3500)
    kill_and_restart(stack, "query", events)  # the indexer and the summarizer run in the query process
    sql(port, "DELETE FROM posts WHERE id % 97 = 0")

    expected = dict(sql(port, VIABLE_POSTS_SQL))
    wait_for(lambda: indexed_points(stack) == len(expected), timeout=600, interval=1,
             what=f"{len(expected)} points (events: {events})")
    time.sleep(3)  # nothing more may arrive: a late duplicate or resurrection would show now
    assert indexed_points(stack) == len(expected)

    stack.services["query"].stop()  # release the edge shard so the test can read it directly
    store = EdgeVectorStore(stack.config.root / "qdrant")
    try:
        store.ensure_collection("posts", 384)
        ids = list(store.scroll_ids("posts"))
        assert len(ids) == len(set(ids)) == len(expected)
        assert set(ids) == {post_point_id(post_id) for post_id in expected}
        points = store.retrieve("posts", ids)
        # Labels are written with the point, so no crash leaves a point unlabelled.
        assert all(isinstance(p.payload.get("verticals"), list) and p.payload.get("content_hash") for p in points)
        stored = {post["post_id"]: post["title"] for post in (payload_fields(p.payload) for p in points)}
        stale = {pid: (title, expected[pid]) for pid, title in stored.items() if title != expected[pid]}
        assert stale == {}
    finally:
        store.close()
        stack.start_service("query")
    print("\n".join(events))
