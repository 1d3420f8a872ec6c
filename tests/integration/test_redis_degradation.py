"""What Redis failures cost tier 1 and the indexer, with a private real Redis that fails and recovers."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
import uuid

import pytest
import redis

from devstack.processes import start_redis
from services.indexer.core import post_point_id
from shared.classification.fewshot import FewShotStore
from shared.classification.labelling import TierOneLabeller
from shared.classification.taxonomy import TaxonomyCatalog
from shared.config import PROJECT_ROOT, KafkaSettings
from shared.embedding import load_text_embedder
from shared.events import AccountFields, EmbeddedPostUpsert, PostRecord, PostUpsert, SourcePosition, account_key, encode
from shared.index_registry import IndexRegistry
from shared.kafka import OutboundMessage, ensure_topics, make_producer, produce_all
from shared.stored_post import payload_fields
from shared.vectorstore import EdgeVectorStore
from tests.conftest import MODEL_CACHE_DIR, wait_for
from tests.support.redis_server import free_port, private_redis

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
        with_examples = TierOneLabeller(TaxonomyCatalog.load(), embedder.embed, FewShotStore(admin))
        expected = with_examples.results(vector)[0][0].scores["beauty"]
        admin.acl_setuser("tier1", enabled=True, nopass=True, keys=["*"], commands=["+@all", "-hgetall", "-hkeys"])
        limited = redis.Redis.from_url(url, username="tier1", password="unused")
        labeller = TierOneLabeller(TaxonomyCatalog.load(), embedder.embed, FewShotStore(limited), refresh_s=3600)
        degraded = labeller.results(vector)[0][0].scores["beauty"]
        assert degraded < expected - 0.05, "without its examples tier 1 should score lower"

        admin.acl_setuser("tier1", enabled=True, nopass=True, commands=["+hgetall", "+hkeys"])  # Redis answers again
        labeller.refresh()
        assert labeller.results(vector)[0][0].scores["beauty"] == pytest.approx(expected, abs=1e-6)


def test_the_standalone_indexer_keeps_indexing_while_redis_is_down(infra, tmp_path, embedder):
    """`python -m services.indexer.main` started with Redis down: its writes need only the broker and the
    store, so it indexes; when Redis comes back, the registry (a Redis-dependent part) recovers."""
    prefix = f"noredis{uuid.uuid4().hex[:6]}"
    kafka = KafkaSettings(kafka_bootstrap_servers=f"127.0.0.1:{infra.config.broker_port}", topic_prefix=prefix)
    redis_port, metrics_port = free_port(), free_port()
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka.kafka_bootstrap_servers, "TOPIC_PREFIX": prefix,
           "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "VECTOR_STORE": "edge",
           "QDRANT_EDGE_PATH": str(tmp_path / "edge"), "MODEL_CACHE_DIR": str(MODEL_CACHE_DIR),
           "METRICS_PORT": str(metrics_port), "LOG_LEVEL": "WARNING"}
    log_path = tmp_path / "indexer.log"
    with log_path.open("wb") as log_file:
        indexer = subprocess.Popen([sys.executable, "-m", "services.indexer.main"], cwd=PROJECT_ROOT, env=env,
                                   stdout=log_file, stderr=subprocess.STDOUT)
    redis_process = None
    try:
        ensure_topics(kafka, [kafka.embedded_posts_topic])
        post = PostRecord(id=5, account_id=9, platform="tiktok", title=LOOK, published_at=1)
        event = EmbeddedPostUpsert.build(PostUpsert(post=post, account=AccountFields(handle="h"),
                                                    position=SourcePosition(ts_ms=1, pos=1)), "m", embedder.embed([LOOK])[0])
        produce_all(make_producer(kafka), [OutboundMessage(kafka.embedded_posts_topic, account_key(9), encode(event))])

        def upserts() -> float:
            assert indexer.poll() is None, f"the indexer exited:\n{log_path.read_text()[-3000:]}"
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).read().decode()
            except OSError:
                return 0.0
            found = re.search(r'^indexer_operations_total\{op="upsert"\} (\S+)$', text, re.MULTILINE)
            return float(found.group(1)) if found else 0.0

        wait_for(lambda: upserts() >= 1, timeout=90, what="the post indexed while Redis is down")
        redis_process = start_redis(redis_port, tmp_path / "redis", tmp_path / "logs")
        registry = IndexRegistry(redis.Redis(host="127.0.0.1", port=redis_port), prefix, alias="posts")
        wait_for(lambda: indexer.poll() is None and registry.active() == "posts", timeout=30,
                 what="the live version registered once Redis is back")
    finally:
        indexer.send_signal(signal.SIGTERM)
        indexer.wait(30)
        if redis_process is not None:
            redis_process.stop()
    assert indexer.returncode == 0, log_path.read_text()[-3000:]
    store = EdgeVectorStore(tmp_path / "edge")
    try:
        store.ensure_collection("posts", 384)  # opens the shard the indexer wrote
        assert [payload_fields(p.payload)["post_id"] for p in store.retrieve("posts", [post_point_id(5)])] == [5]
    finally:
        store.close()
