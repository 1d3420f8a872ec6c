"""LLM spend so far, in Redis, so the status page and the cost report can show it across services
and restarts.

Two hashes, written together in one transaction per paid call:
- ``llm:spend``: per model totals, ``<model>:usd_nanos|calls|prompt_tokens|completion_tokens``
  (what the status page reads);
- ``llm:spend:by``: the same figures broken down by stage, model, taxonomy and vertical, with
  orjson-encoded ``[stage, model, taxonomy, vertical, measure]`` fields (what ``ops.llm_cost`` reads).

Amounts are integers (nano-dollars, tokens) so HINCRBY keeps them exact. A call that produced labels
in several verticals is split between them (equal shares per post, then per label of that post) by
largest remainders, so the breakdown adds up exactly to the totals.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import orjson
import redis
from pydantic import BaseModel, Field

SPEND_KEY = "llm:spend"  # hash: "<model>:usd_nanos", "<model>:calls", "<model>:*_tokens"
BREAKDOWN_KEY = "llm:spend:by"
NO_VERTICAL = "-"
_MEASURES = ("calls", "prompt_tokens", "completion_tokens", "usd_nanos")


class ModelSpend(BaseModel):
    model: str
    usd: float
    calls: int
    prompt_tokens: int = 0
    completion_tokens: int = 0


class LlmSpend(BaseModel):
    usd: float = Field(description="Total spend so far, US dollars.")
    calls: int
    by_model: list[ModelSpend]


class SpendLine(BaseModel):
    """Spend of one (stage, model, taxonomy, vertical); calls are counted on the line of each call's
    largest share, so they add up to the number of paid calls."""

    stage: str
    model: str
    taxonomy: str
    vertical: str
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usd: float = 0.0


@dataclass(frozen=True)
class PaidCall:
    """What one HTTP call was billed, and whose labels it produced (weights need not sum to 1)."""

    stage: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    usd_nanos: int
    shares: Mapping[tuple[str, str], float]  # (taxonomy, vertical) -> weight


def usd_nanos(prompt_tokens: int, completion_tokens: int, prompt_per_mtok: float, completion_per_mtok: float) -> int:
    # $ per 1M tokens x tokens = micro-dollars; x1000 = nano-dollars, exact for prices with <= 3 decimals.
    return round((prompt_tokens * prompt_per_mtok + completion_tokens * completion_per_mtok) * 1000)


def apportion(total: int, weights: Mapping[tuple[str, str], float]) -> dict[tuple[str, str], int]:
    """Split an integer amount by weights so the parts are integers that add up to ``total``
    (largest remainder method)."""
    keys = sorted(weights)
    weight_sum = sum(weights[k] for k in keys)
    if not keys or weight_sum <= 0:
        raise ValueError("apportion needs at least one positive weight")
    exact = {k: total * weights[k] / weight_sum for k in keys}
    parts = {k: int(exact[k]) for k in keys}
    leftover = total - sum(parts.values())
    by_remainder = sorted(keys, key=lambda k: (exact[k] - parts[k], weights[k]), reverse=True)
    for k in by_remainder[:leftover]:
        parts[k] += 1
    return parts


def split_call(call: PaidCall) -> dict[tuple[str, str], dict[str, int]]:
    """The per-(taxonomy, vertical) amounts of one call, exact to the unit."""
    shares = {k: w for k, w in call.shares.items() if w > 0} or {("-", NO_VERTICAL): 1.0}
    prompt = apportion(call.prompt_tokens, shares)
    completion = apportion(call.completion_tokens, shares)
    usd = apportion(call.usd_nanos, shares)
    largest = max(sorted(shares), key=lambda k: shares[k])
    return {k: {"calls": int(k == largest), "prompt_tokens": prompt[k], "completion_tokens": completion[k],
                "usd_nanos": usd[k]} for k in shares}


def record_paid_call(client: redis.Redis, call: PaidCall) -> None:
    with client.pipeline(transaction=True) as pipe:
        pipe.hincrby(SPEND_KEY, f"{call.model}:usd_nanos", call.usd_nanos)
        pipe.hincrby(SPEND_KEY, f"{call.model}:calls", 1)
        pipe.hincrby(SPEND_KEY, f"{call.model}:prompt_tokens", call.prompt_tokens)
        pipe.hincrby(SPEND_KEY, f"{call.model}:completion_tokens", call.completion_tokens)
        for (taxonomy, vertical), amounts in split_call(call).items():
            for measure, amount in amounts.items():
                if amount:
                    field = orjson.dumps([call.stage, call.model, taxonomy, vertical, measure])
                    pipe.hincrby(BREAKDOWN_KEY, field, amount)
        pipe.execute()


def record_llm_call(client: redis.Redis, model: str, usd: float, *, stage: str = "classify") -> None:
    """A call known only by its dollar cost (no token counts)."""
    record_paid_call(client, PaidCall(stage=stage, model=model, prompt_tokens=0, completion_tokens=0,
                                      usd_nanos=round(usd * 1_000_000_000), shares={}))


def read_llm_spend(client: redis.Redis) -> LlmSpend:
    fields = {k.decode(): int(float(v)) for k, v in client.hgetall(SPEND_KEY).items()}
    models = sorted({key.rsplit(":", 1)[0] for key in fields})

    def usd(m: str) -> float:
        # usd_micros: the ledger's unit before token accounting; still read so old totals count.
        return fields.get(f"{m}:usd_nanos", 0) / 1e9 + fields.get(f"{m}:usd_micros", 0) / 1e6

    by_model = [ModelSpend(model=m, usd=usd(m), calls=fields.get(f"{m}:calls", 0),
                           prompt_tokens=fields.get(f"{m}:prompt_tokens", 0),
                           completion_tokens=fields.get(f"{m}:completion_tokens", 0)) for m in models]
    return LlmSpend(usd=sum(m.usd for m in by_model), calls=sum(m.calls for m in by_model), by_model=by_model)


def read_spend_breakdown(client: redis.Redis) -> list[SpendLine]:
    lines: dict[tuple[str, str, str, str], dict[str, int]] = {}
    for field, value in client.hgetall(BREAKDOWN_KEY).items():
        try:
            stage, model, taxonomy, vertical, measure = orjson.loads(field)
        except (orjson.JSONDecodeError, ValueError):
            continue  # not ours: the hash is only ever written by record_paid_call
        if measure in _MEASURES:
            lines.setdefault((stage, model, taxonomy, vertical), {})[measure] = int(value)
    return [SpendLine(stage=s, model=m, taxonomy=t, vertical=v, calls=a.get("calls", 0),
                      prompt_tokens=a.get("prompt_tokens", 0), completion_tokens=a.get("completion_tokens", 0),
                      usd=a.get("usd_nanos", 0) / 1e9)
            for (s, m, t, v), a in sorted(lines.items())]
