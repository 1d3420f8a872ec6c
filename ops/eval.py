"""Tier-1 vertical classification quality on a labelled JSONL file (``make eval``).

    make eval TAXONOMY=default DATA=eval/data/creator_posts.jsonl
    .venv/bin/python -m ops.eval --taxonomy news_topics --data eval/data/bbc_news.jsonl --calibrate --shots 5

The file is split once, stratified and seeded, into a calibration part and a held-out part;
every number reported is measured on the held-out part only (``--no-split`` evaluates the whole
file, for data that never served to calibrate). ``--calibrate`` fits per-vertical thresholds on
the calibration part and writes them into the taxonomy YAML; ``--shots K`` also measures K example
posts per vertical taken from the calibration part (k=0 vs k=K on the same held-out texts), and
``--write-examples`` stores them in the YAML. ``--f1-floor`` lists verticals under a held-out F1,
``--disable-below`` switches them off. Every YAML change bumps the taxonomy's version.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import orjson
import yaml
from pydantic import ValidationError

from ops.eval_core import (
    EvalDataError,
    LabelledText,
    QualityReport,
    YamlEditError,
    confusion_pairs,
    fit_thresholds,
    gold_matrix,
    label_metrics,
    load_labelled,
    pick_examples,
    rewrite_taxonomy,
    stratified_split,
    top1_accuracy,
)
from shared.classification.calibration import IDENTITY, LabelCalibration, expected_calibration_error, fit_calibration, reliability_table
from shared.classification.taxonomy import DEFAULT_TAXONOMY_DIR, Taxonomy
from shared.classification.tier_one import EmbedTexts, VerticalClassifier, label_mask
from shared.config import PROJECT_ROOT

DEFAULT_RESULTS = PROJECT_ROOT / "eval" / "results"
EVAL_TAXONOMY_DIR = PROJECT_ROOT / "eval" / "taxonomies"


class CachedEmbedder:
    """Embeds each distinct text once per run: several classifiers share their prototype texts."""

    def __init__(self, embed: EmbedTexts) -> None:
        self._embed = embed
        self._vectors: dict[str, np.ndarray] = {}

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if missing:
            for text, vector in zip(missing, np.asarray(self._embed(missing), dtype=np.float32)):
                self._vectors[text] = vector
        return np.stack([self._vectors[t] for t in texts]) if texts else np.zeros((0, 0), dtype=np.float32)


def taxonomy_path(name_or_path: str, directory: Path = DEFAULT_TAXONOMY_DIR) -> Path:
    """A YAML path as given, else ``<directory>/<name>.yaml``, else an evaluation-only taxonomy
    of eval/taxonomies/ (such as news_topics, which matches the public BBC News set)."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") and candidate.exists():
        return candidate
    live = Path(directory) / f"{name_or_path}.yaml"
    evaluation_only = EVAL_TAXONOMY_DIR / f"{name_or_path}.yaml"
    return evaluation_only if not live.exists() and evaluation_only.exists() else live


def load_taxonomy(path: Path) -> Taxonomy:
    try:
        return Taxonomy.model_validate(yaml.safe_load(path.read_text()))
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise EvalDataError(f"{path}: {exc}") from exc


def with_changes(taxonomy: Taxonomy, thresholds: Mapping[str, float] | None = None,
                 examples: Mapping[str, list[str]] | None = None) -> Taxonomy:
    """A copy with some verticals' thresholds and/or examples replaced (``{}`` examples = none)."""
    verticals = []
    for vertical in taxonomy.verticals:
        update: dict[str, object] = {}
        if thresholds is not None and vertical.name in thresholds:
            update["threshold"] = float(thresholds[vertical.name])
        if examples is not None:
            update["examples"] = list(examples.get(vertical.name, []))
        verticals.append(vertical.model_copy(update=update))
    return taxonomy.model_copy(update={"verticals": verticals})


def evaluate(classifier: VerticalClassifier, rows: Sequence[LabelledText], vectors: np.ndarray) -> QualityReport:
    """Everything the report shows, for the given texts and their vectors."""
    names = classifier.names
    enabled = set(names)
    gold = [set(r.labels) & enabled for r in rows]
    results = classifier.classify(vectors)
    predicted = [{label.vertical for label in result.labels} for result in results]
    top = [result.top[0] if result.top else "" for result in results]
    per, micro, macro = label_metrics(gold, predicted, names)
    unsure = [result.uncertain for result in results]
    calibration = _calibration_quality(classifier, gold, vectors)
    hits = [(t in g, u) for g, t, u in zip(gold, top, unsure) if g]
    off_topic = [not p for g, p in zip(gold, predicted) if not g]
    # An off-topic text's "top" is whatever it was labelled with, if anything.
    shown_top = [t if g or p else "" for g, p, t in zip(gold, predicted, top)]
    return QualityReport(
        per_vertical=per, micro=micro, macro=macro, top1_accuracy=top1_accuracy(gold, top),
        confusions=confusion_pairs([r.primary for r in rows], gold, shown_top),
        uncertain_share=float(np.mean(unsure)) if unsure else 0.0,
        accuracy_confident=_mean([h for h, u in hits if not u]),
        accuracy_uncertain=_mean([h for h, u in hits if u]),
        unlabelled_share=float(np.mean([not p for p in predicted])) if predicted else 0.0,
        texts=len(rows), off_topic_texts=len(off_topic), off_topic_rejected=_mean(off_topic), **calibration,
    )


def _calibration_quality(classifier: VerticalClassifier, gold: Sequence[set[str]], vectors: np.ndarray) -> dict:
    """ECE of the decided labels' raw and calibrated confidences, and their reliability tables."""
    if len(vectors) == 0:
        return {}
    similarity = classifier.scores(vectors)
    decided = label_mask(similarity, classifier.thresholds, off_topic=classifier.off_topic_rows(vectors, similarity))
    rows, cols = np.nonzero(decided)
    right = np.array([classifier.names[j] in gold[i] for i, j in zip(rows, cols)], dtype=bool)
    raw = IDENTITY.confidence(classifier.names, similarity, classifier.thresholds)[rows, cols]
    shown = classifier.calibration.confidence(classifier.names, similarity, classifier.thresholds)[rows, cols]
    return {"labels": int(len(right)), "ece_raw": expected_calibration_error(raw, right),
            "ece": expected_calibration_error(shown, right), "reliability": reliability_table(shown, right),
            "reliability_raw": reliability_table(raw, right)}


def fit_confidences(classifier: VerticalClassifier, rows: Sequence[LabelledText], vectors: np.ndarray,
                    fit_on: Sequence[int], fitted_on: str) -> LabelCalibration:
    """The confidence calibration of ``classifier``'s decided labels on the ``fit_on`` texts."""
    chosen = vectors[list(fit_on)]
    similarity = classifier.scores(chosen)
    decided = label_mask(similarity, classifier.thresholds, off_topic=classifier.off_topic_rows(chosen, similarity))
    gold = gold_matrix([set(rows[i].labels) for i in fit_on], classifier.names)
    return fit_calibration(classifier.names, similarity, classifier.thresholds, decided, gold, fitted_on)


def calibrate(taxonomy: Taxonomy, embed: EmbedTexts, rows: Sequence[LabelledText], vectors: np.ndarray,
              calibration: Sequence[int]) -> dict[str, float]:
    """Per-vertical thresholds fitted on the calibration texts (vectors in ``rows`` order)."""
    classifier = VerticalClassifier.build(taxonomy, embed)
    gold = gold_matrix([set(rows[i].labels) for i in calibration], classifier.names)
    chosen = vectors[list(calibration)]
    scores = classifier.scores(chosen)
    fitted = fit_thresholds(scores, gold, classifier.thresholds, off_topic=classifier.off_topic_rows(chosen, scores))
    return {name: round(float(t), 4) for name, t in zip(classifier.names, fitted)}


@dataclass
class Candidate:
    """One configuration measured on the held-out part: what would be written, and its report."""
    taxonomy: Taxonomy
    thresholds: dict[str, float]
    examples: dict[str, list[str]]
    report: QualityReport
    confidences: LabelCalibration | None = None


def calibrated_candidates(taxonomy: Taxonomy, embed: EmbedTexts, rows: Sequence[LabelledText], vectors: np.ndarray,
                          calibration: Sequence[int], held_out: Sequence[int], shots: int,
                          seed: int, source: str = "") -> dict[str, Candidate]:
    """k=0 (descriptions and keywords only) and, with ``shots``, k=shots example posts per vertical
    from the calibration part; thresholds fitted on the calibration part, reports on held-out."""
    test_rows, test_vectors = [rows[i] for i in held_out], vectors[list(held_out)]
    zero_shot = with_changes(taxonomy, examples={})
    variants = {"k=0": (zero_shot, {}, list(calibration))}
    if shots:
        picked = pick_examples(rows, calibration, shots, seed)
        examples = {label: [rows[i].text for i in chosen] for label, chosen in picked.items()}
        used = {i for chosen in picked.values() for i in chosen}
        # An example's own score is inflated: thresholds are fitted on the rest.
        variants[f"k={shots}"] = (with_changes(taxonomy, examples=examples), examples,
                                  [i for i in calibration if i not in used])
    out = {}
    for name, (variant, examples, fit_on) in variants.items():
        thresholds = calibrate(variant, embed, rows, vectors, fit_on)
        tuned = with_changes(variant, thresholds=thresholds)
        # Confidences are calibrated under the fitted thresholds, on the same texts.
        confidences = fit_confidences(VerticalClassifier.build(tuned, embed), rows, vectors, fit_on,
                                      f"{source} calibration half, seed {seed}".strip())
        tuned = tuned.model_copy(update={"calibration": confidences})
        report = evaluate(VerticalClassifier.build(tuned, embed), test_rows, test_vectors)
        out[name] = Candidate(tuned, thresholds, examples, report, confidences)
    return out


def repeated_gain(taxonomy: Taxonomy, embed: EmbedTexts, rows: Sequence[LabelledText], vectors: np.ndarray,
                  args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Mean held-out numbers of each candidate over ``args.repeats`` splits (seed, seed+1, ...):
    one split of a few hundred texts moves by a few points, the mean much less."""
    sums: dict[str, dict[str, list[float]]] = {}
    for seed in range(args.seed, args.seed + args.repeats):
        calibration, held_out = stratified_split(rows, args.held_out, seed)
        for name, candidate in calibrated_candidates(taxonomy, embed, rows, vectors, calibration, held_out,
                                                     args.shots, seed).items():
            report = candidate.report
            for key, value in (("top1_accuracy", report.top1_accuracy), ("micro_f1", report.micro["f1"]),
                               ("macro_f1", report.macro["f1"]), ("uncertain_share", report.uncertain_share),
                               ("ece_raw", report.ece_raw), ("ece", report.ece)):
                sums.setdefault(name, {}).setdefault(key, []).append(value)
    return {name: {key: round(float(np.mean(values)), 4) for key, values in metrics.items()}
            for name, metrics in sums.items()}


def run(args: argparse.Namespace, embed: EmbedTexts) -> dict:
    path = taxonomy_path(args.taxonomy, args.taxonomy_dir)
    taxonomy = load_taxonomy(path)
    rows = load_labelled(args.data, known={v.name for v in taxonomy.verticals})
    embed = CachedEmbedder(embed)
    vectors = embed([r.text for r in rows])
    if args.no_split:
        calibration, held_out = [], list(range(len(rows)))
    else:
        calibration, held_out = stratified_split(rows, args.held_out, args.seed)
    out: dict = {"taxonomy": taxonomy.name, "version": taxonomy.version, "data": _shown(args.data),
                 "texts": len(rows), "held_out": len(held_out), "calibration": len(calibration),
                 "seed": args.seed, "reports": {}}
    changes: dict[str, dict[str, object]] = {}
    if args.calibrate:
        if not calibration:
            raise EvalDataError("--calibrate needs a calibration part: drop --no-split")
        candidates = calibrated_candidates(taxonomy, embed, rows, vectors, calibration, held_out, args.shots, args.seed,
                                           _shown(args.data))
        out["reports"] = {name: candidate.report for name, candidate in candidates.items()}
        if args.repeats > 1:
            out["mean_over_splits"] = {"splits": args.repeats, **repeated_gain(taxonomy, embed, rows, vectors, args)}
        # What is written is exactly what was measured: the k=0 choice also empties old examples.
        out["chosen"] = f"k={args.shots}" if args.shots and args.write_examples else "k=0"
        chosen = candidates[out["chosen"]]
        out["thresholds"] = chosen.thresholds
        for name, value in chosen.thresholds.items():
            changes.setdefault(name, {})["threshold"] = value
        for vertical in taxonomy.verticals:
            if vertical.enabled and (vertical.examples or chosen.examples.get(vertical.name)):
                changes.setdefault(vertical.name, {})["examples"] = chosen.examples.get(vertical.name, [])
    else:
        test_rows, test_vectors = [rows[i] for i in held_out], vectors[held_out]
        out["chosen"] = "as configured"
        out["reports"]["as configured"] = evaluate(VerticalClassifier.build(taxonomy, embed), test_rows, test_vectors)
    if args.f1_floor is not None:
        out["f1_floor"] = args.f1_floor
        out["below_floor"] = out["reports"][out["chosen"]].below(args.f1_floor)
        if args.disable_below:
            for name in out["below_floor"]:
                changes.setdefault(name, {})["enabled"] = False
    blocks = {}
    if args.calibrate and candidates[out["chosen"]].confidences is not None:
        blocks["calibration"] = candidates[out["chosen"]].confidences.model_dump()
    if changes or blocks:
        path.write_text(rewrite_taxonomy(path.read_text(), changes, blocks))
        out["written"] = {"path": _shown(path), "version": load_taxonomy(path).version,
                          "verticals": {k: sorted(v) for k, v in changes.items()}, "blocks": sorted(blocks)}
    return out


def to_json(result: dict) -> dict:
    return {**result, "reports": {name: asdict(report) for name, report in result["reports"].items()}}


def to_markdown(result: dict) -> str:
    lines = [f"# Tier-1 quality: taxonomy `{result['taxonomy']}` v{result['version']} on `{result['data']}`", "",
             f"{result['held_out']} held-out texts of {result['texts']} (calibration part: {result['calibration']},"
             f" seed {result['seed']}).", ""]
    for name, report in result["reports"].items():
        lines += [f"## {name}", "", _summary_table(report), "", _vertical_table(report), "",
                  _calibration_lines(report), ""]
        if report.confusions:
            lines += ["Most frequent confusions (true → predicted top):", ""]
            lines += [f"- {gold} → {pred}: {n}" for gold, pred, n in report.confusions] + [""]
    if "mean_over_splits" in result:
        mean = result["mean_over_splits"]
        lines += [f"## Mean over {mean['splits']} splits (held-out parts)", "",
                  "| configuration | top-1 acc | micro F1 | macro F1 | uncertain | ECE raw | ECE calibrated |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {name} | {_fmt(m['top1_accuracy'])} | {_fmt(m['micro_f1'])} | {_fmt(m['macro_f1'])} "
                  f"| {_fmt(m['uncertain_share'])} | {_fmt(m['ece_raw'])} | {_fmt(m['ece'])} |"
                  for name, m in mean.items() if name != "splits"] + [""]
    if "below_floor" in result:
        below = ", ".join(result["below_floor"]) or "none"
        lines += [f"Verticals under F1 {result['f1_floor']:.2f}: {below}", ""]
    if "written" in result:
        written = result["written"]
        lines += [f"Wrote {written['path']} (version {written['version']}): "
                  + "; ".join(f"{k}: {', '.join(v)}" for k, v in written["verticals"].items()), ""]
    return "\n".join(lines)


def _summary_table(report: QualityReport) -> str:
    fmt = _fmt
    return "\n".join([
        "| top-1 acc | micro P | micro R | micro F1 | macro P | macro R | macro F1 | uncertain "
        "| acc sure / unsure | no label | off-topic rejected |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {fmt(report.top1_accuracy)} | {fmt(report.micro['precision'])} | {fmt(report.micro['recall'])} "
        f"| {fmt(report.micro['f1'])} | {fmt(report.macro['precision'])} | {fmt(report.macro['recall'])} "
        f"| {fmt(report.macro['f1'])} | {fmt(report.uncertain_share)} "
        f"| {fmt(report.accuracy_confident)} / {fmt(report.accuracy_uncertain)} | {fmt(report.unlabelled_share)} "
        f"| {fmt(report.off_topic_rejected)} of {report.off_topic_texts} |",
    ])


def _calibration_lines(report: QualityReport) -> str:
    """ECE before/after and the calibrated reliability table of the held-out labels."""
    if report.ece is None:
        return "No decided labels: no calibration figures."
    rows = [f"Confidence of the {report.labels} decided labels: expected calibration error {_fmt(report.ece_raw)} "
            f"raw, {_fmt(report.ece)} as labels carry it (10 equal-width bins).", "",
            "| confidence bin | labels | mean confidence | share right |", "|---|---|---|---|"]
    rows += [f"| {low:.1f}-{low + 0.1:.1f} | {n} | {_fmt(conf)} | {_fmt(acc)} |" for low, conf, acc, n in report.reliability]
    return "\n".join(rows)


def _vertical_table(report: QualityReport) -> str:
    rows = ["| vertical | precision | recall | F1 | support | predicted |", "|---|---|---|---|---|---|"]
    for name, q in sorted(report.per_vertical.items(), key=lambda kv: kv[1].f1):
        rows.append(f"| {name} | {_fmt(q.precision)} | {_fmt(q.recall)} | {_fmt(q.f1)} | {q.support} | {q.predicted} |")
    return "\n".join(rows)


def _shown(path: Path) -> str:
    """Paths inside the project relative to it: reports are committed and read on other machines."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(PROJECT_ROOT)) if resolved.is_relative_to(PROJECT_ROOT) else str(path)


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _mean(values: list[bool]) -> float | None:
    return float(np.mean(values)) if values else None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ops.eval", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--taxonomy", required=True, help="taxonomy name (in --taxonomy-dir) or path to its YAML")
    parser.add_argument("--data", required=True, type=Path, help='labelled JSONL: {"text": ..., "labels": [...]} per line')
    parser.add_argument("--taxonomy-dir", type=Path, default=DEFAULT_TAXONOMY_DIR, help="default: %(default)s")
    parser.add_argument("--out", type=Path, default=None,
                        help="report path without extension (.json and .md are written; "
                             "default: eval/results/<taxonomy>-<data file>)")
    parser.add_argument("--held-out", type=float, default=0.5, help="share of texts held out (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="split and example seed (default: %(default)s)")
    parser.add_argument("--no-split", action="store_true", help="evaluate every text (data never used to calibrate)")
    parser.add_argument("--calibrate", action="store_true", help="fit per-vertical thresholds, write them to the YAML")
    parser.add_argument("--shots", type=int, default=0, help="also measure K example posts per vertical (k=0 vs k=K)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="with --calibrate: also report the mean over this many splits (default: %(default)s)")
    parser.add_argument("--write-examples", action="store_true", help="with --calibrate --shots: store the examples")
    parser.add_argument("--f1-floor", type=float, default=None, help="report verticals whose held-out F1 is below this")
    parser.add_argument("--disable-below", action="store_true", help="with --f1-floor: write enabled: false for them")
    parser.add_argument("--min-macro-f1", type=float, default=None,
                        help="exit 1 when the reported configuration's held-out macro F1 is below this (CI)")
    parser.add_argument("--max-ece", type=float, default=None,
                        help="exit 1 when its held-out expected calibration error is above this (CI)")
    parser.add_argument("--no-plot", action="store_true",
                        help="skip the reliability plot (<out>-reliability.png, needs matplotlib: pip install -e '.[eval]')")
    args = parser.parse_args(argv)
    if args.disable_below and args.f1_floor is None:
        parser.error("--disable-below needs --f1-floor")
    if args.write_examples and not (args.calibrate and args.shots):
        parser.error("--write-examples needs --calibrate and --shots")
    if args.shots and not args.calibrate:
        parser.error("--shots needs --calibrate (examples come from the calibration part)")
    if args.shots < 0 or args.repeats < 1:
        parser.error("--shots must be >= 0 and --repeats >= 1")
    return args


def main(argv: list[str] | None = None, embed: EmbedTexts | None = None) -> int:
    """``embed`` lets a caller that already holds the model share it (tests); default: load it."""
    args = parse_args(argv)
    if embed is None:
        from shared.config import ModelSettings
        from shared.embedding import load_text_embedder

        embed = load_text_embedder(ModelSettings().model_cache_dir).embed
    try:
        result = run(args, embed)
    except (EvalDataError, YamlEditError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    markdown = to_markdown(result)
    print(markdown)
    stem = args.out or DEFAULT_RESULTS / f"{result['taxonomy']}-{Path(args.data).stem}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{stem}.json").write_bytes(orjson.dumps(to_json(result), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    Path(f"{stem}.md").write_text(markdown)
    print(f"written: {stem}.json, {stem}.md")
    if not args.no_plot:
        write_reliability_plot(result, Path(f"{stem}-reliability.png"))
        print(f"written: {stem}-reliability.png")
    failures = quality_failures(result["reports"][result["chosen"]], args.min_macro_f1, args.max_ece)
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


def quality_failures(report: QualityReport, min_macro_f1: float | None, max_ece: float | None) -> list[str]:
    """What the reported configuration misses of the floors CI asks for."""
    failures = []
    if min_macro_f1 is not None and report.macro["f1"] < min_macro_f1:
        failures.append(f"macro F1 {report.macro['f1']:.3f} < {min_macro_f1}")
    if max_ece is not None and (report.ece is None or report.ece > max_ece):
        failures.append(f"expected calibration error {_fmt(report.ece)} > {max_ece}")
    return failures


def write_reliability_plot(result: dict, path: Path) -> None:
    """Share right against mean confidence per bin, raw and calibrated, one panel per configuration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reports = result["reports"]
    fig, axes = plt.subplots(1, len(reports), figsize=(4.5 * len(reports), 4.5), squeeze=False)
    for ax, (name, report) in zip(axes[0], reports.items()):
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect")
        for table, ece, label, style in ((report.reliability_raw, report.ece_raw, "raw", "o--"),
                                         (report.reliability, report.ece, "calibrated", "s-")):
            if table:  # marker area grows with the bin's labels: a bin of one label is not a trend
                line, = ax.plot([t[1] for t in table], [t[2] for t in table], style[1:], linewidth=1,
                                label=f"{label} (ECE {_fmt(ece)})")
                ax.scatter([t[1] for t in table], [t[2] for t in table], s=[12 + 2 * t[3] for t in table],
                           marker=style[0], color=line.get_color(), alpha=0.7)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence of the label", ylabel="share of labels right",
               title=f"{result['taxonomy']} {name}: {report.labels} held-out labels")
        ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
