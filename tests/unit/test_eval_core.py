"""make eval's pure parts: metrics, splits, threshold calibration, the taxonomy YAML rewrite."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from ops.eval_core import (
    NONE,
    EvalDataError,
    LabelledText,
    YamlEditError,
    bump_version,
    confusion_pairs,
    fit_thresholds,
    label_metrics,
    load_labelled,
    pick_examples,
    rewrite_taxonomy,
    stratified_split,
    top1_accuracy,
)
from shared.classification.taxonomy import Taxonomy


def test_label_metrics_by_hand():
    gold = [{"a"}, {"a", "b"}, {"b"}, {"c"}, set()]
    predicted = [{"a"}, {"a"}, {"a"}, set(), {"b"}]
    per, micro, macro = label_metrics(gold, predicted, ["a", "b", "c"])
    # a: tp 2, fp 1, fn 0; b: tp 0, fp 1, fn 2; c: tp 0, fp 0, fn 1
    assert per["a"].precision == pytest.approx(2 / 3) and per["a"].recall == 1.0
    assert per["a"].f1 == pytest.approx(0.8) and per["a"].support == 2 and per["a"].predicted == 3
    assert (per["b"].precision, per["b"].recall, per["b"].f1) == (0.0, 0.0, 0.0)
    assert per["c"].f1 == 0.0 and per["c"].predicted == 0  # 0/0 precision is 0, not a free 1
    assert micro["precision"] == pytest.approx(2 / 4) and micro["recall"] == pytest.approx(2 / 5)
    assert micro["f1"] == pytest.approx(2 * 0.5 * 0.4 / 0.9)
    assert macro["f1"] == pytest.approx(0.8 / 3)


def test_top1_accuracy_and_confusions_skip_off_topic_texts_unless_labelled():
    gold = [{"a"}, {"b"}, {"b"}, set(), set()]
    top = ["a", "a", "a", "b", ""]
    assert top1_accuracy(gold, top) == pytest.approx(1 / 3)  # over the three texts that have a label
    primary = ["a", "b", "b", NONE, NONE]
    assert confusion_pairs(primary, gold, top) == [("b", "a", 2), (NONE, "b", 1)]


def test_stratified_split_is_disjoint_stable_and_covers_each_label():
    rows = [LabelledText(f"t{i}", (label,)) for i, label in enumerate("a" * 10 + "b" * 4 + "c" * 2)]
    rows.append(LabelledText("off", ()))
    calibration, held_out = stratified_split(rows, 0.5, seed=3)
    assert sorted(calibration + held_out) == list(range(len(rows)))
    assert not set(calibration) & set(held_out)
    for label in "abc":
        assert any(rows[i].primary == label for i in calibration) and any(rows[i].primary == label for i in held_out)
    assert sum(rows[i].primary == "a" for i in held_out) == 5
    assert stratified_split(rows, 0.5, seed=3) == (calibration, held_out)
    assert stratified_split(rows, 0.5, seed=4) != (calibration, held_out)
    with pytest.raises(ValueError):
        stratified_split(rows, 1.0, seed=0)


def test_pick_examples_takes_k_per_label_from_the_given_part_single_labels_first():
    rows = [LabelledText("a1", ("a", "b")), LabelledText("a2", ("a",)), LabelledText("a3", ("a",)),
            LabelledText("b1", ("b",)), LabelledText("x", ()), LabelledText("a4", ("a",))]
    picked = pick_examples(rows, [0, 1, 2, 3, 4], k=2, seed=0)
    assert set(picked) == {"a", "b"}  # the off-topic text is never an example
    assert sorted(picked["a"]) == [1, 2]  # the two-label text comes after single-label ones; 5 was not offered
    assert picked["b"] == [3]


def test_fit_thresholds_on_a_synthetic_score_matrix():
    # column 0 separates at 0.5; column 1 positives are mixed with a negative; column 2 has none
    scores = np.array([
        [0.9, 0.2, 0.1],
        [0.8, 0.1, 0.0],
        [0.3, 0.7, 0.2],
        [0.2, 0.6, 0.1],
        [0.4, 0.65, 0.3],
    ])
    gold = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 0]], dtype=bool)
    fallback = np.array([0.25, 0.25, 0.25], dtype=np.float32)
    own = fit_thresholds(scores, gold, fallback, margin=1.0, shrink=0.0)
    assert own[0] == pytest.approx(0.6)  # midway between the best negative (0.4) and worst positive (0.8)
    assert own[1] == pytest.approx(0.4)  # F1 0.8 taking the 0.65 negative beats F1 0.67 without
    assert own[2] == pytest.approx(0.25)  # no positive: the fallback stays
    half = fit_thresholds(scores, gold, fallback, margin=1.0, shrink=2.0)  # 2 positives + 2 pseudo
    pooled = 2 * half[:2] - own[:2]  # solve (2 * own + 2 * pooled) / 4 = half for pooled
    assert pooled[0] == pytest.approx(pooled[1])  # both pulled towards one pooled threshold
    # With a 0.05 margin, column 0 of rows 2-4 is never within reach of its row's best score, so
    # those negatives cannot be false positives and the threshold may sit just under 0.8.
    narrow = fit_thresholds(scores, gold, fallback, margin=0.05, shrink=0.0)
    assert narrow[0] == pytest.approx(0.8 - 1e-3)
    with pytest.raises(ValueError):
        fit_thresholds(scores, gold[:, :2], fallback)


def test_texts_the_off_topic_rule_leaves_unlabelled_cannot_be_false_positives():
    scores = np.array([[0.9], [0.5], [0.6], [0.55]])
    gold = np.array([[True], [True], [False], [False]])
    fallback = np.array([0.3], dtype=np.float32)
    # Counting the two negatives, taking 0.5 costs as much as it gains: the higher threshold wins.
    assert fit_thresholds(scores, gold, fallback, shrink=0.0)[0] == pytest.approx(0.75)
    # The off-topic rule removes them anyway, so the threshold may go under the 0.5 positive.
    blocked = fit_thresholds(scores, gold, fallback, shrink=0.0, off_topic=np.array([False, False, True, True]))
    assert blocked[0] < 0.5


def test_load_labelled_accepts_off_topic_and_names_the_bad_line(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text('{"text": "soup", "labels": ["food"]}\n\n{"text": "hello all", "labels": []}\n')
    rows = load_labelled(good, known={"food"})
    assert rows == [LabelledText("soup", ("food",)), LabelledText("hello all", ())]
    assert rows[1].primary == NONE
    cases = {
        '{"text": "soup", "labels": ["food"]}\nnot json\n': "bad.jsonl:2: not JSON",
        '{"text": "", "labels": ["food"]}\n': "'text' must be a non-empty string",
        '{"text": "soup", "labels": "food"}\n': "'labels' must be a list",
        '{"text": "soup", "labels": ["cars"]}\n': "labels ['cars'] are not verticals",
        "\n": "no labelled texts",
    }
    for content, message in cases.items():
        bad = tmp_path / "bad.jsonl"
        bad.write_text(content)
        with pytest.raises(EvalDataError, match=message.replace("[", r"\[").replace("]", r"\]")):
            load_labelled(bad, known={"food"})
    with pytest.raises(EvalDataError):
        load_labelled(tmp_path / "missing.jsonl")


TAXONOMY_YAML = """\
# Why this taxonomy exists (this comment must survive a rewrite).
name: demo
description: Two verticals.
verticals:
  - name: food
    description: Recipes and restaurants.
    keywords: [soup, bread]
    enabled: true
    examples:
      - "Old example one"
      - "Old example two"
    threshold: 0.2000

  # pets are hard to tell from comedy
  - name: pets
    description: Dogs and cats.
"""


def test_rewrite_sets_fields_keeps_comments_and_bumps_the_version():
    text = rewrite_taxonomy(TAXONOMY_YAML, {
        "food": {"threshold": 0.31234, "examples": ['New "quoted" example']},
        "pets": {"threshold": 0.25, "enabled": False},
    })
    assert "# Why this taxonomy exists" in text and "# pets are hard to tell from comedy" in text
    data = yaml.safe_load(text)
    assert data["version"] == "2"
    food, pets = data["verticals"]
    assert food == {"name": "food", "description": "Recipes and restaurants.", "keywords": ["soup", "bread"],
                    "enabled": True, "examples": ['New "quoted" example'], "threshold": 0.3123}
    assert pets == {"name": "pets", "description": "Dogs and cats.", "threshold": 0.25, "enabled": False}
    Taxonomy.model_validate(data)
    again = yaml.safe_load(rewrite_taxonomy(text, {"food": {"examples": []}}))
    assert again["version"] == "3" and again["verticals"][0]["examples"] == []


def test_rewrite_refuses_an_unknown_vertical_and_leaves_nothing_half_done():
    with pytest.raises(YamlEditError, match="no '- name: cars'"):
        rewrite_taxonomy(TAXONOMY_YAML, {"cars": {"threshold": 0.3}})


@pytest.mark.parametrize(("before", "after"), [("1", "2"), ("9", "10"), ("2024.7", "2024.8"), ("beta", "beta.1")])
def test_bump_version(before, after):
    assert bump_version(before) == after


def test_an_eval_report_is_written_as_json_and_markdown_side_by_side(tmp_path, capsys):
    import orjson

    from ops.eval_core import write_report

    write_report(tmp_path / "results" / "run", {"macro_f1": 0.75}, "| f1 | 0.75 |\n")
    assert orjson.loads((tmp_path / "results" / "run.json").read_bytes()) == {"macro_f1": 0.75}
    assert (tmp_path / "results" / "run.md").read_text() == "| f1 | 0.75 |\n"
    assert capsys.readouterr().out == "| f1 | 0.75 |\n"
