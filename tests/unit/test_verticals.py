"""Tier-1 decision rule and the drift window, on hand-made vectors (the model is tested in
tests/integration/test_tier1_quality.py)."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import REGISTRY

from shared.classification.taxonomy import Taxonomy, VerticalLabel
from shared.classification.tier_one import (
    NO_LABEL,
    TierOneResult,
    VerticalClassifier,
    VerticalDrift,
    description_facets,
    label_mask,
)

AXES = np.eye(4, dtype=np.float32)


def taxonomy(**thresholds: float) -> Taxonomy:
    verticals = [{"name": n, "description": f"{n} things", "threshold": thresholds.get(n)}
                 for n in ("food", "pets", "cars")]
    verticals.append({"name": "off", "description": "switched off", "enabled": False})
    return Taxonomy.model_validate({"name": "demo", "version": "7", "verticals": verticals})


def post(*weights: float) -> np.ndarray:
    vector = np.array(weights + (0.0,) * (4 - len(weights)), dtype=np.float32)
    return vector / np.linalg.norm(vector)


def classifier(examples: dict | None = None, off_topic: np.ndarray | None = None,
               **thresholds: float) -> VerticalClassifier:
    descriptions = {"food": AXES[[0]], "pets": AXES[[1]], "cars": AXES[[2]], "off": AXES[[3]]}
    return VerticalClassifier(taxonomy(**thresholds), descriptions, examples, off_topic=off_topic)


def test_label_mask_needs_the_threshold_and_the_margin_to_the_best_and_caps_the_count():
    thresholds = np.array([0.3, 0.3, 0.3, 0.3])
    scores = np.array([
        [0.80, 0.78, 0.20, 0.79],  # three within the margin, all over threshold
        [0.80, 0.60, 0.50, 0.10],  # only the best is within 0.04
        [0.25, 0.24, 0.10, 0.00],  # best under its threshold: nothing
    ])
    mask = label_mask(scores, thresholds, margin=0.04, max_labels=2)
    assert mask.tolist() == [[True, False, False, True], [True, False, False, False], [False] * 4]
    blocked = label_mask(scores, thresholds, margin=0.04, off_topic=np.array([False, True, False]))
    assert blocked[0].sum() == 3 and not blocked[1].any()


def test_classify_labels_best_first_with_taxonomy_version_and_skips_disabled_verticals():
    results = classifier(food=0.5, pets=0.5, cars=0.5).classify(np.stack([post(1, 0.95), post(0, 0, 1), post(0, 0, 0, 1)]))
    both, cars, nothing = results
    assert [label.vertical for label in both.labels] == ["food", "pets"]
    assert all(isinstance(label, VerticalLabel) and label.version == "7" and label.tier == "embedding"
               for label in both.labels)
    assert both.labels[0].confidence > both.labels[1].confidence > 0.5
    assert [label.vertical for label in cars.labels] == ["cars"] and not cars.uncertain
    assert set(nothing.scores) == {"food", "pets", "cars"}  # "off" is disabled: never scored
    assert nothing.labels == () and cars.top == ("cars", 1.0)


def test_close_calls_and_scores_near_the_threshold_are_flagged_for_tier_two():
    near_threshold, close_call, clear = classifier(food=0.7, pets=0.7, cars=0.7).classify(
        np.stack([post(1, 0, 1), post(1, 0.99), post(1, 0.1)]))
    assert near_threshold.uncertain  # 0.707 vs threshold 0.7: confidence ~0.54
    assert close_call.uncertain  # food and pets within MIN_MARGIN
    assert not clear.uncertain


def test_posts_closer_to_the_off_topic_prototype_get_no_label():
    # the off-topic prototype points along the 4th axis (the disabled vertical's, which is never scored)
    chatter, recipe, borderline = classifier(off_topic=AXES[[3]], food=0.1, pets=0.1, cars=0.1).classify(
        np.stack([post(0.2, 0, 0, 1), post(1, 0, 0, 0.5), post(1, 0, 0, 1.07)]))
    assert chatter.labels == () and chatter.top[0] == "food"  # scores stay visible for tier 2
    assert [label.vertical for label in recipe.labels] == ["food"]
    assert borderline.labels == () and borderline.uncertain  # off-topic by 0.048: past 0.04, by less than MIN_MARGIN
    assert classifier(food=0.1).off_topic_rows(post(0, 0, 0, 1)) is None  # no list, no off-topic rule


def test_examples_pull_a_prototype_towards_them():
    plain = classifier().scores(post(1, 0, 0, 1))[0]
    pulled = classifier({"food": AXES[[3]] * 1.0}).scores(post(1, 0, 0, 1))[0]
    assert pulled[0] > plain[0]  # food's prototype moved towards the example's direction
    assert pulled[1] == pytest.approx(plain[1])


def test_description_facets_split_lists_but_not_sentences():
    assert description_facets("Makeup, skincare, hair care and nails.") == ["Makeup", "skincare", "hair care", "nails"]
    assert description_facets("Anything about our brand") == []


def result(*verticals: str, taxonomy_name: str = "drift-test") -> TierOneResult:
    labels = tuple(VerticalLabel(taxonomy=taxonomy_name, vertical=v, confidence=0.9) for v in verticals)
    return TierOneResult(taxonomy_name, "1", labels, {}, False)


def gauge(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_drift_window_slides_and_exports_shares_and_distance():
    drift = VerticalDrift(window=4)
    drift.observe([result("food"), result("food"), result("pets"), result()])
    assert drift.shares("drift-test") == {"food": 0.5, "pets": 0.25, NO_LABEL: 0.25}
    assert drift.distance("drift-test") == 0.0  # the first full window is the reference
    assert gauge("vertical_predicted_share", taxonomy="drift-test", vertical="food") == 0.5
    assert gauge("vertical_window_posts", taxonomy="drift-test") == 4
    # per post, one result per taxonomy (the TierOneLabeller shape) is accepted too
    drift.observe([[result("cars")], [result("cars")], [result("cars")], [result("cars", "food")]])
    assert drift.shares("drift-test") == {"cars": 1.0, "food": 0.25}
    assert gauge("vertical_predicted_share", taxonomy="drift-test", vertical="pets") == 0.0  # left the window
    # reference food .5 / pets .25 / none .25 vs now cars .8 / food .2 (normalised): TV distance
    expected = 0.5 * (abs(0.5 - 0.2) + 0.25 + 0.25 + 0.8)
    assert drift.distance("drift-test") == pytest.approx(expected)
    assert gauge("vertical_drift_distance", taxonomy="drift-test") == pytest.approx(expected)
    drift.set_reference("drift-test")
    assert drift.distance("drift-test") == 0.0


def test_drift_keeps_taxonomies_apart_and_has_no_distance_before_a_full_window():
    drift = VerticalDrift(window=10)
    drift.observe([result("food", taxonomy_name="drift-a"), result("pets", taxonomy_name="drift-b")])
    assert drift.shares("drift-a") == {"food": 1.0} and drift.shares("drift-b") == {"pets": 1.0}
    assert drift.distance("drift-a") is None and drift.shares("unknown") == {}
    with pytest.raises(ValueError):
        VerticalDrift(window=0)
