"""Each DynamicQA formula against numbers worked out by hand (REFERENCE §4)."""
import math

import numpy as np
import pytest

from evals.dynamicqa.clustering import complete_link_groups, official_groups, official_partition
from evals.dynamicqa.scores import (clean_answer, coherent_persuasion, is_correct, kl_dropping_invalid,
                                    persuaded, semantic_entropy, stubborn)


def test_semantic_entropy_hand_computed():
    # groups {0,1} and {2}: l0 = log(e^-1 + e^-2) = -0.686738, l1 = -0.5; SE = 5 - mean = 5.593369
    assert semantic_entropy([1.0, 2.0, 0.5], [[0, 1], [2]]) == pytest.approx(5.593369, abs=1e-6)
    # one group holding everything: SE = 5 - log(3 e^-1) = 5 + 1 - log 3
    assert semantic_entropy([1.0, 1.0, 1.0], [[0, 1, 2]]) == pytest.approx(6 - math.log(3))


def test_semantic_entropy_drops_non_finite_nll():
    assert semantic_entropy([1.0, float("nan"), 0.5], [[0, 1], [2]]) == pytest.approx(5 - (-1 - 0.5) / 2)
    assert semantic_entropy([float("nan")], [[0]]) is None


def test_kl_zero_in_p_contributes_nothing():
    # 0.5 log(0.5/0.25) twice = log 2; the p = 0 term is 0
    assert kl_dropping_invalid([0.5, 0.5, 0.0], [0.25, 0.25, 0.5]) == pytest.approx(0.693147, abs=1e-6)


def test_kl_zero_in_q_term_is_dropped():
    # terms: 0, 0.25 log(0.5) = -0.173287, +inf (dropped)
    assert kl_dropping_invalid([0.5, 0.25, 0.25], [0.5, 0.5, 0.0]) == pytest.approx(-0.173287, abs=1e-6)


def test_kl_nan_term_is_dropped():
    # nan dropped; 0.5 log(0.5/0.4) twice = log 1.25 = 0.223144
    assert kl_dropping_invalid([np.nan, 0.5, 0.5], [0.2, 0.4, 0.4]) == pytest.approx(0.223144, abs=1e-6)


def test_kl_rejects_length_mismatch():
    with pytest.raises(ValueError):
        kl_dropping_invalid([0.5, 0.5], [1.0])


def test_coherent_persuasion_mean_over_group_pairs():
    context = [np.array([0.5, 0.5]), np.array([0.5, 0.5])]
    qonly = [np.array([0.25, 0.75]), np.array([1.0, 0.0])]
    # P = [.5,.5]; KL(P||q0) = .5 log 2 + .5 log(2/3) = 0.143841; KL(P||q1) = .5 log .5 + inf(dropped)
    cp, kls = coherent_persuasion(context, [[0, 1]], qonly, [[0], [1]])
    assert kls == pytest.approx([0.143841, -0.346574], abs=1e-6)
    assert cp == pytest.approx(-0.101366, abs=1e-6)


def test_coherent_persuasion_group_distribution_is_member_mean():
    context = [np.array([1.0, 0.0]), np.array([0.0, 1.0])]
    qonly = [np.array([0.25, 0.75])]
    # P = [.5, .5] -> KL = 0.143841 (as above); separate groups would give two different KLs
    cp, _ = coherent_persuasion(context, [[0, 1]], qonly, [[0]])
    assert cp == pytest.approx(0.143841, abs=1e-6)


# 0 matches 1, 2, 3; 1~2 and 2~3 but 1 and 3 do not match.
EQUIV = np.array([[1, 1, 1, 1],
                  [1, 1, 1, 0],
                  [1, 1, 1, 1],
                  [1, 0, 1, 1]], dtype=bool)


def test_complete_link_groups_every_pair_matches():
    assert complete_link_groups(EQUIV) == [[0, 1, 2], [3]]


def test_official_clustering_reproduces_last_member_quirk():
    # From sample 0: 1 joins (checks 0), 2 joins (checks 1), 3 joins (checks only 2) although 1≁3.
    assert official_groups(EQUIV) == [[0, 1, 2], [0, 1, 2, 3], [0, 2, 3]]
    # The official SE script labels each sample by the last cluster holding it.
    assert official_partition(official_groups(EQUIV), 4) == [[1], [0, 2, 3]]


def test_clusterings_agree_on_a_clean_partition():
    eq = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=bool)
    assert complete_link_groups(eq) == [[0, 1], [2]]
    assert official_groups(eq) == [[0, 1], [2]]


def test_rouge_rule_threshold_and_normalisation():
    assert clean_answer("Answer: Paris") == " paris"
    assert is_correct("Answer: Journalist", "journalist")
    # one of five tokens matches: F1 = 2(1/5)(1)/(1/5 + 1) = 1/3 > 0.3
    assert is_correct("famous american journalist and writer", "journalist")
    # one of six: F1 = 2/7 = 0.2857 <= 0.3
    assert not is_correct("the famous american journalist and writer", "journalist")


def test_persuaded_and_stubborn():
    assert persuaded("judge", "judge")
    assert stubborn("politician", "Politician.", "judge")
    assert not stubborn("judge", "politician", "judge")          # correct, so persuaded
    assert not stubborn("actor", "politician", "judge")          # wrong, but not the q-only answer
