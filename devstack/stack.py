"""The local stack as one object: infrastructure (MariaDB, broker, Redis) and the services.

`make dev` runs it in the foreground; the end-to-end tests run the very same thing on private
ports and a temporary directory, and kill or restart single services.
"""

from __future__ import annotations

import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import redis

from devstack.processes import (
    ManagedProcess,
    StartupError,
    apply_schema,
    port_open,
    python_module,
    start_broker,
    start_mariadb,
    start_redis,
    wait_until,
)
from shared import topology

# name → (module, ready marker), in start order, from the one declaration of the topology. The API runs
# with the edge store's writers (indexer, summarizer, corrections): an edge shard has one owner.
SERVICES = topology.local_services()
API_ONLY = topology.stage(topology.API).module  # the API without writers (StackConfig.api_only: a benchmark's loaded shard)


@dataclass
class StackConfig:
    root: Path  # data and logs live under here (.dev for make dev, a tmp dir for tests)
    mariadb_port: int = 3307
    broker_port: int = 9092
    redis_port: int = 6379
    query_port: int = 8000
    database: str = "influential"
    topic_prefix: str = "influential"
    reuse_redis: bool = True  # use a Redis already answering on redis_port instead of starting one
    api_only: bool = False  # "query" runs the API alone, nothing writes the store
    model_cache_dir: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    def ops_port(self, service: str) -> int:
        """Health and metrics port of a worker: the API port + 1, 2, 3, 4 (8001-8004 for make dev)."""
        return 0 if service == topology.API else topology.local_ops_port(service, self.query_port)

    def service_env(self) -> dict[str, str]:
        env = {
            "MARIADB_HOST": "127.0.0.1",
            "MARIADB_PORT": str(self.mariadb_port),
            "MARIADB_USER": "root",
            "MARIADB_PASSWORD": "",
            "MARIADB_DATABASE": self.database,
            "SOURCE_DATABASE": self.database,
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{self.broker_port}",
            "TOPIC_PREFIX": self.topic_prefix,
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "VECTOR_STORE": "edge",
            "QDRANT_EDGE_PATH": str(self.root / "qdrant"),
            "CDC_STATE_DIR": str(self.root / "cdc"),
            "QUERY_PORT": str(self.query_port),
        }
        if self.model_cache_dir:
            env["MODEL_CACHE_DIR"] = str(self.model_cache_dir)
        return {**env, **self.extra_env}


class LocalStack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.infra: dict[str, ManagedProcess] = {}
        self.services: dict[str, ManagedProcess] = {}
        self.redis_reused = False

    # --- infrastructure --------------------------------------------------------------------

    def start_infra(self) -> None:
        c = self.config
        self.infra["mariadb"] = start_mariadb(c.root / "mariadb", c.mariadb_port, c.log_dir)
        apply_schema(c.mariadb_port, c.database)
        self.infra["broker"] = start_broker(c.broker_port, c.log_dir)
        if c.reuse_redis and _redis_answers(c.redis_port):
            self.redis_reused = True
        else:
            if port_open("127.0.0.1", c.redis_port):
                raise StartupError(f"port {c.redis_port} is taken by something that is not Redis")
            self.infra["redis"] = start_redis(c.redis_port, c.root / "redis", c.log_dir)

    # --- services --------------------------------------------------------------------------

    def start_service(self, name: str, *, wait: bool = True, timeout: float = 120) -> ManagedProcess:
        module, ready_marker = SERVICES[name]
        module = API_ONLY if name == "query" and self.config.api_only else module
        env = {**self.config.service_env(), "METRICS_PORT": str(self.config.ops_port(name))}
        process = python_module(name, module, self.config.log_dir, env)
        start_offset = process.log_path.stat().st_size if process.log_path.exists() else 0
        self.services[name] = process.start()
        if wait:
            self.wait_ready(name, ready_marker, start_offset, timeout)
            if name == "query":  # "ready" is logged by the app before uvicorn has bound its port
                wait_until(self.api_healthy, timeout=timeout, what="the query API to answer")
        return process

    def wait_ready(self, name: str, marker: str, offset: int, timeout: float) -> None:
        process = self.services[name]

        def ready() -> bool:
            if not process.alive:
                raise StartupError(f"{name} exited during startup:\n{process.tail()}")
            with open(process.log_path, "rb") as handle:
                handle.seek(offset)
                return marker.encode() in handle.read()

        wait_until(ready, timeout=timeout, what=f"{name} to be ready", interval=0.2)

    def start_services(self, names: tuple[str, ...] = tuple(SERVICES)) -> None:
        for name in names:
            self.start_service(name)

    def restart_dead(self) -> list[str]:
        """Restart services that exited (what a process supervisor or Kubernetes would do)."""
        restarted = []
        for name, process in list(self.services.items()):
            if not process.alive:
                self.start_service(name, wait=False)
                restarted.append(name)
        return restarted

    def stop(self) -> None:
        for name in reversed(list(self.services)):
            self.services[name].stop()
        for name in ("redis", "broker", "mariadb"):
            if name in self.infra:
                self.infra[name].stop()

    # --- helpers for people and tests ------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.config.query_port}"

    def api_healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.api_url}/healthz", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False


def _redis_answers(port: int) -> bool:
    try:
        return bool(redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


def elapsed(since: float) -> str:
    return f"{time.monotonic() - since:.1f}s"
