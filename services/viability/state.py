"""Viability state in Redis: shared by every replica, so posts and accounts may arrive on any
partition, and it survives a restart of the service without replaying the topics."""

from __future__ import annotations

import redis

from services.viability.core import AccountView, PostWrite
from shared.events import AccountRecord


class RedisViabilityState:
    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.client = client
        self.namespace = namespace

    def _key(self, *parts: object) -> str:
        return ":".join([self.namespace, "viability", *map(str, parts)])

    def apply_and_read(self, account_id: int, post: PostWrite | None, limit: int) -> AccountView:
        """The post write and every read a decision needs, pipelined in one round trip.

        Commands run in order on the server, so the reads see the write exactly as the
        call-per-fact path (``core.read_view``) would.
        """
        posts_key = self._key("posts", account_id)
        adding = post is not None and post[1] is not None
        with self.client.pipeline(transaction=False) as pipe:
            if post is not None:
                if adding:
                    pipe.zadd(posts_key, {str(post[0]): post[1]})
                else:
                    pipe.zrem(posts_key, str(post[0]))
            pipe.get(self._key("account", account_id))
            pipe.sismember(self._key("viable"), str(account_id))
            pipe.zcard(posts_key)
            pipe.zrevrange(posts_key, 0, 0, withscores=True)
            if adding:
                pipe.zrevrank(posts_key, str(post[0]))
                pipe.zrevrange(posts_key, limit, limit)
            replies = pipe.execute()
        if post is not None:
            replies = replies[1:]
        raw, viable, count, latest = replies[:4]
        rank = displaced = None
        if adding:
            rank = replies[4]
            if rank is not None and rank < limit and replies[5]:
                displaced = int(replies[5][0])
        account = AccountRecord.model_validate_json(raw) if raw else None
        return AccountView(account, bool(viable), count, int(latest[0][1]) if latest else None, rank, displaced)

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
