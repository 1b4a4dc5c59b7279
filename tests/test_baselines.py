"""Baselines: hand-computed scores on toy cases, the features, TFRecords and the CLI."""

import numpy as np
import pytest

from hpa_keras.cli import main
from hpa_keras.data.pipeline import dataset_labels
from hpa_keras.errors import InputError
from hpa_keras.training.baselines import (
    BASELINES,
    FEATURE_NAMES,
    baselines_on_tfrecords,
    image_features,
    run_baselines,
    score_baselines,
)


def test_trivial_baselines_score_as_computed_by_hand():
    # Training: class 1 is the most frequent (3 of 4 images).
    train_labels = np.array([[1, 1, 0], [0, 1, 0], [0, 1, 1], [1, 0, 0]])
    test_labels = np.array([[1, 0, 0], [0, 1, 0], [0, 1, 1], [1, 1, 0]])
    results = run_baselines(
        np.zeros((4, 2)),
        train_labels,
        np.zeros((4, 2)),
        names=("predict nothing", "most frequent"),
    )
    table = score_baselines(results, test_labels).set_index("baseline")
    # Nothing predicted: every class has F1 0.
    assert table.loc["predict nothing", "macro_f1"] == 0.0
    # Class 1 everywhere: tp 3, fp 1, fn 0 -> F1 6/7; classes 0 and 2 score 0.
    assert table.loc["most frequent", "macro_f1"] == pytest.approx((6 / 7) / 3)
    assert table.loc["most frequent", "macro_f1_at_0.5"] == pytest.approx((6 / 7) / 3)
    # Micro: tp 3, fp 1, fn 3 (two class-0 and one class-2 labels missed) -> 6 / 10.
    assert table.loc["most frequent", "micro_f1"] == pytest.approx(6 / 10)


def test_learned_baselines_are_perfect_when_a_feature_is_the_label():
    rng = np.random.default_rng(0)
    labels = (rng.random((90, 3)) < [0.5, 0.3, 0.2]).astype(int)
    features = labels + rng.normal(0, 0.05, labels.shape)
    train, test = slice(0, 60), slice(60, 90)
    results = run_baselines(
        features[train],
        labels[train],
        features[test],
        trees=20,
        names=("logistic regression", "random forest"),
    )
    table = score_baselines(results, labels[test])
    np.testing.assert_allclose(table["macro_f1"], 1.0)
    for result in results:
        assert result.probabilities.shape == (30, 3)
        assert np.all((result.thresholds > 0) & (result.thresholds < 1))


def test_a_class_never_seen_in_training_is_never_predicted():
    rng = np.random.default_rng(1)
    labels = np.zeros((30, 2), dtype=int)
    labels[:, 0] = rng.random(30) < 0.5
    features = rng.normal(size=(30, 4))
    for result in run_baselines(features, labels, features[:5], trees=10):
        assert np.all(result.probabilities[:, 1] < result.thresholds[1])


def test_image_features_match_numpy_and_ignore_orientation():
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, size=(3, 16, 16, 4), dtype=np.uint8)
    images[1, ..., 2] = images[1, ..., 1]  # blue equals green in image 1
    features = image_features(images)
    assert features.shape == (3, len(FEATURE_NAMES)) and features.dtype == np.float32
    column = {name: index for index, name in enumerate(FEATURE_NAMES)}
    unit = images.astype(np.float64) / 255
    np.testing.assert_allclose(
        features[:, column["green_mean"]], unit[..., 1].mean(axis=(1, 2)), rtol=1e-5
    )
    np.testing.assert_allclose(
        features[:, column["yellow_p99"]],
        np.percentile(unit[..., 3].reshape(3, -1), 99, axis=1),
        rtol=1e-5,
    )
    assert features[1, column["green_blue_correlation"]] == pytest.approx(1.0, abs=1e-5)
    turned = np.rot90(images, k=1, axes=(1, 2))[:, :, ::-1]
    np.testing.assert_allclose(image_features(turned), features, rtol=1e-5, atol=1e-6)
    constant = np.full((1, 8, 8, 4), 7, dtype=np.uint8)
    assert np.all(np.isfinite(image_features(constant)))
    with pytest.raises(InputError, match="RGBY"):
        image_features(images[..., :3])


def test_baselines_on_tfrecords_test_on_the_chosen_fold(training_records):
    table = baselines_on_tfrecords(training_records, fold=1, trees=10)
    assert list(table["baseline"]) == list(BASELINES)
    assert table.attrs["test_samples"] == len(dataset_labels(training_records, [1])[0])
    _, train = dataset_labels(training_records, [0, 2])
    _, test = dataset_labels(training_records, [1])
    top = int(np.argmax(train.sum(axis=0)))
    positives, truth = test[:, top].sum(), len(test)
    by_hand = 2 * positives / (positives + truth) / test.shape[1]
    most_frequent = table.set_index("baseline").loc["most frequent", "macro_f1"]
    assert most_frequent == pytest.approx(by_hand)
    with pytest.raises(InputError, match="no fold 7"):
        baselines_on_tfrecords(training_records, fold=7)


def test_cli_baseline(training_records, tmp_path, capsys):
    out = tmp_path / "baselines.csv"
    status = main(["baseline", "--data", str(training_records), "--trees", "10", "--out", str(out)])
    printed = capsys.readouterr().out
    assert status == 0
    assert "random forest" in printed and "predict nothing" in printed
    assert out.read_text().startswith("baseline,macro_f1_at_0.5,macro_f1,micro_f1")
    status = main(["baseline", "--data", str(tmp_path / "missing")])
    error = capsys.readouterr().err
    assert status == 2 and "missing" in error and "Traceback" not in error
