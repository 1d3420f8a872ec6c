"""The payload of a post's point: written by the indexer, read by the query API and the summarizer.

One model, so the field list lives here and nowhere else. The payload keys are the field names
(plus ``vertical_labels``, the flat keys derived from ``verticals``); they are what existing shards
hold, so renaming a field is a data migration, not a refactor. A payload written before a
bookkeeping field existed still reads: only what a result card needs is required.

Shape: the fields the engine itself reads (filters, ranges, facets, ordering: the payload indexes)
and the two the indexer compares on every write are top-level keys; every other field travels in
``packed``, one JSON string. The engine converts a payload key by key when a point is built (a few
µs per key and point, the indexer's largest cost after the engine's own update), and a string is one
key. Readers go through ``payload_fields``; a flat payload (written before the packing) reads as is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.classification.taxonomy import VerticalLabel, verticals_payload
from shared.vectorstore.base import INDEXED_FIELDS

PACKED_KEY = "packed"
# Top-level: what the engine reads (its payload indexes; "verticals[].x" is the nested "verticals")
# and what the indexer compares before each write (versions, the labelled text).
ENGINE_KEYS = frozenset({key.split("[", 1)[0] for key in INDEXED_FIELDS} | {"source_version", "content_hash"})


class PostCard(BaseModel):
    """A post and its account as a result shows them (text trimmed for display; the vector saw it all)."""

    model_config = ConfigDict(extra="ignore")

    post_id: int
    account_id: int
    platform: str
    title: str
    description: str = ""
    url: str | None = None
    published_at: int = Field(description="Epoch milliseconds, UTC.")
    views: int = 0
    likes: int = 0
    comments: int = 0
    handle: str = ""
    display_name: str | None = None
    followers: int = 0
    model_id: str | None = Field(None, description="Embedding model of this point's vector (two during a re-embed).")

    @field_validator("description", mode="before")
    @classmethod
    def _no_description(cls, value: object) -> object:
        return "" if value is None else value


class StoredPost(PostCard):
    """The whole payload: the card, its labels, and what the pipeline keeps to order and measure writes."""

    verticals: list[VerticalLabel] = Field(default_factory=list)
    source_ts_ms: int | None = None  # the source commit's time (with indexed_at_ms: freshness)
    source_gtid: str | None = None
    source_snapshot: bool = False  # a snapshot read: its ts_ms is the read's, not a commit's
    indexed_at_ms: int | None = None
    sparse_model_id: str | None = None
    source_version: list[int] | None = None  # SourcePosition.order_key: an older event never overwrites
    content_hash: str | None = None  # of the text the labels were decided from

    @field_validator("verticals", mode="before")
    @classmethod
    def _readable_labels(cls, value: object) -> list:
        return readable_labels(value)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> StoredPost:
        """Raises pydantic.ValidationError for a payload that is not a post."""
        return cls.model_validate(payload_fields(payload))

    def payload(self) -> dict:
        return packed_payload({**self.model_dump(mode="json", exclude={"verticals"}),
                               **verticals_payload(self.verticals)})


def packed_payload(fields: Mapping[str, Any]) -> dict:
    """The payload to store for a post's flat fields: ENGINE_KEYS top-level, the rest in PACKED_KEY."""
    payload = {key: value for key, value in fields.items() if key in ENGINE_KEYS}
    payload[PACKED_KEY] = orjson.dumps({key: value for key, value in fields.items()
                                        if key not in ENGINE_KEYS}).decode()
    return payload


def payload_fields(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Every field of a stored payload as flat keys, packed or not (a flat one is returned as is; a
    projection without PACKED_KEY gives its top-level keys). A top-level key wins over a packed one:
    set_payload patches (labels) write top-level keys."""
    packed = payload.get(PACKED_KEY)
    if not isinstance(packed, str):
        return dict(payload)
    try:
        unpacked = orjson.loads(packed)
    except orjson.JSONDecodeError:
        unpacked = {}
    fields = unpacked if isinstance(unpacked, dict) else {}
    fields.update((key, value) for key, value in payload.items() if key != PACKED_KEY)
    return fields


def readable_labels(value: object) -> list[VerticalLabel]:
    """The labels of a payload's ``verticals`` that parse; an unreadable entry is skipped, so one odd
    label never hides the post or stops a writer."""
    labels = []
    for item in value if isinstance(value, list | tuple) else ():
        if isinstance(item, VerticalLabel):
            labels.append(item)
        elif isinstance(item, Mapping):
            try:
                labels.append(VerticalLabel.model_validate(item))
            except ValidationError:
                continue
    return labels


def stored_labels(payload: Mapping[str, Any]) -> list[VerticalLabel]:
    """A stored payload's labels, without parsing the rest of it."""
    return readable_labels(payload.get("verticals"))
