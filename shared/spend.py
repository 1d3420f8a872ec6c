"""LLM spend so far, in Redis, so the status page can show it across services and restarts.

Classifier and summarizer (later services) call record_llm_call after every paid call; the query
API's status reads totals. Amounts are kept in micro-dollars (integers: exact under HINCRBY).
"""

from __future__ import annotations

import redis
from pydantic import BaseModel, Field

SPEND_KEY = "llm:spend"  # hash: "<model>:usd_micros" and "<model>:calls"


class ModelSpend(BaseModel):
    model: str
    usd: float
    calls: int


class LlmSpend(BaseModel):
    usd: float = Field(description="Total spend so far, US dollars.")
    calls: int
    by_model: list[ModelSpend]


def record_llm_call(client: redis.Redis, model: str, usd: float) -> None:
    with client.pipeline(transaction=True) as pipe:
        pipe.hincrby(SPEND_KEY, f"{model}:usd_micros", round(usd * 1_000_000))
        pipe.hincrby(SPEND_KEY, f"{model}:calls", 1)
        pipe.execute()


def read_llm_spend(client: redis.Redis) -> LlmSpend:
    fields = {k.decode(): int(v) for k, v in client.hgetall(SPEND_KEY).items()}
    models = sorted({key.rsplit(":", 1)[0] for key in fields})
    by_model = [ModelSpend(model=m, usd=fields.get(f"{m}:usd_micros", 0) / 1_000_000,
                           calls=fields.get(f"{m}:calls", 0)) for m in models]
    return LlmSpend(usd=sum(m.usd for m in by_model), calls=sum(m.calls for m in by_model), by_model=by_model)
