"""Label corrections from people ("this post is not fashion"), kept durably for the classifier.

Written by the query API to a Redis stream; the classifier's feedback learner (a later service)
reads it with a consumer group, so every correction is processed at least once and none is lost
when the learner is down. Entries are never trimmed by the writer below MAX_ENTRIES.
"""

from __future__ import annotations

import time

import redis
from pydantic import BaseModel, ConfigDict, Field

from shared.auth import DataScope

FEEDBACK_STREAM = "feedback:verticals"
MAX_ENTRIES = 1_000_000  # approximate cap (XADD MAXLEN ~): months of corrections, bounded memory


class VerticalFeedback(BaseModel):
    """One correction: the label ``vertical`` shown for ``post_id`` is wrong (and maybe what is right)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant: str
    api_key_id: str
    post_id: int
    account_id: int | None
    taxonomy: str
    vertical: str = Field(description="The label that was shown and is wrong.")
    correct_vertical: str | None = Field(None, description="The right label, when the person said.")
    comment: str | None = None
    # Whether it may change tier 1 beyond this post (few-shot examples, "not X" memory, neighbours): a
    # tenant restricted to some posts teaches only its own taxonomies, never the shared ones.
    teaches: bool = True
    data_scope: DataScope | None = Field(None, description="What the corrector sees: neighbours relabelled "
                                         "by its correction are taken only from these posts (None = all).")
    created_at_ms: int = Field(default_factory=lambda: int(time.time() * 1000))


def record_feedback(client: redis.Redis, feedback: VerticalFeedback) -> str:
    """Append to the stream; returns the entry id. Raises redis.RedisError when Redis is down."""
    entry_id = client.xadd(FEEDBACK_STREAM, {"json": feedback.model_dump_json()},
                           maxlen=MAX_ENTRIES, approximate=True)
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


def read_feedback(client: redis.Redis, count: int = 100) -> list[tuple[str, VerticalFeedback]]:
    """The most recent entries, newest first (for people and tests; the learner uses XREADGROUP)."""
    entries = client.xrevrange(FEEDBACK_STREAM, count=count)
    return [(_text(entry_id), VerticalFeedback.model_validate_json(fields[b"json"])) for entry_id, fields in entries]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
