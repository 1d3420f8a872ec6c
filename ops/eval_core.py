"""Pure parts of ``make eval``: labelled data, splits, quality metrics, threshold calibration and
the targeted rewrite of a taxonomy YAML. No model, no I/O beyond reading a JSONL file.

Conventions: ``gold`` and ``predicted`` are lists of label sets (one per text); ``scores`` is an
(n texts, k verticals) similarity matrix whose columns follow ``names``.
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
import yaml

from shared.classification.tier_one import LABEL_MARGIN


class EvalDataError(ValueError):
    """A labelled file is missing, malformed, or uses labels the taxonomy does not have."""


NONE = "-"  # the primary "label" of a text that belongs to no vertical (``"labels": []``)


@dataclass(frozen=True)
class LabelledText:
    text: str
    labels: tuple[str, ...]  # primary label first; empty = about none of the verticals

    @property
    def primary(self) -> str:
        return self.labels[0] if self.labels else NONE


def load_labelled(path: Path, known: set[str] | None = None) -> list[LabelledText]:
    """Every line ``{"text": str, "labels": [str, ...]}``; a bad line fails the whole file with its
    line number (a silently skipped line would make numbers incomparable between runs). An empty
    list marks an off-topic text: real feeds have many, and a label on one is a false positive."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise EvalDataError(f"{path}: {exc}") from exc
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise EvalDataError(f"{path}:{number}: not JSON ({exc})") from exc
        text, labels = (item.get("text"), item.get("labels")) if isinstance(item, dict) else (None, None)
        if not isinstance(text, str) or not text.strip():
            raise EvalDataError(f"{path}:{number}: 'text' must be a non-empty string")
        if not isinstance(labels, list) or not all(isinstance(x, str) and x for x in labels):
            raise EvalDataError(f"{path}:{number}: 'labels' must be a list of label names")
        unknown = sorted(set(labels) - known) if known is not None else []
        if unknown:
            raise EvalDataError(f"{path}:{number}: labels {unknown} are not verticals of the taxonomy")
        rows.append(LabelledText(text, tuple(dict.fromkeys(labels))))
    if not rows:
        raise EvalDataError(f"{path}: no labelled texts")
    return rows


def stratified_split(rows: Sequence[LabelledText], held_out: float, seed: int) -> tuple[list[int], list[int]]:
    """(calibration indices, held-out indices), stratified by primary label and stable for a seed.
    Every label with at least two texts has at least one on each side."""
    if not 0.0 < held_out < 1.0:
        raise ValueError("held_out must be between 0 and 1")
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        by_label[row.primary].append(i)
    rng = random.Random(seed)
    calibrate, test = [], []
    for label in sorted(by_label):
        indices = by_label[label][:]
        rng.shuffle(indices)
        n_test = round(len(indices) * held_out)
        if len(indices) >= 2:
            n_test = min(max(n_test, 1), len(indices) - 1)
        test += indices[:n_test]
        calibrate += indices[n_test:]
    return sorted(calibrate), sorted(test)


def pick_examples(rows: Sequence[LabelledText], indices: Sequence[int], k: int, seed: int) -> dict[str, list[int]]:
    """Up to ``k`` indices per primary label (single-label texts first: clearer examples)."""
    by_label: dict[str, list[int]] = defaultdict(list)
    for i in indices:
        if rows[i].labels:
            by_label[rows[i].primary].append(i)
    rng = random.Random(seed)
    picked = {}
    for label in sorted(by_label):
        candidates = by_label[label][:]
        rng.shuffle(candidates)
        candidates.sort(key=lambda i: len(rows[i].labels))  # stable: shuffled within each size
        picked[label] = candidates[:k]
    return {label: chosen for label, chosen in picked.items() if chosen}


@dataclass
class VerticalQuality:
    precision: float
    recall: float
    f1: float
    support: int  # texts that carry the label
    predicted: int  # texts the classifier gave the label


@dataclass
class QualityReport:
    per_vertical: dict[str, VerticalQuality]
    micro: dict[str, float]
    macro: dict[str, float]
    top1_accuracy: float  # over texts that have a label
    confusions: list[tuple[str, str, int]]  # (gold primary, predicted top, count), most frequent first
    uncertain_share: float
    accuracy_confident: float | None  # top-1 accuracy where tier 1 was sure
    accuracy_uncertain: float | None  # ... and where it flagged the post for tier 2
    unlabelled_share: float  # texts that got no label at all
    texts: int
    off_topic_texts: int  # texts about none of the verticals
    off_topic_rejected: float | None  # ... that rightly got no label
    # Calibration of the decided labels' confidences (shared/classification/calibration.py): expected calibration
    # error of the raw confidence and of the one labels carry, and the latter's reliability table
    # (bin's lower edge, mean confidence, share right, labels).
    labels: int = 0
    ece_raw: float | None = None
    ece: float | None = None
    reliability: list[tuple[float, float, float, int]] = field(default_factory=list)
    reliability_raw: list[tuple[float, float, float, int]] = field(default_factory=list)

    def below(self, floor: float) -> list[str]:
        """Verticals with support whose F1 is under ``floor``, worst first."""
        low = [(q.f1, name) for name, q in self.per_vertical.items() if q.support and q.f1 < floor]
        return [name for _, name in sorted(low)]


def label_metrics(gold: Sequence[set[str]], predicted: Sequence[set[str]],
                  names: Sequence[str]) -> tuple[dict[str, VerticalQuality], dict[str, float], dict[str, float]]:
    """Per-vertical precision/recall/F1 plus micro (pooled counts) and macro (mean over verticals
    that appear in gold) averages. 0/0 counts as 0, never as a free 1."""
    if len(gold) != len(predicted):
        raise ValueError("gold and predicted differ in length")
    per = {}
    pooled = Counter()
    for name in names:
        tp = sum(1 for g, p in zip(gold, predicted) if name in g and name in p)
        fp = sum(1 for g, p in zip(gold, predicted) if name not in g and name in p)
        fn = sum(1 for g, p in zip(gold, predicted) if name in g and name not in p)
        pooled.update(tp=tp, fp=fp, fn=fn)
        per[name] = _quality(tp, fp, fn)
    micro_q = _quality(pooled["tp"], pooled["fp"], pooled["fn"])
    micro = {"precision": micro_q.precision, "recall": micro_q.recall, "f1": micro_q.f1}
    present = [q for q in per.values() if q.support]
    macro = {key: float(np.mean([getattr(q, key) for q in present])) if present else 0.0
             for key in ("precision", "recall", "f1")}
    return per, micro, macro


def _quality(tp: int, fp: int, fn: int) -> VerticalQuality:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return VerticalQuality(precision, recall, f1, tp + fn, tp + fp)


def top1_accuracy(gold: Sequence[set[str]], top: Sequence[str]) -> float:
    """Share of labelled texts whose best-scoring vertical is one of their labels."""
    labelled = [(g, t) for g, t in zip(gold, top) if g]
    return sum(t in g for g, t in labelled) / len(labelled) if labelled else 0.0


def confusion_pairs(primary: Sequence[str], gold: Sequence[set[str]], top: Sequence[str],
                    limit: int = 10) -> list[tuple[str, str, int]]:
    """Most frequent (true primary label, wrongly predicted top vertical) pairs; pass ``top`` =
    "" for a text that got no label (an off-topic text then counts only when it got one)."""
    pairs = Counter((p, t) for p, g, t in zip(primary, gold, top) if t and t not in g)
    return [(p, t, n) for (p, t), n in sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]]


# Pseudo-positives of the pooled threshold blended into each vertical's own: with ~10 positives a
# vertical's F1-optimal threshold is noisy. Measured on three splits of the creator set, shrinking
# with 10 raised held-out micro F1 by 1-3 points over per-vertical fits; neutral on BBC News.
SHRINK_POSITIVES = 10.0


def fit_thresholds(scores: np.ndarray, gold: np.ndarray, fallback: np.ndarray,
                   margin: float = LABEL_MARGIN, shrink: float = SHRINK_POSITIVES,
                   off_topic: np.ndarray | None = None) -> np.ndarray:
    """Per vertical, the threshold that maximises that vertical's F1 on (scores, gold) under the
    classifier's rule (a label also needs a score within ``margin`` of the text's best), pulled
    towards the one threshold that maximises micro F1 over all verticals, weighted by
    ``shrink`` pseudo-positives against the vertical's real positives.

    ``gold`` is a boolean (n, k) matrix; ``off_topic`` (n booleans) marks texts the classifier
    leaves unlabelled whatever the thresholds. Candidates are midpoints between consecutive
    distinct scores (a threshold exactly on a calibration score would be fragile); a vertical
    without a positive keeps ``fallback``. Ties go to the highest threshold: fewer, surer labels.
    """
    scores = np.asarray(scores, dtype=np.float64)
    gold = np.asarray(gold, dtype=bool)
    if scores.shape != gold.shape:
        raise ValueError(f"scores {scores.shape} and gold {gold.shape} differ")
    eligible = scores >= scores.max(axis=1, keepdims=True) - margin
    if off_topic is not None:
        eligible &= ~np.asarray(off_topic, dtype=bool)[:, None]
    pooled = _best_threshold(scores[eligible], gold[eligible], int(gold.sum())) if gold.any() else None
    fitted = np.asarray(fallback, dtype=np.float64).copy()
    for j in range(scores.shape[1]):
        positives = int(gold[:, j].sum())
        if positives == 0 or not eligible[:, j].any():
            continue
        own = _best_threshold(scores[eligible[:, j], j], gold[eligible[:, j], j], positives)
        fitted[j] = own if pooled is None else (positives * own + shrink * pooled) / (positives + shrink)
    return fitted.astype(np.float32)


def _best_threshold(scores: np.ndarray, gold: np.ndarray, positives: int) -> float:
    """The threshold on ``scores`` with the best F1 against ``gold`` (``positives`` counts also
    the gold positives that cannot be reached, e.g. outside the margin)."""
    values = np.unique(scores)
    candidates = np.concatenate([[values[0] - 1e-3], (values[:-1] + values[1:]) / 2, [values[-1] + 1e-3]])
    best_f1, best_t = -1.0, float(candidates[-1])
    for t in candidates[::-1]:  # high to low: the first of equal F1s is the highest threshold
        predicted = scores >= t
        f1 = 2 * int((predicted & gold).sum()) / (int(predicted.sum()) + positives)
        if f1 > best_f1 + 1e-12:
            best_f1, best_t = f1, float(t)
    return best_t


def gold_matrix(gold: Sequence[set[str]], names: Sequence[str]) -> np.ndarray:
    return np.array([[name in g for name in names] for g in gold], dtype=bool)


# --- taxonomy YAML rewrite ------------------------------------------------------------------------
# Line-based on purpose: a YAML library round trip would drop the file's comments, which document
# why a vertical is switched off. Every edit is checked by parsing before and after.

class YamlEditError(ValueError):
    """The taxonomy file does not have the layout this editor understands."""


def bump_version(version: str) -> str:
    """"3" -> "4", "2024.7" -> "2024.8", "beta" -> "beta.1"."""
    match = re.fullmatch(r"(.*?)(\d+)", version)
    if match:
        return f"{match.group(1)}{int(match.group(2)) + 1}"
    return f"{version}.1"


def rewrite_taxonomy(text: str, updates: Mapping[str, Mapping[str, object]],
                     blocks: Mapping[str, Mapping[str, object]] | None = None) -> str:
    """``text`` with the given fields set per vertical (``{"food": {"threshold": 0.31}}``), the
    given top-level mappings replaced (``{"calibration": {...}}``, written at the end of the file)
    and the taxonomy's version bumped. Other lines, comments and fields are left as they were."""
    before = yaml.safe_load(text)
    lines = text.splitlines()
    for vertical, fields in updates.items():
        for key, value in fields.items():
            lines = _set_vertical_field(lines, vertical, key, value)
    for key, mapping in (blocks or {}).items():
        lines = _set_top_level_block(lines, key, mapping)
    new_version = bump_version(str(before.get("version", "1")))
    lines = _set_top_level(lines, "version", _scalar(new_version))
    result = "\n".join(lines) + "\n"
    _check_rewrite({**before, **(blocks or {})}, yaml.safe_load(result), updates, new_version)
    return result


def _set_top_level_block(lines: list[str], key: str, mapping: Mapping[str, object]) -> list[str]:
    """Drop ``key:`` and its indented lines, then append it rendered as block YAML."""
    start = next((i for i, line in enumerate(lines) if re.match(r"^" + re.escape(key) + r":", line)), None)
    if start is not None:
        end = start + 1
        while end < len(lines) and (not lines[end].strip() or lines[end][0] in " #"):
            end += 1
        lines = lines[:start] + lines[end:]
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    rendered = yaml.safe_dump({key: dict(mapping)}, sort_keys=False, default_flow_style=False, width=100)
    return lines + rendered.rstrip("\n").splitlines()


def _vertical_block(lines: list[str], vertical: str) -> tuple[int, int, int]:
    """(first line, end line exclusive, indentation of the item's keys) of ``- name: vertical``."""
    pattern = re.compile(r"^(\s*)-\s+name:\s*['\"]?" + re.escape(vertical) + r"['\"]?\s*(#.*)?$")
    for i, line in enumerate(lines):
        match = pattern.match(line)
        if not match:
            continue
        dash = len(match.group(1))
        end = i + 1
        while end < len(lines):
            stripped = lines[end].strip()
            indent = len(lines[end]) - len(lines[end].lstrip())
            if stripped and not stripped.startswith("#") and indent <= dash:
                break
            end += 1
        while end > i + 1 and not lines[end - 1].strip():  # keep blank lines outside the block
            end -= 1
        return i, end, dash + 2
    raise YamlEditError(f"no '- name: {vertical}' item in the taxonomy file")


def _set_vertical_field(lines: list[str], vertical: str, key: str, value: object) -> list[str]:
    start, end, indent = _vertical_block(lines, vertical)
    rendered = _render_field(key, value, indent)
    key_re = re.compile(r"^\s{" + str(indent) + r"}" + re.escape(key) + r":")
    for i in range(start + 1, end):
        if key_re.match(lines[i]):
            stop = i + 1
            if not lines[i].split(":", 1)[1].split("#", 1)[0].strip():  # a block value follows
                while stop < end and _continues_block(lines[stop], indent):
                    stop += 1
            return lines[:i] + rendered + lines[stop:]
    return lines[:end] + rendered + lines[end:]


def _continues_block(line: str, indent: int) -> bool:
    """Whether ``line`` still belongs to a block value of a key at ``indent`` (deeper lines, or
    list items at the key's own indentation, which YAML allows)."""
    depth = len(line) - len(line.lstrip())
    return not line.strip() or depth > indent or (depth == indent and line.lstrip().startswith("- "))


def _render_field(key: str, value: object, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(value, list):
        if not value:
            return [f"{pad}{key}: []"]
        return [f"{pad}{key}:"] + [f"{pad}  - {_scalar(item)}" for item in value]
    return [f"{pad}{key}: {_scalar(value)}"]


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, int):
        return str(value)
    return orjson.dumps(str(value)).decode()  # a JSON string is a valid double-quoted YAML scalar


def _set_top_level(lines: list[str], key: str, rendered_value: str) -> list[str]:
    key_re = re.compile(r"^" + re.escape(key) + r":")
    for i, line in enumerate(lines):
        if key_re.match(line):
            return lines[:i] + [f"{key}: {rendered_value}"] + lines[i + 1:]
    for i, line in enumerate(lines):
        if line.startswith("name:"):
            return lines[:i + 1] + [f"{key}: {rendered_value}"] + lines[i + 1:]
    raise YamlEditError("no top-level 'name:' line in the taxonomy file")


def _check_rewrite(before: dict, after: dict, updates: Mapping[str, Mapping[str, object]], version: str) -> None:
    """The rewrite changed exactly the requested fields and the version; anything else is a bug."""
    expected = {**before, "version": version, "verticals": []}
    for item in before["verticals"]:
        changes = updates.get(item["name"], {})
        expected["verticals"].append({**item, **{k: _normalised(v) for k, v in changes.items()}})
    if after != expected:
        raise YamlEditError("rewriting the taxonomy would change more than the requested fields")


def _normalised(value: object) -> object:
    return round(value, 4) if isinstance(value, float) else value


def write_report(out: Path, report: dict, markdown: str) -> None:
    """An evaluation's result beside each other: <out>.json (the numbers) and <out>.md (the table), printed too."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    out.with_suffix(".md").write_text(markdown)
    print(markdown, end="")
