"""Extra consumer loops per registered index version, started and stopped as the registry changes.

A replay registers a version; every service with work for it runs one more BatchLoop next to its
live loop, with the version's own consumer group: viability for stage "pipeline", the embedder for
versions that embed (stages "embed" and "pipeline"), the classifier's tier 2 for every version but
the live one, and the summarizer and the indexer for every version, the live one included (the indexer's
also register the live version again after a Redis wipe and report point counts). A version dropped from the
registry (or replaced under the same name) has its loop stopped and joined first, and only then
``on_dropped`` removes what belonged to it, so a loop can never write after its cleanup.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from shared.index_registry import IndexRegistry, IndexVersion
from shared.kafka import BatchLoop
from shared.logging import get_logger
from shared.vectorstore import StoreUnavailable

log = get_logger(__name__)


@dataclass
class _RunningLoop:
    version: IndexVersion
    thread: threading.Thread
    stop: threading.Event


def same_version(a: IndexVersion, b: IndexVersion) -> bool:
    """Registry entries are rewritten with every point report; identity is number + creation time."""
    return (a.version, a.created_ms) == (b.version, b.created_ms)


class VersionLoops:
    def __init__(self, registry: IndexRegistry, *, service: str, wants: Callable[[IndexVersion], bool],
                 build: Callable[[IndexVersion, threading.Event], BatchLoop], stop: threading.Event,
                 on_dropped: Callable[[IndexVersion], None] | None = None, poll_s: float = 2.0,
                 keep_live_registered: bool = False, count_points: Callable[[str], int] | None = None) -> None:
        self.registry = registry
        self.service = service
        self.wants = wants
        self.build = build
        self.stop = stop
        self.on_dropped = on_dropped
        self.poll_s = poll_s
        self.keep_live_registered = keep_live_registered  # the writer's duty: a Redis wipe must not stop it
        self.count_points = count_points  # per collection, reported to the registry (replay progress)
        self.loops: dict[str, _RunningLoop] = {}

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name=f"{self.service}-versions", daemon=True)
        thread.start()
        return thread

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                try:
                    self.reconcile()
                except Exception as exc:  # Redis (the registry) down: the live loop goes on, try again
                    log.warning("could not reconcile index versions", service=self.service, error=repr(exc)[:300])
                    if self.keep_live_registered:
                        self._keep_live_running()
                self.stop.wait(self.poll_s)
        finally:
            for running in self.loops.values():
                running.stop.set()
            for running in self.loops.values():
                running.thread.join(timeout=30)

    def reconcile(self) -> None:
        if self.keep_live_registered:
            self._register_live_again()
        wanted = {name: v for name, v in self.registry.versions().items() if self.wants(v)}
        for name in list(self.loops):
            if name not in wanted or not same_version(self.loops[name].version, wanted[name]):
                self._retire(name)
        for name, version in wanted.items():
            if name not in self.loops or not self.loops[name].thread.is_alive():
                self._start(version)
        if self.count_points is not None:
            self._report_points(self.count_points)

    def _register_live_again(self) -> None:
        live = self.registry.live
        if live is not None and live.collection not in self.registry.versions():
            # Redis came back empty: register the live pipeline again instead of stopping it.
            self.registry.bootstrap(live.collection, live.source_topic, live.indexer_group, live.model_variant)

    def _keep_live_running(self) -> None:
        """Without the registry (Redis down, maybe since start): the live version's loop runs, started if it
        never was; the writes it makes need only the broker and the store. Other versions stay as they are."""
        live = self.registry.live
        if live is not None and (live.collection not in self.loops or not self.loops[live.collection].thread.is_alive()):
            self._start(live)

    def _report_points(self, count_points: Callable[[str], int]) -> None:
        for name in self.loops:
            try:
                self.registry.report_points(name, count_points(name))
            except Exception as exc:  # reporting is best effort; indexing goes on
                log.warning("could not report points", collection=name, error=str(exc))

    def _start(self, version: IndexVersion) -> None:
        stop = threading.Event()
        try:
            loop = self.build(version, stop)
        except StoreUnavailable as exc:  # e.g. Qdrant peers still joining: the next reconcile tries again
            log.warning("index version not started yet", service=self.service, collection=version.collection,
                        error=str(exc))
            return
        thread = threading.Thread(target=loop.run, name=f"{self.service}-{version.collection}", daemon=True)
        thread.start()
        self.loops[version.collection] = _RunningLoop(version, thread, stop)
        log.info("running a loop for an index version", service=self.service, collection=version.collection,
                 stage=version.stage)

    def _retire(self, name: str) -> None:
        running = self.loops.pop(name)
        running.stop.set()
        running.thread.join(timeout=60)
        log.info("index version dropped: its loop stopped", service=self.service, collection=name)
        if self.on_dropped is not None and not running.thread.is_alive():
            self.on_dropped(running.version)
