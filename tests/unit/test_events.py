import json
from pathlib import Path

import orjson
import pytest

from shared.events import (
    EmbeddedPostUpsert,
    MalformedEvent,
    PostRecord,
    PostUpsert,
    AccountFields,
    SourcePosition,
    encode,
    gtid_sequence,
    parse_change_event,
    parse_key_id,
    parse_pipeline_event,
)

FIXTURES = Path(__file__).parent.parent / "fixtures"


def wrapped_fixture() -> dict:
    text = (FIXTURES / "debezium_post_schema_wrapped.json").read_text()
    return json.loads(text.replace("__PREFIX__", "p").replace("__DB__", "d").replace("__TITLE__", "Hello"))


def test_schema_wrapped_and_plain_envelopes_parse_to_the_same_event():
    wrapped = wrapped_fixture()
    from_wrapped = parse_change_event(orjson.dumps(wrapped))
    from_plain = parse_change_event(orjson.dumps(wrapped["payload"]))
    assert from_wrapped == from_plain
    assert from_wrapped.op == "c" and from_wrapped.after["title"] == "Hello"
    assert from_wrapped.source.connector == "mariadb" and from_wrapped.source.gtid == "0-1-999999"


def test_tombstones_parse_to_none():
    assert parse_change_event(None) is None
    assert parse_change_event(b"null") is None


@pytest.mark.parametrize("raw", [b"{oops", b"[]", b'{"op": "c"}', b'{"op": "q", "source": {"ts_ms": 1, "db": "d"}}',
                                 b'\xff\xfe', b'{"schema": {}, "payload": {"op": "c"}}'])
def test_malformed_values_raise_malformed_event(raw):
    with pytest.raises(MalformedEvent):
        parse_change_event(raw)


def test_delete_event_row_is_the_before_image():
    event = parse_change_event(orjson.dumps({"before": {"id": 3}, "after": None, "op": "d",
                                             "source": {"ts_ms": 1, "db": "d"}}))
    assert event.row == {"id": 3}


def test_keys_in_both_flavours():
    assert parse_key_id(b'{"id": 42}') == 42
    assert parse_key_id(b'{"schema": {"type": "struct"}, "payload": {"id": 42}}') == 42
    for bad in (None, b'{"no": 1}', b'{"id": "x"}'):
        with pytest.raises(MalformedEvent):
            parse_key_id(bad)


def test_embedded_post_vector_roundtrips_exactly():
    import numpy as np

    post = PostRecord(id=1, account_id=2, platform="x", title="t", published_at=5)
    upsert = PostUpsert(post=post, account=AccountFields(handle="h"), position=SourcePosition(ts_ms=1))
    vector = np.random.default_rng(1).standard_normal(384).astype("float32")
    event = parse_pipeline_event(encode(EmbeddedPostUpsert.build(upsert, "m", vector)))
    assert isinstance(event, EmbeddedPostUpsert)
    assert np.array_equal(event.vector(), vector)


def test_huge_descriptions_are_bounded():
    post = PostRecord(id=1, account_id=2, platform="x", title="t", published_at=5, description="a" * 10_000_000)
    assert len(post.description) == 20_000


def test_gtid_sequence_of_a_gtid_and_of_a_gtid_state():
    assert gtid_sequence("0-1-42") == 42
    assert gtid_sequence("0-1-42,1-3-7") == 42
    assert [gtid_sequence(g) for g in (None, "", "mariadb-bin.000001", "0-1")] == [None, None, None, None]


def test_order_keys_follow_the_gtid_sequence_not_the_binlog_file():
    old = SourcePosition(ts_ms=1, file="mariadb-bin.000009", pos=10_000, gtid="0-1-9")
    after_switchover = SourcePosition(ts_ms=1, file="mariadb-bin.000001", pos=4, gtid="0-2-10")
    assert old.order_key() < after_switchover.order_key()
    snapshot = SourcePosition(ts_ms=1, file="mariadb-bin.000009", pos=4, gtid="0-1-9", snapshot=True)
    assert old.order_key() < snapshot.order_key() < after_switchover.order_key()
    no_gtid = SourcePosition(ts_ms=1, file="mariadb-bin.2147483647", pos=2**40)
    assert no_gtid.order_key() < SourcePosition(ts_ms=1, file="mariadb-bin.000001", pos=4, gtid="0-1-1").order_key()
