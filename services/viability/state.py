"""Viability state in Redis: shared by every replica, so posts and accounts may arrive on any
partition, and it survives a restart of the service without replaying the topics."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import redis

from services.viability.core import AccountView, StateWrite
from shared.events import AccountRecord


POST_BUCKET = 100

# One batch's writes and reads (RedisViabilityState.apply_and_read). ARGV: namespace, limit, the batch
# as JSON [[account_id, account_json|false, account_deleted, post_id|false, published_at|false], ...]
# (post_id with published_at false: the post is removed). Replies, per write, VIEW_FIELDS values:
# account_json|false, viable (0/1), post count, latest published_at|false, rank, displaced, refill,
# requested_in|false (AccountView.requested_in).
# Keys are built here from the namespace (a standalone Redis, as deployed; not Redis Cluster).
# Ids and times pass as strings: BIGINT ids go past 2^53, where Lua's numbers (doubles) lose digits.
APPLY_AND_READ = """
local prefix, limit = ARGV[1] .. ':viability:', tonumber(ARGV[2])
local viable_key, requested_key = prefix .. 'viable', prefix .. 'requested-in'
local out, n = {}, 0
for _, write in ipairs(cjson.decode(ARGV[3])) do
  local account_id, account_json, account_deleted, post_id, published = write[1], write[2], write[3], write[4], write[5]
  local account_key, posts_key = prefix .. 'account:' .. account_id, prefix .. 'posts:' .. account_id
  if account_json then
    redis.call('SET', account_key, account_json)
  elseif account_deleted then
    redis.call('DEL', account_key)
  end
  local rank, displaced, refill = false, false, false
  if post_id then
    if published then
      redis.call('ZADD', posts_key, published, post_id)
      rank = redis.call('ZREVRANK', posts_key, post_id)
      if rank and rank < limit then
        displaced = redis.call('ZREVRANGE', posts_key, limit, limit)[1] or false
      end
    else  -- its rank before it goes: was it among the N most recent?
      local removed = redis.call('ZREVRANK', posts_key, post_id)
      redis.call('ZREM', posts_key, post_id)
      if not removed or removed < limit then  -- the post that took its place
        refill = redis.call('ZREVRANGE', posts_key, limit - 1, limit - 1)[1] or false
      end
    end
  end
  local latest = redis.call('ZREVRANGE', posts_key, 0, 0, 'WITHSCORES')
  out[n + 1] = redis.call('GET', account_key)
  out[n + 2] = redis.call('SISMEMBER', viable_key, account_id)
  out[n + 3] = redis.call('ZCARD', posts_key)
  out[n + 4] = latest[2] or false
  out[n + 5], out[n + 6], out[n + 7] = rank, displaced, refill
  out[n + 8] = redis.call('HGET', requested_key, account_id)
  n = n + 8
end
return cjson.encode(out)
"""
VIEW_FIELDS = 8

# The post -> account lookup's updates (RedisViabilityState.set_post_accounts). ARGV: the lookup's
# key prefix, JSON [[bucket, post_id, account_id|false (forget)], ...], numbers as strings.
SET_POST_ACCOUNTS = """
for _, update in ipairs(cjson.decode(ARGV[2])) do
  if update[3] then
    redis.call('HSET', ARGV[1] .. update[1], update[2], update[3])
  else
    redis.call('HDEL', ARGV[1] .. update[1], update[2])
  end
end
return 1
"""


def _script_write(write: StateWrite) -> list:
    post_id, published_at = write.post if write.post is not None else (None, None)
    return [str(write.account_id), write.account.model_dump_json() if write.account is not None else False,
            write.account_deleted, False if post_id is None else str(post_id),
            False if published_at is None else str(published_at)]


def _view(fields: list, accounts: dict[str, AccountRecord]) -> AccountView:
    """One change's view from its script reply; an account's record, often the same for a whole
    batch of its posts, is parsed once."""
    raw, viable, count, latest, rank, displaced, refill, requested_in = fields
    account = None
    if raw:
        account = accounts.get(raw) or accounts.setdefault(raw, AccountRecord.model_validate_json(raw))
    return AccountView(account, bool(viable), count, int(float(latest)) if latest else None,
                       rank if rank is not False else None, int(displaced) if displaced else None,
                       int(refill) if refill else None, requested_in or None)


class RedisViabilityState:
    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.client = client
        self.namespace = namespace
        self._apply_and_read = client.register_script(APPLY_AND_READ)  # EVALSHA, reloaded on NOSCRIPT
        self._set_post_accounts = client.register_script(SET_POST_ACCOUNTS)

    def _key(self, *parts: object) -> str:
        return ":".join([self.namespace, "viability", *map(str, parts)])

    def apply_and_read(self, writes: Sequence[StateWrite], limit: int) -> list[AccountView]:
        """Every write of a batch and every read its decisions need, in one server-side script call.

        The script runs each change's write, then its reads, in order, so each change's reads see its
        own write and every earlier one, exactly as the call-per-fact path (``core.read_views``) would.
        One call with the batch as one JSON argument and one JSON reply, rather than ~8 pipelined
        commands per event: packing and parsing those commands was ~3/4 of viability's CPU per event
        (bench/viability_state.py).
        """
        if not writes:
            return []
        batch = orjson.dumps([_script_write(write) for write in writes])
        reply = orjson.loads(self._apply_and_read(args=[self.namespace, limit, batch]))
        accounts: dict[str, AccountRecord] = {}
        return [_view(reply[at:at + VIEW_FIELDS], accounts) for at in range(0, len(reply), VIEW_FIELDS)]

    def get_account(self, account_id: int) -> AccountRecord | None:
        raw = self.client.get(self._key("account", account_id))
        return AccountRecord.model_validate_json(raw) if raw else None

    def put_account(self, account: AccountRecord) -> None:
        self.client.set(self._key("account", account.id), account.model_dump_json())

    def delete_account(self, account_id: int) -> None:
        self.client.delete(self._key("account", account_id))

    def add_post(self, account_id: int, post_id: int, published_at: int) -> None:
        self.client.zadd(self._key("posts", account_id), {str(post_id): published_at})

    def remove_post(self, account_id: int, post_id: int) -> None:
        self.client.zrem(self._key("posts", account_id), str(post_id))

    def post_stats(self, account_id: int) -> tuple[int, int | None]:
        key = self._key("posts", account_id)
        with self.client.pipeline(transaction=False) as pipe:
            pipe.zcard(key)
            pipe.zrevrange(key, 0, 0, withscores=True)
            count, latest = pipe.execute()
        return count, int(latest[0][1]) if latest else None

    def recent_rank(self, account_id: int, post_id: int) -> int | None:
        return self.client.zrevrank(self._key("posts", account_id), str(post_id))

    def post_at_rank(self, account_id: int, rank: int) -> int | None:
        found = self.client.zrevrange(self._key("posts", account_id), rank, rank)
        return int(found[0]) if found else None

    def was_viable(self, account_id: int) -> bool:
        return bool(self.client.sismember(self._key("viable"), str(account_id)))

    def set_viable_many(self, viable: dict[int, bool]) -> None:
        """Record a batch's viability changes in one round trip."""
        if not viable:
            return
        with self.client.pipeline(transaction=False) as pipe:
            for account_id, is_viable in viable.items():
                (pipe.sadd if is_viable else pipe.srem)(self._key("viable"), str(account_id))
            pipe.execute()

    def requested_in(self, account_id: int) -> str | None:
        raw = self.client.hget(self._key("requested-in"), str(account_id))
        return raw.decode() if raw is not None else None

    def set_requested_in(self, runs: dict[int, str | None]) -> None:
        """Recorded with the viability changes of a batch (few: accounts that just became viable)."""
        with self.client.pipeline(transaction=False) as pipe:
            for account_id, run in runs.items():
                if run is None:
                    pipe.hdel(self._key("requested-in"), str(account_id))
                else:
                    pipe.hset(self._key("requested-in"), str(account_id), run)
            pipe.execute()

    def viable_accounts(self) -> list[int]:
        return sorted(int(member) for member in self.client.smembers(self._key("viable")))

    def record_sweep(self, as_of_ms: int) -> None:
        """The clock of the last completed sweep: replay verification counts by it."""
        self.client.set(self._key("swept_at"), as_of_ms)

    def swept_at(self) -> int | None:
        raw = self.client.get(self._key("swept_at"))
        return int(raw) if raw is not None else None

    # --- post -> account lookup, for tombstones (whose key is the post id only) ---------------------
    # Hashes of POST_BUCKET posts each: small hashes are stored compactly by Redis (listpack, up to
    # 128 fields by default), ~4x less memory than one field per post in one big hash.

    def _post_bucket(self, post_id: int) -> str:
        return self._post_bucket_prefix() + str(post_id // POST_BUCKET)

    def _post_bucket_prefix(self) -> str:
        return self._key("post-account", "")

    def post_accounts(self, post_ids: Sequence[int]) -> dict[int, int]:
        with self.client.pipeline(transaction=False) as pipe:
            for post_id in post_ids:
                pipe.hget(self._post_bucket(post_id), str(post_id))
            found = pipe.execute()
        return {post_id: int(account) for post_id, account in zip(post_ids, found) if account is not None}

    def set_post_accounts(self, updates: dict[int, int | None]) -> None:
        """Record a batch's post -> account changes in one script call (a pipeline of one HSET per
        post was ~a quarter of viability's CPU per event, bench/viability_state.py)."""
        if updates:
            rows = [[str(post_id // POST_BUCKET), str(post_id), str(account_id) if account_id is not None else False]
                    for post_id, account_id in updates.items()]
            self._set_post_accounts(args=[self._post_bucket_prefix(), orjson.dumps(rows)])

    def set_viable(self, account_id: int, viable: bool) -> None:
        if viable:
            self.client.sadd(self._key("viable"), str(account_id))
        else:
            self.client.srem(self._key("viable"), str(account_id))


def replay_namespace(topic_prefix: str, collection: str, created_ms: int) -> str:
    """A replay version's own state, apart from the live one (``<prefix>:viability:...``); the
    creation time keeps a later version of the same name from inheriting it."""
    return f"{topic_prefix}:replay:{collection}:{created_ms}"


def delete_state(client: redis.Redis, namespace: str, batch: int = 1000) -> int:
    """Remove every key of a viability state namespace (a dropped replay's); returns how many."""
    deleted, keys = 0, []
    for key in client.scan_iter(match=f"{namespace}:viability:*", count=batch):
        keys.append(key)
        if len(keys) >= batch:
            deleted += client.unlink(*keys)
            keys.clear()
    if keys:
        deleted += client.unlink(*keys)
    return deleted


def replay_namespaces(client: redis.Redis, topic_prefix: str) -> set[str]:
    """Every replay state namespace present in Redis (one scan: for start-up clean-up only)."""
    found = set()
    for key in client.scan_iter(match=f"{topic_prefix}:replay:*:viability:*", count=1000):
        found.add(key.decode().split(":viability:", 1)[0])
    return found
