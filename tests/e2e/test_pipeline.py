"""The whole local stack, as `make dev` runs it: MariaDB change → searchable, and what breaks it.

Real MariaDB with binlog, real broker, real Redis, the real model and the edge Qdrant engine; the
services run as separate processes, so a test can kill one with SIGKILL.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import orjson
import pymysql
import pytest
from confluent_kafka import Consumer, Producer

from demo.generator import generate
from demo.seed import seed_database
from devstack.processes import apply_schema
from devstack.stack import LocalStack
from shared.classification.labelling import TierOneLabeller
from shared.classification.taxonomy import TaxonomyCatalog
from shared.embedding import load_text_embedder
from shared.events import PostRecord
from tests.conftest import MODEL_CACHE_DIR, api_headers, wait_for
from tests.e2e.source_of_truth import VIABLE_POSTS_SQL
from tests.support.fake_llm import FakeLlmServer

pytestmark = pytest.mark.slow

DATABASE = "e2e"
PREFIX = "e2e"
ANCHOR = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0, tzinfo=None)
FIXTURES = Path(__file__).parent.parent / "fixtures"
NEXT_ID = iter(range(10_000_000, 20_000_000))



class Pipeline:
    def __init__(self, stack: LocalStack, llm: FakeLlmServer) -> None:
        self.stack = stack
        self.llm = llm  # the LLM endpoint the classifier's tier 2 calls
        self.http = httpx.Client(base_url=stack.api_url, timeout=10, headers=api_headers(stack))
        self.producer = Producer({"bootstrap.servers": f"127.0.0.1:{stack.config.broker_port}"})

    def sql(self, statement: str, params: tuple = ()) -> list[tuple]:
        connection = pymysql.connect(host="127.0.0.1", port=self.stack.config.mariadb_port, user="root",
                                     database=DATABASE, autocommit=True, charset="utf8mb4")
        try:
            with connection.cursor() as cursor:
                cursor.execute(statement, params)
                return list(cursor.fetchall())
        finally:
            connection.close()

    def viable_post_ids(self) -> set[int]:
        return {row[0] for row in self.sql(VIABLE_POSTS_SQL)}

    def viable_account(self) -> int:
        return self.sql(f"SELECT account_id FROM ({VIABLE_POSTS_SQL}) v JOIN posts USING (id) LIMIT 1")[0][0]

    def points(self) -> int:
        return self.http.get("/v1/status").json()["points"]

    def search(self, query: str, limit: int = 10, **filters) -> list[dict]:
        response = self.http.post("/v1/search/posts", json={"query": query, "limit": limit, "filters": filters})
        assert response.status_code == 200, response.text
        return response.json()["results"]

    def indexed_post(self, post_id: int) -> dict | None:
        response = self.http.get(f"/v1/posts/{post_id}")
        return response.json()["post"] if response.status_code == 200 else None

    def insert_post(self, account_id: int, title: str, description: str = "") -> int:
        post_id = next(NEXT_ID)
        self.sql(
            "INSERT INTO posts (id, account_id, platform, title, description, url, published_at, views, likes,"
            " comments, updated_at) SELECT %s, id, platform, %s, %s, NULL, UTC_TIMESTAMP(3), 10, 1, 0,"
            " UTC_TIMESTAMP(3) FROM accounts WHERE id = %s",
            (post_id, title, description, account_id),
        )
        return post_id

    def settle(self, timeout: float = 240) -> set[int]:
        """Wait until the index holds exactly as many points as MariaDB has viable posts."""
        expected = self.viable_post_ids()
        wait_for(lambda: self.points() == len(expected), timeout=timeout,
                 what=f"{len(expected)} indexed points")
        return expected


@pytest.fixture(scope="module")
def pipeline(infra, tmp_path_factory):
    llm = FakeLlmServer().start()  # the one double allowed: a paid LLM endpoint, as a real HTTP server
    config = replace(infra.config, root=Path(tmp_path_factory.mktemp("e2e")), database=DATABASE, topic_prefix=PREFIX,
                     extra_env={**infra.config.extra_env, "LLM_BASE_URL": llm.base_url, "LLM_MODEL": "fake-model"})
    apply_schema(config.mariadb_port, DATABASE)
    seed_database(port=config.mariadb_port, database=DATABASE, scale="tiny", anchor=ANCHOR)
    stack = LocalStack(config)
    try:
        stack.start_services()
        pipe = Pipeline(stack, llm)
        pipe.settle()
        yield pipe
    finally:
        stack.stop()
        llm.stop()


def test_seeded_viable_posts_are_indexed_and_searchable_by_topic(pipeline):
    _, posts = generate("tiny", anchor=ANCHOR)
    vertical_of = {post.id: post.vertical for post in posts}
    assert pipeline.points() == len(pipeline.viable_post_ids()) > 100
    for query, vertical in [("leg day workout to build muscle at the gym", "fitness"),
                            ("budget travel itinerary and hidden beaches", "travel")]:
        hits = pipeline.search(query, limit=10)
        on_topic = [vertical_of[h["post_id"]] == vertical for h in hits]
        assert sum(on_topic) >= 7, (query, [(h["post"]["title"], vertical_of[h["post_id"]]) for h in hits])


def test_insert_update_delete_reach_search_within_seconds(pipeline):
    account = pipeline.viable_account()
    title = "Paddling a zebra-striped kayak across the frozen fjords of Svalbard"
    started = time.monotonic()
    post_id = pipeline.insert_post(account, title, "Ice, seals and a very cold paddle.")
    wait_for(lambda: pipeline.indexed_post(post_id), timeout=5, interval=0.05, what="the inserted post")
    insert_seconds = time.monotonic() - started
    assert pipeline.search("kayak trip in the arctic fjords", limit=3)[0]["post_id"] == post_id
    print(f"insert → searchable in {insert_seconds:.2f}s")

    new_title = "Baking sourdough bread with a rye starter in a cast-iron pot"
    pipeline.sql("UPDATE posts SET title = %s, description = %s WHERE id = %s", (new_title, "Crust!", post_id))
    wait_for(lambda: (pipeline.indexed_post(post_id) or {}).get("title") == new_title, timeout=5, interval=0.05,
             what="the updated title")
    assert pipeline.search("sourdough rye bread baking", limit=3)[0]["post_id"] == post_id
    assert post_id not in [h["post_id"] for h in pipeline.search("kayak trip in the arctic fjords", limit=10)]

    pipeline.sql("DELETE FROM posts WHERE id = %s", (post_id,))
    wait_for(lambda: pipeline.indexed_post(post_id) is None, timeout=5, interval=0.05, what="the delete")
    assert post_id not in [h["post_id"] for h in pipeline.search("sourdough rye bread baking", limit=10)]


def _labels(post: dict, tier: str, taxonomy: str = "default") -> set[str]:
    return {v["vertical"] for v in post["verticals"] if v["taxonomy"] == taxonomy and v["tier"] == tier}


def test_posts_are_labelled_by_tier_one_and_unsure_ones_by_the_llm(pipeline):
    account = pipeline.viable_account()
    # Tier 1, at write time: a plainly culinary post is labelled food and found by the vertical filter.
    food = pipeline.insert_post(account, "Homemade pizza dough recipe with fresh mozzarella and basil",
                                "Knead, proof overnight, bake in a very hot oven, eat.")
    post = wait_for(lambda: pipeline.indexed_post(food), timeout=10, interval=0.1, what="the food post")
    assert "food" in _labels(post, "embedding"), post["verticals"]
    filtered = pipeline.search("pizza", limit=5, verticals={"taxonomy": "default", "verticals": ["food"]})
    assert food in [h["post_id"] for h in filtered]

    # Tier 2: a post tier 1 is unsure about goes to the LLM, whose answer replaces tier 1's labels
    # of that taxonomy. The test LLM labels a post with every vertical whose name is in its text.
    catalog = TaxonomyCatalog.load()
    labeller = TierOneLabeller(catalog, load_text_embedder(MODEL_CACHE_DIR).embed)
    # Two verticals named side by side make close calls, the surest way to an unsure tier 1.
    names = sorted({v.name for t in catalog.all() for v in t.verticals if v.enabled and "_" not in v.name})
    candidates = [f"Today's vlog: a bit of {a} and a bit of {b}" for i, a in enumerate(names) for b in names[i + 1:]]
    texts = [PostRecord(id=1, account_id=1, platform="x", title=t, published_at=1).embedding_text() for t in candidates]

    def named(text: str, taxonomy: str) -> set[str]:
        return {v.name for v in catalog.get(taxonomy).verticals if v.enabled and v.name in text.lower()}

    unsure = [(text, result.taxonomy) for text, results in zip(candidates, labeller.results(labeller.embed(texts)))
              for result in results if result.uncertain and named(text, result.taxonomy)]
    assert unsure, "no candidate text is uncertain for tier 1 any more: add new ones"
    text, taxonomy = unsure[0]
    asked_before = len(pipeline.llm.requests)
    post_id = pipeline.insert_post(account, text)
    expected = named(text, taxonomy)

    def llm_labels(post: dict) -> set[str]:
        return {v["vertical"] for v in post["verticals"] if v["taxonomy"] == taxonomy and v["tier"] == "llm"}

    post = wait_for(lambda: (p := pipeline.indexed_post(post_id)) and llm_labels(p) and p, timeout=20, interval=0.2,
                    what=f"the LLM's {taxonomy} labels on the unsure post")
    assert llm_labels(post) == expected
    assert not {v["vertical"] for v in post["verticals"] if v["taxonomy"] == taxonomy and v["tier"] == "embedding"}
    assert len(pipeline.llm.requests) > asked_before
    # Asked about the unsure posts only, never about every post.
    asked = {p["text"] for r in pipeline.llm.requests for p in r.posts}
    assert 0 < len(asked) < pipeline.points()
    spend = pipeline.http.get("/v1/status").json()["llm_spend"]
    assert spend["calls"] > 0 and spend["usd"] > 0
    # The classifier exports what it saw: the unsure share, and the window of predicted verticals (drift).
    metrics = httpx.get(f"http://127.0.0.1:{pipeline.stack.config.ops_port('classifier')}/metrics").text
    assert 'classifier_posts_total{route="uncertain",taxonomy="default"}' in metrics
    assert 'vertical_predicted_share{taxonomy="default",vertical="food"}' in metrics

    # A person's correction through the API shows on the post within seconds (the learner runs in
    # the query process) and becomes a few-shot example for tier 1.
    response = pipeline.http.post("/v1/feedback", json={"post_id": food, "taxonomy": "default", "vertical": "food",
                                                        "correct_vertical": "travel"})
    assert response.status_code == 202, response.text
    post = wait_for(lambda: (p := pipeline.indexed_post(food)) and "travel" in _labels(p, "human") and p,
                    timeout=15, interval=0.2, what="the corrected label")
    assert "food" not in {v["vertical"] for v in post["verticals"] if v["taxonomy"] == "default"}


def test_cdc_killed_mid_load_loses_and_duplicates_nothing(pipeline):
    accounts = [row[0] for row in pipeline.sql(
        f"SELECT DISTINCT account_id FROM ({VIABLE_POSTS_SQL}) v JOIN posts USING (id) LIMIT 5")]
    inserted: list[int] = []

    def load() -> None:
        for batch in range(40):
            for n in range(10):
                account = accounts[(batch + n) % len(accounts)]
                inserted.append(pipeline.insert_post(account, f"Load test post {batch}-{n} about camera gear"))
            time.sleep(0.05)

    loader = threading.Thread(target=load)
    loader.start()
    wait_for(lambda: len(inserted) >= 100, timeout=60, what="the load to start")
    pipeline.stack.services["cdc"].kill()  # SIGKILL: no chance to flush or checkpoint
    time.sleep(1)
    pipeline.stack.start_service("cdc")
    loader.join()
    expected = pipeline.settle(timeout=180)
    assert set(inserted) <= expected
    missing = [post_id for post_id in inserted if pipeline.indexed_post(post_id) is None]
    assert missing == []
    assert pipeline.points() == len(expected)  # equal counts + deterministic ids: no extras, no duplicates


def _dlq_messages(pipeline: Pipeline, topic: str, expected: int) -> list:
    consumer = Consumer({"bootstrap.servers": f"127.0.0.1:{pipeline.stack.config.broker_port}",
                         "group.id": f"dlq-reader-{time.time()}", "auto.offset.reset": "earliest",
                         "session.timeout.ms": 6000})
    consumer.subscribe([f"{topic}.dlq"])
    found: list = []
    deadline = time.monotonic() + 30
    while len(found) < expected and time.monotonic() < deadline:
        found += [m for m in consumer.consume(100, 0.5) if m.error() is None]
    consumer.close()
    return found


def test_malformed_events_go_to_the_dlq_and_the_pipeline_keeps_going(pipeline):
    posts_topic = f"{PREFIX}.{DATABASE}.posts"
    viable_topic = f"{PREFIX}.pipeline.posts.viable"
    garbage = [b"{not json", b'{"op": "c", "after": {"id": "seven"}}', b'[1, 2, 3]',
               orjson.dumps({"before": None, "after": {"id": 1, "title": 5}, "source": {"ts_ms": 1, "db": "e2e"},
                             "op": "x"})]
    for value in garbage:
        pipeline.producer.produce(posts_topic, key=b'{"id": 1}', value=value)
        pipeline.producer.produce(viable_topic, key=b'{"account_id": 1}', value=value)
    pipeline.producer.flush(10)
    post_id = pipeline.insert_post(pipeline.viable_account(), "A harmless post written after the garbage")
    wait_for(lambda: pipeline.indexed_post(post_id), timeout=15, what="a valid post after malformed ones")
    for topic in (posts_topic, viable_topic):
        letters = _dlq_messages(pipeline, topic, len(garbage))
        assert sorted(m.value() for m in letters) == sorted(garbage)
        for letter in letters:
            headers = dict(letter.headers())
            assert headers["dlq.topic"].decode() == topic
            assert headers["dlq.error.class"] == b"MalformedEvent"
            assert headers["dlq.error.message"]
    for name in ("cdc", "viability", "embedder", "query"):
        assert pipeline.stack.services[name].alive, name


def _debezium_fixture(name: str, **values) -> bytes:
    text = (FIXTURES / name).read_text().replace("__PREFIX__", PREFIX).replace("__DB__", DATABASE)
    return text.replace("__TITLE__", values.pop("title", "")).encode()


@pytest.mark.parametrize("wrapped", [True, False], ids=["schemas.enable=true", "plain"])
def test_real_debezium_events_in_both_json_flavours_are_indexed(pipeline, wrapped):
    post_id, account = next(NEXT_ID), pipeline.viable_account()
    title = f"Night timelapse of the aurora over a glacier lagoon ({'wrapped' if wrapped else 'plain'})"
    value = json.loads(_debezium_fixture("debezium_post_schema_wrapped.json", title=title))
    key = json.loads(_debezium_fixture("debezium_key_schema_wrapped.json"))
    now_ms = int(time.time() * 1000)
    value["payload"]["after"].update(id=post_id, account_id=account, published_at=now_ms, updated_at=now_ms)
    value["payload"]["source"].update(ts_ms=now_ms)
    value["payload"]["ts_ms"] = now_ms
    key["payload"]["id"] = post_id
    if not wrapped:
        value, key = value["payload"], key["payload"]
    pipeline.producer.produce(f"{PREFIX}.{DATABASE}.posts", key=orjson.dumps(key), value=orjson.dumps(value))
    pipeline.producer.flush(10)
    indexed = wait_for(lambda: pipeline.indexed_post(post_id), timeout=15, what="the Debezium event's post")
    assert indexed["title"] == title
    assert indexed["account_id"] == account
    assert indexed["published_at"] == now_ms


def _status_when_idle(pipeline: Pipeline) -> dict | None:
    status = pipeline.http.get("/v1/status").json()
    return status if all(s["lag"] == 0 for s in status["services"] if s["consumer_group"]) else None


def test_status_reports_the_running_pipeline(pipeline):
    """After the tests above: nothing left to do, their dead letters counted, live inserts fresh."""
    status = wait_for(lambda: _status_when_idle(pipeline), timeout=30, what="zero consumer lag")
    # The Debezium-fixture posts went straight to Kafka, not MariaDB: the index holds them too.
    assert status["kafka"]["reachable"] and status["points"] >= len(pipeline.viable_post_ids())
    by_name = {s["service"]: s for s in status["services"]}
    assert by_name["viability"]["dlq_messages"] >= 4 and by_name["embedder"]["dlq_messages"] >= 4
    assert by_name["cdc"]["position"] > 0 and by_name["indexer"]["position"] > 0
    # make dev's process is the edge host: the API says its writer runs next to it.
    assert status["indexer_running"] and pipeline.http.get("/healthz").json() == {"status": "ok",
                                                                                 "indexer_running": True}
    assert status["freshness"]["samples"] > 0 and 0 <= status["freshness"]["p50_s"] < 30
    assert status["index"]["keyword_vectors"] == status["points"]
    embedding = next(c for c in status["caches"] if c["cache"] == "embedding")
    assert embedding["service"] == "embedder" and embedding["misses"] > 0
