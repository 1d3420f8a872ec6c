"""cdc and viability as the stack runs them (real processes, real MariaDB binlog, broker and Redis),
on a database and topic prefix of their own, and what their viable topic says must be indexed.

Used by the viability tests that need time to pass or the source to be asked for rows again.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import replace
from pathlib import Path

import orjson
import pymysql
from confluent_kafka import Consumer

from devstack.processes import ManagedProcess, apply_schema, python_module
from devstack.stack import SERVICES

_server_ids = itertools.count(7300)


class SourcePipeline:
    """MariaDB → cdc → viability, and a fold of the viable topic into "what the index would hold"."""

    def __init__(self, infra, root: Path, name: str, env: dict[str, str], metrics_port: int) -> None:
        self.config = replace(infra.config, root=root, database=name, topic_prefix=name, extra_env=env)
        self.name = name
        self.metrics_port = metrics_port
        apply_schema(self.config.mariadb_port, name)
        self.processes: dict[str, ManagedProcess] = {}
        self.indexed: dict[int, int] = {}  # post id -> account id, as upserts/deletes/purges leave it
        self.events: list[dict] = []
        self._reader: Consumer | None = None

    @property
    def viable_topic(self) -> str:
        return f"{self.name}.pipeline.posts.viable"

    def env(self, service: str) -> dict[str, str]:
        env = {**self.config.service_env(), "CDC_SERVER_ID": str(next(_server_ids))}
        if service == "viability":
            env["METRICS_PORT"] = str(self.metrics_port)
        return env

    def start(self, *services: str) -> None:
        for service in services:
            module, marker = SERVICES[service]
            process = python_module(f"{self.name}-{service}", module, self.config.log_dir, self.env(service)).start()
            self.processes[service] = process
            deadline = time.monotonic() + 90
            while marker.encode() not in process.log_path.read_bytes():
                assert process.alive, process.tail()
                assert time.monotonic() < deadline, f"{service} not ready:\n{process.tail()}"
                time.sleep(0.2)

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.stop()
        if self._reader is not None:
            self._reader.close()

    def sql(self, statement: str, params: tuple = ()) -> list[tuple]:
        connection = pymysql.connect(host="127.0.0.1", port=self.config.mariadb_port, user="root",
                                     database=self.name, autocommit=True, charset="utf8mb4")
        try:
            with connection.cursor() as cursor:
                cursor.execute(statement, params)
                return list(cursor.fetchall())
        finally:
            connection.close()

    def add_account(self, account_id: int, followers: int) -> None:
        self.sql("INSERT INTO accounts VALUES (%s, 'youtube', %s, NULL, %s, NULL, NULL, UTC_TIMESTAMP(3), "
                 "UTC_TIMESTAMP(3))", (account_id, f"acct{account_id}", followers))

    def add_post(self, post_id: int, account_id: int, published_at: str) -> None:
        """``published_at``: a MariaDB expression, e.g. ``UTC_TIMESTAMP(3) - INTERVAL 2 DAY``."""
        self.sql(f"INSERT INTO posts VALUES (%s, %s, 'youtube', %s, '', NULL, {published_at}, 1, 1, 0, "
                 "UTC_TIMESTAMP(3))", (post_id, account_id, f"post {post_id}"))

    def follow_viable_topic(self, seconds: float = 0.5) -> dict[int, int]:
        """Read what viability wrote since the last call and apply it; returns the indexed set."""
        if self._reader is None:
            self._reader = Consumer({"bootstrap.servers": self.config.service_env()["KAFKA_BOOTSTRAP_SERVERS"],
                                     "group.id": f"{self.name}-test-fold", "auto.offset.reset": "earliest",
                                     "enable.auto.commit": False})
            self._reader.subscribe([self.viable_topic])
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for message in self._reader.consume(500, 0.2):
                if message.error() is None and message.value() is not None:
                    self._apply(orjson.loads(message.value()))
        return dict(self.indexed)

    def _apply(self, event: dict) -> None:
        self.events.append(event)
        if event["kind"] == "post.upsert":
            self.indexed[event["post"]["id"]] = event["post"]["account_id"]
        elif event["kind"] == "post.delete":
            self.indexed.pop(event["post_id"], None)
        elif event["kind"] == "account.purge":
            for post_id in [p for p, a in self.indexed.items() if a == event["account_id"]]:
                del self.indexed[post_id]

    def wait_indexed(self, expected: set[int], timeout: float = 60) -> set[int]:
        deadline = time.monotonic() + timeout
        while set(self.follow_viable_topic()) != expected and time.monotonic() < deadline:
            pass
        return set(self.indexed)
