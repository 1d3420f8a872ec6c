"""Is this account viable, and what goes downstream? Pure decisions over a small state interface.

Viability depends on account fields (followers) and on aggregates over its posts (how many, how
recent), both arriving as CDC events in any order. The state keeps, per account, its record and
an index of its posts by publish time, which answers "how many", "latest" and "is this post among
the N most recent" without keeping post texts. When an account becomes viable its posts are asked
for again from the source (a Debezium incremental-snapshot signal); when it stops being viable,
or is deleted, every post of it leaves the index (an ``account.purge`` event).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pydantic import BaseModel, Field

from shared.events import (
    AccountFields,
    AccountPurge,
    AccountRecord,
    ChangeEvent,
    PostDelete,
    PostRecord,
    PostUpsert,
    SourcePosition,
)

DAY_MS = 86_400_000


class ViabilityRules(BaseModel):
    """Which accounts are worth indexing. Values come from VIABILITY_* environment variables."""

    min_followers: int = Field(10_000, ge=0)
    min_posts: int = Field(20, ge=0)
    active_within_days: int = Field(180, ge=1)
    max_posts_per_account: int = Field(20_000, ge=1)

    def viable_posts_sql(self) -> tuple[str, tuple[int, ...]]:
        """The same rules as SQL over the source tables: ``SELECT id`` of every post that must be
        indexed. Replay verification and the benchmarks compare the index against it."""
        sql = """
        SELECT p.id FROM (
          SELECT id, account_id,
                 ROW_NUMBER() OVER (PARTITION BY account_id ORDER BY published_at DESC, id DESC) AS recency
          FROM posts
        ) p
        JOIN accounts a ON a.id = p.account_id
        JOIN (SELECT account_id FROM posts GROUP BY account_id
              HAVING COUNT(*) >= %s AND MAX(published_at) >= UTC_TIMESTAMP() - INTERVAL %s DAY) active
          ON active.account_id = p.account_id
        WHERE a.followers >= %s AND p.recency <= %s
        """
        return sql, (self.min_posts, self.active_within_days, self.min_followers, self.max_posts_per_account)

    def is_viable(self, account: AccountRecord | None, post_count: int, latest_post_ms: int | None,
                  now_ms: int) -> bool:
        if account is None:
            return False
        recent_enough = latest_post_ms is not None and latest_post_ms >= now_ms - self.active_within_days * DAY_MS
        return account.followers >= self.min_followers and post_count >= self.min_posts and recent_enough


class ViabilityState(Protocol):
    def get_account(self, account_id: int) -> AccountRecord | None: ...
    def put_account(self, account: AccountRecord) -> None: ...
    def delete_account(self, account_id: int) -> None: ...
    def add_post(self, account_id: int, post_id: int, published_at: int) -> None: ...
    def remove_post(self, account_id: int, post_id: int) -> None: ...
    def post_stats(self, account_id: int) -> tuple[int, int | None]: ...  # count, latest published_at
    def recent_rank(self, account_id: int, post_id: int) -> int | None: ...  # 0 = most recent
    def post_at_rank(self, account_id: int, rank: int) -> int | None: ...
    def was_viable(self, account_id: int) -> bool: ...
    def set_viable(self, account_id: int, viable: bool) -> None: ...


@dataclass(frozen=True)
class AccountView:
    """What a decision about one event needs, read after that event's post/account write.

    A state may build it in one round trip (``RedisViabilityState`` pipelines the write and every
    read); ``read_view`` composes it from the basic ``ViabilityState`` calls otherwise.
    """

    account: AccountRecord | None
    viable: bool  # as last decided
    post_count: int
    latest_post_ms: int | None
    rank: int | None = None  # recency rank of the post just written (0 = most recent)
    displaced: int | None = None  # the post at rank max_posts_per_account, if any


PostWrite = tuple[int, int | None]  # (post_id, published_at); published_at None = remove


def read_view(state: ViabilityState, account_id: int, post: PostWrite | None, limit: int) -> AccountView:
    """The fallback for states without ``apply_and_read``: one call per fact."""
    if post is not None:
        post_id, published_at = post
        if published_at is None:
            state.remove_post(account_id, post_id)
        else:
            state.add_post(account_id, post_id, published_at)
    count, latest = state.post_stats(account_id)
    view = AccountView(state.get_account(account_id), state.was_viable(account_id), count, latest)
    if post is not None and post[1] is not None:
        rank = state.recent_rank(account_id, post[0])
        displaced = state.post_at_rank(account_id, limit) if rank is not None and rank < limit else None
        view = AccountView(view.account, view.viable, count, latest, rank, displaced)
    return view


@dataclass(frozen=True)
class SnapshotRequest:
    """Ask the source for the posts of these accounts again."""

    account_ids: tuple[int, ...]


Decision = PostUpsert | PostDelete | AccountPurge | SnapshotRequest


class ViabilityFilter:
    def __init__(self, state: ViabilityState, rules: ViabilityRules) -> None:
        self.state = state
        self.rules = rules

    def on_account(self, change: ChangeEvent, now_ms: int) -> list[Decision]:
        account = AccountRecord.model_validate(change.row)
        position = SourcePosition.of(change.source)
        if change.op == "d":
            self.state.delete_account(account.id)
        else:
            self.state.put_account(account)
        view = self._view(account.id, None)
        return self._transition(account.id, view, position, now_ms)[0]

    def on_post(self, change: ChangeEvent, now_ms: int) -> list[Decision]:
        post = PostRecord.model_validate(change.row)
        position = SourcePosition.of(change.source)
        if change.op == "d":
            view = self._view(post.account_id, (post.id, None))
            delete = PostDelete(post_id=post.id, account_id=post.account_id, position=position)
            return [delete, *self._transition(post.account_id, view, position, now_ms)[0]]
        view = self._view(post.account_id, (post.id, post.published_at))
        decisions, viable = self._transition(post.account_id, view, position, now_ms)
        if viable:
            decisions += self._forward(post, position, view)
        return decisions

    def _view(self, account_id: int, post: PostWrite | None) -> AccountView:
        """Apply the post write (if any) and read what the decision needs: one round trip when
        the state supports it, instead of ~7 (the viability bottleneck, see bench/)."""
        limit = self.rules.max_posts_per_account
        apply_and_read = getattr(self.state, "apply_and_read", None)
        if apply_and_read is not None:
            return apply_and_read(account_id, post, limit)
        return read_view(self.state, account_id, post, limit)

    def _transition(self, account_id: int, view: AccountView, position: SourcePosition,
                    now_ms: int) -> tuple[list[Decision], bool]:
        """Compare the account's viability now with what was last decided; act on a change.
        Returns the decisions and whether the account is viable afterwards."""
        viable = self.rules.is_viable(view.account, view.post_count, view.latest_post_ms, now_ms)
        if viable == view.viable:
            return [], viable
        self.state.set_viable(account_id, viable)
        if viable:
            return [SnapshotRequest((account_id,))], viable
        reason = "account deleted" if view.account is None else "account no longer viable"
        return [AccountPurge(account_id=account_id, reason=reason, position=position)], viable

    def _forward(self, post: PostRecord, position: SourcePosition, view: AccountView) -> list[Decision]:
        """Forward a viable account's post if it is among its N most recent; drop the one it displaces."""
        limit = self.rules.max_posts_per_account
        if view.rank is None or view.rank >= limit or view.account is None:
            return []
        account = view.account
        fields = AccountFields(handle=account.handle, display_name=account.display_name, followers=account.followers)
        decisions: list[Decision] = [PostUpsert(post=post, account=fields, position=position)]
        if view.displaced is not None:
            decisions.append(PostDelete(post_id=view.displaced, account_id=post.account_id, position=position))
        return decisions
