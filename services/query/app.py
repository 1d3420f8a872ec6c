"""The query API: settings, the app factory and startup wiring.

The API only serves. An entry point may run more work in the same process (``CoHosted``): the edge
host (services/query/edge_host.py) runs the edge store's writers here, because an edge shard has one
owner; the API starts and stops that work and tells in /healthz whether the writer runs.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from prometheus_client import make_asgi_app
from pydantic import Field

from services.query.accounts import AccountSearch
from services.query.api.main import api_router
from services.query.api.routes.pages import STATIC_DIR
from services.query.active_collection import ActiveCollection
from services.query.context import QueryContext
from services.query.encoding import QueryEncoder, QueryModel
from services.query.errors import install_error_handlers
from services.query.posts import DEFAULT_LABEL_FLOOR, PostSearch
from services.query.status import IN_PROCESS, PipelineStatus
from shared import topology
from shared.auth import ApiKeyStore, RateLimiter
from shared.bootstrap import load_embedder, open_registry, open_store
from shared.cache import EmbeddingCache, connect_redis
from shared.config import (
    KafkaSettings,
    ModelSettings,
    RedisSettings,
    ServiceSettings,
    TaxonomySettings,
    VectorStoreSettings,
)
from shared.logging import configure_logging, get_logger
from shared.sparse import SparseEncoder
from shared.classification.taxonomy import TaxonomyCatalog

log = get_logger("query")


class QuerySettings(ServiceSettings):
    query_host: str = Field("127.0.0.1", description="Address the API listens on.")
    query_port: int = Field(8000, description="Port of the search API.")
    query_max_results: int = Field(500, ge=10, le=5000, description="Results a query can page through; "
                                   "hybrid search fuses this many candidates of each kind.")
    account_candidates: int = Field(200, ge=10, le=2000, description="Post hits grouped into accounts when "
                                    "there are no account summaries.")
    status_metrics_urls: str = Field("local", description="name=url,... of the workers' /metrics for the status "
                                     "page; 'local' = the make dev ports (QUERY_PORT + 1..4).")
    status_freshness_window_s: int = Field(900, ge=10, description="Window of the freshness percentiles.")
    query_key_cache_s: float = Field(2.0, ge=0, description="Seconds an API key record is reused in-process "
                                     "(saves a Redis round trip per request; a revocation takes effect within it).")
    label_confidence_floor: float = Field(DEFAULT_LABEL_FLOOR, ge=0.0, le=1.0, description="Calibrated confidence "
                                          "under which a post's label is neither shown nor counted in facets; also "
                                          "the vertical filter's minimum when a request names none.")
    query_recent_vectors: int = Field(4096, ge=0, description="Query vectors kept in process memory in front of "
                                      "the Redis query cache (0 = Redis only).")

    def metrics_urls(self, in_process: tuple[str, ...] = ()) -> dict[str, str]:
        """in_process: workers running in this process, whose metrics are this process's."""
        urls = {name: IN_PROCESS for name in in_process}
        if self.status_metrics_urls.strip() == "local":
            return {**urls, **{name: f"http://127.0.0.1:{topology.local_ops_port(name, self.query_port)}/metrics"
                               for name in topology.local_workers()}}
        pairs = (item.split("=", 1) for item in self.status_metrics_urls.split(",") if "=" in item)
        return {**urls, **{name.strip(): url.strip() for name, url in pairs}}


@dataclass(frozen=True)
class CoHosted:
    """Work an entry point runs in the API's process, started once the context is built and stopped
    with the app (the edge host's writers). The API knows it only by name: "indexer" is the writer
    whose liveness /healthz reports."""

    start: Callable[[QueryContext, threading.Event], dict[str, threading.Thread]]
    metrics_in_process: tuple[str, ...] = ()  # workers whose metrics are this process's (the status page)


def build_context(settings: QuerySettings, taxonomies: TaxonomySettings,
                  in_process: tuple[str, ...] = ()) -> QueryContext:
    model, store_settings, kafka = ModelSettings(), VectorStoreSettings(), KafkaSettings()
    embedder = load_embedder(model)
    redis_settings = RedisSettings()
    redis_client = connect_redis(redis_settings.redis_url)
    cache_client = connect_redis(redis_settings.cache_url)

    def load_query_model(variant: str) -> QueryModel:
        """A replay's version built with another model (--model int8): loaded when first searched."""
        other = load_embedder(model, variant)
        return other, EmbeddingCache(cache_client, other.model_id, name="query")

    encoder = QueryEncoder(embedder, EmbeddingCache(cache_client, embedder.model_id, name="query"), SparseEncoder(),
                           recent=settings.query_recent_vectors, load_model=load_query_model)
    store = open_store(store_settings)
    catalog = TaxonomyCatalog.load(taxonomies.taxonomy_dir)
    registry = open_registry(kafka, store_settings, redis_client, model.embedding_model_variant)
    posts = ActiveCollection(store, store_settings.posts_collection, registry,
                             alias_cache_s=store_settings.query_alias_cache_s, live_variant=model.embedding_model_variant)
    posts.name()  # opens (and if needed migrates) the active collection before the first request
    status = PipelineStatus(
        kafka=kafka, store=store, collection=posts, redis_client=redis_client,
        embedding_model=embedder.model_id, metrics_urls=settings.metrics_urls(in_process),
        freshness_window_s=settings.status_freshness_window_s,
    )
    return QueryContext(
        store=store, posts_collection=posts, accounts_collection=store_settings.accounts_collection,
        redis=redis_client, keys=ApiKeyStore(redis_client, cache_s=settings.query_key_cache_s),
        limiter=RateLimiter(redis_client), catalog=catalog,
        posts=PostSearch(encoder, catalog, settings.query_max_results, settings.label_confidence_floor),
        accounts=AccountSearch(encoder, catalog, settings.account_candidates, settings.label_confidence_floor),
        status=status, model_id=embedder.model_id,
    )


def create_app(settings: QuerySettings | None = None, context: QueryContext | None = None, *,
               cohosted: CoHosted | None = None, taxonomies: TaxonomySettings | None = None) -> FastAPI:
    """context: an already built one (tests); its store then stays open after shutdown.
    cohosted: work the entry point runs in this process next to the API (not with ``context``)."""
    settings = settings or QuerySettings()
    taxonomies = taxonomies or TaxonomySettings()
    configure_logging(settings.log_level, service="query")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if context is not None:
            app.state.context = context
            yield
            return
        in_process = cohosted.metrics_in_process if cohosted else ()
        built, stop = build_context(settings, taxonomies, in_process), threading.Event()
        if cohosted is not None:
            built.hosted = cohosted.start(built, stop)
        app.state.context = built
        log.info("ready", model_id=built.model_id, hosted=sorted(built.hosted))
        yield
        stop.set()
        for thread in built.hosted.values():
            thread.join(timeout=20)
        built.status.close()
        built.store.close()

    app = FastAPI(title="influential search API", version="1.0.0", lifespan=lifespan,
                  description="Search creators' posts and accounts. Every /v1 route needs an `X-API-Key`.")
    if context is not None:
        app.state.context = context  # usable before startup too (ASGI test clients without lifespan)
    app.include_router(api_router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.mount("/metrics", make_asgi_app())
    install_error_handlers(app)
    return app
