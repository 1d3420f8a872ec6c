"""Every command of the operators' documentation, run exactly as written against a local stack.

The commands are read from the doc's Operations section (OPERATIONS_DOC, OPERATIONS_HEADING), so the
test follows the document. The stack is the one `make dev` runs (default database and topic names, a
dev key saved where `make dev` saves it), on this session's private ports.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest
import redis

from demo.seed import seed_database
from devstack.processes import apply_schema
from devstack.run import DEV_KEY_FILE
from devstack.stack import LocalStack
from services.query.admin_keys import ensure_dev_key
from shared.auth import ApiKeyStore
from shared.config import PROJECT_ROOT
from shared.index_registry import IndexRegistry
from tests.conftest import wait_for
from tests.e2e.source_of_truth import VIABLE_POSTS_SQL

pytestmark = pytest.mark.slow

# Where the operators' commands are documented (one place: point it at the file that has them).
OPERATIONS_DOC = PROJECT_ROOT / "docs" / "operations.md"
OPERATIONS_HEADING = "# Operations"


def documented_commands(doc: Path = OPERATIONS_DOC, heading: str = OPERATIONS_HEADING) -> list[str]:
    """The shell commands of the section's ```bash blocks, comments stripped, in order."""
    text = doc.read_text()
    start = text.index(heading + "\n")
    section = text[start + len(heading):]
    end = re.search(r"^#{1,%d} " % heading.count("#"), section, re.M)
    section = section[:end.start()] if end else section
    commands = []
    for block in re.findall(r"```(?:bash|sh|shell)\n(.*?)```", section, re.S):
        for line in block.splitlines():
            command = line.split(" # ")[0].split("  #")[0].strip()
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


@pytest.fixture(scope="module")
def stack(infra, tmp_path_factory):
    """`make dev`'s stack: database and topic prefix `influential`, tiny seed, the dev key in DEV_DIR."""
    root = Path(tmp_path_factory.mktemp("operations"))
    config = replace(infra.config, root=root)  # database and prefix: the defaults the doc's names use
    apply_schema(config.mariadb_port, config.database)
    seed_database(port=config.mariadb_port, database=config.database, scale="tiny",
                  anchor=datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0, tzinfo=None))
    ensure_dev_key(ApiKeyStore(redis.Redis(port=config.redis_port)), root / DEV_KEY_FILE)
    stack = LocalStack(config)
    try:
        stack.start_services()
        yield stack
    finally:
        stack.stop()
        # The session's Redis is shared: the documented int8 replay filled its embedding cache, which
        # would make another module's "nothing is cached for int8 yet" untrue (tests/e2e/test_replay.py).
        redis.Redis(port=config.redis_port).flushdb()


def shell_env(stack: LocalStack) -> dict[str, str]:
    """What a developer's shell has next to `make dev`: the stack's addresses (its defaults, here on
    private ports) and DEV_DIR; nothing about keys or the API beyond that."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIABILITY_", "REPLAY_"))}
    return {**env, **stack.config.service_env(), "DEV_DIR": str(stack.config.root)}


def test_every_documented_operations_command_works_as_written(stack):
    commands = documented_commands()
    assert len(commands) >= 5 and any("make replay" in c for c in commands), commands
    registry = IndexRegistry(redis.Redis(port=stack.config.redis_port), stack.config.topic_prefix,
                             alias="posts")
    import pymysql

    connection = pymysql.connect(host="127.0.0.1", port=stack.config.mariadb_port, user="root",
                                 database=stack.config.database)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM ({VIABLE_POSTS_SQL}) v")
        viable = cursor.fetchone()[0]
    connection.close()
    wait_for(lambda: registry.versions().get("posts") and registry.versions()["posts"].points == viable,
             timeout=300, what="the live index caught up")
    for command in commands:
        result = subprocess.run(["bash", "-c", command], cwd=PROJECT_ROOT, env=shell_env(stack),
                                capture_output=True, text=True, timeout=600)
        output = result.stdout[-3000:] + result.stderr[-3000:]
        assert "Traceback" not in output, f"{command}\n{output}"
        assert result.returncode == 0, f"{command} exited {result.returncode}\n{output}"
        print(f"ok: {command}\n{result.stdout[-400:]}")


@pytest.mark.parametrize("failure", ["refused key", "unreachable API"])
def test_a_replay_that_cannot_run_its_canary_says_what_to_do_in_one_line(stack, failure):
    env = shell_env(stack)
    if failure == "refused key":
        env["REPLAY_API_KEY"] = "ik_nosuchkey_0000"
    else:
        env["REPLAY_API_URL"] = "http://127.0.0.1:9"  # discard port: nothing listens
    result = subprocess.run([*shlex.split(".venv/bin/python -m ops.replay --stage index")], cwd=PROJECT_ROOT,
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert ("REPLAY_API_KEY" if failure == "refused key" else "REPLAY_API_URL") in lines[0], lines[0]
