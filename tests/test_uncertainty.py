"""Uncertainty scores (issue 25, point 5) against hand-computed numpy and scipy values."""

import numpy as np
import pytest
from scipy.stats import entropy

from hpa_keras.errors import InputError
from hpa_keras.scoring import (
    binary_entropy,
    ensemble_disagreement,
    most_uncertain,
    predictive_entropy,
)

RNG = np.random.default_rng(0)


def scipy_binary_entropy(p):
    return np.vectorize(lambda value: entropy([value, 1 - value], base=2))(p)


def test_binary_entropy_against_scipy_and_edges():
    p = np.array([0.0, 1e-12, 0.1, 0.5, 0.73, 1.0])
    np.testing.assert_allclose(binary_entropy(p), scipy_binary_entropy(p), atol=1e-12)
    assert binary_entropy(0.5) == 1.0
    assert binary_entropy(0.0) == 0.0 and binary_entropy(1.0) == 0.0


def test_predictive_entropy_is_the_class_mean_in_bits():
    probabilities = RNG.uniform(0, 1, (6, 28))
    probabilities[0, :3] = [0.0, 1.0, 0.5]
    expected = scipy_binary_entropy(probabilities).mean(axis=1)
    np.testing.assert_allclose(predictive_entropy(probabilities), expected, atol=1e-12)
    assert predictive_entropy(np.full((1, 28), 0.5))[0] == 1.0
    assert predictive_entropy(np.eye(28))[3] == 0.0
    # Cells: any leading axes.
    assert predictive_entropy(RNG.uniform(0, 1, (2, 5, 28))).shape == (2, 5)


def test_ensemble_disagreement_against_hand_computed_values():
    members = RNG.uniform(0, 1, (5, 7, 28))
    result = ensemble_disagreement(members)
    mean = members.mean(axis=0)
    total = scipy_binary_entropy(mean).mean(axis=-1)
    expected_entropy = scipy_binary_entropy(members).mean(axis=-1).mean(axis=0)
    np.testing.assert_allclose(result.entropy, total, atol=1e-12)
    np.testing.assert_allclose(result.mutual_information, total - expected_entropy, atol=1e-12)
    np.testing.assert_allclose(result.spread, members.std(axis=0).mean(axis=-1), atol=1e-12)
    assert np.all(result.mutual_information > 0)
    assert np.all(result.mutual_information <= result.entropy)


def test_two_members_by_hand():
    # One class, members say 0 and 1: mean 0.5 (1 bit), each member sure (0 bits).
    result = ensemble_disagreement(np.array([[[0.0]], [[1.0]]]))
    assert result.mutual_information.tolist() == [1.0]
    assert result.entropy.tolist() == [1.0]
    assert result.spread.tolist() == [0.5]


def test_identical_members_disagree_by_zero():
    one = RNG.uniform(0, 1, (9, 28))
    result = ensemble_disagreement(np.stack([one, one, one]))
    np.testing.assert_array_equal(result.spread, 0.0)
    np.testing.assert_array_equal(result.mutual_information, 0.0)
    np.testing.assert_allclose(result.entropy, predictive_entropy(one), atol=1e-12)
    single = ensemble_disagreement(one[None])
    np.testing.assert_array_equal(single.mutual_information, 0.0)


def test_most_uncertain_sorts_highest_first_with_stable_ties():
    scores = np.array([0.2, 0.9, 0.5, 0.9, 0.1])
    assert most_uncertain(scores, 3).tolist() == [1, 3, 2]
    assert most_uncertain(scores, 10).tolist() == [1, 3, 2, 0, 4]
    assert most_uncertain(scores, 0).tolist() == []


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: predictive_entropy([[0.5, 1.2]]), r"\[0, 1\]"),
        (lambda: predictive_entropy([[0.5, np.nan]]), "NaN"),
        (lambda: predictive_entropy(0.5), "axes"),
        (lambda: ensemble_disagreement(np.full((3, 2), -0.1)), r"\[0, 1\]"),
        (lambda: ensemble_disagreement(np.zeros((0, 2, 3))), "no members"),
        (lambda: ensemble_disagreement([0.5]), "axes"),
        (lambda: most_uncertain([[0.1]], 1), "1-D"),
        (lambda: most_uncertain([0.1, np.nan], 1), "NaN"),
        (lambda: most_uncertain([0.1], -1), "count"),
        (lambda: most_uncertain([0.1], 1.5), "count"),
    ],
)
def test_bad_input_raises_input_error(call, message):
    with pytest.raises(InputError, match=message):
        call()
