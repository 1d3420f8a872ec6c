"""query: the search API (FastAPI on uvicorn).

Serves:  POST /v1/search/posts, GET /v1/posts/{id}, GET /v1/status, GET /healthz, /docs, /metrics
Reads:   the posts collection; Redis for query-embedding cache
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
