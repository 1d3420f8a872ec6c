"""query: the search API (FastAPI on uvicorn).

Serves:  /v1 search API (posts, accounts, taxonomies, feedback, status; X-API-Key), the search page /,
         the status page /status, GET /healthz, /docs, /metrics
Reads:   the posts (and, once it exists, accounts) collection of the version the alias points at; Redis
         for API keys, rate limits, the query-embedding cache, LLM spend; Kafka offsets and the
         workers' /metrics for /v1/status
Writes:  label feedback to the Redis stream feedback:verticals (the learner beside the indexer applies it)
This process only serves (production, a Qdrant server). With the in-process edge store, whose shard
has one owner, ``python -m services.query.edge_host`` runs this API together with the store's writers.
"""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from services.query.app import QuerySettings, create_app
from shared.config import TaxonomySettings


def serve(app: FastAPI, settings: QuerySettings) -> None:
    uvicorn.run(app, host=settings.query_host, port=settings.query_port,
                log_level=settings.log_level.lower(), access_log=False, timeout_graceful_shutdown=20)


def main() -> None:
    settings = QuerySettings()
    serve(create_app(settings, taxonomies=TaxonomySettings()), settings)


if __name__ == "__main__":
    main()
