"""Embed a seed's viable texts once, from the generator alone, into the kept embedding cache:

    python -m bench.warm_cache --scale large

The model's time at the large seed is ~25 minutes of both cores (about 196,000 distinct texts at
~140 texts/s), so it is paid once and kept in `.dev/bench-cache/` (the file benchmark 7 loads into
Redis before its stages), apart from the pipeline's measured run. It writes the file every
`--save-every` texts, so an interrupted run resumes where it stopped. Texts the generator's anchor
makes differ from a seed taken later (the hour moved) are embedded by benchmark 7 itself.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import time
from pathlib import Path

import numpy as np

from bench.benchmarks import embedder, embedding_text
from bench.harness import CACHE_DIR, load_npz, log
from bench.scale_shape import viable_recent
from demo.generator import generate
from demo.seed import default_anchor
from services.viability.core import ViabilityRules
from shared.events import content_hash


def viable_texts(scale: str) -> dict[str, str]:
    """Distinct embedding texts of the posts the default viability rules keep, by content hash."""
    anchor = default_anchor()
    accounts, posts = generate(scale, anchor=anchor)
    followers = {a.id: a.followers for a in accounts}
    rules = ViabilityRules()
    texts: dict[str, str] = {}
    group: list = []

    def close() -> None:
        if not group:
            return
        kept = viable_recent([p.published_at for p in group], followers[group[0].account_id], rules, anchor)
        for post in sorted(group, key=lambda p: (p.published_at, p.id), reverse=True)[:kept]:
            text = embedding_text(post.title, post.description)
            texts[content_hash(text)] = text

    for post in posts:
        if group and post.account_id != group[0].account_id:
            close()
            group = []
        group.append(post)
    close()
    return texts


def save(path: Path, known: dict[str, np.ndarray]) -> None:
    """Write what this run knows together with what another writer kept meanwhile. The lock makes
    read-merge-write one step: without it two parts saving at once each dropped the other's last chunk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        known.update({h: v for h, v in load_npz(path).items() if h not in known})
        hashes = sorted(known)
        partial = path.with_suffix(f".{os.getpid()}.partial.npz")
        np.savez(partial, hashes=np.array(hashes), vectors=np.stack([known[h] for h in hashes]).astype("<f4"))
        partial.replace(path)  # never leave a half-written cache behind


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.warm_cache", description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="large", choices=["tiny", "small", "medium", "large"])
    parser.add_argument("--save-every", type=int, default=8192)
    parser.add_argument("--part", default="0/1", help="i/n: embed only the i-th of n disjoint parts (by hash), "
                        "so n single-threaded processes share a busy machine without waiting on each other")
    args = parser.parse_args(argv)
    part, parts = (int(x) for x in args.part.split("/"))
    model = embedder()
    path = CACHE_DIR / f"emb-{hashlib.sha256(model.model_id.encode()).hexdigest()[:12]}.npz"
    known = load_npz(path)
    texts = viable_texts(args.scale)
    missing = [(h, t) for h, t in texts.items() if h not in known and int(h[:8], 16) % parts == part]
    log(f"warm cache {args.scale}: {len(texts)} distinct viable texts, {len(known)} kept, {len(missing)} to embed")
    started, done = time.perf_counter(), 0
    for start in range(0, len(missing), args.save_every):
        chunk = missing[start:start + args.save_every]
        for (text_hash, _), vector in zip(chunk, model.embed([t for _, t in chunk]), strict=True):
            known[text_hash] = np.asarray(vector, dtype="<f4")
        done += len(chunk)
        save(path, known)
        rate = done / (time.perf_counter() - started)
        log(f"warm cache {args.scale}: {done}/{len(missing)} embedded, {rate:.0f} texts/s, kept in {path}")


if __name__ == "__main__":
    main()
