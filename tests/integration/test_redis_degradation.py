"""What Redis failures cost tier 1 and the indexer, with a private real Redis that fails and recovers."""

from __future__ import annotations

import pytest
import redis

from shared.embedding import load_text_embedder
from shared.fewshot import FewShotStore
from shared.labelling import Tier1Labeller
from shared.taxonomy import TaxonomyCatalog
from tests.conftest import MODEL_CACHE_DIR
from tests.support.redis_server import private_redis

LOOK = "Everyday look: oversized blazer, loafers and a bold red lipstick"


@pytest.fixture(scope="module")
def embedder():
    return load_text_embedder(MODEL_CACHE_DIR)


def test_examples_that_failed_to_load_are_loaded_when_redis_answers_again(tmp_path, embedder):
    """The revision is read, then loading the examples fails (here: Redis refuses the command, as an ACL
    change or a failover mid-call does); once Redis answers again the next refresh loads them, without
    waiting for another correction to move the revision."""
    vector = embedder.embed([LOOK])
    with private_redis(tmp_path) as url:
        admin = redis.Redis.from_url(url)
        FewShotStore(admin).add("default", "beauty", 1, vector[0], at_ms=1)
        with_examples = Tier1Labeller(TaxonomyCatalog.load(), embedder.embed, FewShotStore(admin))
        expected = with_examples.results(vector)[0][0].scores["beauty"]
        admin.acl_setuser("tier1", enabled=True, nopass=True, keys=["*"], commands=["+@all", "-hgetall", "-hkeys"])
        limited = redis.Redis.from_url(url, username="tier1", password="unused")
        labeller = Tier1Labeller(TaxonomyCatalog.load(), embedder.embed, FewShotStore(limited), refresh_s=3600)
        degraded = labeller.results(vector)[0][0].scores["beauty"]
        assert degraded < expected - 0.05, "without its examples tier 1 should score lower"

        admin.acl_setuser("tier1", enabled=True, nopass=True, commands=["+hgetall", "+hkeys"])  # Redis answers again
        labeller.refresh()
        assert labeller.results(vector)[0][0].scores["beauty"] == pytest.approx(expected, abs=1e-6)
