"""Confidence calibration (shared/classification/calibration.py) and its place in the taxonomy YAML."""

from __future__ import annotations

import numpy as np
import yaml

from ops.eval_core import rewrite_taxonomy
from shared.classification.calibration import IDENTITY, expected_calibration_error, fit_calibration, reliability_table
from shared.classification.taxonomy import Taxonomy
from shared.classification.tier_one import VerticalClassifier


def _overconfident_labels(seed: int, n: int = 2000):
    """Best labels right 80% of the time, second labels 30%, all far above their thresholds."""
    rng = np.random.default_rng(seed)
    similarity = np.column_stack([rng.uniform(0.40, 0.50, n), rng.uniform(0.37, 0.39, n)])
    thresholds = np.array([0.2, 0.2])
    decided = np.ones((n, 2), dtype=bool)
    gold = np.column_stack([rng.random(n) < 0.8, rng.random(n) < 0.3])
    return similarity, thresholds, decided, gold


def test_fit_brings_an_overconfident_classifier_to_its_accuracy():
    similarity, thresholds, decided, gold = _overconfident_labels(0)
    fitted = fit_calibration(["a", "b"], similarity, thresholds, decided, gold, "synthetic")
    test_sim, _, _, test_gold = _overconfident_labels(1)
    raw = IDENTITY.confidence(["a", "b"], test_sim, thresholds).ravel()
    calibrated = fitted.confidence(["a", "b"], test_sim, thresholds)
    assert expected_calibration_error(raw, test_gold.ravel()) > 0.3
    assert expected_calibration_error(calibrated.ravel(), test_gold.ravel()) < 0.03
    assert abs(calibrated[:, 0].mean() - 0.8) < 0.03 and abs(calibrated[:, 1].mean() - 0.3) < 0.03
    assert fitted.labels == 4000 and fitted.fitted_on == "synthetic"


def test_ece_and_reliability_table_by_hand():
    confidence = np.array([0.95, 0.95, 0.15, 0.15])
    right = np.array([True, False, False, False])
    assert reliability_table(confidence, right) == [(0.1, 0.15, 0.0, 2), (0.9, 0.95, 0.5, 2)]
    assert np.isclose(expected_calibration_error(confidence, right), (2 * 0.15 + 2 * 0.45) / 4)


def test_all_right_or_none_right_keeps_the_raw_confidence():
    similarity, thresholds, decided, _ = _overconfident_labels(0, 50)
    fitted = fit_calibration(["a", "b"], similarity, thresholds, decided, np.ones((50, 2), dtype=bool))
    assert (fitted.margin_weight, fitted.top_weight, fitted.intercept) == (1.0, 0.0, 0.0)


TAXONOMY = """\
name: t
version: "2"
# a comment that must survive
verticals:
  - name: a
    description: Apples.
  - name: b
    description: Bananas.
"""


def test_calibration_is_written_to_the_yaml_and_read_by_the_classifier():
    similarity, thresholds, decided, gold = _overconfident_labels(0, 200)
    fitted = fit_calibration(["a", "b"], similarity, thresholds, decided, gold, "synthetic")
    text = rewrite_taxonomy(TAXONOMY, {"a": {"threshold": 0.2}}, {"calibration": fitted.model_dump()})
    again = rewrite_taxonomy(text, {}, {"calibration": fitted.model_dump()})  # replaced, not appended twice
    assert "# a comment that must survive" in again and again.count("calibration:") == 1
    taxonomy = Taxonomy.model_validate(yaml.safe_load(again))
    assert taxonomy.version == "4" and taxonomy.calibration == fitted
    vectors = {"a": np.eye(3, dtype=np.float32)[:1], "b": np.eye(3, dtype=np.float32)[1:2]}
    classifier = VerticalClassifier(taxonomy, vectors)
    label = classifier.classify(np.array([[1.0, 0.0, 0.0]], dtype=np.float32))[0].labels[0]
    expected = fitted.confidence(["a", "b"], np.array([[1.0, 0.0]]), classifier.thresholds)[0, 0]
    assert label.vertical == "a" and np.isclose(label.confidence, expected, atol=1e-4)
