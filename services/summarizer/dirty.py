"""Accounts waiting for a summary, in Redis: the debounce and the hand-off to workers.

Three keys per accounts collection:
- ``dirty``: ZSET account -> due time (ms). Marked with NX, so the first event of a burst fixes
  the due time and the next 49 change nothing: one recomputation per account per debounce window,
  and a steady stream cannot postpone it forever.
- ``processing``: ZSET account -> lease deadline. Claiming moves due accounts here atomically, so
  several workers never take the same account, and an event arriving meanwhile marks the account
  dirty again (it is no longer in ``dirty``). A lease that expires (the worker died) goes back.
- ``expect``: HASH account -> the latest event seen (core.Expectation JSON), which the posts index
  must reflect before the account is summarized.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from services.summarizer.core import Expectation

# KEYS: dirty, processing. ARGV: now, lease deadline, max accounts.
_CLAIM = """
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
for _, account in ipairs(expired) do
  redis.call('ZREM', KEYS[2], account)
  redis.call('ZADD', KEYS[1], 'NX', ARGV[1], account)
end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, account in ipairs(due) do
  redis.call('ZREM', KEYS[1], account)
  redis.call('ZADD', KEYS[2], ARGV[2], account)
end
return due
"""

# KEYS: processing, expect. ARGV: account, the expectation the worker acted on ('' = none).
# The expectation is removed only if no newer event replaced it meanwhile.
_FINISH = """
redis.call('ZREM', KEYS[1], ARGV[1])
if ARGV[2] ~= '' and redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[2], ARGV[1])
end
return 1
"""


@dataclass(frozen=True)
class ClaimedAccount:
    account_id: int
    expectation: Expectation | None
    raw_expectation: bytes  # as stored, for the compare-and-delete in finish()


class DirtyAccounts:
    def __init__(self, client: redis.Redis, namespace: str, collection: str) -> None:
        self.client = client
        base = f"{namespace}:summarizer:{collection}"
        self.dirty_key, self.processing_key, self.expect_key = f"{base}:dirty", f"{base}:processing", f"{base}:expect"
        self._claim = client.register_script(_CLAIM)
        self._finish = client.register_script(_FINISH)

    def mark(self, touched: dict[int, Expectation | None], due_ms: int) -> None:
        """One round trip for a whole batch; the latest expectation per account replaces older ones."""
        if not touched:
            return
        with self.client.pipeline(transaction=False) as pipe:
            expectations = {str(a): e.model_dump_json() for a, e in touched.items() if e is not None}
            if expectations:
                pipe.hset(self.expect_key, mapping=expectations)
            pipe.zadd(self.dirty_key, {str(a): due_ms for a in touched}, nx=True)
            pipe.execute()

    def claim(self, now_ms: int, lease_ms: int, limit: int) -> list[ClaimedAccount]:
        due = [int(a) for a in self._claim(keys=[self.dirty_key, self.processing_key],
                                           args=[now_ms, now_ms + lease_ms, limit])]
        if not due:
            return []
        raw = self.client.hmget(self.expect_key, [str(a) for a in due])
        return [ClaimedAccount(a, Expectation.model_validate_json(r) if r else None, r or b"")
                for a, r in zip(due, raw, strict=True)]

    def finish(self, claimed: ClaimedAccount) -> None:
        self._finish(keys=[self.processing_key, self.expect_key], args=[claimed.account_id, claimed.raw_expectation])

    def defer(self, claimed: ClaimedAccount, due_ms: int) -> None:
        """Try again later (the index has not caught up): back to dirty unless an event already put it there."""
        with self.client.pipeline(transaction=True) as pipe:
            pipe.zrem(self.processing_key, str(claimed.account_id))
            pipe.zadd(self.dirty_key, {str(claimed.account_id): due_ms}, nx=True)
            pipe.execute()

    def backlog(self) -> int:
        with self.client.pipeline(transaction=False) as pipe:
            pipe.zcard(self.dirty_key)
            pipe.zcard(self.processing_key)
            return sum(pipe.execute())

    def due_before(self, at_ms: int) -> int:
        """Accounts being refreshed or due by ``at_ms`` (not those held back for longer)."""
        with self.client.pipeline(transaction=False) as pipe:
            pipe.zcount(self.dirty_key, "-inf", at_ms)
            pipe.zcard(self.processing_key)
            return sum(pipe.execute())
