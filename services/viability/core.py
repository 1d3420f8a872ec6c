"""Is this account viable, and what goes downstream? Pure decisions over a small state interface.

Viability depends on account fields (followers) and on aggregates over its posts (how many, how
recent), both arriving as CDC events in any order. The state keeps, per account, its record and
an index of its posts by publish time, which answers "how many", "latest" and "is this post among
the N most recent" without keeping post texts. When an account becomes viable its posts are asked
for again from the source (a Debezium incremental-snapshot signal); when it stops being viable,
or is deleted, every post of it leaves the index (an ``account.purge`` event).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Literal, Protocol

from pydantic import BaseModel, Field

from shared.events import (
    AccountFields,
    AccountPurge,
    AccountRecord,
    ChangeEvent,
    DebeziumSource,
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

    def viable_posts_sql(self, as_of_ms: int | None = None) -> tuple[str, tuple]:
        """The same rules as SQL over the source tables: ``SELECT id`` of every post that must be
        indexed. Replay verification and the benchmarks compare the index against it.

        ``as_of_ms`` is the clock of the activity rule: the viability sweep's recorded one, so the
        count moves exactly when the service's decisions do (``is_viable`` with the same clock);
        None = the database's current time.
        """
        if as_of_ms is None:
            active_since, params = "UTC_TIMESTAMP() - INTERVAL %s DAY", (self.active_within_days,)
        else:  # DATETIME(3) holds UTC wall-clock time (db/schema.sql); cdc reads it as epoch ms
            cutoff = datetime.fromtimestamp((as_of_ms - self.active_within_days * DAY_MS) / 1000, timezone.utc)
            active_since, params = "%s", (cutoff.replace(tzinfo=None),)
        sql = f"""
        SELECT p.id FROM (
          SELECT id, account_id,
                 ROW_NUMBER() OVER (PARTITION BY account_id ORDER BY published_at DESC, id DESC) AS recency
          FROM posts
        ) p
        JOIN accounts a ON a.id = p.account_id
        JOIN (SELECT account_id FROM posts GROUP BY account_id
              HAVING COUNT(*) >= %s AND MAX(published_at) >= {active_since}) active
          ON active.account_id = p.account_id
        WHERE a.followers >= %s AND p.recency <= %s
        """
        return sql, (self.min_posts, *params, self.min_followers, self.max_posts_per_account)

    def is_viable(self, account: AccountRecord | None, post_count: int, latest_post_ms: int | None,
                  now_ms: int) -> bool:
        if account is None:
            return False
        recent_enough = latest_post_ms is not None and latest_post_ms >= now_ms - self.active_within_days * DAY_MS
        return account.followers >= self.min_followers and post_count >= self.min_posts and recent_enough


def initial_snapshot_of(source: DebeziumSource) -> str | None:
    """Which initial snapshot a row was read by (its binlog position), or None: streamed, or read by an
    incremental snapshot. Debezium marks initial snapshot rows "true", "first", "last", ... and rows an
    execute-snapshot signal re-read "incremental"; cdc does the same."""
    if not source.is_snapshot or str(source.snapshot).lower() == "incremental":
        return None
    return f"{source.file}:{source.pos}:{source.gtid or ''}"


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
    def requested_in(self, account_id: int) -> str | None: ...  # see AccountView.requested_in
    def set_requested_in(self, runs: dict[int, str | None]) -> None: ...


@dataclass(frozen=True)
class AccountView:
    """What a decision about one event needs, read after that event's write.

    A state may build the views of a whole batch in one round trip (``RedisViabilityState``
    pipelines every write and read in order); ``read_views`` composes them from the basic
    ``ViabilityState`` calls otherwise.
    """

    account: AccountRecord | None
    viable: bool  # as last recorded (decisions of the same batch are not recorded yet)
    post_count: int
    latest_post_ms: int | None
    rank: int | None = None  # recency rank of the post just written (0 = most recent)
    displaced: int | None = None  # the post at rank max_posts_per_account, if any
    # A removed post was among the N most recent, or is unknown (a retried batch removed it already,
    # a redelivered delete): the post now at rank N-1, which may have taken its place.
    refill: int | None = None
    # The initial snapshot (SourceChange.initial_snapshot) during which the account last became viable,
    # as recorded; None when that happened on any other event.
    requested_in: str | None = None


PostWrite = tuple[int, int | None]  # (post_id, published_at); published_at None = remove


@dataclass(frozen=True)
class StateWrite:
    """What one change writes to the state before its view is read."""

    account_id: int
    post: PostWrite | None = None
    account: AccountRecord | None = None  # an account upserted
    account_deleted: bool = False


@dataclass(frozen=True)
class SourceChange:
    """One validated CDC row change of ``accounts`` or ``posts``: what the filter decides on."""

    op: str
    record: AccountRecord | PostRecord
    position: SourcePosition
    # Which table, kept so the decisions need no isinstance on the record: pydantic models answer it
    # through ABCMeta in Python, a tenth of the batch's CPU (bench/viability_state.py).
    table: Literal["accounts", "posts"]
    # Read by cdc's initial snapshot: which one (its binlog position, the same on every row it reads);
    # None for a streamed change or a row an incremental snapshot (a SnapshotRequest) re-read.
    initial_snapshot: str | None = None

    @classmethod
    def of(cls, table: Literal["accounts", "posts"], change: ChangeEvent) -> SourceChange:
        """Raises a ValueError (pydantic's) when the row is not a valid account or post."""
        model = AccountRecord if table == "accounts" else PostRecord
        return cls(change.op, model.model_validate(change.row), SourcePosition.of(change.source), table,
                   initial_snapshot_of(change.source))

    @property
    def account_id(self) -> int:
        return self.record.id if self.table == "accounts" else self.record.account_id

    def state_write(self) -> StateWrite:
        record, deleted = self.record, self.op == "d"
        if self.table == "accounts":
            return StateWrite(record.id, account=None if deleted else record, account_deleted=deleted)
        return StateWrite(record.account_id, post=(record.id, None if deleted else record.published_at))


@dataclass(frozen=True)
class SourceTombstone:
    """A tombstone on a source topic: the row with this primary key is gone. After compaction it may be
    all that is left of a delete (the ``op: "d"`` event before it compacted away), so it is acted on as a
    delete of that key. It has no source position; a post's account comes from the state's lookup."""

    table: Literal["accounts", "posts"]
    row_id: int
    post_account_id: int | None = None  # posts: the account the state knew the post by
    op: str = "d"
    position: None = None
    initial_snapshot: None = None

    @property
    def account_id(self) -> int:
        return self.row_id if self.table == "accounts" else int(self.post_account_id or 0)

    def state_write(self) -> StateWrite:
        if self.table == "accounts":
            return StateWrite(self.row_id, account_deleted=True)
        return StateWrite(self.account_id, post=(self.row_id, None))


def resolve_tombstones(changes: Sequence[SourceChange | SourceTombstone],
                       stored: dict[int, int]) -> tuple[list[SourceChange | SourceTombstone], dict[int, int | None]]:
    """Give each post tombstone its account (from this batch's own changes, else ``stored``, the
    state's post -> account lookup) and drop those of posts nobody knows (their delete was already
    acted on, or the post was never seen). Returns the changes and the lookup's updates (None = forget)."""
    known: dict[int, int | None] = {}
    resolved: list[SourceChange | SourceTombstone] = []
    for change in changes:
        if isinstance(change, SourceTombstone):
            if change.table == "posts":
                account_id = known[change.row_id] if change.row_id in known else stored.get(change.row_id)
                if account_id is None:
                    continue
                change = SourceTombstone("posts", change.row_id, account_id)
                known[change.row_id] = None
        elif change.table == "posts":
            known[change.record.id] = None if change.op == "d" else change.record.account_id
        resolved.append(change)
    return resolved, known


def read_view(state: ViabilityState, account_id: int, post: PostWrite | None, limit: int) -> AccountView:
    """One call per fact: apply the post write (if any) and read the view after it."""
    removed_rank = None
    if post is not None:
        post_id, published_at = post
        if published_at is None:
            removed_rank = state.recent_rank(account_id, post_id)
            state.remove_post(account_id, post_id)
        else:
            state.add_post(account_id, post_id, published_at)
    count, latest = state.post_stats(account_id)
    requested_in = state.requested_in(account_id)
    view = AccountView(state.get_account(account_id), state.was_viable(account_id), count, latest,
                       requested_in=requested_in)
    if post is not None and post[1] is not None:
        rank = state.recent_rank(account_id, post[0])
        displaced = state.post_at_rank(account_id, limit) if rank is not None and rank < limit else None
        view = AccountView(view.account, view.viable, count, latest, rank, displaced, requested_in=requested_in)
    elif post is not None and (removed_rank is None or removed_rank < limit):
        view = AccountView(view.account, view.viable, count, latest, refill=state.post_at_rank(account_id, limit - 1),
                           requested_in=requested_in)
    return view


def read_views(state: ViabilityState, writes: Sequence[StateWrite], limit: int) -> list[AccountView]:
    """The fallback for states without a batched ``apply_and_read``: each write, then its reads."""
    views = []
    for write in writes:
        if write.account is not None:
            state.put_account(write.account)
        elif write.account_deleted:
            state.delete_account(write.account_id)
        views.append(read_view(state, write.account_id, write.post, limit))
    return views


@dataclass(frozen=True)
class SnapshotRequest:
    """Ask the source for rows again: every post of these accounts, and these single posts (the
    ones that entered an account's N most recent when a newer one was deleted)."""

    account_ids: tuple[int, ...] = ()
    post_ids: tuple[int, ...] = ()


Decision = PostUpsert | PostDelete | AccountPurge | SnapshotRequest


@dataclass
class Verdict:
    """A batch's decisions, in order, and the viability each changed account has after it.

    The new viability is recorded only once the decisions are durable downstream (``record``):
    were it recorded first and the batch lost, its retry would see no change and the purge or
    snapshot request would never be sent.
    """

    decisions: list[Decision] = field(default_factory=list)
    viable_after: dict[int, bool] = field(default_factory=dict)
    # post id -> account id (None = forget), recorded with the viability: a tombstone is resolved
    # against it, so it must not run ahead of the deletes downstream has seen.
    post_accounts: dict[int, int | None] = field(default_factory=dict)
    # account -> AccountView.requested_in after the batch, for the accounts that became viable in it
    requested_in: dict[int, str | None] = field(default_factory=dict)


@dataclass
class Sweep:
    """One evaluation of the time-based rule ("a post within N days") over every viable account, as
    of one clock. Until the next sweep the service decides events by the same clock, and replay
    verification counts by it, so index and verification agree between sweeps too."""

    as_of_ms: int
    checked: int
    verdict: Verdict

    @property
    def purged(self) -> int:
        return sum(1 for viable in self.verdict.viable_after.values() if not viable)


class ViabilityFilter:
    def __init__(self, state: ViabilityState, rules: ViabilityRules) -> None:
        self.state = state
        self.rules = rules

    def decide(self, changes: Sequence[SourceChange | SourceTombstone], now_ms: int) -> Verdict:
        """Decide a batch in order, with one state round trip for all of it when the state allows."""
        verdict = Verdict()
        changes, verdict.post_accounts = resolve_tombstones(changes, self._stored_post_accounts(changes))
        for change, view in zip(changes, self._views([c.state_write() for c in changes])):
            self._decide_one(change, view, now_ms, verdict)
        return verdict

    def sweep(self, account_ids: Sequence[int], as_of_ms: int) -> Sweep:
        """Purge the viable accounts that are no longer viable as of ``as_of_ms`` without any event
        (an account that stopped posting). Like a batch, nothing is recorded until ``record``."""
        verdict = Verdict()
        writes = [StateWrite(account_id) for account_id in account_ids]
        for write, view in zip(writes, self._views(writes)):
            if view.viable and not self.rules.is_viable(view.account, view.post_count, view.latest_post_ms, as_of_ms):
                verdict.viable_after[write.account_id] = False
                reason = (f"no post within {self.rules.active_within_days} days" if view.account is not None
                          else "account deleted")
                verdict.decisions.append(AccountPurge(account_id=write.account_id, reason=reason, position=None))
        return Sweep(as_of_ms, len(writes), verdict)

    def _stored_post_accounts(self, changes: Sequence[SourceChange | SourceTombstone]) -> dict[int, int]:
        wanted = [c.row_id for c in changes if isinstance(c, SourceTombstone) and c.table == "posts"]
        lookup = getattr(self.state, "post_accounts", None)
        return lookup(wanted) if wanted and lookup is not None else {}

    def record(self, verdict: Verdict) -> None:
        set_post_accounts = getattr(self.state, "set_post_accounts", None)
        if set_post_accounts is not None and verdict.post_accounts:
            set_post_accounts(verdict.post_accounts)
        if verdict.requested_in:
            self.state.set_requested_in(verdict.requested_in)
        set_viable_many = getattr(self.state, "set_viable_many", None)
        if set_viable_many is not None:
            set_viable_many(verdict.viable_after)
            return
        for account_id, viable in verdict.viable_after.items():
            self.state.set_viable(account_id, viable)

    def _views(self, writes: list[StateWrite]) -> list[AccountView]:
        """Apply the writes and read what each decision needs: one round trip per batch when the
        state supports it, instead of ~7 per event (the viability bottleneck, see bench/)."""
        limit = self.rules.max_posts_per_account
        apply_and_read = getattr(self.state, "apply_and_read", None)
        if apply_and_read is not None:
            return apply_and_read(writes, limit)
        return read_views(self.state, writes, limit)

    def _decide_one(self, change: SourceChange | SourceTombstone, view: AccountView, now_ms: int,
                    verdict: Verdict) -> None:
        if isinstance(change, SourceTombstone):
            self._decide_tombstone(change, view, now_ms, verdict)
            return
        account_id = change.account_id
        run = change.initial_snapshot
        if change.table == "accounts":
            self._transition(account_id, view, change.position, now_ms, verdict, run)
            return
        post = change.record
        if change.op == "d":
            verdict.decisions.append(PostDelete(post_id=post.id, account_id=account_id, position=change.position))
            if self._transition(account_id, view, change.position, now_ms, verdict, run):
                verdict.decisions += self._refill(view)
        elif self._transition(account_id, view, change.position, now_ms, verdict, run):
            rereads = run is not None and run == verdict.requested_in.get(account_id, view.requested_in)
            verdict.decisions += self._forward(post, change.position, view, superseded=rereads)

    def _decide_tombstone(self, change: SourceTombstone, view: AccountView, now_ms: int, verdict: Verdict) -> None:
        """A delete known only by its key: unversioned (position None) downstream."""
        if change.table == "posts":
            verdict.decisions.append(PostDelete(post_id=change.row_id, account_id=change.account_id, position=None))
        self._transition(change.account_id, view, None, now_ms, verdict)

    def _transition(self, account_id: int, view: AccountView, position: SourcePosition | None, now_ms: int,
                    verdict: Verdict, initial_snapshot: str | None = None) -> bool:
        """Compare the account's viability now with what was last decided (earlier in this batch,
        or recorded); act on a change. Returns whether the account is viable afterwards."""
        viable = self.rules.is_viable(view.account, view.post_count, view.latest_post_ms, now_ms)
        if viable == verdict.viable_after.get(account_id, view.viable):
            return viable
        verdict.viable_after[account_id] = viable
        if viable:
            verdict.decisions.append(SnapshotRequest((account_id,)))
            verdict.requested_in[account_id] = initial_snapshot
        else:
            reason = "account deleted" if view.account is None else "account no longer viable"
            verdict.decisions.append(AccountPurge(account_id=account_id, reason=reason, position=position))
        return viable

    @staticmethod
    def _refill(view: AccountView) -> list[Decision]:
        """A deleted post left a viable account's N most recent: the next one takes its place. The
        state knows that post's id, not its content, so the source is asked for the row again
        (it arrives as a snapshot read and is forwarded like any post within the N). A delete of a
        post the state does not know asks too: after a failed produce the batch is retried with the
        post already removed, and one extra row read is cheaper than a post that never comes in."""
        return [SnapshotRequest(post_ids=(view.refill,))] if view.refill is not None else []

    def _forward(self, post: PostRecord, position: SourcePosition, view: AccountView, *,
                 superseded: bool = False) -> list[Decision]:
        """Forward a viable account's post if it is among its N most recent; drop the one it displaces.

        ``superseded``: the row comes from the initial snapshot during which the account became viable.
        The SnapshotRequest made then re-reads every post of the account after that snapshot, so the
        row arrives again, as current as or newer than this copy (an initial snapshot reads as of its
        start); forwarding both sent most of such an account's posts twice. The displaced post still
        goes: deleting a post the index may hold is harmless, keeping one it must not hold is not."""
        limit = self.rules.max_posts_per_account
        if view.rank is None or view.rank >= limit or view.account is None:
            return []
        if superseded:
            return [PostDelete(post_id=view.displaced, account_id=post.account_id, position=position)
                    ] if view.displaced is not None else []
        account = view.account
        # Built from models validated at parse time: constructed, not validated again (that was a
        # quarter of decide's CPU per event, bench/viability_state.py).
        fields = AccountFields.model_construct(handle=account.handle, display_name=account.display_name,
                                               followers=account.followers)
        decisions: list[Decision] = [PostUpsert.model_construct(post=post, account=fields, position=position)]
        if view.displaced is not None:
            decisions.append(PostDelete(post_id=view.displaced, account_id=post.account_id, position=position))
        return decisions
