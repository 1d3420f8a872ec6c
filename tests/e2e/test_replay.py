"""Replay into a new index version while live ingestion goes on, verify, switch, roll back."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pymysql
import pytest

from demo.seed import seed_database
from devstack.processes import apply_schema
from devstack.stack import LocalStack
from ops import replay
from services.viability.main import ViabilitySettings
from shared.config import KafkaSettings, MariaDBSettings
from shared.embedding import embedding_model_id
from tests.conftest import api_headers, wait_for

pytestmark = pytest.mark.slow

DATABASE = PREFIX = "replay"
ANCHOR = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0, tzinfo=None)


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
