"""The summarizer's pure core: diverse representatives, distinctive terms, exact statistics, the
material-change rule and the index catch-up check."""

from __future__ import annotations

import math
import random
import statistics

import numpy as np
import pytest

from services.summarizer.core import (
    DAY_MS,
    SUMMARY_FORMAT,
    AccountProfile,
    ChangeRule,
    held_until,
    Expectation,
    PostView,
    SummaryOptions,
    SummaryStamp,
    TermBackground,
    index_reflects,
    needs_refresh,
    nearest_rank,
    summarize,
    terms_of,
)
from shared.index_registry import accounts_collection_for

NOW = 1_750_000_000_000
ACCOUNT = AccountProfile(account_id=7, platform="youtube", handle="crumbandroam", display_name="Crumb & Roam",
                         followers=50_000)
TOPICS = {"baking": "sourdough loaf with a rye starter", "travel": "hidden beaches itinerary in portugal",
          "gaming": "speedrun route for the final boss"}


def post(post_id: int, title: str, *, days_ago: float = 1.0, views: int = 100, likes: int = 10, comments: int = 1,
         labels: tuple[tuple[str, str, float], ...] = (), description: str = "") -> PostView:
    return PostView(post_id=post_id, title=title, description=description,
                    published_at=NOW - int(days_ago * DAY_MS), views=views, likes=likes, comments=comments,
                    labels=labels)


def three_topic_account(sizes=(40, 30, 20), seed=3) -> tuple[list[PostView], np.ndarray, dict[int, str]]:
    """Posts of three topics, interleaved in time; vectors = the topic's direction + noise."""
    rng = np.random.default_rng(seed)
    directions = {name: rng.standard_normal(384) for name in TOPICS}
    topic_of, posts, rows = {}, [], []
    names = [name for name, size in zip(TOPICS, sizes, strict=True) for _ in range(size)]
    random.Random(seed).shuffle(names)
    for i, name in enumerate(names, start=1):
        topic_of[i] = name
        posts.append(post(i, f"{TOPICS[name]} part {i}", days_ago=i * 0.5))
        rows.append(directions[name] + rng.standard_normal(384) * 0.6)
    return posts, np.asarray(rows, dtype=np.float32), topic_of


def test_representatives_cover_every_topic_largest_theme_first():
    posts, vectors, topic_of = three_topic_account()
    summary = summarize(ACCOUNT, posts, vectors, now_ms=NOW, options=SummaryOptions(representatives=3))
    reps = summary.representatives
    assert {topic_of[r.post_id] for r in reps} == set(TOPICS)
    assert [topic_of[r.post_id] for r in reps] == ["baking", "travel", "gaming"]  # 40, 30, 20 posts
    assert [r.theme_posts for r in reps] == [40, 30, 20]
    assert [r.theme_share for r in reps] == [round(40 / 90, 4), round(30 / 90, 4), round(20 / 90, 4)]
    by_id = {p.post_id: p for p in posts}
    assert all(r.title == by_id[r.post_id].title and r.views == by_id[r.post_id].views for r in reps)


def test_more_representatives_than_topics_still_covers_all_of_them():
    posts, vectors, topic_of = three_topic_account(sizes=(70, 15, 5))
    summary = summarize(ACCOUNT, posts, vectors, now_ms=NOW, options=SummaryOptions(representatives=5))
    assert {topic_of[r.post_id] for r in summary.representatives} == set(TOPICS)
    assert len({r.post_id for r in summary.representatives}) == len(summary.representatives)


def test_identical_posts_make_one_theme():
    posts = [post(i, "same clip reposted") for i in range(1, 11)]
    vectors = np.tile(np.linspace(-1, 1, 384, dtype=np.float32), (10, 1))
    summary = summarize(ACCOUNT, posts, vectors, now_ms=NOW)
    assert len(summary.representatives) == 1 and summary.representatives[0].theme_posts == 10


def test_summary_is_deterministic_whatever_the_input_order():
    posts, vectors, _ = three_topic_account()
    first = summarize(ACCOUNT, posts, vectors, now_ms=NOW)
    order = list(range(len(posts)))
    random.Random(11).shuffle(order)
    second = summarize(ACCOUNT, [posts[i] for i in order], vectors[order], now_ms=NOW)
    assert first == second


def test_keywords_weigh_rarity_in_the_background_not_just_frequency():
    background = TermBackground.from_texts(["new video today"] * 90 + ["sourdough at home"] + ["other"] * 9)
    posts = [post(i, "New video: sourdough starter" if i <= 10 else "New video about my week") for i in range(1, 21)]
    vectors = np.eye(20, 384, dtype=np.float32)
    words = summarize(ACCOUNT, posts, vectors, now_ms=NOW, background=background).keywords
    ranked = [w.term for w in words]
    assert ranked.index("sourdough") < ranked.index("video")  # 10 posts vs 20, but rare vs ordinary
    sourdough = next(w for w in words if w.term == "sourdough")
    assert sourdough.posts == 10
    assert sourdough.score == pytest.approx(10 / 20 * (math.log(101 / 2) + 1), abs=1e-6)
    assert "about" not in ranked and "new" in ranked  # stop words out, ordinary words only sink


def test_terms_used_once_are_not_keywords_and_hashtags_are_listed_apart():
    posts = [post(1, "Rye bread #baking #rye"), post(2, "Rye crackers #baking"), post(3, "Spelt once #solo")]
    summary = summarize(ACCOUNT, posts, np.eye(3, 384, dtype=np.float32), now_ms=NOW)
    assert [k.term for k in summary.keywords] == ["rye"]
    assert [(h.term, h.posts) for h in summary.hashtags] == [("#baking", 2)]
    assert terms_of("The 2024 Vlog's end!! #Travel_Tips a") == {"vlog's", "end", "#travel_tips"}


def test_cadence_and_reach_are_exact_statistics_of_the_input():
    views = [121, 5, 900, 42, 77, 3000, 61, 250, 18, 400]
    likes = [12, 0, 90, 4, 7, 310, 6, 20, 1, 33]
    comments = [1, 0, 9, 0, 2, 40, 0, 3, 0, 5]
    days_ago = [2, 3, 5, 6, 8, 9, 11, 12, 14, 16]  # 14 days from first to last post
    posts = [post(i + 1, f"post {i}", days_ago=d, views=v, likes=lk, comments=c)
             for i, (d, v, lk, c) in enumerate(zip(days_ago, views, likes, comments, strict=True))]
    summary = summarize(ACCOUNT, posts, np.eye(10, 384, dtype=np.float32), now_ms=NOW)
    c, r = summary.cadence, summary.reach
    assert c.first_post_at == NOW - 16 * DAY_MS and c.last_post_at == NOW - 2 * DAY_MS
    assert c.active_days == 14.0 and c.posts_per_week == 5.0
    assert c.days_since_last_post == 2.0 and c.posts_last_30_days == 10
    assert r.median_views == statistics.median(views) == 99.0
    assert r.p90_views == sorted(views)[8] == 900  # nearest rank: the 9th of 10 values
    assert r.median_likes == statistics.median(likes) and r.p90_likes == sorted(likes)[8]
    assert r.median_comments == statistics.median(comments)
    assert r.engagement_rate == round((sum(likes) + sum(comments)) / sum(views), 4)
    assert r.median_views_per_follower == round(99.0 / 50_000, 4)
    assert summary.posts == 10
    assert "5 posts a week" in summary.text and "median 99 views (90th percentile 900)" in summary.text


def test_a_burst_within_a_day_counts_as_one_week_and_no_views_means_no_rate():
    posts = [post(i, f"p{i}", days_ago=1 + i / 24, views=0, likes=0, comments=0) for i in range(1, 4)]
    summary = summarize(ACCOUNT.model_copy(update={"followers": 0}), posts, np.eye(3, 384, dtype=np.float32), now_ms=NOW)
    assert summary.cadence.posts_per_week == 3.0
    assert summary.reach.engagement_rate is None and summary.reach.median_views_per_follower is None


def test_nearest_rank_percentile():
    assert nearest_rank([5], 0.9) == 5
    assert nearest_rank(list(range(1, 101)), 0.9) == 90
    assert nearest_rank([3, 1, 2], 0.5) == 2


def test_vertical_mix_counts_each_post_once_and_skips_switched_off_verticals():
    posts = [
        post(1, "a", labels=(("default", "food", 0.9), ("default", "travel", 0.3), ("brand_safety", "offensive", 0.8))),
        post(2, "b", labels=(("default", "food", 0.7), ("default", "food", 0.5))),
        post(3, "c", labels=(("default", "travel", 0.6),)),
        post(4, "d"),
    ]
    summary = summarize(ACCOUNT, posts, np.eye(4, 384, dtype=np.float32), now_ms=NOW,
                        label_enabled=lambda taxonomy, vertical: vertical != "offensive")
    mix = {(v.taxonomy, v.vertical): (v.posts, v.share, v.mean_confidence) for v in summary.verticals}
    assert mix == {("default", "food"): (2, 0.5, 0.8), ("default", "travel"): (2, 0.5, 0.45)}
    assert summary.account_labels(min_share=0.5) == [
        {"taxonomy": "default", "vertical": "food", "confidence": 0.5},
        {"taxonomy": "default", "vertical": "travel", "confidence": 0.5}]
    assert "food 50%, travel 50%" in summary.text


def test_text_only_states_facts_from_the_input():
    posts, vectors, _ = three_topic_account()
    summary = summarize(ACCOUNT, posts, vectors, now_ms=NOW)
    assert summary.text.startswith("Crumb & Roam (@crumbandroam) on youtube, 50,000 followers.")
    titles = {p.title for p in posts}
    quoted = [line for line in summary.text.splitlines() if line.startswith("- ")]
    assert len(quoted) == len(summary.representatives)
    assert all(any(repr(t) in line for t in titles) for line in quoted)
    assert all(r.title in summary.embedding_text for r in summary.representatives)


def test_bad_input_is_refused_clearly():
    with pytest.raises(ValueError, match="at least one post"):
        summarize(ACCOUNT, [], np.zeros((0, 384)), now_ms=NOW)
    with pytest.raises(ValueError, match="2 posts but vectors of shape"):
        summarize(ACCOUNT, [post(1, "a"), post(2, "b")], np.zeros((3, 384)), now_ms=NOW)


def test_post_view_reads_an_indexed_payload():
    payload = {"post_id": 5, "account_id": 1, "platform": "youtube", "title": "T", "description": None, "published_at": 10, "views": 3,
               "verticals": [{"taxonomy": "default", "vertical": "food", "confidence": 0.8}, {"bogus": 1}]}
    view = PostView.from_payload(payload)
    assert view == PostView(5, "T", "", 10, 3, 0, 0, (("default", "food", 0.8),))


# --- the debounce's second half: is the change material? ------------------------------------------------


RULE = ChangeRule(min_new_posts=10, min_change_ratio=0.05)


def stamp(post_count: int, summary_format: int = SUMMARY_FORMAT) -> SummaryStamp:
    return SummaryStamp(summary_format=summary_format, post_count=post_count, last_post_at=NOW)


@pytest.mark.parametrize(("previous", "post_count", "new_posts", "expected"), [
    (None, 25, 25, "first"),
    (stamp(100, summary_format=SUMMARY_FORMAT - 1), 100, 0, "format"),
    (stamp(1000), 1009, 10, "new_posts"),  # 10 new posts, under 5%: still material
    (stamp(1000), 1009, 9, None),  # 9 new posts, 0.9% more: not material
    (stamp(100), 105, 5, "count_changed"),  # 5%
    (stamp(100), 104, 4, None),
    (stamp(100), 94, 0, "count_changed"),  # deletes count too
    (stamp(20_000), 20_000, 9, None),  # a full window moves by new posts only
    (stamp(20_000), 20_000, 10, "new_posts"),
])
def test_material_change(previous, post_count, new_posts, expected):
    assert needs_refresh(previous, post_count, new_posts, RULE) == expected


def test_index_reflects_the_latest_event():
    upsert = Expectation(kind="upsert", point_id="p", version=[2, 100, 0], seen_ms=0)
    assert not index_reflects(upsert, None, 5)
    assert not index_reflects(upsert, [2, 99, 0], 5)
    assert index_reflects(upsert, [2, 100, 0], 5) and index_reflects(upsert, [3, 1, 0], 5)
    delete = upsert.model_copy(update={"kind": "delete"})
    assert index_reflects(delete, None, 5) and index_reflects(delete, [2, 101, 0], 5)
    assert not index_reflects(delete, [2, 100, 0], 5)
    purge = Expectation(kind="purge", version=[2, 100, 0], seen_ms=0)
    assert not index_reflects(purge, None, 3) and index_reflects(purge, None, 0)


def test_accounts_collection_follows_the_posts_version():
    assert accounts_collection_for("posts", "posts", "accounts") == "accounts"
    assert accounts_collection_for("posts_v2", "posts", "accounts") == "accounts_v2"
    assert accounts_collection_for("custom", "posts", "accounts") == "accounts_custom"


def test_an_account_that_keeps_posting_is_summarized_at_most_once_per_interval():
    rule = ChangeRule(min_new_posts=10, min_change_ratio=0.05, min_interval_ms=600_000)
    summarized = SummaryStamp(summary_format=SUMMARY_FORMAT, post_count=100, last_post_at=NOW, computed_at=NOW)
    assert held_until(summarized, "new_posts", rule, NOW + 1_000) == NOW + 600_000
    assert held_until(summarized, "count_changed", rule, NOW + 599_999) == NOW + 600_000
    assert held_until(summarized, "new_posts", rule, NOW + 600_000) is None
    assert held_until(None, "first", rule, NOW) is None
    assert held_until(summarized, "format", rule, NOW + 1_000) is None
