"""Fixtures of the API tests: a real index of ~120 demo posts (real model vectors, edge engine),
real Redis (the session's private one), the real app in-process and, for the browser and the
OpenAPI fuzzer, the same app served by uvicorn on a free port."""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.query.app import QuerySettings, create_app
from services.query.context import QueryContext
from shared.auth import DataScope, RateLimit, Scope
from shared.config import KafkaSettings
from shared.embedding import TextEmbedder, load_text_embedder
from shared.vectorstore import EdgeVectorStore
from tests.api.corpus import Corpus, build_context, index_corpus, taxonomy_dir, tiny_corpus
from tests.conftest import MODEL_CACHE_DIR

UNLIMITED = RateLimit(requests=1_000_000, per_seconds=60)
STATUS_PREFIX = "apitest"


@pytest.fixture(scope="session")
def embedder() -> TextEmbedder:
    return load_text_embedder(MODEL_CACHE_DIR)


@pytest.fixture(scope="session")
def corpus() -> Corpus:
    return tiny_corpus()


@pytest.fixture(scope="session")
def scratch() -> Iterator[Path]:
    root = Path("/dev/shm") if Path("/dev/shm").is_dir() else None  # fast flushes
    with tempfile.TemporaryDirectory(dir=root, prefix="api-tests-") as path:
        yield Path(path)


@pytest.fixture(scope="session")
def redis_client(infra) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=infra.config.redis_port)


@pytest.fixture(scope="session")
def kafka_settings(infra) -> KafkaSettings:
    return KafkaSettings(kafka_bootstrap_servers=f"127.0.0.1:{infra.config.broker_port}", topic_prefix=STATUS_PREFIX)


@pytest.fixture(scope="session")
def context(corpus, embedder, redis_client, kafka_settings, scratch) -> Iterator[QueryContext]:
    store = EdgeVectorStore(scratch / "qdrant")
    index_corpus(corpus, embedder, store)
    ctx = build_context(store=store, embedder=embedder, redis_client=redis_client,
                        taxonomies=taxonomy_dir(scratch / "taxonomies"), kafka=kafka_settings)
    yield ctx
    ctx.status.close()
    store.close()


@pytest.fixture(scope="session")
def app(context) -> FastAPI:
    return create_app(QuerySettings(), context=context)


@pytest.fixture(scope="session")
def client(app) -> TestClient:
    return TestClient(app, raise_server_exceptions=False)


class Keys:
    """One key per kind of client the tests need."""

    def __init__(self, context: QueryContext, corpus: Corpus) -> None:
        create = context.keys.create
        accounts = sorted(corpus.accounts)
        # acme sees a third of the accounts; globex sees YouTube only.
        self.acme_accounts = set(accounts[::3])
        self.internal = create("internal", list(Scope), UNLIMITED).key
        self.acme = create("acme", [Scope.search, Scope.feedback], UNLIMITED,
                           DataScope(account_ids=sorted(self.acme_accounts))).key
        self.globex = create("globex", [Scope.search], UNLIMITED, DataScope(platforms=["youtube"])).key
        self.search_only = create("reader", [Scope.search], UNLIMITED).key

    @staticmethod
    def headers(key: str) -> dict[str, str]:
        return {"X-API-Key": key}


@pytest.fixture(scope="session")
def keys(context, corpus) -> Keys:
    return Keys(context, corpus)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def live_url(app) -> Iterator[str]:
    """The app served over HTTP by uvicorn in a thread, as in production."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
