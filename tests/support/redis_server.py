"""A private redis-server on a free port, for tests that need Redis but not MariaDB or the broker
(starting the whole `infra` fixture just for Redis costs seconds per session)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from devstack.processes import start_redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def private_redis(root: Path) -> Iterator[str]:
    """Runs redis-server (the same way `make dev` does) until the block ends; yields its URL."""
    port = free_port()
    process = start_redis(port, root / "redis", root / "logs")
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.stop()
