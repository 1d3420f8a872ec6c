"""Contract tests for the VectorStore adapters: the same suite runs against both backends.

edge:   EdgeVectorStore in a temporary directory (under /dev/shm when available: much faster flushes).
server: ServerVectorStore over qdrant-client's in-memory local mode (same API, no server process).
Expected results are computed independently with numpy over the generated points.
"""

from __future__ import annotations

import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient

from shared.vectorstore import (
    EdgeVectorStore,
    PointRecord,
    SearchFilter,
    ServerVectorStore,
    StoreUnavailable,
    VectorStore,
    open_vector_store,
    point_id,
)

DIM = 384
N_POINTS = 300
COLLECTION = "posts"
PLATFORMS = ("instagram", "tiktok", "youtube")
T0 = 1_700_000_000_000  # epoch ms
HOUR_MS = 3_600_000

# Local mode warns that it ignores payload indexes; filtering still works there.
pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")


def _payload(i: int) -> dict[str, Any]:
    return {
        "post_id": i,
        "account_id": i % 10,
        "platform": PLATFORMS[i % 3],
        "published_at": T0 + i * HOUR_MS,
        "views": (i * 37) % 1000,
        "likes": (i * 11) % 120,
    }


def _unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


class Corpus:
    def __init__(self) -> None:
        self.vectors = _unit_vectors(np.random.default_rng(20240601), N_POINTS)
        self.payloads = [_payload(i) for i in range(N_POINTS)]
        self.ids = [point_id("post", i) for i in range(N_POINTS)]

    def records(self) -> list[PointRecord]:
        # Half the vectors as numpy rows, half as lists: both are accepted.
        return [
            PointRecord(id=pid, vector=vec if i % 2 else vec.tolist(), payload=payload)
            for i, (pid, vec, payload) in enumerate(zip(self.ids, self.vectors, self.payloads, strict=True))
        ]

    def expected_ranking(self, query: np.ndarray, keep: Callable[[dict[str, Any]], bool] = lambda _: True) -> list[str]:
        scores = self.vectors @ (query / np.linalg.norm(query))
        order = np.argsort(-scores, kind="stable")
        return [self.ids[i] for i in order if keep(self.payloads[i])]

    def matching_ids(self, keep: Callable[[dict[str, Any]], bool]) -> set[str]:
        return {pid for pid, payload in zip(self.ids, self.payloads, strict=True) if keep(payload)}


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return Corpus()


@pytest.fixture
def fast_dir(tmp_path: Path) -> Iterator[Path]:
    shm = Path("/dev/shm")
    if not shm.is_dir():
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(dir=shm, prefix="vectorstore-test-") as path:
        yield Path(path)


def _make_store(kind: str, root: Path) -> VectorStore:
    if kind == "edge":
        return EdgeVectorStore(root)
    return ServerVectorStore(client=QdrantClient(":memory:"))


@pytest.fixture(params=["edge", "server"])
def empty_store(request: pytest.FixtureRequest, fast_dir: Path) -> Iterator[VectorStore]:
    store = _make_store(request.param, fast_dir)
    store.ensure_collection(COLLECTION, DIM)
    yield store
    store.close()


@pytest.fixture
def store(empty_store: VectorStore, corpus: Corpus) -> VectorStore:
    records = corpus.records()
    for start in range(0, len(records), 128):  # several batches, as the indexer sends them
        empty_store.upsert(COLLECTION, records[start : start + 128])
    return empty_store


def _ids(points: list[Any]) -> list[str]:
    return [p.id for p in points]


# --- basic reads -----------------------------------------------------------------------------


def test_store_satisfies_protocol(store: VectorStore) -> None:
    assert isinstance(store, VectorStore)


def test_count_and_scroll_ids_see_every_point(store: VectorStore, corpus: Corpus) -> None:
    assert store.count(COLLECTION) == N_POINTS
    scrolled = list(store.scroll_ids(COLLECTION))
    assert len(scrolled) == N_POINTS
    assert set(scrolled) == set(corpus.ids)


def test_retrieve_returns_payloads_in_request_order_and_skips_missing(store: VectorStore, corpus: Corpus) -> None:
    missing = point_id("post", 10_000)
    wanted = [corpus.ids[7], missing, corpus.ids[3], corpus.ids[250].upper()]
    got = store.retrieve(COLLECTION, wanted)
    assert _ids(got) == [corpus.ids[7], corpus.ids[3], corpus.ids[250]]
    assert [p.payload for p in got] == [corpus.payloads[7], corpus.payloads[3], corpus.payloads[250]]
    assert all(p.score == 0 for p in got)


def test_search_ranks_by_cosine_similarity(store: VectorStore, corpus: Corpus) -> None:
    query = corpus.vectors[42] + 0.05 * _unit_vectors(np.random.default_rng(1), 1)[0]
    hits = store.search(COLLECTION, query, limit=10)
    assert _ids(hits) == corpus.expected_ranking(query)[:10]
    assert hits[0].id == corpus.ids[42]
    assert hits[0].payload == corpus.payloads[42]
    expected_top = float(corpus.vectors[42] @ (query / np.linalg.norm(query)))
    assert hits[0].score == pytest.approx(expected_top, abs=1e-4)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_search_accepts_list_vectors_and_pages_with_offset(store: VectorStore, corpus: Corpus) -> None:
    query = corpus.vectors[5].tolist()
    first_page = store.search(COLLECTION, query, limit=5)
    second_page = store.search(COLLECTION, query, limit=5, offset=5)
    assert _ids(first_page) + _ids(second_page) == corpus.expected_ranking(np.asarray(query))[:10]


# --- filters -----------------------------------------------------------------------------------

BOUNDARY = T0 + 120 * HOUR_MS  # exactly the published_at of point 120

FILTER_CASES: dict[str, tuple[SearchFilter, Callable[[dict[str, Any]], bool]]] = {
    "platform": (SearchFilter(platform=["tiktok"]), lambda p: p["platform"] == "tiktok"),
    "platforms": (SearchFilter(platform=["tiktok", "youtube"]), lambda p: p["platform"] != "instagram"),
    "account_id": (SearchFilter(account_id=[3, 7]), lambda p: p["account_id"] in (3, 7)),
    "published_after_is_inclusive": (SearchFilter(published_after=BOUNDARY), lambda p: p["published_at"] >= BOUNDARY),
    "published_before_is_exclusive": (SearchFilter(published_before=BOUNDARY), lambda p: p["published_at"] < BOUNDARY),
    "min_views": (SearchFilter(min_views=900), lambda p: p["views"] >= 900),
    "min_likes": (SearchFilter(min_likes=100), lambda p: p["likes"] >= 100),
    "combined": (
        SearchFilter(
            platform=["instagram", "youtube"],
            account_id=[0, 1, 2, 4, 5],
            published_after=T0 + 50 * HOUR_MS,
            published_before=T0 + 280 * HOUR_MS,
            min_views=200,
            min_likes=20,
        ),
        lambda p: p["platform"] in ("instagram", "youtube")
        and p["account_id"] in (0, 1, 2, 4, 5)
        and T0 + 50 * HOUR_MS <= p["published_at"] < T0 + 280 * HOUR_MS
        and p["views"] >= 200
        and p["likes"] >= 20,
    ),
    "matches_nothing": (SearchFilter(account_id=[99]), lambda p: False),
}


@pytest.mark.parametrize("case", FILTER_CASES, ids=list(FILTER_CASES))
def test_filter_restricts_count_scroll_and_search(store: VectorStore, corpus: Corpus, case: str) -> None:
    flt, keep = FILTER_CASES[case]
    expected = corpus.matching_ids(keep)
    assert len(expected) < N_POINTS  # otherwise the case proves nothing
    assert store.count(COLLECTION, flt) == len(expected)
    assert set(store.scroll_ids(COLLECTION, flt)) == expected
    query = corpus.vectors[0]
    hits = store.search(COLLECTION, query, limit=15, flt=flt)
    assert _ids(hits) == corpus.expected_ranking(query, keep)[:15]
    assert all(keep(h.payload) for h in hits)


def test_combined_filter_is_not_trivial(corpus: Corpus) -> None:
    _, keep = FILTER_CASES["combined"]
    assert 5 <= len(corpus.matching_ids(keep)) <= 60


def test_filter_rejects_empty_lists_and_unknown_fields() -> None:
    with pytest.raises(ValueError):
        SearchFilter(platform=[])
    with pytest.raises(ValueError):
        SearchFilter(views=10)  # type: ignore[call-arg]


# --- writes ------------------------------------------------------------------------------------


def test_delete_removes_points(store: VectorStore, corpus: Corpus) -> None:
    gone = [corpus.ids[42], corpus.ids[43]]
    store.delete(COLLECTION, gone)
    assert store.count(COLLECTION) == N_POINTS - 2
    assert store.retrieve(COLLECTION, gone) == []
    assert not set(gone) & set(store.scroll_ids(COLLECTION))
    hits = store.search(COLLECTION, corpus.vectors[42], limit=5)
    assert corpus.ids[42] not in _ids(hits)
    assert _ids(hits) == [i for i in corpus.expected_ranking(corpus.vectors[42]) if i not in gone][:5]


def test_delete_where_account_removes_exactly_that_account(store: VectorStore, corpus: Corpus) -> None:
    store.delete_where(COLLECTION, SearchFilter(account_id=[3]))
    remaining = corpus.matching_ids(lambda p: p["account_id"] != 3)
    assert store.count(COLLECTION) == len(remaining) == N_POINTS - N_POINTS // 10
    assert set(store.scroll_ids(COLLECTION)) == remaining
    assert store.count(COLLECTION, SearchFilter(account_id=[3])) == 0


def test_delete_where_refuses_an_unconstrained_filter(store: VectorStore) -> None:
    with pytest.raises(ValueError):
        store.delete_where(COLLECTION, SearchFilter())
    assert store.count(COLLECTION) == N_POINTS


def test_reupsert_same_id_replaces_vector_and_payload(store: VectorStore, corpus: Corpus) -> None:
    target = corpus.ids[10]
    new_vector = _unit_vectors(np.random.default_rng(99), 1)[0]
    new_payload = {"account_id": 777, "platform": "x", "published_at": T0, "views": 5, "likes": 1}
    store.upsert(COLLECTION, [PointRecord(id=target, vector=new_vector, payload=new_payload)])
    assert store.count(COLLECTION) == N_POINTS
    [got] = store.retrieve(COLLECTION, [target])
    assert got.payload == new_payload  # replaced, not merged: "post_id" is gone
    assert store.search(COLLECTION, new_vector, limit=1)[0].id == target
    assert store.count(COLLECTION, SearchFilter(account_id=[777])) == 1
    assert store.count(COLLECTION, SearchFilter(account_id=[0])) == N_POINTS // 10 - 1


def test_set_payloads_overwrites_only_the_given_keys_and_is_filterable(store: VectorStore, corpus: Corpus) -> None:
    first, second = corpus.ids[3], corpus.ids[4]
    [before] = store.retrieve(COLLECTION, [first])
    store.set_payloads(COLLECTION, {first: {"platform": "patched", "labels": ["a"]},
                                    second: {"labels": ["b", "c"]}})
    [got_first, got_second] = store.retrieve(COLLECTION, [first, second])
    assert got_first.payload == {**before.payload, "platform": "patched", "labels": ["a"]}
    assert got_second.payload["labels"] == ["b", "c"]
    assert store.count(COLLECTION, SearchFilter(platform=["patched"])) == 1
    assert store.count(COLLECTION) == N_POINTS  # patches never create points


def test_upsert_rejects_wrong_dimension(empty_store: VectorStore) -> None:
    with pytest.raises(Exception):
        empty_store.upsert(COLLECTION, [PointRecord(id=point_id("post", 1), vector=[0.1] * (DIM - 1), payload={})])
    assert empty_store.count(COLLECTION) == 0


def test_empty_collection(empty_store: VectorStore, corpus: Corpus) -> None:
    assert empty_store.search(COLLECTION, corpus.vectors[0], limit=10) == []
    assert empty_store.search(COLLECTION, corpus.vectors[0], limit=10, flt=SearchFilter(min_views=1)) == []
    assert empty_store.count(COLLECTION) == 0
    assert list(empty_store.scroll_ids(COLLECTION)) == []
    assert empty_store.retrieve(COLLECTION, [corpus.ids[0]]) == []
    empty_store.upsert(COLLECTION, [])
    empty_store.delete(COLLECTION, [])


def test_ensure_collection_is_idempotent_and_checks_dimension(store: VectorStore, corpus: Corpus) -> None:
    store.ensure_collection(COLLECTION, DIM)
    assert store.count(COLLECTION) == N_POINTS
    assert _ids(store.search(COLLECTION, corpus.vectors[1], limit=1)) == [corpus.ids[1]]
    with pytest.raises(ValueError):
        store.ensure_collection(COLLECTION, DIM * 2)


def test_collections_are_independent(store: VectorStore, corpus: Corpus) -> None:
    store.ensure_collection("other", DIM)
    assert store.count("other") == 0
    store.upsert("other", corpus.records()[:3])
    assert store.count("other") == 3
    assert store.count(COLLECTION) == N_POINTS


# --- ids and factory ---------------------------------------------------------------------------


def test_point_id_is_a_deterministic_uuid() -> None:
    assert point_id("post", 42) == point_id("post", "42") == str(uuid.UUID(point_id("post", 42)))
    assert point_id("post", 42) != point_id("post", 43)
    assert point_id("post", 42) != point_id("account", 42)


def test_point_record_requires_a_uuid() -> None:
    with pytest.raises(ValueError):
        PointRecord(id="post-42", vector=[0.0] * DIM, payload={})


def test_open_vector_store(fast_dir: Path) -> None:
    edge = open_vector_store("edge", edge_path=str(fast_dir), url=None, api_key=None)
    assert isinstance(edge, EdgeVectorStore)
    edge.close()
    server = open_vector_store("server", edge_path="", url="http://127.0.0.1:1", api_key=None)
    assert isinstance(server, ServerVectorStore)
    server.close()
    with pytest.raises(ValueError):
        open_vector_store("server", edge_path="", url=None, api_key=None)
    with pytest.raises(ValueError):
        open_vector_store("faiss", edge_path="", url=None, api_key=None)


# --- backend specifics -------------------------------------------------------------------------


def test_server_connection_failure_raises_store_unavailable() -> None:
    store = ServerVectorStore("http://127.0.0.1:1", timeout=2)  # nothing listens on port 1
    with pytest.raises(StoreUnavailable):
        store.count(COLLECTION)
    with pytest.raises(StoreUnavailable):
        store.ensure_collection(COLLECTION, DIM)
    store.close()


def _loaded_edge_store(root: Path, corpus: Corpus) -> EdgeVectorStore:
    store = EdgeVectorStore(root)
    store.ensure_collection(COLLECTION, DIM)
    store.upsert(COLLECTION, corpus.records())
    return store


def test_edge_reopen_from_disk_keeps_points_and_indexes(fast_dir: Path, corpus: Corpus) -> None:
    _loaded_edge_store(fast_dir, corpus).close()
    reopened = EdgeVectorStore(fast_dir)
    reopened.ensure_collection(COLLECTION, DIM)
    assert reopened.count(COLLECTION) == N_POINTS
    assert reopened.retrieve(COLLECTION, [corpus.ids[9]])[0].payload == corpus.payloads[9]
    flt, keep = FILTER_CASES["combined"]
    assert _ids(reopened.search(COLLECTION, corpus.vectors[0], limit=10, flt=flt)) == corpus.expected_ranking(
        corpus.vectors[0], keep
    )[:10]
    reopened.close()
    with pytest.raises(ValueError):  # the dimension is checked against the stored segments
        EdgeVectorStore(fast_dir).ensure_collection(COLLECTION, 128)


def test_edge_shard_has_a_single_owner(fast_dir: Path, corpus: Corpus) -> None:
    owner = _loaded_edge_store(fast_dir, corpus)
    with pytest.raises(StoreUnavailable):
        EdgeVectorStore(fast_dir).ensure_collection(COLLECTION, DIM)
    owner.close()
    successor = EdgeVectorStore(fast_dir)
    successor.ensure_collection(COLLECTION, DIM)
    assert successor.count(COLLECTION) == N_POINTS
    successor.close()


def test_edge_optimize_keeps_results(fast_dir: Path, corpus: Corpus) -> None:
    store = _loaded_edge_store(fast_dir, corpus)
    store.optimize(COLLECTION)
    assert store.count(COLLECTION) == N_POINTS
    flt, keep = FILTER_CASES["account_id"]
    assert _ids(store.search(COLLECTION, corpus.vectors[0], limit=10, flt=flt)) == corpus.expected_ranking(
        corpus.vectors[0], keep
    )[:10]
    store.close()


def test_edge_closed_store_is_unavailable(fast_dir: Path, corpus: Corpus) -> None:
    store = _loaded_edge_store(fast_dir, corpus)
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreUnavailable):
        store.search(COLLECTION, corpus.vectors[0], limit=1)
    with pytest.raises(StoreUnavailable):
        store.ensure_collection(COLLECTION, DIM)


def test_edge_unknown_collection_is_an_error(fast_dir: Path) -> None:
    store = EdgeVectorStore(fast_dir)
    with pytest.raises(ValueError):
        store.count("never_created")
    with pytest.raises(ValueError):
        store.ensure_collection("../escape", DIM)
    store.close()


def test_edge_concurrent_searches_during_writes(fast_dir: Path, corpus: Corpus) -> None:
    store = _loaded_edge_store(fast_dir, corpus)
    extra = _unit_vectors(np.random.default_rng(7), 600)
    errors: list[BaseException] = []
    done = threading.Event()

    def search_until_done() -> None:
        try:
            while not done.is_set():
                hits = store.search(COLLECTION, corpus.vectors[0], limit=5, flt=SearchFilter(account_id=[0]))
                assert _ids(hits) == corpus.expected_ranking(corpus.vectors[0], lambda p: p["account_id"] == 0)[:5]
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)

    def write(offset: int) -> None:
        try:
            for start in range(offset, len(extra), 100):
                batch = [
                    PointRecord(id=point_id("extra", i), vector=extra[i], payload={"account_id": 1000})
                    for i in range(start, start + 50)
                ]
                store.upsert(COLLECTION, batch)
        except BaseException as exc:
            errors.append(exc)

    readers = [threading.Thread(target=search_until_done) for _ in range(4)]
    writers = [threading.Thread(target=write, args=(offset,)) for offset in (0, 50)]
    for thread in readers + writers:
        thread.start()
    for thread in writers:
        thread.join()
    done.set()
    for thread in readers:
        thread.join()
    assert errors == []
    assert store.count(COLLECTION) == N_POINTS + len(extra)
    store.close()
