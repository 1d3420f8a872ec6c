"""The vector store failing its writes, for real: the running indexer's fsync/fdatasync/msync calls
are made to return EIO by strace (error injection into the real process's syscalls, the way a failing
disk answers), then strace detaches and the disk "heals".

While writes fail, the indexer must stay alive, say so on /readyz, never commit an offset past what
the store acknowledged, and hold no more than one batch plus its bounded fetch buffer however large
the backlog grows. After the store returns, every post must be in it exactly once.

(A full disk was tried first: the edge engine's WAL and payload storage are memory-mapped, so a
write into a full tmpfs kills the process with SIGBUS instead of failing the write. That is a crash,
which tests/e2e/test_faults.py already covers with SIGKILL.)
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import numpy as np
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from devstack.processes import ManagedProcess, python_module
from services.indexer.core import post_point_id
from shared.events import AccountFields, EmbeddedPostUpsert, PostRecord, PostUpsert, SourcePosition, account_key
from shared.vectorstore import EdgeVectorStore
from tests.conftest import wait_for

pytestmark = pytest.mark.slow

PREFIX = "storefault"
TOPIC = f"{PREFIX}.pipeline.posts.embedded"
GROUP = f"{PREFIX}-indexer"
BEFORE, DURING = 300, 5_000  # posts indexed before the fault, posts arriving while it lasts
BATCH, FETCH_BUFFER_KB = 100, 1_024  # the indexer's INDEXER_BATCH_SIZE and KAFKA_FETCH_BUFFER_KBYTES
DESCRIPTION_CHARS = 3_500  # ~6 KB per message: the backlog (~30 MB) dwarfs what the indexer may hold
FAULT_SECONDS = 16
SYNC_CALLS = "fsync,fdatasync,msync"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def embedded_post(post_id: int, rng: np.random.Generator) -> bytes:
    words = rng.choice(["kayak", "sourdough", "tripod", "marathon", "espresso", "sketchbook", "fjord", "vinyl"],
                       size=DESCRIPTION_CHARS // 8)
    post = PostRecord(id=post_id, account_id=post_id % 7, platform="youtube", title=f"Post {post_id}",
                      description=" ".join(words)[:DESCRIPTION_CHARS], published_at=1_700_000_000_000 + post_id)
    upsert = PostUpsert(post=post, account=AccountFields(handle=f"creator{post_id % 7}", followers=50_000),
                        position=SourcePosition(ts_ms=int(time.time() * 1000), file="mariadb-bin.000001",
                                                pos=1_000 + post_id))
    vector = rng.normal(size=384).astype("float32")
    return EmbeddedPostUpsert.build(upsert, "test-model", vector / np.linalg.norm(vector)).model_dump_json().encode()


def produce(bootstrap: str, post_ids: range, rng: np.random.Generator) -> int:
    producer, size = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20}), 0
    for post_id in post_ids:
        value = embedded_post(post_id, rng)
        size += len(value)
        producer.produce(TOPIC, key=account_key(post_id % 7), value=value)
        producer.poll(0)
    assert producer.flush(30) == 0
    return size


def committed_offset(bootstrap: str) -> int:
    """The indexer group's committed offset, read without joining the group."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP, "enable.auto.commit": False})
    try:
        return consumer.committed([TopicPartition(TOPIC, 0)], timeout=10)[0].offset
    finally:
        consumer.close()


def rss_kb(pid: int) -> tuple[int, int]:
    """(anonymous, file-backed) resident KB: the heap where a backlog would pile up, and the mapped
    files (the store's WAL and segments, which grow a little with every retried write)."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["RssAnon"].split()[0]), int(fields["RssFile"].split()[0])


def traced(pid: int) -> bool:
    """Every thread of the process is stopped on by a tracer (strace attached to all of them)."""
    tasks = list(Path(f"/proc/{pid}/task").iterdir())
    return all("TracerPid:\t0" not in (task / "status").read_text() for task in tasks)


def readyz(port: int) -> tuple[int, dict]:
    response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
    return response.status_code, response.json()


@dataclass(frozen=True)
class Sample:
    committed: int
    rss_kb: tuple[int, int]  # anonymous, file-backed
    not_ready: bool


def watch_while_failing(process: ManagedProcess, ops_port: int, bootstrap: str, seconds: float) -> list[Sample]:
    """Twice a second: the committed offset, the RSS, readiness; the process must stay alive."""
    samples, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        status, body = readyz(ops_port)
        samples.append(Sample(committed_offset(bootstrap), rss_kb(process.process.pid),
                              status == 503 and body["processing"] is False))
        assert process.alive and httpx.get(f"http://127.0.0.1:{ops_port}/healthz", timeout=5).status_code == 200
        time.sleep(0.5)
    return samples


@pytest.fixture
def indexer(infra, tmp_path):
    """The real indexer process (edge store) on its own topic prefix and data directory."""
    config = replace(infra.config, root=tmp_path, topic_prefix=PREFIX)
    port = free_port()
    env = {**config.service_env(), "METRICS_PORT": str(port), "INDEXER_BATCH_SIZE": str(BATCH),
           "KAFKA_FETCH_BUFFER_KBYTES": str(FETCH_BUFFER_KB)}
    process = python_module("indexer", "services.indexer.main", config.log_dir, env).start()
    try:
        wait_for(lambda: process.alive and b'"consuming"' in process.log_path.read_bytes(), timeout=60,
                 what="the indexer consuming")
        yield process, port, tmp_path / "qdrant"
    finally:
        process.kill()


@pytest.fixture
def inject_sync_errors():
    """Start strace on a pid so its sync calls fail with EIO; returns a function that detaches it."""
    if shutil.which("strace") is None:
        pytest.fail("strace is needed (scripts/setup.sh installs it)")
    started: list[subprocess.Popen] = []

    def attach(pid: int) -> subprocess.Popen:
        tracer = subprocess.Popen(["strace", "-f", "-qq", "-p", str(pid), "-e", f"trace={SYNC_CALLS}",
                                   "-e", f"inject={SYNC_CALLS}:error=EIO", "-o", "/dev/null"])
        started.append(tracer)
        wait_for(lambda: traced(pid), timeout=15, what="strace attached to every thread")
        return tracer

    yield attach
    for tracer in started:
        if tracer.poll() is None:
            tracer.send_signal(signal.SIGINT)  # strace detaches and lets the process run on
            tracer.wait(15)


def test_failing_store_writes_commit_nothing_hold_one_batch_and_recover_exactly(infra, indexer, inject_sync_errors):
    process, ops_port, shard_dir = indexer
    bootstrap = f"127.0.0.1:{infra.config.broker_port}"
    pid, rng = process.process.pid, np.random.default_rng(7)

    produce(bootstrap, range(BEFORE), rng)
    wait_for(lambda: committed_offset(bootstrap) == BEFORE, timeout=120, what=f"{BEFORE} posts indexed")
    assert readyz(ops_port)[0] == 200

    tracer = inject_sync_errors(pid)
    rss_before = rss_kb(pid)
    first_half = produce(bootstrap, range(BEFORE, BEFORE + DURING // 2), rng)
    during_first = watch_while_failing(process, ops_port, bootstrap, seconds=FAULT_SECONDS / 2)
    second_half = produce(bootstrap, range(BEFORE + DURING // 2, BEFORE + DURING), rng)
    during_second = watch_while_failing(process, ops_port, bootstrap, seconds=FAULT_SECONDS / 2)
    tracer.send_signal(signal.SIGINT)  # the disk heals
    tracer.wait(15)

    log = process.log_path.read_text(errors="replace")
    assert "Input/output error" in log and "batch failed, retrying" in log  # the store really failed
    samples = during_first + during_second
    assert {s.committed for s in samples} == {BEFORE}  # never past the last acknowledged write
    assert any(s.not_ready for s in samples[2:]), "readiness never reported the failing writes"
    # Bounded memory: a second backlog as large as the first must not cost the indexer anything like
    # its size. It holds one batch, retried, plus at most KAFKA_FETCH_BUFFER_KBYTES prefetched (and
    # the fetch response being read). The first failures cost a one-off ~40 MB of heap whatever the
    # backlog (measured the same with a 6 MB and a 15 MB first half); with librdkafka's default 64 MB
    # fetch buffer instead, the second 14 MB half costs 33 MB more and this assertion fails.
    first_peak, second_peak = max(s.rss_kb for s in during_first), max(s.rss_kb for s in during_second)
    assert second_peak[0] - first_peak[0] < second_half / 1024 / 3, (
        f"anonymous RSS {first_peak[0]} -> {second_peak[0]} KB while the backlog grew by {second_half // 1024} KB")

    wait_for(lambda: committed_offset(bootstrap) == BEFORE + DURING, timeout=120, what="the backlog indexed")
    wait_for(lambda: readyz(ops_port)[0] == 200, timeout=30, what="ready again")
    process.kill()  # SIGKILL: what was committed must already be in the store
    store = EdgeVectorStore(shard_dir)
    try:
        store.ensure_collection("posts", 384)
        ids = list(store.scroll_ids("posts"))
    finally:
        store.close()
    assert len(ids) == len(set(ids)) == BEFORE + DURING
    assert set(ids) == {post_point_id(post_id) for post_id in range(BEFORE + DURING)}
    print(f"\nbacklog {first_half // 1024} + {second_half // 1024} KB; RSS {rss_before} KB before, peaks "
          f"{first_peak} / {second_peak} KB; committed offset held at {BEFORE} over {len(samples)} samples; "
          f"{log.count('batch failed, retrying')} failed batch attempts; {len(ids)} points after recovery")
