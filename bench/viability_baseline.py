"""The viability service as it was before pipelining: one Redis call per fact (~7 round trips
per post event). Only for benchmark 2's before/after ratio measured in the same run.

    python -m bench.viability_baseline   (same environment as services.viability.main)

Its consumer group and Redis namespace get a "-baseline" suffix, so it can read the same
pre-filled topics as the real service without sharing its offsets or state.
"""

from __future__ import annotations

import signal
import threading

from services.viability import main as viability
from services.viability.state import RedisViabilityState
from shared.cache import connect_redis
from shared.config import KafkaSettings, RedisSettings
from shared.kafka import BatchLoop, make_consumer, make_producer
from shared.logging import configure_logging


class OneCallPerFactState(RedisViabilityState):
    apply_and_read = None  # the core then falls back to core.read_view: one round trip per call


def main() -> None:
    settings, kafka, redis_settings = viability.ViabilitySettings(), KafkaSettings(), RedisSettings()
    configure_logging(settings.log_level, service="viability-baseline")
    state = OneCallPerFactState(connect_redis(redis_settings.redis_url), namespace=f"{kafka.topic_prefix}-baseline")
    service = viability.ViabilityService(kafka, viability.ViabilityFilter(state, settings.rules()))
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    BatchLoop(service="viability-baseline", settings=kafka,
              consumer=make_consumer(kafka, f"{kafka.topic_prefix}-viability-baseline"),
              producer=make_producer(kafka), topics=[kafka.accounts_topic, kafka.posts_topic],
              handle_batch=service.handle_batch, stop=stop).run()


if __name__ == "__main__":
    main()
