"""The server adapter applies the one collection plan to every collection it creates, and only once the
cluster has the expected peers; replicated writes carry a write ordering.

The Qdrant server cannot run here, so the adapter (through qdrant-client 1.20 over real HTTP) talks to a
small HTTP server that speaks the part of Qdrant's REST API it uses and records every request. Upstream
facts this relies on (qdrant/qdrant docs/redoc/master/openapi.json, compared in the session of issue 13):
- `GET /cluster` answers ClusterStatus: `{"status": "disabled"}` or `{"status": "enabled", "peer_id",
  "peers": {<peer id>: {"uri"}}, "raft_info", "consensus_thread_status", "message_send_failures"}`;
- `PUT /collections/{collection_name}` takes CreateCollection, whose fields include `vectors` (VectorParams:
  `size`, `distance`, `on_disk`), `sparse_vectors` (SparseVectorParams: `modifier`, `index.on_disk`),
  `shard_number`, `replication_factor`, `write_consistency_factor`, `on_disk_payload`, `hnsw_config.m` and
  `quantization_config` (`{"scalar": {"type": "int8", "quantile", "always_ram"}}`);
- `PUT /collections/{collection_name}/index` takes CreateFieldIndex (`field_name`, `field_schema`);
- `PUT /collections/{collection_name}/points` and `POST .../points/delete` take the query parameter
  `ordering` (WriteOrdering: `weak` | `medium` | `strong`).
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from shared.events import EMBEDDING_DIM
from shared.vectorstore.base import INDEXED_FIELDS, SPARSE_VECTOR_NAME, PointRecord, point_id
from shared.vectorstore.qdrant_server import CollectionPlan, ServerVectorStore, WaitingForPeers

PRODUCTION_PLAN = CollectionPlan(expected_peers=3, shard_number=6, replication_factor=2,
                                 write_consistency_factor=1, on_disk=True, quantization="int8",
                                 write_ordering="medium")


class FakeQdrant:
    """State and request log of the HTTP server below."""

    def __init__(self) -> None:
        self.peers = 1
        self.collections: dict[str, dict] = {}
        self.indexes: dict[str, dict[str, str]] = {}
        self.requests: list[tuple[str, str, dict, object]] = []  # method, path, query, body

    def created(self, name: str) -> list[dict]:
        return [body for method, path, _, body in self.requests if method == "PUT" and path == f"/collections/{name}"]

    def answer(self, method: str, path: str, body: object) -> tuple[int, object]:
        if method == "GET" and path == "/cluster":
            return 200, {"status": "enabled", "peer_id": 1,
                         "peers": {str(i): {"uri": f"http://qdrant-{i}:6335/"} for i in range(1, self.peers + 1)},
                         "raft_info": {"term": 1, "commit": 1, "pending_operations": 0, "is_voter": True},
                         "consensus_thread_status": {"consensus_thread_status": "working",
                                                     "last_update": "2026-01-01T00:00:00Z"},
                         "message_send_failures": {}}
        match = re.fullmatch(r"/collections/([^/]+)(/.*)?", path)
        if not match:
            return 404, None
        name, rest = match.group(1), match.group(2) or ""
        if rest == "/exists":
            return 200, {"exists": name in self.collections}
        if rest == "" and method == "PUT":
            if name in self.collections:
                return 409, None
            self.collections[name] = body
            self.indexes[name] = {}
            return 200, True
        if rest == "" and method == "GET":
            return (200, self.info(name)) if name in self.collections else (404, None)
        if rest == "/index" and method == "PUT":
            self.indexes[name][body["field_name"]] = body["field_schema"]
            return 200, {"operation_id": 1, "status": "completed"}
        if rest in ("/points", "/points/delete", "/points/batch"):
            return 200, {"operation_id": 2, "status": "completed"} if rest != "/points/batch" else \
                [{"operation_id": 2, "status": "completed"}]
        return 404, None

    def info(self, name: str) -> dict:
        created = self.collections[name]
        return {
            "status": "green", "optimizer_status": "ok", "segments_count": 1, "points_count": 0,
            "payload_schema": {field: {"data_type": kind, "points": 0} for field, kind in self.indexes[name].items()},
            "config": {
                "params": {key: created[key] for key in ("vectors", "sparse_vectors", "shard_number",
                                                          "replication_factor", "write_consistency_factor",
                                                          "on_disk_payload") if key in created},
                "hnsw_config": {"m": 16, "ef_construct": 100, "full_scan_threshold": 10000},
                "optimizer_config": {"deleted_threshold": 0.2, "vacuum_min_vector_number": 1000,
                                     "default_segment_number": 0, "flush_interval_sec": 5},
                "wal_config": {"wal_capacity_mb": 32, "wal_segments_ahead": 0},
                "quantization_config": created.get("quantization_config"),
            },
        }


@pytest.fixture
def qdrant():
    state = FakeQdrant()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            url = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            state.requests.append((self.command, url.path, parse_qs(url.query), body))
            status, result = state.answer(self.command, url.path, body)
            payload = json.dumps({"result": result, "status": "ok", "time": 0.0} if status == 200 else
                                 {"status": {"error": f"HTTP {status}"}, "time": 0.0}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_PUT = do_POST = do_DELETE = _serve

        def log_message(self, *args) -> None:  # keep the test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


def test_replay_collections_get_the_plan_once_every_peer_has_joined(qdrant):
    store = ServerVectorStore(qdrant.url, plan=PRODUCTION_PLAN)
    # A replay's version collections (ops/replay.py names them <alias>_v<N>) are created by the indexer
    # (posts_vN) and the summarizer (accounts_vN) through ensure_collection, like the live ones.
    for name in ("posts_v2", "accounts_v2"):
        qdrant.peers = 1
        with pytest.raises(WaitingForPeers):
            store.ensure_collection(name, EMBEDDING_DIM)
        assert qdrant.created(name) == [], "created before the expected peers joined"
        qdrant.peers = 3
        store.ensure_collection(name, EMBEDDING_DIM)
        (body,) = qdrant.created(name)
        assert body["vectors"] == {"size": EMBEDDING_DIM, "distance": "Cosine", "on_disk": True}
        assert body["sparse_vectors"][SPARSE_VECTOR_NAME] == {"modifier": "idf", "index": {"on_disk": True}}
        assert (body["shard_number"], body["replication_factor"], body["write_consistency_factor"]) == (6, 2, 1)
        assert body["on_disk_payload"] is True and body["hnsw_config"]["m"] == 16
        assert body["quantization_config"] == {"scalar": {"type": "int8", "quantile": 0.99, "always_ram": True}}
        assert qdrant.indexes[name] == INDEXED_FIELDS, "payload indexes are part of the plan"
    store.close()


def test_replicated_writes_carry_the_write_ordering(qdrant):
    qdrant.peers = 3
    store = ServerVectorStore(qdrant.url, plan=PRODUCTION_PLAN)
    store.ensure_collection("posts_v3", EMBEDDING_DIM)
    store.upsert("posts_v3", [PointRecord(id=point_id("post", 1), vector=[0.1] * EMBEDDING_DIM, payload={"account_id": "a"})])
    store.delete("posts_v3", [point_id("post", 1)])
    writes = [(path, query) for method, path, query, _ in qdrant.requests
              if path.startswith("/collections/posts_v3/points")]
    assert [path for path, _ in writes] == ["/collections/posts_v3/points", "/collections/posts_v3/points/delete"]
    assert all(query.get("ordering") == ["medium"] for _, query in writes), writes
    store.close()


def test_one_node_plan_from_default_settings(qdrant, monkeypatch):
    """With no settings (one node, Qdrant's cluster mode disabled) creation goes ahead and writes carry
    no ordering (a single copy needs none)."""
    for variable in ("QDRANT_EXPECTED_PEERS", "QDRANT_SHARD_NUMBER", "QDRANT_REPLICATION_FACTOR"):
        monkeypatch.delenv(variable, raising=False)
    qdrant.peers = 1
    store = ServerVectorStore(qdrant.url)
    store.ensure_collection("posts", EMBEDDING_DIM)
    (body,) = qdrant.created("posts")
    assert (body["shard_number"], body["replication_factor"]) == (1, 1) and "quantization_config" not in body
    store.upsert("posts", [PointRecord(id=point_id("post", 1), vector=[0.1] * EMBEDDING_DIM, payload={})])
    assert all("ordering" not in query for _, path, query, _ in qdrant.requests if path.endswith("/points"))
    store.close()


def test_plan_rejects_more_replicas_than_nodes():
    with pytest.raises(ValueError, match="REPLICATION_FACTOR"):
        CollectionPlan(expected_peers=1, replication_factor=2)
    with pytest.raises(ValueError, match="WRITE_CONSISTENCY"):
        CollectionPlan(expected_peers=3, replication_factor=2, write_consistency_factor=3)
