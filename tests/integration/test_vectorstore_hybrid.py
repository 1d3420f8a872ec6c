"""Contract tests for the hybrid-search additions of the VectorStore adapters (both backends).

Keyword vectors come from the real BM25 encoder (shared.sparse); expected rankings are computed
independently here: BM25 scores as term weight x IDF, RRF as sum of 1 / (k + rank), rank from 0.
"""

from __future__ import annotations

import math
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import qdrant_edge as qe
from qdrant_client import QdrantClient, models

from shared.classification.taxonomy import VerticalLabel, verticals_payload
from shared.sparse import SparseEncoder
from shared.vectorstore import (
    EdgeVectorStore,
    PointRecord,
    SearchFilter,
    ServerVectorStore,
    VectorStore,
    VerticalCondition,
    point_id,
)
from shared.vectorstore.base import RRF_K

DIM = 16
COLLECTION = "hybrid"
pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")

TEXTS = [
    "easy vegan dinner recipes for busy weeknights",
    "vegan chocolate cake without eggs",
    "leg day workout for beginners at the gym",
    "budget travel itinerary for the greek islands",
    "best gaming laptop under 1000 dollars",
    "sourdough bread with a rye starter",
    "marathon training plan and running shoes",
    "travel hacks for cheap flights and hotels",
    "quick vegan breakfast ideas",
    "unboxing the new phone and camera test",
    "kids birthday party ideas on a budget",
    "dinner recipes with chicken and rice",
]
PLATFORMS = ("youtube", "tiktok", "instagram")


def _payload(i: int) -> dict[str, Any]:
    labels = [VerticalLabel(taxonomy="default", vertical=["food", "fitness", "travel"][i % 3], confidence=0.3 + 0.05 * i)]
    if i % 4 == 0:
        labels.append(VerticalLabel(taxonomy="client_b", vertical="lifestyle", confidence=0.9))
    return {"post_id": i, "account_id": i % 4, "platform": PLATFORMS[i % 3], "views": 100 * (i * 7 % 12),
            "likes": i, "published_at": 1_700_000_000_000 + i, "indexed_at_ms": 1_000 + i, "title": TEXTS[i],
            **verticals_payload(labels)}


class Corpus:
    def __init__(self) -> None:
        rng = np.random.default_rng(7)
        vectors = rng.standard_normal((len(TEXTS), DIM)).astype(np.float32)
        self.vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        self.encoder = SparseEncoder()
        self.sparse = [self.encoder.document(t) for t in TEXTS]
        self.ids = [point_id("post", i) for i in range(len(TEXTS))]
        self.payloads = [_payload(i) for i in range(len(TEXTS))]

    def records(self) -> list[PointRecord]:
        return [PointRecord(id=pid, vector=vec, sparse=sp, payload=pl)
                for pid, vec, sp, pl in zip(self.ids, self.vectors, self.sparse, self.payloads, strict=True)]

    def keep(self, flt: SearchFilter) -> list[bool]:
        out = []
        for p in self.payloads:
            ok = all(p[key] in values for key, values in flt.match_conditions())
            out.append(ok)
        return out

    def bm25(self, query: str, keep: list[bool] | None = None) -> dict[str, float]:
        """Engine-independent BM25: sum over query terms of doc weight x idf (idf over the whole collection)."""
        q = set(self.encoder.query(query).indices)
        n = len(TEXTS)
        df = {t: sum(t in s.indices for s in self.sparse) for t in q}
        scores = {}
        for i, sp in enumerate(self.sparse):
            if keep is not None and not keep[i]:
                continue
            weights = dict(zip(sp.indices, sp.values, strict=True))
            score = sum(weights[t] * math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5)) for t in q if t in weights)
            if score > 0:
                scores[self.ids[i]] = score
        return scores

    def dense_ranking(self, query: np.ndarray, keep: list[bool] | None = None) -> list[str]:
        scores = self.vectors @ query
        order = np.argsort(-scores, kind="stable")
        return [self.ids[i] for i in order if keep is None or keep[i]]


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return Corpus()


@pytest.fixture
def fast_dir(tmp_path: Path) -> Iterator[Path]:
    root = Path("/dev/shm") if Path("/dev/shm").is_dir() else tmp_path
    with tempfile.TemporaryDirectory(dir=root, prefix="hybrid-test-") as path:
        yield Path(path)


@pytest.fixture(params=["edge", "server"])
def store(request: pytest.FixtureRequest, fast_dir: Path, corpus: Corpus) -> Iterator[VectorStore]:
    store = EdgeVectorStore(fast_dir) if request.param == "edge" else ServerVectorStore(client=QdrantClient(":memory:"))
    store.ensure_collection(COLLECTION, DIM)
    store.upsert(COLLECTION, corpus.records())
    yield store
    store.close()


def _ids(points) -> list[str]:
    return [p.id for p in points]


def test_sparse_search_scores_are_bm25_with_idf(store: VectorStore, corpus: Corpus) -> None:
    query = "vegan dinner recipes"
    hits = store.sparse_search(COLLECTION, corpus.encoder.query(query), limit=20)
    expected = corpus.bm25(query)
    assert {h.id for h in hits} == set(expected)  # only posts sharing a term, every one of them
    for hit in hits:
        assert hit.score == pytest.approx(expected[hit.id], rel=1e-3)
    assert hits[0].id == corpus.ids[0]  # the post with all three terms
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_sparse_search_of_stop_words_only_finds_nothing(store: VectorStore, corpus: Corpus) -> None:
    assert corpus.encoder.query("the and of").is_empty()
    assert store.sparse_search(COLLECTION, corpus.encoder.query("the and of"), limit=5) == []


def test_hybrid_search_is_reciprocal_rank_fusion_of_both_rankings(store: VectorStore, corpus: Corpus) -> None:
    query_text, dense_query = "vegan recipes", corpus.vectors[6]
    sparse_rank = [i for i, _ in sorted(corpus.bm25(query_text).items(), key=lambda kv: -kv[1])]
    dense_rank = corpus.dense_ranking(dense_query)
    expected: dict[str, float] = {}
    for ranking in (dense_rank[:8], sparse_rank[:8]):
        for rank, pid in enumerate(ranking):  # Qdrant counts ranks from 0: the top scores 1/k
            expected[pid] = expected.get(pid, 0.0) + 1 / (RRF_K + rank)
    hits = store.hybrid_search(COLLECTION, dense_query, corpus.encoder.query(query_text), limit=10, depth=8)
    assert len(hits) == min(10, len(expected)) > 8  # the union of both candidate lists
    for hit in hits:
        assert hit.score == pytest.approx(expected[hit.id], rel=1e-4), hit.payload["title"]
    assert sorted((h.score for h in hits), reverse=True) == pytest.approx(sorted(expected.values(), reverse=True)[:10])
    # in both lists beats either list alone: post 6 (dense top) and the vegan posts lead
    assert {hits[0].id, hits[1].id} & {corpus.ids[6], corpus.ids[0], corpus.ids[1], corpus.ids[8]}


def test_hybrid_pages_agree_with_one_long_page(store: VectorStore, corpus: Corpus) -> None:
    sparse, dense = corpus.encoder.query("travel budget"), corpus.vectors[3]
    whole = store.hybrid_search(COLLECTION, dense, sparse, limit=9, depth=12)
    pages = [store.hybrid_search(COLLECTION, dense, sparse, limit=3, offset=o, depth=12) for o in (0, 3, 6)]
    assert [h.score for page in pages for h in page] == pytest.approx([h.score for h in whole])
    assert len({h.id for page in pages for h in page}) == 9


def test_hybrid_without_keyword_terms_is_the_dense_ranking(store: VectorStore, corpus: Corpus) -> None:
    hits = store.hybrid_search(COLLECTION, corpus.vectors[2], corpus.encoder.query("the"), limit=5, depth=10)
    assert _ids(hits) == corpus.dense_ranking(corpus.vectors[2])[:5]


FILTERS = {
    "platform": SearchFilter(platform=["tiktok"]),
    "tenant_accounts": SearchFilter(tenant_account_id=[0, 1]),
    "tenant_and_request_intersect": SearchFilter(tenant_account_id=[0, 1], account_id=[1, 2]),
    "tenant_platform": SearchFilter(tenant_platform=["youtube"], platform=["youtube", "tiktok"]),
}


@pytest.mark.parametrize("case", FILTERS, ids=list(FILTERS))
def test_every_read_path_applies_request_and_tenant_filters(store: VectorStore, corpus: Corpus, case: str) -> None:
    flt = FILTERS[case]
    keep = corpus.keep(flt)
    allowed = {pid for pid, k in zip(corpus.ids, keep, strict=True) if k}
    assert 0 < len(allowed) < len(TEXTS)
    sparse, dense = corpus.encoder.query("vegan travel workout recipes budget"), corpus.vectors[0]
    assert {h.id for h in store.hybrid_search(COLLECTION, dense, sparse, limit=50, flt=flt, depth=50)} == allowed
    assert {h.id for h in store.sparse_search(COLLECTION, sparse, limit=50, flt=flt)} == set(corpus.bm25(
        "vegan travel workout recipes budget", keep))
    assert set(_ids(store.search(COLLECTION, dense, limit=50, flt=flt))) == allowed
    assert set(_ids(store.scroll_points(COLLECTION, flt, limit=50))) == allowed
    assert sum(f.count for f in store.facet(COLLECTION, "platform", flt)) == len(allowed)
    assert store.count(COLLECTION, flt) == len(allowed)


def test_tenant_filter_cannot_be_widened_by_the_request(store: VectorStore, corpus: Corpus) -> None:
    flt = SearchFilter(tenant_account_id=[0], account_id=[1, 2, 3])
    assert store.count(COLLECTION, flt) == 0
    assert store.search(COLLECTION, corpus.vectors[1], limit=10, flt=flt) == []


def test_vertical_filter_needs_one_label_with_taxonomy_vertical_and_confidence(store: VectorStore, corpus: Corpus) -> None:
    def expected(taxonomy: str, verticals: list[str], min_conf: float) -> set[str]:
        return {pid for pid, p in zip(corpus.ids, corpus.payloads, strict=True)
                if any(v["taxonomy"] == taxonomy and v["vertical"] in verticals and v["confidence"] >= min_conf
                       for v in p["verticals"])}

    cases = [("default", ["food"], 0.0), ("default", ["food", "travel"], 0.5), ("client_b", ["lifestyle"], 0.95),
             ("client_b", ["food"], 0.0)]
    for taxonomy, verticals, min_conf in cases:
        flt = SearchFilter(verticals=VerticalCondition(taxonomy=taxonomy, verticals=verticals, min_confidence=min_conf))
        want = expected(taxonomy, verticals, min_conf)
        assert set(store.scroll_ids(COLLECTION, flt)) == want, (taxonomy, verticals, min_conf)
        assert {h.id for h in store.search(COLLECTION, corpus.vectors[0], limit=50, flt=flt)} == want
    assert expected("default", ["food", "travel"], 0.5) and not expected("client_b", ["lifestyle"], 0.95)


def test_ids_and_exclude_ids(store: VectorStore, corpus: Corpus) -> None:
    only = SearchFilter(ids=[corpus.ids[3], corpus.ids[5].upper()])
    assert sorted(_ids(store.scroll_points(COLLECTION, only))) == sorted([corpus.ids[3], corpus.ids[5]])
    hits = store.search(COLLECTION, corpus.vectors[3], limit=3, flt=SearchFilter(exclude_ids=[corpus.ids[3]]))
    assert corpus.ids[3] not in _ids(hits)
    assert _ids(hits) == [i for i in corpus.dense_ranking(corpus.vectors[3]) if i != corpus.ids[3]][:3]
    assert store.count(COLLECTION, SearchFilter(ids=[corpus.ids[3]], tenant_account_id=[2])) == 0


def test_facet_counts_match_an_independent_count(store: VectorStore, corpus: Corpus) -> None:
    flt = SearchFilter(account_id=[0, 1, 2])
    facets = {f.value: f.count for f in store.facet(COLLECTION, "vertical_labels", flt)}
    expected: dict[str, int] = {}
    for p in corpus.payloads:
        if p["account_id"] in (0, 1, 2):
            for label in p["vertical_labels"]:
                expected[label] = expected.get(label, 0) + 1
    assert facets == expected
    counts = [f.count for f in store.facet(COLLECTION, "platform")]
    assert counts == sorted(counts, reverse=True) and sum(counts) == len(TEXTS)


def test_scroll_points_orders_by_a_numeric_key_and_selects_fields(store: VectorStore, corpus: Corpus) -> None:
    top = store.scroll_points(COLLECTION, SearchFilter(account_id=[1, 2]), limit=3, order_by="views", fields=["views"])
    views = sorted((p["views"] for p in corpus.payloads if p["account_id"] in (1, 2)), reverse=True)[:3]
    assert [p.payload["views"] for p in top] == views
    assert all(set(p.payload) == {"views"} for p in top)
    oldest = store.scroll_points(COLLECTION, limit=2, order_by="indexed_at_ms", descending=False)
    assert [p.payload["post_id"] for p in oldest] == [0, 1]
    recent = store.scroll_points(COLLECTION, SearchFilter(indexed_after=1_000 + 10), limit=50)
    assert sorted(p.payload["post_id"] for p in recent) == [10, 11]


def test_dense_vectors_and_collection_exists(store: VectorStore, corpus: Corpus) -> None:
    got = store.dense_vectors(COLLECTION, [corpus.ids[4], point_id("post", 999)])
    assert list(got) == [corpus.ids[4]]
    np.testing.assert_allclose(got[corpus.ids[4]], corpus.vectors[4], atol=1e-6)
    assert store.collection_exists(COLLECTION)
    assert not store.collection_exists("never_made")


def test_a_point_without_keyword_vector_ranks_semantically_only(store: VectorStore, corpus: Corpus) -> None:
    pid = point_id("post", 500)
    store.upsert(COLLECTION, [PointRecord(id=pid, vector=corpus.vectors[0], payload={"platform": "x", "account_id": 9})])
    assert pid not in _ids(store.sparse_search(COLLECTION, corpus.encoder.query("vegan dinner"), limit=50))
    assert pid in _ids(store.search(COLLECTION, corpus.vectors[0], limit=2))
    assert store.count(COLLECTION, SearchFilter(has_sparse_vector=True)) == len(TEXTS)
    assert _ids(store.scroll_points(COLLECTION, SearchFilter(has_sparse_vector=False))) == [pid]


# --- migration of collections created before hybrid search -----------------------------------------


def _old_edge_shard(root: Path, corpus: Corpus) -> None:
    config = qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=DIM, distance=qe.Distance.Cosine))
    shard = qe.EdgeShard.create(str(root / COLLECTION), config)
    shard.update(qe.UpdateOperation.upsert_points(
        [qe.Point(pid, vec.tolist(), pl) for pid, vec, pl in zip(corpus.ids, corpus.vectors, corpus.payloads, strict=True)]))
    shard.close()


def _old_server_collection(client: QdrantClient, corpus: Corpus) -> None:
    client.create_collection(COLLECTION, vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE))
    client.upsert(COLLECTION, [models.PointStruct(id=pid, vector=vec.tolist(), payload=pl)
                               for pid, vec, pl in zip(corpus.ids, corpus.vectors, corpus.payloads, strict=True)])


@pytest.mark.parametrize("kind", ["edge", "server"])
def test_dense_only_collection_is_migrated_in_place(kind: str, fast_dir: Path, corpus: Corpus) -> None:
    if kind == "edge":
        _old_edge_shard(fast_dir, corpus)
        store: VectorStore = EdgeVectorStore(fast_dir)
    else:
        client = QdrantClient(":memory:")
        _old_server_collection(client, corpus)
        store = ServerVectorStore(client=client)
    store.ensure_collection(COLLECTION, DIM)
    assert store.count(COLLECTION) == len(TEXTS)
    assert store.count(COLLECTION, SearchFilter(has_sparse_vector=True)) == 0  # old points: re-index needed
    assert _ids(store.search(COLLECTION, corpus.vectors[2], limit=3)) == corpus.dense_ranking(corpus.vectors[2])[:3]
    store.upsert(COLLECTION, corpus.records()[:2])  # what a replay does
    hits = store.sparse_search(COLLECTION, corpus.encoder.query("vegan"), limit=5)
    assert _ids(hits) == [corpus.ids[1], corpus.ids[0]] or set(_ids(hits)) == {corpus.ids[0], corpus.ids[1]}
    assert store.count(COLLECTION, SearchFilter(has_sparse_vector=True)) == 2
    store.ensure_collection(COLLECTION, DIM)  # idempotent once migrated
    assert store.count(COLLECTION, SearchFilter(has_sparse_vector=True)) == 2
    store.close()


def test_sparse_vector_rejects_mismatched_lengths() -> None:
    from shared.vectorstore import SparseVector

    with pytest.raises(ValueError):
        SparseVector(indices=[1, 2], values=[0.5])
    assert uuid.UUID(point_id("post", 1))
