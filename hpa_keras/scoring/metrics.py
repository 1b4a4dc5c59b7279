"""Macro F1, the challenge's score: a Keras metric and numpy helpers.

The numpy helpers equal ``sklearn.metrics.f1_score(average="macro",
zero_division=0)`` exactly (tested): a class with no true and no predicted
positive scores 0, so a model that never predicts a rare class is charged
for it.
"""

import numpy as np


def confusion_counts(y_true, y_pred) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class: true positives, false positives, false negatives of 0/1 ``(N, C)`` arrays."""
    truth = np.asarray(y_true).astype(bool)
    predicted = np.asarray(y_pred).astype(bool)
    return (
        (truth & predicted).sum(axis=0),
        (~truth & predicted).sum(axis=0),
        (truth & ~predicted).sum(axis=0),
    )


def f1_per_class(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """F1 of each column of 0/1 ``(N, C)`` arrays; 0 where tp + fp + fn is 0."""
    true_positive, false_positive, false_negative = confusion_counts(y_true, y_pred)
    denominator = 2 * true_positive + false_positive + false_negative
    return np.where(denominator > 0, 2 * true_positive / np.maximum(denominator, 1), 0.0)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The mean of :func:`f1_per_class` over all classes."""
    return float(f1_per_class(y_true, y_pred).mean())


def macro_f1_metric(threshold: float = 0.5, name: str = "macro_f1"):
    """Keras' own ``F1Score`` with macro averaging, for logging during training."""
    import keras  # here: the numpy helpers above should not need TensorFlow

    return keras.metrics.F1Score(average="macro", threshold=threshold, name=name)
