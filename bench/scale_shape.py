"""What a seed asks of the pipeline, from the generator alone (no MariaDB, no model):

    python -m bench.scale_shape [--scale large]

Accounts and posts, viable accounts and posts under the default viability rules, distinct texts the
model must embed once, and the largest accounts. With a model rate (texts/s) measured by benchmark 7
this is the model's time at a scale that has not been seeded here (docs/scaling.md).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from demo.generator import generate
from demo.seed import default_anchor
from services.viability.core import ViabilityRules
from shared.events import MAX_TEXT_CHARS, content_hash


@dataclass
class Shape:
    accounts: int = 0
    posts: int = 0
    viable_accounts: int = 0
    viable_posts: int = 0
    distinct_texts: int = 0
    accounts_over_5000_viable_posts: int = 0
    largest_viable_account_posts: int = 0
    _hashes: set[str] = field(default_factory=set, repr=False)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}


def viable_recent(published: list[datetime], followers: int, rules: ViabilityRules, now: datetime) -> int:
    """How many of one account's posts the rules index: none unless the account is viable, else the
    most recent max_posts_per_account (the SQL of ViabilityRules.viable_posts_sql, in Python)."""
    if followers < rules.min_followers or len(published) < rules.min_posts:
        return 0
    if max(published) < now - timedelta(days=rules.active_within_days):
        return 0
    return min(len(published), rules.max_posts_per_account)


def shape_of(accounts: Iterable, posts: Iterable, rules: ViabilityRules, now: datetime) -> Shape:
    """Posts arrive grouped by account (the generator's order)."""
    followers = {a.id: a.followers for a in accounts}
    shape = Shape(accounts=len(followers))
    current, group = None, []

    def close() -> None:
        if current is None:
            return
        kept = viable_recent([p.published_at for p in group], followers.get(current, 0), rules, now)
        if kept:
            shape.viable_accounts += 1
            shape.viable_posts += kept
            shape.largest_viable_account_posts = max(shape.largest_viable_account_posts, kept)
            shape.accounts_over_5000_viable_posts += kept > 5000
            newest = sorted(group, key=lambda p: (p.published_at, p.id), reverse=True)[:kept]
            shape._hashes.update(content_hash(f"{p.title}\n{(p.description or '')[:MAX_TEXT_CHARS]}".strip())
                                 for p in newest)

    for post in posts:
        shape.posts += 1
        if post.account_id != current:
            close()
            current, group = post.account_id, []
        group.append(post)
    close()
    shape.distinct_texts = len(shape._hashes)
    return shape


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_shape", description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="large", choices=["tiny", "small", "medium", "large"])
    args = parser.parse_args(argv)
    anchor = default_anchor()
    accounts, posts = generate(args.scale, anchor=anchor)
    print(json.dumps({"scale": args.scale, **shape_of(accounts, posts, ViabilityRules(), anchor).as_dict()}))


if __name__ == "__main__":
    main()
