"""The pure core of account search: the account's vectors and the weighted parts of a fused query."""

from __future__ import annotations

import numpy as np
import pytest

from shared.account_vectors import (
    CENTROID_VECTOR,
    TERMS_VECTOR,
    THEMES_VECTOR,
    AccountVectors,
    FUSION,
    FusionWeights,
    account_vectors,
    centroid,
    fused_queries,
    fused_score,
    term_shares,
    theme_centres,
)
from shared.vectorstore import SparseVector


def _unit(*values: float) -> np.ndarray:
    v = np.asarray(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_the_centroid_is_the_normalised_mean_of_normalised_posts():
    vectors = np.stack([_unit(1, 0, 0) * 5, _unit(0, 1, 0)])  # length must not weigh a post more
    assert centroid(vectors) == pytest.approx(_unit(1, 1, 0))
    assert np.linalg.norm(centroid(vectors)) == pytest.approx(1.0)


def test_each_post_joins_its_nearest_medoid_and_a_theme_is_its_members_mean():
    posts = np.stack([_unit(1, 0.1, 0), _unit(1, -0.1, 0), _unit(0, 0, 1), _unit(0, 0.2, 1)])
    centres = theme_centres(posts, [0, 2])
    assert centres[0] == pytest.approx(_unit(1, 0, 0), abs=1e-6)
    assert centres[1] == pytest.approx(_unit(*(_unit(0, 0, 1) + _unit(0, 0.2, 1))), abs=1e-6)


def test_a_medoid_nobody_joins_gives_no_theme():
    posts = np.stack([_unit(1, 0, 0), _unit(1, 0, 0)])
    assert len(theme_centres(posts, [0, 1])) == 1  # both posts join the first of two equal medoids


def test_term_shares_count_each_post_once_per_term():
    shares = term_shares([[7, 7, 3], [3], [9]])
    assert dict(zip(shares.indices, shares.values, strict=True)) == {3: pytest.approx(2 / 3), 7: pytest.approx(1 / 3),
                                                                     9: pytest.approx(1 / 3)}
    assert shares.indices == sorted(shares.indices)
    assert term_shares([]).is_empty()


def test_account_vectors_names_the_collection_layout():
    vectors = account_vectors(np.stack([_unit(1, 0), _unit(0, 1)]), [0, 1], [[1], [2]])
    assert set(vectors.named()) == {CENTROID_VECTOR, THEMES_VECTOR, TERMS_VECTOR}
    assert len(vectors.themes) == 2


WITH_TERMS = FusionWeights(centroid=0.6, themes=0.4, terms=0.2)


def test_a_fused_query_has_a_centroid_a_maxsim_theme_and_a_term_part():
    sparse = SparseVector(indices=[4], values=[1.0])
    parts = fused_queries([0.6, 0.8], sparse, WITH_TERMS)
    assert [(p.using, p.weight, p.multi) for p in parts] == [
        (CENTROID_VECTOR, 0.6, False), (THEMES_VECTOR, 0.4, True), (TERMS_VECTOR, 0.2, False)]
    assert parts[2].sparse == sparse and parts[0].dense == pytest.approx([0.6, 0.8])


def test_a_query_without_known_words_has_no_term_part():
    assert [p.using for p in fused_queries([1.0, 0.0], SparseVector(), WITH_TERMS)] == [CENTROID_VECTOR, THEMES_VECTOR]
    assert [p.using for p in fused_queries([1.0, 0.0], None, WITH_TERMS)] == [CENTROID_VECTOR, THEMES_VECTOR]


def test_the_query_api_runs_the_weights_chosen_on_the_tuning_half():
    """FUSION is what `make eval-accounts` chose (docs/account-search.md): centroid, best theme, terms
    and the summary text's vector."""
    sparse = SparseVector(indices=[4], values=[1.0])
    parts = fused_queries([1.0, 0.0], sparse)
    assert [(p.using, p.weight) for p in parts] == [(CENTROID_VECTOR, FUSION.centroid), (THEMES_VECTOR, FUSION.themes),
                                                    (TERMS_VECTOR, FUSION.terms), ("", FUSION.summary)]
    assert FUSION.centroid > FUSION.themes  # what keeps a specialist above a generalist's single theme


def test_a_specialist_outscores_a_generalist_with_one_theme_on_the_topic():
    topic, other, third = _unit(1, 0, 0), _unit(0, 1, 0), _unit(0, 0, 1)
    specialist = AccountVectors(centroid=topic.tolist(), themes=[topic.tolist()], terms=SparseVector())
    generalist = AccountVectors(centroid=_unit(1, 1, 1).tolist(), themes=[topic.tolist(), other.tolist(), third.tolist()],
                                terms=SparseVector())
    assert fused_score(topic, specialist) > fused_score(topic, generalist)
    # ...and the generalist's best theme still ranks it above an account that never posts about it
    stranger = AccountVectors(centroid=other.tolist(), themes=[other.tolist()], terms=SparseVector())
    assert fused_score(topic, generalist) > fused_score(topic, stranger)


def test_fused_score_weights_the_parts():
    account = AccountVectors(centroid=_unit(1, 0).tolist(), themes=[_unit(0, 1).tolist(), _unit(1, 1).tolist()],
                             terms=SparseVector())
    query = _unit(1, 0)
    expected = 0.6 * 1.0 + 0.4 * float(_unit(1, 1) @ query) + 0.2 * 2.0
    assert fused_score(query * 3, account, term_score=2.0, weights=WITH_TERMS) == pytest.approx(expected)


def test_weights_of_zero_leave_parts_out_and_the_summary_part_uses_the_unnamed_vector():
    sparse = SparseVector(indices=[4], values=[1.0])
    with_summary = fused_queries([0.6, 0.8], sparse, FusionWeights(centroid=0.5, themes=0.5, terms=0.0, summary=0.1))
    assert [(p.using, p.weight) for p in with_summary] == [(CENTROID_VECTOR, 0.5), (THEMES_VECTOR, 0.5), ("", 0.1)]
    assert with_summary[2].dense == pytest.approx([0.6, 0.8]) and not with_summary[2].multi


def test_fused_score_adds_the_summary_cosine_with_its_weight():
    account = AccountVectors(centroid=_unit(1, 0).tolist(), themes=[_unit(1, 0).tolist()], terms=SparseVector())
    weights = FusionWeights(centroid=0.5, themes=0.25, terms=0.0, summary=0.2)
    assert fused_score(_unit(1, 0), account, summary_cosine=0.5, weights=weights) == pytest.approx(0.5 + 0.25 + 0.1)
