"""Per-request stage timings: the response field, the Server-Timing header and Prometheus."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import Response
from prometheus_client import Histogram

from services.query.models.common import StageTimings
from shared.metrics import STAGE_SECONDS

STAGES = ("embed", "search", "fetch")
QUERY_STAGE_SECONDS = Histogram(
    "query_stage_seconds", "Query API time per stage and route", ["route", "stage"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


class StageClock:
    """Adds up wall time per stage; a stage may run several times (e.g. two facet reads)."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.spent = dict.fromkeys(STAGES, 0.0)
        self.embedding_cached: bool | None = None

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            self.spent[name] += time.perf_counter() - began

    def timings(self) -> StageTimings:
        total = time.perf_counter() - self.started
        return StageTimings(embed_ms=self.spent["embed"] * 1000, search_ms=self.spent["search"] * 1000,
                            fetch_ms=self.spent["fetch"] * 1000, total_ms=total * 1000,
                            embedding_cached=self.embedding_cached)

    def report(self, route: str, response: Response, timings: StageTimings) -> None:
        """Server-Timing header (browsers' devtools show it) and the histograms."""
        parts = [f"{stage};dur={self.spent[stage] * 1000:.2f}" for stage in STAGES]
        response.headers["Server-Timing"] = ", ".join([*parts, f"total;dur={timings.total_ms:.2f}"])
        for stage in STAGES:
            QUERY_STAGE_SECONDS.labels(route=route, stage=stage).observe(self.spent[stage])
        # The pipeline-wide histogram dashboards already chart (query_embed, query_search).
        STAGE_SECONDS.labels(stage="query_embed").observe(self.spent["embed"])
        STAGE_SECONDS.labels(stage="query_search").observe(self.spent["search"])
