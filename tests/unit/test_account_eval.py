"""The account-search eval's pure parts: reading WordNet's data.noun, drawing accounts, scoring ranks."""

from __future__ import annotations

import numpy as np
import pytest

from ops.account_data import build_accounts, descendants, parse_data_noun
from ops.eval_accounts import EvalAccount, GridPoint, difference_interval, pick, reciprocal_ranks, score, specialist_losses, split_accounts
from shared.account_vectors import FusionWeights

# wndb(5WN) lines: offset, lex file, type, word count (hex), words + lex ids, pointer count, pointers | gloss
DATA_NOUN = [
    "  1 This software and database is being provided to you, the LICENSEE, by",
    "00000001 05 n 01 animal 0 002 ~ 00000002 n 0000 ~ 00000003 n 0000 | a living organism; \"animals move\"",
    "00000002 05 n 02 dog 0 domestic_dog 0 002 @ 00000001 n 0000 ~i 00000004 n 0000 | a domesticated canid",
    "00000003 05 n 01 cat(p) 0 001 @ 00000001 n 0000 | a small feline",
    "00000004 05 n 01 Lassie 0 001 @i 00000002 n 0000 | a famous collie",
]


def test_data_noun_gives_words_glosses_and_hyponyms():
    synsets = parse_data_noun(DATA_NOUN)
    assert set(synsets) == {"00000001", "00000002", "00000003", "00000004"}
    assert synsets["00000002"].title == "dog, domestic dog"
    assert synsets["00000001"].gloss == "a living organism"  # the quoted example is not the definition
    assert synsets["00000003"].words == ("cat",)
    assert synsets["00000002"].children == ("00000004",)  # instances count, hypernyms do not
    assert descendants(synsets, "00000001") == ["00000002", "00000004", "00000003"]


def _tree(area_children: int = 4, topic_size: int = 30) -> list[str]:
    """A synthetic hierarchy: one area with area_children topics of topic_size leaves each."""
    lines, leaf = [], 1000
    topics = [f"{100 + t:08d}" for t in range(area_children)]
    lines.append(f"00000001 05 n 01 area 0 {len(topics):03d} " + " ".join(f"~ {t} n 0000" for t in topics) + " | the area")
    for t, topic in enumerate(topics):
        leaves = [f"{leaf + i:08d}" for i in range(topic_size)]
        leaf += topic_size
        lines.append(f"{topic} 05 n 01 topic{t} 0 {len(leaves):03d} " + " ".join(f"~ {x} n 0000" for x in leaves)
                     + f" | topic number {t}")
        lines += [f"{x} 05 n 01 item{x} 0 000 | an item of topic {t}" for x in leaves]
    return lines


def test_an_area_gives_three_specialists_and_a_generalist_with_held_out_queries(monkeypatch):
    monkeypatch.setattr("ops.account_data.AREA_SIZE", (50, 500))
    rows = build_accounts(parse_data_noun(_tree()), areas=1, seed=1)
    breadth = {r["account"]: r["breadth"] for r in rows}
    assert sorted(breadth.values()) == ["generalist", "specialist", "specialist", "specialist"]
    by_account: dict[str, list[dict]] = {}
    for row in rows:
        by_account.setdefault(row["account"], []).append(row)
    for account, posts in by_account.items():
        queries = [p for p in posts if p["query"]]
        assert len(queries) >= 3 and len(queries) < len(posts)
    titles = [r["title"] for r in rows]
    assert len(titles) == len(set(titles))  # no synset is posted twice, so no query is also indexed
    specialist_topics = {r["topic"] for r in rows if r["breadth"] == "specialist"}
    generalist_text = " ".join(r["description"] for r in rows if r["breadth"] == "generalist")
    assert all(f"topic {t[-1]}" in generalist_text for t in specialist_topics)  # it covers them too
    assert build_accounts(parse_data_noun(_tree()), areas=1, seed=1) == rows  # deterministic


def test_scores_count_reciprocal_ranks_within_the_cutoff():
    spec = EvalAccount(1, "s", "specialist", "a")
    gen = EvalAccount(2, "g", "generalist", "a")
    results = [(spec, [1, 2]), (spec, [2, 1]), (gen, [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 2])]
    scores = score(results, {"a": 2})
    assert scores.mrr_at_10 == pytest.approx((1 + 0.5 + 0) / 3, abs=1e-4)
    assert scores.hit_at_1 == pytest.approx(1 / 3, abs=1e-4)
    assert scores.recall_at_10 == pytest.approx(2 / 3, abs=1e-4)
    assert scores.specialist_wins == 0.5 and scores.generalist_mrr_at_10 == 0.0


def test_specialist_losses_count_where_the_reference_won_and_the_method_did_not():
    spec = EvalAccount(1, "s", "specialist", "a")
    reference = [(spec, [1, 2]), (spec, [2, 1]), (spec, [1, 2])]
    method = [(spec, [2, 1]), (spec, [1, 2]), (spec, [2, 1])]
    assert specialist_losses(reference, method, {"a": 2}) == {"queries": 2, "accounts": 1, "specialist_accounts": 1}


def test_the_split_halves_specialists_and_generalists_and_is_seeded():
    accounts = [EvalAccount(i, f"a{i}", "generalist" if i % 4 == 0 else "specialist", f"area{i // 4}")
                for i in range(1, 49)]
    tuning = split_accounts(accounts, seed=15)
    specialists = {a.account_id for a in accounts if a.breadth == "specialist"}
    assert len(tuning & specialists) == 18 and len(tuning - specialists) == 6
    assert split_accounts(accounts, seed=15) == tuning
    assert split_accounts(accounts, seed=16) != tuning


def _point(mrr: float, losses: int, centroid: float = 0.5) -> GridPoint:
    return GridPoint(weights=FusionWeights(centroid=centroid, themes=1 - centroid, terms=0.0),
                     mrr_at_10={"titles": mrr, "topics": mrr}, specialist_losses=losses)


def test_the_pick_is_the_best_tuning_mrr_among_points_without_specialist_losses():
    points = [_point(0.9, 2, 0.4), _point(0.7, 0, 0.5), _point(0.8, 0, 0.6), _point(0.8, 0, 0.7)]
    assert pick(points).weights.centroid == 0.6  # 0.9 loses specialists; the first of the tied 0.8s
    assert pick([_point(0.9, 2, 0.4), _point(0.95, 1, 0.5)]).weights.centroid == 0.5  # none clean: fewest losses


def test_the_difference_interval_is_paired_and_excludes_zero_only_for_a_steady_gain():
    reference = np.linspace(0.1, 1.0, 50)
    assert difference_interval(reference, reference) == {"difference": 0.0, "low": 0.0, "high": 0.0}
    steady = difference_interval(reference + 0.1, reference)
    assert steady["difference"] == pytest.approx(0.1) and steady["low"] == pytest.approx(0.1)
    noisy = difference_interval(reference + np.where(np.arange(50) % 2, 0.3, -0.28), reference)
    assert noisy["low"] < 0 < noisy["high"]


def test_reciprocal_ranks_stop_at_the_cutoff():
    spec = EvalAccount(1, "s", "specialist", "a")
    assert reciprocal_ranks([(spec, [1]), (spec, [2, 1]), (spec, list(range(2, 12)) + [1])]).tolist() == [1.0, 0.5, 0.0]
