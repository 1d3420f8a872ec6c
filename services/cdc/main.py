"""cdc: MariaDB binlog → Debezium-format change events on Kafka (local stand-in for Debezium).

Reads:   the MariaDB binlog of MARIADB_DATABASE (tables accounts, posts); signal topic <prefix>-signal
         (a malformed signal goes to <prefix>-signal.dlq with the reason, and is skipped)
Writes:  <prefix>.<db>.accounts, <prefix>.<db>.posts   key {"id": ...}, value the Debezium envelope,
         a tombstone after each delete
State:   CDC_STATE_DIR/checkpoint.json (binlog file/pos/gtid of the last flushed transaction)
"""

from __future__ import annotations

from pathlib import Path

import pymysql
from confluent_kafka.admin import AdminClient
from pydantic import Field

from services.cdc.capture import ChangeCapture, Checkpoint
from shared import topology
from shared.config import PROJECT_ROOT, KafkaSettings, MariaDBSettings, ServiceSettings, dlq_topic
from shared.health import Heartbeat, HealthServer, kafka_reachable, shutdown_event
from shared.kafka import ensure_topics, make_consumer, make_producer
from shared.logging import configure_logging, get_logger

TABLES = ("accounts", "posts")  # accounts first: a snapshot lets viability know accounts early


class CdcSettings(ServiceSettings):
    cdc_state_dir: Path = Field(PROJECT_ROOT / ".dev" / "cdc", description="Where the cdc checkpoint lives.")
    cdc_server_id: int = Field(5401, description="Replication server id (unique among the server's replicas).")


def main() -> None:
    settings, kafka, mariadb = CdcSettings(), KafkaSettings(), MariaDBSettings()
    configure_logging(settings.log_level, service="cdc")
    log = get_logger("cdc")
    topics = [kafka.source_topic(t) for t in TABLES]
    checkpoint = Checkpoint(settings.cdc_state_dir / "checkpoint.json")
    if checkpoint.load() and not _topics_exist(kafka, topics):
        # The broker lost its topics (the local broker keeps them in memory): snapshot again.
        log.warning("checkpoint found but topics are missing; taking a new snapshot")
        checkpoint.clear()
    ensure_topics(kafka, [*topics, kafka.signal_topic, dlq_topic(kafka.signal_topic)])
    signals = make_consumer(kafka, group_id=topology.live_group("cdc", kafka.topic_prefix))
    signals.subscribe([kafka.signal_topic])
    heartbeat, stop = Heartbeat(), shutdown_event()
    HealthServer(settings.metrics_port, heartbeat, {
        "kafka": kafka_reachable(kafka.kafka_bootstrap_servers), "mariadb": lambda: _mariadb_answers(mariadb),
    }).start()
    capture = ChangeCapture(mariadb=mariadb, kafka=kafka, producer=make_producer(kafka), signals=signals,
                            checkpoint=checkpoint, tables=TABLES, server_id=settings.cdc_server_id, stop=stop,
                            heartbeat=heartbeat)
    try:
        capture.run()
    finally:
        signals.close()
        log.info("stopped")


def _mariadb_answers(mariadb: MariaDBSettings) -> bool:
    pymysql.connect(**mariadb.connect_kwargs(), connect_timeout=2).close()
    return True


def _topics_exist(kafka: KafkaSettings, topics: list[str]) -> bool:
    existing = AdminClient({"bootstrap.servers": kafka.kafka_bootstrap_servers}).list_topics(timeout=10).topics
    return all(t in existing for t in topics)


if __name__ == "__main__":
    main()
