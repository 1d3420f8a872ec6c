"""The query API: FastAPI app factory, dependencies wired once at startup.

Locally (VECTOR_STORE=edge) the edge shard can be owned by one process only, so this process
also runs the indexer loop in a background thread (QUERY_RUN_INDEXER=true).
"""

from __future__ import annotations

import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import make_asgi_app
from pydantic import Field

from services.indexer.main import EMBEDDING_DIM, indexer_loop, open_store
from services.query.core import PostSearch
from services.query.routes import router
from shared.cache import EmbeddingCache, connect_redis
from shared.config import KafkaSettings, ModelSettings, RedisSettings, ServiceSettings, VectorStoreSettings
from shared.embedding import load_text_embedder
from shared.logging import configure_logging, get_logger
from shared.vectorstore import StoreUnavailable, VectorStore

log = get_logger("query")


class QuerySettings(ServiceSettings):
    query_host: str = Field("127.0.0.1", description="Address the API listens on.")
    query_port: int = Field(8000, description="Port of the search API.")
    query_run_indexer: bool = Field(True, description="Run the indexer loop in this process (edge store).")


@dataclass
class QueryContext:
    search: PostSearch
    store: VectorStore
    collection: str
    model_id: str
    indexer: threading.Thread | None = None


def build_context(store_settings: VectorStoreSettings) -> QueryContext:
    model = ModelSettings()
    embedder = load_text_embedder(model.model_cache_dir, batch_size=model.embedding_batch_size,
                                  intra_op_threads=model.embedding_threads)
    cache = EmbeddingCache(connect_redis(RedisSettings().redis_url), embedder.model_id, name="query")
    store = open_store(store_settings)
    store.ensure_collection(store_settings.posts_collection, EMBEDDING_DIM)
    search = PostSearch(embedder, cache, store, store_settings.posts_collection)
    return QueryContext(search, store, store_settings.posts_collection, embedder.model_id)


def start_indexer(context: QueryContext, stop: threading.Event) -> threading.Thread:
    loop = indexer_loop(KafkaSettings(), context.store, context.collection, stop)
    thread = threading.Thread(target=loop.run, name="indexer", daemon=True)
    thread.start()
    return thread


def create_app(settings: QuerySettings | None = None) -> FastAPI:
    settings = settings or QuerySettings()
    configure_logging(settings.log_level, service="query")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        context = build_context(VectorStoreSettings())
        stop = threading.Event()
        if settings.query_run_indexer:
            context.indexer = start_indexer(context, stop)
        app.state.context = context
        log.info("ready", model_id=context.model_id, indexer=settings.query_run_indexer)
        yield
        stop.set()
        if context.indexer:
            context.indexer.join(timeout=20)
        context.store.close()

    app = FastAPI(title="influential search API", version="0.1.0", lifespan=lifespan,
                  responses={503: {"description": "A dependency is down; retry after Retry-After seconds"}})
    app.include_router(router)
    app.mount("/metrics", make_asgi_app())
    _install_error_handlers(app)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [{"field": ".".join(str(p) for p in e["loc"]), "reason": e["msg"]} for e in exc.errors()]
        return JSONResponse(status_code=422, content={"error": "invalid request", "detail": fields})

    @app.exception_handler(StoreUnavailable)
    async def store_down(_: Request, exc: StoreUnavailable) -> JSONResponse:
        return JSONResponse(status_code=503, headers={"Retry-After": "5"},
                            content={"error": "vector store unavailable", "detail": str(exc)})

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", error=repr(exc))
        return JSONResponse(status_code=500, content={"error": "internal error"})
