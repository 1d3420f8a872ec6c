"""Viability state in Redis: shared by every replica, so posts and accounts may arrive on any
partition, and it survives a restart of the service without replaying the topics."""

from __future__ import annotations

import redis

from shared.events import AccountRecord


class RedisViabilityState:
    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.client = client
        self.namespace = namespace

    def _key(self, *parts: object) -> str:
        return ":".join([self.namespace, "viability", *map(str, parts)])

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
