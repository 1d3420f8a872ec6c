"""Does a light trained layer on the post vectors beat tier 1's prototypes? (issue 15, section 3)

    python -m ops.eval_layer            # both committed sets, k = 5 and 20, 5 splits: eval/results/light-layer.md

Only the stored post vectors are used (no second model pass). Per split (seed s): the calibration
half gives k example posts per vertical (``pick_examples``, as ``make eval --shots``) and, from its
other texts, the per-vertical thresholds; macro F1 is measured on the held-out half. Compared:

- ``prototypes``: today's classifier with the k examples blended into the prototypes.
- ``head``: the same prototypes plus a residual linear head per taxonomy, trained on the k examples
  by softmax cross-entropy on ``SCALE * (cosine to prototypes + X @ W)`` with an L2 penalty on W, so
  with no evidence it stays the prototype classifier (scores stay in cosine units: thresholds, the
  label margin and the off-topic rule apply unchanged).
- ``map``: a linear map that shrinks the directions in which a vertical's examples spread
  (within-vertical scatter plus ``alpha`` I, inverse square root), prototypes and posts mapped, cosine.

The result decides whether tier 1 keeps its prototypes (docs/classification.md has the numbers).
Nothing here is used by the services.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ops.eval import DEFAULT_RESULTS, CachedEmbedder, load_taxonomy, taxonomy_path, with_changes
from ops.eval_core import fit_thresholds, gold_matrix, label_metrics, load_labelled, pick_examples, stratified_split
from shared.classification.tier_one import CONFIDENCE_SCALE, OFF_TOPIC_MARGIN, EmbedTexts, VerticalClassifier, label_mask
from shared.config import PROJECT_ROOT

SETS = [("default", PROJECT_ROOT / "eval" / "data" / "creator_posts.jsonl"),
        ("news_topics", PROJECT_ROOT / "eval" / "data" / "bbc_news.jsonl")]
SCALE = 1.0 / CONFIDENCE_SCALE  # logits per cosine unit, as tier 1's raw confidence
HEAD_L2 = (0.01, 0.1)
MAP_ALPHA = (0.01,)
Delta = Callable[[np.ndarray], np.ndarray]  # post vectors -> (n, k) change of the cosine scores


def train_head(vectors: np.ndarray, onehot: np.ndarray, centroids: np.ndarray, l2: float,
               steps: int = 500) -> np.ndarray:
    """W of the residual head, by gradient descent with step 1/L (L bounds the loss's curvature)."""
    n = len(vectors)
    weights = np.zeros((vectors.shape[1], centroids.shape[0]))
    base = vectors @ centroids.T
    smooth = SCALE ** 2 * 0.5 * float(np.linalg.eigvalsh(vectors.T @ vectors / n).max()) + l2
    for _ in range(steps):
        logits = SCALE * (base + vectors @ weights)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        weights -= (vectors.T @ (SCALE * (p - onehot) / n) + l2 * weights) / smooth
    return weights


def scatter_map(vectors: np.ndarray, onehot: np.ndarray, alpha: float) -> np.ndarray:
    """(S + alpha I)^(-1/2) scaled to identity where the examples do not spread (S: within-vertical)."""
    means = (onehot.T @ vectors) / np.maximum(onehot.sum(axis=0), 1)[:, None]
    residual = vectors - means[onehot.argmax(axis=1)]
    scatter = residual.T @ residual / len(residual)
    values, basis = np.linalg.eigh(scatter + alpha * np.eye(len(scatter)))
    return basis @ np.diag(np.sqrt(alpha / values)) @ basis.T


def held_out_macro_f1(classifier: VerticalClassifier, vectors: np.ndarray, gold: Sequence[set[str]],
                      fit_on: Sequence[int], held_out: Sequence[int], delta: Delta) -> float:
    names = classifier.names

    def decide(rows: Sequence[int]) -> tuple[np.ndarray, np.ndarray | None]:
        chosen = vectors[list(rows)]
        scores = classifier.scores(chosen).astype(np.float64) + delta(chosen)
        off = None if classifier.off_topic is None else chosen @ classifier.off_topic - scores.max(axis=1)
        return scores, None if off is None else off >= OFF_TOPIC_MARGIN

    scores, off = decide(fit_on)
    thresholds = fit_thresholds(scores, gold_matrix([gold[i] for i in fit_on], names), classifier.thresholds,
                                off_topic=off)
    scores, off = decide(held_out)
    mask = label_mask(scores, thresholds, off_topic=off)
    predicted = [{names[j] for j in np.nonzero(row)[0]} for row in mask]
    _, _, macro = label_metrics([gold[i] & set(names) for i in held_out], predicted, names)
    return macro["f1"]


def measure(taxonomy_name: str, data: Path, embed: EmbedTexts, shots: Sequence[int],
            seeds: Sequence[int]) -> dict[tuple[int, str], list[float]]:
    taxonomy = load_taxonomy(taxonomy_path(taxonomy_name))
    rows = load_labelled(data, known={v.name for v in taxonomy.verticals})
    vectors = np.asarray(embed([r.text for r in rows]), dtype=np.float64)
    gold = [set(r.labels) for r in rows]
    out: dict[tuple[int, str], list[float]] = {}
    for k in shots:
        for seed in seeds:
            calibration, held_out = stratified_split(rows, 0.5, seed)
            picked = pick_examples(rows, calibration, k, seed)
            examples = [i for chosen in picked.values() for i in chosen]
            fit_on = [i for i in calibration if i not in set(examples)]
            with_examples = with_changes(taxonomy, examples={v: [rows[i].text for i in c] for v, c in picked.items()})
            classifier = VerticalClassifier.build(with_examples, embed)
            onehot = np.zeros((len(examples), len(classifier.names)))
            for row, i in enumerate(examples):
                onehot[row, classifier.names.index(rows[i].primary)] = 1.0
            candidates: dict[str, Delta] = {"prototypes": lambda x: 0.0}
            centroids = classifier.centroids.astype(np.float64)
            for l2 in HEAD_L2:
                weights = train_head(vectors[examples], onehot, centroids, l2)
                candidates[f"head, L2 {l2}"] = lambda x, w=weights: x @ w
            for alpha in MAP_ALPHA:
                mapping = scatter_map(vectors[examples], onehot, alpha)
                mapped = centroids @ mapping
                mapped /= np.linalg.norm(mapped, axis=1, keepdims=True)
                candidates[f"map, alpha {alpha}"] = lambda x, m=mapping, c=mapped: (
                    _unit_rows(x @ m) @ c.T - x @ centroids.T)
            for name, delta in candidates.items():
                out.setdefault((k, name), []).append(
                    held_out_macro_f1(classifier, vectors, gold, fit_on, held_out, delta))
    return out


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def to_markdown(results: dict[str, dict[tuple[int, str], list[float]]], seeds: Sequence[int]) -> str:
    lines = [f"# Light layer vs prototypes: held-out macro F1, mean over {len(seeds)} splits", "",
             "| set | k | method | mean macro F1 | vs prototypes | per split |", "|---|---|---|---|---|---|"]
    for set_name, table in results.items():
        for (k, name), values in table.items():
            base = float(np.mean(table[(k, "prototypes")]))
            lines.append(f"| {set_name} | {k} | {name} | {np.mean(values):.4f} | {np.mean(values) - base:+.4f} "
                         f"| {', '.join(f'{v:.3f}' for v in values)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None, embed: EmbedTexts | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.eval_layer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--out", type=Path, default=DEFAULT_RESULTS / "light-layer.md")
    args = parser.parse_args(argv)
    if embed is None:
        from shared.config import ModelSettings
        from shared.embedding import load_text_embedder

        embed = load_text_embedder(ModelSettings().model_cache_dir).embed
    embed = CachedEmbedder(embed)
    seeds = range(args.splits)
    results = {f"{name} ({data.name})": measure(name, data, embed, (5, 20), seeds) for name, data in SETS}
    markdown = to_markdown(results, seeds)
    print(markdown)
    args.out.write_text(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
