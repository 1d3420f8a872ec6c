"""One indexer loop per registered index version.

The live version and any version a replay is building run side by side in this process (each
its own consumer group), so live changes reach both; versions dropped from the registry stop.
Each loop's collection point count is reported to the registry for progress and verification.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import redis

from services.indexer.core import Labeller
from services.indexer.main import indexer_loop
from shared.config import KafkaSettings
from shared.health import Heartbeat
from shared.index_registry import IndexRegistry, IndexVersion
from shared.logging import get_logger
from shared.vectorstore import StoreUnavailable, VectorStore

log = get_logger(__name__)


@dataclass
class _RunningLoop:
    thread: threading.Thread
    stop: threading.Event


class IndexerSupervisor:
    def __init__(self, kafka: KafkaSettings, store: VectorStore, registry: IndexRegistry, *,
                 stop: threading.Event, heartbeat: Heartbeat | None = None, poll_s: float = 2.0,
                 labeller: Labeller | None = None) -> None:
        self.kafka = kafka
        self.labeller = labeller  # shared by every version's loop: same taxonomies, same corrections
        self.store = store
        self.registry = registry
        self.stop = stop
        self.heartbeat = heartbeat
        self.poll_s = poll_s
        self.loops: dict[str, _RunningLoop] = {}

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                try:
                    self.reconcile()
                except redis.RedisError as exc:  # the registry is down, the store and the broker need not be
                    log.warning("index registry unreachable: the live version keeps indexing", error=str(exc))
                    self.keep_live_running()
                self.stop.wait(self.poll_s)
        finally:
            for loop in self.loops.values():
                loop.stop.set()
            for loop in self.loops.values():
                loop.thread.join(timeout=30)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="indexer-supervisor", daemon=True)
        thread.start()
        return thread

    @property
    def running(self) -> bool:
        return any(loop.thread.is_alive() for loop in self.loops.values())

    def reconcile(self) -> None:
        live = self.registry.live
        if live is not None and live.collection not in self.registry.versions():
            # Redis came back empty: register the live pipeline again instead of stopping it.
            self.registry.bootstrap(live.collection, live.source_topic, live.indexer_group)
        versions = self.registry.versions()
        for name, version in versions.items():
            if name not in self.loops or not self.loops[name].thread.is_alive():
                self._start(version)
        for name in [n for n in self.loops if n not in versions]:
            log.info("index version dropped: stopping its loop", collection=name)
            self.loops.pop(name).stop.set()
        for name in self.loops:
            try:
                self.registry.report_points(name, self.store.count(name))
            except Exception as exc:  # reporting is best effort; indexing goes on
                log.warning("could not report points", collection=name, error=str(exc))

    def keep_live_running(self) -> None:
        """Without the registry: the live version's loop runs (started if it never was); others stay as they are."""
        live = self.registry.live
        if live is not None and (live.collection not in self.loops or not self.loops[live.collection].thread.is_alive()):
            self._start(live)

    def _start(self, version: IndexVersion) -> None:
        stop = threading.Event()
        try:
            loop = indexer_loop(self.kafka, self.store, version.collection, stop, self.heartbeat,
                                group=version.indexer_group, topic=version.source_topic, labeller=self.labeller)
        except StoreUnavailable as exc:  # e.g. Qdrant peers still joining: the next reconcile tries again
            log.warning("index version not started yet", collection=version.collection, error=str(exc))
            return
        thread = threading.Thread(target=loop.run, name=f"indexer-{version.collection}", daemon=True)
        thread.start()
        self.loops[version.collection] = _RunningLoop(thread, stop)
        log.info("indexing version", collection=version.collection, topic=version.source_topic,
                 group=version.indexer_group)
