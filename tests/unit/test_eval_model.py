"""The rank measures ops.eval_model compares fp32 and int8 with."""

import math

import pytest

from ops.eval_model import ndcg_at, reciprocal_rank


def test_ndcg_is_one_for_the_ideal_ranking_and_zero_without_a_relevant_hit():
    assert ndcg_at([1, 2, 9], {1, 2}) == pytest.approx(1.0)
    assert ndcg_at([7, 8, 9], {1, 2}) == 0.0


def test_ndcg_discounts_a_late_hit_and_ignores_hits_past_the_cutoff():
    # one relevant post at rank 2 out of one relevant: 1/log2(3) against the ideal 1/log2(2)
    assert ndcg_at([5, 1], {1}) == pytest.approx(1 / math.log2(3))
    assert ndcg_at([5, 6, 1], {1}, k=2) == 0.0


def test_reciprocal_rank_of_the_first_relevant_hit_within_the_cutoff():
    assert reciprocal_rank([5, 6, 1, 2], {1, 2}) == pytest.approx(1 / 3)
    assert reciprocal_rank([5, 6, 1], {1}, k=2) == 0.0
