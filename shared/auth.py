"""API keys per client: hashed in Redis, bound to a tenant, scopes and a data scope; rate limits.

A key reads ``ik_<key id>_<secret>``. Redis keeps only sha256(secret) next to the key's record,
so a Redis dump does not leak usable keys; the secret is compared in constant time. The key id
is public (logs, the admin list) and is what revocation and rate limits refer to.

A key's data scope (account ids and/or platforms) is what its tenant may see at all: the query
API puts it into every vector store filter (see SearchFilter.tenant_*), never filters afterwards.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import time
from enum import StrEnum

import redis
from pydantic import BaseModel, ConfigDict, Field

KEY_PREFIX = "ik"
_KEY_RECORD = "apikey:{key_id}"
_KEY_INDEX = "apikeys"
_MAX_CACHED_KEYS = 10_000
_RATE_COUNTER = "ratelimit:{key_id}:{window}"
_KEY_SHAPE = re.compile(r"^ik_([0-9a-f]{12})_([A-Za-z0-9_-]{20,100})$")
_UNITS = {"s": 1, "sec": 1, "second": 1, "min": 60, "minute": 60, "h": 3600, "hour": 3600, "day": 86400}


class Scope(StrEnum):
    search = "search"  # posts, accounts, taxonomies
    feedback = "feedback"  # label corrections
    status = "status"  # pipeline status
    admin = "admin"  # operators: search a non-active index version (replay canaries)


class InvalidKey(Exception):
    """Missing, malformed, unknown, revoked or wrong: the caller answers 401 without saying which."""


class RateLimit(BaseModel):
    model_config = ConfigDict(frozen=True)

    requests: int = Field(ge=1, le=1_000_000)
    per_seconds: int = Field(ge=1, le=86_400)

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """ "60/min", "10/s", "1000/hour", "5000/day". """
        match = re.fullmatch(r"\s*(\d+)\s*/\s*([a-z]+)\s*", text.lower())
        if not match or match.group(2) not in _UNITS:
            raise ValueError(f"rate {text!r}: expected N/s, N/min, N/hour or N/day")
        return cls(requests=int(match.group(1)), per_seconds=_UNITS[match.group(2)])

    def __str__(self) -> str:
        unit = {1: "s", 60: "min", 3600: "hour", 86400: "day"}.get(self.per_seconds)
        return f"{self.requests}/{unit}" if unit else f"{self.requests}/{self.per_seconds}s"


class DataScope(BaseModel):
    """What a tenant may see; None means no restriction on that dimension."""

    model_config = ConfigDict(frozen=True)

    account_ids: list[int] | None = Field(None, min_length=1)
    platforms: list[str] | None = Field(None, min_length=1)

    def is_unrestricted(self) -> bool:
        return self.account_ids is None and self.platforms is None


class ApiKeyRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    key_id: str
    tenant: str
    scopes: list[Scope]
    data_scope: DataScope = DataScope()
    rate: RateLimit
    label: str | None = None
    secret_sha256: str
    created_at_ms: int
    revoked_at_ms: int | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at_ms is not None


class IssuedKey(BaseModel):
    key: str = Field(description="Shown once; only its hash is stored.")
    record: ApiKeyRecord


class RateDecision(BaseModel):
    allowed: bool
    limit: int
    remaining: int
    retry_after_s: int


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_key(presented: str) -> tuple[str, str]:
    match = _KEY_SHAPE.match(presented.strip())
    if match is None:
        raise InvalidKey("malformed API key")
    return match.group(1), match.group(2)


class ApiKeyStore:
    def __init__(self, client: redis.Redis, cache_s: float = 0.0) -> None:
        """cache_s: how long a key record read from Redis is reused in this process. Every search
        otherwise pays a Redis round trip for it; the price is that a revocation made elsewhere (the
        admin CLI, another replica) takes effect within cache_s."""
        self.client = client
        self.cache_s = cache_s
        self._records: dict[str, tuple[float, ApiKeyRecord | None]] = {}

    def create(self, tenant: str, scopes: list[Scope], rate: RateLimit, data_scope: DataScope = DataScope(),
               label: str | None = None) -> IssuedKey:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", tenant):
            raise ValueError(f"tenant {tenant!r}: use 1-64 letters, digits, '_', '.', '-'")
        if not scopes:
            raise ValueError("a key needs at least one scope")
        key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        record = ApiKeyRecord(key_id=key_id, tenant=tenant, scopes=sorted(set(scopes)), data_scope=data_scope,
                              rate=rate, label=label, secret_sha256=_sha256(secret),
                              created_at_ms=int(time.time() * 1000))
        with self.client.pipeline(transaction=True) as pipe:
            pipe.set(_KEY_RECORD.format(key_id=key_id), record.model_dump_json())
            pipe.sadd(_KEY_INDEX, key_id)
            pipe.execute()
        return IssuedKey(key=f"{KEY_PREFIX}_{key_id}_{secret}", record=record)

    def get(self, key_id: str) -> ApiKeyRecord | None:
        raw = self.client.get(_KEY_RECORD.format(key_id=key_id))
        return ApiKeyRecord.model_validate_json(raw) if raw else None

    def revoke(self, key_id: str) -> ApiKeyRecord | None:
        """Revoked keys stay listed (who had access, until when) but never authenticate again."""
        record = self.get(key_id)
        if record is None:
            return None
        if not record.revoked:
            record = record.model_copy(update={"revoked_at_ms": int(time.time() * 1000)})
            self.client.set(_KEY_RECORD.format(key_id=key_id), record.model_dump_json())
        self._records.pop(key_id, None)
        return record

    def list(self) -> list[ApiKeyRecord]:
        ids = sorted(k.decode() if isinstance(k, bytes) else k for k in self.client.smembers(_KEY_INDEX))
        records = [self.get(key_id) for key_id in ids]
        return sorted((r for r in records if r is not None), key=lambda r: r.created_at_ms)

    def authenticate(self, presented: str) -> ApiKeyRecord:
        """The key's record, or InvalidKey. Raises redis.RedisError when Redis is down."""
        key_id, secret = parse_key(presented)
        record = self._recent(key_id)
        expected = record.secret_sha256 if record else _sha256("never-matches")
        # Compared even for unknown ids, so timing does not tell which key ids exist.
        if not hmac.compare_digest(_sha256(secret), expected) or record is None or record.revoked:
            raise InvalidKey("unknown or revoked API key")
        return record


    def _recent(self, key_id: str) -> ApiKeyRecord | None:
        if self.cache_s <= 0:
            return self.get(key_id)
        now = time.monotonic()
        cached = self._records.get(key_id)
        if cached is not None and now - cached[0] < self.cache_s:
            return cached[1]
        record = self.get(key_id)
        if len(self._records) >= _MAX_CACHED_KEYS:  # unknown ids are cached too: bound the memory
            self._records.clear()
        self._records[key_id] = (now, record)
        return record


# INCR and, for a new window's counter, its expiry, in one command: one round trip and no
# MULTI/EXEC around it (the script runs atomically in Redis).
_HIT_WINDOW = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""


class RateLimiter:
    """Fixed windows per key in Redis: simple, shared by every API replica, one round trip.

    A burst can reach twice the limit across a window boundary; acceptable for fair-use limits.
    """

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._hit_window = client.register_script(_HIT_WINDOW)

    def hit(self, key_id: str, rate: RateLimit, now: float | None = None) -> RateDecision:
        now = time.time() if now is None else now
        window = int(now // rate.per_seconds)
        counter = _RATE_COUNTER.format(key_id=key_id, window=window)
        count = int(self._hit_window(keys=[counter], args=[rate.per_seconds + 1]))
        retry_after = max(1, math.ceil((window + 1) * rate.per_seconds - now))
        return RateDecision(allowed=count <= rate.requests, limit=rate.requests,
                            remaining=max(0, rate.requests - count), retry_after_s=retry_after)
