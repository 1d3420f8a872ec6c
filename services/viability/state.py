"""Viability state in Redis: shared by every replica, so posts and accounts may arrive on any
partition, and it survives a restart of the service without replaying the topics."""

from __future__ import annotations

from collections.abc import Sequence

import redis

from services.viability.core import AccountView, StateWrite
from shared.events import AccountRecord


POST_BUCKET = 100


class RedisViabilityState:
    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.client = client
        self.namespace = namespace

    def _key(self, *parts: object) -> str:
        return ":".join([self.namespace, "viability", *map(str, parts)])

    def apply_and_read(self, writes: Sequence[StateWrite], limit: int) -> list[AccountView]:
        """Every write of a batch and every read its decisions need, pipelined in one round trip.

        Commands run in order on the server, so each change's reads see its own write and every
        earlier one, exactly as the call-per-fact path (``core.read_views``) would.
        """
        with self.client.pipeline(transaction=False) as pipe:
            counts = [self._queue(pipe, write, limit) for write in writes]
            replies = pipe.execute()
        views, at, accounts = [], 0, {}
        for write, count in zip(writes, counts):
            views.append(self._view(write, replies[at:at + count], limit, accounts))
            at += count
        return views

    def _queue(self, pipe, write: StateWrite, limit: int) -> int:
        """Queue one change's write and reads; returns how many commands that was."""
        posts_key, account_key = self._key("posts", write.account_id), self._key("account", write.account_id)
        queued = 4
        if write.account is not None:
            pipe.set(account_key, write.account.model_dump_json())
            queued += 1
        elif write.account_deleted:
            pipe.delete(account_key)
            queued += 1
        post = write.post
        if post is not None:
            if post[1] is not None:
                pipe.zadd(posts_key, {str(post[0]): post[1]})
            else:  # its rank before it goes: was it among the N most recent?
                pipe.zrevrank(posts_key, str(post[0]))
                pipe.zrem(posts_key, str(post[0]))
                queued += 1
            queued += 1
        pipe.get(account_key)
        pipe.sismember(self._key("viable"), str(write.account_id))
        pipe.zcard(posts_key)
        pipe.zrevrange(posts_key, 0, 0, withscores=True)
        if post is not None and post[1] is not None:
            pipe.zrevrank(posts_key, str(post[0]))
            pipe.zrevrange(posts_key, limit, limit)
            queued += 2
        elif post is not None:
            pipe.zrevrange(posts_key, limit - 1, limit - 1)  # the post that took a removed one's place
            queued += 1
        return queued

    @staticmethod
    def _view(write: StateWrite, replies: list, limit: int,
              accounts: dict[bytes, AccountRecord]) -> AccountView:
        """One change's view from its replies (the writes' replies come first)."""
        adding = write.post is not None and write.post[1] is not None
        removing = write.post is not None and write.post[1] is None
        reads = replies[len(replies) - (6 if adding else 5 if removing else 4):]
        raw, viable, count, latest = reads[:4]
        rank = displaced = refill = None
        if adding:
            rank = reads[4]
            if rank is not None and rank < limit and reads[5]:
                displaced = int(reads[5][0])
        if removing:
            removed_rank = replies[len(replies) - 7]  # queued before the zrem
            if (removed_rank is None or removed_rank < limit) and reads[4]:
                refill = int(reads[4][0])
        account = None
        if raw:  # one account's posts often fill a batch: parse its record once
            account = accounts.get(raw) or accounts.setdefault(raw, AccountRecord.model_validate_json(raw))
        return AccountView(account, bool(viable), count, int(latest[0][1]) if latest else None, rank, displaced,
                           refill)

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
        return self._key("post-account", post_id // POST_BUCKET)

    def post_accounts(self, post_ids: Sequence[int]) -> dict[int, int]:
        with self.client.pipeline(transaction=False) as pipe:
            for post_id in post_ids:
                pipe.hget(self._post_bucket(post_id), str(post_id))
            found = pipe.execute()
        return {post_id: int(account) for post_id, account in zip(post_ids, found) if account is not None}

    def set_post_accounts(self, updates: dict[int, int | None]) -> None:
        with self.client.pipeline(transaction=False) as pipe:
            for post_id, account_id in updates.items():
                if account_id is None:
                    pipe.hdel(self._post_bucket(post_id), str(post_id))
                else:
                    pipe.hset(self._post_bucket(post_id), str(post_id), str(account_id))
            pipe.execute()

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
