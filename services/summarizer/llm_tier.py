"""The optional LLM tier of account summaries: map-reduce over a bounded sample, under a token budget.

Map: per theme (the extractive summary's representatives), the posts closest to it, each cut to its
share of the budget, become one or two sentences about what that theme is. Reduce: those sentences
and the extractive facts (verticals, words, cadence, reach) become a short profile. An account
therefore costs (themes + 1) requests and at most SUMMARIZER_LLM_TOKEN_BUDGET prompt tokens, however
many posts it has. Calls go through shared.llm (bounded adaptive concurrency, retries with backoff
inside a deadline, cost booked to the account's verticals, answers cached by prompt hash), and any
failure leaves the extractive summary in place: the LLM adds prose, never the facts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from services.summarizer.core import AccountSummary, PostView
from shared.events import content_hash
from shared.llm import LlmClient, LlmError, Shares, estimate_tokens, truncate_to_tokens
from shared.logging import get_logger
from shared.spend import NO_VERTICAL

log = get_logger("summarizer.llm")
STAGE = "summarize"
MAP_SHARE = 0.75  # of the prompt budget: the posts; the rest is the reduce step's facts and themes
INSTRUCTIONS_TOKENS = 120  # what the fixed instructions of a prompt take, roughly
MAP_MAX_TOKENS = 120
REDUCE_MAX_TOKENS = 300
RULES = ("Use only what the input says. Do not invent names, numbers, places, products or facts. "
         "If the input does not say something, leave it out. Plain prose, no lists, no markdown.")


@dataclass(frozen=True)
class LlmSummary:
    text: str
    model: str
    requests: int
    cached_requests: int
    usd: float
    prompt_tokens: int


class LlmSummaryWriter:
    def __init__(self, client: LlmClient, token_budget: int) -> None:
        self.client = client
        self.token_budget = token_budget

    def write(self, summary: AccountSummary, samples: Sequence[Sequence[PostView]]) -> LlmSummary | None:
        """The profile paragraph, or None (logged) when the LLM tier cannot answer."""
        shares = self._shares(summary)
        deadline = self.client.deadline()
        try:
            themes = [self._complete(map_messages(summary, sample, i, self._post_budget(samples)), shares, deadline,
                                     MAP_MAX_TOKENS) for i, sample in enumerate(samples)]
            profile = self._complete(reduce_messages(summary, [t.content.strip() for t in themes]), shares, deadline,
                                     REDUCE_MAX_TOKENS)
        except LlmError as exc:
            log.warning("LLM summary failed, keeping the extractive one", account_id=summary.account.account_id,
                        error=str(exc)[:300])
            return None
        calls = [*themes, profile]
        return LlmSummary(text=profile.content.strip(), model=self.client.model, requests=len(calls),
                          cached_requests=sum(c.cached for c in calls), usd=sum(c.usd for c in calls),
                          prompt_tokens=sum(c.prompt_tokens for c in calls))

    def _post_budget(self, samples: Sequence[Sequence[PostView]]) -> int:
        """Tokens per post so that every map prompt together stays within the map share of the budget."""
        posts = max(1, sum(len(s) for s in samples))
        per_prompt_overhead = INSTRUCTIONS_TOKENS * max(1, len(samples))
        return max(16, int((self.token_budget * MAP_SHARE - per_prompt_overhead) / posts))

    def _complete(self, messages: list[dict[str, str]], shares: Shares, deadline: float, max_tokens: int):
        return self.client.complete(messages, stage=STAGE, cache_key=content_hash(orjson.dumps(messages).decode()),
                                    shares=lambda _: shares, max_tokens=max_tokens, deadline=deadline)

    @staticmethod
    def _shares(summary: AccountSummary) -> Shares:
        """Book the account's cost to its verticals, by their share of its posts."""
        labels = {(v.taxonomy, v.vertical): v.share for v in summary.verticals}
        total = sum(labels.values())
        return {k: v / total for k, v in labels.items()} if total else {(NO_VERTICAL, NO_VERTICAL): 1.0}


def map_messages(summary: AccountSummary, sample: Sequence[PostView], theme: int, post_tokens: int) -> list[dict[str, str]]:
    share = summary.representatives[theme].theme_share if theme < len(summary.representatives) else 0.0
    posts = [truncate_to_tokens(p.text, post_tokens) for p in sample]
    return [
        {"role": "system", "content": "You are given posts of one creator that share a theme. In one or two "
                                      "sentences, say what this theme of posts is about. " + RULES},
        {"role": "user", "content": orjson.dumps({"theme_share_of_posts": share, "posts": posts}).decode()},
    ]


def reduce_messages(summary: AccountSummary, themes: Sequence[str]) -> list[dict[str, str]]:
    a, c, r = summary.account, summary.cadence, summary.reach
    facts = {
        "creator": a.display_name or a.handle, "platform": a.platform, "followers": a.followers,
        "posts_summarized": summary.posts, "posts_per_week": c.posts_per_week,
        "verticals": {v.vertical: v.share for v in summary.verticals[:6]},
        "distinctive_words": [k.term for k in summary.keywords], "hashtags": [h.term for h in summary.hashtags],
        "median_views": r.median_views, "engagement_rate": r.engagement_rate,
        "themes": [{"share_of_posts": rep.theme_share, "about": text}
                   for rep, text in zip(summary.representatives, themes, strict=False)],
    }
    return [
        {"role": "system", "content": "Write a profile of this creator in three or four sentences for a brand "
                                      "looking for partners: what they post about, for whom, how often and how "
                                      "it performs. " + RULES},
        {"role": "user", "content": orjson.dumps(facts).decode()},
    ]


def prompt_tokens(messages: Sequence[dict[str, str]]) -> int:
    return sum(estimate_tokens(m["content"]) for m in messages)
