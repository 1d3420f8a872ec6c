"""Properties of the demo data generator that the pipeline's tests and demos rely on."""

from __future__ import annotations

import hashlib
import itertools
import time
import tracemalloc
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone

import pytest

from demo.generator import PLATFORMS, SCALES, VERTICALS, AccountRow, PostRow, generate

ANCHOR = datetime(2026, 11, 21, 22)


def _digest(accounts: list[AccountRow], posts: list[PostRow]) -> str:
    h = hashlib.sha256()
    for row in itertools.chain(accounts, posts):
        h.update(repr(row).encode())
    return h.hexdigest()


@pytest.fixture(scope="module")
def small() -> tuple[list[AccountRow], list[PostRow]]:
    accounts, posts = generate("small", anchor=ANCHOR)
    return accounts, list(posts)


def _nonviable(accounts: list[AccountRow], posts: list[PostRow]) -> float:
    """Share failing "followers >= 10k, >= 20 posts, a post within 180 days"."""
    counts, latest = Counter(p.account_id for p in posts), {}
    for p in posts:
        latest[p.account_id] = max(latest.get(p.account_id, p.published_at), p.published_at)
    cutoff = ANCHOR - timedelta(days=180)
    bad = [a for a in accounts
           if a.followers < 10_000 or counts[a.id] < 20 or latest.get(a.id, datetime.min) < cutoff]
    return len(bad) / len(accounts)


def test_same_seed_and_anchor_give_identical_rows(small: tuple[list[AccountRow], list[PostRow]]) -> None:
    accounts, posts = generate("small", anchor=ANCHOR)
    assert _digest(accounts, list(posts)) == _digest(*small)


def test_different_seed_gives_different_rows(small: tuple[list[AccountRow], list[PostRow]]) -> None:
    accounts, posts = generate("small", seed=8, anchor=ANCHOR)
    assert _digest(accounts, list(posts)) != _digest(*small)
    assert [a.handle for a in accounts] != [a.handle for a in small[0]]


def test_aware_anchor_is_the_same_instant_as_naive_utc(small: tuple[list[AccountRow], list[PostRow]]) -> None:
    accounts, _ = generate("small", anchor=ANCHOR.replace(tzinfo=timezone.utc))
    assert accounts == small[0]


def test_counts_near_scale_target_and_dense_ids(small: tuple[list[AccountRow], list[PostRow]]) -> None:
    accounts, posts = small
    n_accounts, n_posts = SCALES["small"]
    assert [a.id for a in accounts] == list(range(1, n_accounts + 1))
    assert [p.id for p in posts] == list(range(1, len(posts) + 1))
    assert abs(len(posts) - n_posts) <= 0.05 * n_posts
    assert {p.account_id for p in posts} == {a.id for a in accounts}


def test_every_vertical_and_platform_present(small: tuple[list[AccountRow], list[PostRow]]) -> None:
    accounts, posts = small
    assert len(VERTICALS) >= 14
    assert {a.vertical for a in accounts} == set(VERTICALS)
    assert {p.vertical for p in posts} == set(VERTICALS)
    assert {a.platform for a in accounts} == set(PLATFORMS)
    assert any(a.secondary_vertical for a in accounts)


def test_rows_fit_the_schema(small: tuple[list[AccountRow], list[PostRow]]) -> None:
    accounts, posts = small
    assert len({a.handle for a in accounts}) == len(accounts)
    for a in accounts:
        assert len(a.handle) <= 64 and len(a.display_name or "") <= 128
        assert a.country is None or len(a.country) == 2
        assert a.created_at <= a.updated_at <= ANCHOR
    for p in posts:
        assert 0 < len(p.title) <= 512 and len(p.url or "") <= 512
        assert p.published_at <= p.updated_at <= ANCHOR
        assert p.published_at >= ANCHOR - timedelta(days=800)
        assert p.published_at.microsecond % 1000 == 0
        assert p.views >= p.likes >= p.comments >= 0


def test_share_of_nonviable_accounts(small: tuple[list[AccountRow], list[PostRow]]) -> None:
    assert 0.25 <= _nonviable(*small) <= 0.55


def test_followers_are_heavy_tailed_and_drive_views(small: tuple[list[AccountRow], list[PostRow]]) -> None:
    accounts, posts = small
    followers = sorted(a.followers for a in accounts)
    median = followers[len(followers) // 2]
    assert followers[-1] > 50 * median  # a few stars dwarf the typical creator
    big = {a.id for a in accounts if a.followers > 10 * median}
    tiny = {a.id for a in accounts if a.followers < median / 10}
    avg = lambda ids: sum(p.views for p in posts if p.account_id in ids) / sum(p.account_id in ids for p in posts)  # noqa: E731
    assert avg(big) > 10 * avg(tiny)


def test_titles_are_varied_within_each_vertical(small: tuple[list[AccountRow], list[PostRow]]) -> None:
    by_vertical: dict[str, list[str]] = defaultdict(list)
    for p in small[1]:
        by_vertical[p.vertical].append(p.title)
    for vertical, titles in by_vertical.items():
        if len(titles) < 200:
            continue  # too few posts in this draw for ratios to mean much
        first3 = {" ".join(t.lower().split()[:3]) for t in titles}
        top_opening, top_count = Counter(" ".join(t.lower().split()[:2]) for t in titles).most_common(1)[0]
        assert len(set(titles)) / len(titles) >= 0.7, vertical
        assert len(first3) / len(titles) >= 0.3, vertical
        assert top_count / len(titles) < 0.08, (vertical, top_opening)


def test_description_lengths_vary(small: tuple[list[AccountRow], list[PostRow]]) -> None:
    words = [len(p.description.split()) if p.description else 0 for p in small[1]]
    n = len(words)
    assert 0.03 < sum(w == 0 for w in words) / n < 0.25
    assert sum(1 <= w <= 20 for w in words) / n > 0.2
    assert 0.02 < sum(w >= 300 for w in words) / n < 0.15
    assert sum("\n\n" in (p.description or "") for p in small[1]) / n > 0.15


def test_text_has_hashtags_emoji_and_other_languages(small: tuple[list[AccountRow], list[PostRow]]) -> None:
    text = [f"{p.title}\n{p.description or ''}" for p in small[1]]
    assert sum("#" in t for t in text) / len(text) > 0.2
    assert sum(any(ord(ch) > 0x2000 for ch in t) for t in text) / len(text) > 0.05
    assert any("Hola" in t for t in text) and any("Salut" in t for t in text)


def test_some_accounts_are_dormant(small: tuple[list[AccountRow], list[PostRow]]) -> None:
    latest: dict[int, datetime] = {}
    for p in small[1]:
        latest[p.account_id] = max(latest.get(p.account_id, p.published_at), p.published_at)
    dormant = sum(t < ANCHOR - timedelta(days=180) for t in latest.values())
    assert 0.05 < dormant / len(latest) < 0.3


def test_large_posts_stream_lazily() -> None:
    started = time.monotonic()
    _, posts = generate("large", anchor=ANCHOR)
    first = list(itertools.islice(posts, 1000))
    assert [p.id for p in first] == list(range(1, 1001))
    assert time.monotonic() - started < 10  # generating all 1M posts would take far longer


def test_large_stream_memory_is_bounded() -> None:
    tracemalloc.start()
    try:
        _, posts = generate("large", anchor=ANCHOR)
        consumed = sum(1 for _ in itertools.islice(posts, 10_000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert consumed == 10_000
    assert peak < 200 * 1024 * 1024


def test_large_has_the_fields_shape_a_fifth_viable_and_accounts_with_thousands_of_posts() -> None:
    """Issue 14: the field has 17k accounts and 9M posts, ~3.3k accounts (19%) and 1.7M posts (19%)
    viable, its top accounts with more than 5,000 posts. Checked on the account plans (post counts,
    followers, last post time), which decide viability without generating the million posts."""
    from demo.generator import POPULATIONS, _plan_accounts
    from services.viability.core import ViabilityRules

    anchor, rules = datetime(2026, 12, 1), ViabilityRules()
    n_accounts, n_posts = SCALES["large"]
    plans = _plan_accounts(7, n_accounts, n_posts, anchor, POPULATIONS["large"])
    viable = [p for p in plans if p.row.followers >= rules.min_followers and p.n_posts >= rules.min_posts
              and p.last_post >= anchor - timedelta(days=rules.active_within_days)]
    total = sum(p.n_posts for p in plans)
    assert 0.15 <= len(viable) / n_accounts <= 0.25
    assert 0.15 <= sum(p.n_posts for p in viable) / total <= 0.25
    assert sum(p.n_posts > 5_000 for p in plans) >= 5
    assert any(p.n_posts > 5_000 for p in viable)  # a showcase account the summarizer must drain
