"""What an account's summary says: a pure function of its indexed posts and their vectors.

The summary is extractive and honest: every sentence is a count, a statistic or a post the account
actually published. Nothing is paraphrased, so nothing can be invented.

- Themes: k-means over the post embeddings (deterministic farthest-point start); each theme is
  represented by its medoid, the real post closest to the theme's centre, and carries its share of
  posts. Tiny themes (outliers) and near-duplicate medoids are dropped, so the representatives are
  diverse and typical at once.
- Keywords and hashtags: the share of the account's posts using a term, weighted by how rare the
  term is in a background sample of all indexed posts (tf-idf over documents), so "video" or "new"
  lose to "sourdough".
- Vertical mix: shares of posts carrying each classifier label (payload ``verticals``).
- Cadence and reach: exact statistics of the posts given (nearest-rank percentiles).

``needs_refresh`` is the debounce rule's second half: a due account is recomputed only when its
posts changed materially since the stored summary.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from shared.stored_post import PACKED_KEY, PostCard, StoredPost

# Bump when what a summary contains changes: stored summaries of an older format are recomputed
# on their account's next trigger instead of living on in the old shape.
SUMMARY_FORMAT = 1
DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS
KMEANS_ITERATIONS = 25
KMEANS_SAMPLE = 4_000  # posts the themes are fitted on (all posts are assigned)
NEAR_DUPLICATE = 0.95  # cosine above which two representatives say the same thing
MIN_THEME_SHARE = 0.02  # a theme of fewer posts is an outlier, not something the account is about
MIN_VERTICAL_SHARE = 0.05  # account-level labels (for filters) need at least this share of posts

# Payload keys of an indexed post the summary reads (scroll only these): the card and its labels, and
# the packed rest of the post (where most of the card's fields are stored, shared/stored_post.py).
POST_FIELDS = (*PostCard.model_fields, "verticals", PACKED_KEY)

# Words of 3+ characters (inner apostrophes and hyphens kept) and hashtags; short ones never match.
_TOKEN = re.compile(r"#?[^\W_][\w'-]+[^\W_]")
_STOPWORDS = frozenset("""
a about above after again against all also am an and any are aren't as at be because been before being
below between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down
during each even ever every few for from further get gets getting got had hadn't has hasn't have haven't
having he her here hers herself him himself his how i i'm i've if in into is isn't it it's its itself
just let's like make makes me more most much must my myself no nor not now of off on once one only or
other our ours ourselves out over own really same she should shouldn't so some such than that that's the
their theirs them themselves then there there's these they they're this those through to too under until
up upon us very was wasn't we we're were weren't what what's when where which while who whom why will
with won't would wouldn't you you'd you'll you're you've your yours yourself yourselves
""".split())


# --- inputs -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PostView:
    """The parts of one indexed post (its payload) a summary uses."""

    post_id: int
    title: str
    description: str
    published_at: int  # epoch ms
    views: int
    likes: int
    comments: int
    labels: tuple[tuple[str, str, float], ...] = ()  # (taxonomy, vertical, confidence)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> PostView:
        return cls.from_stored(StoredPost.from_payload(payload))

    @classmethod
    def from_stored(cls, post: StoredPost) -> PostView:
        return cls(post_id=post.post_id, title=post.title, description=post.description,
                   published_at=post.published_at, views=post.views, likes=post.likes, comments=post.comments,
                   labels=tuple((v.taxonomy, v.vertical, v.confidence) for v in post.verticals))

    @property
    def text(self) -> str:
        return f"{self.title}\n{self.description}".strip()


class AccountProfile(BaseModel):
    account_id: int
    platform: str
    handle: str
    display_name: str | None = None
    followers: int = 0

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> AccountProfile:
        """The account as its newest post's payload describes it (posts carry the account fields)."""
        return cls.from_stored(StoredPost.from_payload(payload))

    @classmethod
    def from_stored(cls, post: StoredPost) -> AccountProfile:
        return cls(account_id=post.account_id, platform=post.platform, handle=post.handle,
                   display_name=post.display_name, followers=post.followers)


@dataclass(frozen=True)
class TermBackground:
    """Document frequencies of terms in a sample of all indexed posts: what is ordinary."""

    documents: int
    frequency: Mapping[str, int]

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> TermBackground:
        frequency: Counter[str] = Counter()
        documents = 0
        for text in texts:
            frequency.update(terms_of(text))
            documents += 1
        return cls(documents, frequency)

    def idf(self, term: str) -> float:
        """Smoothed inverse document frequency: >= 1, and 1 for every term of an empty background."""
        return math.log((1 + self.documents) / (1 + self.frequency.get(term, 0))) + 1.0


EMPTY_BACKGROUND = TermBackground(0, {})


class SummaryOptions(BaseModel):
    representatives: int = Field(5, ge=1, le=20)
    keywords: int = Field(12, ge=0, le=50)
    hashtags: int = Field(8, ge=0, le=50)


# --- output -----------------------------------------------------------------------------------------


class Representative(BaseModel):
    post_id: int
    title: str
    published_at: int
    views: int
    theme_posts: int = Field(description="Posts in the theme this post is the most typical of.")
    theme_share: float = Field(description="theme_posts / posts summarized.")


class Term(BaseModel):
    term: str
    posts: int = Field(description="Posts using the term.")
    score: float = Field(description="Share of posts using it x its rarity in the background (idf).")


class VerticalShare(BaseModel):
    taxonomy: str
    vertical: str
    posts: int
    share: float
    mean_confidence: float


class Cadence(BaseModel):
    first_post_at: int
    last_post_at: int
    active_days: float = Field(description="Days from the first to the last post summarized.")
    posts_per_week: float = Field(description="Posts / active weeks (at least one week).")
    posts_last_30_days: int
    days_since_last_post: float = Field(description="At the time of the summary.")


class Reach(BaseModel):
    median_views: float
    p90_views: int
    median_likes: float
    p90_likes: int
    median_comments: float
    engagement_rate: float | None = Field(description="(likes + comments) / views over all posts; null "
                                                      "without views.")
    median_views_per_follower: float | None = Field(description="null when followers is 0.")


class AccountSummary(BaseModel):
    format: int = SUMMARY_FORMAT
    account: AccountProfile
    computed_at: int
    posts: int = Field(description="Posts summarized (the most recent, at most the configured maximum).")
    representatives: list[Representative]
    keywords: list[Term]
    hashtags: list[Term]
    verticals: list[VerticalShare]
    cadence: Cadence
    reach: Reach
    text: str = Field(description="The summary as readable text.")
    embedding_text: str = Field(description="What the account's vector is computed from: its topics only "
                                            "(the model reads 256 tokens; numbers would only dilute them).")

    def account_labels(self, min_share: float = MIN_VERTICAL_SHARE) -> list[dict[str, Any]]:
        """Verticals as account labels, confidence = share of posts: a vertical filter with
        min_confidence 0.3 then means "at least 30% of its posts"."""
        return [{"taxonomy": v.taxonomy, "vertical": v.vertical, "confidence": v.share}
                for v in self.verticals if v.share >= min_share]


# --- summary ----------------------------------------------------------------------------------------


def summarize(account: AccountProfile, posts: Sequence[PostView], vectors: np.ndarray, *, now_ms: int,
              background: TermBackground = EMPTY_BACKGROUND, options: SummaryOptions | None = None,
              label_enabled: Callable[[str, str], bool] | None = None) -> AccountSummary:
    """posts[i] has vectors[i]; any order. Raises ValueError on an empty or mismatched input.

    label_enabled(taxonomy, vertical): False leaves a switched-off vertical out of the mix.
    """
    options = options or SummaryOptions()
    if not posts:
        raise ValueError("an account summary needs at least one post")
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[0] != len(posts):
        raise ValueError(f"{len(posts)} posts but vectors of shape {matrix.shape}")
    # Newest first, ties by id: the same posts always give the same summary, whatever the scroll order.
    order = sorted(range(len(posts)), key=lambda i: (-posts[i].published_at, -posts[i].post_id))
    posts, matrix = [posts[i] for i in order], matrix[order]
    usage: Counter[str] = Counter()  # posts using each term
    for post in posts:
        usage.update(terms_of(post.text))
    words = distinctive_terms(usage, len(posts), background, options.keywords, hashtags=False)
    tags = distinctive_terms(usage, len(posts), background, options.hashtags, hashtags=True)
    summary = AccountSummary(
        account=account, computed_at=now_ms, posts=len(posts),
        representatives=representatives(posts, matrix, options.representatives),
        keywords=words, hashtags=tags, verticals=vertical_mix(posts, label_enabled),
        cadence=cadence(posts, now_ms), reach=reach(posts, account.followers), text="", embedding_text="",
    )
    return summary.model_copy(update={"text": render_text(summary), "embedding_text": render_topics(summary)})


def representatives(posts: Sequence[PostView], vectors: np.ndarray, k: int) -> list[Representative]:
    n = len(posts)
    themes = theme_medoids(vectors, k)
    return [Representative(post_id=posts[i].post_id, title=posts[i].title, published_at=posts[i].published_at,
                           views=posts[i].views, theme_posts=size, theme_share=round(size / n, 4))
            for i, size in themes]


def theme_samples(posts: Sequence[PostView], vectors: np.ndarray, summary: AccountSummary,
                  per_theme: int) -> list[list[PostView]]:
    """Per representative (theme), the ``per_theme`` posts closest to it: the bounded sample an LLM
    reads instead of the account's thousands of posts. posts[i] has vectors[i]."""
    unit = _normalised(np.asarray(vectors, dtype=np.float32))
    row_of = {p.post_id: i for i, p in enumerate(posts)}
    samples = []
    for representative in summary.representatives:
        similarity = unit @ unit[row_of[representative.post_id]]
        closest = np.argsort(-similarity, kind="stable")[:per_theme]  # stable: ties go to the newer post
        samples.append([posts[int(i)] for i in closest])
    return samples


def theme_medoids(vectors: np.ndarray, k: int) -> list[tuple[int, int]]:
    """(row of the theme's medoid, posts in the theme), largest theme first."""
    unit = _normalised(vectors)
    # Themes are fitted on an evenly spaced sample (rows are in time order, so it spans the whole
    # history); every post is then assigned, and medoids and sizes come from all of them.
    sample = unit[:: max(1, math.ceil(len(unit) / KMEANS_SAMPLE))]
    centres = sample[_farthest_points(sample, min(k, len(sample)))]
    k = len(centres)
    for _ in range(KMEANS_ITERATIONS):
        assignment = (sample @ centres.T).argmax(axis=1)
        members = np.zeros((k, len(sample)), dtype=np.float32)
        members[assignment, np.arange(len(sample))] = 1.0
        sums = members @ sample  # per-theme sums in one product; the direction is all cosine needs
        empty = ~members.any(axis=1)
        sums[empty] = centres[empty]
        moved = _normalised(sums)
        if np.allclose(moved, centres, atol=1e-6):
            break
        centres = moved
    similarity = unit @ centres.T
    assignment = similarity.argmax(axis=1)
    sizes = np.bincount(assignment, minlength=k)
    # argmax takes the first maximum: rows are newest first, so ties go to the newer post.
    medoids = [(int(np.where(assignment == j, similarity[:, j], -np.inf).argmax()), int(sizes[j]))
               for j in range(k) if sizes[j]]
    medoids.sort(key=lambda m: (-m[1], m[0]))
    return _distinct_themes(unit, medoids, len(unit))


def _distinct_themes(unit: np.ndarray, medoids: list[tuple[int, int]], n: int) -> list[tuple[int, int]]:
    """Drop outlier themes and fold near-duplicate medoids into the larger theme."""
    kept: list[list[int]] = []
    for row, size in medoids:
        twin = next((entry for entry in kept if float(unit[row] @ unit[entry[0]]) >= NEAR_DUPLICATE), None)
        if twin is not None:
            twin[1] += size
        elif not kept or size / n >= MIN_THEME_SHARE:
            kept.append([row, size])
    return sorted(((row, size) for row, size in kept), key=lambda m: (-m[1], m[0]))


def _farthest_points(unit: np.ndarray, k: int) -> list[int]:
    """Deterministic k-means start: the most typical post, then repeatedly the post least similar
    to every start chosen so far (spreads the starts over the account's distinct topics)."""
    centroid = _normalised(unit.mean(axis=0, keepdims=True))[0]
    chosen = [int((unit @ centroid).argmax())]
    closest = unit @ unit[chosen[0]]
    while len(chosen) < k:
        candidate = int(closest.argmin())
        if closest[candidate] >= NEAR_DUPLICATE:  # every post is a start already: fewer themes than k
            break
        chosen.append(candidate)
        closest = np.maximum(closest, unit @ unit[candidate])
    return chosen


def _normalised(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


def terms_of(text: str) -> set[str]:
    """Distinct lower-case words (3+ characters, not only digits, no stop words) and #hashtags."""
    # Set operations rather than a per-token loop: this runs over up to 20,000 posts per summary.
    tokens = set(_TOKEN.findall(text.lower().replace("’", "'"))) - _STOPWORDS
    return {t for t in tokens if not t.lstrip("#").isdigit()}


def distinctive_terms(usage: Mapping[str, int], n: int, background: TermBackground, limit: int, *,
                      hashtags: bool) -> list[Term]:
    """usage: posts using each term, out of n. Terms used by at least two posts (one for a one-post
    account) and 1% of them, ranked by share of posts x idf against the background, ties alphabetically."""
    if limit == 0:
        return []
    floor = min(n, max(2, math.ceil(0.01 * n)))
    scored = [Term(term=t, posts=c, score=round(c / n * background.idf(t), 6)) for t, c in usage.items()
              if c >= floor and t.startswith("#") == hashtags]
    scored.sort(key=lambda t: (-t.score, t.term))
    return scored[:limit]


def vertical_mix(posts: Sequence[PostView],
                 label_enabled: Callable[[str, str], bool] | None = None) -> list[VerticalShare]:
    counts: Counter[tuple[str, str]] = Counter()
    confidence: Counter[tuple[str, str]] = Counter()
    for post in posts:
        best: dict[tuple[str, str], float] = {}
        for taxonomy, vertical, conf in post.labels:  # a post counts once per label
            if label_enabled is not None and not label_enabled(taxonomy, vertical):
                continue
            best[(taxonomy, vertical)] = max(conf, best.get((taxonomy, vertical), 0.0))
        counts.update(best.keys())
        confidence.update(best)
    n = len(posts)
    mix = [VerticalShare(taxonomy=t, vertical=v, posts=c, share=round(c / n, 4),
                         mean_confidence=round(confidence[(t, v)] / c, 4)) for (t, v), c in counts.items()]
    return sorted(mix, key=lambda m: (-m.posts, m.taxonomy, m.vertical))


def cadence(posts: Sequence[PostView], now_ms: int) -> Cadence:
    times = [p.published_at for p in posts]
    first, last = min(times), max(times)
    return Cadence(
        first_post_at=first, last_post_at=last, active_days=round((last - first) / DAY_MS, 2),
        posts_per_week=round(len(posts) / max((last - first) / WEEK_MS, 1.0), 2),
        posts_last_30_days=sum(t > now_ms - 30 * DAY_MS for t in times),
        days_since_last_post=round(max(0, now_ms - last) / DAY_MS, 2),
    )


def reach(posts: Sequence[PostView], followers: int) -> Reach:
    views = [p.views for p in posts]
    likes = [p.likes for p in posts]
    total_views = sum(views)
    median_views = float(statistics.median(views))
    return Reach(
        median_views=median_views, p90_views=nearest_rank(views, 0.9),
        median_likes=float(statistics.median(likes)), p90_likes=nearest_rank(likes, 0.9),
        median_comments=float(statistics.median(p.comments for p in posts)),
        engagement_rate=round((sum(likes) + sum(p.comments for p in posts)) / total_views, 4) if total_views else None,
        median_views_per_follower=round(median_views / followers, 4) if followers else None,
    )


def nearest_rank(values: Sequence[int], q: float) -> int:
    """The smallest value with at least q of the values at or below it (a value that occurred)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


# --- rendering --------------------------------------------------------------------------------------


def _date(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d")


def _percent(share: float) -> str:
    return f"{share * 100:.0f}%"


def render_text(s: AccountSummary) -> str:
    a, c, r = s.account, s.cadence, s.reach
    name = f"{a.display_name} (@{a.handle})" if a.display_name else f"@{a.handle}"
    lines = [
        f"{name} on {a.platform}, {a.followers:,} followers.",
        f"Based on the {s.posts:,} most recent indexed posts, {_date(c.first_post_at)} to {_date(c.last_post_at)}: "
        f"{c.posts_per_week:g} posts a week, {c.posts_last_30_days:,} in the last 30 days, last post "
        f"{c.days_since_last_post:g} days before this summary.",
    ]
    if s.verticals:
        several = len({v.taxonomy for v in s.verticals}) > 1
        lines.append("Verticals (share of posts): " + ", ".join(
            f"{v.taxonomy + ':' if several else ''}{v.vertical} {_percent(v.share)}" for v in s.verticals[:6]) + ".")
    if s.keywords:
        lines.append("Distinctive words: " + ", ".join(k.term for k in s.keywords) + ".")
    if s.hashtags:
        lines.append("Hashtags: " + " ".join(h.term for h in s.hashtags) + ".")
    engagement = f"; engagement (likes + comments) / views {_percent(r.engagement_rate)}" \
        if r.engagement_rate is not None else ""
    lines.append(f"Reach per post: median {r.median_views:,.0f} views (90th percentile {r.p90_views:,}), "
                 f"median {r.median_likes:,.0f} likes (90th percentile {r.p90_likes:,}){engagement}.")
    lines.append("Representative posts, one per theme:")
    lines += [f"- {p.title!r} ({_date(p.published_at)}, {p.views:,} views; its theme is "
              f"{_percent(p.theme_share)} of posts)" for p in s.representatives]
    return "\n".join(lines)


def render_topics(s: AccountSummary) -> str:
    """Topics first, in the order the model should weigh them: verticals, words, tags, example titles."""
    parts = [f"{s.account.display_name or s.account.handle} on {s.account.platform}."]
    if s.verticals:
        parts.append("Topics: " + ", ".join(v.vertical for v in s.verticals[:4]) + ".")
    if s.keywords:
        parts.append("Keywords: " + ", ".join(k.term for k in s.keywords) + ".")
    if s.hashtags:
        parts.append(" ".join(h.term for h in s.hashtags))
    parts.append("Posts: " + "; ".join(p.title for p in s.representatives) + ".")
    return " ".join(parts)


# --- when to recompute ------------------------------------------------------------------------------


class SummaryStamp(BaseModel):
    """What a stored summary was computed from (kept in its payload)."""

    summary_format: int
    post_count: int = Field(description="Indexed posts of the account when it was computed.")
    last_post_at: int
    computed_at: int = 0  # ms; 0 for summaries written before it was kept


class ChangeRule(BaseModel):
    min_new_posts: int = Field(10, ge=1)
    min_change_ratio: float = Field(0.05, gt=0)
    min_interval_ms: int = Field(0, ge=0)  # between two recomputations for new or fewer posts


Refresh = Literal["first", "format", "new_posts", "count_changed"]


def needs_refresh(previous: SummaryStamp | None, post_count: int, new_posts: int, rule: ChangeRule) -> Refresh | None:
    """Why the summary must be recomputed, or None when the posts did not change materially.

    post_count: the account's indexed posts now; new_posts: those published after the stored
    summary's last post. Edits of existing posts are not material: a summary is about the whole.
    """
    if previous is None:
        return "first"
    if previous.summary_format != SUMMARY_FORMAT:
        return "format"
    if new_posts >= rule.min_new_posts:
        return "new_posts"
    if abs(post_count - previous.post_count) >= rule.min_change_ratio * max(previous.post_count, 1):
        return "count_changed"
    return None


def held_until(previous: SummaryStamp | None, reason: Refresh, rule: ChangeRule, now_ms: int) -> int | None:
    """When an account that keeps posting may be summarized again, if not yet: a busy account would
    otherwise be recomputed every debounce window, and with the model on the same cores that cost
    freshness. A first summary, or one of an outdated format, is never held back."""
    if previous is None or reason not in ("new_posts", "count_changed"):
        return None
    due = previous.computed_at + rule.min_interval_ms
    return due if due > now_ms else None


# --- has the posts index caught up with what the summarizer was told? --------------------------------


class Expectation(BaseModel):
    """The latest pipeline event seen for an account: the posts index must reflect it before the
    account is summarized (the indexer reads the same topic in another consumer group, maybe later)."""

    kind: Literal["upsert", "delete", "purge"]
    point_id: str | None = None
    version: list[int] = Field(default_factory=list)  # the event's source order key
    seen_ms: int


def index_reflects(expect: Expectation, stored_version: list[int] | None, account_posts: int) -> bool:
    """stored_version: source_version of expect.point_id in the posts index (None if absent)."""
    if expect.kind == "purge":
        return account_posts == 0
    if expect.kind == "upsert":
        return stored_version is not None and list(stored_version) >= expect.version
    return stored_version is None or list(stored_version) > expect.version
