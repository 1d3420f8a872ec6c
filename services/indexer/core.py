"""Turn pipeline events into vector store writes: deterministic point ids, deletes honoured.

Within a batch, the last event per post wins and an account purge is a barrier: everything
before it is written first, so a purge never deletes a post that came after it, nor misses one
that came before it.

Vertical labels are decided here, at write time, by tier 1 (the post's vector against each
taxonomy's prototypes: a matrix product per batch, no model call), so a post is searchable by
vertical the moment it is searchable at all. A tier-2 opinion (``post.labels``, from an LLM) may
follow later; it replaces that taxonomy's tier-1 labels while the post's text stays the same.

People's corrections (``post.correction``) and the relabelling of their neighbours (``post.relabel``)
arrive on the same keyed topic and are written here too: the indexer is the only writer of a post's
point, so no label is lost between a read of the stored payload and the write of the whole point.
How the tiers' labels merge is shared/classification/merging.py.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Protocol

import numpy as np

from services.indexer.deleted import DeletedVersions, purge_record_id
from shared.classification.merging import (
    LabelChange,
    keep_second_opinions,
    label_change_result,
    replace_taxonomy_labels,
)
from shared.classification.taxonomy import VerticalLabel, verticals_payload
from shared.events import (
    AccountPurge,
    EmbeddedPostUpsert,
    PostCorrection,
    PostDelete,
    PostLabels,
    PostRelabel,
    content_hash,
)
from shared.metrics import FRESHNESS_SECONDS, INDEX_OPERATIONS
from shared.sparse import SPARSE_MODEL_ID, SparseEncoder
from shared.stored_post import packed_payload, stored_labels
from shared.vectorstore import PointRecord, SearchFilter, VectorStore, point_id

PAYLOAD_TEXT_CHARS = 4_000  # what a result card shows; the vector already saw the full text
DELETED_VERSION_RETENTION_S = 37 * 86_400  # INDEXER_DELETED_VERSION_RETENTION_DAYS' default

IndexEvent = EmbeddedPostUpsert | PostDelete | AccountPurge | PostLabels | PostCorrection | PostRelabel


class Labeller(Protocol):
    """Tier-1 labels of post vectors, and the taxonomy versions they are decided with."""

    def labels(self, vectors: np.ndarray, content_hashes: Sequence[str] | None = None) -> list[list[VerticalLabel]]: ...
    def versions(self) -> Mapping[str, str]: ...


def post_point_id(post_id: int) -> str:
    return point_id("post", post_id)


def post_payload(event: EmbeddedPostUpsert, indexed_at_ms: int | None = None) -> dict:
    """StoredPost's fields as a dict, packed (StoredPost(...).payload() gives the same payload at a few
    times the cost per point: it validates again what the event's parsing validated; a unit test
    holds the two equal)."""
    post, account, position = event.post, event.account, event.position
    return packed_payload(dict(
        post_id=post.id, account_id=post.account_id, platform=post.platform, title=post.title,
        description=(post.description or "")[:PAYLOAD_TEXT_CHARS], url=post.url, published_at=post.published_at,
        views=post.views, likes=post.likes, comments=post.comments,
        handle=account.handle, display_name=account.display_name, followers=account.followers,
        model_id=event.model_id,
        # Commit -> written, measured per point: the query API's status reports freshness from these
        # two (snapshot reads excluded: their ts_ms is when the snapshot read the row, not a commit).
        source_ts_ms=position.ts_ms, source_gtid=position.gtid, source_snapshot=position.snapshot,
        indexed_at_ms=indexed_at_ms if indexed_at_ms is not None else int(time.time() * 1000),
        sparse_model_id=SPARSE_MODEL_ID, source_version=position.order_key(),
        # What the labels were decided from: a tier-2 opinion about other text is not applied.
        content_hash=content_hash(post.embedding_text()),
        **verticals_payload(()),
    ))


@dataclass
class WriteStep:
    upserts: dict[str, PointRecord] = field(default_factory=dict)
    deletes: set[str] = field(default_factory=set)
    labels: dict[tuple[str, str], PostLabels] = field(default_factory=dict)  # (point id, taxonomy) -> opinion
    purge_account: int | None = None  # applied after the upserts/deletes of this step
    purge: AccountPurge | None = None  # the event behind purge_account (its version)
    label_changes: list[LabelChange] = field(default_factory=list)  # applied in order, after the step's writes


def post_point(event: EmbeddedPostUpsert, indexed_at_ms: int | None = None, pid: str | None = None) -> PointRecord:
    """Dense vector from the embedder, keyword vector of the same text, and the payload. Built without
    validation (per point, in the indexer's hot loop): the id is canonical by construction, the vector
    and the event were checked when the event was parsed."""
    return PointRecord.model_construct(id=pid or post_point_id(event.post.id), vector=event.vector(),
                                       sparse=_sparse_encoder().document(event.post.embedding_text()),
                                       named={}, payload=post_payload(event, indexed_at_ms))


def with_labels(payload: dict, labels: Sequence[VerticalLabel]) -> dict:
    return {**payload, **verticals_payload(labels)}


@cache
def _sparse_encoder() -> SparseEncoder:
    return SparseEncoder()


def plan_writes(events: Sequence[IndexEvent], labeller: Labeller | None = None) -> list[WriteStep]:
    indexed_at_ms = int(time.time() * 1000)
    steps, current = [], WriteStep()
    for event in events:
        if isinstance(event, AccountPurge):
            current.purge_account, current.purge = event.account_id, event
            steps.append(current)
            current = WriteStep()
        elif isinstance(event, PostDelete):
            pid = post_point_id(event.post_id)
            current.upserts.pop(pid, None)
            current.deletes.add(pid)
        elif isinstance(event, (PostCorrection, PostRelabel)):
            current.label_changes.append(event)
        elif isinstance(event, PostLabels):
            # Kept even when the post is upserted again later in the step: whether it still
            # applies is decided by content hash when the step is written.
            current.labels[(post_point_id(event.post_id), event.taxonomy)] = event
        else:
            pid = post_point_id(event.post.id)
            current.deletes.discard(pid)
            current.upserts[pid] = post_point(event, indexed_at_ms, pid)
    steps.append(current)
    steps = [s for s in steps if s.upserts or s.deletes or s.labels or s.label_changes or s.purge_account is not None]
    if labeller is not None:
        _label_upserts(steps, labeller)
    return steps


def _label_upserts(steps: Sequence[WriteStep], labeller: Labeller) -> None:
    """Tier-1 labels for every upsert of the batch in one call (one matrix product per taxonomy)."""
    points = [point for step in steps for point in step.upserts.values()]
    if not points:
        return
    # with each text's hash: a label people corrected away from that text is not proposed again
    labels = labeller.labels(np.asarray([p.vector for p in points], dtype=np.float32),
                             [p.payload["content_hash"] for p in points])
    for point, point_labels in zip(points, labels, strict=True):
        point.payload = with_labels(point.payload, point_labels)


class PostIndexer:
    def __init__(self, store: VectorStore, collection: str, dim: int, labeller: Labeller | None = None,
                 deleted_retention_s: float = DELETED_VERSION_RETENTION_S) -> None:
        self.store = store
        self.collection = collection
        self.labeller = labeller
        store.ensure_collection(collection, dim)
        self.deleted = DeletedVersions(store, collection, deleted_retention_s)

    def apply(self, events: Sequence[IndexEvent]) -> None:
        """Write the batch; returns only when the store has it (callers commit offsets after).

        Redelivery and replays can bring an older version of a post after a newer one: each point
        keeps its source version, and a write older than what is stored is dropped. A deleted
        point's version is remembered (services/indexer/deleted.py), so an older upsert after the
        delete, or after its account's purge, is dropped too.
        """
        versions = self.labeller.versions() if self.labeller is not None else {}
        for step in plan_writes(events, self.labeller):
            stored = self._stored_payloads(step)
            self._drop_stale(step, events, stored)
            self._drop_deleted(step, stored)
            self._keep_second_opinions(step, stored, versions)
            if step.upserts:
                self.store.upsert(self.collection, list(step.upserts.values()))
                INDEX_OPERATIONS.labels(op="upsert").inc(len(step.upserts))
            if step.deletes:
                self._remember_deletes(step, events, stored)
                self.store.delete(self.collection, sorted(step.deletes))
                INDEX_OPERATIONS.labels(op="delete").inc(len(step.deletes))
            if step.labels:
                self._apply_second_opinions(step, stored, versions)
            if step.label_changes:
                self._apply_label_changes(step.label_changes, versions)
            if step.purge is not None:
                self._purge(step.purge)
        now_ms = time.time() * 1000
        for event in events:
            if isinstance(event, EmbeddedPostUpsert) and not event.position.snapshot:
                FRESHNESS_SECONDS.observe(max(0.0, now_ms - event.position.ts_ms) / 1000)

    def _stored_payloads(self, step: WriteStep) -> dict[str, dict]:
        """Payloads of the points this step touches, read once (versions, labels, content hashes)."""
        ids = list(dict.fromkeys([*step.upserts, *step.deletes, *(pid for pid, _ in step.labels)]))
        return {p.id: p.payload for p in self.store.retrieve(self.collection, ids)} if ids else {}

    def _keep_second_opinions(self, step: WriteStep, stored: Mapping[str, dict], versions: Mapping[str, str]) -> None:
        for pid, point in step.upserts.items():
            before = stored.get(pid)
            if before and before.get("content_hash") == point.payload.get("content_hash"):
                labels = keep_second_opinions(stored_labels(point.payload), stored_labels(before), versions)
                point.payload = with_labels(point.payload, labels)

    def _apply_second_opinions(self, step: WriteStep, stored: Mapping[str, dict], versions: Mapping[str, str]) -> None:
        """Tier-2 labels replace the taxonomy's tier-1 labels, if the post still exists with the
        text that was judged and the taxonomy version is still the current one; else dropped."""
        patches: dict[str, list[VerticalLabel]] = {}
        for (pid, taxonomy), opinion in step.labels.items():
            payload = step.upserts[pid].payload if pid in step.upserts else stored.get(pid)
            current = versions.get(taxonomy)
            if (pid in step.deletes or payload is None or payload.get("content_hash") != opinion.content_hash
                    or current != opinion.taxonomy_version or _corrected_by_a_person(payload, taxonomy)):
                INDEX_OPERATIONS.labels(op="labels_skipped").inc()
                continue
            labels = patches.get(pid, stored_labels(payload))
            patches[pid] = replace_taxonomy_labels(labels, taxonomy, [
                label.model_copy(update={"taxonomy": taxonomy, "version": current, "tier": "llm"})
                for label in opinion.labels])
        self.store.set_payloads(self.collection, {pid: verticals_payload(labels) for pid, labels in patches.items()})
        INDEX_OPERATIONS.labels(op="labels").inc(len(patches))

    def _drop_deleted(self, step: WriteStep, stored: Mapping[str, dict]) -> None:
        """Upserts of points that are not stored: dropped if the post, or its account, was deleted
        by a change not older than the upsert (a redriven or late old event)."""
        absent = [pid for pid in step.upserts if pid not in stored]
        if not absent:
            return
        account_by_post = {pid: step.upserts[pid].payload["account_id"] for pid in absent}
        remembered = self.deleted.versions([*absent, *map(purge_record_id, set(account_by_post.values()))])
        for pid in absent:
            version = step.upserts[pid].payload["source_version"]
            if (_not_newer(version, remembered.get(pid))
                    or _not_newer(version, remembered.get(purge_record_id(account_by_post[pid])))):
                del step.upserts[pid]
                INDEX_OPERATIONS.labels(op="deleted_skipped").inc()

    def _remember_deletes(self, step: WriteStep, events: Sequence[IndexEvent], stored: Mapping[str, dict]) -> None:
        """Before the points go: the newer of the delete's version and the stored point's (an
        unversioned delete remembers the stored point's only)."""
        incoming = _delete_versions(events)
        self.deleted.remember({pid: _newest(incoming.get(pid), (stored.get(pid) or {}).get("source_version"))
                               for pid in step.deletes})

    def _purge(self, purge: AccountPurge) -> None:
        """Remove the account's points not newer than the purge (all of them if it is unversioned):
        a post written after it (the account viable again, its posts snapshotted anew) stays."""
        version = purge.position.order_key() if purge.position else None
        ids = list(self.store.scroll_ids(self.collection, SearchFilter(account_id=[purge.account_id])))
        points = self.store.retrieve(self.collection, ids) if ids else []
        doomed = {p.id: p.payload.get("source_version") for p in points
                  if version is None or not p.payload.get("source_version")
                  or list(p.payload["source_version"]) <= version}
        remember: dict[str, list[int] | None] = {pid: v for pid, v in doomed.items() if v}
        if version is not None:
            remember[purge_record_id(purge.account_id)] = version
        self.deleted.remember(remember)
        if doomed:
            self.store.delete(self.collection, sorted(doomed))
        INDEX_OPERATIONS.labels(op="purge").inc()
        if len(doomed) < len(points):
            INDEX_OPERATIONS.labels(op="purge_kept_newer").inc(len(points) - len(doomed))

    def _drop_stale(self, step: WriteStep, events: Sequence[IndexEvent], payloads: Mapping[str, dict]) -> None:
        ids = [*step.upserts, *step.deletes]
        if not ids:
            return
        stored = {pid: payload.get("source_version") for pid, payload in payloads.items()}
        incoming = _delete_versions(events)
        for pid in [pid for pid in step.upserts if _older(step.upserts[pid].payload["source_version"], stored.get(pid))]:
            del step.upserts[pid]
            INDEX_OPERATIONS.labels(op="stale_skipped").inc()
        for pid in [pid for pid in step.deletes if _older(incoming.get(pid), stored.get(pid))]:
            step.deletes.discard(pid)
            INDEX_OPERATIONS.labels(op="stale_skipped").inc()

    def _apply_label_changes(self, changes: Sequence[LabelChange], versions: Mapping[str, str]) -> None:
        """People's corrections and neighbours' new tier-1 labels, on the payloads as stored now (after
        this step's own writes): this loop is the only writer of the points, so nothing comes between."""
        ids = list(dict.fromkeys(post_point_id(change.post_id) for change in changes))
        labels = {p.id: (p.payload.get("content_hash"), stored_labels(p.payload))
                  for p in self.store.retrieve(self.collection, ids)}
        changed: set[str] = set()
        for change in changes:
            pid = post_point_id(change.post_id)
            if pid not in labels or (isinstance(change, PostRelabel) and labels[pid][0] != change.content_hash):
                INDEX_OPERATIONS.labels(op="labels_skipped").inc()  # gone, or its text changed since
                continue
            text_hash, current = labels[pid]
            labels[pid] = (text_hash, label_change_result(change, current, versions))
            changed.add(pid)
        self.store.set_payloads(self.collection, {pid: verticals_payload(labels[pid][1]) for pid in changed})
        INDEX_OPERATIONS.labels(op="corrections").inc(len(changed))


def _corrected_by_a_person(payload: Mapping, taxonomy: str) -> bool:
    return any(label.tier == "human" and label.taxonomy == taxonomy for label in stored_labels(payload))


def _older(incoming: list[int] | None, stored: list[int] | None) -> bool:
    return incoming is not None and stored is not None and list(incoming) < list(stored)


def _delete_versions(events: Sequence[IndexEvent]) -> dict[str, list[int] | None]:
    """The version of each deleted post's last delete; None for an unversioned one (applied regardless)."""
    return {post_point_id(e.post_id): e.position.order_key() if e.position else None
            for e in events if isinstance(e, PostDelete)}


def _not_newer(incoming: list[int], remembered: list[int] | None) -> bool:
    return remembered is not None and list(incoming) <= list(remembered)


def _newest(*versions: list[int] | None) -> list[int] | None:
    known = [list(v) for v in versions if v]
    return max(known) if known else None
