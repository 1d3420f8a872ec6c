"""A small real index for API, schemathesis and browser tests: ~120 demo posts ("tiny" scale,
3 per account) embedded by the real model and written by the indexer's own point builder, with
vertical labels added the way the classifier will write them (ground truth of the generator)."""

from __future__ import annotations

import shutil
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import redis

from demo.generator import AccountRow, PostRow, generate
from services.indexer.core import plan_writes
from services.query.accounts import AccountSearch
from services.query.active_collection import ActiveCollection
from services.query.context import QueryContext
from services.query.encoding import QueryEncoder
from services.query.posts import PostSearch
from services.query.status import PipelineStatus
from shared.auth import ApiKeyStore, RateLimiter
from shared.cache import EmbeddingCache
from shared.classification.taxonomy import TaxonomyCatalog, VerticalLabel, verticals_payload
from shared.config import PROJECT_ROOT, KafkaSettings
from shared.embedding import TextEmbedder, load_text_embedder
from shared.events import EMBEDDING_DIM, AccountFields, EmbeddedPostUpsert, PostRecord, PostUpsert, SourcePosition
from shared.sparse import SparseEncoder
from shared.stored_post import payload_fields
from shared.vectorstore import EdgeVectorStore, PointRecord, VectorStore
from tests.conftest import MODEL_CACHE_DIR

ANCHOR = datetime(2025, 6, 1, 12, 0, 0)
POSTS_PER_ACCOUNT = 3
COLLECTION = "posts"
# A second taxonomy with a switched-off vertical: its labels must never show, nor filter.
BRAND_SAFETY_YAML = """\
name: brand_safety
description: Is a post safe next to a brand?
verticals:
  - name: safe
    description: Nothing a brand would object to.
    enabled: true
  - name: offensive
    description: Offensive language; switched off, the classifier got it wrong too often.
    enabled: false
"""


@dataclass
class Corpus:
    accounts: dict[int, AccountRow]
    posts: dict[int, PostRow]

    def posts_of(self, account_ids: set[int]) -> set[int]:
        return {p.id for p in self.posts.values() if p.account_id in account_ids}

    def vertical_of(self, post_id: int) -> str:
        return self.posts[post_id].vertical


def tiny_corpus() -> Corpus:
    accounts, stream = generate("tiny", anchor=ANCHOR)
    taken: dict[int, int] = defaultdict(int)
    posts = {}
    for post in stream:
        if taken[post.account_id] < POSTS_PER_ACCOUNT:
            taken[post.account_id] += 1
            posts[post.id] = post
    return Corpus(accounts={a.id: a for a in accounts}, posts=posts)


def _ms(moment: datetime) -> int:
    return int(moment.replace(tzinfo=timezone.utc).timestamp() * 1000)


def _event(post: PostRow, account: AccountRow, model_id: str, vector) -> EmbeddedPostUpsert:
    record = PostRecord(id=post.id, account_id=post.account_id, platform=post.platform, title=post.title,
                        description=post.description, url=post.url, published_at=_ms(post.published_at),
                        views=post.views, likes=post.likes, comments=post.comments)
    upsert = PostUpsert(post=record, account=AccountFields(handle=account.handle, display_name=account.display_name,
                                                           followers=account.followers),
                        position=SourcePosition(ts_ms=_ms(post.updated_at)))
    return EmbeddedPostUpsert.build(upsert, model_id, vector)


def labels_of(post: PostRow) -> list[VerticalLabel]:
    """Ground-truth vertical at a confidence that varies by post; every 4th post also carries a
    switched-off brand-safety label, every other a low-confidence second vertical."""
    labels = [VerticalLabel(taxonomy="default", vertical=post.vertical, confidence=0.55 + (post.id % 9) * 0.05),
              VerticalLabel(taxonomy="brand_safety", vertical="offensive" if post.id % 4 == 0 else "safe",
                            confidence=0.8)]
    if post.id % 2:
        other = "comedy" if post.vertical != "comedy" else "music"
        labels.append(VerticalLabel(taxonomy="default", vertical=other, confidence=0.3))
    return labels


def index_corpus(corpus: Corpus, embedder: TextEmbedder, store: VectorStore) -> None:
    rows = list(corpus.posts.values())
    vectors = embedder.embed([f"{p.title}\n{p.description or ''}".strip() for p in rows])
    events = [_event(p, corpus.accounts[p.account_id], embedder.model_id, v) for p, v in zip(rows, vectors, strict=True)]
    store.ensure_collection(COLLECTION, EMBEDDING_DIM)
    for step in plan_writes(events):
        points = [PointRecord(id=p.id, vector=p.vector, sparse=p.sparse,
                              payload={**p.payload, **verticals_payload(labels_of(corpus.posts[payload_fields(p.payload)["post_id"]]))})
                  for p in step.upserts.values()]
        store.upsert(COLLECTION, points)


def taxonomy_dir(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(PROJECT_ROOT / "config" / "taxonomies" / "default.yaml", root / "default.yaml")
    (root / "brand_safety.yaml").write_text(BRAND_SAFETY_YAML)
    return root


def build_context(*, store: VectorStore, embedder: TextEmbedder, redis_client: redis.Redis, taxonomies: Path,
                  kafka: KafkaSettings, max_results: int = 500) -> QueryContext:
    def load_model(variant: str) -> tuple[TextEmbedder, EmbeddingCache]:  # as the app does, for int8 versions
        other = load_text_embedder(MODEL_CACHE_DIR, quantize=variant == "int8")
        return other, EmbeddingCache(redis_client, other.model_id, name="query")

    encoder = QueryEncoder(embedder, EmbeddingCache(redis_client, embedder.model_id, name="query"), SparseEncoder(),
                           load_model=load_model)
    catalog = TaxonomyCatalog.load(taxonomies)
    posts = ActiveCollection(store, COLLECTION)
    status = PipelineStatus(kafka=kafka, store=store, collection=posts, redis_client=redis_client,
                            embedding_model=embedder.model_id, metrics_urls={}, refresh_s=0.0)
    return QueryContext(store=store, posts_collection=posts, accounts_collection="accounts", redis=redis_client,
                        keys=ApiKeyStore(redis_client), limiter=RateLimiter(redis_client), catalog=catalog,
                        posts=PostSearch(encoder, catalog, max_results),
                        accounts=AccountSearch(encoder, catalog, candidates=200), status=status,
                        model_id=embedder.model_id)


def edge_store(root: Path) -> EdgeVectorStore:
    return EdgeVectorStore(root)
