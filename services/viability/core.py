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
        return self._transition(account.id, position, now_ms)

    def on_post(self, change: ChangeEvent, now_ms: int) -> list[Decision]:
        post = PostRecord.model_validate(change.row)
        position = SourcePosition.of(change.source)
        if change.op == "d":
            self.state.remove_post(post.account_id, post.id)
            delete = PostDelete(post_id=post.id, account_id=post.account_id, position=position)
            return [delete, *self._transition(post.account_id, position, now_ms)]
        self.state.add_post(post.account_id, post.id, post.published_at)
        decisions = self._transition(post.account_id, position, now_ms)
        if self.state.was_viable(post.account_id):
            decisions += self._forward(post, position)
        return decisions

    def _transition(self, account_id: int, position: SourcePosition, now_ms: int) -> list[Decision]:
        """Compare the account's viability now with what was last decided; act on a change."""
        account = self.state.get_account(account_id)
        count, latest = self.state.post_stats(account_id)
        viable = self.rules.is_viable(account, count, latest, now_ms)
        if viable == self.state.was_viable(account_id):
            return []
        self.state.set_viable(account_id, viable)
        if viable:
            return [SnapshotRequest((account_id,))]
        reason = "account deleted" if account is None else "account no longer viable"
        return [AccountPurge(account_id=account_id, reason=reason, position=position)]

    def _forward(self, post: PostRecord, position: SourcePosition) -> list[Decision]:
        """Forward a viable account's post if it is among its N most recent; drop the one it displaces."""
        limit = self.rules.max_posts_per_account
        rank = self.state.recent_rank(post.account_id, post.id)
        if rank is None or rank >= limit:
            return []
        account = self.state.get_account(post.account_id)
        fields = AccountFields(handle=account.handle, display_name=account.display_name, followers=account.followers)
        decisions: list[Decision] = [PostUpsert(post=post, account=fields, position=position)]
        displaced = self.state.post_at_rank(post.account_id, limit)
        if displaced is not None:
            decisions.append(PostDelete(post_id=displaced, account_id=post.account_id, position=position))
        return decisions
