"""An account that becomes viable while cdc's initial snapshot still reads its posts: each post goes
downstream once, not once from the snapshot and again from the re-read viability asks for.

Real MariaDB binlog, the real cdc (initial snapshot, then serving viability's snapshot signal), the
real viability service and Redis; the test reads every event of the viable topic.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.conftest import TEST_QUERY_PORT
from tests.support.source_pipeline import SourcePipeline

POSTS = 40
RULES_ENV = {"VIABILITY_MIN_FOLLOWERS": "1000", "VIABILITY_MIN_POSTS": "3", "VIABILITY_ACTIVE_WITHIN_DAYS": "30",
             "VIABILITY_MAX_POSTS_PER_ACCOUNT": "100"}


@pytest.fixture
def pipeline(infra, tmp_path):
    pipeline = SourcePipeline(infra, tmp_path, "once", RULES_ENV, metrics_port=TEST_QUERY_PORT + 3)
    yield pipeline
    pipeline.stop()


def test_posts_met_after_the_account_turns_viable_in_the_snapshot_are_forwarded_once(pipeline):
    pipeline.add_account(1, followers=5000)
    for post_id in range(1, POSTS + 1):  # the third post read makes the account viable
        pipeline.add_post(post_id, 1, f"UTC_TIMESTAMP(3) - INTERVAL {post_id} HOUR")
    pipeline.add_account(2, followers=10)  # never viable: none of its posts go downstream
    pipeline.add_post(POSTS + 1, 2, "UTC_TIMESTAMP(3)")
    pipeline.start("cdc", "viability")

    every_post = set(range(1, POSTS + 1))
    assert pipeline.wait_indexed(every_post) == every_post  # nothing lost: the re-read brought all of them
    pipeline.follow_viable_topic(3.0)  # and whatever else was on its way
    upserts = Counter(e["post"]["id"] for e in pipeline.events if e["kind"] == "post.upsert")
    assert set(upserts) == every_post
    forwarded_twice = sorted(post_id for post_id, times in upserts.items() if times > 1)
    assert forwarded_twice == [], f"{len(forwarded_twice)} of {POSTS} posts forwarded more than once"
