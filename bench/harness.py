"""Machinery the benchmarks share: the private stack, SQL, Kafka offsets, RSS sampling, py-spy.

Everything runs on private ports (MariaDB 3337, broker 19292, Redis 16579, API 18200 unless the
BENCH_*_PORT variables say otherwise) and under .dev/bench/, so a running `make dev` or test
suite is never touched.
"""

from __future__ import annotations

import collections
import json
import os
import random
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pymysql
import redis
from confluent_kafka import Consumer, TopicPartition

from devstack.processes import ManagedProcess, python_module
from devstack.stack import LocalStack, StackConfig
from services.viability.core import ViabilityRules
from shared.config import PROJECT_ROOT

BENCH_ROOT = PROJECT_ROOT / ".dev" / "bench"
CACHE_DIR = PROJECT_ROOT / ".dev" / "bench-cache"
MODEL_CACHE_DIR = Path(os.environ.get("MODEL_CACHE_DIR", PROJECT_ROOT / ".dev" / "models"))
DATABASE = "bench"

# What must end up indexed: the viability rules (defaults) as SQL over the source tables.
VIABLE_POSTS_SQL, VIABLE_POSTS_PARAMS = ViabilityRules().viable_posts_sql()


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def ports() -> dict[str, int]:
    return {name: int(os.environ.get(f"BENCH_{name.upper()}_PORT", default)) for name, default in
            (("mariadb", 3337), ("broker", 19292), ("redis", 16579), ("api", 18200))}


class RssSampler:
    """Samples VmRSS of registered processes every `interval` s; keeps the peak per benchmark."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.processes: dict[str, int] = {"bench-harness": os.getpid()}
        self.peaks: dict[str, dict[str, float]] = collections.defaultdict(dict)
        self.bench = "setup"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def watch(self, name: str, pid: int | None) -> None:
        if pid:
            self.processes[name] = pid

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        for name, pid in list(self.processes.items()):
            rss = _rss_mb(pid)
            if rss is not None:
                per = self.peaks[name]
                per[self.bench] = max(per.get(self.bench, 0.0), rss)

    def stop(self) -> None:
        self._stop.set()

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) each watched process has used so far; differences of two calls
        show where a benchmark's CPU went."""
        used = {}
        for name, pid in list(self.processes.items()):
            seconds = _cpu_seconds(pid)
            if seconds is not None:
                used[name] = seconds
        return used


def cpu_used_between(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: round(after[name] - before.get(name, 0.0), 2) for name in after if after[name] > before.get(name, 0.0)}


def _cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Profiler:
    """py-spy record attached to a running process, collapsed stacks → top frames."""

    def __init__(self, pid: int, out: Path, rate: int = 97) -> None:
        self.out = out
        self.process: subprocess.Popen | None = None
        binary = shutil.which("py-spy") or str(Path(os.sys.executable).parent / "py-spy")
        if not Path(binary).exists():
            return
        self.process = subprocess.Popen([binary, "record", "--pid", str(pid), "--format", "raw", "--rate", str(rate),
                                         "--output", str(out), "--nonblocking"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> list[tuple[str, float]]:
        if self.process is None:
            return []
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        return top_frames(self.out) if self.out.exists() else []


def top_frames(collapsed: Path, n: int = 10) -> list[tuple[str, float]]:
    """Self-time share (%) of the leaf frames in a py-spy raw (collapsed) profile."""
    totals: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_short_frame(f) for f in stack.split(";")]
        totals[frames[-1]] += int(count)
        for frame in set(frames):
            inclusive[frame] += int(count)
    total = sum(totals.values()) or 1
    top = [(f"self  {frame}", 100 * c / total) for frame, c in totals.most_common(n)]
    wanted = ("handle_batch", "apply_and_read", "read_view", "decide", "parse_", "produce_all", "_commit",
              "consume", "upsert", "_write", "flush", "embed", "get_many", "model_validate", "encode")
    top += [(f"incl  {frame}", 100 * c / total) for frame, c in inclusive.most_common(60)
            if any(w in frame for w in wanted)][:n]
    return top


def _short_frame(frame: str) -> str:
    # "function (path/to/file.py:123)" -> "function (file.py)"
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({'/'.join(Path(path).parts[-2:])})" if path else name


class Kafka:
    def __init__(self, port: int) -> None:
        self.bootstrap = f"127.0.0.1:{port}"
        self._group_consumers: dict[str, Consumer] = {}
        self._meta = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "bench-meta"})

    def end_offsets(self, topics: list[str]) -> int:
        total = 0
        for topic in topics:
            try:
                total += self._meta.get_watermark_offsets(TopicPartition(topic, 0), timeout=5, cached=False)[1]
            except Exception:  # topic not created yet
                pass
        return max(total, 0)

    def count_messages(self, topics: list[str]) -> int:
        """Records in the topics, counted by reading them (the local broker's offsets are not
        dense: its watermarks are not record counts)."""
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"bench-count-{time.time_ns()}",
                             "enable.auto.commit": False, "auto.offset.reset": "earliest",
                             "enable.partition.eof": True})
        consumer.assign([TopicPartition(t, 0, -2) for t in topics])
        count, eof, deadline = 0, set(), time.monotonic() + 300
        while len(eof) < len(topics) and time.monotonic() < deadline:
            for message in consumer.consume(10000, 1.0):
                if message.error() is None:
                    count += 1
                elif message.error().code() == -191:  # _PARTITION_EOF
                    eof.add(message.topic())
        consumer.close()
        return count

    def committed(self, group: str, topics: list[str]) -> int:
        consumer = self._group_consumers.get(group)
        if consumer is None:
            consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group,
                                 "enable.auto.commit": False})
            self._group_consumers[group] = consumer
        try:
            offsets = consumer.committed([TopicPartition(t, 0) for t in topics], timeout=5)
        except Exception:
            return 0
        return sum(max(tp.offset, 0) for tp in offsets)

    def drain_time(self, group: str, topics: list[str], *, target: int | None = None, timeout: float,
                   interval: float = 0.02, alive=lambda: True) -> dict:
        """Poll a group's committed offsets until it has consumed `target` (default: everything in
        the topics); the rate is counted from its first commit, so start-up and group join are out."""
        deadline = time.monotonic() + timeout
        first = None
        while time.monotonic() < deadline:
            now = time.monotonic()
            done = self.committed(group, topics)
            goal = target if target is not None else self.end_offsets(topics)
            if done > 0 and first is None:
                first = (now, done)
            if first is not None and goal and done >= goal:
                # offsets → records: the broker's offsets are not dense, so scale the record count
                records = self.count_messages(topics)
                events = records * (done - first[1]) / done
                seconds = now - first[0]
                return {"events": events, "seconds": seconds, "events_per_s": events / seconds if seconds > 0
                        else float("nan"), "total": records}
            if not alive():
                raise RuntimeError(f"{group}: process died")
            time.sleep(interval)
        raise TimeoutError(f"{group} did not drain {topics} within {timeout}s (committed {done}, goal {goal})")

    def forget(self, group: str) -> None:
        """Drop the cached reader of ``group``'s commits (its offsets were just moved by an admin call)."""
        consumer = self._group_consumers.pop(group, None)
        if consumer is not None:
            consumer.close()

    def close(self) -> None:
        for consumer in [*self._group_consumers.values(), self._meta]:
            consumer.close()


class Bench:
    """The private infrastructure plus helpers to start pipelines on it under any topic prefix."""

    def __init__(self, scale: str) -> None:
        self.scale = scale
        self.ports = ports()
        self.root = BENCH_ROOT / scale
        self.sampler = RssSampler().start()
        self.infra = LocalStack(StackConfig(
            root=self.root, mariadb_port=self.ports["mariadb"], broker_port=self.ports["broker"],
            redis_port=self.ports["redis"], query_port=self.ports["api"], database=DATABASE, topic_prefix="bench",
            reuse_redis=False, model_cache_dir=MODEL_CACHE_DIR,
            extra_env={"LOG_LEVEL": "INFO"}))
        self.kafka: Kafka | None = None
        self.redis: redis.Redis | None = None
        self.live: LocalStack | None = None
        self.api_key: str | None = None  # a settled pipeline for benchmarks 1 and 3
        self._runs = 0
        self._next_post_id = 900_000_000 + random.randrange(1_000_000) * 100

    # --- infrastructure --------------------------------------------------------------------

    def start(self) -> None:
        shutil.rmtree(self.root / "redis", ignore_errors=True)
        for sub in ("logs", "runs"):
            shutil.rmtree(self.root / sub, ignore_errors=True)
        self.infra.start_infra()
        for name, process in self.infra.infra.items():
            self.sampler.watch(name, process.process.pid)
        self.kafka = Kafka(self.ports["broker"])
        self.redis = redis.Redis(host="127.0.0.1", port=self.ports["redis"])
        self.api_key = self.create_api_key()
        self.seed()

    def create_api_key(self) -> str | None:
        """An all-scopes key with a limit far above any load here, when the API requires keys."""
        try:
            from shared.auth import ApiKeyStore, RateLimit, Scope
        except ImportError:
            return None
        issued = ApiKeyStore(self.redis).create("bench", list(Scope), RateLimit(requests=1_000_000, per_seconds=1),
                                                label="bench")
        return issued.key

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key} if self.api_key else {}

    def seed(self) -> None:
        from demo.seed import seed_database

        # The generator lands near the scale's target, not on it (medium: 199,947 of 200,000), so what was
        # seeded is recorded beside the data; comparing with the target re-seeded medium and large every run.
        marker = self.root / "seeded-posts"
        seeded = int(marker.read_text()) if marker.exists() else _scale_posts(self.scale)
        if self.sql("SELECT COUNT(*) FROM posts WHERE id < 900000000")[0][0] < seeded:
            log(f"seeding {self.scale} demo data into MariaDB :{self.ports['mariadb']} (once; kept in {self.root})")
            seed_database(port=self.ports["mariadb"], database=DATABASE, scale=self.scale, reset=True)
            marker.write_text(str(self.sql("SELECT COUNT(*) FROM posts")[0][0]))
        self.sql("DELETE FROM posts WHERE id >= 900000000")  # posts a previous benchmark run inserted

    def stop(self) -> None:
        self.stop_live()
        if self.kafka:
            self.kafka.close()
        self.infra.stop()
        self.sampler.stop()

    def sql(self, statement: str, params: tuple = (), *, many: list[tuple] | None = None) -> list[tuple]:
        connection = pymysql.connect(host="127.0.0.1", port=self.ports["mariadb"], user="root", database=DATABASE,
                                     autocommit=True, charset="utf8mb4")
        try:
            with connection.cursor() as cursor:
                if many is not None:
                    cursor.executemany(statement, many)
                    return []
                cursor.execute(statement, params)
                return list(cursor.fetchall())
        finally:
            connection.close()

    def wait_summaries_idle(self, stack: LocalStack, timeout: float = 900) -> float:
        """Seconds until the live summarizer has no account due within its debounce window (it
        recomputes an account's summary SUMMARIZER_DEBOUNCE_S after its posts change, in the query
        process; accounts held back by SUMMARIZER_MIN_INTERVAL_S wait longer and are not waited for):
        benchmarks 1 and 3 start from a quiet pipeline, not in the middle of the previous load's summaries."""
        from services.summarizer.dirty import DirtyAccounts
        from shared.config import SummarizerSettings

        dirty = DirtyAccounts(self.redis, stack.config.topic_prefix, "accounts")
        horizon_ms = (SummarizerSettings().summarizer_debounce_s + 1) * 1000
        started = time.monotonic()
        while dirty.due_before(int(time.time() * 1000 + horizon_ms)) and time.monotonic() - started < timeout:
            time.sleep(1)
        return time.monotonic() - started

    def viable_count(self) -> int:
        return self.sql(f"SELECT COUNT(*) FROM ({VIABLE_POSTS_SQL}) v", VIABLE_POSTS_PARAMS)[0][0]

    def viable_accounts(self) -> list[tuple[int, str]]:
        return [tuple(r) for r in self.sql(
            f"SELECT DISTINCT p.account_id, p.platform FROM ({VIABLE_POSTS_SQL}) v JOIN posts p USING (id)",
            VIABLE_POSTS_PARAMS)]

    def sample_texts(self, n: int, seed: int) -> list[tuple[str, str | None]]:
        rows = self.sql("SELECT title, description FROM posts WHERE id < 900000000 ORDER BY id")
        rng = random.Random(seed)
        return [rows[rng.randrange(len(rows))] for _ in range(n)]

    def new_posts(self, texts: list[tuple[str, str | None]], tag: str) -> list[tuple]:
        """Rows for posts of viable accounts with texts made unique (so the cache misses) by a tag."""
        accounts = self.viable_accounts()
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        rows = []
        for i, (title, description) in enumerate(texts):
            self._next_post_id += 1
            account, platform = accounts[i % len(accounts)]
            rows.append((self._next_post_id, account, platform, f"{title} ({tag}-{i})"[:500], description, None,
                         now, 10, 1, 0, now))
        return rows

    def insert_posts(self, rows: list[tuple], chunk: int = 500) -> None:
        statement = ("INSERT INTO posts (id, account_id, platform, title, description, url, published_at, views,"
                     " likes, comments, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)")
        for start in range(0, len(rows), chunk):
            self.sql(statement, many=rows[start:start + chunk])

    # --- pipelines -------------------------------------------------------------------------

    def stack(self, prefix: str, **env: str) -> LocalStack:
        self._runs += 1
        root = self.root / "runs" / f"{self._runs:02d}-{prefix}"
        config = replace(self.infra.config, root=root, topic_prefix=prefix,
                         extra_env={**self.infra.config.extra_env, **env})
        return LocalStack(config)

    def start_services(self, stack: LocalStack, names=("cdc", "viability", "embedder", "query")) -> None:
        for name in names:
            process = stack.start_service(name, timeout=300)
            self.sampler.watch(name, process.process.pid)

    def start_module(self, stack: LocalStack, name: str, module: str, marker: str = '"consuming"',
                     **env: str) -> ManagedProcess:
        process = python_module(name, module, stack.config.log_dir, {**stack.config.service_env(), **env}).start()
        stack.services[name] = process
        self.sampler.watch(name, process.process.pid)
        stack.wait_ready(name, marker, 0, 300)
        return process

    def points(self, api_url: str) -> int:
        try:
            request = urllib.request.Request(f"{api_url}/v1/status", headers=self.headers)
            with urllib.request.urlopen(request, timeout=5) as response:
                return int(json.load(response)["points"])
        except OSError:
            return -1

    def wait_points(self, stack: LocalStack, expected: int, timeout: float, interval: float = 0.25) -> float:
        """Seconds until the index holds `expected` points."""
        started = time.monotonic()
        deadline = started + timeout
        last = -1
        while time.monotonic() < deadline:
            last = self.points(stack.api_url)
            if last >= expected:
                return time.monotonic() - started
            for name, process in stack.services.items():
                if not process.alive:
                    raise RuntimeError(f"{name} died:\n{process.tail()}")
            time.sleep(interval)
        raise TimeoutError(f"index has {last} points, expected {expected}, after {timeout}s")

    def stop_live(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    # --- embedding cache on disk (so reruns never embed the demo data twice) ----------------

    def cache_file(self, model_id: str) -> Path:
        import hashlib

        return CACHE_DIR / f"emb-{hashlib.sha256(model_id.encode()).hexdigest()[:12]}.npz"

    def flush_embedding_cache(self) -> int:
        keys = list(self.redis.scan_iter(match="emb:*", count=5000))
        for start in range(0, len(keys), 5000):
            self.redis.unlink(*keys[start:start + 5000])
        return len(keys)

    def save_embedding_cache(self, model_id: str) -> int:
        prefix = f"emb:{model_id}:"
        keys = [k for k in self.redis.scan_iter(match=f"{prefix}*", count=5000)]
        if not keys:
            return 0
        path = self.cache_file(model_id)
        known = load_npz(path)
        values = self.redis.mget(keys)
        for key, value in zip(keys, values):
            if value:
                known[key.decode()[len(prefix):]] = np.frombuffer(value, dtype="<f4")
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        hashes = sorted(known)
        np.savez(path, hashes=np.array(hashes), vectors=np.stack([known[h] for h in hashes]).astype("<f4"))
        return len(hashes)

    def load_embedding_cache(self, model_id: str) -> int:
        known = load_npz(self.cache_file(model_id))
        prefix = f"emb:{model_id}:"
        with self.redis.pipeline(transaction=False) as pipe:
            for n, (text_hash, vector) in enumerate(known.items()):
                pipe.set(prefix + text_hash, vector.astype("<f4").tobytes())
                if n % 5000 == 4999:
                    pipe.execute()
            pipe.execute()
        return len(known)


def load_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.exists():
        return {}
    with np.load(path) as data:
        return {str(h): v for h, v in zip(data["hashes"], data["vectors"])}


def _scale_posts(scale: str) -> int:
    from demo.generator import SCALES

    return SCALES[scale][1] if scale in SCALES else 1_000_000
