"""The summarizer's two halves around Redis: marking touched accounts, and refreshing due ones.

``TouchedAccounts`` turns a batch of pipeline events into dirty marks (and deletes the summary
of a purged account at once). ``AccountRefresher`` takes one due account: waits until the posts
index reflects its latest event, checks the change is material, scrolls its most recent posts
with their vectors, summarizes, embeds the summary and writes one point per account.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from services.indexer.core import post_point_id
from services.summarizer.core import (
    POST_FIELDS,
    SUMMARY_FORMAT,
    AccountProfile,
    AccountSummary,
    ChangeRule,
    Expectation,
    PostView,
    SummaryOptions,
    SummaryStamp,
    TermBackground,
    held_until,
    index_reflects,
    needs_refresh,
    summarize,
    theme_medoids,
    theme_samples,
)
from services.summarizer.dirty import ClaimedAccount, DirtyAccounts
from services.summarizer.llm_tier import LlmSummary, LlmSummaryWriter
from shared.account_vectors import ACCOUNTS_LAYOUT, THEMES, AccountVectors, account_vectors
from shared.classification.taxonomy import label_key
from shared.config import SummarizerSettings
from shared.embedding import TextEmbedder
from shared.events import EMBEDDING_DIM, AccountPurge, EmbeddedPostUpsert, PostDelete
from shared.logging import get_logger
from shared.metrics import SUMMARY_BACKLOG, SUMMARY_REFRESHES, SUMMARY_SECONDS
from shared.sparse import SparseEncoder
from shared.stored_post import PACKED_KEY, StoredPost, payload_fields
from shared.vectorstore import PointRecord, SearchFilter, VectorStore, point_id
from shared.vectorstore.base import LayoutMismatch

log = get_logger("summarizer")
RECHECK_MS = 1_000  # how soon an account whose posts the indexer has not written yet is looked at again
FAILURE_RETRY_MS = 5_000
CLAIM_BATCH = 8

Outcome = Literal["computed", "unchanged", "deleted", "deferred", "held"]


@dataclass(frozen=True)
class Refreshed:
    outcome: Outcome
    retry_at_ms: int | None = None  # when to look again ("deferred", "held")


@dataclass(frozen=True)
class ComputedSummary:
    summary: AccountSummary
    llm: LlmSummary | None = None
    vectors: AccountVectors | None = None  # centroid, theme and term vectors (shared.account_vectors)


def open_accounts_collection(store: VectorStore, name: str) -> bool:
    """Open (or create) an accounts collection with its named vectors; True when an older one without
    them was dropped and created anew (its summaries are derived data: the caller marks them due)."""
    try:
        store.ensure_collection(name, EMBEDDING_DIM, ACCOUNTS_LAYOUT)
        return False
    except LayoutMismatch as exc:
        log.warning("accounts collection predates the account vectors: recreating it", collection=name,
                    reason=str(exc)[:300])
    store.drop_collection(name)
    store.ensure_collection(name, EMBEDDING_DIM, ACCOUNTS_LAYOUT)
    return True


def account_point_id(account_id: int) -> str:
    return point_id("account", account_id)  # what the query API looks an account's summary up by


def expectation_of(event: object, now_ms: int) -> Expectation | None:
    """What the posts index must show once the indexer has applied ``event`` (None: nothing checkable)."""
    if isinstance(event, EmbeddedPostUpsert):
        return Expectation(kind="upsert", point_id=post_point_id(event.post.id),
                           version=event.position.order_key(), seen_ms=now_ms)
    if isinstance(event, PostDelete):
        if event.position is None:  # unversioned: the index shows it once the point is gone
            return Expectation(kind="delete", point_id=post_point_id(event.post_id), seen_ms=now_ms)
        return Expectation(kind="delete", point_id=post_point_id(event.post_id),
                           version=event.position.order_key(), seen_ms=now_ms)
    if isinstance(event, AccountPurge):
        return Expectation(kind="purge", version=event.position.order_key() if event.position else [],
                           seen_ms=now_ms)
    return None


@dataclass
class TouchedAccounts:
    """Marks accounts dirty (due after the debounce) and removes purged accounts' summaries."""

    store: VectorStore
    accounts_collection: str
    dirty: DirtyAccounts
    debounce_ms: int

    def apply(self, events: Sequence[tuple[int, object]]) -> None:
        """(account id, event) in topic order; returns once Redis and the store have it."""
        now_ms = int(time.time() * 1000)
        touched: dict[int, Expectation | None] = {}
        purged: set[int] = set()
        for account_id, event in events:
            expectation = expectation_of(event, now_ms)
            touched[account_id] = expectation or touched.get(account_id)  # e.g. label updates: no new check
            if isinstance(event, AccountPurge):
                purged.add(account_id)
        if purged:
            # At once rather than after the debounce: a purged account must not be found. The dirty
            # mark stays, so the summary is deleted again if a refresh raced this purge.
            self.store.delete(self.accounts_collection, [account_point_id(a) for a in sorted(purged)])
        self.dirty.mark(touched, now_ms + self.debounce_ms)


@dataclass
class AccountRefresher:
    store: VectorStore
    posts_collection: str
    accounts_collection: str
    embedder: TextEmbedder
    settings: SummarizerSettings
    label_enabled: Callable[[str, str], bool] | None = None
    llm: LlmSummaryWriter | None = None
    sparse: SparseEncoder = field(default_factory=SparseEncoder)
    _background: TermBackground | None = None
    _background_at: float = 0.0

    def __post_init__(self) -> None:
        self.recreated = open_accounts_collection(self.store, self.accounts_collection)
        self.rule = ChangeRule(min_new_posts=self.settings.summarizer_min_new_posts,
                               min_change_ratio=self.settings.summarizer_min_change_ratio,
                               min_interval_ms=int(self.settings.summarizer_min_interval_s * 1000))
        self.options = SummaryOptions(representatives=self.settings.summarizer_representatives,
                                      keywords=self.settings.summarizer_keywords,
                                      hashtags=self.settings.summarizer_hashtags)

    def refresh(self, claimed: ClaimedAccount, now_ms: int) -> Refreshed:
        account_id = claimed.account_id
        posts_filter = SearchFilter(account_id=[account_id])
        post_count = self.store.count(self.posts_collection, posts_filter)
        if not self._index_caught_up(claimed.expectation, post_count, now_ms):
            return Refreshed("deferred", now_ms + RECHECK_MS)
        if post_count == 0:
            self.store.delete(self.accounts_collection, [account_point_id(account_id)])
            return Refreshed("deleted")
        previous = self._stamp(account_id)
        new_posts = post_count if previous is None else self.store.count(
            self.posts_collection, posts_filter.model_copy(update={"published_after": previous.last_post_at + 1}))
        reason = needs_refresh(previous, post_count, new_posts, self.rule)
        if reason is None:
            return Refreshed("unchanged")
        hold = held_until(previous, reason, self.rule, now_ms)
        if hold is not None:
            return Refreshed("held", hold)
        with SUMMARY_SECONDS.time():
            computed = self.compute(account_id, now_ms)
            self.write(computed, post_count)
        log.info("account summarized", account_id=account_id, reason=reason, posts=computed.summary.posts,
                 llm=computed.llm is not None, collection=self.accounts_collection)
        return Refreshed("computed")

    def compute(self, account_id: int, now_ms: int) -> ComputedSummary:
        """Summary of the account's most recent posts (at most SUMMARIZER_MAX_POSTS), plus the LLM's
        profile when that tier is configured and answers."""
        points = self.store.scroll_points(self.posts_collection, SearchFilter(account_id=[account_id]),
                                          limit=self.settings.summarizer_max_posts, order_by="published_at",
                                          fields=POST_FIELDS)
        vectors = self.store.dense_vectors(self.posts_collection, [p.id for p in points])
        with_vectors = [p for p in points if p.id in vectors]  # a post deleted between the two reads
        if not with_vectors:
            raise LookupError(f"account {account_id}: its posts vanished while being read")
        stored = [StoredPost.from_payload(p.payload) for p in with_vectors]
        newest = max(stored, key=lambda p: (p.published_at, p.post_id))
        posts = [PostView.from_stored(p) for p in stored]
        matrix = np.asarray([vectors[p.id] for p in with_vectors], dtype=np.float32)
        summary = summarize(AccountProfile.from_stored(newest), posts, matrix, now_ms=now_ms,
                            background=self.background(), options=self.options, label_enabled=self.label_enabled)
        vectors = self.vectors(posts, matrix)
        if self.llm is None:
            return ComputedSummary(summary, vectors=vectors)
        samples = theme_samples(posts, matrix, summary, self.settings.summarizer_llm_posts_per_theme)
        return ComputedSummary(summary, self.llm.write(summary, samples), vectors)

    def vectors(self, posts: Sequence[PostView], matrix: np.ndarray) -> AccountVectors:
        """The account's centroid, one vector per theme and its term shares (shared.account_vectors)."""
        medoids = [row for row, _ in theme_medoids(matrix, THEMES)]
        terms = [self.sparse.query(post.text).indices for post in posts]
        return account_vectors(matrix, medoids, terms)

    def write(self, computed: ComputedSummary, post_count: int) -> None:
        summary, llm = computed.summary, computed.llm
        vector = self.embedder.embed([summary.embedding_text])[0]
        labels = summary.account_labels()
        payload = {
            **summary.account.model_dump(),
            # The LLM's prose first when there is one; the extractive facts always follow it.
            "summary": f"{llm.text}\n\n{summary.text}" if llm else summary.text,
            "summary_source": "llm" if llm else "extractive",
            "summary_llm_model": llm.model if llm else None,
            # The label contract of posts (shared.classification.taxonomy), so the API's vertical filters work on accounts.
            "verticals": labels,
            "vertical_labels": sorted({label_key(v["taxonomy"], v["vertical"]) for v in labels}),
            "summary_format": SUMMARY_FORMAT,
            "post_count": post_count,
            "last_post_at": summary.cadence.last_post_at,
            "indexed_at_ms": summary.computed_at,
            "model_id": self.embedder.model_id,
            "summary_fields": summary.model_dump(mode="json", exclude={"account", "text", "embedding_text"}),
        }
        self.store.upsert(self.accounts_collection, [PointRecord(
            id=account_point_id(summary.account.account_id), vector=vector,
            sparse=self.sparse.document(summary.embedding_text), payload=payload,
            named=computed.vectors.named() if computed.vectors else {})])

    def background(self) -> TermBackground:
        """A sample of every indexed post, redrawn now and then: the keywords' idea of ordinary."""
        if self._background is None or time.monotonic() - self._background_at > self.settings.summarizer_background_refresh_s:
            sample = self.store.scroll_points(self.posts_collection, None, limit=self.settings.summarizer_background_posts,
                                              fields=("title", "description", PACKED_KEY)) \
                if self.settings.summarizer_background_posts else []
            self._background = TermBackground.from_texts(
                f"{post.get('title') or ''}\n{post.get('description') or ''}"
                for post in (payload_fields(p.payload) for p in sample))
            self._background_at = time.monotonic()
        return self._background

    def _stamp(self, account_id: int) -> SummaryStamp | None:
        found = self.store.retrieve(self.accounts_collection, [account_point_id(account_id)])
        if not found:
            return None
        payload = found[0].payload
        return SummaryStamp(summary_format=int(payload.get("summary_format") or 0),
                            post_count=int(payload.get("post_count") or 0),
                            last_post_at=int(payload.get("last_post_at") or 0),
                            computed_at=int(payload.get("indexed_at_ms") or 0))

    def _index_caught_up(self, expectation: Expectation | None, post_count: int, now_ms: int) -> bool:
        if expectation is None:
            return True
        if now_ms - expectation.seen_ms > self.settings.summarizer_catch_up_timeout_s * 1000:
            log.warning("posts index still behind the account's latest event; summarizing what it has",
                        kind=expectation.kind, point_id=expectation.point_id, collection=self.posts_collection)
            return True
        stored = None
        if expectation.point_id is not None:
            found = self.store.retrieve(self.posts_collection, [expectation.point_id])
            stored = found[0].payload.get("source_version") if found else None
        return index_reflects(expectation, stored, post_count)


@dataclass
class SummaryWorker:
    """Claims due accounts and refreshes them, until stopped."""

    dirty: DirtyAccounts
    refresher: AccountRefresher
    settings: SummarizerSettings
    stop: threading.Event

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                done = self.run_once()
            except Exception as exc:  # Redis or the store is down: try again shortly
                log.error("summary worker failed, retrying", error=repr(exc)[:500])
                done = 0
                self.stop.wait(FAILURE_RETRY_MS / 1000)
            if not done:
                self.stop.wait(self.settings.summarizer_poll_s)

    def run_once(self) -> int:
        """Refresh the accounts due now; returns how many were claimed."""
        now_ms = int(time.time() * 1000)
        claimed = self.dirty.claim(now_ms, int(self.settings.summarizer_lease_s * 1000), CLAIM_BATCH)
        for account in claimed:
            self._refresh(account)
        SUMMARY_BACKLOG.labels(collection=self.refresher.accounts_collection).set(self.dirty.backlog())
        return len(claimed)

    def _refresh(self, account: ClaimedAccount) -> None:
        try:
            refreshed = self.refresher.refresh(account, int(time.time() * 1000))
        except Exception as exc:  # noqa: BLE001 (one account's failure must not stop the others)
            log.error("summary failed, will retry", account_id=account.account_id, error=repr(exc)[:500])
            self.dirty.defer(account, int(time.time() * 1000) + FAILURE_RETRY_MS)
            return
        SUMMARY_REFRESHES.labels(outcome=refreshed.outcome).inc()
        if refreshed.retry_at_ms is not None:
            self.dirty.defer(account, refreshed.retry_at_ms)
        else:
            self.dirty.finish(account)
