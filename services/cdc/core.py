"""Pure part of the local cdc service: rows in, Debezium change events out.

Production runs the Debezium MariaDB connector; this service emits the same envelope and topic
names so nothing downstream can tell the difference (see tests/fixtures for real Debezium events).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, Literal

import orjson

CONNECTOR_VERSION = "influential-cdc/0.1"
SnapshotMarker = Literal["true", "last", "false", "incremental"]
Op = Literal["c", "u", "d", "r"]


@dataclass(frozen=True)
class BinlogPosition:
    """Where a change sits in the binlog. ``gtid`` is the event's GTID, or for a checkpoint the
    server's GTID state (``domain-server-seq`` per domain, comma separated) to resume after."""

    file: str
    pos: int
    gtid: str | None = None


def parse_gtid_state(state: str | None) -> dict[int, str]:
    """``"0-1-5,1-2-9"`` → ``{0: "0-1-5", 1: "1-2-9"}`` (one position per replication domain)."""
    parsed: dict[int, str] = {}
    for gtid in filter(None, (part.strip() for part in (state or "").split(","))):
        parsed[int(gtid.split("-")[0])] = gtid
    return parsed


def advance_gtid_state(state: dict[int, str], gtid: str | None) -> dict[int, str]:
    if not gtid:
        return state
    return {**state, int(gtid.split("-")[0]): gtid}


def format_gtid_state(state: dict[int, str]) -> str:
    return ",".join(state[domain] for domain in sorted(state))


def debezium_value(value: Any) -> Any:
    """Convert a column value the way Debezium's default converters do.

    DATETIME becomes epoch milliseconds (io.debezium.time.Timestamp, read as UTC), DATE days since
    epoch, DECIMAL a string (decimal.handling.mode=string), bytes text when they decode.
    """
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return int(moment.timestamp() * 1000)
    if isinstance(value, date):
        return (value - date(1970, 1, 1)).days
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return value


def debezium_row(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {column: debezium_value(value) for column, value in row.items()}


@dataclass(frozen=True)
class ChangeSource:
    """The parts of Debezium's ``source`` block that vary per event."""

    server_name: str
    database: str
    table: str
    ts_ms: int
    position: BinlogPosition
    server_id: int = 0
    row: int = 0
    snapshot: SnapshotMarker = "false"


def change_envelope(op: Op, before: dict | None, after: dict | None, source: ChangeSource, now_ms: int) -> dict:
    return {
        "before": debezium_row(before),
        "after": debezium_row(after),
        "source": {
            "version": CONNECTOR_VERSION,
            "connector": "mariadb",
            "name": source.server_name,
            "ts_ms": source.ts_ms,
            "snapshot": source.snapshot,
            "db": source.database,
            "sequence": None,
            "table": source.table,
            "server_id": source.server_id,
            "gtid": source.position.gtid,
            "file": source.position.file,
            "pos": source.position.pos,
            "row": source.row,
            "thread": None,
            "query": None,
        },
        "op": op,
        "ts_ms": now_ms,
        "transaction": None,
    }


@dataclass(frozen=True)
class KafkaRecord:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None = None


def change_records(topic: str, primary_key: Any, envelope: dict) -> list[KafkaRecord]:
    """The record for a change, plus Debezium's tombstone after a delete (for log compaction)."""
    key = orjson.dumps({"id": primary_key})
    records = [KafkaRecord(topic, key, orjson.dumps(envelope))]
    if envelope["op"] == "d":
        records.append(KafkaRecord(topic, key, None))
    return records


# --- Signals -----------------------------------------------------------------------------------


class InvalidSignal(ValueError):
    pass


@dataclass(frozen=True)
class TableSnapshot:
    """An ad-hoc incremental snapshot of one table, optionally narrowed to ``column IN values``: one table of
    an ``execute-snapshot`` signal (viability's ``SnapshotRequest`` is what becomes such a signal)."""

    table: str
    column: str | None = None
    values: tuple[int, ...] = ()


# Debezium puts the filter into SQL as written; we only accept the shapes the pipeline sends
# (`col = 42`, `col IN (1, 2)`), so a signal can never inject SQL.
_FILTER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:=\s*(-?\d+)|IN\s*\(\s*(-?\d+(?:\s*,\s*-?\d+)*)\s*\))\s*$", re.I)


def parse_snapshot_signal(value: bytes, *, database: str, tables: set[str]) -> list[TableSnapshot]:
    """Parse a Debezium ``execute-snapshot`` signal into the snapshots it asks for.

    The shapes are Debezium's: ``data-collections`` a list of ``db.table`` names, and
    ``additional-conditions`` a list of ``{"data-collection": name, "filter": sql}``. Anything
    else raises InvalidSignal, whatever the JSON holds, so cdc can dead-letter it and go on.
    """
    try:
        signal = orjson.loads(value)
        data = signal["data"]
        collections = data["data-collections"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise InvalidSignal(f"not an execute-snapshot signal: {exc!r}") from exc
    if signal.get("type") != "execute-snapshot":
        raise InvalidSignal(f"unsupported signal type {signal.get('type')!r}")
    if not isinstance(collections, list) or not collections or not all(isinstance(c, str) for c in collections):
        raise InvalidSignal(f"data-collections must be a non-empty list of names, not {collections!r}")
    filters = _additional_conditions(data.get("additional-conditions"))
    return [_table_snapshot(name, filters.get(name), database, tables) for name in collections]


def _additional_conditions(conditions: Any) -> dict[str, str]:
    if conditions is None:
        return {}
    if not isinstance(conditions, list):
        raise InvalidSignal(f"additional-conditions must be a list, not {conditions!r}")
    filters = {}
    for condition in conditions:
        if not (isinstance(condition, dict) and isinstance(condition.get("data-collection"), str)
                and isinstance(condition.get("filter"), str)):
            raise InvalidSignal("each of additional-conditions must be {\"data-collection\": name, \"filter\": sql}, "
                                f"not {condition!r}")
        filters[condition["data-collection"]] = condition["filter"]
    return filters


def check_columns(requests: list[TableSnapshot], columns_of: Callable[[str], Collection[str]]) -> None:
    """Raise InvalidSignal if a request filters on a column its table does not have."""
    for request in requests:
        if request.column and request.column not in columns_of(request.table):
            raise InvalidSignal(f"unknown column {request.column!r} in table {request.table!r}")


def _table_snapshot(collection: str, sql_filter: str | None, database: str, tables: set[str]) -> TableSnapshot:
    db, _, table = collection.rpartition(".")
    if db not in ("", database) or table not in tables:
        raise InvalidSignal(f"unknown data collection {collection!r}")
    if not sql_filter:
        return TableSnapshot(table)
    match = _FILTER.match(sql_filter)
    if not match:
        raise InvalidSignal(f"unsupported filter {sql_filter!r}")
    column, single, many = match.groups()
    values = (int(single),) if single is not None else tuple(int(v) for v in many.split(","))
    return TableSnapshot(table, column, values)
