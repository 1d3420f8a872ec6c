"""The stored post: one model for the payload the indexer writes and the query API and summarizer read."""

from __future__ import annotations

import numpy as np

from services.indexer.core import post_payload, with_labels
from services.query.posts import to_hit
from services.summarizer.core import POST_FIELDS, AccountProfile, PostView
from shared.classification.taxonomy import TaxonomyCatalog, VerticalLabel
from shared.events import AccountFields, EmbeddedPostUpsert, PostRecord, PostUpsert, SourcePosition
from shared.stored_post import ENGINE_KEYS, PACKED_KEY, StoredPost, payload_fields, stored_labels
from shared.vectorstore import ScoredPoint
from shared.vectorstore.base import INDEXED_FIELDS

# The payload fields existing shards hold: renaming one is a data migration, not a refactor.
ON_DISK_KEYS = {
    "post_id", "account_id", "platform", "title", "description", "url", "published_at", "views", "likes",
    "comments", "handle", "display_name", "followers", "model_id", "source_ts_ms", "source_gtid",
    "source_snapshot", "indexed_at_ms", "sparse_model_id", "source_version", "content_hash", "verticals",
    "vertical_labels",
}
FOOD = VerticalLabel(taxonomy="default", vertical="food", confidence=0.9)


def written_payload() -> dict:
    post = PostRecord(id=7, account_id=3, platform="youtube", title="Ramen", description="broth " * 1000,
                      url="https://example.com/7", published_at=1_700_000_000_000, views=5, likes=2, comments=1)
    upsert = PostUpsert(post=post, account=AccountFields(handle="chef", display_name="Chef", followers=9),
                        position=SourcePosition(ts_ms=17, gtid="0-1-5", file="mariadb-bin.000002", pos=40, row=1))
    return with_labels(post_payload(EmbeddedPostUpsert.build(upsert, "m1", np.ones(4, dtype="float32")), 123), [FOOD])


def test_the_indexer_writes_the_fields_existing_shards_hold_and_the_model_reads_them_back_unchanged():
    payload = written_payload()
    assert set(payload_fields(payload)) == ON_DISK_KEYS
    fields = payload_fields(payload)
    assert fields["vertical_labels"] == ["default:food"] and fields["source_version"][1:] == [5, 40, 1]
    assert len(fields["description"]) == 4_000  # trimmed for display
    assert StoredPost.from_payload(payload).payload() == payload


def test_what_the_engine_filters_on_is_top_level_and_the_rest_is_one_packed_string():
    payload = written_payload()
    engine_keys = {key.split("[")[0] for key in INDEXED_FIELDS}
    assert engine_keys <= set(payload) and set(payload) == (ENGINE_KEYS & ON_DISK_KEYS) | {PACKED_KEY}
    assert isinstance(payload[PACKED_KEY], str) and payload["account_id"] == 3 and payload["views"] == 5


def test_a_flat_payload_written_before_the_packing_reads_as_the_same_post():
    flat = payload_fields(written_payload())
    assert PACKED_KEY not in flat
    assert StoredPost.from_payload(flat) == StoredPost.from_payload(written_payload())
    hit = to_hit(ScoredPoint(id="p7", score=1.0, payload=flat), TaxonomyCatalog.load())
    assert hit is not None and hit.post.title == "Ramen" and hit.post.handle == "chef"


def test_a_top_level_key_wins_over_its_packed_value():
    payload = {**written_payload(), "title": "patched"}
    assert StoredPost.from_payload(payload).title == "patched"


def test_a_payload_written_before_the_bookkeeping_fields_still_reads_everywhere():
    old = {key: value for key, value in payload_fields(written_payload()).items()
           if key not in {"sparse_model_id", "source_version", "content_hash", "source_gtid", "source_snapshot",
                          "model_id", "url", "vertical_labels"}}
    hit = to_hit(ScoredPoint(id="p7", score=1.0, payload=old), TaxonomyCatalog.load())
    assert hit is not None and hit.post.handle == "chef" and [v.vertical for v in hit.post.verticals] == ["food"]
    assert PostView.from_payload(old).labels == (("default", "food", 0.9),)
    assert AccountProfile.from_payload(old).followers == 9


def test_the_summarizer_scrolls_every_field_its_readers_need():
    projected = {key: value for key, value in written_payload().items() if key in POST_FIELDS}
    assert PostView.from_payload(projected) == PostView.from_payload(written_payload())
    assert AccountProfile.from_payload(projected) == AccountProfile.from_payload(written_payload())


def test_an_unreadable_label_is_skipped_and_the_post_still_shows():
    payload = {**written_payload(), "verticals": [FOOD.model_dump(), {"bogus": 1}, "food",
                                                  {**FOOD.model_dump(), "vertical": "travel", "confidence": 7}]}
    assert stored_labels(payload) == [FOOD]
    hit = to_hit(ScoredPoint(id="p7", score=1.0, payload=payload), TaxonomyCatalog.load())
    assert hit is not None and [v.vertical for v in hit.post.verticals] == ["food"]


def test_labels_under_the_floor_or_of_switched_off_verticals_are_not_shown():
    payload = {**written_payload(), "verticals": [FOOD.model_dump(), {**FOOD.model_dump(), "vertical": "travel",
                                                                      "confidence": 0.2},
                                                  {**FOOD.model_dump(), "vertical": "no-such-vertical"}]}
    hit = to_hit(ScoredPoint(id="p7", score=1.0, payload=payload), TaxonomyCatalog.load(), label_floor=0.5)
    assert hit is not None and [v.vertical for v in hit.post.verticals] == ["food"]


def test_a_point_that_is_not_a_post_is_no_hit():
    assert to_hit(ScoredPoint(id="a1", score=1.0, payload={"account_id": 1, "summary": "x"}),
                  TaxonomyCatalog.load()) is None
