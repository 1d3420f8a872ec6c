from datetime import datetime, timezone
from decimal import Decimal

import orjson
import pytest

from services.cdc.core import (
    BinlogPosition,
    ChangeSource,
    InvalidSignal,
    check_columns,
    advance_gtid_state,
    change_envelope,
    change_records,
    debezium_value,
    format_gtid_state,
    parse_gtid_state,
    parse_snapshot_signal,
)
from shared.events import incremental_snapshot_signal, parse_change_event


def source(**overrides) -> ChangeSource:
    values = dict(server_name="p", database="d", table="posts", ts_ms=1000,
                  position=BinlogPosition("bin.000001", 400, "0-1-7"), server_id=1)
    values.update(overrides)
    return ChangeSource(**values)


def test_datetime_becomes_epoch_milliseconds_as_utc():
    assert debezium_value(datetime(2024, 1, 2, 3, 4, 5, 678000)) == int(
        datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc).timestamp() * 1000)
    assert debezium_value(Decimal("1.50")) == "1.50"
    assert debezium_value(b"caf\xc3\xa9") == "café"


def test_envelope_is_a_valid_debezium_change_event():
    row = {"id": 9, "title": "t", "published_at": datetime(2024, 1, 1)}
    envelope = change_envelope("u", row, {**row, "title": "u"}, source(row=2), now_ms=5)
    parsed = parse_change_event(orjson.dumps(envelope))
    assert parsed.op == "u" and parsed.before["title"] == "t" and parsed.after["title"] == "u"
    assert parsed.source.gtid == "0-1-7" and parsed.source.pos == 400 and parsed.source.row == 2
    assert parsed.after["published_at"] == 1704067200000


def test_delete_is_followed_by_a_tombstone_with_the_same_key():
    envelope = change_envelope("d", {"id": 9}, None, source(), now_ms=5)
    records = change_records("p.d.posts", 9, envelope)
    assert [r.value is None for r in records] == [False, True]
    assert {r.key for r in records} == {b'{"id":9}'}


def test_gtid_state_tracks_one_position_per_domain():
    state = parse_gtid_state("0-1-5,1-2-9")
    state = advance_gtid_state(state, "0-1-6")
    assert format_gtid_state(state) == "0-1-6,1-2-9"
    assert parse_gtid_state("") == {}


def test_snapshot_signal_roundtrip():
    signal = incremental_snapshot_signal("d", "posts", "account_id", [3, 4])
    [request] = parse_snapshot_signal(signal, database="d", tables={"accounts", "posts"})
    assert (request.table, request.column, request.values) == ("posts", "account_id", (3, 4))


@pytest.mark.parametrize("filter_sql", ["account_id = 1; DROP TABLE posts", "1=1 OR account_id = 2",
                                        "account_id IN (SELECT id FROM accounts)"])
def test_snapshot_signal_filters_cannot_inject_sql(filter_sql):
    signal = orjson.dumps({"type": "execute-snapshot", "data": {
        "data-collections": ["d.posts"], "additional-conditions": [{"data-collection": "d.posts", "filter": filter_sql}]}})
    with pytest.raises(InvalidSignal):
        parse_snapshot_signal(signal, database="d", tables={"posts"})


def test_snapshot_signal_for_unknown_tables_is_rejected():
    signal = incremental_snapshot_signal("d", "users", "id", [1])
    with pytest.raises(InvalidSignal):
        parse_snapshot_signal(signal, database="d", tables={"posts"})


@pytest.mark.parametrize("data", [
    {"data-collections": ["db.posts"], "additional-conditions": ["x"]},
    {"data-collections": ["db.posts"], "additional-conditions": {"data-collection": "db.posts", "filter": "id = 1"}},
    {"data-collections": ["db.posts"], "additional-conditions": [{"data-collection": "db.posts", "filter": 5}]},
    {"data-collections": [42]},
    {"data-collections": "db.posts"},
    {"data-collections": []},
])
def test_malformed_execute_snapshot_signals_raise_invalid_signal(data):
    with pytest.raises(InvalidSignal):
        parse_snapshot_signal(orjson.dumps({"type": "execute-snapshot", "data": data}), database="db", tables={"posts"})


def test_a_filter_on_an_unknown_column_is_an_invalid_signal():
    value = orjson.dumps({"type": "execute-snapshot", "data": {"data-collections": ["db.posts"], "additional-conditions": [
        {"data-collection": "db.posts", "filter": "owner IN (1, 2)"}]}})
    requests = parse_snapshot_signal(value, database="db", tables={"posts"})
    with pytest.raises(InvalidSignal, match="owner"):
        check_columns(requests, lambda table: {"id", "account_id"})
    check_columns(parse_snapshot_signal(value.replace(b"owner", b"account_id"), database="db", tables={"posts"}),
                  lambda table: {"id", "account_id"})
