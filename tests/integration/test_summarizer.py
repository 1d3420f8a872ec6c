"""The summarizer end to end on real parts: pipeline events on the broker, dirty marks in Redis, posts
and summaries in the Qdrant edge engine, vectors from the real model, account search over the API.

Posts reach the posts collection the way the indexer writes them (its point builder) with vertical
labels added as the classifier does; they are written only after the events, so the test also
proves the summarizer waits for the index to show an account's latest event.
"""

from __future__ import annotations

import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from demo.generator import AccountRow, PostRow, generate
from ops.dlq import read_dead_letters
from services.indexer.core import plan_writes
from services.query.app import QuerySettings, create_app
from services.summarizer.dirty import DirtyAccounts
from services.summarizer.refresh import AccountRefresher, account_point_id
from services.summarizer.service import SummarizerParts, mark_all_accounts, summarizer_versions
from shared.auth import RateLimit, Scope
from shared.classification.taxonomy import VerticalLabel, verticals_payload
from shared.config import KafkaSettings, SummarizerSettings
from shared.embedding import TextEmbedder, load_text_embedder
from shared.events import (
    AccountFields,
    AccountPurge,
    EmbeddedPostUpsert,
    PostRecord,
    PostUpsert,
    SourcePosition,
    account_key,
    encode,
)
from shared.index_registry import IndexRegistry, IndexVersion
from shared.kafka import OutboundMessage, ensure_topics, make_producer, produce_all
from shared.stored_post import payload_fields
from shared.vectorstore import EdgeVectorStore, PointRecord, SearchFilter
from tests.api.corpus import build_context, taxonomy_dir
from tests.conftest import MODEL_CACHE_DIR, wait_for

ANCHOR = datetime(2025, 6, 1, 12, 0, 0)
# account id -> posts taken: a burst of 50 for the travel account, 30 for the others.
CHOSEN = {4: 50, 8: 30, 12: 30, 5: 30}  # youtube travel, x food, tiktok gaming, tiktok automotive
DEBOUNCE_S = 2.0
POSTS = "posts"
ACCOUNTS = "accounts"


def _ms(moment: datetime) -> int:
    return int(moment.replace(tzinfo=timezone.utc).timestamp() * 1000)


def refreshes(outcome: str) -> float:
    return REGISTRY.get_sample_value("summarizer_refreshes_total", {"outcome": outcome}) or 0.0


class Pipeline:
    """The summarizer running against a private topic prefix, plus what the test needs to feed it."""

    def __init__(self, kafka: KafkaSettings, store: EdgeVectorStore, redis_client: redis.Redis,
                 embedder: TextEmbedder) -> None:
        self.kafka, self.store, self.redis, self.embedder = kafka, store, redis_client, embedder
        self.topic = kafka.embedded_posts_topic
        ensure_topics(kafka, [self.topic])
        self.registry = IndexRegistry(redis_client, kafka.topic_prefix, alias=POSTS)
        self.registry.bootstrap(POSTS, self.topic, f"{kafka.topic_prefix}-indexer")
        self.dirty = DirtyAccounts(redis_client, kafka.topic_prefix, ACCOUNTS)
        self.producer = make_producer(kafka)
        self.position = 0
        self.scratch = Path(".")

    def position_next(self) -> SourcePosition:
        self.position += 100
        return SourcePosition(ts_ms=int(time.time() * 1000), file="mariadb-bin.000001", pos=self.position)

    def produce(self, events: list[tuple[int, object]], topic: str | None = None) -> None:
        produce_all(self.producer, [OutboundMessage(topic or self.topic, account_key(a), encode(e)) for a, e in events])

    def summary(self, account_id: int, collection: str = ACCOUNTS) -> dict | None:
        try:
            found = self.store.retrieve(collection, [account_point_id(account_id)])
        except ValueError:  # not open yet: the summarizer's loop for a new version opens it (its directory
            return None     # may already exist while it does, so collection_exists is no test for this)
        return found[0].payload if found else None


@pytest.fixture(scope="module")
def embedder() -> TextEmbedder:
    return load_text_embedder(MODEL_CACHE_DIR)


@pytest.fixture(scope="module")
def demo() -> tuple[dict[int, AccountRow], dict[int, list[PostRow]]]:
    accounts, stream = generate("tiny", anchor=ANCHOR)
    posts: dict[int, list[PostRow]] = {a: [] for a in CHOSEN}
    for post in stream:
        if post.account_id in CHOSEN and len(posts[post.account_id]) < CHOSEN[post.account_id]:
            posts[post.account_id].append(post)
    return {a.id: a for a in accounts if a.id in CHOSEN}, posts


@pytest.fixture(scope="module")
def pipeline(infra, embedder) -> Iterator[Pipeline]:
    kafka = KafkaSettings(kafka_bootstrap_servers=f"127.0.0.1:{infra.config.broker_port}",
                          topic_prefix=f"sum{uuid.uuid4().hex[:8]}")
    redis_client = redis.Redis(host="127.0.0.1", port=infra.config.redis_port)
    root = Path("/dev/shm") if Path("/dev/shm").is_dir() else None  # fast flushes
    with tempfile.TemporaryDirectory(dir=root, prefix="summarizer-") as scratch:
        store = EdgeVectorStore(Path(scratch) / "qdrant")
        store.ensure_collection(POSTS, 384)
        stop = threading.Event()
        settings = SummarizerSettings(summarizer_debounce_s=DEBOUNCE_S, summarizer_poll_s=0.2,
                                      summarizer_background_posts=1_000)
        parts = SummarizerParts(kafka=kafka, store=store, registry=IndexRegistry(redis_client, kafka.topic_prefix,
                                                                                 alias=POSTS),
                                redis=redis_client, embedder=embedder, settings=settings, accounts_base=ACCOUNTS)
        versions = summarizer_versions(parts, stop)
        pipe = Pipeline(kafka, store, redis_client, embedder)
        thread = threading.Thread(target=versions.run, daemon=True)
        thread.start()
        pipe.scratch = Path(scratch)
        yield pipe
        stop.set()
        thread.join(30)
        store.close()


def embedded_events(pipe: Pipeline, demo, chosen=tuple(CHOSEN)) -> list[tuple[int, EmbeddedPostUpsert]]:
    accounts, posts = demo
    rows = [p for a in chosen for p in posts[a]]
    vectors = pipe.embedder.embed([f"{p.title}\n{p.description or ''}".strip() for p in rows])
    events = []
    for post, vector in zip(rows, vectors, strict=True):
        account = accounts[post.account_id]
        record = PostRecord(id=post.id, account_id=post.account_id, platform=post.platform, title=post.title,
                            description=post.description, url=post.url, published_at=_ms(post.published_at),
                            views=post.views, likes=post.likes, comments=post.comments)
        upsert = PostUpsert(post=record, account=AccountFields(handle=account.handle, display_name=account.display_name,
                                                               followers=account.followers),
                            position=pipe.position_next())
        events.append((post.account_id, EmbeddedPostUpsert.build(upsert, pipe.embedder.model_id, vector)))
    return events


def index_posts(pipe: Pipeline, events: list[tuple[int, EmbeddedPostUpsert]], demo, collection: str = POSTS) -> None:
    """What the indexer (and the classifier's labels) would write for these events."""
    _, posts = demo
    vertical = {p.id: p.vertical for rows in posts.values() for p in rows}
    for step in plan_writes([e for _, e in events]):
        pipe.store.upsert(collection, [PointRecord(id=p.id, vector=p.vector, sparse=p.sparse, payload={
            **p.payload, **verticals_payload([VerticalLabel(taxonomy="default", vertical=vertical[payload_fields(p.payload)["post_id"]],
                                                            confidence=0.8)])}) for p in step.upserts.values()])


@pytest.fixture(scope="module")
def summarized(pipeline, demo):
    """Every chosen account summarized once: 140 post events (a burst of 50 for account 4)."""
    events = embedded_events(pipeline, demo)
    computed, deferred = refreshes("computed"), refreshes("deferred")
    pipeline.produce(events)
    wait_for(lambda: pipeline.dirty.backlog() == len(CHOSEN), timeout=30, what="every account marked dirty")
    # The debounce passes while the index does not have the posts yet: the worker must wait for it.
    wait_for(lambda: refreshes("deferred") > deferred, timeout=DEBOUNCE_S + 10, what="a refresh deferred")
    assert pipeline.store.count(ACCOUNTS) == 0
    index_posts(pipeline, events, demo)
    wait_for(lambda: pipeline.store.count(ACCOUNTS) == len(CHOSEN), timeout=60, what="one summary per account")
    wait_for(lambda: pipeline.dirty.backlog() == 0, timeout=10, what="nothing left to do")
    time.sleep(DEBOUNCE_S + 1)  # any second recomputation would have happened by now
    return events, refreshes("computed") - computed


def test_a_burst_of_posts_yields_one_summary_per_account(pipeline, summarized, demo):
    _, recomputations = summarized
    assert recomputations == len(CHOSEN)  # 140 events, 4 accounts: 4 summaries, not 140
    accounts, posts = demo
    payload = pipeline.summary(4)
    assert payload["post_count"] == 50 and payload["summary_fields"]["posts"] == 50
    assert payload["handle"] == accounts[4].handle and payload["followers"] == accounts[4].followers
    assert payload["platform"] == "youtube"
    assert payload["vertical_labels"] == ["default:travel"]
    assert payload["verticals"] == [{"taxonomy": "default", "vertical": "travel", "confidence": 1.0}]
    titles = {p.title for p in posts[4]}
    representatives = payload["summary_fields"]["representatives"]
    assert representatives and all(r["title"] in titles for r in representatives)
    assert payload["last_post_at"] == max(_ms(p.published_at) for p in posts[4])
    assert payload["summary"].startswith(f"{accounts[4].display_name} (@{accounts[4].handle}) on youtube")


def test_a_change_below_the_threshold_is_not_recomputed(pipeline, summarized, demo):
    events, _ = summarized
    computed, unchanged = refreshes("computed"), refreshes("unchanged")
    account, replayed = events[-1]  # the same post again (a redelivery): not a material change
    pipeline.produce([(account, replayed)])
    wait_for(lambda: refreshes("unchanged") > unchanged, timeout=DEBOUNCE_S + 10, what="the refresh to run")
    assert refreshes("computed") == computed


def test_account_search_finds_creators_by_topic_with_filters(pipeline, summarized, embedder, demo):
    accounts, _ = demo
    ctx = build_context(store=pipeline.store, embedder=embedder, redis_client=pipeline.redis,
                        taxonomies=taxonomy_dir(pipeline.scratch / "taxonomies"), kafka=pipeline.kafka)
    key = ctx.keys.create("summaries", list(Scope), RateLimit(requests=1_000_000, per_seconds=60)).key
    client = TestClient(create_app(QuerySettings(), context=ctx))

    def search(query: str, **filters) -> list[dict]:
        response = client.post("/v1/search/accounts", json={"query": query, "filters": filters},
                               headers={"X-API-Key": key})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["source"] == "accounts_collection"
        return body["results"]

    travel = search("travel vlog hidden beaches itinerary")
    assert travel[0]["account"]["account_id"] == 4 and travel[0]["summary"] == pipeline.summary(4)["summary"]
    tiktok = search("cars engines and road trips", platform=["tiktok"])
    assert {r["account"]["account_id"] for r in tiktok} == {5, 12}
    assert tiktok[0]["account"]["account_id"] == 5  # automotive
    food = search("recipes", verticals={"taxonomy": "default", "verticals": ["food"], "min_confidence": 0.5})
    assert [r["account"]["account_id"] for r in food] == [8]
    big = search("videos", min_followers=40_000)
    assert {r["account"]["account_id"] for r in big} == {a for a, row in accounts.items() if row.followers >= 40_000}
    detail = client.get("/v1/accounts/8", headers={"X-API-Key": key}).json()
    assert detail["summary"] == pipeline.summary(8)["summary"]
    ctx.status.close()


def test_a_purge_removes_the_summary_and_it_does_not_come_back(pipeline, summarized):
    deleted = refreshes("deleted")
    pipeline.produce([(4, AccountPurge(account_id=4, reason="not viable", position=pipeline.position_next()))])
    wait_for(lambda: pipeline.summary(4) is None, timeout=20, what="the summary gone")
    # The indexer has not purged the posts yet: the due refresh must wait, not summarize them again.
    time.sleep(DEBOUNCE_S + 1.5)
    assert pipeline.summary(4) is None and pipeline.dirty.backlog() == 1
    pipeline.store.delete_where(POSTS, SearchFilter(account_id=[4]))
    wait_for(lambda: refreshes("deleted") > deleted and pipeline.dirty.backlog() == 0, timeout=10,
             what="the refresh to find no posts")
    assert pipeline.summary(4) is None
    assert {p for p in (5, 8, 12) if pipeline.summary(p)} == {5, 8, 12}


def test_malformed_events_go_to_the_dead_letter_topic(pipeline):
    produce_all(pipeline.producer, [OutboundMessage(pipeline.topic, account_key(99), b"{not json")])
    wait_for(lambda: [r for r in read_dead_letters(pipeline.kafka, pipeline.topic)
                      if r.header("dlq.service") == "summarizer"], timeout=20, what="a dead letter")


def test_a_replay_version_gets_its_own_accounts_collection(pipeline, summarized, demo):
    """posts_v2 (a replay being built from its own topic) is summarized into accounts_v2; the live
    accounts collection is left alone, so the alias switch moves account search with post search."""
    topic = f"{pipeline.topic}.posts_v2"
    ensure_topics(pipeline.kafka, [topic])
    pipeline.store.ensure_collection("posts_v2", 384)
    pipeline.registry.register(IndexVersion(collection="posts_v2", version=2, source_topic=topic,
                                            indexer_group=f"{pipeline.kafka.topic_prefix}-indexer-posts_v2"))
    live_summary = pipeline.summary(8)
    events = embedded_events(pipeline, demo, chosen=(8,))
    pipeline.produce(events, topic=topic)
    index_posts(pipeline, events, demo, collection="posts_v2")
    wait_for(lambda: pipeline.summary(8, "accounts_v2"),
             timeout=60, what="the replay's account summary")
    assert pipeline.store.count("accounts_v2") == 1
    assert pipeline.summary(8, "accounts_v2")["post_count"] == 30
    assert pipeline.summary(8) == live_summary


def test_accounts_written_before_the_account_vectors_are_rebuilt_for_every_account(pipeline, summarized):
    """An accounts collection without the centroid/themes/terms vectors (as written before them) is
    dropped and created anew, and every account with indexed posts is marked due and summarized again."""
    old = "accounts_before_vectors"
    pipeline.store.ensure_collection(old, 384)
    pipeline.store.upsert(old, [PointRecord(id=account_point_id(4), vector=[1.0] + [0.0] * 383)])
    refresher = AccountRefresher(pipeline.store, POSTS, old, pipeline.embedder, SummarizerSettings())
    assert refresher.recreated and pipeline.store.count(old) == 0
    dirty = DirtyAccounts(pipeline.redis, pipeline.kafka.topic_prefix, old)
    mark_all_accounts(pipeline.store, POSTS, dirty)
    now_ms = int(time.time() * 1000)
    claimed = dirty.claim(now_ms, 60_000, 100)
    with_posts = {a for a in CHOSEN if pipeline.store.count(POSTS, SearchFilter(account_id=[a]))}  # one was purged
    assert with_posts and {c.account_id for c in claimed} >= with_posts
    outcomes = {c.account_id: refresher.refresh(c, now_ms).outcome for c in claimed}
    assert {a for a, outcome in outcomes.items() if outcome == "computed"} == with_posts
    assert pipeline.store.count(old) == len(with_posts)
    assert not AccountRefresher(pipeline.store, POSTS, old, pipeline.embedder, SummarizerSettings()).recreated
