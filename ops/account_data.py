"""A labelled account-search set from WordNet 3.0 (Debian package ``wordnet-base``), not the demo generator.

    .venv/bin/python -m ops.account_data [--out eval/data/wordnet_accounts.jsonl]

Each "account" posts about a known topic of WordNet's noun hierarchy; each "post" is one synset
(title: its words; description: its gloss). The hierarchy gives both kinds of creator the search
must tell apart:

- an **area** is a node with many descendants (e.g. dog, bird, vegetable, musical instrument);
- a **specialist** posts only about one narrow topic inside an area (a node with 25-80 descendants);
- a **generalist** posts about its whole area, a little of each specialist's topic included.

A fifth of each account's posts (at least 3) are held out: their titles are the queries, and the
right answer is the account that posted them. Everything is drawn with a fixed seed, so the same
package gives the same file. See eval/README.md for the licence (WordNet 3.0, redistributable with
its notice).
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson

from ops.eval_data import DatasetError, fetch_pinned
from shared.config import PROJECT_ROOT

WORDNET_PACKAGE = "wordnet-base=1:3.0-37"
WORDNET_DEB = "wordnet-base_1%3a3.0-37_all.deb"
WORDNET_SHA256 = "61060d960f9ada8fa120872312eccd3ecebfbab8c4579e4f5a74e1cf67620752"
DATA_NOUN = "./usr/share/wordnet/data.noun"
DEFAULT_CACHE = PROJECT_ROOT / ".dev" / "datasets"
DEFAULT_OUT = PROJECT_ROOT / "eval" / "data" / "wordnet_accounts.jsonl"

AREA_SIZE = (300, 2500)  # descendants of an area: broad enough for three specialists and a generalist
TOPIC_SIZE = (25, 80)  # descendants of a specialist's topic
SPECIALISTS_PER_AREA = 3
SPECIALIST_POSTS = 40
GENERALIST_POSTS = 120
GENERALIST_SHARE_OF_TOPICS = 0.15  # of each specialist topic's synsets, posted by the area's generalist
QUERY_SHARE = 0.2
MIN_QUERIES = 3
MAX_GLOSS_CHARS = 220


@dataclass(frozen=True)
class Synset:
    offset: str
    words: tuple[str, ...]
    gloss: str
    children: tuple[str, ...]  # hyponyms and instances

    @property
    def title(self) -> str:
        return ", ".join(w.replace("_", " ") for w in self.words[:3])


def parse_data_noun(lines: Iterable[str]) -> dict[str, Synset]:
    """WordNet's data.noun (wndb(5WN)): offset, lex file, type, word count (hex), words, pointers | gloss."""
    synsets = {}
    for line in lines:
        if line.startswith("  ") or "|" not in line:
            continue  # the licence header
        fields, gloss = line.split("|", 1)
        parts = fields.split()
        count = int(parts[3], 16)
        words = tuple(parts[4 + 2 * i] for i in range(count))
        pos = 4 + 2 * count
        pointers = int(parts[pos])
        children = []
        for i in range(pointers):
            symbol, target, target_pos = parts[pos + 1 + 4 * i: pos + 4 + 4 * i]
            if symbol in ("~", "~i") and target_pos == "n":
                children.append(target)
        words = tuple(w.split("(")[0] for w in words)  # adjective markers like "(p)" are not words
        synsets[parts[0]] = Synset(parts[0], words, _first_sentence(gloss), tuple(children))
    return synsets


def _first_sentence(gloss: str) -> str:
    """The definition without its quoted examples, cut to a post's length."""
    text = gloss.strip().split('; "')[0].strip().rstrip(";")
    if len(text) > MAX_GLOSS_CHARS:
        text = text[:MAX_GLOSS_CHARS].rsplit(" ", 1)[0] + "…"
    return text


def descendants(synsets: dict[str, Synset], root: str) -> list[str]:
    """Every synset below root (not root itself), in a stable order."""
    seen: dict[str, None] = {}
    stack = list(reversed(synsets[root].children))
    while stack:
        node = stack.pop()
        if node in seen or node not in synsets:
            continue
        seen[node] = None
        stack.extend(reversed(synsets[node].children))
    return list(seen)


def build_accounts(synsets: dict[str, Synset], areas: int, seed: int) -> list[dict]:
    """Rows {account, breadth, area, topic, title, description, query}: see the module docstring."""
    rng = random.Random(seed)
    below = {offset: descendants(synsets, offset) for offset in synsets if synsets[offset].children}
    candidates = sorted(o for o, d in below.items() if AREA_SIZE[0] <= len(d) <= AREA_SIZE[1])
    rng.shuffle(candidates)
    used: set[str] = set()  # synsets already inside a chosen area: areas never overlap
    rows: list[dict] = []
    for area in candidates:
        if len(rows) and len({r["area"] for r in rows}) >= areas:
            break
        members = set(below[area])
        name_taken = synsets[area].words[0].replace("_", " ") in {r["area"] for r in rows}
        if area in used or members & used or name_taken:
            continue
        topics = _topics(below, members, rng)
        if len(topics) < SPECIALISTS_PER_AREA:
            continue
        used |= members | {area}
        rows += _area_rows(synsets, below, area, topics, rng)
    return rows


def _topics(below: dict[str, list[str]], members: set[str], rng: random.Random) -> list[str]:
    """SPECIALISTS_PER_AREA non-overlapping narrow topics inside an area."""
    inside = sorted(o for o in members if o in below and TOPIC_SIZE[0] <= len(below[o]) <= TOPIC_SIZE[1])
    rng.shuffle(inside)
    chosen: list[str] = []
    taken: set[str] = set()
    for topic in inside:
        span = set(below[topic]) | {topic}
        if not span & taken:
            chosen.append(topic)
            taken |= span
        if len(chosen) == SPECIALISTS_PER_AREA:
            break
    return chosen


def _area_rows(synsets: dict[str, Synset], below: dict[str, list[str]], area: str, topics: list[str],
               rng: random.Random) -> list[dict]:
    area_name = synsets[area].words[0].replace("_", " ")
    rows: list[dict] = []
    generalist_posts: list[str] = []
    in_topics: set[str] = set()
    for topic in topics:
        span = [o for o in below[topic]]
        in_topics |= set(span) | {topic}
        rng.shuffle(span)
        shared = max(2, round(GENERALIST_SHARE_OF_TOPICS * len(span)))
        generalist_posts += span[:shared]  # the generalist covers the specialist's topic too, a little
        topic_name = synsets[topic].words[0].replace("_", " ")
        account = f"{area_name} / {topic_name}"
        rows += _account_rows(synsets, span[shared:][:SPECIALIST_POSTS], account, "specialist", area_name, topic_name, rng)
    rest = [o for o in below[area] if o not in in_topics]
    rng.shuffle(rest)
    generalist_posts += rest[: GENERALIST_POSTS - len(generalist_posts)]
    rows += _account_rows(synsets, generalist_posts, f"{area_name} (all)", "generalist", area_name, area_name, rng)
    return rows


def _account_rows(synsets: dict[str, Synset], posts: list[str], account: str, breadth: str, area: str, topic: str,
                  rng: random.Random) -> list[dict]:
    posts = sorted(posts)
    rng.shuffle(posts)
    held_out = max(MIN_QUERIES, round(QUERY_SHARE * len(posts)))
    return [{"account": account, "breadth": breadth, "area": area, "topic": topic,
             "title": synsets[o].title, "description": synsets[o].gloss, "query": i < held_out}
            for i, o in enumerate(posts)]


def fetch_deb(cache_dir: Path) -> Path:
    """The pinned .deb from the cache, or downloaded by apt into it."""
    return fetch_pinned(cache_dir, WORDNET_DEB, WORDNET_SHA256, ["apt-get", "download", WORDNET_PACKAGE],
                        f"{WORDNET_PACKAGE} with apt-get")


def data_noun_lines(deb: Path) -> list[str]:
    tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True)
    done = subprocess.run(["tar", "-xO", DATA_NOUN], input=tar.stdout, capture_output=True, check=True)
    return done.stdout.decode("utf-8").splitlines()


def build(out: Path = DEFAULT_OUT, areas: int = 12, seed: int = 15, cache_dir: Path = DEFAULT_CACHE) -> Path:
    rows = build_accounts(parse_data_noun(data_noun_lines(fetch_deb(cache_dir))), areas, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.account_data", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSONL to write (default: %(default)s)")
    parser.add_argument("--areas", type=int, default=12, help="areas, each 3 specialists + 1 generalist (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=15, help="sampling seed (default: %(default)s)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the .deb is kept (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        path = build(args.out, args.areas, args.seed, args.cache)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
