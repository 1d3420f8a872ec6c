"""The ONNX embedder must reproduce sentence-transformers' all-MiniLM-L6-v2 vectors.

The reference vectors were computed once with sentence-transformers + torch in a throwaway venv
from the same model folder (tests/fixtures/minilm_reference.json), so this test needs no torch.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from shared.embedding import TextEmbedder, length_batches, load_text_embedder

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "minilm_reference.json"


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx_cache")


@pytest.fixture(scope="session")
def embedder(cache_dir: Path) -> TextEmbedder:
    return load_text_embedder(cache_dir)


@pytest.fixture(scope="session")
def reference() -> dict:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_matches_sentence_transformers_reference(embedder: TextEmbedder, reference: dict) -> None:
    vectors = embedder.embed(reference["texts"])
    expected = np.asarray(reference["vectors"], dtype=np.float32)
    cosines = _cosine(vectors, expected)
    worst = int(np.argmin(cosines))
    assert cosines.min() >= 0.9999, f"text {reference['texts'][worst]!r}: cosine {cosines[worst]}"


def test_shape_dtype_and_unit_norm(embedder: TextEmbedder, reference: dict) -> None:
    vectors = embedder.embed(reference["texts"])
    assert embedder.dim == 384
    assert vectors.shape == (len(reference["texts"]), embedder.dim)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_empty_input(embedder: TextEmbedder) -> None:
    vectors = embedder.embed([])
    assert vectors.shape == (0, embedder.dim) and vectors.dtype == np.float32


def test_order_preserved_and_batching_invisible(cache_dir: Path, reference: dict) -> None:
    """Length sorting and batch padding must not leak into results: with a batch size that
    splits the input, each row equals that text embedded alone, in the caller's order."""
    small_batches = load_text_embedder(cache_dir, batch_size=3)
    texts = list(reference["texts"]) + ["short", "a somewhat longer text about replication lag"]
    batched = small_batches.embed(texts)
    one_at_a_time = np.vstack([small_batches.embed([t]) for t in texts])
    np.testing.assert_allclose(batched, one_at_a_time, atol=1e-5)
    np.testing.assert_allclose(small_batches.embed(texts[::-1]), batched[::-1], atol=1e-5)


def test_cache_is_reused_and_clean(cache_dir: Path, embedder: TextEmbedder) -> None:
    """A second load reuses the built graph as is, and no temp files are left behind."""
    before = {p: p.stat().st_mtime_ns for p in cache_dir.iterdir()}
    load_text_embedder(cache_dir)
    assert {p: p.stat().st_mtime_ns for p in cache_dir.iterdir()} == before
    assert before and all(p.suffix == ".onnx" for p in before)


def test_similar_sentences_score_higher(embedder: TextEmbedder) -> None:
    anchor, close, unrelated = embedder.embed([
        "The customer updated the delivery address on their order.",
        "A buyer changed where the package should be shipped.",
        "Photosynthesis converts sunlight into chemical energy in plants.",
    ])
    assert anchor @ close > anchor @ unrelated + 0.3


def test_model_id_is_stable(embedder: TextEmbedder) -> None:
    assert embedder.model_id == "sentence-transformers/all-MiniLM-L6-v2:onnx-fp32:v1"


def test_int8_is_close_but_distinct(cache_dir: Path, embedder: TextEmbedder,
                                    reference: dict) -> None:
    """int8 is opt-in: its vectors differ slightly, so it must never share fp32's model_id."""
    int8 = load_text_embedder(cache_dir, quantize=True)
    assert int8.model_id != embedder.model_id
    cosines = (int8.embed(reference["texts"]) * embedder.embed(reference["texts"])).sum(axis=1)
    assert cosines.min() >= 0.95


def test_batches_group_texts_of_similar_length() -> None:
    lengths = [5, 100, 6, 110, 7, 5, 5]
    assert length_batches(lengths, max_batch=32) == [[0, 5, 6, 2], [4], [1, 3]]
    assert length_batches(lengths, max_batch=2) == [[0, 5], [6, 2], [4], [1, 3]]
    assert length_batches([], max_batch=4) == []


def test_a_mix_of_short_and_long_texts_embeds_as_each_text_alone(embedder: TextEmbedder) -> None:
    texts = ["hi", "a long text about baking sourdough bread at home " * 20, "ok", "gym day " * 40, "tea"]
    together = embedder.embed(texts)
    alone = np.vstack([embedder.embed([t]) for t in texts])
    assert np.abs(together - alone).max() < 1e-5
