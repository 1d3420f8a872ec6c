"""GET /v1/status against the session's real broker and Redis, on an index whose freshness
fields are known: lag, throughput, dead letters, caches, freshness percentiles, index, spend."""

from __future__ import annotations

import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from fastapi.testclient import TestClient
from qdrant_client import QdrantClient

from services.query.active_collection import ActiveCollection
from services.query.app import QuerySettings, create_app
from services.query.status import PipelineStatus
from shared.auth import Scope
from shared.config import KafkaSettings, dlq_topic
from shared.kafka import ensure_topics
from shared.spend import SPEND_KEY, record_llm_call
from shared.vectorstore import PointRecord, ServerVectorStore, point_id
from tests.api.conftest import UNLIMITED
from tests.api.corpus import COLLECTION, build_context, taxonomy_dir

pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")
DELAYS_S = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]


def _points(now_ms: int) -> list[PointRecord]:
    rng = np.random.default_rng(3)
    live = [{"post_id": i, "indexed_at_ms": now_ms - 1000, "source_ts_ms": now_ms - 1000 - d * 1000,
             "source_snapshot": False, "model_id": "model-a"} for i, d in enumerate(DELAYS_S)]
    snapshot = [{"post_id": 100, "indexed_at_ms": now_ms, "source_ts_ms": now_ms - 999_000, "source_snapshot": True,
                 "model_id": "model-b"}]
    old = [{"post_id": 101, "indexed_at_ms": now_ms - 3_600_000, "source_ts_ms": now_ms - 3_700_000,
            "source_snapshot": False, "model_id": "model-a"}]
    return [PointRecord(id=point_id("post", p["post_id"]), vector=rng.standard_normal(384).tolist(), payload=p)
            for p in live + snapshot + old]


@pytest.fixture(scope="module")
def status_client(embedder, redis_client, infra, tmp_path_factory):
    prefix = f"status{int(time.time())}"
    kafka = KafkaSettings(kafka_bootstrap_servers=f"127.0.0.1:{infra.config.broker_port}", topic_prefix=prefix)
    store = ServerVectorStore(client=QdrantClient(":memory:"))
    store.ensure_collection(COLLECTION, 384)
    store.upsert(COLLECTION, _points(int(time.time() * 1000)))
    ctx = build_context(store=store, embedder=embedder, redis_client=redis_client, kafka=kafka,
                        taxonomies=taxonomy_dir(tmp_path_factory.mktemp("tax")))
    key = ctx.keys.create("ops", [Scope.status, Scope.search], UNLIMITED).key
    yield TestClient(create_app(QuerySettings(), context=ctx)), {"X-API-Key": key}, kafka
    ctx.status.close()


def _produce(kafka: KafkaSettings, topic: str, count: int) -> None:
    producer = Producer({"bootstrap.servers": kafka.kafka_bootstrap_servers})
    for i in range(count):
        producer.produce(topic, key=b"k", value=b"v%d" % i)
    producer.flush(10)


def _commit(kafka: KafkaSettings, group: str, topic: str, offset: int) -> None:
    consumer = Consumer({"bootstrap.servers": kafka.kafka_bootstrap_servers, "group.id": group,
                         "enable.auto.commit": False})
    consumer.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
    consumer.close()


def test_status_reports_lag_throughput_and_dead_letters(status_client):
    client, headers, kafka = status_client
    topic = kafka.viable_posts_topic  # what the embedder reads
    ensure_topics(kafka, [kafka.accounts_topic, kafka.posts_topic, topic, kafka.embedded_posts_topic, dlq_topic(topic)])
    _produce(kafka, topic, 25)
    _produce(kafka, dlq_topic(topic), 3)
    _produce(kafka, kafka.posts_topic, 7)
    _commit(kafka, f"{kafka.topic_prefix}-embedder", topic, 5)
    first = client.get("/v1/status", headers=headers).json()
    embedder = next(s for s in first["services"] if s["service"] == "embedder")
    assert first["kafka"] == {"reachable": True, "problem": None}
    assert (embedder["lag"], embedder["position"], embedder["dlq_messages"]) == (20, 5, 3)
    assert embedder["consumer_group"] == f"{kafka.topic_prefix}-embedder"
    cdc = next(s for s in first["services"] if s["service"] == "cdc")
    assert (cdc["consumer_group"], cdc["lag"], cdc["position"]) == (None, None, 7)
    viability = next(s for s in first["services"] if s["service"] == "viability")
    assert viability["lag"] == 7  # never committed: everything on its topics is still to do

    time.sleep(1.1)
    _commit(kafka, f"{kafka.topic_prefix}-embedder", topic, 25)
    second = client.get("/v1/status", headers=headers).json()
    embedder = next(s for s in second["services"] if s["service"] == "embedder")
    assert embedder["lag"] == 0
    assert 20 / 3 < embedder["throughput_per_s"] <= 20 / 1.1


def test_status_reports_freshness_percentiles_of_live_changes(status_client):
    client, headers, _ = status_client
    freshness = client.get("/v1/status", headers=headers).json()["freshness"]
    assert freshness["samples"] == len(DELAYS_S)  # snapshot read and the write outside the window excluded
    assert freshness["p50_s"] == pytest.approx(float(np.quantile(DELAYS_S, 0.5)))
    assert freshness["p95_s"] == pytest.approx(float(np.quantile(DELAYS_S, 0.95)))
    assert freshness["max_s"] == 10


def test_status_reports_index_version_caches_and_llm_spend(status_client, redis_client):
    client, headers, _ = status_client
    redis_client.delete(SPEND_KEY)
    record_llm_call(redis_client, "llama-70b", 0.0045)
    record_llm_call(redis_client, "llama-70b", 0.0045)
    client.post("/v1/search/posts", json={"query": "cache probe twice"}, headers=headers)
    client.post("/v1/search/posts", json={"query": "cache probe twice"}, headers=headers)
    body = client.get("/v1/status", headers=headers).json()
    assert body["points"] == body["index"]["points"] == 12
    assert body["index"]["keyword_vectors"] == 0  # these points were written without keyword vectors
    assert {m["model_id"]: m["points"] for m in body["index"]["models_in_index"]} == {"model-a": 11, "model-b": 1}
    assert body["index"]["sparse_model"].startswith("bm25-")
    assert body["llm_spend"]["usd"] == pytest.approx(0.009) and body["llm_spend"]["calls"] == 2
    query_cache = next(c for c in body["caches"] if c["cache"] == "query")
    assert query_cache["hits"] >= 1 and query_cache["misses"] >= 1 and 0 < query_cache["hit_rate"] < 1
    assert all(s["metrics"].startswith("not configured") for s in body["services"])


def test_status_says_when_kafka_is_unreachable(embedder, redis_client, context, tmp_path):
    kafka = KafkaSettings(kafka_bootstrap_servers="127.0.0.1:1", topic_prefix="down")
    ctx = build_context(store=context.store, embedder=embedder, redis_client=redis_client, kafka=kafka,
                        taxonomies=taxonomy_dir(tmp_path / "tax"))
    key = ctx.keys.create("ops", [Scope.status], UNLIMITED).key
    response = TestClient(create_app(QuerySettings(), context=ctx)).get(
        "/v1/status", headers={"X-API-Key": key})
    assert response.status_code == 200
    body = response.json()
    assert body["kafka"]["reachable"] is False
    assert all(s["problem"] == "broker unreachable" and s["lag"] is None for s in body["services"])
    assert body["points"] > 0


def test_status_reads_service_metrics_without_a_new_ssl_context_per_read(redis_client, infra, monkeypatch):
    """Each refresh reads every service's /metrics; a client (and its SSL context, the CA bundle parsed)
    built per read cost a third of the query process's CPU while a script polled the status page."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _MetricsHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
    kafka = KafkaSettings(kafka_bootstrap_servers=f"127.0.0.1:{infra.config.broker_port}", topic_prefix="sslctx")
    store = ServerVectorStore(client=QdrantClient(":memory:"))
    store.ensure_collection(COLLECTION, 384)
    contexts = []
    real = ssl.create_default_context
    monkeypatch.setattr(ssl, "create_default_context", lambda *a, **kw: contexts.append(1) or real(*a, **kw))
    status = PipelineStatus(kafka=kafka, store=store, collection=ActiveCollection(store, COLLECTION),
                            redis_client=redis_client, embedding_model="m",
                            metrics_urls={name: url for name in ("cdc", "viability", "embedder")}, refresh_s=0.0)
    try:
        for _ in range(3):
            status.snapshot(indexer_running=False)
        assert _MetricsHandler.reads >= 9, "every refresh read every service's metrics"
        assert len(contexts) <= 1
    finally:
        status.close()
        server.shutdown()


class _MetricsHandler(BaseHTTPRequestHandler):
    reads = 0

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        type(self).reads += 1
        body = b"pipeline_dlq_messages_total{service=\"cdc\",topic=\"t\"} 0\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass
