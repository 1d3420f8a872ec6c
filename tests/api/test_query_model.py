"""A query is embedded by the model of the index version it searches, and the live model is the one
EMBEDDING_MODEL_VARIANT names: the real query app (built from the environment, as in production), real fp32
and int8 models, real Redis and the edge engine."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from services.query.app import QuerySettings, create_app
from shared.auth import ApiKeyStore, Scope
from shared.bootstrap import load_embedder
from shared.config import ModelSettings
from shared.embedding import TextEmbedder, load_text_embedder
from shared.index_registry import IndexRegistry, IndexVersion
from shared.vectorstore import EdgeVectorStore, PointRecord, point_id
from tests.api.conftest import UNLIMITED
from tests.api.corpus import taxonomy_dir
from tests.conftest import MODEL_CACHE_DIR

TEXTS = ("easy vegan dinner recipes for busy weeknights", "leg day workout at the gym with dumbbells",
         "unboxing the new smartphone and first impressions")


@pytest.fixture(scope="module")
def int8_embedder() -> TextEmbedder:
    return load_text_embedder(MODEL_CACHE_DIR, quantize=True)


def _points(vectors: np.ndarray, model_id: str) -> list[PointRecord]:
    return [PointRecord(id=point_id("post", i + 1), vector=vector.tolist(), payload={
        "post_id": i + 1, "account_id": 1, "platform": "x", "title": text, "published_at": 0, "model_id": model_id})
        for i, (text, vector) in enumerate(zip(TEXTS, vectors, strict=True))]


def _app_environment(monkeypatch, tmp_path, prefix: str, infra) -> None:
    for name, value in {"REDIS_URL": f"redis://127.0.0.1:{infra.config.redis_port}/0", "VECTOR_STORE": "edge",
                        "QDRANT_EDGE_PATH": str(tmp_path / "qdrant"), "TOPIC_PREFIX": prefix,
                        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{infra.config.broker_port}",
                        "MODEL_CACHE_DIR": str(MODEL_CACHE_DIR),
                        "TAXONOMY_DIR": str(taxonomy_dir(tmp_path / "taxonomies"))}.items():
        monkeypatch.setenv(name, value)


def test_query_is_embedded_by_the_model_of_the_version_searched(tmp_path, monkeypatch, embedder, int8_embedder,
                                                                 redis_client, infra):
    # one text per call, as a query is: int8 activations are quantised per call, so a batch shifts them
    fp32, int8 = (np.stack([model.embed([text])[0] for text in TEXTS]) for model in (embedder, int8_embedder))
    mixed = float(np.min(np.sum(fp32 * int8, axis=1)))
    assert mixed < 0.999, "the two models must differ enough for this test to tell them apart"
    store = EdgeVectorStore(tmp_path / "qdrant")  # written before the app opens the shards (one owner)
    for collection, vectors, model in (("posts", fp32, embedder), ("posts_v2", int8, int8_embedder)):
        store.ensure_collection(collection, 384)
        store.upsert(collection, _points(vectors, model.model_id))
    store.close()
    prefix = f"qm{tmp_path.name[-6:]}"
    registry = IndexRegistry(redis_client, prefix, alias="posts")
    registry.bootstrap("posts", f"{prefix}.embedded", f"{prefix}-indexer")
    # what `ops.replay --stage embed --model int8` registers
    registry.register(IndexVersion(collection="posts_v2", version=2, stage="embed", source_topic=f"{prefix}.v2",
                                   indexer_group=f"{prefix}-v2", model_variant="int8"))
    _app_environment(monkeypatch, tmp_path, prefix, infra)
    key = ApiKeyStore(redis_client).create("ops", [Scope.search, Scope.admin], UNLIMITED).key
    app = create_app(QuerySettings(query_recent_vectors=64))  # TAXONOMY_DIR from the environment above

    with TestClient(app) as client:
        def best(text: str, version: str | None = None) -> tuple[str, float]:
            body = {"query": text, "mode": "semantic", "limit": 1, "facets": []}
            if version:
                body["index_version"] = version
            response = client.post("/v1/search/posts", json=body, headers={"X-API-Key": key})
            assert response.status_code == 200, response.text
            hit = response.json()["results"][0]
            return hit["post"]["title"], hit["score"]

        # each text searched on both versions in turn: a vector cached for one model must not serve the other
        for text in TEXTS:
            assert best(text) == (text, pytest.approx(1.0, abs=1e-4))  # live fp32 version
            assert best(text, "posts_v2") == (text, pytest.approx(1.0, abs=1e-4))  # an operator's comparison
        registry.switch("posts_v2")  # the replay's alias switch
        for text in TEXTS:
            assert best(text) == (text, pytest.approx(1.0, abs=1e-4))
            assert best(text, "posts") == (text, pytest.approx(1.0, abs=1e-4))
        registry.switch(registry.previous())  # rollback
        for text in TEXTS:
            assert best(text) == (text, pytest.approx(1.0, abs=1e-4))


def test_live_model_variant_setting_switches_the_live_model(tmp_path, monkeypatch, embedder, int8_embedder,
                                                             redis_client, infra):
    """EMBEDDING_MODEL_VARIANT=int8: the embedder the services load is int8, the live version is registered
    as made by it on first start, and a query of the live index is embedded by it (an fp32 query vector
    would not score 1.0 against the int8 vectors)."""
    monkeypatch.setenv("EMBEDDING_MODEL_VARIANT", "int8")
    assert load_embedder(ModelSettings()).model_id == int8_embedder.model_id != embedder.model_id
    int8 = np.stack([int8_embedder.embed([text])[0] for text in TEXTS])
    fp32 = np.stack([embedder.embed([text])[0] for text in TEXTS])
    assert float(np.min(np.sum(fp32 * int8, axis=1))) < 0.999, "the two models must differ enough to tell apart"
    store = EdgeVectorStore(tmp_path / "qdrant")
    store.ensure_collection("posts", 384)
    store.upsert("posts", _points(int8, int8_embedder.model_id))
    store.close()
    prefix = f"lv{tmp_path.name[-6:]}"
    _app_environment(monkeypatch, tmp_path, prefix, infra)
    key = ApiKeyStore(redis_client).create("ops", [Scope.search], UNLIMITED).key
    with TestClient(create_app(QuerySettings())) as client:  # registers the live version (none yet)
        for text in TEXTS:
            body = {"query": text, "mode": "semantic", "limit": 1, "facets": []}
            response = client.post("/v1/search/posts", json=body, headers={"X-API-Key": key})
            assert response.status_code == 200, response.text
            hit = response.json()["results"][0]
            assert (hit["post"]["title"], hit["score"]) == (text, pytest.approx(1.0, abs=1e-4))
    assert IndexRegistry(redis_client, prefix, alias="posts").versions()["posts"].model_variant == "int8"
