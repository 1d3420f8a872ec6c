"""What vertical classification costs: the share of posts tier 1 sends to an LLM, the modelled
dollars per 1,000 posts, and the cache hit rate of a second pass (a replay).

    python -m bench.classification [--scale medium] [--sample 4000]

Runs on its own (no stack): the viable posts of the demo seed (the same rules as the viability
service), a random sample of them embedded with the real model, tier 1 over every enabled
taxonomy, then tier 2 through the real client (batching, Redis cache, spend ledger) against the
test LLM server (no paid endpoint here). Tokens are counted on the exact requests and answers
with the embedding model's WordPiece tokenizer, a stand-in for the LLM's own; dollars use the
LLM_PRICE_* settings. The field figure for comparison: a 70B model on every post cost $4.50 per
1,000 posts. Writes bench/results/<date>-classification.json.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import orjson
import redis

from demo.generator import generate
from services.classifier.core import PostClassifier
from services.classifier.llm_tier import LlmVerticalClassifier
from services.viability.core import ViabilityRules
from shared.classification.labelling import TierOneLabeller
from shared.classification.taxonomy import TaxonomyCatalog
from shared.config import LlmSettings, ModelSettings
from shared.embedding import default_model_dir, load_text_embedder
from shared.events import AccountFields, EmbeddedPostUpsert, PostRecord, PostUpsert, SourcePosition
from shared.llm import LlmClient
from shared.spend import read_llm_spend
from tests.support.fake_llm import FakeLlmServer, keyword_answerer
from tests.support.redis_server import private_redis

RESULTS_DIR = Path(__file__).resolve().parent / "results"
FIELD_USD_PER_1000 = 4.5  # 70B managed endpoint, every post: $2,500 / 550k posts
DAY_MS = 86_400_000


def viable_sample(scale: str, sample: int, anchor: datetime, seed: int = 11) -> list[PostRecord]:
    """The posts the viability service would forward for ``scale``, then ``sample`` of them at random."""
    rules, now_ms = ViabilityRules(), int(anchor.timestamp() * 1000)
    accounts, stream = generate(scale, anchor=anchor)
    followers = {a.id: a.followers for a in accounts}
    by_account: dict[int, list] = defaultdict(list)
    for post in stream:
        by_account[post.account_id].append(post)
    viable = []
    for account_id, posts in by_account.items():
        latest = max(int(p.published_at.replace(tzinfo=timezone.utc).timestamp() * 1000) for p in posts)
        if (followers[account_id] >= rules.min_followers and len(posts) >= rules.min_posts
                and latest >= now_ms - rules.active_within_days * DAY_MS):
            recent = sorted(posts, key=lambda p: p.published_at, reverse=True)[:rules.max_posts_per_account]
            viable += recent
    chosen = random.Random(seed).sample(viable, min(sample, len(viable)))
    print(f"{scale}: {len(viable)} viable posts, sampled {len(chosen)}")
    return [PostRecord(id=p.id, account_id=p.account_id, platform=p.platform, title=p.title,
                       description=p.description, published_at=int(p.published_at.timestamp() * 1000))
            for p in chosen]


def embedded(posts: list[PostRecord], embed) -> list[EmbeddedPostUpsert]:
    vectors = embed([p.embedding_text() for p in posts])
    position = SourcePosition(ts_ms=0)
    return [EmbeddedPostUpsert.build(PostUpsert(post=p, account=AccountFields(handle="-"), position=position),
                                     "bench", v) for p, v in zip(posts, vectors, strict=True)]


def wordpiece_tokens(server: FakeLlmServer) -> tuple[int, int]:
    """Prompt and completion tokens of every request the server answered, by the WordPiece tokenizer."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(default_model_dir() / "tokenizer.json"))
    tokenizer.no_truncation()
    prompt = completion = 0
    for request in server.requests:
        if request.status != 200 or request.body is None:
            continue
        prompt += sum(len(tokenizer.encode(m["content"]).ids) for m in request.body["messages"])
        completion += len(tokenizer.encode(keyword_answerer(request.body)).ids)  # what it answered (deterministic)
    return prompt, completion


def run(scale: str, sample: int) -> dict:
    anchor = datetime.now(timezone.utc).replace(microsecond=0)
    model = ModelSettings()
    embedder = load_text_embedder(model.model_cache_dir)
    catalog = TaxonomyCatalog.load()
    events = embedded(viable_sample(scale, sample, anchor), embedder.embed)
    labeller = TierOneLabeller(catalog, embedder.embed)
    with tempfile.TemporaryDirectory() as root, private_redis(Path(root)) as url, FakeLlmServer() as server:
        settings = LlmSettings(llm_base_url=server.base_url, llm_model="bench-judge")
        client_redis = redis.Redis.from_url(url)
        with LlmClient(settings, client_redis) as client:
            classifier = PostClassifier(labeller, {t.name: t for t in catalog.all()}, LlmVerticalClassifier(client),
                                        tier_two_model=settings.llm_model)
            started = time.perf_counter()
            first = classifier.process(events)
            first_s = time.perf_counter() - started
            first_requests = len(server.requests)
            prompt_tokens, completion_tokens = wordpiece_tokens(server)
            started = time.perf_counter()
            second = classifier.process(events)
            second_s = time.perf_counter() - started
            second_requests = len(server.requests) - first_requests
        ledger = read_llm_spend(client_redis)
    posts = len(events)
    sent = sum(first.uncertain.values())
    usd = (prompt_tokens * settings.llm_price_prompt_per_mtok
           + completion_tokens * settings.llm_price_completion_per_mtok) / 1_000_000
    answered_again = sum(1 for _ in second.opinions)
    result = {
        "scale": scale, "posts": posts, "taxonomies": [t.name for t in catalog.all()],
        "sent_to_tier2": {name: count for name, count in first.uncertain.items()},
        "share_sent_to_tier2": {name: round(count / posts, 4) for name, count in first.uncertain.items()},
        "tier2_requests": first_requests, "posts_per_request": settings.llm_batch_size,
        "tokens": {"prompt": prompt_tokens, "completion": completion_tokens, "counted_with": "MiniLM WordPiece"},
        "prices_per_mtok": {"prompt": settings.llm_price_prompt_per_mtok,
                            "completion": settings.llm_price_completion_per_mtok},
        "modelled_usd_per_1000_posts": round(usd / posts * 1000, 4),
        "field_usd_per_1000_posts": FIELD_USD_PER_1000,
        "ledger_usd_first_pass": round(ledger.usd, 6),
        "second_pass": {"requests": second_requests, "opinions": answered_again,
                        "cache_hit_rate": round(1 - second_requests / max(first_requests, 1), 4)},
        "seconds": {"first_pass": round(first_s, 2), "second_pass": round(second_s, 2)},
        "tier1_label_share": _label_share(labeller, events),
    }
    return result


def _label_share(labeller: TierOneLabeller, events: list[EmbeddedPostUpsert]) -> dict[str, float]:
    """Share of posts with at least one tier-1 label, per taxonomy."""
    results = labeller.results(np.stack([e.vector() for e in events]))
    counts: dict[str, int] = defaultdict(int)
    for per_post in results:
        for result in per_post:
            counts[result.taxonomy] += bool(result.labels)
    return {name: round(count / len(events), 4) for name, count in counts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", default="medium", choices=["tiny", "small", "medium", "large"])
    parser.add_argument("--sample", type=int, default=4000, help="viable posts classified (embedding is the slow part)")
    args = parser.parse_args()
    result = run(args.scale, args.sample)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{datetime.now(timezone.utc):%Y-%m-%d}-classification.json"
    path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    print(f"written to {path}")


if __name__ == "__main__":
    main()
