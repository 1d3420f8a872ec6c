"""query: the search API (FastAPI on uvicorn).

Serves:  /v1 search API (posts, accounts, taxonomies, feedback, status; X-API-Key), the search page /,
         the status page /status, GET /healthz, /docs, /metrics
Reads:   the posts (and, once it exists, accounts) collection of the version the alias points at; Redis
         for API keys, rate limits, the query-embedding cache, LLM spend; Kafka offsets and the
         workers' /metrics for /v1/status
Writes:  label feedback to the Redis stream feedback:verticals; what it runs (below) writes the store
Runs:    in-process, because an edge shard has one owner (VECTOR_STORE=edge): with
         QUERY_RUN_INDEXER=true one indexer loop per registered index version and the learner of
         people's corrections (services/classifier/feedback.py); with QUERY_RUN_SUMMARIZER=true the
         account summarizer. Production (Qdrant server) turns both off and runs them as their own
         services.
"""

from __future__ import annotations

import uvicorn

from services.query.app import QuerySettings, create_app


def main() -> None:
    settings = QuerySettings()
    uvicorn.run(create_app(settings), host=settings.query_host, port=settings.query_port,
                log_level=settings.log_level.lower(), access_log=False, timeout_graceful_shutdown=20)


if __name__ == "__main__":
    main()
