"""Search over posts: embed the query (cached), search the vector store with filters pushed down."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from services.query.models import PostFilters, PostHit, PostSearchRequest, PostSearchResponse, StageTimings
from shared.cache import EmbeddingCache
from shared.embedding import TextEmbedder
from shared.events import content_hash
from shared.metrics import STAGE_SECONDS
from shared.vectorstore import SearchFilter, VectorStore


def epoch_ms(moment: datetime | None) -> int | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def to_store_filter(filters: PostFilters) -> SearchFilter:
    return SearchFilter(
        platform=filters.platform, account_id=filters.account_id,
        published_after=epoch_ms(filters.published_after), published_before=epoch_ms(filters.published_before),
        min_views=filters.min_views, min_likes=filters.min_likes,
    )


class PostSearch:
    def __init__(self, embedder: TextEmbedder, cache: EmbeddingCache, store: VectorStore, collection: str) -> None:
        self.embedder = embedder
        self.cache = cache
        self.store = store
        self.collection = collection

    def query_vector(self, text: str):
        text_hash = content_hash(text)
        cached = self.cache.get_many([text_hash])[0]
        if cached is not None:
            return cached, True
        vector = self.embedder.embed([text])[0]
        self.cache.put_many([(text_hash, vector)])
        return vector, False

    def search(self, request: PostSearchRequest) -> PostSearchResponse:
        started = time.perf_counter()
        vector, cached = self.query_vector(request.query.strip())
        embedded = time.perf_counter()
        points = self.store.search(self.collection, vector, request.limit, to_store_filter(request.filters))
        searched = time.perf_counter()
        STAGE_SECONDS.labels(stage="query_embed").observe(embedded - started)
        STAGE_SECONDS.labels(stage="query_search").observe(searched - embedded)
        hits = [PostHit(id=p.id, post_id=int(p.payload.get("post_id", 0)), score=p.score, post=p.payload)
                for p in points]
        timings = StageTimings(embed_ms=(embedded - started) * 1000, search_ms=(searched - embedded) * 1000,
                               total_ms=(searched - started) * 1000, embedding_cached=cached)
        return PostSearchResponse(results=hits, timings=timings)
