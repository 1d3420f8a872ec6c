"""Replay into a new index version while live ingestion goes on, verify, switch, roll back, drop."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pymysql
import pytest
import redis

from demo.seed import seed_database
from devstack.processes import apply_schema
from devstack.stack import LocalStack
from ops import replay
from services.indexer.core import post_point_id
from services.viability.main import ViabilitySettings
from shared.config import KafkaSettings, MariaDBSettings
from shared.embedding import embedding_model_id
from shared.stored_post import payload_fields
from shared.vectorstore import EdgeVectorStore
from tests.conftest import api_headers, wait_for
from tests.e2e.source_of_truth import viable_posts_sql

pytestmark = pytest.mark.slow

DATABASE = PREFIX = "replay"
ANCHOR = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0, tzinfo=None)
LIVE_FOLLOWERS, STRICTER_FOLLOWERS = 10_000, 30_000  # the live rule, and the rule a pipeline replay applies


@pytest.fixture(scope="module")
def stack(infra, tmp_path_factory):
    config = replace(infra.config, root=Path(tmp_path_factory.mktemp("replay")), database=DATABASE,
                     topic_prefix=PREFIX)
    apply_schema(config.mariadb_port, DATABASE)
    seed_database(port=config.mariadb_port, database=DATABASE, scale="tiny", anchor=ANCHOR)
    stack = LocalStack(config)
    try:
        stack.start_services()
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def env(stack, monkeypatch):
    """The CLI reads the same environment variables as the services."""
    for name, value in stack.config.service_env().items():
        monkeypatch.setenv(name, value)


def search(stack: LocalStack, query: str, **extra) -> list[dict]:
    response = httpx.post(f"{stack.api_url}/v1/search/posts", headers=api_headers(stack), timeout=30,
                          json={"query": query, "limit": 10, **extra})
    assert response.status_code == 200, response.text
    return response.json()["results"]


def insert_post(stack: LocalStack, post_id: int, title: str) -> None:
    connection = pymysql.connect(host="127.0.0.1", port=stack.config.mariadb_port, user="root", database=DATABASE,
                                 autocommit=True, charset="utf8mb4")
    with connection.cursor() as cursor:
        cursor.execute("SELECT a.id FROM accounts a JOIN posts p ON p.account_id = a.id WHERE a.followers >= 10000 "
                       "GROUP BY a.id HAVING COUNT(*) >= 20 AND MAX(p.published_at) >= UTC_TIMESTAMP() - INTERVAL "
                       "180 DAY LIMIT 1")
        account = cursor.fetchone()[0]
        cursor.execute("INSERT INTO posts SELECT %s, id, platform, %s, '', NULL, UTC_TIMESTAMP(3), 1, 1, 0, "
                       "UTC_TIMESTAMP(3) FROM accounts WHERE id = %s", (post_id, title, account))
    connection.close()


def test_re_embedding_replay_builds_verifies_switches_and_rolls_back(stack, env, capsys):
    kafka = KafkaSettings()
    registry = replay.registry_from_env(kafka)
    expected = replay.expected_points(MariaDBSettings(), ViabilitySettings().rules())
    wait_for(lambda: registry.versions()["posts"].points == expected, timeout=240, what="live index caught up")

    # Dry run: everything is cached for the live model, nothing is for int8.
    assert replay.main(["--dry-run", "--stage", "embed", "--model", "fp32"]) == 0
    warm = capsys.readouterr().out
    assert "model calls (texts)   : 0 " in warm
    # It prices the LLM stage too: tier 1 runs over the posts to find the unsure ones (no LLM here).
    assert "tier 2 (LLM), off (no LLM_BASE_URL): if turned on" in warm and "unsure posts of " in warm
    assert replay.main(["--dry-run", "--stage", "embed", "--model", "int8"]) == 0
    cold = capsys.readouterr().out
    assert "embedding cache hits  : 0\n" in cold
    assert registry.versions().keys() == {"posts"}  # a dry run changes nothing

    live_title = "Replay-time post about restoring a vintage motorcycle engine"
    insert_post(stack, 9_000_001, live_title)  # arrives while the replay runs: must reach both versions
    headers = api_headers(stack)
    code = replay.main(["--stage", "embed", "--model", "int8", "--timeout", "300", "--api-url", stack.api_url,
                        *(["--api-key", headers["X-API-Key"]] if headers else [])])
    output = capsys.readouterr()
    assert code == 0, output.out + output.err
    assert registry.active() == "posts_v2"
    hits = search(stack, "vintage motorcycle engine restoration")
    assert hits[0]["post"]["title"] == live_title
    assert hits[0]["post"]["model_id"] == embedding_model_id(quantize=True)

    assert replay.main(["--rollback"]) == 0
    assert registry.active() == "posts"
    assert search(stack, "vintage motorcycle engine restoration")[0]["post"]["model_id"] == embedding_model_id()


def sql(stack: LocalStack, statement: str, params: tuple = ()) -> list[tuple]:
    connection = pymysql.connect(host="127.0.0.1", port=stack.config.mariadb_port, user="root", database=DATABASE,
                                 autocommit=True, charset="utf8mb4")
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement, params)
            return list(cursor.fetchall())
    finally:
        connection.close()


def must_index(stack: LocalStack, min_followers: int) -> dict[int, str]:
    """post id → title, by the SQL oracle (independent of the viability code)."""
    return dict(sql(stack, viable_posts_sql(min_followers)))


def add_post(stack: LocalStack, post_id: int, account: int, title: str) -> None:
    sql(stack, "INSERT INTO posts SELECT %s, id, platform, %s, '', NULL, UTC_TIMESTAMP(3), 1, 1, 0, UTC_TIMESTAMP(3) "
               "FROM accounts WHERE id = %s", (post_id, title, account))


def accounts_of(stack: LocalStack, min_followers: int) -> list[int]:
    return sorted({row[0] for row in sql(stack, f"SELECT DISTINCT p.account_id FROM ({viable_posts_sql(min_followers)})"
                                                " v JOIN posts p USING (id)")})


def change_live_data(stack: LocalStack, accounts: list[int], stop: threading.Event, done: list[str]) -> None:
    """Inserts, title edits, deletes and follower changes, as users make them, until stopped."""
    n = 0
    while not stop.is_set():
        account = accounts[n % len(accounts)]
        add_post(stack, 9_100_000 + n, account, f"Live post {n} written while the pipeline replay runs")
        sql(stack, "UPDATE posts SET title = CONCAT(title, ' (edited)') WHERE account_id = %s AND id < 9000000 "
                   "ORDER BY id DESC LIMIT 1", (account,))
        sql(stack, "DELETE FROM posts WHERE account_id = %s AND id < 9000000 ORDER BY published_at LIMIT 1",
            (account,))
        done.append(f"insert+update+delete on account {account}")
        n += 1
        stop.wait(0.3)


def shard_contents(stack: LocalStack, collection: str) -> tuple[list[str], dict[int, str]]:
    """(point ids, post id → title) read straight from the edge shard (the query process must be stopped)."""
    store = EdgeVectorStore(stack.config.root / "qdrant")
    try:
        store.ensure_collection(collection, 384)
        ids = list(store.scroll_ids(collection))
        titles = {post["post_id"]: post["title"] for post in (payload_fields(p.payload) for p in store.retrieve(collection, ids))}
        return ids, titles
    finally:
        store.close()


def test_pipeline_replay_with_a_changed_rule_equals_the_source_while_live_changes_go_on(stack, env, monkeypatch,
                                                                                        capsys):
    """Whole pipeline again from the CDC topics, with a stricter viability rule, while rows change."""
    kafka = KafkaSettings()
    registry = replay.registry_from_env(kafka)
    wait_for(lambda: registry.versions()["posts"].points == len(must_index(stack, LIVE_FOLLOWERS)), timeout=240,
             what="live index caught up")
    assert registry.active() == "posts"
    strict, loose = accounts_of(stack, STRICTER_FOLLOWERS), accounts_of(stack, LIVE_FOLLOWERS)
    between = [a for a in loose if a not in strict]  # viable live, not under the stricter rule
    assert len(strict) >= 5 and len(between) >= 3
    add_post(stack, 9_099_001, strict[0], "Calligraphy with a bamboo brush and sumi ink on rice paper")
    add_post(stack, 9_099_002, between[0], "Restoring a clawfoot bathtub with enamel paint")
    wait_for(lambda: registry.versions()["posts"].points == len(must_index(stack, LIVE_FOLLOWERS)), timeout=60,
             what="the two new posts indexed live")
    monkeypatch.setenv("VIABILITY_MIN_FOLLOWERS", str(STRICTER_FOLLOWERS))  # the replay's rule, not the live one
    versions_before, new_name = set(registry.versions()), f"posts_v{registry.next_version()}"

    assert replay.main(["--dry-run", "--stage", "pipeline"]) == 0
    plan = capsys.readouterr().out
    assert f"posts to (re)index    : {len(must_index(stack, STRICTER_FOLLOWERS)):,}" in plan, plan
    assert "model calls (texts)   : 0 " in plan, plan  # a subset of the live posts: every text is cached
    assert set(registry.versions()) == versions_before  # a dry run registers nothing

    stop, changes = threading.Event(), []
    changer = threading.Thread(target=change_live_data, args=(stack, [*strict[1:], *between[1:]], stop, changes))
    changer.start()
    sql(stack, "UPDATE accounts SET followers = 40000 WHERE id = %s", (between[1],))  # becomes viable in the replay
    sql(stack, "UPDATE accounts SET followers = 15000 WHERE id = %s", (strict[1],))  # leaves the replay, stays live
    threading.Timer(15, stop.set).start()  # changes overlap the replay's catch-up, then stop
    key = api_headers(stack)["X-API-Key"]
    try:
        code = replay.main(["--stage", "pipeline", "--timeout", "240", "--min-overlap", "0.3",
                            "--api-url", stack.api_url, "--api-key", key])
    finally:
        stop.set()
        changer.join()
    output = capsys.readouterr()
    assert code == 0, output.out + output.err
    overlap = next(line for line in output.out.splitlines() if "canary overlap" in line)
    version = registry.versions()[registry.active()]
    assert version.collection == new_name and version.stage == "pipeline", version
    assert version.viability_rules["min_followers"] == STRICTER_FOLLOWERS
    assert search(stack, "calligraphy with a bamboo brush")[0]["post_id"] == 9_099_001
    assert 9_099_002 not in [hit["post_id"] for hit in search(stack, "clawfoot bathtub enamel restoration")]

    expected_new, expected_live = must_index(stack, STRICTER_FOLLOWERS), must_index(stack, LIVE_FOLLOWERS)
    wait_for(lambda: (registry.versions()[new_name].points, registry.versions()["posts"].points)
             == (len(expected_new), len(expected_live)), timeout=120, what="both versions settled")
    client = redis.Redis(port=stack.config.redis_port)
    replay_viable = {int(a) for a in client.smembers(f"{version.viability_namespace}:viability:viable")}
    live_viable = {int(a) for a in client.smembers(f"{PREFIX}:viability:viable")}
    assert replay_viable == set(accounts_of(stack, STRICTER_FOLLOWERS))  # each version decides by its own rule
    assert live_viable == set(accounts_of(stack, LIVE_FOLLOWERS))

    assert replay.main(["--rollback"]) == 0
    assert registry.active() == "posts"
    assert search(stack, "clawfoot bathtub enamel restoration")[0]["post_id"] == 9_099_002

    assert replay.main(["--drop", new_name]) == 0
    assert new_name not in registry.versions()
    namespace_keys = lambda: list(client.scan_iter(match=f"{version.viability_namespace}:*"))  # noqa: E731
    wait_for(lambda: not namespace_keys(), timeout=30, what="the dropped version's viability state deleted")
    add_post(stack, 9_099_003, strict[0], "A post after the drop: no loop of the dropped version may see it")
    wait_for(lambda: registry.versions()["posts"].points == len(must_index(stack, LIVE_FOLLOWERS)), timeout=60,
             what="the post after the drop indexed live")
    assert namespace_keys() == [] and client.scard(f"{PREFIX}:viability:viable") == len(live_viable)

    stack.services["query"].stop()  # the edge shard has one owner: read it directly now
    for collection, expected in ((new_name, expected_new), ("posts", must_index(stack, LIVE_FOLLOWERS))):
        ids, titles = shard_contents(stack, collection)
        assert len(ids) == len(set(ids)), f"{collection}: duplicate points"
        assert set(ids) == {post_point_id(post_id) for post_id in expected}, collection
        assert titles == expected, f"{collection}: stale titles"
    print(f"{len(changes)} rounds of live changes; {len(expected_new)} posts in {new_name}, "
          f"{len(expected_live)} live; {overlap}")
