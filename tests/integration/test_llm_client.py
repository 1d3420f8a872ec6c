"""The LLM tier over real HTTP: a fake OpenAI-compatible server started here (the only test double
the project allows, for a paid endpoint) and a real private Redis.

Proves batching, adaptive concurrency under 429s, Retry-After, retries on 5xx and malformed answers,
fail-fast on other 4xx, timeouts inside a total deadline, strict label validation, exact token and
dollar accounting (Prometheus and the Redis ledger), the answer cache and the spend cap.
"""

from __future__ import annotations

import math
import random
import time
import uuid
from collections.abc import Iterator

import orjson
import pytest
import redis

from ops.llm_cost import main as llm_cost_main
from services.classifier.llm_tier import LlmVerticalClassifier, PostToLabel, prompt_fingerprint
from shared.cache import connect_redis
from shared.classification.taxonomy import Taxonomy
from shared.config import LlmSettings
from shared.events import content_hash
from shared.llm import LlmClient, LlmRejected, LlmUnavailable
from shared.metrics import (
    CACHE_ERRORS,
    CACHE_REQUESTS,
    LLM_BUDGET_STOPS,
    LLM_COST_USD,
    LLM_LABELS_DROPPED,
    LLM_REQUESTS,
    LLM_TOKENS,
)
from shared.spend import read_llm_spend, read_spend_breakdown
from tests.support.fake_llm import FakeLlmServer, Reply, taxonomy_names
from tests.support.redis_server import free_port, private_redis

TOPICS = ["food", "travel", "fitness"]


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory) -> Iterator[str]:
    with private_redis(tmp_path_factory.mktemp("llm-redis")) as url:
        yield url


@pytest.fixture
def redis_client(redis_url) -> redis.Redis:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()  # each test starts with an empty ledger and cache
    return client


@pytest.fixture
def server() -> Iterator[FakeLlmServer]:
    with FakeLlmServer() as fake:
        yield fake


def unique(prefix: str) -> str:
    # Prometheus counters are process-wide: a fresh model/taxonomy name gives each test its own series.
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def make_taxonomy() -> Taxonomy:
    verticals = [{"name": n, "description": f"posts about {n}"} for n in TOPICS]
    verticals.append({"name": "gaming", "description": "video games", "enabled": False})
    return Taxonomy.model_validate({"name": unique("tax"), "verticals": verticals})


def make_client(server: FakeLlmServer, redis_client: redis.Redis | None, **overrides) -> LlmClient:
    settings = {"llm_base_url": server.base_url, "llm_model": unique("model"), "llm_backoff_base_s": 0.01,
                "llm_request_timeout_s": 5.0, "llm_deadline_s": 30.0, "llm_batch_size": 4, **overrides}
    return LlmClient(LlmSettings(**settings), redis_client, rng=random.Random(7))


def make_posts(n: int, start: int = 0) -> list[PostToLabel]:
    posts = []
    for i in range(start, start + n):
        text = f"post {i}: notes on {TOPICS[i % 3]}" + (f" and {TOPICS[(i + 1) % 3]}" if i % 2 else "")
        posts.append(PostToLabel(post_id=i, content_hash=content_hash(text), text=text))
    return posts


def expected_verticals(post: PostToLabel) -> list[str]:
    return sorted(t for t in TOPICS if t in post.text)


def metric_sum(metric, name_suffix: str = "_total", **match: str) -> float:
    return sum(s.value for family in metric.collect() for s in family.samples
               if s.name.endswith(name_suffix) and all(s.labels.get(k) == v for k, v in match.items()))


# --- batching, labels ----------------------------------------------------------------------------


def test_posts_go_in_batches_and_come_back_with_valid_llm_labels(server, redis_client):
    client = make_client(server, redis_client, llm_batch_size=16)
    taxonomy = make_taxonomy()
    posts = make_posts(45)
    result = LlmVerticalClassifier(client).classify(taxonomy, posts)
    assert len(server.requests) == math.ceil(45 / 16) == result.requests
    assert sorted(len(r.posts) for r in server.requests) == [13, 16, 16]
    assert "gaming" not in taxonomy_names(server.requests[0].body)  # disabled verticals are not offered
    assert server.requests[0].body["response_format"] == {"type": "json_object"}  # no schema unless asked
    assert result.failed == {}
    for post in posts:
        labels = result.labels[post.post_id]
        assert sorted(label.vertical for label in labels) == expected_verticals(post)
        assert all(label.taxonomy == taxonomy.name and label.confidence == 0.9 for label in labels)
        assert all(getattr(label, "tier", "llm") == "llm" for label in labels)


def test_the_answer_schema_is_sent_when_the_endpoint_constrains_decoding(server, redis_client):
    client = make_client(server, redis_client, llm_json_schema=True)
    LlmVerticalClassifier(client).classify(make_taxonomy(), make_posts(2))
    schema = server.requests[0].body["response_format"]["schema"]
    label = schema["properties"]["results"]["items"]["properties"]["labels"]["items"]
    assert label["properties"]["vertical"]["enum"] == sorted(TOPICS)  # enabled verticals only


def test_long_posts_are_cut_to_the_token_budget_before_they_are_sent(server, redis_client):
    client = make_client(server, redis_client, llm_post_token_budget=50)
    long_text = "food " * 2000  # ~2,500 tokens
    LlmVerticalClassifier(client).classify(make_taxonomy(), [PostToLabel(1, content_hash(long_text), long_text)])
    sent = server.requests[0].posts[0]["text"]
    assert len(sent) <= 50 * 4 + 2 and sent.startswith("food food")


# --- 429s, Retry-After, concurrency ------------------------------------------------------------


def test_concurrency_adapts_to_429s_and_every_post_is_still_labelled(redis_client):
    # The endpoint takes 2 requests at a time; the client starts with 8 in flight.
    with FakeLlmServer(delay_s=0.15, capacity=2, capacity_retry_after="0.05") as server:
        client = make_client(server, redis_client, llm_max_concurrency=8, llm_batch_size=2, llm_max_retries=30)
        result = LlmVerticalClassifier(client).classify(make_taxonomy(), make_posts(64))
    assert result.failed == {} and len(result.labels) == 64
    throttled = [r for r in server.requests if r.status == 429]
    assert throttled, "the client never went over the endpoint's capacity"
    assert client.limiter.limit < 8  # the limit came down...
    second_half = server.requests[len(server.requests) // 2:]
    assert max(r.in_flight_at_arrival for r in second_half) <= 4  # ...and the server saw it
    assert sum(r.status == 429 for r in second_half) / len(second_half) < 0.5
    assert metric_sum(LLM_REQUESTS, model=client.model, outcome="rate_limited") == len(throttled)
    assert metric_sum(LLM_REQUESTS, model=client.model, outcome="ok") == 32


def test_a_429_retry_waits_for_retry_after(server, redis_client):
    client = make_client(server, redis_client, llm_max_concurrency=1)
    server.script(Reply(status=429, headers={"retry-after": "0.5"}))
    completion = client.complete([{"role": "user", "content": "hello"}], stage="summarize")
    assert completion.attempts == 2 and [r.status for r in server.requests] == [429, 200]
    waited = server.requests[1].arrived - server.requests[0].finished
    assert waited >= 0.45  # the jittered backoff alone (base 0.01 s) would be ~10 ms


# --- retries and failures ---------------------------------------------------------------------


def test_5xx_answers_are_retried_until_one_succeeds(server, redis_client):
    client = make_client(server, redis_client)
    server.script(Reply(status=500), Reply(status=503), Reply(status=502))
    result = LlmVerticalClassifier(client).classify(make_taxonomy(), make_posts(3))
    assert [r.status for r in server.requests] == [500, 503, 502, 200]
    assert result.failed == {} and len(result.labels) == 3
    assert metric_sum(LLM_REQUESTS, model=client.model, outcome="server_error") == 3


def test_a_rejected_request_fails_at_once_without_retries(redis_client):
    with FakeLlmServer(required_key="right-key") as server:
        client = make_client(server, redis_client, llm_api_key="wrong-key")
        with pytest.raises(LlmRejected, match="401"):
            client.complete([{"role": "user", "content": "hi"}], stage="summarize")
        result = LlmVerticalClassifier(client).classify(make_taxonomy(), make_posts(5))
    assert len(server.requests) == 1 + 2  # one per call: no retry of a 4xx
    assert result.labels == {} and set(result.failed) == set(range(5))
    assert all(reason.startswith("LlmRejected") for reason in result.failed.values())
    assert server.requests[0].headers["authorization"] == "Bearer wrong-key"


def test_slow_answers_time_out_and_the_batch_fails_within_its_deadline(redis_client):
    with FakeLlmServer(delay_s=5.0) as server:
        client = make_client(server, redis_client, llm_request_timeout_s=0.4, llm_deadline_s=1.5,
                             llm_max_retries=10, llm_batch_size=2)
        started = time.monotonic()
        result = LlmVerticalClassifier(client).classify(make_taxonomy(), make_posts(4))
        elapsed = time.monotonic() - started
    assert elapsed < 1.5 + 0.5  # the deadline bounds the whole batch, retries included
    assert result.labels == {} and set(result.failed) == {0, 1, 2, 3}
    assert all(reason.startswith("LlmUnavailable") for reason in result.failed.values())
    assert len(server.requests) >= 4  # each of the 2 requests was retried after its timeout
    assert metric_sum(LLM_REQUESTS, model=client.model, outcome="timeout") == len(server.requests)


def test_one_request_never_outlives_the_deadline_even_with_a_long_timeout(redis_client):
    with FakeLlmServer(delay_s=5.0) as server:
        client = make_client(server, redis_client, llm_request_timeout_s=60, llm_deadline_s=0.8)
        started = time.monotonic()
        with pytest.raises(LlmUnavailable):
            client.complete([{"role": "user", "content": "hi"}], stage="summarize")
        assert time.monotonic() - started < 1.3


def test_malformed_answers_are_retried_and_their_tokens_still_booked(server, redis_client):
    client = make_client(server, redis_client)
    server.script(Reply(body=b'{"choices": [oops'),                 # not JSON at all
                  Reply(content="Sure! Here are the labels: food"),   # prose, not JSON
                  Reply(content='{"results": "food"}'))               # JSON of the wrong shape
    result = LlmVerticalClassifier(client).classify(make_taxonomy(), make_posts(2))
    assert len(server.requests) == 4 and result.failed == {} and len(result.labels) == 2
    assert metric_sum(LLM_REQUESTS, model=client.model, outcome="malformed") == 3
    prompt, completion = server.billed()  # 3 answers carried usage: 2 malformed + the good one
    assert sum(r.usage is not None for r in server.requests) == 3
    assert metric_sum(LLM_TOKENS, model=client.model, kind="prompt") == prompt
    assert metric_sum(LLM_TOKENS, model=client.model, kind="prompt", vertical="-") > 0  # the malformed ones


def test_labels_outside_the_taxonomy_are_dropped_and_counted(redis_client):
    def sloppy_model(request: dict) -> str:
        posts = orjson.loads(request["messages"][-1]["content"])["posts"]
        results = [{"id": p["id"], "labels": [
            {"vertical": "food", "confidence": 0.8}, {"vertical": "pizza", "confidence": 0.9},
            {"vertical": "gaming", "confidence": 0.9}, {"vertical": "travel", "confidence": 1.7},
            {"vertical": "fitness"}]} for p in posts]
        return orjson.dumps({"results": [*results, {"id": 99, "labels": []}]}).decode()

    taxonomy = make_taxonomy()
    with FakeLlmServer(sloppy_model) as server:
        result = LlmVerticalClassifier(make_client(server, redis_client)).classify(taxonomy, make_posts(6))
    assert {post: [(lbl.vertical, lbl.confidence) for lbl in labels] for post, labels in result.labels.items()} == {
        i: [("food", 0.8)] for i in range(6)}

    def dropped(reason: str) -> float:
        return metric_sum(LLM_LABELS_DROPPED, taxonomy=taxonomy.name, reason=reason)

    assert (dropped("unknown_vertical"), dropped("disabled_vertical"), dropped("bad_confidence")) == (6, 6, 12)
    assert dropped("bad_entry") == 2  # the id 99 of each of the 2 requests


def test_posts_the_model_skips_are_asked_again_then_reported_failed(redis_client):
    def forgetful_model(request: dict) -> str:
        posts = orjson.loads(request["messages"][-1]["content"])["posts"]
        kept = [p for p in posts if "never" not in p["text"] and (len(posts) == 1 or p["id"] != 2)]
        return orjson.dumps({"results": [{"id": p["id"], "labels": []} for p in kept]}).decode()

    posts = [PostToLabel(i, content_hash(t), t) for i, t in enumerate(["a", "b", "c", "d", "never answered"])]
    with FakeLlmServer(forgetful_model) as server:
        result = LlmVerticalClassifier(make_client(server, redis_client, llm_batch_size=5)).classify(
            make_taxonomy(), posts)
    # First request: 5 posts, "b" (id 2) and the unanswerable one missing; then the 2 are asked
    # again; "b" is answered; the last round leaves the other one failed.
    assert [len(r.posts) for r in server.requests] == [5, 2]
    assert set(result.labels) == {0, 1, 2, 3} and result.labels[1] == []
    assert result.failed == {4: "missing from the model's answers"}


# --- accounting ---------------------------------------------------------------------------------


def test_tokens_and_dollars_in_metrics_and_ledger_match_what_the_server_billed(server, redis_client, redis_url,
                                                                               capsys):
    client = make_client(server, redis_client, llm_price_prompt_per_mtok=2.5, llm_price_completion_per_mtok=10.0)
    taxonomy = make_taxonomy()
    result = LlmVerticalClassifier(client).classify(taxonomy, make_posts(20))
    prompt, completion = server.billed()
    expected_usd = (prompt * 2.5 + completion * 10.0) / 1e6
    assert len(server.requests) == 5 and prompt > 0 and completion > 0

    assert metric_sum(LLM_TOKENS, model=client.model, kind="prompt") == prompt
    assert metric_sum(LLM_TOKENS, model=client.model, kind="completion") == completion
    assert metric_sum(LLM_COST_USD, model=client.model) == pytest.approx(expected_usd, rel=1e-9)
    assert result.usd == pytest.approx(expected_usd, rel=1e-9)

    ledger = next(m for m in read_llm_spend(redis_client).by_model if m.model == client.model)
    assert (ledger.prompt_tokens, ledger.completion_tokens, ledger.calls) == (prompt, completion, 5)
    assert ledger.usd == pytest.approx(expected_usd, rel=1e-9)

    lines = [line for line in read_spend_breakdown(redis_client) if line.model == client.model]
    assert {line.vertical for line in lines} == set(TOPICS)  # every post here got at least one label
    assert sum(line.prompt_tokens for line in lines) == prompt
    assert sum(line.calls for line in lines) == 5
    for line in lines:  # the same split in Prometheus as in Redis, vertical by vertical
        assert line.stage == "classify" and line.taxonomy == taxonomy.name
        assert metric_sum(LLM_TOKENS, model=client.model, vertical=line.vertical, kind="prompt") == line.prompt_tokens
        assert metric_sum(LLM_COST_USD, model=client.model, vertical=line.vertical) == pytest.approx(line.usd)

    assert llm_cost_main(["--redis-url", redis_url]) == 0
    report = capsys.readouterr().out
    assert client.model in report and taxonomy.name in report and "fitness" in report
    assert f"{expected_usd:.6f}" in report


def test_an_answer_without_usage_is_booked_from_an_estimate_not_for_free(server, redis_client):
    client = make_client(server, redis_client)
    server.script(Reply(content="a short summary", omit_usage=True))
    completion = client.complete([{"role": "user", "content": "summarize " * 40}], stage="summarize")
    assert completion.prompt_tokens > 0 and completion.completion_tokens > 0 and completion.usd > 0
    assert read_llm_spend(redis_client).usd == pytest.approx(completion.usd)


# --- cache and budget --------------------------------------------------------------------------


def test_a_second_pass_makes_no_request_and_costs_nothing(server, redis_client):
    client = make_client(server, redis_client)
    classifier = LlmVerticalClassifier(client)
    taxonomy = make_taxonomy()
    posts = make_posts(10)
    first = classifier.classify(taxonomy, posts)
    requests, spent = len(server.requests), read_llm_spend(redis_client).usd
    hits_before = metric_sum(CACHE_REQUESTS, cache="llm", result="hit")

    second = classifier.classify(taxonomy, posts)
    assert len(server.requests) == requests == 3 and second.usd == 0 and second.requests == 0
    assert second.cached == 10 and second.labels == first.labels
    assert read_llm_spend(redis_client).usd == spent
    assert metric_sum(CACHE_REQUESTS, cache="llm", result="hit") == hits_before + 10

    # Half known, half new: only the new half is sent.
    classifier.classify(taxonomy, make_posts(5) + make_posts(5, start=100))
    assert len(server.requests) == requests + math.ceil(5 / 4)
    # Another prompt version (or model) is another cache: it pays again.
    other = make_client(server, redis_client, llm_model=client.model, llm_prompt_version="v2")
    assert LlmVerticalClassifier(other).classify(taxonomy, posts).cached == 0


def test_an_unreadable_cache_entry_is_a_miss_and_gets_replaced(server, redis_client):
    client = make_client(server, redis_client)
    taxonomy, post = make_taxonomy(), make_posts(1)[0]
    key = client.cache_key("classify", f"{prompt_fingerprint(taxonomy)}:{post.content_hash}")
    redis_client.set(key, b"{garbage")
    result = LlmVerticalClassifier(client).classify(taxonomy, [post])
    assert len(server.requests) == 1 and result.cached == 0 and result.labels[post.post_id]
    assert orjson.loads(redis_client.get(key)) == [{"vertical": v, "confidence": 0.9} for v in expected_verticals(post)]


def test_complete_with_a_cache_key_pays_once(server, redis_client):
    client = make_client(server, redis_client)
    messages = [{"role": "user", "content": "summarize account 7"}]
    first = client.complete(messages, stage="summarize", cache_key="account-7-hash")
    second = client.complete(messages, stage="summarize", cache_key="account-7-hash")
    assert len(server.requests) == 1 and second.cached and second.usd == 0 and second.content == first.content


def test_the_budget_cap_stops_calls_and_the_posts_keep_tier_1(server, redis_client):
    # $1,000 per 1M tokens: the first request (~100 tokens) costs more than the $0.01 cap.
    client = make_client(server, redis_client, llm_price_prompt_per_mtok=1000, llm_price_completion_per_mtok=1000,
                         llm_budget_usd=0.01, llm_max_concurrency=1)
    classifier = LlmVerticalClassifier(client)
    result = classifier.classify(make_taxonomy(), make_posts(8))
    assert len(server.requests) == 1
    assert len(result.labels) == 4 and len(result.failed) == 4
    assert all(reason.startswith("LlmBudgetExhausted") for reason in result.failed.values())
    assert classifier.classify(make_taxonomy(), make_posts(4, start=50)).failed.keys() == {50, 51, 52, 53}
    assert len(server.requests) == 1
    assert metric_sum(LLM_BUDGET_STOPS, model=client.model) == 2


def test_with_redis_down_the_tier_works_uncached_and_says_so(server):
    dead_redis = connect_redis(f"redis://127.0.0.1:{free_port()}/0")  # as the services connect
    errors_before = metric_sum(CACHE_ERRORS, cache="llm")
    client = make_client(server, dead_redis, llm_budget_usd=100.0)
    result = LlmVerticalClassifier(client).classify(make_taxonomy(), make_posts(6))
    assert result.failed == {} and len(result.labels) == 6
    assert metric_sum(CACHE_ERRORS, cache="llm") >= errors_before + 2  # the look-up and the store
    assert client.spent_usd() == pytest.approx(result.usd)  # the budget falls back to this process's spend



def test_the_ledger_goes_to_the_state_redis_and_answers_to_the_cache_redis(server, redis_client, redis_url):
    """Production keeps state (the spend ledger) in a durable Redis and answers in an evicting one."""
    cache = redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/1")  # another database of the same server
    cache.flushdb()
    settings = LlmSettings(llm_base_url=server.base_url, llm_model=unique("model"), llm_batch_size=4)
    with LlmClient(settings, redis_client, cache_client=cache) as client:
        result = LlmVerticalClassifier(client).classify(make_taxonomy(), make_posts(4))
    assert len(result.labels) == 4
    cached = [k.decode() for k in cache.keys("llm:*")]
    assert len(cached) == 4 and all(k.startswith(f"llm:classify:{settings.llm_model}:") for k in cached)
    assert not redis_client.keys("llm:classify:*")  # no answer in the state Redis...
    assert read_llm_spend(redis_client).calls == 1 and not cache.keys("llm:spend*")  # ...and no ledger in the cache
