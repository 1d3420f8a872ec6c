"""`make dev`: run the whole local stack in the foreground until Ctrl-C.

MariaDB (private, :3307), the Kafka-protocol broker (:9092), Redis (:6379, reused if one answers),
cdc, viability, embedder and the query API with its in-process indexer (:8000). Seeds demo data on
first start. Ports and paths come from the same environment variables the services read.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
import urllib.request
from pathlib import Path

import pymysql
import redis
from pydantic import Field

from demo.seed import seed_database
from devstack.processes import StartupError, wait_until
from devstack.stack import SERVICES, LocalStack, StackConfig, elapsed
from services.query.admin_keys import ensure_dev_key
from services.query.app import QuerySettings
from shared.auth import ApiKeyStore
from shared.config import PROJECT_ROOT, KafkaSettings, MariaDBSettings, ModelSettings, RedisSettings, ServiceSettings


class DevSettings(ServiceSettings):
    dev_dir: Path = Field(PROJECT_ROOT / ".dev", description="Data and logs of the local stack.")
    dev_seed_scale: str = Field("small", pattern="^(small|medium|large)$", description="Demo data on first start.")


def config_from_env() -> StackConfig:
    dev, mariadb, kafka = DevSettings(), MariaDBSettings(), KafkaSettings()
    redis_port = int(RedisSettings().redis_url.rsplit(":", 1)[1].split("/")[0])
    return StackConfig(
        root=dev.dev_dir, mariadb_port=mariadb.mariadb_port,
        broker_port=int(kafka.kafka_bootstrap_servers.rsplit(":", 1)[1]), redis_port=redis_port,
        query_port=QuerySettings().query_port, database=mariadb.mariadb_database, topic_prefix=kafka.topic_prefix,
        model_cache_dir=ModelSettings().model_cache_dir,
    )


def source_is_empty(port: int, database: str) -> bool:
    connection = pymysql.connect(host="127.0.0.1", port=port, user="root", password="", database=database)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM accounts")
            return cursor.fetchone()[0] == 0
    finally:
        connection.close()


def indexed_points(api_url: str, api_key: str) -> int:
    request = urllib.request.Request(f"{api_url}/v1/status", headers={"X-API-Key": api_key})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return int(json.load(response)["points"])
    except OSError:
        return 0


DEV_KEY_FILE = "dev-api-key"


def dev_api_key(config: StackConfig) -> str:
    """The API enforces keys in dev too: reuse the saved dev key while Redis knows it, else make one."""
    client = redis.Redis(host="127.0.0.1", port=config.redis_port, socket_connect_timeout=2)
    return ensure_dev_key(ApiKeyStore(client), config.root / DEV_KEY_FILE)


def say(component: str, message: str) -> None:
    print(f"  ✓ {component:<10} {message}", flush=True)


def run(scale: str | None) -> None:
    started = time.monotonic()
    config = config_from_env()
    stack = LocalStack(config)
    stopping = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    print(f"starting the local stack (data and logs in {config.root})", flush=True)
    try:
        stack.start_infra()
        say("mariadb", f"127.0.0.1:{config.mariadb_port} database {config.database} ({elapsed(started)})")
        say("broker", f"127.0.0.1:{config.broker_port} (tansu, in-memory) ({elapsed(started)})")
        redis_how = "reused" if stack.redis_reused else "private"
        say("redis", f"127.0.0.1:{config.redis_port} ({redis_how}) ({elapsed(started)})")
        api_key = dev_api_key(config)
        if source_is_empty(config.mariadb_port, config.database):
            seeded = seed_database(port=config.mariadb_port, database=config.database, scale=scale or "small")
            say("seed", f"{seeded[0]} accounts, {seeded[1]} posts ({elapsed(started)})")
        for name in SERVICES:
            stack.start_service(name)
            say(name, ("http://127.0.0.1:%d" % config.query_port if name == "query" else "running")
                + f" ({elapsed(started)})")
        wait_until(lambda: indexed_points(stack.api_url, api_key) > 0 or stopping.is_set(), timeout=600,
                   what="the first searchable post")
        say("search", f"first posts searchable after {elapsed(started)}")
        print(f"\napi key: {api_key}   (local dev key, all scopes; saved in {config.root / DEV_KEY_FILE})")
        print(f"page:    {stack.api_url}/#key={api_key}")
        print(f"search:  curl -s {stack.api_url}/v1/search/posts -H 'X-API-Key: {api_key}' "
              "-H 'content-type: application/json' -d '{\"query\": \"easy vegan dinner recipes\", \"limit\": 5}'")
        print(f"docs:    {stack.api_url}/docs      logs: {config.log_dir}      Ctrl-C stops everything\n",
              flush=True)
        supervise(stack, stopping)
    except StartupError as exc:
        print(f"\nstartup failed: {exc}", flush=True)
        raise SystemExit(1) from exc
    finally:
        print("stopping…", flush=True)
        stack.stop()
        print("stopped", flush=True)


def supervise(stack: LocalStack, stopping: threading.Event) -> None:
    """Restart a service that died, like Kubernetes would, and say so."""
    while not stopping.wait(2):
        for name in stack.restart_dead():
            print(f"  ! {name} exited; restarted (log: {stack.services[name].log_path})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack.run", description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=["small", "medium", "large"], default=DevSettings().dev_seed_scale,
                        help="demo data loaded on first start")
    run(parser.parse_args().scale)


if __name__ == "__main__":
    main()
