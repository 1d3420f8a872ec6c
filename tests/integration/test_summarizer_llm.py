"""The summaries' LLM tier over real HTTP (tests/support/fake_llm.py, the one allowed double), real
Redis for its cache and spend ledger: map-reduce shape, token budget, cost booked to the account's
verticals, a second pass for free, and the extractive summary kept whenever the endpoint fails."""

from __future__ import annotations

import random
import tempfile
import uuid
from pathlib import Path

import numpy as np
import orjson
import pytest
import redis

from services.summarizer.core import DAY_MS, AccountProfile, PostView, SummaryOptions, summarize, theme_samples
from services.summarizer.llm_tier import MAP_MAX_TOKENS, LlmSummaryWriter, prompt_tokens
from services.summarizer.refresh import AccountRefresher, account_point_id
from shared.config import LlmSettings, SummarizerSettings
from shared.embedding import load_text_embedder
from shared.llm import LlmClient
from shared.spend import read_spend_breakdown
from shared.vectorstore import EdgeVectorStore, PointRecord
from tests.conftest import MODEL_CACHE_DIR
from tests.support.fake_llm import FakeLlmServer, Reply

NOW = 1_750_000_000_000
BUDGET = 2_000
TOPICS = {"food": "slow braised beans and a rye loaf", "travel": "night train across the alps",
          "tech": "soldering a mechanical keyboard"}
ACCOUNT = AccountProfile(account_id=31, platform="youtube", handle="mixed", display_name="Mixed Bag", followers=9_000)


def answerer(request: dict) -> str:
    """Map requests (posts of a theme) get 'theme of <first words>', the reduce request a profile."""
    body = orjson.loads(request["messages"][-1]["content"])
    if "posts" in body:
        return f"theme of {body['posts'][0][:24]}"
    return "PROFILE: " + "; ".join(t["about"] for t in body["themes"])


@pytest.fixture(scope="module")
def redis_client(infra) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=infra.config.redis_port)


@pytest.fixture
def server():
    with FakeLlmServer(answerer) as fake:
        yield fake


def client_for(server: FakeLlmServer, redis_client: redis.Redis, **overrides) -> LlmClient:
    settings = {"llm_base_url": server.base_url, "llm_model": f"model-{uuid.uuid4().hex[:8]}",
                "llm_backoff_base_s": 0.01, "llm_request_timeout_s": 2.0, "llm_deadline_s": 10.0, **overrides}
    return LlmClient(LlmSettings(**settings), redis_client, rng=random.Random(3))


def account_posts(per_topic: int = 20) -> tuple[list[PostView], np.ndarray]:
    rng = np.random.default_rng(5)
    directions = {t: rng.standard_normal(384) for t in TOPICS}
    posts, rows = [], []
    for i in range(per_topic * len(TOPICS)):
        topic = list(TOPICS)[i % len(TOPICS)]
        long_text = f"{TOPICS[topic]} episode {i}. " + "More details about it. " * 300  # ~7k characters
        posts.append(PostView(post_id=i + 1, title=f"{topic} {i}", description=long_text,
                              published_at=NOW - i * DAY_MS, views=100 + i, likes=10, comments=1,
                              labels=(("default", topic, 0.9),)))
        rows.append(directions[topic] + rng.standard_normal(384) * 0.5)
    return posts, np.asarray(rows, dtype=np.float32)


def test_map_reduce_reads_a_bounded_sample_within_the_token_budget(server, redis_client):
    posts, vectors = account_posts()
    summary = summarize(ACCOUNT, posts, vectors, now_ms=NOW, options=SummaryOptions(representatives=3))
    samples = theme_samples(posts, vectors, summary, per_theme=6)
    client = client_for(server, redis_client)
    result = LlmSummaryWriter(client, BUDGET).write(summary, samples)

    assert result is not None and result.requests == 4 == len(server.requests)  # 3 themes + 1 reduce
    maps, reduce = server.requests[:3], server.requests[3]
    for request, sample in zip(maps, samples, strict=True):
        sent = orjson.loads(request.body["messages"][-1]["content"])["posts"]
        assert len(sent) == 6 and all(s.rstrip(" …") in p.text for s, p in zip(sent, sample, strict=True))
        assert {p.labels[0][1] for p in sample} == {sample[0].labels[0][1]}  # one theme per request
        assert request.body["max_tokens"] == MAP_MAX_TOKENS
    assert sum(prompt_tokens(r.body["messages"]) for r in server.requests) <= BUDGET
    themes = [t["about"] for t in orjson.loads(reduce.body["messages"][-1]["content"])["themes"]]
    assert themes == [f"theme of {s[0].text[:24]}" for s in samples]
    assert result.text == "PROFILE: " + "; ".join(themes)


def test_cost_is_booked_to_the_accounts_verticals_and_a_second_pass_is_free(server, redis_client):
    posts, vectors = account_posts()
    summary = summarize(ACCOUNT, posts, vectors, now_ms=NOW, options=SummaryOptions(representatives=3))
    samples = theme_samples(posts, vectors, summary, per_theme=4)
    client = client_for(server, redis_client)
    writer = LlmSummaryWriter(client, BUDGET)
    first = writer.write(summary, samples)
    lines = [line for line in read_spend_breakdown(redis_client) if line.model == client.model]
    assert {(line.stage, line.taxonomy, line.vertical) for line in lines} == {("summarize", "default", t) for t in TOPICS}
    billed_prompt, billed_completion = server.billed()
    assert sum(line.prompt_tokens for line in lines) == billed_prompt
    assert sum(line.completion_tokens for line in lines) == billed_completion
    assert first.usd == pytest.approx(sum(line.usd for line in lines)) and first.usd > 0

    second = writer.write(summary, samples)
    assert len(server.requests) == first.requests  # nothing sent again
    assert second.text == first.text and second.cached_requests == second.requests and second.usd == 0


def test_a_failing_endpoint_leaves_the_extractive_summary(redis_client):
    with FakeLlmServer(answerer) as server:
        server.script(*[Reply(status=503)] * 50)
        posts, vectors = account_posts(per_topic=4)
        summary = summarize(ACCOUNT, posts, vectors, now_ms=NOW)
        client = client_for(server, redis_client, llm_max_retries=2)
        assert LlmSummaryWriter(client, BUDGET).write(summary, theme_samples(posts, vectors, summary, 3)) is None
        assert len(server.requests) == 3  # one map request, tried three times, then given up


@pytest.mark.parametrize("failing", [False, True])
def test_the_refresher_stores_the_llm_profile_above_the_facts_or_the_facts_alone(redis_client, failing):
    posts, vectors = account_posts(per_topic=5)
    root = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    with FakeLlmServer(answerer) as server, tempfile.TemporaryDirectory(dir=root) as scratch:
        if failing:
            server.script(*[Reply(status=500)] * 50)
        store = EdgeVectorStore(Path(scratch))
        store.ensure_collection("posts", 384)
        store.upsert("posts", [PointRecord(id=str(uuid.uuid5(uuid.NAMESPACE_OID, str(p.post_id))), vector=v, payload={
            "post_id": p.post_id, "account_id": ACCOUNT.account_id, "platform": ACCOUNT.platform, "handle": ACCOUNT.handle,
            "display_name": ACCOUNT.display_name, "followers": ACCOUNT.followers, "title": p.title,
            "description": p.description, "published_at": p.published_at, "views": p.views, "likes": p.likes,
            "comments": p.comments, "verticals": [{"taxonomy": "default", "vertical": p.labels[0][1], "confidence": 0.9}],
        }) for p, v in zip(posts, vectors, strict=True)])
        settings = SummarizerSettings(summarizer_llm_token_budget=BUDGET, summarizer_representatives=3)
        writer = LlmSummaryWriter(client_for(server, redis_client, llm_max_retries=1), BUDGET)
        refresher = AccountRefresher(store, "posts", "accounts", load_text_embedder(MODEL_CACHE_DIR), settings, llm=writer)
        computed = refresher.compute(ACCOUNT.account_id, NOW)
        refresher.write(computed, len(posts))
        payload = store.retrieve("accounts", [account_point_id(ACCOUNT.account_id)])[0].payload
        store.close()
    if failing:
        assert payload["summary_source"] == "extractive" and payload["summary"] == computed.summary.text
    else:
        assert payload["summary_source"] == "llm" and payload["summary_llm_model"] == writer.client.model
        profile, facts = payload["summary"].split("\n\n", 1)
        assert profile.startswith("PROFILE: theme of ") and facts == computed.summary.text
