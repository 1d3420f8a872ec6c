"""The query API: settings, the app factory and startup wiring.

Locally (VECTOR_STORE=edge) the edge shard can be owned by one process only, so this process
also runs the indexer loop and the account summarizer in background threads
(QUERY_RUN_INDEXER=true, QUERY_RUN_SUMMARIZER=true).
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from prometheus_client import make_asgi_app
from pydantic import Field

from services.classifier.feedback import start_feedback_learner
from services.indexer.main import open_labeller, open_registry, open_store
from services.indexer.supervisor import IndexerSupervisor
from services.query.accounts import AccountSearch
from services.query.api.main import api_router
from services.query.api.routes.pages import STATIC_DIR
from services.query.active_collection import ActiveCollection
from services.query.context import QueryContext
from services.query.encoding import QueryEncoder
from services.query.errors import install_error_handlers
from services.query.posts import DEFAULT_LABEL_FLOOR, PostSearch
from services.query.status import IN_PROCESS, PipelineStatus
from services.summarizer.main import start_summarizer
from shared.auth import ApiKeyStore, RateLimiter
from shared.cache import EmbeddingCache, connect_redis
from shared.config import KafkaSettings, ModelSettings, RedisSettings, ServiceSettings, VectorStoreSettings
from shared.embedding import load_text_embedder
from shared.logging import configure_logging, get_logger
from shared.sparse import SparseEncoder
from shared.taxonomy import DEFAULT_TAXONOMY_DIR, TaxonomyCatalog

log = get_logger("query")
LOCAL_WORKERS = ("cdc", "viability", "embedder", "classifier")  # devstack order: ops ports are query_port + 1..4


class QuerySettings(ServiceSettings):
    query_host: str = Field("127.0.0.1", description="Address the API listens on.")
    query_port: int = Field(8000, description="Port of the search API.")
    query_run_indexer: bool = Field(True, description="Run the indexer loop in this process (edge store).")
    query_run_summarizer: bool = Field(True, description="Run the account summarizer in this process (edge store).")
    taxonomy_dir: Path = Field(DEFAULT_TAXONOMY_DIR, description="Directory of taxonomy YAML files.")
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

    def metrics_urls(self) -> dict[str, str]:
        urls = {"indexer": IN_PROCESS} if self.query_run_indexer else {}
        if self.status_metrics_urls.strip() == "local":
            return {**urls, **{name: f"http://127.0.0.1:{self.query_port + 1 + i}/metrics"
                               for i, name in enumerate(LOCAL_WORKERS)}}
        pairs = (item.split("=", 1) for item in self.status_metrics_urls.split(",") if "=" in item)
        return {**urls, **{name.strip(): url.strip() for name, url in pairs}}


def build_context(settings: QuerySettings) -> QueryContext:
    model, store_settings, kafka = ModelSettings(), VectorStoreSettings(), KafkaSettings()
    embedder = load_text_embedder(model.model_cache_dir, batch_size=model.embedding_batch_size,
                                  intra_op_threads=model.embedding_threads)
    redis_settings = RedisSettings()
    redis_client = connect_redis(redis_settings.redis_url)
    cache_client = connect_redis(redis_settings.cache_url)
    encoder = QueryEncoder(embedder, EmbeddingCache(cache_client, embedder.model_id, name="query"), SparseEncoder(),
                           recent=settings.query_recent_vectors)
    store = open_store(store_settings)
    catalog = TaxonomyCatalog.load(settings.taxonomy_dir)
    posts = ActiveCollection(store, store_settings.posts_collection, open_registry(kafka, store_settings))
    posts.name()  # opens (and if needed migrates) the active collection before the first request
    status = PipelineStatus(
        kafka=kafka, store=store, collection=posts, redis_client=redis_client,
        embedding_model=embedder.model_id, metrics_urls=settings.metrics_urls(),
        freshness_window_s=settings.status_freshness_window_s,
    )
    return QueryContext(
        store=store, posts_collection=posts, accounts_collection=store_settings.accounts_collection,
        redis=redis_client, keys=ApiKeyStore(redis_client, cache_s=settings.query_key_cache_s),
        limiter=RateLimiter(redis_client), catalog=catalog,
        posts=PostSearch(encoder, catalog, settings.query_max_results, settings.label_confidence_floor),
        accounts=AccountSearch(encoder, catalog, settings.account_candidates, settings.label_confidence_floor),
        status=status, model_id=embedder.model_id,
        labeller=open_labeller(embedder.embed, redis_client) if settings.query_run_indexer else None,
    )


def start_indexer(context: QueryContext, stop: threading.Event) -> threading.Thread:
    """One indexer loop per registered index version (the live one, and any replay being built)."""
    thread = threading.Thread(target=run_indexers, args=(context, stop), name="indexer-supervisor", daemon=True)
    thread.start()
    return thread


def run_indexers(context: QueryContext, stop: threading.Event) -> None:
    """The supervisor fails when Redis (its registry) does; a standalone indexer would then be restarted
    by Kubernetes, so here it is restarted in place. Offsets were committed only after writes, so the
    restarted loops resume where the store is."""
    while not stop.is_set():
        try:
            # open_registry registers the live version again if Redis came back empty.
            registry = open_registry(KafkaSettings(), VectorStoreSettings())
            IndexerSupervisor(KafkaSettings(), context.store, registry, stop=stop, labeller=context.labeller).run()
        except Exception as exc:  # noqa: BLE001 (any failure: log it and start again)
            log.warning("indexer supervisor failed, restarting in 2 s", error=repr(exc))
            stop.wait(2)


def create_app(settings: QuerySettings | None = None, context: QueryContext | None = None) -> FastAPI:
    """context: an already built one (tests); its store then stays open after shutdown."""
    settings = settings or QuerySettings()
    configure_logging(settings.log_level, service="query")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if context is not None:
            app.state.context = context
            yield
            return
        built, stop = build_context(settings), threading.Event()
        if settings.query_run_indexer:
            built.indexer = start_indexer(built, stop)
            # Corrections need post vectors: the learner runs where the store is, like the indexer.
            start_feedback_learner(built.redis, built.store, built.posts_collection.name, built.labeller, stop)
        summarizer = start_summarizer(built.store, built.posts.encoder.embedder, stop, built.catalog.is_enabled) \
            if settings.query_run_summarizer else None
        app.state.context = built
        log.info("ready", model_id=built.model_id, indexer=settings.query_run_indexer,
                 summarizer=settings.query_run_summarizer)
        yield
        stop.set()
        for thread in (built.indexer, summarizer):
            if thread:
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
