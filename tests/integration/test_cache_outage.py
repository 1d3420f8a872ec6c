"""Redis stopped mid-run: the embedder goes on uncached and warns; the cache resumes after restart."""

from __future__ import annotations

import socket

import orjson
from confluent_kafka import Message

from devstack.processes import port_open, start_redis, wait_until
from services.embedder.core import PostEmbedding
from services.embedder.main import EmbedderService
from shared.cache import EmbeddingCache, connect_redis
from shared.config import KafkaSettings
from shared.embedding import load_text_embedder
from shared.events import AccountFields, PostRecord, PostUpsert, SourcePosition, encode
from shared.metrics import CACHE_ERRORS, CACHE_REQUESTS
from tests.conftest import MODEL_CACHE_DIR


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def batch(titles: list[str]) -> list[Message]:
    return [Message(topic="v", partition=0, offset=i, value=encode(PostUpsert(
        post=PostRecord(id=i, account_id=1, platform="x", title=t, published_at=1),
        account=AccountFields(handle="h"), position=SourcePosition(ts_ms=1)))) for i, t in enumerate(titles)]


def counter(metric, **labels) -> float:
    return metric.labels(**labels)._value.get()


def test_embedder_keeps_embedding_while_redis_is_down_and_uses_the_cache_again_after(tmp_path):
    port = free_port()
    redis_process = start_redis(port, tmp_path / "redis", tmp_path / "logs")
    embedder = load_text_embedder(MODEL_CACHE_DIR)
    service = EmbedderService(KafkaSettings(), PostEmbedding(embedder, EmbeddingCache(
        connect_redis(f"redis://127.0.0.1:{port}/0"), embedder.model_id, name="outage-test")))
    titles = ["hiking the alps in autumn", "budget meal prep for a week"]
    try:
        assert len(service.handle_batch(batch(titles)).outputs) == 2  # fills the cache
        redis_process.stop()
        errors_before = counter(CACHE_ERRORS, cache="outage-test")
        result = service.handle_batch(batch(titles))
        assert [orjson.loads(o.value)["kind"] for o in result.outputs] == ["post.embedded"] * 2
        assert counter(CACHE_ERRORS, cache="outage-test") > errors_before  # counted and logged, not raised
        redis_process.start()
        wait_until(lambda: port_open("127.0.0.1", port), timeout=15, what="Redis back")
        hits_before = counter(CACHE_REQUESTS, cache="outage-test", result="hit")
        service.handle_batch(batch(titles))
        assert counter(CACHE_REQUESTS, cache="outage-test", result="hit") == hits_before + 2  # AOF kept them
    finally:
        redis_process.stop()
