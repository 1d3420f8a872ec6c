"""The index registry in a real Redis: versions, the alias switch and rollback, and the live
version surviving a Redis wipe."""

import redis

from services.indexer.supervisor import IndexerSupervisor
from shared.index_registry import IndexRegistry, IndexVersion


def test_switch_rollback_and_recovery_after_a_wipe(infra):
    client = redis.Redis(host="127.0.0.1", port=infra.config.redis_port)
    registry = IndexRegistry(client, "registry-test")
    client.delete(*client.keys("registry-test:*") or ["none"])
    registry.bootstrap("posts", "embedded", "indexer")
    assert registry.active() == "posts" and registry.next_version() == 2
    registry.register(IndexVersion(collection="posts_v2", version=2, source_topic="embedded.v2", indexer_group="g2"))
    assert registry.switch("posts_v2") == "posts"
    assert registry.active() == "posts_v2" and registry.previous() == "posts"
    registry.switch(registry.previous())
    assert registry.active() == "posts"

    client.delete(*client.keys("registry-test:*"))  # Redis restarted without its data
    supervisor = IndexerSupervisor.__new__(IndexerSupervisor)
    supervisor.registry, supervisor.loops = registry, {}
    supervisor._start = lambda version: None  # only the registration is under test here
    supervisor.store = None
    supervisor.reconcile()
    assert set(registry.versions()) == {"posts"} and registry.active() == "posts"
