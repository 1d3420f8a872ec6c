"""RedisViabilityState: the pipelined apply_and_read answers exactly what one call per fact does."""

import random

import redis

from services.viability.core import read_view
from services.viability.state import RedisViabilityState
from shared.events import AccountRecord


def test_pipelined_view_equals_one_call_per_fact(infra):
    client = redis.Redis(host="127.0.0.1", port=infra.config.redis_port)
    pipelined = RedisViabilityState(client, namespace="vs-pipelined")
    per_call = RedisViabilityState(client, namespace="vs-per-call")
    account = AccountRecord.model_validate({"id": 7, "platform": "youtube", "handle": "h", "display_name": "d",
                                            "followers": 50_000})
    for state in (pipelined, per_call):
        state.put_account(account)
        state.set_viable(7, True)
    rng = random.Random(3)
    for step in range(300):
        post_id = rng.randrange(40)
        write = (post_id, None) if rng.random() < 0.2 else (post_id, rng.randrange(10_000))
        account_id = 7 if step % 10 else 8  # 8: no account record
        limit = rng.choice([1, 5, 20])
        assert pipelined.apply_and_read(account_id, write, limit) == read_view(per_call, account_id, write, limit)
    assert pipelined.apply_and_read(7, None, 5) == read_view(per_call, 7, None, 5)
