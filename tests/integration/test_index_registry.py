"""The index registry in a real Redis: versions, the alias switch and rollback, and the live
version surviving a Redis wipe."""

import threading

import redis

from services.indexer.service import indexer_versions
from shared.config import KafkaSettings
from shared.index_registry import IndexRegistry, IndexVersion
from shared.vectorstore import EdgeVectorStore


def test_switch_rollback_and_recovery_after_a_wipe(infra, tmp_path):
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
    kafka = KafkaSettings(kafka_bootstrap_servers=f"127.0.0.1:{infra.config.broker_port}", topic_prefix="registry-test")
    store, stop = EdgeVectorStore(tmp_path / "edge"), threading.Event()
    supervisor = indexer_versions(kafka, store, registry, stop=stop, batch_size=64)
    try:
        supervisor.reconcile()
        assert set(registry.versions()) == {"posts"} and registry.active() == "posts"
        assert set(supervisor.loops) == {"posts"}  # the live loop keeps running
    finally:
        stop.set()
        for loop in supervisor.loops.values():
            loop.stop.set()
            loop.thread.join(timeout=30)
        store.close()


def test_a_dropped_version_stays_dropped_while_its_points_are_reported(infra):
    """The supervisor rewrites each version's record with its point count every few seconds; a drop that
    lands between that read and write must not be undone (real Redis, the two writers in two threads)."""
    client = redis.Redis(host="127.0.0.1", port=infra.config.redis_port)
    registry = IndexRegistry(client, "registry-race")
    client.delete(*client.keys("registry-race:*") or ["none"])
    registry.bootstrap("posts", "embedded", "indexer")
    reporter = IndexRegistry(redis.Redis(host="127.0.0.1", port=infra.config.redis_port), "registry-race")
    resurrected = []
    for round_number in range(2, 62):
        name = f"posts_v{round_number}"
        registry.register(IndexVersion(collection=name, version=round_number, source_topic=f"e.{name}",
                                       indexer_group=f"g.{name}"))
        done = threading.Event()

        def report(collection: str = name, stop: threading.Event = done) -> None:
            while not stop.is_set():
                reporter.report_points(collection, 42)

        thread = threading.Thread(target=report)
        thread.start()
        while registry.versions()[name].points != 42:  # the reporter is writing
            pass
        registry.drop(name)
        done.set()
        thread.join()
        if name in registry.versions():
            resurrected.append(name)
    assert resurrected == []
    assert set(registry.versions()) == {"posts"}
