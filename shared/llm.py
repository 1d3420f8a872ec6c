"""A governed client for any OpenAI-compatible chat-completions endpoint.

The field ran a 70B model on a managed endpoint: it throttled (429) under parallel load, timed
out at 120 s, failed once in 16 hours and cost $2,500 for 550k posts. So every call here goes
through the same governance:

- bounded concurrency that adapts (AIMD): a 429 halves the limit (once per burst) and pauses new
  requests for its Retry-After; each full window of successes grows it by one, up to the maximum;
- retries on 429, 5xx, timeouts, connection errors and malformed answers, with exponential backoff
  and full jitter (``shared.retry``), inside a total deadline; other 4xx fail at once (retrying a
  request the endpoint rejects only costs time);
- explicit timeouts: one request never outlives the deadline it belongs to;
- accounting: prompt/completion tokens from ``usage`` and their modelled cost, in Prometheus
  (per taxonomy, vertical, stage, model) and in the Redis ledger (``shared.spend``);
- an optional hard spend cap over the ledger;
- a Redis cache of answers keyed by model + prompt version + the caller's key (a content hash), so
  a replay pays nothing twice. Redis down: the client goes on uncached and says so.

Callers are synchronous worker threads; the client is thread-safe and blocking.
"""

from __future__ import annotations

import email.utils
import math
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx
import orjson
import redis

from shared.config import LlmSettings
from shared.logging import get_logger
from shared.metrics import (
    CACHE_ERRORS,
    CACHE_REQUESTS,
    LLM_BUDGET_STOPS,
    LLM_CONCURRENCY_LIMIT,
    LLM_COST_USD,
    LLM_REQUEST_SECONDS,
    LLM_REQUESTS,
    LLM_TOKENS,
)
from shared.retry import backoff_delay
from shared.spend import NO_VERTICAL, PaidCall, read_llm_spend, record_paid_call, split_call, usd_nanos

log = get_logger(__name__)

NO_TAXONOMY = "-"
LLM_CACHE_TTL_S = 60 * 60 * 24 * 180  # paid answers: keep them through any replay within half a year
CHARS_PER_TOKEN = 4  # no tokenizer of the remote model here: ~4 characters per token for English text
BACKOFF_CAP_S = 60.0

T = TypeVar("T")
Message = Mapping[str, str]
Shares = Mapping[tuple[str, str], float]


class LlmError(Exception):
    """The LLM tier could not answer; callers fall back to what they have (tier 1, extractive)."""


class LlmRejected(LlmError):
    """The endpoint refused the request itself (4xx other than 429): retrying cannot help."""


class LlmUnavailable(LlmError):
    """Retries or the deadline ran out."""


class LlmBudgetExhausted(LlmError):
    """The spend cap (LLM_BUDGET_USD) is reached: no more paid calls."""


class MalformedAnswer(ValueError):
    """An answer that does not have the expected shape; the request is retried."""


@dataclass(frozen=True)
class Completion(Generic[T]):
    content: str
    value: T  # what ``parse`` made of the content (the content itself without one)
    prompt_tokens: int
    completion_tokens: int
    usd: float
    cached: bool
    attempts: int


# --- text budget -----------------------------------------------------------------------------


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def truncate_to_tokens(text: str, max_tokens: int) -> str:
    """Cut ``text`` to about ``max_tokens`` tokens, at a word boundary when one is near."""
    limit = max_tokens * CHARS_PER_TOKEN
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    if space > limit * 0.8:
        cut = cut[:space]
    return cut.rstrip() + " …"


# --- adaptive concurrency ----------------------------------------------------------------------


class AdaptiveLimiter:
    """At most ``limit`` holders at a time; the limit follows the endpoint's 429s (AIMD).

    A burst of concurrent 429s halves the limit once, not once per response: only a throttled
    request that started after the last decrease can decrease it again (as TCP counts one loss
    per window).
    """

    def __init__(self, max_limit: int, *, on_change: Callable[[int], None] | None = None) -> None:
        self.max_limit = max_limit
        self.limit = max_limit
        self.in_flight = 0
        self._cond = threading.Condition()
        self._successes = 0
        self._epoch = 0
        self._paused_until = 0.0
        self._on_change = on_change or (lambda limit: None)
        self._on_change(self.limit)

    def acquire(self, deadline: float) -> int:
        """Wait for a slot until ``deadline`` (monotonic); returns a token for ``release``."""
        with self._cond:
            while True:
                now = time.monotonic()
                if now >= deadline or self._paused_until >= deadline:
                    raise LlmUnavailable("deadline reached while waiting for a request slot")
                if self._paused_until > now:
                    self._cond.wait(self._paused_until - now)
                elif self.in_flight < self.limit:
                    self.in_flight += 1
                    return self._epoch
                else:
                    self._cond.wait(deadline - now)

    def release(self, token: int, *, succeeded: bool, throttled: bool = False, retry_after_s: float | None = None) -> None:
        with self._cond:
            self.in_flight -= 1
            if throttled:
                if token == self._epoch:
                    self._set_limit(max(1, self.limit // 2))
                    self._epoch += 1
                if retry_after_s:
                    self._paused_until = max(self._paused_until, time.monotonic() + retry_after_s)
            elif succeeded:
                self._successes += 1
                if self._successes >= self.limit and self.limit < self.max_limit:
                    self._set_limit(self.limit + 1)
            self._cond.notify_all()

    def _set_limit(self, limit: int) -> None:
        self.limit = limit
        self._successes = 0
        self._on_change(limit)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


# --- answer cache ------------------------------------------------------------------------------


def answer_cache_key(stage: str, model: str, prompt_version: str, key: str) -> str:
    """Where an answer is cached: a new model or prompt version never reads an old one's answers."""
    return f"llm:{stage}:{model}:{prompt_version}:{key}"


class LlmAnswerCache:
    """Answers by key in Redis; like shared.cache, a Redis failure is counted, logged and skipped."""

    def __init__(self, client: redis.Redis | None, *, name: str = "llm") -> None:
        self.client = client
        self.name = name

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        if self.client is None:
            return [None] * len(keys)
        try:
            found = self.client.mget(list(keys))
        except redis.RedisError as exc:
            self._failed("get", exc)
            return [None] * len(keys)
        hits = sum(v is not None for v in found)
        CACHE_REQUESTS.labels(cache=self.name, result="hit").inc(hits)
        CACHE_REQUESTS.labels(cache=self.name, result="miss").inc(len(found) - hits)
        return found

    def put_many(self, items: Mapping[str, bytes]) -> None:
        if not items or self.client is None:
            return
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for key, value in items.items():
                    pipe.set(key, value, ex=LLM_CACHE_TTL_S)
                pipe.execute()
        except redis.RedisError as exc:
            self._failed("put", exc)

    def _failed(self, operation: str, exc: Exception) -> None:
        CACHE_ERRORS.labels(cache=self.name).inc()
        log.warning("LLM cache unavailable, continuing uncached", cache=self.name, operation=operation, error=str(exc))


# --- the client --------------------------------------------------------------------------------


@dataclass
class _Attempt:
    outcome: str  # ok | rate_limited | server_error | timeout | connection_error | malformed | client_error
    retry_after_s: float | None = None
    detail: str = ""


class LlmClient:
    def __init__(self, settings: LlmSettings, redis_client: redis.Redis | None, *,
                 rng: random.Random | None = None, cache_client: redis.Redis | None = None) -> None:
        """redis_client keeps the spend ledger (state); answers are cached in cache_client (default: the same)."""
        if not settings.llm_base_url:
            raise ValueError("LlmClient needs LLM_BASE_URL (None means: no LLM tier)")
        self.settings = settings
        self.model = settings.llm_model
        self.redis = redis_client
        self.cache = LlmAnswerCache(cache_client or redis_client)
        self.limiter = AdaptiveLimiter(
            settings.llm_max_concurrency, on_change=LLM_CONCURRENCY_LIMIT.labels(model=self.model).set)
        self._rng = rng or random.Random()
        self._local_usd = 0.0  # this process's spend: the budget's fallback while Redis is down
        self._lock = threading.Lock()
        headers = {"content-type": "application/json"}
        if settings.llm_api_key is not None:
            headers["authorization"] = f"Bearer {settings.llm_api_key.get_secret_value()}"
        self._http = httpx.Client(
            base_url=settings.llm_base_url.rstrip("/"), headers=headers,
            limits=httpx.Limits(max_connections=settings.llm_max_concurrency * 2,
                                max_keepalive_connections=settings.llm_max_concurrency),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> LlmClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def deadline(self) -> float:
        """A fresh total deadline for one batch of work (monotonic clock)."""
        return time.monotonic() + self.settings.llm_deadline_s

    def cache_key(self, stage: str, key: str) -> str:
        return answer_cache_key(stage, self.model, self.settings.llm_prompt_version, key)

    def complete(self, messages: Sequence[Message], *, stage: str, taxonomy: str = NO_TAXONOMY,
                 cache_key: str | None = None, parse: Callable[[str], T] | None = None,
                 shares: Callable[[T], Shares] | None = None, max_tokens: int | None = None,
                 json_mode: bool = False, json_schema: Mapping[str, Any] | None = None,
                 deadline: float | None = None) -> Completion[T]:
        """One chat completion under the governance above.

        ``json_mode`` asks for a JSON object (LLM_JSON_MODE), ``json_schema`` for that shape where the
        endpoint constrains decoding (LLM_JSON_SCHEMA);
        ``parse`` turns the content into a value and raises MalformedAnswer to have it retried;
        ``shares`` says which (taxonomy, vertical) the paid tokens are booked to (default: the
        taxonomy and "-"); ``cache_key`` (e.g. a content hash of everything the prompt depends on)
        makes a second call with the same key free.
        """
        parse_content: Callable[[str], Any] = parse or (lambda content: content)
        redis_key = self.cache_key(stage, cache_key) if cache_key else None
        if redis_key:
            cached = self._cached(redis_key, parse_content)
            if cached is not None:
                return cached
        body: dict[str, Any] = {"model": self.model, "messages": [dict(m) for m in messages], "temperature": 0}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if json_mode and self.settings.llm_json_mode:
            body["response_format"] = {"type": "json_object"}
            if json_schema is not None and self.settings.llm_json_schema:
                body["response_format"]["schema"] = dict(json_schema)
        deadline = deadline if deadline is not None else self.deadline()
        default_shares = {(taxonomy, NO_VERTICAL): 1.0}
        failures: list[str] = []
        for attempt in range(self.settings.llm_max_retries + 1):
            self._check_budget(stage)
            token = self.limiter.acquire(deadline)
            result = _Attempt("connection_error", detail="request not sent")
            try:
                result, content, value, prompt_tokens, completion_tokens, usd = self._attempt(
                    body, deadline, stage, parse_content, shares, default_shares)
            finally:
                self.limiter.release(token, succeeded=result.outcome == "ok",
                                     throttled=result.outcome == "rate_limited", retry_after_s=result.retry_after_s)
            LLM_REQUESTS.labels(stage=stage, model=self.model, outcome=result.outcome).inc()
            if result.outcome == "ok":
                if redis_key:
                    self.cache.put_many({redis_key: content.encode()})
                return Completion(content=content, value=value, prompt_tokens=prompt_tokens,
                                  completion_tokens=completion_tokens, usd=usd, cached=False, attempts=attempt + 1)
            if result.outcome == "client_error":
                raise LlmRejected(f"{self.model}: {result.detail}")
            failures.append(f"{result.outcome}: {result.detail}" if result.detail else result.outcome)
            log.warning("LLM request failed", model=self.model, stage=stage, attempt=attempt + 1,
                        outcome=result.outcome, detail=result.detail[:200])
            if attempt == self.settings.llm_max_retries:
                break
            wait = max(backoff_delay(attempt + 1, base_s=self.settings.llm_backoff_base_s, cap_s=BACKOFF_CAP_S,
                                     rng=self._rng), result.retry_after_s or 0.0)
            if time.monotonic() + wait >= deadline:
                raise LlmUnavailable(f"deadline reached after {attempt + 1} attempts ({'; '.join(failures)})")
            time.sleep(wait)
        raise LlmUnavailable(f"gave up after {len(failures)} attempts ({'; '.join(failures)})")

    # --- one HTTP request ---

    def _attempt(self, body: dict, deadline: float, stage: str, parse_content: Callable[[str], Any],
                 shares: Callable[[Any], Shares] | None, default_shares: Shares,
                 ) -> tuple[_Attempt, str, Any, int, int, float]:
        started = time.monotonic()
        try:
            result, payload = self._post(body, deadline)
        finally:
            LLM_REQUEST_SECONDS.labels(stage=stage, model=self.model).observe(time.monotonic() - started)
        if result.outcome != "ok":
            return result, "", None, 0, 0, 0.0
        content, prompt_tokens, completion_tokens = self._read_payload(payload, body)
        value: Any = None
        try:
            value = parse_content(content)
        except MalformedAnswer as exc:
            result = _Attempt("malformed", detail=str(exc))
        # A malformed answer was billed all the same: it is booked, to no vertical.
        booked = shares(value) if shares and result.outcome == "ok" else default_shares
        usd = self._account(stage, prompt_tokens, completion_tokens, booked)
        return result, content, value, prompt_tokens, completion_tokens, usd

    def _post(self, body: dict, deadline: float) -> tuple[_Attempt, Any]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise LlmUnavailable("deadline reached before the request was sent")
        timeout = min(self.settings.llm_request_timeout_s, remaining)
        try:
            response = self._http.post("/chat/completions", content=orjson.dumps(body), timeout=timeout)
        except httpx.TimeoutException as exc:
            return _Attempt("timeout", detail=f"no answer within {timeout:.1f}s ({type(exc).__name__})"), None
        except httpx.RequestError as exc:  # connection refused/reset, protocol and decoding errors
            return _Attempt("connection_error", detail=f"{type(exc).__name__}: {exc}"), None
        status = response.status_code
        if status == 429:
            return _Attempt("rate_limited", parse_retry_after(response.headers.get("retry-after")), "HTTP 429"), None
        if status >= 500:
            return _Attempt("server_error", parse_retry_after(response.headers.get("retry-after")),
                            f"HTTP {status}"), None
        if status >= 400:
            return _Attempt("client_error", detail=f"HTTP {status}: {response.text[:300]}"), None
        try:
            payload = orjson.loads(response.content)
            content = payload["choices"][0]["message"]["content"]
            if not isinstance(content, str):
                raise TypeError("content is not a string")
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError) as exc:
            return _Attempt("malformed", detail=f"not a chat completion: {type(exc).__name__} {exc}"), None
        return _Attempt("ok"), payload

    def _read_payload(self, payload: dict, body: dict) -> tuple[str, int, int]:
        content = payload["choices"][0]["message"]["content"]
        usage = payload.get("usage") if isinstance(payload.get("usage"), dict) else {}
        prompt_tokens, completion_tokens = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if not isinstance(prompt_tokens, int) or not isinstance(completion_tokens, int):
            # Some servers omit usage; the call was still paid, so book an estimate rather than nothing.
            prompt_tokens = estimate_tokens("".join(m["content"] for m in body["messages"]))
            completion_tokens = estimate_tokens(content)
            log.warning("LLM answer without usage, booking an estimate", model=self.model,
                        prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        return content, prompt_tokens, completion_tokens

    # --- accounting, budget, cache ---

    def _account(self, stage: str, prompt_tokens: int, completion_tokens: int, shares: Shares) -> float:
        nanos = usd_nanos(prompt_tokens, completion_tokens, self.settings.llm_price_prompt_per_mtok,
                          self.settings.llm_price_completion_per_mtok)
        call = PaidCall(stage=stage, model=self.model, prompt_tokens=prompt_tokens,
                        completion_tokens=completion_tokens, usd_nanos=nanos, shares=shares)
        for (taxonomy, vertical), amounts in split_call(call).items():
            labels = {"taxonomy": taxonomy, "vertical": vertical, "stage": stage, "model": self.model}
            LLM_TOKENS.labels(**labels, kind="prompt").inc(amounts["prompt_tokens"])
            LLM_TOKENS.labels(**labels, kind="completion").inc(amounts["completion_tokens"])
            LLM_COST_USD.labels(**labels).inc(amounts["usd_nanos"] / 1e9)
        with self._lock:
            self._local_usd += nanos / 1e9
        if self.redis is not None:
            try:
                record_paid_call(self.redis, call)
            except redis.RedisError as exc:
                log.warning("LLM spend ledger unavailable, spend only in metrics", model=self.model, error=str(exc))
        return nanos / 1e9

    def spent_usd(self) -> float:
        """Spend so far on the ledger (every process), or this process's own while Redis is down."""
        if self.redis is not None:
            try:
                return read_llm_spend(self.redis).usd
            except redis.RedisError:
                pass
        with self._lock:
            return self._local_usd

    def _check_budget(self, stage: str) -> None:
        budget = self.settings.llm_budget_usd
        if budget is None:
            return
        spent = self.spent_usd()
        if spent >= budget:
            LLM_BUDGET_STOPS.labels(stage=stage, model=self.model).inc()
            log.warning("LLM budget reached, no more calls", model=self.model, stage=stage, spent_usd=spent,
                        budget_usd=budget)
            raise LlmBudgetExhausted(f"spent ${spent:.4f} of the ${budget:.4f} budget (LLM_BUDGET_USD)")

    def _cached(self, redis_key: str, parse_content: Callable[[str], Any]) -> Completion | None:
        raw = self.cache.get_many([redis_key])[0]
        if raw is None:
            return None
        content = raw.decode()
        try:
            value = parse_content(content)
        except MalformedAnswer:
            return None  # cached under an older parser: pay once more rather than serve garbage
        return Completion(content=content, value=value, prompt_tokens=0, completion_tokens=0, usd=0.0,
                          cached=True, attempts=0)


def build_llm_client(settings: LlmSettings, redis_client: redis.Redis | None,
                     cache_client: redis.Redis | None = None) -> LlmClient | None:
    """The configured client, or None when no endpoint is configured (tier 1 only)."""
    return LlmClient(settings, redis_client, cache_client=cache_client) if settings.llm_base_url else None
