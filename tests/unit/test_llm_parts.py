"""Pure parts of the LLM tier: prompt and answer handling, cost splitting, the adaptive limiter,
Retry-After and the text budget. The HTTP behaviour is in tests/integration/test_llm_client.py."""

from __future__ import annotations

import email.utils
import threading
import time

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.classifier.llm_tier import (
    booking_shares,
    parse_answer,
    prompt_fingerprint,
    system_prompt,
    user_prompt,
)
from shared.classification.taxonomy import Taxonomy
from shared.llm import AdaptiveLimiter, LlmUnavailable, MalformedAnswer, parse_retry_after, truncate_to_tokens
from shared.spend import PaidCall, apportion, split_call, usd_nanos

TAXONOMY = Taxonomy.model_validate({"name": "demo", "verticals": [
    {"name": "food", "description": "Recipes and restaurants."},
    {"name": "travel", "description": "Trips and hotels."},
    {"name": "gaming", "description": "Video games.", "enabled": False},
]})


def answer(*entries: dict) -> str:
    return orjson.dumps({"results": list(entries)}).decode()


# --- prompt ---


def test_the_prompt_offers_only_enabled_verticals_and_numbers_posts_from_one():
    prompt = system_prompt(TAXONOMY)
    assert "- food: Recipes and restaurants." in prompt and "- travel:" in prompt and "gaming" not in prompt
    assert orjson.loads(user_prompt(["a", "b"])) == {"posts": [{"id": 1, "text": "a"}, {"id": 2, "text": "b"}]}


def test_the_cache_fingerprint_changes_with_the_taxonomy_content():
    changed = Taxonomy.model_validate({**TAXONOMY.model_dump(exclude_unset=True), "verticals": [
        {"name": "food", "description": "Recipes, restaurants and street food."},
        {"name": "travel", "description": "Trips and hotels."}]})
    assert prompt_fingerprint(TAXONOMY) == prompt_fingerprint(Taxonomy.model_validate(TAXONOMY.model_dump()))
    assert prompt_fingerprint(TAXONOMY) != prompt_fingerprint(changed)


# --- answer parsing ---


def test_a_well_formed_answer_is_read_whole():
    parsed = parse_answer(answer({"id": 1, "labels": [{"vertical": "travel", "confidence": 0.7},
                                                     {"vertical": "food", "confidence": 1}]},
                                 {"id": 2, "labels": []}), TAXONOMY, expected=2)
    assert parsed.labels == {1: [("food", 1.0), ("travel", 0.7)], 2: []} and parsed.dropped == {}


def test_json_in_a_code_fence_is_accepted():
    fenced = "```json\n" + answer({"id": 1, "labels": []}) + "\n```"
    assert parse_answer(fenced, TAXONOMY, expected=1).labels == {1: []}


@pytest.mark.parametrize("content", [
    "", "food", "[1, 2]", '{"results": {}}', '{"labels": []}', answer({"id": 7, "labels": []}),
    answer({"id": "1", "labels": []}), answer({"id": 1}),
])
def test_an_answer_without_any_usable_entry_is_malformed(content):
    with pytest.raises(MalformedAnswer):
        parse_answer(content, TAXONOMY, expected=2)


def test_bad_labels_and_entries_are_dropped_by_reason():
    parsed = parse_answer(answer(
        {"id": 1, "labels": [{"vertical": "food", "confidence": 0.4}, {"vertical": "food", "confidence": 0.6},
                             {"vertical": "cooking", "confidence": 0.9}, {"vertical": "gaming", "confidence": 0.9},
                             {"vertical": "travel", "confidence": -0.1}, {"vertical": "travel", "confidence": "high"},
                             {"vertical": "travel", "confidence": True}, "food"]},
        {"id": 1, "labels": []}, {"id": 3, "labels": []}, {"id": True, "labels": []},
    ), TAXONOMY, expected=2)
    assert parsed.labels == {1: [("food", 0.6)]}  # the highest confidence of a repeated vertical
    assert parsed.dropped == {"unknown_vertical": 2, "disabled_vertical": 1, "bad_confidence": 3,
                              "duplicate_entry": 1, "bad_entry": 2}


# --- cost split ---


def test_booking_shares_give_each_post_an_equal_share_split_between_its_labels():
    parsed = parse_answer(answer({"id": 1, "labels": [{"vertical": "food", "confidence": 0.9},
                                                     {"vertical": "travel", "confidence": 0.9}]},
                                 {"id": 2, "labels": []}), TAXONOMY, expected=3)
    shares = booking_shares(parsed, "demo", expected=3)
    assert shares == pytest.approx({("demo", "food"): 1 / 6, ("demo", "travel"): 1 / 6, ("demo", "-"): 2 / 3})


@given(st.integers(0, 10**9), st.dictionaries(st.text(min_size=1, max_size=3), st.floats(0.001, 1000), min_size=1))
def test_apportion_parts_are_integers_that_add_up_exactly(total, weights):
    parts = apportion(total, {("t", k): w for k, w in weights.items()})
    assert sum(parts.values()) == total and all(isinstance(p, int) and p >= 0 for p in parts.values())
    weight_sum = sum(weights.values())
    for (_, key), part in parts.items():
        assert abs(part - total * weights[key] / weight_sum) < 1 + 1e-6


def test_a_split_call_adds_up_to_the_call_and_counts_it_once():
    call = PaidCall(stage="classify", model="m", prompt_tokens=1001, completion_tokens=77,
                    usd_nanos=usd_nanos(1001, 77, 0.6, 2.4),
                    shares={("demo", "food"): 1 / 3, ("demo", "travel"): 1 / 3, ("demo", "-"): 1 / 3})
    parts = split_call(call)
    assert sum(p["prompt_tokens"] for p in parts.values()) == 1001
    assert sum(p["completion_tokens"] for p in parts.values()) == 77
    assert sum(p["usd_nanos"] for p in parts.values()) == call.usd_nanos == 785_400
    assert sum(p["calls"] for p in parts.values()) == 1


def test_cost_is_modelled_from_prices_per_million_tokens():
    # The field figure: ~4.5k tokens per post at ~$1 per 1M tokens is $0.0045 per post.
    assert usd_nanos(4_500, 0, 1.0, 1.0) / 1e9 == pytest.approx(0.0045)
    assert usd_nanos(1_000_000, 1_000_000, 0.15, 0.6) / 1e9 == pytest.approx(0.75)


# --- adaptive limiter ---


def test_the_limit_halves_once_per_burst_of_429s_and_regrows_by_one_per_window():
    limiter = AdaptiveLimiter(8)
    deadline = time.monotonic() + 5
    tokens = [limiter.acquire(deadline) for _ in range(8)]
    for token in tokens[:4]:  # four concurrent 429s, all sent before the first decrease
        limiter.release(token, succeeded=False, throttled=True)
    assert limiter.limit == 4
    for token in tokens[4:]:
        limiter.release(token, succeeded=True)
    assert limiter.limit == 5  # 4 successes at limit 4: one window
    later = limiter.acquire(deadline)
    limiter.release(later, succeeded=False, throttled=True)  # sent after the decrease: counts again
    assert limiter.limit == 2
    for _ in range(5):
        limiter.release(limiter.acquire(deadline), succeeded=True)
    assert limiter.limit == 4  # 2 successes -> 3, 3 more -> 4
    limiter.release(limiter.acquire(deadline), succeeded=False)  # a 5xx or timeout: not a throttle
    assert limiter.limit == 4


def test_the_limit_never_falls_below_one_nor_grows_above_the_maximum():
    limiter = AdaptiveLimiter(2)
    deadline = time.monotonic() + 5
    for _ in range(5):
        limiter.release(limiter.acquire(deadline), succeeded=False, throttled=True)
    assert limiter.limit == 1
    for _ in range(20):
        limiter.release(limiter.acquire(deadline), succeeded=True)
    assert limiter.limit == 2


def test_a_full_limiter_makes_callers_wait_and_gives_up_at_the_deadline():
    limiter = AdaptiveLimiter(1)
    held = limiter.acquire(time.monotonic() + 5)
    with pytest.raises(LlmUnavailable):
        limiter.acquire(time.monotonic() + 0.1)
    threading.Timer(0.1, lambda: limiter.release(held, succeeded=True)).start()
    limiter.release(limiter.acquire(time.monotonic() + 5), succeeded=True)  # woken by the release


def test_retry_after_pauses_new_requests_and_one_beyond_the_deadline_fails_at_once():
    limiter = AdaptiveLimiter(4)
    limiter.release(limiter.acquire(time.monotonic() + 5), succeeded=False, throttled=True, retry_after_s=0.3)
    started = time.monotonic()
    with pytest.raises(LlmUnavailable):
        limiter.acquire(started + 0.2)
    assert time.monotonic() - started < 0.1  # no pointless wait until a deadline it cannot meet
    limiter.release(limiter.acquire(started + 5), succeeded=True)
    assert time.monotonic() - started >= 0.28


def test_retry_after_is_read_as_seconds_or_as_an_http_date():
    assert parse_retry_after("2") == 2.0 and parse_retry_after("0.5") == 0.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    now = time.time()
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30, abs=1)
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0


# --- text budget ---


def test_texts_are_cut_to_about_the_token_budget_at_a_word_boundary():
    assert truncate_to_tokens("short text", 10) == "short text"
    cut = truncate_to_tokens("word " * 100, 10)
    assert cut.endswith(" …") and len(cut) <= 42 and not cut[:-2].endswith(" ")
    assert truncate_to_tokens("x" * 100, 5) == "x" * 20 + " …"  # no space near the end: a hard cut
