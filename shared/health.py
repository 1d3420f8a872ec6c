"""Liveness, readiness and metrics for worker services on one small HTTP port (METRICS_PORT).

/healthz  200 while the work loop is turning (it beats on every poll, busy or idle)
/readyz   200 when every dependency check passes and no loop's batches are failing, else 503 naming
          what fails ("processing": a loop is retrying a batch because an output is down)
/metrics  Prometheus exposition
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shared.logging import get_logger

log = get_logger(__name__)

Check = Callable[[], bool]


class Heartbeat:
    """Set by the work loop; a loop stuck longer than ``stale_after_s`` is reported dead."""

    def __init__(self, stale_after_s: float = 300) -> None:
        self.stale_after_s = stale_after_s
        self.last = time.monotonic()
        self.failing: dict[str, float] = {}  # loop → since when its batches fail

    def beat(self) -> None:
        self.last = time.monotonic()

    def alive(self) -> bool:
        return time.monotonic() - self.last < self.stale_after_s

    def batch_failed(self, loop: str) -> None:
        self.failing.setdefault(loop, time.monotonic())

    def batch_succeeded(self, loop: str) -> None:
        self.failing.pop(loop, None)

    def processing(self) -> bool:
        """False while a loop retries a batch: the process lives, but a dependency it writes to is down."""
        return not self.failing


class HealthServer:
    def __init__(self, port: int, heartbeat: Heartbeat, checks: dict[str, Check]) -> None:
        self.port = port
        self.heartbeat = heartbeat
        self.checks = checks
        self._server: ThreadingHTTPServer | None = None

    def readiness(self) -> dict[str, bool]:
        results = {}
        for name, check in self.checks.items():
            try:
                results[name] = bool(check())
            except Exception:  # a failing check is "not ready", never a crash
                results[name] = False
        results["processing"] = self.heartbeat.processing()
        return results

    def start(self) -> None:
        if not self.port:
            return
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path == "/metrics":
                    self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
                elif self.path == "/healthz":
                    alive = owner.heartbeat.alive()
                    self._send(200 if alive else 503, orjson.dumps({"alive": alive}))
                elif self.path == "/readyz":
                    results = owner.readiness()
                    self._send(200 if all(results.values()) else 503, orjson.dumps(results))
                else:
                    self._send(404, b'{"error": "not found"}')

            def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:  # probes every few seconds would flood the logs
                pass

        self._server = ThreadingHTTPServer(("0.0.0.0", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, name="health", daemon=True).start()
        log.info("health endpoints", port=self.port)

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()


def kafka_reachable(bootstrap_servers: str) -> Check:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    return lambda: admin.list_topics(timeout=2) is not None


def redis_reachable(client) -> Check:
    return lambda: bool(client.ping())


def shutdown_event() -> threading.Event:
    """An event set on SIGTERM/SIGINT: loops finish their batch, commit and close."""
    import signal

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop
