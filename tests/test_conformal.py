"""Conformal label sets (issue 25, point 4): the promised rate on simulated data where the
truth is known, the threshold against a hand-computed quantile, edge cases, documents and
bad input. numpy only, no TensorFlow."""

import json
import math

import numpy as np
import pytest

from hpa_keras.errors import InputError
from hpa_keras.scoring import (
    ConformalThresholds,
    conformal_thresholds,
    cross_fitted_coverage,
    empirical_coverage,
    label_sets,
)
from hpa_keras.scoring.calibration import cross_fit_folds
from hpa_keras.scoring.conformal import conformal_rank

CLASSES = 28
SPLITS = 200


def simulated(images: int, seed: int):
    """True probabilities with HPA-like class frequencies and image-to-image correlation,
    labels drawn from them (so the true probabilities are calibrated by construction)."""
    rng = np.random.default_rng(seed)
    prevalence = np.geomspace(0.1, 0.0002, CLASSES)
    base = np.log(prevalence / (1 - prevalence))
    logits = base + rng.normal(0, 1.0, (images, 1)) + rng.normal(0, 3.0, (images, CLASSES))
    truth_probability = 1 / (1 + np.exp(-logits))
    labels = (rng.random((images, CLASSES)) < truth_probability).astype(np.int8)
    # A miscalibrated, noisier model of the same images: each class over- or underconfident
    # and biased its own way (a shared monotone map would leave the label sets unchanged),
    # plus noise that makes it rank worse than the truth.
    scale = rng.uniform(0.5, 3.0, CLASSES)
    shift = rng.uniform(-2.0, 1.0, CLASSES)
    noisy = scale * logits + shift + rng.normal(0, 1.0, (images, CLASSES))
    return labels, truth_probability, 1 / (1 + np.exp(-noisy))


def coverage_over_splits(labels, probabilities, coverage, guarantee, calibration, seed=1):
    """Mean measured rate (and per-class recall) over random calibration/test splits."""
    rng = np.random.default_rng(seed)
    rates, recalls, sizes = [], [], []
    for _ in range(SPLITS):
        order = rng.permutation(len(labels))
        fit, held = order[:calibration], order[calibration:]
        conformal = conformal_thresholds(labels[fit], probabilities[fit], coverage, guarantee)
        sets = label_sets(probabilities[held], conformal)
        measured = empirical_coverage(labels[held], sets, guarantee)
        rates.append(measured.rate)
        recalls.append(measured.per_class)
        sizes.append(measured.mean_set_size)
    return float(np.mean(rates)), np.nanmean(np.array(recalls), axis=0), float(np.mean(sizes))


@pytest.mark.parametrize("model", ["calibrated", "miscalibrated"])
@pytest.mark.parametrize("coverage", [0.8, 0.9])
def test_image_guarantee_holds_over_random_splits(model, coverage):
    labels, calibrated, miscalibrated = simulated(3000, seed=0)
    probabilities = calibrated if model == "calibrated" else miscalibrated
    calibration = 1500
    rate, _, size = coverage_over_splits(labels, probabilities, coverage, "image", calibration)
    # Theory: between coverage and coverage + 1/(n + 1) on average; 200 splits leave a
    # standard error near 0.001 on the mean.
    assert rate >= coverage - 0.005
    assert rate <= coverage + 1 / (calibration + 1) + 0.005
    assert abs(rate - coverage) <= 0.02
    assert 0 < size < CLASSES


def test_image_guarantee_at_a_thousand_calibration_images():
    labels, calibrated, _ = simulated(2000, seed=3)
    rate, _, _ = coverage_over_splits(labels, calibrated, 0.9, "image", 1000, seed=4)
    assert 0.9 - 0.005 <= rate <= 0.9 + 0.02


@pytest.mark.parametrize("model", ["calibrated", "miscalibrated"])
def test_class_guarantee_holds_per_class(model):
    labels, calibrated, miscalibrated = simulated(4000, seed=5)
    probabilities = calibrated if model == "calibrated" else miscalibrated
    coverage, calibration = 0.9, 2000
    _, recall, _ = coverage_over_splits(labels, probabilities, coverage, "class", calibration)
    expected_positives = labels.mean(axis=0) * calibration
    enough = expected_positives >= 40
    assert enough.sum() >= 15
    # Each class with enough positives reaches the rate, and not by much more than theory
    # allows (1 / (n_k + 1) on average, plus the scatter of few test positives).
    assert np.all(recall[enough] >= coverage - 0.02), recall[enough]
    assert np.all(recall[enough] <= coverage + 1 / (expected_positives[enough] + 1) + 0.03)


@pytest.mark.parametrize("model", ["calibrated", "miscalibrated"])
def test_cross_fitted_coverage_reaches_the_rate_on_a_thousand_images(model):
    labels, calibrated, miscalibrated = simulated(1000, seed=11)
    probabilities = calibrated if model == "calibrated" else miscalibrated
    measured = cross_fitted_coverage(labels, probabilities, 0.9)
    assert measured.guarantee == "image" and measured.images == 1000
    # Each fold's thresholds rest on 800 images; the pooled rate of 1000 images scatters
    # by about sqrt(0.9 * 0.1 / 1000) ~ 0.01 around a mean within 0.9 + 1/801.
    assert abs(measured.rate - 0.9) <= 0.03
    assert 0 < measured.mean_set_size < CLASSES
    rates = [cross_fitted_coverage(labels, probabilities, 0.9, seed=seed).rate for seed in (1, 2)]
    assert all(abs(rate - 0.9) <= 0.03 for rate in rates)


def test_cross_fitted_coverage_is_the_library_on_the_other_folds():
    labels, _, probabilities = simulated(300, seed=12)
    for guarantee in ("image", "class"):
        measured = cross_fitted_coverage(labels, probabilities, 0.8, 4, 5, guarantee)
        sets = np.zeros(labels.shape, dtype=bool)
        for held_out in cross_fit_folds(len(labels), 4, seed=5):
            others = np.setdiff1d(np.arange(len(labels)), held_out)
            fitted = conformal_thresholds(labels[others], probabilities[others], 0.8, guarantee)
            sets[held_out] = label_sets(probabilities[held_out], fitted)
        expected = empirical_coverage(labels, sets, guarantee)
        assert measured.rate == expected.rate
        assert measured.mean_set_size == expected.mean_set_size
        np.testing.assert_array_equal(measured.per_class, expected.per_class)
    with pytest.raises(InputError, match="coverage must be in"):
        cross_fitted_coverage(labels, probabilities, 1.5)
    with pytest.raises(InputError, match="at least 2 images"):
        cross_fitted_coverage(labels[:1], probabilities[:1])


def test_image_threshold_is_the_hand_computed_quantile():
    # Nonconformity = the largest 1 - p over an image's true labels.
    labels = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1], [1, 0, 0]])
    probabilities = np.array(
        [
            [0.9, 0.2, 0.6],  # least confident true label 0.6 -> score 0.4
            [0.1, 0.8, 0.3],  # 0.8 -> 0.2
            [0.7, 0.3, 0.5],  # 0.3 -> 0.7
            [0.2, 0.4, 0.95],  # 0.95 -> 0.05
            [0.5, 0.6, 0.1],  # 0.5 -> 0.5
        ]
    )
    # n = 5, coverage 0.5: rank ceil(6 * 0.5) = 3, the 3rd smallest of
    # (0.05, 0.2, 0.4, 0.5, 0.7) is 0.4, so p >= 1 - 0.4 = 0.6 is kept.
    conformal = conformal_thresholds(labels, probabilities, coverage=0.5)
    assert conformal_rank(5, 0.5) == 3
    np.testing.assert_allclose(conformal.thresholds, [0.6, 0.6, 0.6])
    assert conformal.images == 5 and conformal.unlabelled == 0
    assert list(conformal.positives) == [3, 2, 2]
    assert not conformal.include_always.any()
    sets = label_sets(probabilities, conformal)
    # The cut is the calibration probability itself, so its image is kept exactly.
    assert sets[0].tolist() == [True, False, True]
    # coverage 0.7: rank ceil(6 * 0.7) = 5 (not 4.2 -> 5 by rounding luck), the largest, 0.7.
    np.testing.assert_allclose(conformal_thresholds(labels, probabilities, 0.7).thresholds, 0.3)


def test_class_threshold_is_the_hand_computed_quantile():
    rng = np.random.default_rng(0)
    probabilities = rng.random((40, 2))
    labels = np.zeros((40, 2), dtype=int)
    labels[:19, 0] = 1  # 19 positives: rank ceil(20 * 0.9) = 18 of the scores 1 - p
    labels[:5, 1] = 1  # 5 < 0.9 / 0.1 = 9 positives: too few for 0.9
    conformal = conformal_thresholds(labels, probabilities, 0.9, guarantee="class")
    scores = np.sort(1 - probabilities[:19, 0])
    assert conformal.thresholds[0] == pytest.approx(1 - scores[17])
    assert conformal.thresholds[1] == 0.0
    assert conformal.include_always.tolist() == [False, True]
    assert conformal.positives.tolist() == [19, 5]
    assert label_sets(probabilities, conformal)[:, 1].all()


def test_rank_of_an_exact_product_does_not_round_up():
    # (9 + 1) * 0.9 is 9 in exact arithmetic: nine scores suffice for 0.9.
    assert conformal_rank(9, 0.9) == 9
    assert conformal_rank(8, 0.9) == 9
    for count in range(1, 200):
        for coverage in (0.8, 0.9, 0.95):
            rank = conformal_rank(count, coverage)
            assert rank - 1 < (count + 1) * coverage <= rank + 1e-9


def test_too_few_images_include_every_label():
    labels = np.array([[1, 0], [0, 1], [1, 1]])
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.7]])
    # n = 3 and coverage 0.9: rank ceil(3.6) = 4 > 3, so no cut backs the rate.
    conformal = conformal_thresholds(labels, probabilities, 0.9)
    assert conformal.include_always.all()
    assert label_sets(np.zeros((2, 2)), conformal).all()
    measured = empirical_coverage(labels, label_sets(probabilities, conformal))
    assert measured.rate == 1.0 and measured.mean_set_size == 2.0


def test_unlabelled_images_count_as_covered():
    labels = np.array([[0, 0], [0, 0], [1, 0], [0, 1]])
    probabilities = np.array([[0.1, 0.1], [0.2, 0.3], [0.7, 0.4], [0.3, 0.6]])
    conformal = conformal_thresholds(labels, probabilities, coverage=0.6)
    assert conformal.unlabelled == 2
    # Scores 0, 0, 0.3, 0.4; rank ceil(5 * 0.6) = 3 -> 0.3 -> keep p >= 0.7.
    np.testing.assert_allclose(conformal.thresholds, 0.7)
    measured = empirical_coverage(labels, label_sets(probabilities, conformal))
    assert measured.rate == 0.75  # the image with class 1 at 0.6 is missed
    assert measured.per_class.tolist() == [1.0, 0.0]


def test_empirical_coverage_by_hand():
    labels = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0]])
    sets = np.array([[1, 0, 1], [1, 1, 0], [0, 0, 0]], dtype=bool)
    image = empirical_coverage(labels, sets, "image")
    assert image.rate == pytest.approx(2 / 3)
    assert image.per_class[:2].tolist() == [1.0, 0.0] and math.isnan(image.per_class[2])
    assert image.mean_set_size == pytest.approx(4 / 3)
    per_class = empirical_coverage(labels, sets, "class")
    assert per_class.rate == 0.5
    document = json.loads(json.dumps(per_class.to_dict()))
    assert document["per_class"] == [1.0, 0.0, None]


@pytest.mark.parametrize("guarantee", ["image", "class"])
def test_document_round_trip(guarantee):
    labels, calibrated, _ = simulated(300, seed=9)
    conformal = conformal_thresholds(labels, calibrated, 0.9, guarantee)
    document = json.loads(json.dumps(conformal.to_dict()))
    back = ConformalThresholds.from_dict(document)
    assert back.guarantee == guarantee and back.coverage == 0.9
    np.testing.assert_array_equal(back.thresholds, conformal.thresholds)
    np.testing.assert_array_equal(back.positives, conformal.positives)
    np.testing.assert_array_equal(back.include_always, conformal.include_always)
    assert (back.images, back.unlabelled) == (conformal.images, conformal.unlabelled)
    np.testing.assert_array_equal(label_sets(calibrated, back), label_sets(calibrated, conformal))


@pytest.mark.parametrize(
    "change, field",
    [
        ({"coverage": 1.5}, "coverage"),
        ({"guarantee": "cell"}, "guarantee"),
        ({"thresholds": [0.5, "x"]}, "thresholds"),
        ({"thresholds": [0.5, 1.2]}, "thresholds"),
        ({"positives": [1]}, "positives"),
        ({"include_always": [False, 1]}, "include_always"),
        ({"images": -1}, "images"),
        ({"unlabelled": 9}, "unlabelled"),
    ],
)
def test_bad_document_names_the_field(change, field):
    good = {
        "guarantee": "image",
        "coverage": 0.9,
        "thresholds": [0.3, 0.3],
        "images": 5,
        "positives": [2, 3],
        "unlabelled": 0,
        "include_always": [False, False],
    }
    with pytest.raises(InputError, match=field):
        ConformalThresholds.from_dict({**good, **change})
    missing = dict(good)
    del missing[field]
    with pytest.raises(InputError, match=f"missing field.*{field}"):
        ConformalThresholds.from_dict(missing)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: conformal_thresholds([[1, 0]], [[0.5, 0.5]], coverage=1.0), "coverage"),
        (lambda: conformal_thresholds([[1, 0]], [[0.5, 0.5]], coverage=0), "coverage"),
        (lambda: conformal_thresholds([[1, 0]], [[0.5, 0.5]], coverage="0.9"), "coverage"),
        (lambda: conformal_thresholds([[1, 0]], [[0.5, 0.5]], guarantee="cell"), "guarantee"),
        (lambda: conformal_thresholds([[1, 0]], [[0.5, 0.5, 0.1]]), "same shape"),
        (lambda: conformal_thresholds([[1, 0]], [[0.5, 1.5]]), r"\[0, 1\]"),
        (lambda: conformal_thresholds([[1, 0]], [[0.5, -0.1]]), r"\[0, 1\]"),
        (lambda: conformal_thresholds([[1, 0]], [[0.5, np.nan]]), "NaN"),
        (lambda: conformal_thresholds([[2, 0]], [[0.5, 0.5]]), "0 and 1"),
        (lambda: conformal_thresholds([1, 0], [0.5, 0.5]), "2-D"),
        (lambda: conformal_thresholds(np.zeros((0, 2)), np.zeros((0, 2))), "no calibration"),
        (lambda: empirical_coverage([[1, 0]], [[True]]), "same shape"),
        (lambda: empirical_coverage([[1, 0]], [[True, False]], "cell"), "guarantee"),
    ],
)
def test_bad_input_raises_input_error(call, message):
    with pytest.raises(InputError, match=message):
        call()


def test_label_sets_check_the_class_count():
    conformal = conformal_thresholds([[1, 0, 0]] * 20, [[0.9, 0.1, 0.1]] * 20)
    with pytest.raises(InputError, match="3"):
        label_sets([[0.5, 0.5]], conformal)


def test_union_of_member_sets_covers_at_least_as_each_member():
    from hpa_keras.scoring.conformal import union_label_sets

    rng = np.random.default_rng(3)
    labels, _, _ = simulated(6000, seed=3)
    logits = np.where(labels > 0, 1.0, -2.5) + rng.normal(0, 1.5, labels.shape)

    def member(rows):  # each member: the shared signal and noise of its own
        noisy = logits[rows] + rng.normal(0, 1.0, (len(rows), CLASSES))
        return 1 / (1 + np.exp(-noisy))

    # Out-of-fold: each of 3 members predicts its own third of 3000 calibration images.
    folds = np.array_split(np.arange(3000), 3)
    oof = np.concatenate([member(rows) for rows in folds])
    conformal = conformal_thresholds(labels[:3000], oof, 0.9, "image")
    new = np.arange(3000, 6000)
    members = np.stack([member(new) for _ in folds])
    union = union_label_sets(members, conformal)
    np.testing.assert_array_equal(union, np.any(members >= conformal.thresholds, axis=0))
    np.testing.assert_array_equal(
        union_label_sets(members[0], conformal), label_sets(members[0], conformal)
    )
    each = [empirical_coverage(labels[new], label_sets(m, conformal)).rate for m in members]
    rate = empirical_coverage(labels[new], union).rate
    assert min(each) >= 0.9 - 0.02  # a member covers new images as on its held-out fold
    assert rate >= max(each) and rate >= 0.9
    with pytest.raises(InputError, match=r"\(M, N, C\)"):
        union_label_sets(members[None], conformal)
