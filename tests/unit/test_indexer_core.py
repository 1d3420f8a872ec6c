import uuid

import numpy as np

from services.indexer.core import plan_writes, post_point_id
from shared.events import AccountFields, AccountPurge, EmbeddedPostUpsert, PostDelete, PostRecord, PostUpsert, SourcePosition
from shared.stored_post import payload_fields
from shared.vectorstore.base import canonical_id, point_id

POSITION = SourcePosition(ts_ms=1)


def embedded(post_id, account_id=1, title="t"):
    post = PostRecord(id=post_id, account_id=account_id, platform="x", title=title, published_at=1)
    upsert = PostUpsert(post=post, account=AccountFields(handle="h"), position=POSITION)
    return EmbeddedPostUpsert.build(upsert, "m", np.ones(4, dtype="float32"))


def test_point_ids_are_deterministic_and_distinct():
    assert post_point_id(7) == post_point_id(7) != post_point_id(8)


def test_last_event_per_post_wins_within_a_batch():
    [step] = plan_writes([embedded(1, title="a"), embedded(1, title="b"), embedded(2),
                          PostDelete(post_id=2, position=POSITION), PostDelete(post_id=3, position=POSITION),
                          embedded(3)])
    assert payload_fields(step.upserts[post_point_id(1)].payload)["title"] == "b"
    assert set(step.upserts) == {post_point_id(1), post_point_id(3)}
    assert step.deletes == {post_point_id(2)}


def test_purge_is_a_barrier():
    steps = plan_writes([embedded(1), AccountPurge(account_id=1, reason="r", position=POSITION), embedded(2)])
    assert [set(s.upserts) for s in steps] == [{post_point_id(1)}, {post_point_id(2)}]
    assert [s.purge_account for s in steps] == [1, None]


def test_point_ids_are_the_uuid5_ids_existing_shards_hold():
    namespace = uuid.UUID("b6229d05-db28-418e-9984-37a8bade1155")
    for source_id in (0, 7, 12_345_678_901, "42", "ü"):
        assert point_id("post", source_id) == str(uuid.uuid5(namespace, f"post:{source_id}"))


def test_canonical_ids_are_lower_case_hyphenated_whatever_the_input():
    pid = post_point_id(7)
    assert canonical_id(pid) == pid
    assert canonical_id(pid.upper()) == canonical_id(pid.replace("-", "")) == canonical_id("{" + pid + "}") == pid
