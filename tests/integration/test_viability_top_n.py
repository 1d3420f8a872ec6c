"""Top-N after deletes: the viable topic converges to exactly the SQL's "N most recent" set.

Real MariaDB binlog, the real cdc (which serves viability's snapshot signals), the real viability
service and Redis; the test folds the viable topic the way the indexer applies it.
"""

from __future__ import annotations

import pytest

from tests.conftest import TEST_QUERY_PORT
from tests.support.source_pipeline import SourcePipeline

MAX_POSTS = 3
RULES_ENV = {"VIABILITY_MIN_FOLLOWERS": "1000", "VIABILITY_MIN_POSTS": "3", "VIABILITY_ACTIVE_WITHIN_DAYS": "30",
             "VIABILITY_MAX_POSTS_PER_ACCOUNT": str(MAX_POSTS)}

# Stated without the viability code: every post among its account's 3 most recent, of an account
# with >= 1000 followers, >= 3 posts and a post within 30 days.
ORACLE = f"""
SELECT p.id FROM (
  SELECT id, account_id, ROW_NUMBER() OVER (PARTITION BY account_id ORDER BY published_at DESC, id DESC) AS recency
  FROM posts) p
JOIN accounts a ON a.id = p.account_id
JOIN (SELECT account_id FROM posts GROUP BY account_id
      HAVING COUNT(*) >= 3 AND MAX(published_at) >= UTC_TIMESTAMP() - INTERVAL 30 DAY) active
  ON active.account_id = p.account_id
WHERE a.followers >= 1000 AND p.recency <= {MAX_POSTS}
"""


@pytest.fixture
def pipeline(infra, tmp_path):
    pipeline = SourcePipeline(infra, tmp_path, "topn", RULES_ENV, metrics_port=TEST_QUERY_PORT + 2)
    yield pipeline
    pipeline.stop()


def must_index(pipeline: SourcePipeline) -> set[int]:
    return {row[0] for row in pipeline.sql(ORACLE)}


def test_deleting_a_recent_post_brings_the_next_one_in(pipeline):
    pipeline.add_account(1, followers=5000)
    for post_id in range(1, 8):  # post 1 is the newest, post 7 the oldest
        pipeline.add_post(post_id, 1, f"UTC_TIMESTAMP(3) - INTERVAL {post_id} DAY")
    pipeline.start("cdc", "viability")
    assert pipeline.wait_indexed({1, 2, 3}) == must_index(pipeline) == {1, 2, 3}

    pipeline.sql("DELETE FROM posts WHERE id = 2")  # one of the three most recent: post 4 comes in
    assert pipeline.wait_indexed(must_index(pipeline), timeout=30) == {1, 3, 4}

    pipeline.sql("DELETE FROM posts WHERE id IN (1, 4)")  # two at once, one of them the newcomer
    assert pipeline.wait_indexed(must_index(pipeline), timeout=30) == {3, 5, 6}

    pipeline.sql("DELETE FROM posts WHERE id = 7")  # not among the most recent: nothing comes in
    pipeline.add_post(8, 1, "UTC_TIMESTAMP(3)")  # a new newest post pushes the oldest kept one out
    assert pipeline.wait_indexed(must_index(pipeline), timeout=30) == {8, 3, 5}
    pipeline.follow_viable_topic(2.0)  # and nothing else arrives afterwards
    assert set(pipeline.indexed) == must_index(pipeline)
