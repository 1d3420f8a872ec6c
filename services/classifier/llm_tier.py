"""Tier 2 of vertical classification: an LLM labels the posts tier 1 was unsure about.

Posts go in batches (LLM_BATCH_SIZE per request, requests in parallel under the client's adaptive
limit), each post cut to a token budget: the field sent whole 4-5k-token rows one at a time. The
answer is JSON, validated strictly: only enabled verticals of the taxonomy, confidences in [0, 1];
anything else is dropped and counted. Posts the model left out are asked again once; a post that
still has no answer when retries or the deadline run out is reported failed, and the caller keeps
its tier-1 labels. Nothing here raises for a whole batch.

Answers are cached per post under model + prompt version + a fingerprint of the prompt (taxonomy,
version, descriptions) + the post's content hash, so a replay, or the same text posted twice, is free.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import orjson

from shared.classification.taxonomy import Taxonomy, VerticalLabel
from shared.llm import LlmClient, LlmError, MalformedAnswer, Shares, truncate_to_tokens
from shared.logging import get_logger
from shared.metrics import LLM_LABELS_DROPPED, LLM_POSTS
from shared.spend import NO_VERTICAL

log = get_logger(__name__)

STAGE = "classify"
MAX_KEYWORDS_IN_PROMPT = 8  # a few keywords sharpen a description; all of them would cost every request
PostId = int | str


@dataclass(frozen=True)
class PostToLabel:
    post_id: PostId
    content_hash: str  # shared.events.content_hash of the text
    text: str


@dataclass
class TierTwoResult:
    labels: dict[PostId, list[VerticalLabel]] = field(default_factory=dict)  # answered (maybe no vertical)
    failed: dict[PostId, str] = field(default_factory=dict)  # no answer: keep tier 1
    cached: int = 0
    requests: int = 0  # completions asked for (each may have been retried inside the client)
    usd: float = 0.0


# --- prompt and answer (pure) -----------------------------------------------------------------


def system_prompt(taxonomy: Taxonomy) -> str:
    lines = []
    for vertical in taxonomy.verticals:
        if not vertical.enabled:
            continue
        keywords = list(getattr(vertical, "keywords", None) or [])[:MAX_KEYWORDS_IN_PROMPT]
        hint = f" (e.g. {', '.join(keywords)})" if keywords else ""
        lines.append(f"- {vertical.name}: {vertical.description.strip()}{hint}")
    return (
        f'You label social media posts with the verticals (topics) of the taxonomy "{taxonomy.name}".\n'
        "A post may belong to several verticals or to none. Use only these vertical names:\n"
        + "\n".join(lines)
        + "\n\nAnswer with JSON only, exactly of this form, one entry for every post id you were given:\n"
        '{"results": [{"id": 1, "labels": [{"vertical": "<name>", "confidence": 0.0-1.0}]}]}\n'
        "Use an empty labels list when no vertical fits. Do not explain."
    )


def user_prompt(texts: Sequence[str]) -> str:
    # Ids are positions in this request, not post ids: short, and nothing for the model to mangle.
    return orjson.dumps({"posts": [{"id": i + 1, "text": t} for i, t in enumerate(texts)]}).decode()


def answer_schema(taxonomy: Taxonomy) -> dict:
    """The answer's JSON schema, for endpoints that constrain decoding to it (LLM_JSON_SCHEMA)."""
    label = {"type": "object", "required": ["vertical", "confidence"], "properties": {
        "vertical": {"type": "string", "enum": sorted(taxonomy.enabled_names())},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1}}}
    entry = {"type": "object", "required": ["id", "labels"], "properties": {
        "id": {"type": "integer"}, "labels": {"type": "array", "items": label}}}
    return {"type": "object", "required": ["results"], "properties": {"results": {"type": "array", "items": entry}}}


def prompt_fingerprint(taxonomy: Taxonomy) -> str:
    """Changes whenever anything the answer depends on changes (taxonomy content, version, prompt)."""
    version = getattr(taxonomy, "version", "")
    return hashlib.sha256(f"{taxonomy.name}\n{version}\n{system_prompt(taxonomy)}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ParsedAnswer:
    labels: dict[int, list[tuple[str, float]]]  # request position (1-based) -> (vertical, confidence)
    dropped: dict[str, int]  # reason -> labels or entries dropped


def parse_answer(content: str, taxonomy: Taxonomy, expected: int) -> ParsedAnswer:
    """Strict reading of the model's JSON. Raises MalformedAnswer when nothing usable is in it
    (the request is retried); drops single bad entries and labels (counted by reason)."""
    try:
        document = orjson.loads(_strip_code_fence(content))
    except orjson.JSONDecodeError as exc:
        raise MalformedAnswer(f"answer is not JSON: {exc}: {content[:120]!r}") from exc
    results = document.get("results") if isinstance(document, dict) else None
    if not isinstance(results, list):
        raise MalformedAnswer(f'answer has no "results" list: {content[:120]!r}')
    enabled = taxonomy.enabled_names()
    known = {v.name for v in taxonomy.verticals}
    labels: dict[int, list[tuple[str, float]]] = {}
    dropped: dict[str, int] = {}

    def drop(reason: str) -> None:
        dropped[reason] = dropped.get(reason, 0) + 1

    for entry in results:
        position = entry.get("id") if isinstance(entry, dict) else None
        raw_labels = entry.get("labels") if isinstance(entry, dict) else None
        if type(position) is not int or not 1 <= position <= expected or not isinstance(raw_labels, list):
            drop("bad_entry")
            continue
        if position in labels:
            drop("duplicate_entry")
            continue
        best: dict[str, float] = {}
        for label in raw_labels:
            vertical = label.get("vertical") if isinstance(label, dict) else None
            confidence = label.get("confidence") if isinstance(label, dict) else None
            if vertical not in known:
                drop("unknown_vertical")
            elif vertical not in enabled:
                drop("disabled_vertical")
            elif type(confidence) not in (int, float) or not 0.0 <= confidence <= 1.0:
                drop("bad_confidence")
            else:
                best[vertical] = max(best.get(vertical, 0.0), float(confidence))
        labels[position] = sorted(best.items())
    if expected and not labels:
        raise MalformedAnswer(f"no usable entry among {len(results)} results")
    return ParsedAnswer(labels=labels, dropped=dropped)


def booking_shares(answer: ParsedAnswer, taxonomy: str, expected: int) -> Shares:
    """Which verticals a request's tokens are booked to: each post an equal share, split between
    its labels; posts without a label (or without an answer) book to "-"."""
    shares: dict[tuple[str, str], float] = {}
    for position in range(1, expected + 1):
        verticals = [v for v, _ in answer.labels.get(position, [])] or [NO_VERTICAL]
        for vertical in verticals:
            key = (taxonomy, vertical)
            shares[key] = shares.get(key, 0.0) + 1.0 / (expected * len(verticals))
    return shares


def _strip_code_fence(content: str) -> str:
    # Chat models often wrap JSON in ```json fences even when told not to; the JSON inside is fine.
    text = content.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
        text = text.rsplit("```", 1)[0]
    return text


# --- the tier ----------------------------------------------------------------------------------


class LlmVerticalClassifier:
    def __init__(self, client: LlmClient) -> None:
        self.client = client
        self.batch_size = client.settings.llm_batch_size
        self.post_token_budget = client.settings.llm_post_token_budget
        # Posts the model skipped are asked again this many times before they are reported failed.
        self.missing_rounds = 1

    def classify(self, taxonomy: Taxonomy, posts: Sequence[PostToLabel | tuple[PostId, str, str]],
                 *, deadline: float | None = None) -> TierTwoResult:
        items = [p if isinstance(p, PostToLabel) else PostToLabel(*p) for p in posts]
        deadline = deadline if deadline is not None else self.client.deadline()
        result = TierTwoResult()
        fingerprint = prompt_fingerprint(taxonomy)
        misses = self._from_cache(taxonomy, fingerprint, items, result)
        chunks = [misses[i:i + self.batch_size] for i in range(0, len(misses), self.batch_size)]
        if chunks:
            workers = min(len(chunks), self.client.settings.llm_max_concurrency)
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="llm-classify") as pool:
                for chunk_result in pool.map(lambda c: self._classify_chunk(taxonomy, fingerprint, c, deadline),
                                             chunks):
                    result.labels.update(chunk_result.labels)
                    result.failed.update(chunk_result.failed)
                    result.requests += chunk_result.requests
                    result.usd += chunk_result.usd
        LLM_POSTS.labels(taxonomy=taxonomy.name, result="cached").inc(result.cached)
        LLM_POSTS.labels(taxonomy=taxonomy.name, result="labelled").inc(len(result.labels) - result.cached)
        LLM_POSTS.labels(taxonomy=taxonomy.name, result="failed").inc(len(result.failed))
        return result

    def _cache_key(self, fingerprint: str, post: PostToLabel) -> str:
        return self.client.cache_key(STAGE, f"{fingerprint}:{post.content_hash}")

    def _from_cache(self, taxonomy: Taxonomy, fingerprint: str, items: list[PostToLabel],
                    result: TierTwoResult) -> list[PostToLabel]:
        found = self.client.cache.get_many([self._cache_key(fingerprint, p) for p in items])
        misses = []
        for post, raw in zip(items, found, strict=True):
            try:
                labels = self._labels(taxonomy, orjson.loads(raw)) if raw is not None else None
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                labels = None  # an unreadable entry is a miss: asked again and overwritten
            if labels is None:
                misses.append(post)
                continue
            result.labels[post.post_id] = labels
            result.cached += 1
        return misses

    def _classify_chunk(self, taxonomy: Taxonomy, fingerprint: str, chunk: list[PostToLabel],
                        deadline: float) -> TierTwoResult:
        result = TierTwoResult()
        pending = chunk
        for _ in range(1 + self.missing_rounds):
            if not pending:
                break
            try:
                answered = self._ask(taxonomy, pending, deadline, result)
            except LlmError as exc:
                result.failed.update({p.post_id: f"{type(exc).__name__}: {exc}" for p in pending})
                return result
            except Exception as exc:  # a bug must not cost the batch its tier-1 labels: report, keep going
                log.exception("tier-2 classification failed unexpectedly", taxonomy=taxonomy.name)
                result.failed.update({p.post_id: f"internal error: {type(exc).__name__}: {exc}" for p in pending})
                return result
            self.client.cache.put_many({self._cache_key(fingerprint, post): orjson.dumps(
                [{"vertical": v, "confidence": c} for v, c in labels]) for post, labels in answered.items()})
            for post, labels in answered.items():
                result.labels[post.post_id] = self._labels(taxonomy, [{"vertical": v, "confidence": c}
                                                                      for v, c in labels])
            pending = [p for p in pending if p not in answered]
        result.failed.update({p.post_id: "missing from the model's answers" for p in pending})
        return result

    def _ask(self, taxonomy: Taxonomy, posts: list[PostToLabel], deadline: float,
             result: TierTwoResult) -> dict[PostToLabel, list[tuple[str, float]]]:
        texts = [truncate_to_tokens(p.text, self.post_token_budget) for p in posts]
        messages = [{"role": "system", "content": system_prompt(taxonomy)},
                    {"role": "user", "content": user_prompt(texts)}]
        expected = len(posts)
        completion = self.client.complete(
            messages, stage=STAGE, taxonomy=taxonomy.name, json_mode=True, json_schema=answer_schema(taxonomy),
            deadline=deadline,
            parse=lambda content: parse_answer(content, taxonomy, expected),
            shares=lambda answer: booking_shares(answer, taxonomy.name, expected),
        )
        result.requests += 1
        result.usd += completion.usd
        answer: ParsedAnswer = completion.value
        for reason, count in answer.dropped.items():
            LLM_LABELS_DROPPED.labels(taxonomy=taxonomy.name, reason=reason).inc(count)
        return {posts[position - 1]: labels for position, labels in answer.labels.items()}

    @staticmethod
    def _labels(taxonomy: Taxonomy, raw: Sequence[Mapping[str, object]]) -> list[VerticalLabel]:
        version = getattr(taxonomy, "version", "1")
        # version/tier are fields of VerticalLabel where the tier-1 work added them (ignored otherwise).
        return [VerticalLabel(taxonomy=taxonomy.name, vertical=str(item["vertical"]),
                              confidence=float(item["confidence"]), version=version, tier="llm")
                for item in raw]
