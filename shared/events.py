"""Event contracts: the Debezium change-event envelope and the pipeline's own events.

Debezium (and our local cdc service) publishes one topic per table with key ``{"id": ...}`` and a
value that is the change envelope. Kafka Connect's JsonConverter writes it either plain or, with
``schemas.enable=true``, wrapped as ``{"schema": ..., "payload": ...}``: consumers accept both.
A delete is followed by a tombstone (null value), which consumers skip: they act on ``op: "d"``.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Annotated, Any, Literal, Union

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from shared.classification.taxonomy import VerticalLabel

MAX_TEXT_CHARS = 20_000  # far beyond the 256 tokens the model reads; bounds memory on huge rows


class MalformedEvent(ValueError):
    """Raised when bytes on a topic are not a valid event; the message goes to the DLQ."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


# --- Debezium envelope -------------------------------------------------------------------------


class DebeziumSource(_Model):
    version: str = ""
    connector: str = "mariadb"
    name: str = ""
    ts_ms: int
    snapshot: str | bool | None = "false"
    db: str
    table: str | None = None
    server_id: int = 0
    gtid: str | None = None
    file: str = ""
    pos: int = 0
    row: int = 0
    thread: int | None = None
    query: str | None = None

    @property
    def is_snapshot(self) -> bool:
        return str(self.snapshot).lower() not in ("false", "none", "")


class ChangeEvent(_Model):
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    source: DebeziumSource
    op: Literal["c", "u", "d", "r"]
    ts_ms: int | None = None

    @property
    def row(self) -> dict[str, Any]:
        """The row this event is about: the new image, or the old one for a delete."""
        image = self.before if self.op == "d" else self.after
        if image is None:
            raise MalformedEvent(f"op {self.op!r} without its row image")
        return image


_change_event = TypeAdapter(ChangeEvent)


def _unwrap(document: Any) -> Any:
    """Strip Kafka Connect's ``{"schema", "payload"}`` wrapper when present."""
    if isinstance(document, dict) and "payload" in document and "schema" in document:
        return document["payload"]
    return document


def _loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedEvent(f"not JSON: {exc}") from exc


def parse_change_event(raw: bytes | None) -> ChangeEvent | None:
    """Parse a Debezium value; ``None`` for a tombstone. Raises MalformedEvent."""
    if raw is None:
        return None
    document = _unwrap(_loads(raw))
    if document is None:
        return None
    try:
        return _change_event.validate_python(document)
    except ValueError as exc:
        raise MalformedEvent(f"not a Debezium change event: {exc}") from exc


def parse_key_id(raw: bytes | None) -> int:
    """The primary key from a Debezium key ``{"id": ...}`` (plain or schema-wrapped)."""
    if raw is None:
        raise MalformedEvent("missing key")
    document = _unwrap(_loads(raw))
    if not isinstance(document, dict) or "id" not in document:
        raise MalformedEvent("key has no 'id'")
    try:
        return int(document["id"])
    except (TypeError, ValueError) as exc:
        raise MalformedEvent(f"key id is not an integer: {document['id']!r}") from exc


# --- Source rows (the `after`/`before` images) -------------------------------------------------


class AccountRecord(_Model):
    id: int
    platform: str
    handle: str
    display_name: str | None = None
    followers: int = 0
    bio: str | None = None
    country: str | None = None
    created_at: int | None = None  # epoch ms (Debezium io.debezium.time.Timestamp)
    updated_at: int | None = None


class PostRecord(_Model):
    id: int
    account_id: int
    platform: str
    title: str = Field(max_length=MAX_TEXT_CHARS)
    description: str | None = None
    url: str | None = None
    published_at: int  # epoch ms
    views: int = 0
    likes: int = 0
    comments: int = 0
    updated_at: int | None = None

    @field_validator("description")
    @classmethod
    def _bound_description(cls, value: str | None) -> str | None:
        return value[:MAX_TEXT_CHARS] if value else value

    def embedding_text(self) -> str:
        """What the model reads: the title, then the description."""
        return f"{self.title}\n{self.description or ''}".strip()


# --- Pipeline events (internal topics, keyed by account id so an account's events stay ordered) -


# Leads every GTID order key: above any binlog file number (MariaDB stops at file .2147483647),
# so a GTID key always sorts after a [file number, pos, row] key.
GTID_ORDER = 2**31
AFTER_EVERY_ROW = 2**62  # a snapshot row sorts after every row of the transactions it contains


def gtid_sequence(gtid: str | None) -> int | None:
    """The sequence number of a MariaDB GTID ``domain-server-sequence``, or the highest of a GTID
    state (one per domain, comma separated); None without a (well-formed) GTID.

    The pipeline assumes one replication domain writes the source tables (the usual single-primary
    setup; a switchover keeps the domain id), so sequences of different domains are not told apart.
    """
    sequences = []
    for part in filter(None, (p.strip() for p in (gtid or "").split(","))):
        pieces = part.split("-")
        if len(pieces) != 3 or not all(p.isdigit() for p in pieces):
            return None
        sequences.append(int(pieces[2]))
    return max(sequences) if sequences else None


class SourcePosition(_Model):
    """Where a change came from, so later stages can tell newer from older."""

    ts_ms: int
    file: str = ""
    pos: int = 0
    row: int = 0
    gtid: str | None = None
    snapshot: bool = False

    def order_key(self) -> list[int]:
        """Where this change sits in the database's history; stored on each point so an older
        event never overwrites a newer one. The rules (docs/source-versions.md):

        - With a GTID: ``[GTID_ORDER, sequence, pos, row]``. MariaDB's GTID sequence number keeps
          growing across a primary switchover and binlog file renumbering (the new primary goes on
          from the sequence it replicated), unlike binlog file numbers. ``pos``/``row`` only order
          the rows of one transaction, which never spans binlog files.
        - A snapshot row's ``gtid`` is the GTID state the snapshot read at: it contains every
          transaction up to that sequence, so it sorts after all of them and before the next one.
        - Without a GTID (Debezium leaves ``source.gtid`` null on snapshot rows; points written
          before this key): ``[file number, pos, row]``, which sorts before every GTID key.
        """
        sequence = gtid_sequence(self.gtid)
        if sequence is None:
            suffix = self.file.rsplit(".", 1)[-1]
            return [int(suffix) if suffix.isdigit() else 0, self.pos, self.row]
        if self.snapshot:
            return [GTID_ORDER, sequence, AFTER_EVERY_ROW, AFTER_EVERY_ROW]
        return [GTID_ORDER, sequence, self.pos, self.row]

    @classmethod
    def of(cls, source: DebeziumSource) -> SourcePosition:
        return cls(
            ts_ms=source.ts_ms, file=source.file, pos=source.pos, row=source.row,
            gtid=source.gtid, snapshot=source.is_snapshot,
        )


class AccountFields(_Model):
    """The account fields a search result shows next to a post."""

    handle: str
    display_name: str | None = None
    followers: int = 0


class PostUpsert(_Model):
    kind: Literal["post.upsert"] = "post.upsert"
    post: PostRecord
    account: AccountFields
    position: SourcePosition


class EmbeddedPostUpsert(_Model):
    kind: Literal["post.embedded"] = "post.embedded"
    post: PostRecord
    account: AccountFields
    position: SourcePosition
    model_id: str
    vector_b64: str  # little-endian float32, base64: exact and ~2.5x smaller than a JSON list

    @classmethod
    def build(cls, upsert: PostUpsert, model_id: str, vector: np.ndarray) -> EmbeddedPostUpsert:
        encoded = base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
        return cls(post=upsert.post, account=upsert.account, position=upsert.position,
                   model_id=model_id, vector_b64=encoded)

    def vector(self) -> np.ndarray:
        return np.frombuffer(base64.b64decode(self.vector_b64), dtype="<f4")


class PostDelete(_Model):
    kind: Literal["post.delete"] = "post.delete"
    post_id: int
    account_id: int | None = None
    # None: unversioned (from a tombstone); the indexer applies it whatever the stored version.
    position: SourcePosition | None = None


class AccountPurge(_Model):
    """Every post of the account leaves the index (account deleted or no longer viable)."""

    kind: Literal["account.purge"] = "account.purge"
    account_id: int
    reason: str
    # The change that caused the purge; None: unversioned (a tombstone, the viability sweep), applied
    # whatever the stored versions. A versioned purge removes only points not newer than it.
    position: SourcePosition | None = None


class PostLabels(_Model):
    """A second opinion (tier 2, an LLM) on one post's verticals in one taxonomy.

    Published by the classifier on the embedded-posts topic, keyed like the post's other events,
    so it always follows the upsert it was decided from. The indexer applies it only while the
    post's text is still the one judged (``content_hash``) and the taxonomy version still current.
    """

    kind: Literal["post.labels"] = "post.labels"
    post_id: int
    account_id: int
    content_hash: str
    taxonomy: str
    taxonomy_version: str
    labels: list[VerticalLabel]  # may be empty: "none of these verticals"
    model: str


class PostCorrection(_Model):
    """A person said ``vertical`` is wrong for this post (and maybe what is right), in one taxonomy.

    Published by the feedback learner on the embedded-posts topic keyed by account like the post's other
    events, so the indexer is the only writer of a post's point: a correction can no longer be lost
    between the indexer's read of a payload and its write of the whole point.
    """

    kind: Literal["post.correction"] = "post.correction"
    post_id: int
    account_id: int
    taxonomy: str
    taxonomy_version: str
    vertical: str
    correct_vertical: str | None = None


class PostRelabel(_Model):
    """New tier-1 labels for a post after the few-shot examples moved (the feedback learner relabels a
    correction's neighbours). Applied by the indexer while the post's text is still ``content_hash``;
    a person's and an LLM's labels of current taxonomy versions stay."""

    kind: Literal["post.relabel"] = "post.relabel"
    post_id: int
    account_id: int
    content_hash: str
    labels: list[VerticalLabel]


PipelineEvent = Annotated[
    Union[PostUpsert, EmbeddedPostUpsert, PostDelete, AccountPurge, PostLabels, PostCorrection, PostRelabel],
    Field(discriminator="kind"),
]
_pipeline_event = TypeAdapter(PipelineEvent)


def parse_pipeline_event(raw: bytes | None) -> (PostUpsert | EmbeddedPostUpsert | PostDelete | AccountPurge | PostLabels
                                                | PostCorrection | PostRelabel):
    if raw is None:
        raise MalformedEvent("empty pipeline event")
    try:
        return _pipeline_event.validate_json(raw)
    except ValueError as exc:
        raise MalformedEvent(f"not a pipeline event: {exc}") from exc


EMBEDDING_DIM = 384  # all-MiniLM-L6-v2


def parse_embedded_topic_event(raw: bytes | None) -> (EmbeddedPostUpsert | PostDelete | AccountPurge | PostLabels
                                                      | PostCorrection | PostRelabel):
    """An event of the embedded-posts topic, checked as each of its readers (indexer, classifier,
    summarizer) needs it: a vector of the model's dimension, never a post without one."""
    event = parse_pipeline_event(raw)
    if event.kind == "post.upsert":
        raise MalformedEvent("post.upsert without a vector: wrong topic")
    if event.kind == "post.embedded":
        try:
            dimensions = len(event.vector())
        except ValueError as exc:
            raise MalformedEvent(f"vector is not base64 float32: {exc}") from exc
        if dimensions != EMBEDDING_DIM:
            raise MalformedEvent(f"vector has {dimensions} dimensions, expected {EMBEDDING_DIM}")
    return event


def incremental_snapshot_signal(database: str, table: str, column: str, values: list[int]) -> bytes:
    """A Debezium ``execute-snapshot`` signal asking for ``table`` rows with ``column IN values``
    again (how viability brings in the posts of an account that just became viable)."""
    listed = ", ".join(str(int(v)) for v in values)
    collection = f"{database}.{table}"
    return orjson.dumps({
        "type": "execute-snapshot",
        "data": {
            "data-collections": [collection],
            "type": "incremental",
            "additional-conditions": [{"data-collection": collection, "filter": f"{column} IN ({listed})"}],
        },
    })


def encode(model: BaseModel) -> bytes:
    return orjson.dumps(model.model_dump(mode="json"))


def account_key(account_id: int) -> bytes:
    return orjson.dumps({"account_id": account_id})


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def json_schemas() -> dict[str, dict]:
    """JSON Schemas of every event contract, checked in under schemas/."""
    return {
        "debezium-change-event": ChangeEvent.model_json_schema(),
        "account-record": AccountRecord.model_json_schema(),
        "post-record": PostRecord.model_json_schema(),
        "pipeline-event": _pipeline_event.json_schema(),
    }
