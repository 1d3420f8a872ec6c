import random

import pytest

from services.viability.core import DAY_MS, Decision, SnapshotRequest, SourceChange, ViabilityFilter, ViabilityRules
from shared.events import AccountPurge, ChangeEvent, PostDelete, PostUpsert, SourcePosition
from tests.unit.fakes import InMemoryViabilityState

NOW = 1_800_000_000_000
RULES = ViabilityRules(min_followers=1000, min_posts=3, active_within_days=30, max_posts_per_account=5)


def change(op, table, before=None, after=None) -> ChangeEvent:
    return ChangeEvent.model_validate({"op": op, "before": before, "after": after,
                                       "source": {"ts_ms": NOW, "db": "d", "table": table}})


def account(id=1, followers=5000):
    return {"id": id, "platform": "youtube", "handle": f"h{id}", "followers": followers}


def post(id, account_id=1, age_days=1):
    return {"id": id, "account_id": account_id, "platform": "youtube", "title": f"post {id}",
            "published_at": NOW - age_days * DAY_MS}


class OneChangePerBatch(ViabilityFilter):
    """The filter driven as the service drives it (``decide`` a batch, then ``record`` it), one change per batch."""

    def on_account(self, change: ChangeEvent, now_ms: int) -> list[Decision]:
        return self.decide_one(SourceChange.of("accounts", change), now_ms)

    def on_post(self, change: ChangeEvent, now_ms: int) -> list[Decision]:
        return self.decide_one(SourceChange.of("posts", change), now_ms)

    def decide_one(self, change: SourceChange, now_ms: int) -> list[Decision]:
        verdict = self.decide([change], now_ms)
        self.record(verdict)
        return verdict.decisions


@pytest.fixture
def viability():
    return OneChangePerBatch(InMemoryViabilityState(), RULES)


def test_rules():
    from shared.events import AccountRecord

    record = AccountRecord(**account())
    assert RULES.is_viable(record, 3, NOW - DAY_MS, NOW)
    assert not RULES.is_viable(record, 2, NOW, NOW)
    assert not RULES.is_viable(record, 3, NOW - 31 * DAY_MS, NOW)
    assert not RULES.is_viable(AccountRecord(**account(followers=999)), 3, NOW, NOW)
    assert not RULES.is_viable(None, 3, NOW, NOW)


def test_posts_of_an_unknown_or_small_account_are_not_forwarded(viability):
    assert viability.on_post(change("c", "posts", after=post(1)), NOW) == []
    assert viability.on_account(change("r", "accounts", after=account(followers=10)), NOW) == []
    assert viability.on_post(change("c", "posts", after=post(2)), NOW) == []


def test_account_becoming_viable_asks_for_its_posts_again_and_forwards_new_ones(viability):
    viability.on_account(change("r", "accounts", after=account()), NOW)
    assert viability.on_post(change("r", "posts", after=post(1)), NOW) == []
    assert viability.on_post(change("r", "posts", after=post(2)), NOW) == []
    decisions = viability.on_post(change("r", "posts", after=post(3)), NOW)
    assert decisions[0] == SnapshotRequest((1,))
    assert isinstance(decisions[1], PostUpsert) and decisions[1].post.id == 3
    [forwarded] = viability.on_post(change("c", "posts", after=post(4)), NOW)
    assert forwarded.post.id == 4 and forwarded.account.handle == "h1"


def snapshot_read(table, row, snapshot="true", pos=4):
    """A row as cdc's (or Debezium's) snapshot reads it: every row of one initial snapshot has its binlog position."""
    return ChangeEvent.model_validate({"op": "r", "after": row, "source": {
        "ts_ms": NOW, "db": "d", "table": table, "snapshot": snapshot, "file": "b.000001", "pos": pos}})


def test_rows_of_the_initial_snapshot_that_made_an_account_viable_come_with_its_re_read_only(viability):
    viability.on_account(snapshot_read("accounts", account()), NOW)
    for post_id in (1, 2):
        assert viability.on_post(snapshot_read("posts", post(post_id, age_days=post_id)), NOW) == []
    # the account turns viable here: every post of it will be read again, this one too
    assert viability.on_post(snapshot_read("posts", post(3, age_days=3)), NOW) == [SnapshotRequest((1,))]
    assert viability.on_post(snapshot_read("posts", post(4, age_days=4), snapshot="last"), NOW) == []
    # what the re-read brings, what the binlog streams and what a later snapshot reads goes downstream
    for event in (snapshot_read("posts", post(3, age_days=3), snapshot="incremental"),
                  change("u", "posts", before=post(4, age_days=4), after=post(4, age_days=4)),
                  snapshot_read("posts", post(5, age_days=5), pos=99)):
        [upsert] = viability.on_post(event, NOW)
        assert isinstance(upsert, PostUpsert) and upsert.post.id == event.row["id"]
    # a newer post of the same snapshot pushes the oldest of the 5 most recent out: that delete still goes
    assert viability.on_post(snapshot_read("posts", post(6, age_days=0)), NOW) == [
        PostDelete(post_id=5, account_id=1, position=SourcePosition.of(snapshot_read("posts", post(6)).source))]


def test_an_account_viable_on_a_streamed_change_forwards_the_snapshot_rows_after_it(viability):
    viability.on_account(snapshot_read("accounts", account(followers=10)), NOW)
    for post_id in (1, 2, 3):
        viability.on_post(snapshot_read("posts", post(post_id, age_days=post_id)), NOW)
    assert viability.on_account(change("u", "accounts", before=account(followers=10), after=account()), NOW) == [
        SnapshotRequest((1,))]
    [upsert] = viability.on_post(snapshot_read("posts", post(4, age_days=4)), NOW)
    assert upsert.post.id == 4


def test_account_losing_viability_or_deleted_is_purged(viability):
    viability.on_account(change("r", "accounts", after=account()), NOW)
    for i in range(3):
        viability.on_post(change("r", "posts", after=post(i)), NOW)
    [purge] = viability.on_account(change("u", "accounts", before=account(), after=account(followers=1)), NOW)
    assert isinstance(purge, AccountPurge) and purge.account_id == 1
    assert isinstance(viability.on_account(change("u", "accounts", after=account()), NOW)[0], SnapshotRequest)
    [purge] = viability.on_account(change("d", "accounts", before=account()), NOW)
    assert purge.reason == "account deleted"


def test_post_delete_is_always_forwarded_and_can_end_viability(viability):
    viability.on_account(change("r", "accounts", after=account()), NOW)
    for i in range(3):
        viability.on_post(change("r", "posts", after=post(i)), NOW)
    decisions = viability.on_post(change("d", "posts", before=post(2)), NOW)
    assert isinstance(decisions[0], PostDelete) and decisions[0].post_id == 2
    assert isinstance(decisions[1], AccountPurge)  # 2 posts left < min_posts


def test_only_the_most_recent_posts_are_kept(viability):
    viability.on_account(change("r", "accounts", after=account()), NOW)
    for i in range(5):  # ages 10..6 days: post 4 is the newest
        viability.on_post(change("r", "posts", after=post(i, age_days=10 - i)), NOW)
    assert viability.on_post(change("c", "posts", after=post(99, age_days=20)), NOW) == []  # 6th newest
    decisions = viability.on_post(change("c", "posts", after=post(100, age_days=0)), NOW)
    assert [type(d) for d in decisions] == [PostUpsert, PostDelete]
    assert decisions[0].post.id == 100
    assert decisions[1].post_id == 0  # the oldest of the five kept so far (10 days), pushed out


def test_deleting_one_of_the_most_recent_posts_asks_for_the_next_one(viability):
    viability.on_account(change("r", "accounts", after=account()), NOW)
    for i in range(8):  # post i is i+1 days old: posts 0-4 are the five kept
        viability.on_post(change("r", "posts", after=post(i, age_days=i + 1)), NOW)
    decisions = viability.on_post(change("d", "posts", before=post(1, age_days=2)), NOW)
    assert decisions == [PostDelete(post_id=1, account_id=1, position=decisions[0].position),
                         SnapshotRequest(post_ids=(5,))]
    assert viability.on_post(change("d", "posts", before=post(7, age_days=8)), NOW)[1:] == []  # not kept: no refill
    # Gone already (a retried batch removed it before its outputs failed): ask again, harmlessly.
    assert viability.on_post(change("d", "posts", before=post(1, age_days=2)), NOW)[1:] == [SnapshotRequest(post_ids=(5,))]
    viability.on_post(change("d", "posts", before=post(6, age_days=7)), NOW)
    viability.on_post(change("d", "posts", before=post(5, age_days=6)), NOW)  # four left: none to take its place
    assert viability.on_post(change("d", "posts", before=post(0, age_days=1)), NOW)[1:] == []


def random_changes(seed: int, count: int) -> list[SourceChange]:
    """Accounts appearing, growing, shrinking and leaving, with their posts coming and going."""
    rng = random.Random(seed)
    changes = []
    for _ in range(count):
        account_id = rng.choice([1, 2, 3])
        if rng.random() < 0.15:
            op = "d" if rng.random() < 0.15 else "u"
            row = account(account_id, followers=rng.choice([10, 5000]))
            changes.append(SourceChange.of("accounts", change(op, "accounts", before=row, after=row)))
        else:
            op = "d" if rng.random() < 0.3 else "c"
            row = post(rng.randrange(12), account_id, age_days=rng.choice([1, 2, 3, 40]))
            changes.append(SourceChange.of("posts", change(op, "posts", before=row, after=row)))
    return changes


@pytest.mark.parametrize("seed", range(5))
def test_a_batch_decides_exactly_what_one_event_at_a_time_does(seed):
    changes = random_changes(seed, 300)
    one_at_a_time = OneChangePerBatch(InMemoryViabilityState(), RULES)
    expected = [d for c in changes for d in one_at_a_time.decide_one(c, NOW)]
    batched_state = InMemoryViabilityState()
    batched = ViabilityFilter(batched_state, RULES)
    decided = []
    for start in range(0, len(changes), 37):
        verdict = batched.decide(changes[start:start + 37], NOW)
        batched.record(verdict)
        decided += verdict.decisions
    assert decided == expected
    assert any(isinstance(d, SnapshotRequest) for d in expected) and any(isinstance(d, AccountPurge) for d in expected)
    assert batched_state.viable == one_at_a_time.state.viable


def test_a_transition_is_recorded_only_when_asked_so_a_retried_batch_sends_it_again(viability):
    changes = [SourceChange.of("accounts", change("r", "accounts", after=account()))]
    changes += [SourceChange.of("posts", change("r", "posts", after=post(i))) for i in range(3)]
    first = viability.decide(changes, NOW)
    assert SnapshotRequest((1,)) in first.decisions and first.viable_after == {1: True}
    assert not viability.state.was_viable(1)  # the batch's outputs are not durable yet
    retried = viability.decide(changes, NOW)  # the posts are in the state now: more of them are forwarded
    assert SnapshotRequest((1,)) in retried.decisions and retried.viable_after == {1: True}
    viability.record(retried)
    assert viability.state.was_viable(1)
    assert SnapshotRequest((1,)) not in viability.decide(changes, NOW).decisions


def test_the_sweep_purges_viable_accounts_that_went_quiet_and_records_nothing_itself(viability):
    for account_id, age in ((1, 29), (2, 5)):
        viability.on_account(change("r", "accounts", after=account(account_id)), NOW)
        for i in range(3):
            viability.on_post(change("r", "posts", after=post(account_id * 10 + i, account_id, age_days=age)), NOW)
    sweep = viability.sweep([1, 2], NOW)
    assert (sweep.checked, sweep.purged, sweep.verdict.decisions) == (2, 0, [])
    later = NOW + 2 * DAY_MS  # account 1's newest post is 31 days old now
    sweep = viability.sweep([1, 2], later)
    assert (sweep.checked, sweep.purged) == (2, 1)
    assert sweep.verdict.decisions == [AccountPurge(account_id=1, reason="no post within 30 days", position=None)]
    assert viability.state.was_viable(1)  # recorded only once the purge is durable
    viability.record(sweep.verdict)
    assert not viability.state.was_viable(1) and viability.sweep([2], later).purged == 0
