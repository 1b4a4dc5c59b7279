import keras
import numpy as np
import pytest
from sklearn.metrics import f1_score

from hpa_keras.scoring.metrics import f1_per_class, macro_f1, macro_f1_metric
from hpa_keras.scoring.thresholds import (
    apply_thresholds,
    best_thresholds,
    bucket_thresholds,
    global_threshold,
    grid_thresholds,
    labels_per_image_warning,
    rate_matching_thresholds,
    search_thresholds,
    tune_thresholds,
)
from hpa_keras.training.losses import (
    CapsuleMarginLoss,
    SoftF1Loss,
    WeightedBinaryCrossentropy,
    inverse_log_class_weights,
    positive_weights,
)

RNG = np.random.default_rng(0)
Y_TRUE = (RNG.random((64, 28)) < 0.2).astype(np.float32)
Y_PRED = RNG.uniform(0.01, 0.99, (64, 28)).astype(np.float32)


def keras_value(loss):
    return float(keras.ops.convert_to_numpy(loss(Y_TRUE, Y_PRED)))


def test_weighted_bce_against_numpy():
    pos, cls = RNG.uniform(0.5, 3, 28), RNG.uniform(0.5, 2, 28)
    terms = -(pos * Y_TRUE * np.log(Y_PRED) + (1 - Y_TRUE) * np.log(1 - Y_PRED)) * cls
    expected = terms.mean(axis=1).mean()
    loss = WeightedBinaryCrossentropy(pos_weights=pos, class_weights=cls)
    assert keras_value(loss) == pytest.approx(expected, rel=1e-5)
    plain = keras.losses.BinaryCrossentropy()
    assert keras_value(WeightedBinaryCrossentropy()) == pytest.approx(keras_value(plain), rel=1e-5)


def test_soft_f1_against_numpy():
    tp = (Y_TRUE * Y_PRED).sum(0)
    fp = ((1 - Y_TRUE) * Y_PRED).sum(0)
    fn = (Y_TRUE * (1 - Y_PRED)).sum(0)
    expected = 1 - (2 * tp / (2 * tp + fp + fn + 1e-7)).mean()
    assert keras_value(SoftF1Loss()) == pytest.approx(expected, rel=1e-5)


def test_margin_loss_against_numpy():
    present = Y_TRUE * np.maximum(0, 0.9 - Y_PRED) ** 2
    absent = (1 - Y_TRUE) * np.maximum(0, Y_PRED - 0.1) ** 2
    expected = (present + 0.5 * absent).sum(axis=1).mean()
    assert keras_value(CapsuleMarginLoss()) == pytest.approx(expected, rel=1e-5)


def test_losses_survive_serialization():
    for loss in (WeightedBinaryCrossentropy([2.0] * 28), SoftF1Loss(), CapsuleMarginLoss(0.8)):
        clone = keras.losses.deserialize(keras.losses.serialize(loss))
        assert keras_value(clone) == pytest.approx(keras_value(loss), rel=1e-6)


def test_class_weight_rules():
    counts, total = np.array([12885, 11, 0]), 31072
    ratio = (total - np.maximum(counts, 1)) / np.maximum(counts, 1)
    np.testing.assert_allclose(positive_weights(counts, total, "ratio"), ratio, rtol=1e-6)
    np.testing.assert_allclose(positive_weights(counts, total, "sqrt"), np.sqrt(ratio), rtol=1e-6)
    log = positive_weights(counts, total, "log")
    assert log[0] == 1.0 and log[1] == pytest.approx(np.log(ratio[1]), rel=1e-6)
    assert positive_weights(counts, total, "none").tolist() == [1, 1, 1]
    weights = inverse_log_class_weights(counts)
    raw = 1 / np.log(np.maximum(counts, 2))
    np.testing.assert_allclose(weights, raw / raw.mean(), rtol=1e-6)
    with pytest.raises(ValueError, match="rule"):
        positive_weights(counts, total, "cube")


def test_f1_helpers_equal_scikit_learn():
    for seed in range(5):
        rng = np.random.default_rng(seed)
        truth = rng.random((200, 28)) < rng.uniform(0, 0.3, 28)
        predicted = rng.random((200, 28)) < rng.uniform(0, 0.3, 28)
        truth[:, 5] = predicted[:, 5] = False  # a class absent on both sides scores 0
        expected = f1_score(truth, predicted, average="macro", zero_division=0)
        assert macro_f1(truth, predicted) == pytest.approx(expected, abs=1e-12)
        np.testing.assert_allclose(
            f1_per_class(truth, predicted),
            f1_score(truth, predicted, average=None, zero_division=0),
            atol=1e-12,
        )


def test_keras_macro_f1_metric_matches_numpy_at_half():
    metric = macro_f1_metric()
    metric.update_state(Y_TRUE, Y_PRED)
    expected = macro_f1(Y_TRUE, Y_PRED >= 0.5)
    assert float(metric.result()) == pytest.approx(expected, abs=1e-5)


def noisy_scores(truth, rng, signal=1.5):
    logits = signal * (2 * truth - 1) + rng.normal(0, 1.5, truth.shape)
    return 1 / (1 + np.exp(-logits))


def test_exact_search_is_never_below_the_grid_and_reproduces_its_f1():
    rng = np.random.default_rng(1)
    truth = (rng.random((500, 28)) < np.geomspace(0.4, 0.005, 28)).astype(int)
    scores = np.round(noisy_scores(truth, rng), 4)  # ties, as real outputs have
    thresholds, f1 = best_thresholds(truth, scores)
    grid, grid_f1 = grid_thresholds(truth, scores)
    assert np.all(f1 >= grid_f1 - 1e-12)
    np.testing.assert_allclose(
        f1_per_class(truth, apply_thresholds(scores, thresholds)), f1, atol=1e-12
    )
    # Brute force over every candidate cut of one class agrees.
    column = 3
    candidates = np.unique(np.append(scores[:, column], 0.0))
    brute = max(
        f1_per_class(truth[:, [column]], scores[:, [column]] >= value)[0] for value in candidates
    )
    assert f1[column] == pytest.approx(brute, abs=1e-12)


def test_absent_classes_keep_the_default_threshold():
    truth = np.zeros((10, 2), int)
    truth[:3, 0] = 1
    scores = np.linspace(0, 1, 20).reshape(10, 2)
    thresholds, f1 = best_thresholds(truth, scores, absent_threshold=0.7)
    assert thresholds[1] == 0.7 and f1[1] == 0.0
    assert f1[0] > 0


def test_global_threshold_equals_brute_force_over_every_score():
    rng = np.random.default_rng(2)
    truth = (rng.random((120, 6)) < np.geomspace(0.4, 0.03, 6)).astype(int)
    scores = np.round(noisy_scores(truth, rng), 3)
    threshold, best = global_threshold(truth, scores)
    brute = max(macro_f1(truth, scores >= value) for value in np.unique(scores))
    assert best == pytest.approx(brute, abs=1e-12)
    assert macro_f1(truth, scores >= threshold) == pytest.approx(best, abs=1e-12)


def test_bucket_thresholds_follow_prevalence():
    frequencies = [0.40, 0.01, 0.20, 0.002, 0.10, 0.05, 0.03, 0.001]
    thresholds = bucket_thresholds(frequencies)
    # Ranked: 0.40 0.20 | 0.10 0.05 | 0.03 0.01 | 0.002 0.001
    np.testing.assert_allclose(thresholds, [0.5, 0.3, 0.5, 0.2, 0.4, 0.4, 0.3, 0.2])


def test_rate_matching_predicts_each_class_at_its_training_rate():
    rng = np.random.default_rng(3)
    scores = rng.random((1000, 4))
    frequencies = [0.5, 0.1, 0.0, 1.0]
    thresholds = rate_matching_thresholds(scores, frequencies)
    predicted = apply_thresholds(scores, thresholds).sum(axis=0)
    np.testing.assert_array_equal(predicted, [500, 100, 0, 1000])


def test_search_thresholds_strategies():
    rng = np.random.default_rng(4)
    truth = (rng.random((200, 5)) < 0.2).astype(int)
    scores = noisy_scores(truth, rng)
    frequencies = truth.mean(axis=0)
    np.testing.assert_array_equal(
        search_thresholds("per_class", truth, scores), best_thresholds(truth, scores)[0]
    )
    assert len(set(search_thresholds("global", truth, scores))) == 1
    np.testing.assert_array_equal(search_thresholds("fixed", truth, scores, fixed=0.3), 0.3)
    assert search_thresholds("rate", None, scores, frequencies).shape == (5,)
    with pytest.raises(ValueError, match="class frequencies"):
        search_thresholds("buckets", truth, scores)
    with pytest.raises(ValueError, match="strategy 'best'"):
        search_thresholds("best", truth, scores)


def _numpy_focal(alpha=None, gamma=2.0):
    positive = Y_TRUE * (1 - Y_PRED) ** gamma * np.log(Y_PRED)
    negative = (1 - Y_TRUE) * Y_PRED**gamma * np.log(1 - Y_PRED)
    if alpha is not None:
        positive, negative = alpha * positive, (1 - alpha) * negative
    return float(-(positive + negative).mean(axis=1).mean())


@pytest.mark.parametrize("alpha", [None, 0.75])
def test_the_focal_loss_of_fit_does_not_weight_the_rare_positives_down(alpha):
    """Keras' class balancing with its alpha=0.25 would give positives a quarter of the weight
    of negatives; positives are the rare side of every HPA class, so fit's default balances
    nothing and --focal-alpha A weights positives by A."""
    from hpa_keras.training.config import resolve_config
    from hpa_keras.training.fit import make_loss

    config = resolve_config({"data": "unused", "loss": "focal", "focal_alpha": alpha})
    loss = make_loss(config, np.ones(28), 64)
    assert keras_value(loss) == pytest.approx(_numpy_focal(alpha), rel=1e-4)
    assert keras_value(loss) != pytest.approx(_numpy_focal(0.25), rel=1e-2)


def _numpy_lovasz_hinge(labels, logits):
    """An independent per-class loop: Berman et al.'s algorithm written from the paper."""
    losses = []
    for column in range(labels.shape[1]):
        y, x = labels[:, column].astype(float), logits[:, column].astype(float)
        errors = 1.0 - x * (2 * y - 1)
        order = np.argsort(-errors, kind="stable")
        y_sorted, e_sorted = y[order], errors[order]
        positives = y.sum()
        jaccard = []
        for k in range(1, len(y) + 1):  # the Jaccard loss of the top-k set
            intersection = positives - y_sorted[:k].sum()
            union = positives + (1 - y_sorted[:k]).sum()
            jaccard.append(1 - intersection / union)
        gradient = np.diff(np.concatenate([[0.0], jaccard]))
        losses.append(float(np.dot(np.maximum(e_sorted, 0), gradient)))
    return np.array(losses)


def test_lovasz_hinge_against_numpy():
    from hpa_keras.training.losses import FocalLovaszLoss, LovaszHingeLoss, _logits

    logits = np.log(Y_PRED) - np.log(1 - Y_PRED)
    expected = _numpy_lovasz_hinge(Y_TRUE, logits).mean()
    assert keras_value(LovaszHingeLoss()) == pytest.approx(expected, rel=1e-4)
    assert np.allclose(keras.ops.convert_to_numpy(_logits(Y_PRED, "float32")), logits, atol=1e-4)
    # A perfect margin costs nothing; a class with no positive is charged its worst negative.
    perfect = np.where(Y_TRUE > 0, 0.9999, 0.0001).astype(np.float32)
    assert float(keras.ops.convert_to_numpy(LovaszHingeLoss()(Y_TRUE, perfect))) == 0.0
    combined = FocalLovaszLoss(gamma=2.0, lovasz_weight=0.5)
    assert keras_value(combined) == pytest.approx(_numpy_focal(None) + 0.5 * expected, rel=1e-4)
    clone = keras.losses.deserialize(keras.losses.serialize(combined))
    assert clone.lovasz_weight == 0.5 and keras_value(clone) == pytest.approx(keras_value(combined))


def test_shrinkage_is_chosen_by_cross_validation_and_lies_between_the_extremes():
    from hpa_keras.scoring.thresholds import shrink_thresholds, shrunk_thresholds

    rng = np.random.default_rng(3)
    labels = (rng.random((600, 6)) < [0.3, 0.2, 0.1, 0.03, 0.01, 0.005]).astype(np.float32)
    scores = np.clip(0.35 * labels + rng.normal(0.3, 0.15, labels.shape), 0, 1)
    per_class, _ = best_thresholds(labels, scores)
    shared, _ = global_threshold(labels, scores)
    thresholds, details = shrunk_thresholds(labels, scores)
    strength = details["strength"]
    assert strength in details["grid"] and len(details["held_out_macro_f1"]) == len(details["grid"])
    chosen = int(np.argmax(details["held_out_macro_f1"]))
    assert details["grid"][chosen] == strength
    np.testing.assert_allclose(
        thresholds, shrink_thresholds(per_class, shared, labels.sum(axis=0), strength)
    )
    low, high = np.minimum(per_class, shared), np.maximum(per_class, shared)
    assert np.all((thresholds >= low - 1e-12) & (thresholds <= high + 1e-12))
    # The weights by hand: n / (n + k); strength 0 keeps each class's own threshold.
    np.testing.assert_allclose(shrink_thresholds([0.2, 0.8], 0.5, [10, 0], 10), [0.35, 0.5])
    np.testing.assert_allclose(shrink_thresholds([0.2, 0.8], 0.5, [10, 0], 0), [0.2, 0.8])
    assert search_thresholds("shrunk", labels, scores).shape == (6,)


def tiny_tuning_fold():
    """8 images: class 0 has 4 separable positives; class 1 one positive, class 2 none;
    class 3 five positives scored below its negatives (its best cut keeps everything);
    class 4 no positive and every score 0.99 (above the global threshold)."""
    truth = np.zeros((8, 5), int)
    truth[:4, 0] = truth[0, 1] = 1
    truth[:5, 3] = 1
    scores = np.array(
        [
            [0.9, 0.95, 0.30, 0.10, 0.99],
            [0.8, 0.10, 0.35, 0.15, 0.99],
            [0.7, 0.15, 0.40, 0.20, 0.99],
            [0.6, 0.20, 0.45, 0.25, 0.99],
            [0.5, 0.25, 0.50, 0.30, 0.99],
            [0.4, 0.30, 0.55, 0.60, 0.99],
            [0.3, 0.35, 0.60, 0.70, 0.99],
            [0.2, 0.40, 0.65, 0.80, 0.99],
        ]
    )
    return truth, scores


@pytest.mark.parametrize("strategy", ["per_class", "shrunk"])
def test_thresholds_without_support_fall_back_and_say_why(strategy):
    truth, scores = tiny_tuning_fold()
    own, _ = best_thresholds(truth, scores)
    assert own[3] == 0.0  # the exact search keeps every image of class 3
    # The fallback is the global threshold of the supported classes alone (class 0 here);
    # over all five it would be pulled by the unsupported ones.
    assert global_threshold(truth, scores)[0] == pytest.approx(0.525)
    assert global_threshold(truth[:, :1], scores[:, :1])[0] == pytest.approx(0.55)
    thresholds, fallbacks = tune_thresholds(strategy, truth, scores)
    np.testing.assert_allclose(thresholds, [0.55, 0.55, 0.55, 0.55, 0.5])
    assert [entry["index"] for entry in fallbacks] == [1, 2, 3, 4]
    by_class = {entry["index"]: entry for entry in fallbacks}
    assert by_class[1]["cause"] == "few_positives" and by_class[1]["positives"] == 1
    assert by_class[1]["tuned"] == pytest.approx(0.675) and by_class[1]["fallback"] == "global"
    assert by_class[1]["reason"] == "1 positive in the 8 tuning images (fewer than 3)"
    assert by_class[3]["cause"] == "marks_every_image" and by_class[3]["tuned"] == 0.0
    # The global threshold marks every image of class 4 too: the untuned default instead.
    assert by_class[4]["fallback"] == "default" and by_class[4]["threshold"] == 0.5
    # ... and so where it would mark more than half of them with the class.
    half = scores.copy()
    half[:5, 2] = 0.97  # 5 of 8 images over the global 0.55
    assert tune_thresholds(strategy, truth, half)[0][2] == 0.5
    half[:, 2] = [0.97] * 4 + [0.1] * 4  # 4 of 8: half, still used
    assert tune_thresholds(strategy, truth, half)[0][2] == pytest.approx(0.55)
    # No class supported at all: nothing to share, the untuned default everywhere.
    none_supported = tune_thresholds(strategy, truth[:, 1:3], scores[:, 1:3])[0]
    np.testing.assert_array_equal(none_supported, [0.5, 0.5])
    np.testing.assert_array_equal(search_thresholds(strategy, truth, scores), thresholds)
    # Enough positives everywhere and separable scores: every class keeps its own.
    keep = tune_thresholds(strategy, truth[:, :1], scores[:, :1])
    assert keep[1] == [] and keep[0][0] == pytest.approx(0.55)


def test_the_support_rule_is_a_named_minimum_and_global_only_drops_marks_every_image():
    truth, scores = tiny_tuning_fold()
    _, fallbacks = tune_thresholds("per_class", truth, scores, min_positives=1)
    assert [entry["index"] for entry in fallbacks] == [2, 3, 4]  # class 1's one positive is enough
    thresholds, fallbacks = tune_thresholds("global", truth, scores)
    assert [entry["index"] for entry in fallbacks] == [4]
    np.testing.assert_allclose(thresholds, [0.525, 0.525, 0.525, 0.525, 0.5])
    assert tune_thresholds("fixed", truth, scores, fixed=0.0)[1] == []  # asked for: no tuning


def test_labels_per_image_warning_fires_beyond_a_factor_of_two_either_way():
    assert labels_per_image_warning(13.0, 1.6).startswith("13.00 labels per image predicted, 1.60")
    assert "8.1x" in labels_per_image_warning(13.0, 1.6)
    assert labels_per_image_warning(3.3, 1.6) is not None  # just over 2x
    assert labels_per_image_warning(0.7, 1.6) is not None  # under half
    for silent in (1.6, 3.2, 0.8, 2.5, 1.0):
        assert labels_per_image_warning(silent, 1.6) is None, silent
    assert labels_per_image_warning(13.0, None) is None  # a run that did not record it
