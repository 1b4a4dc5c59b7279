"""Calibration maps (issue 25, point 3): against scikit-learn's on the same data, the
cross-fitted choice, expected calibration error, and the document in a run folder."""

import json

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV, _sigmoid_calibration, calibration_curve
from sklearn.frozen import FrozenEstimator
from sklearn.isotonic import IsotonicRegression

from hpa_keras.errors import InputError
from hpa_keras.runs.documents import read_calibration, write_calibration
from hpa_keras.runs.files import CALIBRATION_FILE
from hpa_keras.scoring import Calibration, expected_calibration_error, fit_calibration
from hpa_keras.scoring.calibration import (
    SHARED_TEMPERATURE,
    cross_fit_folds,
    cross_fitted_calibration,
    fit_isotonic,
    fit_platt,
    fit_temperature,
    reliability_curve,
)


def _sigmoid(values):
    return 1 / (1 + np.exp(-values))


def _logit(probabilities):
    return np.log(probabilities) - np.log1p(-probabilities)


def _scores(rng, size, positive_rate, separation, temperature):
    """Labels and probabilities whose logit is ``true logit / temperature``: calibrated
    probabilities are sigmoid(logit), the model's are too sharp for temperature < 1."""
    labels = (rng.random(size) < positive_rate).astype(np.float64)
    true_logit = rng.normal(0, 1, size) + separation * (labels - 0.5)
    labels = (rng.random(size) < _sigmoid(true_logit)).astype(np.float64)
    return labels, _sigmoid(true_logit / temperature)


class _LogitScores(ClassifierMixin, BaseEstimator):
    """A fitted 'classifier' whose decision function is its input's first column."""

    def fit(self, features, labels):
        self.classes_ = np.array([0.0, 1.0])
        return self

    def decision_function(self, features):
        return np.asarray(features)[:, 0]

    def predict(self, features):
        return (self.decision_function(features) > 0).astype(np.float64)


def test_platt_matches_scikit_learn():
    rng = np.random.default_rng(1)
    labels, probabilities = _scores(rng, 400, 0.3, 1.5, temperature=0.5)
    slope, intercept = fit_platt(labels, probabilities)
    a, b = _sigmoid_calibration(_logit(probabilities), labels)
    assert slope == pytest.approx(-a, abs=1e-4)
    assert intercept == pytest.approx(-b, abs=1e-4)
    logits = _logit(probabilities)[:, None]
    reference = CalibratedClassifierCV(FrozenEstimator(_LogitScores().fit(logits, labels)))
    expected = reference.fit(logits, labels).predict_proba(logits)[:, 1]
    calibration = fit_calibration(labels[:, None], probabilities[:, None], method="platt")
    assert calibration.methods == ("platt",)
    np.testing.assert_allclose(calibration.apply(probabilities[:, None])[:, 0], expected, atol=1e-4)


def test_isotonic_matches_scikit_learn():
    rng = np.random.default_rng(2)
    probabilities = rng.random(300)
    labels = (rng.random(300) < probabilities**3).astype(np.float64)
    regression = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1)
    regression.fit(probabilities, labels)
    unseen = np.concatenate([rng.random(200), [0.0, 1.0]])
    calibration = fit_calibration(labels[:, None], probabilities[:, None], method="isotonic")
    np.testing.assert_allclose(calibration.apply(unseen[:, None])[:, 0], regression.predict(unseen))
    x, y = fit_isotonic(labels, probabilities)
    json.dumps({"x": list(map(float, x)), "y": list(map(float, y))})  # plain numbers


def test_temperature_recovers_a_known_temperature_and_lowers_log_loss():
    rng = np.random.default_rng(3)
    labels, probabilities = _scores(rng, 20_000, 0.4, 2.0, temperature=0.4)
    temperature = fit_temperature(labels, probabilities)
    assert temperature == pytest.approx(1 / 0.4, rel=0.05)

    def log_loss(values):
        values = np.clip(values, 1e-6, 1 - 1e-6)
        return -np.mean(labels * np.log(values) + (1 - labels) * np.log1p(-values))

    calibrated = fit_calibration(labels[:, None], probabilities[:, None], method="temperature")
    after = calibrated.apply(probabilities[:, None])[:, 0]
    assert log_loss(after) < log_loss(probabilities) - 0.05


def test_auto_picks_isotonic_for_a_distortion_and_the_fallback_for_a_rare_class():
    rng = np.random.default_rng(4)
    size = 3000
    truth = rng.random(size)
    # A staircase: no sigmoid of the logit follows it, isotonic does.
    well_populated = (rng.random(size) < np.where(truth < 0.5, 0.05, 0.9)).astype(np.float64)
    rare = np.zeros((size, 2))
    rare[:2, 0] = 1  # 2 positives
    rare[10:14, 1] = 1  # and 4: 6 pooled, enough for one shared temperature
    frequent_labels, frequent_probabilities = _scores(rng, size, 0.3, 2.0, temperature=0.5)
    labels = np.stack([well_populated, rare[:, 0], frequent_labels, rare[:, 1]], axis=1)
    rare_probabilities = rng.random((size, 2)) * 0.2
    probabilities = np.stack(
        [truth, rare_probabilities[:, 0], frequent_probabilities, rare_probabilities[:, 1]],
        axis=1,
    )
    calibration = fit_calibration(labels, probabilities, class_names=["a", "b", "c", "d"])
    assert calibration.class_names == ("a", "b", "c", "d")
    assert calibration.methods[0] == "isotonic"
    assert set(calibration.classes[0].scores) == {"identity", "temperature", "platt", "isotonic"}
    assert calibration.methods[1] == SHARED_TEMPERATURE
    assert "2 positives" in calibration.classes[1].reason
    assert calibration.methods[3] == SHARED_TEMPERATURE
    assert calibration.classes[1].temperature == calibration.classes[3].temperature
    assert calibration.methods[2] in ("temperature", "platt")
    # Alone, the class of 2 positives has nothing to learn: the identity, and why.
    alone = fit_calibration(rare[:, :1], probabilities[:, 1:2])
    assert alone.methods == ("identity",)
    assert "nothing to learn" in alone.classes[0].reason


def test_cross_fitted_calibration_lowers_ece_on_held_out_data():
    rng = np.random.default_rng(5)
    columns = [_scores(rng, 4000, rate, 2.0, temperature=0.35) for rate in (0.2, 0.4, 0.6)]
    labels = np.stack([column[0] for column in columns], axis=1)
    probabilities = np.stack([column[1] for column in columns], axis=1)
    fit_labels, test_labels = labels[:2000], labels[2000:]
    fit_probabilities, test_probabilities = probabilities[:2000], probabilities[2000:]
    before = expected_calibration_error(test_labels, test_probabilities)
    calibration = fit_calibration(fit_labels, fit_probabilities)
    after = expected_calibration_error(test_labels, calibration.apply(test_probabilities))
    assert before.overall > 0.1
    assert after.overall < 0.05
    assert np.all(after.per_class < before.per_class)


def test_cross_fit_folds_cut_every_image_into_one_fold():
    parts = cross_fit_folds(23, folds=5, seed=3)
    assert len(parts) == 5 and sorted(len(part) for part in parts) == [4, 4, 5, 5, 5]
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(23))
    assert [part.tolist() for part in cross_fit_folds(23, 5, seed=3)] == [
        part.tolist() for part in parts
    ]
    assert len(cross_fit_folds(3, folds=5)) == 3  # no more folds than images
    with pytest.raises(InputError, match="at least 2 images"):
        cross_fit_folds(1)
    with pytest.raises(InputError, match="folds must be an integer of at least 2"):
        cross_fit_folds(10, folds=1)


def _miscalibrated(seed, size=900):
    rng = np.random.default_rng(seed)
    columns = [_scores(rng, size, rate, 2.0, temperature=0.35) for rate in (0.1, 0.3, 0.5)]
    labels = np.stack([column[0] for column in columns], axis=1)
    return labels, np.stack([column[1] for column in columns], axis=1)


def test_cross_fitted_calibration_is_fit_calibration_on_the_other_folds():
    labels, probabilities = _miscalibrated(8)
    calibrated = cross_fitted_calibration(labels, probabilities, folds=3, seed=2)
    assert calibrated.shape == probabilities.shape and calibrated.dtype == np.float64
    for held_out in cross_fit_folds(len(labels), 3, seed=2):
        others = np.setdiff1d(np.arange(len(labels)), held_out)
        fitted = fit_calibration(labels[others], probabilities[others], folds=3, seed=2)
        np.testing.assert_array_equal(calibrated[held_out], fitted.apply(probabilities[held_out]))
    # An image's calibrated probability does not depend on its own label.
    flipped = labels.copy()
    flipped[0] = 1 - flipped[0]
    again = cross_fitted_calibration(flipped, probabilities, folds=3, seed=2)
    np.testing.assert_array_equal(again[0], calibrated[0])
    # Methods pass through: the identity leaves the probabilities as they were.
    unchanged = cross_fitted_calibration(labels, probabilities, method="identity")
    np.testing.assert_array_equal(unchanged, probabilities)


def test_cross_fitted_calibration_lowers_ece_of_a_miscalibrated_set():
    labels, probabilities = _miscalibrated(9)
    before = expected_calibration_error(labels, probabilities)
    after = expected_calibration_error(labels, cross_fitted_calibration(labels, probabilities))
    assert before.overall > 0.1
    assert after.overall < 0.05
    assert np.all(after.per_class < before.per_class)


def test_ece_by_hand():
    labels = np.array([[1, 0], [0, 0], [1, 1], [1, 0]])
    probabilities = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.6], [0.95, 0.1]])
    # Two bins. Class 0: (0, 0.5] holds 0.3 (label 1): gap 0.7; (0.5, 1] holds 0.9, 0.8,
    # 0.95 with 2 positives: gap |2/3 - 0.8833| = 0.2167. ECE = (0.7 + 3 * 0.2167) / 4.
    # Class 1: (0, 0.5] holds 0.1, 0.2, 0.1, no positive: gap 0.1333; (0.5, 1] holds 0.6
    # (label 1): gap 0.4. ECE = (3 * 0.1333 + 0.4) / 4 = 0.2.
    error = expected_calibration_error(labels, probabilities, bins=2)
    np.testing.assert_allclose(error.per_class, [(0.7 + 0.65) / 4, 0.2])
    # Overall, all 8 decisions: (0, 0.5] holds 0.3, 0.1, 0.2, 0.1 with 1 positive:
    # |0.25 - 0.175| = 0.075; (0.5, 1] holds 0.9, 0.8, 0.95, 0.6 with 3: |0.75 - 0.8125|.
    assert error.overall == pytest.approx((4 * 0.075 + 4 * 0.0625) / 8)


def test_reliability_curve_matches_scikit_learn():
    rng = np.random.default_rng(6)
    probabilities = rng.random((200, 3))
    labels = (rng.random((200, 3)) < probabilities).astype(int)
    curve = reliability_curve(labels, probabilities, bins=10)
    observed, predicted = calibration_curve(labels.ravel(), probabilities.ravel(), n_bins=10)
    filled = curve.counts > 0
    np.testing.assert_allclose(curve.observed[filled], observed)
    np.testing.assert_allclose(curve.mean_predicted[filled], predicted)
    assert curve.counts.sum() == 600
    np.testing.assert_allclose(curve.centers, np.arange(0.05, 1, 0.1))


def _fitted():
    """A calibration with every kind of map: Platt or temperature, isotonic, shared."""
    rng = np.random.default_rng(7)
    size = 1000
    labels, probabilities = np.zeros((size, 4)), rng.random((size, 4)) * 0.3
    labels[:, 0], probabilities[:, 0] = _scores(rng, size, 0.3, 2.0, temperature=0.5)
    probabilities[:, 1] = rng.random(size)
    labels[:, 1] = rng.random(size) < np.where(probabilities[:, 1] < 0.5, 0.05, 0.9)
    labels[:2, 2] = 1
    labels[10:14, 3] = 1
    return fit_calibration(labels, probabilities), probabilities


def test_document_round_trip_gives_identical_outputs(tmp_path):
    calibration, probabilities = _fitted()
    assert calibration.methods[1:] == ("isotonic", SHARED_TEMPERATURE, SHARED_TEMPERATURE)
    reread = Calibration.from_dict(json.loads(json.dumps(calibration.to_dict())))
    assert reread.methods == calibration.methods
    assert reread.class_names == calibration.class_names
    np.testing.assert_array_equal(reread.apply(probabilities), calibration.apply(probabilities))
    write_calibration(tmp_path, calibration)
    assert (tmp_path / CALIBRATION_FILE).is_file()
    from_folder = read_calibration(tmp_path)
    np.testing.assert_array_equal(
        from_folder.apply(probabilities), calibration.apply(probabilities)
    )
    assert read_calibration(tmp_path / "elsewhere") is None


def test_apply_keeps_shape_and_float_type():
    calibration, probabilities = _fitted()
    single = calibration.apply(probabilities.astype(np.float32))
    assert single.dtype == np.float32 and single.shape == probabilities.shape
    assert calibration.apply(probabilities[0]).shape == (4,)
    assert calibration.apply(probabilities).dtype == np.float64


def test_bad_documents_name_the_field(tmp_path):
    calibration, _ = _fitted()
    document = calibration.to_dict()
    tempered = next(
        index for index, entry in enumerate(document["classes"]) if "temperature" in entry
    )
    document["classes"][tempered]["temperature"] = "hot"
    with pytest.raises(InputError, match=rf"classes\[{tempered}\]\.temperature: expected"):
        Calibration.from_dict(document)
    document["classes"][tempered]["method"] = "magic"
    with pytest.raises(InputError, match=rf"classes\[{tempered}\]\.method"):
        Calibration.from_dict(document)
    with pytest.raises(InputError, match="classes: expected a non-empty list"):
        Calibration.from_dict({"classes": []})
    (tmp_path / CALIBRATION_FILE).write_text('{"classes": [{"name": "a", "method": "platt"}]}')
    with pytest.raises(InputError, match=r"calibration\.json: classes\[0\]: no slope"):
        read_calibration(tmp_path)
    (tmp_path / CALIBRATION_FILE).write_text("{not json")
    with pytest.raises(InputError, match=r"calibration\.json: not a calibration file"):
        read_calibration(tmp_path)


def test_bad_inputs_say_what_is_wrong():
    labels = np.zeros((4, 2))
    probabilities = np.full((4, 2), 0.5)
    with pytest.raises(InputError, match=r"labels \(4, 2\) and probabilities \(4, 3\)"):
        fit_calibration(labels, np.full((4, 3), 0.5))
    bad = probabilities.copy()
    bad[1, 1] = 1.5
    with pytest.raises(InputError, match=r"between 0 and 1: found 1\.5 at \(1, 1\)"):
        fit_calibration(labels, bad)
    with pytest.raises(InputError, match=r"between 0 and 1: found nan"):
        expected_calibration_error(labels, np.where(bad > 1, np.nan, bad))
    twos = labels.copy()
    twos[0, 0] = 2
    with pytest.raises(InputError, match=r"labels must be 0 or 1: found 2\.0 at \(0, 0\)"):
        fit_calibration(twos, probabilities)
    with pytest.raises(InputError, match="calibration method 'magic'"):
        fit_calibration(labels, probabilities, method="magic")
    with pytest.raises(InputError, match="bins must be a positive integer"):
        expected_calibration_error(labels, probabilities, bins=0)
    calibration = fit_calibration(labels, probabilities)
    with pytest.raises(InputError, match=r"calibration of 2 classes"):
        calibration.apply(np.full((4, 3), 0.5))
