"""Baselines: the floor every model has to beat, scored with the same macro F1.

- **predict nothing**: no label for any image. Macro F1 0: the score of a
  model that has learned nothing but "every class is rare".
- **most frequent**: every image gets the training set's most frequent class
  (Nucleoplasm in the challenge). Macro F1 = that class's F1 / 28.
- **logistic regression** and **random forest** on simple per-image features
  (the classic baselines of the 2018 challenge): for each channel its mean,
  standard deviation, median, 90th and 99th percentile and the share of
  bright pixels; how the protein (green) overlaps the nucleus (blue), the
  microtubules (red) and the ER (yellow); and how grainy the green channel
  is. One logistic regression per class (balanced class weights, standardized
  features); one random forest for all classes (unweighted: on the demo data
  "balanced" class weights scored lower and took longer).

The two learned baselines get per-class thresholds the way the models do,
but searched on cross-validated predictions of the training set (the test
labels are never looked at), and are scored both at 0.5 and with those
thresholds.
"""

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hpa_keras.data.tfrecords import read_manifest
from hpa_keras.errors import InputError
from hpa_keras.reports.tables import comparison_table
from hpa_keras.scoring.evaluation import micro_f1
from hpa_keras.scoring.metrics import macro_f1
from hpa_keras.scoring.thresholds import tune_thresholds

BASELINES = ("predict nothing", "most frequent", "logistic regression", "random forest")
_STATISTICS = ("mean", "std", "median", "p90", "p99", "bright")
_CHANNEL_NAMES = ("red", "green", "blue", "yellow")
FEATURE_NAMES = tuple(
    [f"{channel}_{statistic}" for channel in _CHANNEL_NAMES for statistic in _STATISTICS]
    + [
        "green_red_correlation",
        "green_blue_correlation",
        "green_yellow_correlation",
        "green_in_nucleus",
        "green_in_er",
        "green_graininess",
    ]
)


def _correlation(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Pearson correlation per image of ``(N, P)`` arrays; 0 where a channel is constant."""
    first = first - first.mean(axis=1, keepdims=True)
    second = second - second.mean(axis=1, keepdims=True)
    denominator = np.sqrt((first**2).sum(axis=1) * (second**2).sum(axis=1))
    return np.where(
        denominator > 0, (first * second).sum(axis=1) / np.maximum(denominator, 1e-12), 0
    )


def image_features(images: np.ndarray) -> np.ndarray:
    """``(N, 30)`` float32 features (:data:`FEATURE_NAMES`) of ``(N, H, W, 4)`` RGBY images
    (uint8, or uint16 scaled by its full range).

    Rotation- and flip-invariant by construction (no feature depends on where
    in the field something is), like the labels.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 4:
        raise InputError(f"features need (N, H, W, 4) RGBY images, got shape {images.shape}")
    top = 65535.0 if images.dtype == np.uint16 else 255.0  # 16-bit records keep their range
    pixels = images.reshape(len(images), -1, 4).astype(np.float32) / top
    columns = []
    for channel in range(4):
        values = pixels[:, :, channel]
        mean = values.mean(axis=1)
        percentiles = np.percentile(values, [50, 90, 99], axis=1)
        bright = (values > 2 * mean[:, None] + 1e-3).mean(axis=1)
        columns += [mean, values.std(axis=1), *percentiles, bright]
    red, green, blue, yellow = (pixels[:, :, channel] for channel in range(4))
    columns += [_correlation(green, red), _correlation(green, blue), _correlation(green, yellow)]
    green_total = np.maximum(green.sum(axis=1), 1e-6)
    for reference in (blue, yellow):
        mask = reference > reference.mean(axis=1, keepdims=True)
        columns.append((green * mask).sum(axis=1) / green_total)
    green_image = images[..., 1].astype(np.float32) / top
    steps = np.abs(np.diff(green_image, axis=1)).mean(axis=(1, 2)) + np.abs(
        np.diff(green_image, axis=2)
    ).mean(axis=(1, 2))
    columns.append(steps / np.maximum(green.mean(axis=1), 1e-3))
    return np.stack(columns, axis=1).astype(np.float32)


def tfrecord_features(tfrecord_dir, folds=None, batch_size: int = 64):
    """``(features, labels)`` of a labeled make-tfrecords folder (all four channels), in one
    pass over the records."""
    from hpa_keras.data.pipeline import load_dataset  # lazy: imports TensorFlow

    manifest = read_manifest(tfrecord_dir)
    if not manifest.labeled:
        raise InputError(f"{tfrecord_dir}: the TFRecords are unlabeled; baselines need labels")
    dataset = load_dataset(
        tfrecord_dir, folds=folds, training=False, batch_size=batch_size, normalization="none"
    )
    features, labels = [], []
    for images, targets in dataset:
        features.append(image_features(images.numpy()))
        labels.append(targets.numpy())
    if not features:
        empty_labels = np.zeros((0, manifest.num_classes), np.float32)
        return np.zeros((0, len(FEATURE_NAMES)), np.float32), empty_labels
    return np.concatenate(features), np.concatenate(labels)


@dataclass
class BaselineResult:
    """One baseline's test probabilities and the thresholds it chose without the test labels."""

    name: str
    probabilities: np.ndarray
    thresholds: np.ndarray


def _constant_probabilities(count: int, classes: int, positive: np.ndarray) -> np.ndarray:
    return np.tile(np.asarray(positive, dtype=np.float32), (count, 1)).reshape(count, classes)


def _logistic_regression_probabilities(train_x, train_y, test_x, seed: int) -> np.ndarray:
    # lazy: slow to import; the input checks run first
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    scores = np.zeros((len(test_x), train_y.shape[1]), dtype=np.float32)
    for index in range(train_y.shape[1]):
        target = train_y[:, index]
        if target.min() == target.max():  # one label value only: predict it
            scores[:, index] = target[0]
            continue
        model = make_pipeline(
            StandardScaler(),
            LogisticRegression(class_weight="balanced", max_iter=2000, random_state=seed),
        )
        model.fit(train_x, target)
        scores[:, index] = model.predict_proba(test_x)[:, 1]
    return scores


def random_forest_probabilities(train_x, train_y, test_x, seed: int, trees: int) -> np.ndarray:
    # lazy: slow to import; the input checks run first
    from sklearn.ensemble import RandomForestClassifier

    forest = RandomForestClassifier(
        n_estimators=trees,
        n_jobs=-1,
        random_state=seed,
    )
    forest.fit(train_x, train_y)
    scores = np.zeros((len(test_x), train_y.shape[1]), dtype=np.float32)
    for index, (classes, probabilities) in enumerate(
        zip(forest.classes_, forest.predict_proba(test_x), strict=True)
    ):
        positive = np.flatnonzero(classes == 1)
        if len(positive):
            scores[:, index] = probabilities[:, positive[0]]
    return scores


def _cross_validated(predict, train_x, train_y, seed: int, splits: int = 3) -> np.ndarray:
    """Out-of-fold predictions on the training set, to search thresholds without the test set."""
    # lazy: slow to import; the input checks run first
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    scores = np.zeros(train_y.shape, dtype=np.float32)
    folds = MultilabelStratifiedKFold(n_splits=splits, shuffle=True, random_state=seed)
    for fit_rows, held_rows in folds.split(train_x, train_y):
        scores[held_rows] = predict(train_x[fit_rows], train_y[fit_rows], train_x[held_rows])
    return scores


def run_baselines(
    train_features,
    train_labels,
    test_features,
    seed: int = 0,
    trees: int = 100,
    names=BASELINES,
) -> list[BaselineResult]:
    """Fit each baseline on the training set and return its probabilities for the test set."""

    train_x = np.asarray(train_features, dtype=np.float32)
    train_y = np.asarray(train_labels).astype(np.int64)
    test_x = np.asarray(test_features, dtype=np.float32)
    if len(train_x) != len(train_y):
        raise InputError(f"{len(train_x)} training feature rows for {len(train_y)} label rows")
    if len(train_x) < 3:
        raise InputError(f"baselines need at least 3 training samples, got {len(train_x)}")
    classes = train_y.shape[1]
    half = np.full(classes, 0.5)
    learned = {
        "logistic regression": lambda x, y, t: _logistic_regression_probabilities(x, y, t, seed),
        "random forest": lambda x, y, t: random_forest_probabilities(x, y, t, seed, trees),
    }
    results = []
    for name in names:
        if name == "predict nothing":
            results.append(BaselineResult(name, np.zeros((len(test_x), classes)), half))
        elif name == "most frequent":
            top = np.eye(classes)[int(np.argmax(train_y.sum(axis=0)))]
            results.append(
                BaselineResult(name, _constant_probabilities(len(test_x), classes, top), half)
            )
        elif name in learned:
            predict = learned[name]
            out_of_fold = _cross_validated(predict, train_x, train_y, seed)
            # the deep runs' rule: classes without support fall back (training/thresholds.py)
            thresholds, _ = tune_thresholds("per_class", train_y, out_of_fold)
            results.append(BaselineResult(name, predict(train_x, train_y, test_x), thresholds))
        else:
            raise InputError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}")
    return results


def score_baselines(results: list[BaselineResult], test_labels) -> pd.DataFrame:
    """Macro F1 at 0.5 and with each baseline's thresholds, and micro F1, per baseline."""

    test_labels = np.asarray(test_labels)
    rows = []
    for result in results:
        tuned = result.probabilities >= result.thresholds[None, :]
        rows.append(
            {
                "baseline": result.name,
                "macro_f1_at_0.5": macro_f1(test_labels, result.probabilities >= 0.5),
                "macro_f1": macro_f1(test_labels, tuned),
                "micro_f1": micro_f1(test_labels, tuned),
            }
        )
    return pd.DataFrame(rows)


def baselines_on_tfrecords(
    data: str | os.PathLike, fold: int = 0, test_data=None, seed: int = 0, trees: int = 100
) -> pd.DataFrame:
    """Score the baselines: trained on the other folds and tested on ``fold`` of ``data``, or
    trained on all of ``data`` and tested on the labeled TFRecords ``test_data``."""

    if test_data is None:
        folds = sorted({int(entry["fold"]) for entry in read_manifest(data).folds})
        if fold not in folds:
            raise InputError(f"{data}: no fold {fold}; the folds are {folds}")
        train_x, train_y = tfrecord_features(data, [k for k in folds if k != fold])
        test_x, test_y = tfrecord_features(data, [fold])
    else:
        train_x, train_y = tfrecord_features(data)
        test_x, test_y = tfrecord_features(test_data)
    table = score_baselines(run_baselines(train_x, train_y, test_x, seed, trees), test_y)
    table.attrs.update({"train_samples": len(train_x), "test_samples": len(test_x)})
    return table


def format_baselines(table: pd.DataFrame) -> str:
    """The baseline table for a terminal."""

    rows = [
        (row["baseline"], row["macro_f1"], row["macro_f1_at_0.5"], row["micro_f1"])
        for row in table.to_dict("records")
    ]
    return comparison_table(rows, first_column="baseline")
