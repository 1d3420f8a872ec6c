"""RedisViabilityState: one script call per batch answers exactly what one call per fact does."""

import random

import pytest
import redis

from services.viability.core import StateWrite, read_views
from services.viability.state import RedisViabilityState
from shared.events import AccountRecord


def account(account_id: int, followers: int) -> AccountRecord:
    return AccountRecord.model_validate({"id": account_id, "platform": "youtube", "handle": f"h{account_id}",
                                         "display_name": "d", "followers": followers})


def random_write(rng: random.Random, base: int = 0) -> StateWrite:
    account_id = rng.choice([7, 7, 7, 8, 9])  # 8 and 9 start without an account record
    roll = rng.random()
    if roll < 0.05:
        return StateWrite(account_id, account_deleted=True)
    if roll < 0.15:
        return StateWrite(account_id, account=account(account_id, rng.randrange(100_000)))
    post_id = base + rng.randrange(40)
    return StateWrite(account_id, post=(post_id, None) if roll < 0.3 else (post_id, base + rng.randrange(10_000)))


# 0: ties between posts of one time are common; 1.8e12: epoch-ms times; 2^62: BIGINT ids past 2^53,
# where the batch script's Lua numbers would lose digits.
@pytest.mark.parametrize("base", [0, 1_800_000_000_000, 2**62])
def test_batched_views_equal_one_call_per_fact(infra, base):
    client = redis.Redis(host="127.0.0.1", port=infra.config.redis_port)
    pipelined = RedisViabilityState(client, namespace=f"vs-batched-{base}")
    per_call = RedisViabilityState(client, namespace=f"vs-per-call-{base}")
    for state in (pipelined, per_call):
        state.put_account(account(7, 50_000))
        state.set_viable(7, True)
        state.set_requested_in({7: "mysql-bin.000003:4521:0-1-77", 8: None})
    rng = random.Random(3)
    compared = refills = 0
    for _ in range(40):
        writes = [random_write(rng, base) for _ in range(rng.randrange(1, 25))]
        limit = rng.choice([1, 5, 20])
        views = pipelined.apply_and_read(writes, limit)
        assert views == read_views(per_call, writes, limit)
        compared += len(views)
        refills += sum(view.refill is not None for view in views)
    assert compared > 300 and refills > 5  # removals from the N most recent were among them
    assert pipelined.apply_and_read([StateWrite(7)], 5) == read_views(per_call, [StateWrite(7)], 5)
    assert pipelined.apply_and_read([], 5) == []


def test_viability_changes_are_recorded_in_one_call(infra):
    client = redis.Redis(host="127.0.0.1", port=infra.config.redis_port)
    state = RedisViabilityState(client, namespace="vs-record")
    state.set_viable(1, True)
    state.set_viable_many({1: False, 2: True, 3: True})
    assert [state.was_viable(a) for a in (1, 2, 3, 4)] == [False, True, True, False]


def test_post_account_lookup_round_trips_a_batch(infra):
    """Tombstones are resolved through this lookup: what a batch records is what a later one reads."""
    client = redis.Redis(host="127.0.0.1", port=infra.config.redis_port)
    state = RedisViabilityState(client, namespace="vs-post-accounts")
    big = 1_800_000_000_000
    state.set_post_accounts({1: 7, 199: 7, 200: 8, big: 9, big + 1: 9})
    state.set_post_accounts({199: None, big: None, 300: 8})
    assert state.post_accounts([1, 199, 200, 300, big, big + 1, 5]) == {1: 7, 200: 8, 300: 8, big + 1: 9}
    assert client.hget(f"vs-post-accounts:viability:post-account:{big // 100}", str(big + 1)) == b"9"


def test_requested_in_is_recorded_and_forgotten(infra):
    client = redis.Redis(host="127.0.0.1", port=infra.config.redis_port)
    state = RedisViabilityState(client, namespace="vs-requested-in")
    state.set_requested_in({1: "f:4:", 2: "f:4:"})
    state.set_requested_in({2: None})
    assert [state.requested_in(a) for a in (1, 2, 3)] == ["f:4:", None, None]
    assert [v.requested_in for v in state.apply_and_read([StateWrite(1), StateWrite(2)], 5)] == ["f:4:", None]
