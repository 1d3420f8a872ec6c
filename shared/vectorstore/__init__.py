"""Vector store layer: one small interface (VectorStore), an in-process and a server adapter."""

from __future__ import annotations

import os
from pathlib import Path

from shared.vectorstore.base import (
    SPARSE_VECTOR_NAME,
    FacetCount,
    PointRecord,
    ScoredPoint,
    SearchFilter,
    SparseVector,
    StoreUnavailable,
    VectorStore,
    VerticalCondition,
    point_id,
)
from shared.vectorstore.qdrant_edge import EdgeVectorStore
from shared.vectorstore.qdrant_server import ServerVectorStore

__all__ = [
    "SPARSE_VECTOR_NAME",
    "EdgeVectorStore",
    "FacetCount",
    "PointRecord",
    "ScoredPoint",
    "SearchFilter",
    "ServerVectorStore",
    "SparseVector",
    "StoreUnavailable",
    "VectorStore",
    "VerticalCondition",
    "open_vector_store",
    "point_id",
]


def open_vector_store(
    kind: str, *, edge_path: str | os.PathLike[str], url: str | None, api_key: str | None
) -> VectorStore:
    """kind is "edge" (in-process shards under edge_path) or "server" (Qdrant at url)."""
    if kind == "edge":
        return EdgeVectorStore(Path(edge_path))
    if kind == "server":
        if url is None:
            raise ValueError("vector store kind 'server' needs a url")
        return ServerVectorStore(url, api_key=api_key)
    raise ValueError(f"unknown vector store kind {kind!r}: expected 'edge' or 'server'")
