"""What tier 2 would cost for a set of posts, before anything is sent: for `make replay --dry-run`.

Tier 1 is free and deterministic, so it is simply run: the posts it is unsure about are exactly
the ones a replay would send to the LLM. Of those, the answers already in the Redis cache (same
model, prompt version, taxonomy fingerprint and text) cost nothing; the rest are priced from the
prompt that would be sent (system prompt per request, each post cut to its token budget) and a
modelled answer length, at the configured prices. Tokens are estimated at ~4 characters per token,
as the client does when an endpoint reports no usage.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from services.classifier.core import TierOne, latest_upserts
from services.classifier.llm_tier import STAGE, prompt_fingerprint, system_prompt
from shared.classification.taxonomy import Taxonomy
from shared.config import LlmSettings
from shared.events import EmbeddedPostUpsert, content_hash
from shared.llm import LlmAnswerCache, answer_cache_key, estimate_tokens, truncate_to_tokens

ANSWER_TOKENS_PER_POST = 20  # {"id": n, "labels": [{"vertical": "...", "confidence": 0.9}]}
PROMPT_TOKENS_PER_POST = 8  # the JSON around each post's text in the request


@dataclass
class TierTwoEstimate:
    posts: int = 0
    unsure: dict[str, int] = field(default_factory=dict)  # taxonomy -> posts tier 1 is unsure about
    cached: int = 0  # of those, answers already in the cache
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usd: float = 0.0

    @property
    def to_ask(self) -> int:
        return sum(self.unsure.values()) - self.cached

    def render(self, settings: LlmSettings) -> str:
        state = f"model {settings.llm_model}" if settings.llm_base_url else "off (no LLM_BASE_URL): if turned on"
        unsure = ", ".join(f"{name} {count:,}" for name, count in self.unsure.items()) or "none"
        return (f"  tier 2 (LLM), {state}:\n"
                f"    unsure posts of {self.posts:,}: {unsure}; cached answers {self.cached:,}, to ask {self.to_ask:,}\n"
                f"    requests {self.requests:,}, tokens {self.prompt_tokens:,} prompt + {self.completion_tokens:,} "
                f"completion, ${self.usd:,.2f} at ${settings.llm_price_prompt_per_mtok}/"
                f"${settings.llm_price_completion_per_mtok} per 1M tokens")


def estimate_tier_two(events: Sequence[EmbeddedPostUpsert], tier_one: TierOne, taxonomies: Mapping[str, Taxonomy],
                      settings: LlmSettings, cache: LlmAnswerCache, batch: int = 2048) -> TierTwoEstimate:
    upserts = latest_upserts(events)
    estimate = TierTwoEstimate(posts=len(upserts))
    for start in range(0, len(upserts), batch):  # tier 1 in slices: bounded memory on big topics
        chunk = upserts[start:start + batch]
        results = tier_one.results(np.stack([e.vector() for e in chunk]))
        for name, taxonomy in taxonomies.items():
            unsure = [e for e, per_post in zip(chunk, results, strict=True)
                      if any(r.taxonomy == name and r.uncertain for r in per_post)]
            estimate.unsure[name] = estimate.unsure.get(name, 0) + len(unsure)
            _price(estimate, taxonomy, unsure, settings, cache)
    return estimate


def _price(estimate: TierTwoEstimate, taxonomy: Taxonomy, unsure: list[EmbeddedPostUpsert], settings: LlmSettings,
           cache: LlmAnswerCache) -> None:
    if not unsure:
        return
    fingerprint = prompt_fingerprint(taxonomy)
    texts = [e.post.embedding_text() for e in unsure]
    keys = [answer_cache_key(STAGE, settings.llm_model, settings.llm_prompt_version, f"{fingerprint}:{content_hash(t)}")
            for t in texts]
    found = cache.get_many(keys)
    misses = [t for t, hit in zip(texts, found, strict=True) if hit is None]
    estimate.cached += len(texts) - len(misses)
    if not misses:
        return
    requests = math.ceil(len(misses) / settings.llm_batch_size)
    posts_tokens = sum(estimate_tokens(truncate_to_tokens(t, settings.llm_post_token_budget)) + PROMPT_TOKENS_PER_POST
                       for t in misses)
    prompt = requests * estimate_tokens(system_prompt(taxonomy)) + posts_tokens
    completion = len(misses) * ANSWER_TOKENS_PER_POST
    estimate.requests += requests
    estimate.prompt_tokens += prompt
    estimate.completion_tokens += completion
    estimate.usd += (prompt * settings.llm_price_prompt_per_mtok
                     + completion * settings.llm_price_completion_per_mtok) / 1_000_000
