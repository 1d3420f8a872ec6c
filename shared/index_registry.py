"""Index versions and the alias that says which one search reads, shared through Redis.

A replay builds a new version (``posts_v2``) next to the live one: the registry tells the
indexer (for a re-embedding replay also the embedder, for a whole-pipeline replay also viability)
to run one more consumer loop for it, and tells the query service which collection the ``posts``
alias points at. Switching the alias is one Redis SET, so every reader moves at once; rollback is
the same SET back.

Transitions are atomic (WATCH/MULTI: a transaction that saw a watched key change is retried): a point
report never rewrites a version dropped meanwhile, a drop never removes the version the alias was just
switched to, and a switch never points the alias at a version dropped meanwhile.
"""

from __future__ import annotations

import time
from typing import Literal

import redis
from pydantic import BaseModel, Field

Stage = Literal["index", "embed", "pipeline"]  # where a version's own processing starts


class IndexVersion(BaseModel):
    collection: str  # e.g. posts_v2
    version: int
    stage: Stage = "index"
    source_topic: str  # what the version's indexer reads
    indexer_group: str
    embed_from_topic: str | None = None  # stage "embed": what its embedder reads...
    embedder_group: str | None = None  # ...with this consumer group...
    model_variant: Literal["fp32", "int8"] = "fp32"  # ...and this model
    viability_group: str | None = None  # stage "pipeline": its viability reads the CDC topics with this group,...
    viability_namespace: str | None = None  # ...keeps its own state under this Redis namespace,...
    viability_rules: dict[str, int] | None = None  # ...decides by these rules and writes embed_from_topic
    created_ms: int = Field(default_factory=lambda: int(time.time() * 1000))
    points: int = 0  # reported by the indexer that owns the collection
    points_updated_ms: int = 0


class IndexRegistry:
    def __init__(self, client: redis.Redis, namespace: str, alias: str = "posts") -> None:
        self.client = client
        self.alias = alias
        self._versions_key = f"{namespace}:index:{alias}:versions"
        self._alias_key = f"{namespace}:index:{alias}:active"
        self._previous_key = f"{namespace}:index:{alias}:previous"
        self._last_number_key = f"{namespace}:index:{alias}:last_version"
        self.live: IndexVersion | None = None  # what bootstrap registered, to restore after a Redis wipe

    # --- versions --------------------------------------------------------------------------

    def versions(self) -> dict[str, IndexVersion]:
        raw = self.client.hgetall(self._versions_key)
        return {k.decode(): IndexVersion.model_validate_json(v) for k, v in raw.items()}

    def register(self, version: IndexVersion) -> None:
        self.client.hset(self._versions_key, version.collection, version.model_dump_json())
        if version.version > int(self.client.get(self._last_number_key) or 0):
            self.client.set(self._last_number_key, version.version)

    def report_points(self, collection: str, points: int) -> None:
        """Rewrite the version's record with its point count, unless it is no longer registered."""

        def rewrite(pipe: redis.client.Pipeline) -> None:
            raw = pipe.hget(self._versions_key, collection)
            if raw is None:
                return  # dropped: a report must not register it again
            updated = IndexVersion.model_validate_json(raw).model_copy(
                update={"points": points, "points_updated_ms": int(time.time() * 1000)})
            pipe.multi()
            pipe.hset(self._versions_key, collection, updated.model_dump_json())

        self.client.transaction(rewrite, self._versions_key)

    def drop(self, collection: str) -> None:
        def remove(pipe: redis.client.Pipeline) -> None:
            active = pipe.get(self._alias_key)
            if active is not None and active.decode() == collection:
                raise ValueError(f"{collection} is the active version; switch the alias first")
            pipe.multi()
            pipe.hdel(self._versions_key, collection)

        self.client.transaction(remove, self._alias_key)

    def next_version(self) -> int:
        """Never a dropped version's number again: its topics, consumer groups and shard directory
        are left in place (never deleted), so a new version must not inherit them."""
        registered = max((v.version for v in self.versions().values()), default=0)
        return max(registered, int(self.client.get(self._last_number_key) or 0)) + 1

    # --- alias -----------------------------------------------------------------------------

    def active(self) -> str | None:
        raw = self.client.get(self._alias_key)
        return raw.decode() if raw else None

    def previous(self) -> str | None:
        raw = self.client.get(self._previous_key)
        return raw.decode() if raw else None

    def switch(self, collection: str) -> str | None:
        """Point the alias at ``collection``; returns what it pointed at before."""
        def point(pipe: redis.client.Pipeline) -> str | None:
            if not pipe.hexists(self._versions_key, collection):
                raise ValueError(f"unknown index version {collection!r}")
            old = pipe.get(self._alias_key)
            old_name = old.decode() if old else None
            pipe.multi()
            pipe.set(self._alias_key, collection)
            if old_name and old_name != collection:
                pipe.set(self._previous_key, old_name)
            return old_name

        # the versions hash is watched too: a drop between the check and the SET makes it start over
        return self.client.transaction(point, self._versions_key, self._alias_key, value_from_callable=True)

    def bootstrap(self, collection: str, source_topic: str, indexer_group: str,
                  model_variant: Literal["fp32", "int8"] = "fp32") -> IndexVersion:
        """First start: register version 1 (the live pipeline, made by the live model) and point the alias at it."""
        # known before Redis is asked: a caller that survives Redis being down still knows the live version
        self.live = self.live or IndexVersion(collection=collection, version=1, source_topic=source_topic,
                                              indexer_group=indexer_group, model_variant=model_variant)
        versions = self.versions()
        if not versions:
            self.register(self.live)
            versions = self.versions()
        if self.active() is None:
            self.client.set(self._alias_key, collection)
        return versions[self.active() or collection]


def accounts_collection_for(posts_collection: str, posts_alias: str, accounts_base: str) -> str:
    """The account summaries built from ``posts_collection``: ``accounts`` for the first version (named
    like the alias), ``accounts_v2`` for ``posts_v2``. Summaries follow their posts' version, so a
    replay's switch or rollback moves account search together with post search."""
    if posts_collection == posts_alias:
        return accounts_base
    prefix = f"{posts_alias}_"
    suffix = posts_collection[len(posts_alias):] if posts_collection.startswith(prefix) else f"_{posts_collection}"
    return f"{accounts_base}{suffix}"
