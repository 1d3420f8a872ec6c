"""Tombstones on the source topics are deletes of their key (services/viability/core.py SourceTombstone)."""

from services.viability.core import SourceChange, SourceTombstone, ViabilityFilter
from shared.events import AccountPurge, PostDelete
from tests.unit.fakes import InMemoryViabilityState
from tests.unit.test_viability_core import NOW, RULES, account, change, post


def viable_account(viability: ViabilityFilter) -> None:
    changes = [SourceChange.of("accounts", change("c", "accounts", after=account(1)))]
    changes += [SourceChange.of("posts", change("c", "posts", after=post(p))) for p in (11, 12, 13)]
    viability.record(viability.decide(changes, NOW))


def test_a_post_tombstone_alone_deletes_the_post_unversioned():
    viability = ViabilityFilter(InMemoryViabilityState(), RULES)
    viable_account(viability)
    verdict = viability.decide([SourceTombstone("posts", 11)], NOW)
    viability.record(verdict)
    assert verdict.decisions[0] == PostDelete(post_id=11, account_id=1, position=None)
    # Two posts left, three needed: the account leaves the index too, unversioned.
    assert verdict.decisions[1:] == [AccountPurge(account_id=1, reason="account no longer viable", position=None)]
    assert viability.state.post_stats(1)[0] == 2


def test_a_tombstone_after_its_delete_event_does_nothing_more():
    viability = ViabilityFilter(InMemoryViabilityState(), RULES)
    viable_account(viability)
    deleted = viability.decide([SourceChange.of("posts", change("d", "posts", before=post(11)))], NOW)
    viability.record(deleted)
    assert any(isinstance(d, PostDelete) for d in deleted.decisions)
    verdict = viability.decide([SourceTombstone("posts", 11)], NOW)
    assert verdict.decisions == []


def test_a_tombstone_of_an_unknown_post_or_after_its_upsert_in_the_same_batch():
    viability = ViabilityFilter(InMemoryViabilityState(), RULES)
    assert viability.decide([SourceTombstone("posts", 404)], NOW).decisions == []
    viable_account(viability)
    batch = [SourceChange.of("posts", change("c", "posts", after=post(14))), SourceTombstone("posts", 14)]
    verdict = viability.decide(batch, NOW)
    assert PostDelete(post_id=14, account_id=1, position=None) in verdict.decisions
    assert verdict.post_accounts == {14: None}


def test_an_account_tombstone_alone_purges_it_unversioned():
    viability = ViabilityFilter(InMemoryViabilityState(), RULES)
    viable_account(viability)
    verdict = viability.decide([SourceTombstone("accounts", 1)], NOW)
    assert verdict.decisions == [AccountPurge(account_id=1, reason="account deleted", position=None)]
