"""Accounts that go quiet: the viability sweep purges them without any event, says so in /metrics,
and replay verification counts with the sweep's clock, so it agrees with what the index holds.

Real MariaDB binlog, the real cdc and viability processes, the broker and Redis; the test folds the
viable topic the way the indexer applies it.
"""

from __future__ import annotations

import time

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from services.query.status import _parse_samples, sweep_status
from services.viability.core import ViabilityRules
from shared.config import MariaDBSettings
from tests.conftest import TEST_QUERY_PORT
from tests.support.source_pipeline import SourcePipeline

QUIET_IN_S = 45  # account 1's last post turns 1 day old this long after the test starts
RULES = ViabilityRules(min_followers=1000, min_posts=3, active_within_days=1)
RULES_ENV = {"VIABILITY_MIN_FOLLOWERS": "1000", "VIABILITY_MIN_POSTS": "3", "VIABILITY_ACTIVE_WITHIN_DAYS": "1",
             "VIABILITY_SWEEP_INTERVAL_S": "1"}


@pytest.fixture
def pipeline(infra, tmp_path):
    pipeline = SourcePipeline(infra, tmp_path, "sweep", RULES_ENV, metrics_port=TEST_QUERY_PORT + 1)
    yield pipeline
    pipeline.stop()


def sweep_metrics(port: int) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples
            if s.name.startswith("viability_sweep") and s.labels.get("loop") == "live"}


def test_an_account_that_stops_posting_is_purged_by_the_sweep_and_verification_agrees(pipeline):
    from ops import replay

    pipeline.add_account(1, followers=5000)
    pipeline.add_account(2, followers=5000)
    for n in range(3):
        pipeline.add_post(1 + n, 1, f"UTC_TIMESTAMP(3) - INTERVAL 1 DAY + INTERVAL {QUIET_IN_S - n} SECOND")
        pipeline.add_post(11 + n, 2, f"UTC_TIMESTAMP(3) - INTERVAL {n + 1} HOUR")
    quiet_at = time.time() + QUIET_IN_S - 2  # seconds of the insert itself do not count
    pipeline.start("cdc", "viability")
    assert pipeline.wait_indexed({1, 2, 3, 11, 12, 13}, timeout=QUIET_IN_S - 15) == {1, 2, 3, 11, 12, 13}
    client = redis.Redis(port=pipeline.config.redis_port)
    swept_while_active = client.get("sweep:viability:swept_at")  # the clock the index was last swept by

    time.sleep(max(0.0, quiet_at - time.time() + 3))  # account 1 is quiet now; nothing happens to its rows
    indexed = pipeline.wait_indexed({11, 12, 13}, timeout=20)
    assert indexed == {11, 12, 13}, f"account 1 still indexed {QUIET_IN_S + 20} s after its last post turned 1 day old"
    purge = next(e for e in pipeline.events if e["kind"] == "account.purge")
    assert purge["account_id"] == 1 and "180" not in purge["reason"] and purge["position"] is None

    # The run after the purge checks account 2 alone; on a loaded machine it may not have run yet when the
    # purge is seen (the sweep runs every second in this test), so wait for it rather than race it.
    deadline = time.time() + 15
    while (metrics := sweep_metrics(pipeline.metrics_port))["viability_sweep_last_checked_accounts"] != 1 \
            and time.time() < deadline:
        time.sleep(0.2)
    assert metrics["viability_sweep_accounts_purged_total"] == 1
    assert metrics["viability_sweep_last_checked_accounts"] == 1  # the last run: account 2, still active
    assert time.time() - metrics["viability_sweep_as_of_timestamp_seconds"] < 5
    # The status page shows it, from the same /metrics it already scrapes for the service's counters.
    text = httpx.get(f"http://127.0.0.1:{pipeline.metrics_port}/metrics", timeout=5).text
    shown = sweep_status(_parse_samples(text))
    assert (shown.accounts_checked, shown.accounts_purged_total) == (1, 1)
    assert abs(shown.as_of_ms / 1000 - metrics["viability_sweep_as_of_timestamp_seconds"]) < 0.01

    # Verification counts by the clock the index was swept by, before and after the transition.
    mariadb = MariaDBSettings(mariadb_port=pipeline.config.mariadb_port, mariadb_database="sweep")
    assert swept_while_active is not None
    assert replay.expected_points(mariadb, RULES, as_of_ms=int(swept_while_active)) == 6
    as_of = replay.viability_clock(client, "sweep")
    assert as_of is not None and as_of >= int(swept_while_active)
    assert replay.expected_points(mariadb, RULES, as_of_ms=as_of) == len(pipeline.follow_viable_topic()) == 3
