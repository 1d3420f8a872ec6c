"""A gate on worse classification: a taxonomy change goes live only if its golden set agrees.

    python -m ops.gate --candidate config/taxonomies/default.yaml             # against the accepted one
    python -m ops.gate --candidate new/default.yaml --active old/default.yaml  # two files
    python -m ops.gate --candidate new/default.yaml --override                # accept anyway (logged)

A taxonomy's golden set is the held-out half (seed 0) of its committed labelled set (eval/README.md;
the other half calibrated its thresholds) plus people's corrections from Redis (the vectors of posts
someone relabelled, shared/classification/fewshot.py, with the label they gave). Active and candidate are scored on
the same golden set without those corrections as examples, so neither is helped by them. The
candidate is refused when its macro F1 is more than ``--tolerance`` below the active version's.

"Active" is the last taxonomy the gate accepted (kept in Redis under ``gate:accepted:<name>``) or a
file given with ``--active``; with neither, the candidate is its own baseline and is accepted.
``make replay ARGS="--stage classify"`` runs this for every taxonomy before it builds a version.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import redis
import yaml

from ops.eval import CachedEmbedder, evaluate, load_taxonomy
from ops.eval_core import EvalDataError, LabelledText, load_labelled, stratified_split
from shared.classification.fewshot import FewShotStore
from shared.classification.taxonomy import Taxonomy
from shared.classification.tier_one import EmbedTexts, VerticalClassifier
from shared.config import PROJECT_ROOT
from shared.logging import get_logger

log = get_logger("ops.gate")

# Committed labelled sets per taxonomy name (eval/README.md). BBC News is rebuilt, not committed:
# without its file that taxonomy's golden set is its corrections only.
GOLDEN_SETS = {"default": PROJECT_ROOT / "eval" / "data" / "creator_posts.jsonl",
               "news_topics": PROJECT_ROOT / "eval" / "data" / "bbc_news.jsonl"}
# One golden half holds ~170 texts: a vertical's F1 moves by a few points when a text or two
# flips, macro F1 by about one. Two points is a change, not noise.
DEFAULT_TOLERANCE = 0.02
ACCEPTED_KEY = "gate:accepted:{taxonomy}"


@dataclass(frozen=True)
class GoldenSet:
    rows: list[LabelledText]
    vectors: np.ndarray
    corrections: int  # of the rows, how many are people's corrections


@dataclass(frozen=True)
class GateResult:
    taxonomy: str
    active_version: str
    candidate_version: str
    active_macro_f1: float
    candidate_macro_f1: float
    texts: int
    tolerance: float

    @property
    def drop(self) -> float:
        return self.active_macro_f1 - self.candidate_macro_f1

    @property
    def passed(self) -> bool:
        return self.drop <= self.tolerance

    def render(self) -> str:
        verdict = "passes" if self.passed else "REFUSED"
        return (f"gate {self.taxonomy}: macro F1 {self.candidate_macro_f1:.3f} (v{self.candidate_version}) against "
                f"{self.active_macro_f1:.3f} (active v{self.active_version}) on {self.texts} golden texts: "
                f"drop {self.drop:+.3f}, tolerance {self.tolerance:.3f}: {verdict}")


def golden_set(taxonomy: Taxonomy, embed: EmbedTexts, fewshot: FewShotStore | None = None,
               data: Path | None = None) -> GoldenSet | None:
    """The held-out half of the taxonomy's labelled set plus its corrections; None when it has neither."""
    known = {v.name for v in taxonomy.verticals}
    path = data or GOLDEN_SETS.get(taxonomy.name)
    rows: list[LabelledText] = []
    if path is not None and Path(path).exists():
        labelled = load_labelled(Path(path), known=known)
        _, held_out = stratified_split(labelled, 0.5, seed=0)
        rows = [labelled[i] for i in held_out]
    vectors = [np.asarray(embed([r.text for r in rows]), dtype=np.float32)] if rows else []
    corrections = 0
    if fewshot is not None:
        for vertical, block in sorted(fewshot.examples(taxonomy.name).items()):
            if vertical in known and len(block):
                rows += [LabelledText(f"(correction {i})", (vertical,)) for i in range(len(block))]
                vectors.append(np.asarray(block, dtype=np.float32))
                corrections += len(block)
    if not rows:
        return None
    return GoldenSet(rows, np.vstack(vectors), corrections)


def compare(active: Taxonomy, candidate: Taxonomy, golden: GoldenSet, embed: EmbedTexts,
            tolerance: float = DEFAULT_TOLERANCE) -> GateResult:
    def macro_f1(taxonomy: Taxonomy) -> float:
        return evaluate(VerticalClassifier.build(taxonomy, embed), golden.rows, golden.vectors).macro["f1"]

    return GateResult(candidate.name, active.version, candidate.version, round(macro_f1(active), 4),
                      round(macro_f1(candidate), 4), len(golden.rows), tolerance)


def accepted(client: redis.Redis, name: str) -> Taxonomy | None:
    raw = client.get(ACCEPTED_KEY.format(taxonomy=name))
    return None if raw is None else Taxonomy.model_validate(yaml.safe_load(raw))


def accept(client: redis.Redis, taxonomy: Taxonomy) -> None:
    client.set(ACCEPTED_KEY.format(taxonomy=taxonomy.name),
               yaml.safe_dump(taxonomy.model_dump(mode="json", exclude_none=True), sort_keys=False))


def check(candidates: Sequence[Taxonomy], embed: EmbedTexts, client: redis.Redis | None,
          tolerance: float = DEFAULT_TOLERANCE, override: bool = False, out=None,
          active: dict[str, Taxonomy] | None = None) -> bool:
    """Gate every candidate with a golden set; True when all pass (or ``override``). Accepted
    candidates become the active baseline in Redis."""
    out = out or sys.stdout
    embed = CachedEmbedder(embed)
    fewshot = FewShotStore(client) if client is not None else None
    verdicts = []
    for candidate in candidates:
        golden = golden_set(candidate, embed, fewshot)
        if golden is None:
            print(f"gate {candidate.name}: no golden set (no labelled file, no corrections): not gated", file=out)
            continue
        baseline = (active or {}).get(candidate.name) or (accepted(client, candidate.name) if client else None)
        result = compare(baseline or candidate, candidate, golden, embed, tolerance)
        print(result.render() + ("" if baseline else " (no accepted version yet: baseline is itself)"), file=out)
        verdicts.append((candidate, result))
    refused = [result for _, result in verdicts if not result.passed]
    if refused and override:
        for result in refused:
            log.warning("classification gate overridden", taxonomy=result.taxonomy, drop=round(result.drop, 4),
                        active_macro_f1=result.active_macro_f1, candidate_macro_f1=result.candidate_macro_f1,
                        candidate_version=result.candidate_version)
            print(f"gate {result.taxonomy}: OVERRIDDEN (--override): the worse taxonomy goes ahead", file=out)
    if refused and not override:
        return False
    if client is not None:
        for candidate, _ in verdicts:
            accept(client, candidate)
    return True


def main(argv: list[str] | None = None, embed: EmbedTexts | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.gate", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidate", type=Path, required=True, help="taxonomy YAML that would go live")
    parser.add_argument("--active", type=Path, default=None, help="taxonomy YAML live now (default: the accepted one)")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, help="macro-F1 drop allowed (%(default)s)")
    parser.add_argument("--override", action="store_true", help="accept even if worse (logged)")
    parser.add_argument("--redis-url", default=None, help="Redis of corrections and accepted versions (default: REDIS_URL)")
    args = parser.parse_args(argv)
    try:
        candidate = load_taxonomy(args.candidate)
        active = {candidate.name: load_taxonomy(args.active)} if args.active else None
    except EvalDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from shared.config import ModelSettings, RedisSettings
    client = redis.Redis.from_url(args.redis_url or RedisSettings().redis_url)
    if embed is None:
        from shared.embedding import load_text_embedder

        embed = load_text_embedder(ModelSettings().model_cache_dir).embed
    passed = check([candidate], embed, client, args.tolerance, args.override, active=active)
    if not passed:
        print("refused: macro F1 dropped more than the tolerance (--override to accept anyway)", file=sys.stderr)
    return 0 if passed else 3


def replay_gate(taxonomy_dir: Path, override: bool, tolerance: float = DEFAULT_TOLERANCE) -> bool:
    """What ``ops.replay --stage classify`` calls before building a version: every taxonomy of the
    directory the classifier reads, against the accepted ones."""
    from shared.config import ModelSettings, RedisSettings
    from shared.embedding import load_text_embedder
    from shared.classification.taxonomy import TaxonomyCatalog

    catalog = TaxonomyCatalog.load(taxonomy_dir)
    embed = load_text_embedder(ModelSettings().model_cache_dir).embed
    return check(catalog.all(), embed, redis.Redis.from_url(RedisSettings().redis_url), tolerance, override)


if __name__ == "__main__":
    raise SystemExit(main())
