"""query: the search API (FastAPI on uvicorn).

Serves:  /v1 search API (posts, accounts, taxonomies, feedback, status; X-API-Key), the search page /,
         the status page /status, GET /healthz, /docs, /metrics
Reads:   the posts (and, once it exists, accounts) collection; Redis for API keys, rate limits,
         the query-embedding cache, LLM spend; Kafka offsets and the workers' /metrics for /v1/status
Writes:  label feedback to the Redis stream feedback:verticals
Runs:    the indexer loop in-process when QUERY_RUN_INDEXER=true (edge store: one owner per shard)
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
