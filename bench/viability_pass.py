"""One pass of the viability service over the source topics, for benchmark 2.

    python -m bench.viability_pass   (same environment as services.viability.main, plus:)
    BENCH_VIABILITY_GROUP            consumer group (required: each pass reads the topics from the start)
    BENCH_VIABILITY_OUTPUT           topic the decisions go to (required)
    BENCH_VIABILITY_ONE_CALL_PER_FACT=1   the code before pipelining: one Redis call per fact, ~7 round
                                     trips per event (for the before/after ratio measured in the same run)

Every pass shares the live Redis state of the topic prefix. The first pass meets accounts and posts
in whatever order the two topics interleave; posts of an account seen before the account itself
are not forwarded then (in production the snapshot request re-reads them; the benchmark runs no
cdc to serve it). A second pass over a filled state is the steady state of a live pipeline: every
account known, each post decided and forwarded on arrival.
"""

from __future__ import annotations

import os
import signal
import threading

from services.viability import main as viability
from services.viability.state import RedisViabilityState
from shared.cache import connect_redis
from shared.config import KafkaSettings, RedisSettings
from shared.health import Heartbeat
from shared.kafka import BatchLoop, make_consumer, make_producer
from shared.logging import configure_logging


class OneCallPerFactState(RedisViabilityState):
    apply_and_read = None  # the core then falls back to core.read_views: one round trip per call
    set_viable_many = None


def main() -> None:
    settings, kafka, redis_settings = viability.ViabilitySettings(), KafkaSettings(), RedisSettings()
    group, output = os.environ["BENCH_VIABILITY_GROUP"], os.environ["BENCH_VIABILITY_OUTPUT"]
    configure_logging(settings.log_level, service="viability-pass")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    redis_client = connect_redis(redis_settings.redis_url)
    if os.environ.get("BENCH_VIABILITY_ONE_CALL_PER_FACT") == "1":
        state = OneCallPerFactState(redis_client, namespace=kafka.topic_prefix)
        service = viability.ViabilityService(kafka, viability.ViabilityFilter(state, settings.rules()), output)
        BatchLoop(service="viability-pass", settings=kafka, consumer=make_consumer(kafka, group),
                  producer=make_producer(kafka), topics=[kafka.accounts_topic, kafka.posts_topic],
                  handle_batch=service.handle_batch, stop=stop).run()
        return
    viability.viability_loop(kafka, redis_client, settings.rules(), namespace=kafka.topic_prefix, group=group,
                             output_topic=output, stop=stop, heartbeat=Heartbeat()).run()


if __name__ == "__main__":
    main()
