from datetime import datetime, timezone
from decimal import Decimal

import orjson
import pytest

from services.cdc.core import (
    BinlogPosition,
    ChangeSource,
    InvalidSignal,
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
