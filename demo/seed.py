"""Load generated demo data into MariaDB.

    python -m demo.seed --scale small [--host ... --port ... --user ... --password ... --database ...] [--reset]

Connection defaults come from MARIADB_HOST / MARIADB_PORT / MARIADB_USER / MARIADB_PASSWORD /
MARIADB_DATABASE. ``--reset`` empties the tables with DELETE in small chunks, not TRUNCATE: a
TRUNCATE reaches the binlog as DDL without row images, so CDC (and so the index) would never see
the old rows go.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from itertools import islice
from pathlib import Path

import pymysql

from demo.generator import SCALES, AccountRow, PostRow, generate

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "db" / "schema.sql"
BATCH_SIZE = 1000

_ACCOUNT_SQL = (
    "INSERT INTO accounts (id, platform, handle, display_name, followers, bio, country, created_at, updated_at) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
_POST_SQL = (
    "INSERT INTO posts (id, account_id, platform, title, description, url, published_at, views, likes, "
    "comments, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)

Progress = Callable[[str, int], None]  # (table, rows loaded so far)


def default_anchor() -> datetime:
    """Now in UTC, truncated to the hour: recent enough for "active within N days" rules,
    stable enough that two seeds within the same hour produce the same data."""
    return datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0, tzinfo=None)


def schema_statements(path: Path = SCHEMA_PATH) -> list[str]:
    """The DDL statements of schema.sql; the file holds no procedures, so ';' ends a statement."""
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if not ln.lstrip().startswith("--")]
    return [stmt.strip() for stmt in "\n".join(lines).split(";") if stmt.strip()]


def _account_values(a: AccountRow) -> tuple[object, ...]:
    return (a.id, a.platform, a.handle, a.display_name, a.followers, a.bio, a.country, a.created_at, a.updated_at)


def _post_values(p: PostRow) -> tuple[object, ...]:
    return (p.id, p.account_id, p.platform, p.title, p.description, p.url, p.published_at,
            p.views, p.likes, p.comments, p.updated_at)


def _batches(rows: Iterable[tuple[object, ...]], size: int) -> Iterator[list[tuple[object, ...]]]:
    it = iter(rows)
    while batch := list(islice(it, size)):
        yield batch


def _prepare(conn: pymysql.connections.Connection, database: str, reset: bool) -> None:
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        cur.execute(f"USE `{database}`")
        for stmt in schema_statements():
            cur.execute(stmt)
        if reset:
            _delete_all(conn, cur, "posts")
            _delete_all(conn, cur, "accounts")
        cur.execute("SELECT (SELECT COUNT(*) FROM accounts) + (SELECT COUNT(*) FROM posts)")
        (existing,) = cur.fetchone()
    if existing:
        # Fixed ids would collide with the rows already there; refuse rather than half-load.
        raise RuntimeError(f"database {database!r} already holds demo rows; pass --reset to reload")


def _delete_all(conn: pymysql.connections.Connection, cur, table: str, chunk: int = 5000) -> None:
    """Row deletes in chunks, one commit each, so binlog transactions stay small."""
    while cur.execute(f"DELETE FROM `{table}` LIMIT {chunk}"):
        conn.commit()
    conn.commit()


def _load(conn: pymysql.connections.Connection, sql: str, rows: Iterable[tuple[object, ...]],
          table: str, batch_size: int, progress: Progress | None) -> int:
    """Insert in batches, one commit per batch, so each binlog transaction stays small."""
    done = 0
    with conn.cursor() as cur:
        for batch in _batches(rows, batch_size):
            cur.executemany(sql, batch)  # PyMySQL rewrites this into one multi-row INSERT
            conn.commit()
            done += len(batch)
            if progress:
                progress(table, done)
    return done


def seed_database(*, host: str = "127.0.0.1", port: int = 3307, user: str = "root", password: str = "",
                  database: str = "influential", scale: str = "small", reset: bool = False,
                  anchor: datetime | None = None, seed: int = 7, batch_size: int = BATCH_SIZE,
                  progress: Progress | None = None) -> tuple[int, int]:
    """Create the database and schema if missing, then load accounts followed by posts.

    Returns (accounts, posts) loaded. Raises RuntimeError if the tables already hold rows
    and ``reset`` is false.
    """
    accounts, posts = generate(scale, seed=seed, anchor=anchor or default_anchor())
    conn = pymysql.connect(host=host, port=port, user=user, password=password, charset="utf8mb4",
                           autocommit=False)
    try:
        _prepare(conn, database, reset)
        n_accounts = _load(conn, _ACCOUNT_SQL, map(_account_values, accounts), "accounts", batch_size, progress)
        n_posts = _load(conn, _POST_SQL, map(_post_values, posts), "posts", batch_size, progress)
    finally:
        conn.close()
    return n_accounts, n_posts


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="python -m demo.seed", description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=sorted(SCALES), required=True)
    parser.add_argument("--host", default=env("MARIADB_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(env("MARIADB_PORT", "3307")))
    parser.add_argument("--user", default=env("MARIADB_USER", "root"))
    parser.add_argument("--password", default=env("MARIADB_PASSWORD", ""))
    parser.add_argument("--database", default=env("MARIADB_DATABASE", "influential"))
    parser.add_argument("--reset", action="store_true", help="delete every row (as row deletes CDC can see) before loading")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--anchor", type=datetime.fromisoformat, default=None,
                        help="ISO datetime the data is 'as of' (default: now, UTC, truncated to the hour)")
    return parser.parse_args(argv)


def _printer() -> Progress:
    """Print at most about once a second: large scale is a thousand batches."""
    last = 0.0

    def report(table: str, done: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= 1.0:
            print(f"  {table}: {done:,} rows", flush=True)
            last = now

    return report


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    started = time.monotonic()
    try:
        n_accounts, n_posts = seed_database(
            host=args.host, port=args.port, user=args.user, password=args.password, database=args.database,
            scale=args.scale, reset=args.reset, anchor=args.anchor, seed=args.seed, progress=_printer(),
        )
    except RuntimeError as exc:
        print(f"error: {exc}")
        return 1
    elapsed = time.monotonic() - started
    print(f"seeded {n_accounts} accounts and {n_posts} posts in {elapsed:.1f}s "
          f"({n_posts / max(elapsed, 1e-9):,.0f} posts/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
