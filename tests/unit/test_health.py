import socket
import urllib.error
import urllib.request

import orjson

import shared.metrics  # noqa: F401  (registers the pipeline metrics /metrics must show, as every service does)
from shared.health import Heartbeat, HealthServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_readiness_names_failing_dependencies_and_liveness_follows_the_heartbeat():
    port, heartbeat = free_port(), Heartbeat(stale_after_s=60)
    server = HealthServer(port, heartbeat, {"kafka": lambda: True, "redis": lambda: 1 / 0})
    server.start()
    try:
        status, body = get(port, "/readyz")
        assert status == 503 and orjson.loads(body) == {"kafka": True, "redis": False, "processing": True}
        assert get(port, "/healthz")[0] == 200
        heartbeat.last -= 120  # the loop has not turned for two minutes
        assert get(port, "/healthz")[0] == 503
        status, body = get(port, "/metrics")
        assert status == 200 and b"pipeline_messages_consumed_total" in body
    finally:
        server.stop()


def test_readiness_says_so_while_a_loop_retries_a_failing_batch():
    port, heartbeat = free_port(), Heartbeat()
    server = HealthServer(port, heartbeat, {"vector_store": lambda: True})
    server.start()
    try:
        assert get(port, "/readyz")[0] == 200
        heartbeat.batch_failed("indexer:posts")
        heartbeat.batch_failed("embedder:viable")
        heartbeat.batch_succeeded("embedder:viable")
        status, body = get(port, "/readyz")
        assert status == 503 and orjson.loads(body) == {"vector_store": True, "processing": False}
        assert get(port, "/healthz")[0] == 200  # alive: the loop turns, it only cannot write
        heartbeat.batch_succeeded("indexer:posts")
        assert get(port, "/readyz")[0] == 200
    finally:
        server.stop()


def test_caches_use_the_state_redis_unless_a_cache_redis_is_given(monkeypatch):
    from shared.config import RedisSettings

    monkeypatch.delenv("REDIS_CACHE_URL", raising=False)
    monkeypatch.setenv("REDIS_URL", "redis://state:6379/0")
    assert RedisSettings().cache_url == "redis://state:6379/0"
    monkeypatch.setenv("REDIS_CACHE_URL", "redis://cache:6379/0")
    assert RedisSettings().cache_url == "redis://cache:6379/0" and RedisSettings().redis_url == "redis://state:6379/0"
