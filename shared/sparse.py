"""Keyword (sparse) vectors for hybrid search: BM25 term weights over hashed terms.

The tokenizer, English stop words, Snowball stemmer and term hashing are those of Qdrant's own
BM25 model (qdrant_edge.Bm25, Rust, ~20 us per post), so the indexer and the query API encode
text identically whichever vector store adapter they use. Documents carry BM25's saturated term
frequency (k, b, avg_len); queries carry weight 1 per distinct term; the collection's IDF modifier
multiplies in inverse document frequency at query time, which keeps document vectors valid as the
corpus grows. Changing any parameter here changes stored vectors: bump SPARSE_MODEL_ID and replay.
"""

from __future__ import annotations

from importlib.metadata import version

import qdrant_edge as qe

from shared.vectorstore import SparseVector

BM25_K = 1.2
BM25_B = 0.75
# Length (in tokens after stop words) at which a post gets no length penalty or bonus. Titles plus
# descriptions of the demo data run 15-40 tokens; transcripts are far longer and get penalised, as
# BM25 intends, but are capped by MAX_TEXT_CHARS upstream.
BM25_AVG_LEN = 64.0
SPARSE_MODEL_ID = f"bm25-en-k{BM25_K}-b{BM25_B}-avg{BM25_AVG_LEN:g}/qdrant-edge-py-{version('qdrant-edge-py')}"


class SparseEncoder:
    """Thread-safe: the Rust model holds no mutable state between calls."""

    def __init__(self) -> None:
        config = qe.Bm25Config(k=BM25_K, b=BM25_B, avg_len=BM25_AVG_LEN, language="english")
        self._model = qe.Bm25(config)
        self.model_id = SPARSE_MODEL_ID

    def document(self, text: str) -> SparseVector:
        return _to_model(self._model.embed_document(_valid_unicode(text)))

    def query(self, text: str) -> SparseVector:
        return _to_model(self._model.embed_query(_valid_unicode(text)))


def _to_model(vector: qe.SparseVector) -> SparseVector:
    # The engine's own output (indices and values of equal length): not validated again, per document.
    return SparseVector.model_construct(indices=list(vector.indices), values=list(vector.values))


def _valid_unicode(text: str) -> str:
    # Lone surrogates (valid in a JSON string, not in UTF-8) cannot cross into Rust: replace them.
    return text.encode("utf-8", "replace").decode("utf-8")
