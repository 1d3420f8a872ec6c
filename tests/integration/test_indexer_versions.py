"""Out-of-order and duplicate delivery against the real edge engine: newest source version wins."""

from __future__ import annotations

import time

import numpy as np
import pytest

from services.indexer.core import PostIndexer, post_point_id
from shared.events import (
    AccountFields,
    AccountPurge,
    EmbeddedPostUpsert,
    PostDelete,
    PostRecord,
    PostUpsert,
    SourcePosition,
)
from shared.stored_post import payload_fields
from shared.vectorstore import EdgeVectorStore


def at(pos: int, file: str = "mariadb-bin.000002") -> SourcePosition:
    return SourcePosition(ts_ms=1, file=file, pos=pos)


def upsert(post_id: int, title: str, position: SourcePosition) -> EmbeddedPostUpsert:
    post = PostRecord(id=post_id, account_id=1, platform="x", title=title, published_at=1)
    vector = np.random.default_rng(post_id).standard_normal(384).astype("float32")
    return EmbeddedPostUpsert.build(PostUpsert(post=post, account=AccountFields(handle="h"), position=position),
                                    "m", vector / np.linalg.norm(vector))


@pytest.fixture
def indexer(tmp_path):
    store = EdgeVectorStore(tmp_path / "edge")
    yield PostIndexer(store, "posts", 384)
    store.close()


def title_of(indexer: PostIndexer, post_id: int) -> str | None:
    found = indexer.store.retrieve("posts", [post_point_id(post_id)])
    return payload_fields(found[0].payload)["title"] if found else None


def test_an_older_upsert_never_overwrites_a_newer_one(indexer):
    indexer.apply([upsert(1, "new", at(500))])
    indexer.apply([upsert(1, "old", at(400))])
    assert title_of(indexer, 1) == "new"
    indexer.apply([upsert(1, "older file", at(900, file="mariadb-bin.000001"))])
    assert title_of(indexer, 1) == "new"
    indexer.apply([upsert(1, "newest", at(10, file="mariadb-bin.000003"))])
    assert title_of(indexer, 1) == "newest"


def test_duplicate_delivery_is_idempotent(indexer):
    event = upsert(2, "same", at(100))
    for _ in range(3):
        indexer.apply([event, event])
    assert indexer.store.count("posts") == 1 and title_of(indexer, 2) == "same"


def test_a_stale_delete_does_not_remove_a_newer_post(indexer):
    indexer.apply([upsert(3, "kept", at(700))])
    indexer.apply([PostDelete(post_id=3, account_id=1, position=at(600))])
    assert title_of(indexer, 3) == "kept"
    indexer.apply([PostDelete(post_id=3, account_id=1, position=at(800))])
    assert title_of(indexer, 3) is None


def test_after_a_primary_switchover_new_events_win_although_binlog_file_numbers_restart(indexer):
    """The new primary writes mariadb-bin.000001 again, but MariaDB's GTID sequence of the domain goes on."""
    old_primary = SourcePosition(ts_ms=1, file="mariadb-bin.000007", pos=9_000, gtid="0-1-120")
    indexer.apply([upsert(4, "before the switchover", old_primary)])
    new_primary = SourcePosition(ts_ms=2, file="mariadb-bin.000001", pos=350, gtid="0-2-121")
    indexer.apply([upsert(4, "after the switchover", new_primary)])
    assert title_of(indexer, 4) == "after the switchover"
    indexer.apply([upsert(4, "redelivered from the old primary", old_primary)])
    assert title_of(indexer, 4) == "after the switchover"
    indexer.apply([PostDelete(post_id=4, account_id=1, position=SourcePosition(
        ts_ms=3, file="mariadb-bin.000001", pos=900, gtid="0-2-122"))])
    assert title_of(indexer, 4) is None


def test_a_snapshot_row_is_newer_than_the_transactions_it_contains_and_older_than_the_next(indexer):
    snapshot = SourcePosition(ts_ms=1, file="mariadb-bin.000003", pos=4, gtid="0-1-50", snapshot=True)
    indexer.apply([upsert(5, "snapshot", snapshot)])
    indexer.apply([upsert(5, "streamed in 50, already in the snapshot", SourcePosition(
        ts_ms=1, file="mariadb-bin.000003", pos=9_999, row=3, gtid="0-1-50"))])
    assert title_of(indexer, 5) == "snapshot"
    indexer.apply([upsert(5, "streamed in 51", SourcePosition(ts_ms=1, file="mariadb-bin.000003", pos=1, gtid="0-1-51"))])
    assert title_of(indexer, 5) == "streamed in 51"


def test_a_point_stored_with_a_file_position_key_is_replaced_by_any_gtid_event(indexer):
    """Points written before GTID keys (and events without a GTID) carry [file, pos, row]: older than any GTID key."""
    indexer.apply([upsert(6, "no gtid", at(10**9, file="mariadb-bin.999999"))])
    indexer.apply([upsert(6, "gtid", SourcePosition(ts_ms=1, file="mariadb-bin.000001", pos=1, gtid="0-1-1"))])
    assert title_of(indexer, 6) == "gtid"
    indexer.apply([upsert(6, "no gtid again", at(10**9, file="mariadb-bin.999999"))])
    assert title_of(indexer, 6) == "gtid"


def gtid(sequence: int) -> SourcePosition:
    return SourcePosition(ts_ms=1, file="mariadb-bin.000001", pos=sequence, gtid=f"0-1-{sequence}")


def test_an_unversioned_delete_applies_whatever_is_stored_and_remembers_the_stored_version(indexer):
    indexer.apply([upsert(7, "stored", gtid(30))])
    indexer.apply([PostDelete(post_id=7, account_id=1, position=None)])  # from a tombstone
    assert title_of(indexer, 7) is None
    indexer.apply([upsert(7, "redelivered", gtid(30)), upsert(8, "older, other post", gtid(29))])
    assert title_of(indexer, 7) is None and title_of(indexer, 8) == "older, other post"
    indexer.apply([upsert(7, "recreated", gtid(31))])
    assert title_of(indexer, 7) == "recreated"


def test_an_unversioned_purge_removes_every_point_of_the_account(indexer):
    indexer.apply([upsert(9, "a", gtid(40)), upsert(10, "b", gtid(41))])
    indexer.apply([AccountPurge(account_id=1, reason="no post within 30 days", position=None)])
    assert title_of(indexer, 9) is None and title_of(indexer, 10) is None
    indexer.apply([upsert(10, "redelivered", gtid(41))])
    assert title_of(indexer, 10) is None


def test_deleted_versions_expire_after_the_retention(tmp_path):
    store = EdgeVectorStore(tmp_path / "edge")
    try:
        # The window is shortened between the two redrives rather than waited out: under load one
        # apply (with its flush) took longer than a 0.5 s window, and the "within" step then failed.
        short = PostIndexer(store, "posts", 384, deleted_retention_s=3600)
        short.apply([upsert(11, "x", gtid(50)), PostDelete(post_id=11, account_id=1, position=gtid(51))])
        short.apply([upsert(11, "old, within the window", gtid(49))])
        assert title_of(short, 11) is None
        short.deleted.retention_ms = 50
        time.sleep(0.1)
        short.apply([upsert(11, "old, after the window", gtid(49))])
        assert title_of(short, 11) == "old, after the window"
    finally:
        store.close()
