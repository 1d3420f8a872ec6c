"""The binlog reader: a consistent snapshot, then the stream, with a durable checkpoint.

Delivery is at-least-once: the checkpoint only moves after the producer has flushed every event
before it, and it always points at a transaction boundary. After a crash, the transaction in
flight is emitted again; downstream writes are idempotent (deterministic point ids).
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pymysql
import pymysql.cursors
from confluent_kafka import Consumer, Message, Producer
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import HeartbeatLogEvent, MariadbGtidEvent, XidEvent
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

from services.cdc.core import (
    BinlogPosition,
    ChangeSource,
    InvalidSignal,
    KafkaRecord,
    SnapshotMarker,
    TableSnapshot,
    advance_gtid_state,
    change_envelope,
    check_columns,
    change_records,
    format_gtid_state,
    parse_gtid_state,
    parse_snapshot_signal,
)
from shared.config import KafkaSettings, MariaDBSettings
from shared.health import Heartbeat
from shared.kafka import DeadLetter, DeliveryTracker, OutboundMessage, dead_letter_message
from shared.logging import get_logger
from shared.metrics import CDC_EVENTS, CDC_SIGNALS_REJECTED, DLQ_MESSAGES

log = get_logger(__name__)

SNAPSHOT_FETCH_ROWS = 2000
SIGNAL_BUDGET_S = 0.5  # longest the binlog waits while signals are served


class Checkpoint:
    """Resume position in a small JSON file, replaced atomically (write, fsync, rename)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> BinlogPosition | None:
        if not self.path.exists():
            return None
        data = orjson.loads(self.path.read_bytes())
        return BinlogPosition(data["file"], data["pos"], data.get("gtid"))

    def save(self, position: BinlogPosition) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".checkpoint-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(orjson.dumps({"file": position.file, "pos": position.pos, "gtid": position.gtid}))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


class ChangeCapture:
    def __init__(
        self,
        *,
        mariadb: MariaDBSettings,
        kafka: KafkaSettings,
        producer: Producer,
        signals: Consumer | None,
        checkpoint: Checkpoint,
        tables: tuple[str, ...],
        server_id: int,
        flush_interval_s: float = 0.2,
        stop: threading.Event | None = None,
        heartbeat: Heartbeat | None = None,
    ) -> None:
        self.mariadb = mariadb
        self.kafka = kafka
        self.producer = producer
        self.signals = signals
        self.checkpoint = checkpoint
        self.tables = tables
        self.server_id = server_id
        self.flush_interval_s = flush_interval_s
        self.stop = stop or threading.Event()
        self.heartbeat = heartbeat or Heartbeat()
        self.delivery = DeliveryTracker()
        self._columns: dict[str, frozenset[str]] = {}

    # --- output ----------------------------------------------------------------------------

    def _emit(self, records: list[KafkaRecord]) -> None:
        for record in records:
            while True:
                try:
                    self.producer.produce(record.topic, key=record.key, value=record.value,
                                          headers=record.headers or None, on_delivery=self.delivery)
                    break
                except BufferError:
                    self.producer.poll(0.2)
        self.producer.poll(0)

    def _flush(self) -> None:
        remaining = self.producer.flush(60)
        if remaining or self.delivery.errors:
            raise RuntimeError(f"cdc could not deliver {remaining} events: {self.delivery.errors[:3]}")

    def _emit_row(self, table: str, op: str, before: dict | None, after: dict | None, source: ChangeSource) -> None:
        envelope = change_envelope(op, before, after, source, now_ms=int(time.time() * 1000))
        primary_key = (after or before)["id"]
        self._emit(change_records(self.kafka.source_topic(table), primary_key, envelope))
        CDC_EVENTS.labels(table=table, op=op).inc()

    # --- snapshot --------------------------------------------------------------------------

    def _connect(self) -> pymysql.Connection:
        return pymysql.connect(**self.mariadb.connect_kwargs(), cursorclass=pymysql.cursors.SSDictCursor)

    def snapshot(self) -> BinlogPosition:
        """Read every table inside one consistent snapshot; return the binlog position it is at."""
        connection = self._connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                cursor.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                cursor.execute("SHOW STATUS LIKE 'binlog_snapshot_%'")
                status = {row["Variable_name"]: row["Value"] for row in cursor.fetchall()}
            file, pos = status["Binlog_snapshot_file"], int(status["Binlog_snapshot_position"])
            with connection.cursor() as cursor:
                cursor.execute("SELECT BINLOG_GTID_POS(%s, %s) AS gtid", (file, pos))
                gtid_state = cursor.fetchone()["gtid"] or ""
            position = BinlogPosition(file, pos, gtid_state)
            started_ms = int(time.time() * 1000)
            for table in self.tables:
                count = self._snapshot_table(connection, table, position, started_ms)
                log.info("snapshot table done", table=table, rows=count)
            connection.commit()
        finally:
            connection.close()
        self._flush()
        return position

    def _snapshot_table(self, connection, table: str, position: BinlogPosition, ts_ms: int,
                        request: TableSnapshot | None = None) -> int:
        marker: SnapshotMarker = "incremental" if request else "true"
        count = 0
        for row in self._select(connection, table, request):
            source = ChangeSource(self.kafka.topic_prefix, self.mariadb.mariadb_database, table, ts_ms, position,
                                  self.server_id, snapshot=marker)
            self._emit_row(table, "r", None, row, source)
            count += 1
        return count

    def _select(self, connection, table: str, request: TableSnapshot | None) -> Iterator[dict]:
        sql, params = f"SELECT * FROM `{table}`", ()
        if request and request.column:
            placeholders = ", ".join(["%s"] * len(request.values))
            sql += f" WHERE `{request.column}` IN ({placeholders})"
            params = request.values
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            while rows := cursor.fetchmany(SNAPSHOT_FETCH_ROWS):
                yield from rows

    # --- incremental snapshots asked for by signals ----------------------------------------

    def _serve_signals(self, position: BinlogPosition) -> None:
        """Serve every signal waiting now, for at most SIGNAL_BUDGET_S so the binlog is not starved.

        One consume returns only what the client has prefetched (about ten signals); a replay's
        viability asks for hundreds of accounts at once, and this runs about once a second when the
        binlog is idle, so serving one consume per call took ~20 s for 185 accounts.
        """
        if self.signals is None:
            return
        deadline = time.monotonic() + SIGNAL_BUDGET_S
        served, connection = 0, None
        try:
            while time.monotonic() < deadline:
                messages = [m for m in self.signals.consume(50, 0.02 if served else 0)
                            if m.error() is None and m.value() is not None]
                if not messages:
                    break
                connection = connection or self._connect()
                for message in messages:
                    self._serve_signal(connection, message, position)
                served += len(messages)
        finally:
            if connection is not None:
                connection.close()
        if served:
            self._flush()
            self.signals.commit(asynchronous=False)

    def _serve_signal(self, connection, message: Message, position: BinlogPosition) -> None:
        """Serve one signal; a malformed one is dead-lettered and skipped, never retried: the signal
        is committed only after this turn, so raising here would crash cdc on every restart."""
        try:
            requests = parse_snapshot_signal(message.value(), database=self.mariadb.mariadb_database,
                                             tables=set(self.tables))
            check_columns(requests, lambda table: self._table_columns(connection, table))
        except InvalidSignal as exc:
            self._reject_signal(message, exc)
            return
        for request in requests:
            try:
                count = self._snapshot_table(connection, request.table, position, int(time.time() * 1000), request)
            except (pymysql.err.ProgrammingError, pymysql.err.DataError) as exc:  # the server refused its SQL
                self._reject_signal(message, InvalidSignal(f"the database refused the snapshot query: {exc}"))
                return
            log.info("incremental snapshot", table=request.table, column=request.column,
                     values=len(request.values), rows=count)

    def _table_columns(self, connection, table: str) -> frozenset[str]:
        if table not in self._columns:
            with connection.cursor() as cursor:
                cursor.execute("SELECT COLUMN_NAME AS name FROM information_schema.COLUMNS"
                               " WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s", (self.mariadb.mariadb_database, table))
                self._columns[table] = frozenset(row["name"] for row in cursor.fetchall())
        return self._columns[table]

    def _reject_signal(self, message: Message, error: InvalidSignal) -> None:
        log.warning("malformed signal dead-lettered", error=str(error)[:300], offset=message.offset())
        CDC_SIGNALS_REJECTED.inc()
        DLQ_MESSAGES.labels(service="cdc", topic=message.topic()).inc()
        letter: OutboundMessage = dead_letter_message(DeadLetter(message, error), "cdc")
        self._emit([KafkaRecord(letter.topic, letter.key, letter.value, letter.headers)])

    # --- stream ----------------------------------------------------------------------------

    def run(self) -> None:
        position = self.checkpoint.load()
        if position is None:
            log.info("no checkpoint: taking a consistent snapshot")
            position = self.snapshot()
            self.checkpoint.save(position)
        log.info("streaming binlog", file=position.file, pos=position.pos)
        self.stream(position)

    def _reader(self, position: BinlogPosition) -> BinLogStreamReader:
        return BinLogStreamReader(
            connection_settings=self.mariadb.connect_kwargs(with_database=False),
            server_id=self.server_id,
            # MariaDB streams by GTID state (file/pos are ignored in MariaDB mode): the server sends
            # every transaction after the state we last checkpointed.
            auto_position=position.gtid or "",
            blocking=True,
            is_mariadb=True,
            slave_heartbeat=1,
            enable_logging=False,  # wakes the loop when idle: signals, flushes and shutdown stay prompt
            only_schemas=[self.mariadb.mariadb_database],
            only_tables=list(self.tables),
            only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent, XidEvent, MariadbGtidEvent,
                         HeartbeatLogEvent],
        )

    def stream(self, position: BinlogPosition) -> None:
        reader = self._reader(position)
        committed, saved = position, position
        gtid_state, gtid = parse_gtid_state(position.gtid), None
        last_flush = time.monotonic()
        try:
            for event in reader:
                if isinstance(event, MariadbGtidEvent):
                    gtid = event.gtid
                elif isinstance(event, XidEvent):
                    gtid_state = advance_gtid_state(gtid_state, gtid)
                    committed = BinlogPosition(reader.log_file, reader.log_pos, format_gtid_state(gtid_state))
                elif not isinstance(event, HeartbeatLogEvent):
                    self._emit_rows_event(event, BinlogPosition(reader.log_file, event.packet.log_pos, gtid))
                if time.monotonic() - last_flush >= self.flush_interval_s:
                    self.heartbeat.beat()
                    saved = self._checkpoint(committed, saved)
                    self._serve_signals(committed)
                    last_flush = time.monotonic()
                if self.stop.is_set():
                    break
            self._checkpoint(committed, saved)
        finally:
            reader.close()

    def _checkpoint(self, committed: BinlogPosition, saved: BinlogPosition) -> BinlogPosition:
        if committed == saved:
            return saved
        self._flush()
        self.checkpoint.save(committed)
        return committed

    def _emit_rows_event(self, event, position: BinlogPosition) -> None:
        source_ts = event.timestamp * 1000
        for index, row in enumerate(event.rows):
            source = ChangeSource(self.kafka.topic_prefix, event.schema, event.table, source_ts, position,
                                  self.server_id, row=index)
            if isinstance(event, WriteRowsEvent):
                self._emit_row(event.table, "c", None, row["values"], source)
            elif isinstance(event, UpdateRowsEvent):
                self._emit_row(event.table, "u", row["before_values"], row["after_values"], source)
            else:
                self._emit_row(event.table, "d", row["values"], None, source)
