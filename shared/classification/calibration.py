"""Label confidences that mean what they say: a label shown at 0.8 is right about 80% of the time.

Tier 1's raw confidence is a logistic of a label's distance to its vertical's threshold. It was
chosen by hand and is over-confident: on the held-out halves of the two labelled sets its labels
averaged 0.92 and 0.90 confidence while 82% and 76% of them were right (``make eval`` reports the
expected calibration error, ECE, before and after). A calibration is data per taxonomy, fitted by
``make eval --calibrate`` on the calibration half and stored in the taxonomy's YAML (``calibration:``),
so it is versioned with the thresholds it was fitted under.

The model is a logistic regression over two features of each decided label: its distance to the
threshold in ``CONFIDENCE_SCALE`` units (the raw confidence's own argument) and whether it is the
post's best-scoring vertical (a second label is right far less often than the first at the same
distance; with the distance alone held-out ECE was 0.053 / 0.085, with both 0.012 / 0.053). Each
vertical may shift the intercept where it has labels enough, shrunk towards 0 by a prior worth
``PRIOR_LABELS`` labels, so a vertical with few labels keeps the pooled fit. numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

# Similarity units per logit of the raw confidence (shared/classification/tier_one.py uses the same scale).
CONFIDENCE_SCALE = 0.04
# Weight of the prior that pulls a vertical's intercept shift to 0, counted in labels: a vertical
# with 10 decided labels moves about a third of the way to its own fit.
PRIOR_LABELS = 20.0
_FEATURE_PRIOR = 1e-3  # a whisper of L2 on the pooled weights: separable data must not diverge


class LabelCalibration(BaseModel):
    """confidence = logistic(margin_weight * distance + top_weight * is_best + intercept + shift[v])."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    margin_weight: float = 1.0
    top_weight: float = 0.0
    intercept: float = 0.0
    vertical_shift: dict[str, float] = Field(default_factory=dict)
    # Where it came from (documentation only): data file, split seed, number of labels.
    fitted_on: str = ""
    labels: int = Field(0, ge=0)

    def confidence(self, names: Sequence[str], similarity: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
        """(n, k) calibrated confidences for every (post, vertical) of a similarity matrix."""
        logits = self._logits(names, *label_features(similarity, thresholds))
        return 1.0 / (1.0 + np.exp(-logits))

    def _logits(self, names: Sequence[str], distance: np.ndarray, is_best: np.ndarray) -> np.ndarray:
        shift = np.array([self.vertical_shift.get(name, 0.0) for name in names], dtype=np.float64)
        return self.margin_weight * distance + self.top_weight * is_best + self.intercept + shift


IDENTITY = LabelCalibration()  # the raw confidence: what a taxonomy without a calibration shows


def label_features(similarity: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distance to the threshold in CONFIDENCE_SCALE units, 1.0 where the vertical is the post's best)."""
    similarity = np.atleast_2d(np.asarray(similarity, dtype=np.float64))
    distance = (similarity - np.asarray(thresholds, dtype=np.float64)) / CONFIDENCE_SCALE
    is_best = (similarity >= similarity.max(axis=1, keepdims=True)).astype(np.float64)
    return distance, is_best


def fit_calibration(names: Sequence[str], similarity: np.ndarray, thresholds: np.ndarray, decided: np.ndarray,
                    gold: np.ndarray, fitted_on: str = "") -> LabelCalibration:
    """Fit on the labels tier 1 decided (``decided``, (n, k) booleans) against ``gold`` ((n, k)
    booleans: which of them are right). Needs right and wrong labels both; else the raw confidence."""
    distance, is_best = label_features(similarity, thresholds)
    rows, cols = np.nonzero(np.asarray(decided, dtype=bool))
    right = np.asarray(gold, dtype=bool)[rows, cols].astype(np.float64)
    if len(right) == 0 or right.all() or not right.any():
        return IDENTITY.model_copy(update={"fitted_on": fitted_on, "labels": int(len(right))})
    features = np.column_stack([distance[rows, cols], is_best[rows, cols], np.ones(len(rows))])
    weights = _logistic(features, right, prior=np.array([_FEATURE_PRIOR, _FEATURE_PRIOR, 0.0]) * len(right))
    pooled = features @ weights
    shift = {}
    for j, name in enumerate(names):
        mine = cols == j
        if mine.any():
            shift[name] = round(_intercept_shift(pooled[mine], right[mine]), 4)
    return LabelCalibration(margin_weight=round(float(weights[0]), 4), top_weight=round(float(weights[1]), 4),
                            intercept=round(float(weights[2]), 4), vertical_shift=shift, fitted_on=fitted_on,
                            labels=int(len(right)))


def _logistic(features: np.ndarray, target: np.ndarray, prior: np.ndarray, steps: int = 50) -> np.ndarray:
    """L2-regularised logistic regression by Newton's method (a handful of features: exact, fast)."""
    weights = np.zeros(features.shape[1])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-features @ weights))
        gradient = features.T @ (p - target) + prior * weights
        hessian = (features * (p * (1 - p))[:, None]).T @ features + np.diag(prior) + 1e-9 * np.eye(len(weights))
        step = np.linalg.solve(hessian, gradient)
        weights -= step
        if np.abs(step).max() < 1e-8:
            break
    return weights


def _intercept_shift(offset: np.ndarray, target: np.ndarray) -> float:
    """One vertical's intercept shift on top of the pooled logits, with a Gaussian prior at 0."""
    shift = 0.0
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(offset + shift)))
        gradient = float((p - target).sum() + shift * PRIOR_LABELS / 4)
        hessian = float((p * (1 - p)).sum() + PRIOR_LABELS / 4)
        step = gradient / hessian
        shift -= step
        if abs(step) < 1e-8:
            break
    return shift


def expected_calibration_error(confidence: np.ndarray, right: np.ndarray, bins: int = 10) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by labels per bin."""
    confidence = np.asarray(confidence, dtype=np.float64)
    if len(confidence) == 0:
        return 0.0
    table = reliability_table(confidence, right, bins)
    return float(sum(count * abs(acc - conf) for _, conf, acc, count in table) / len(confidence))


def reliability_table(confidence: np.ndarray, right: np.ndarray,
                      bins: int = 10) -> list[tuple[float, float, float, int]]:
    """Per non-empty bin: (bin's lower edge, mean confidence, share right, labels)."""
    confidence = np.asarray(confidence, dtype=np.float64)
    right = np.asarray(right, dtype=np.float64)
    which = np.clip((confidence * bins).astype(int), 0, bins - 1)
    out = []
    for b in range(bins):
        inside = which == b
        if inside.any():
            out.append((b / bins, float(confidence[inside].mean()), float(right[inside].mean()), int(inside.sum())))
    return out
