"""Per-class decision thresholds for multi-label predictions.

A single 0.5 threshold suits none of the 28 classes: a rare class's
probabilities rarely reach it, a frequent one's often do without reason.
Choosing each class's threshold to maximize its F1 on validation predictions
was the largest single gain reported on this challenge.

:func:`best_thresholds` is exact: for each class it sorts the scores once and
evaluates F1 at every distinct score in one cumulative sum, rather than on a
0.001 grid (which can miss the best cut between two close scores and costs
1,000 passes over the data). The threshold returned is the midpoint between
the lowest score kept and the next lower one, so ``scores >= threshold``
reproduces the best cut.
"""

import numpy as np

from hpa_keras.metrics import f1_per_class

ABSENT_CLASS_THRESHOLD = 0.5


def best_thresholds(y_true, scores, absent_threshold: float = ABSENT_CLASS_THRESHOLD):
    """The F1-maximizing threshold of each class, and the F1 it gives.

    Args:
        y_true: 0/1 labels ``(N, C)``.
        scores: predicted probabilities ``(N, C)``.
        absent_threshold: for classes with no positive in ``y_true``, where
            every threshold scores F1 0 and nothing can be learned: keep this
            default rather than a value fitted to noise.

    Returns:
        ``(thresholds, f1)``, each of length C.
    """
    truth = np.asarray(y_true).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    if truth.shape != scores.shape or truth.ndim != 2:
        raise ValueError(f"y_true {truth.shape} and scores {scores.shape} must be the same (N, C)")
    classes = truth.shape[1]
    thresholds = np.full(classes, absent_threshold, dtype=np.float64)
    best_f1 = np.zeros(classes, dtype=np.float64)
    for column in range(classes):
        positives = int(truth[:, column].sum())
        if positives == 0:
            continue
        order = np.argsort(-scores[:, column], kind="stable")
        ranked = scores[order, column]
        true_positive = np.cumsum(truth[order, column])
        kept = np.arange(1, len(ranked) + 1)
        # Only the last position of each run of equal scores is a possible cut.
        ends = np.flatnonzero(np.append(ranked[1:] != ranked[:-1], True))
        f1 = 2 * true_positive[ends] / (kept[ends] + positives)
        choice = int(np.argmax(f1))
        end = ends[choice]
        best_f1[column] = f1[choice]
        thresholds[column] = (ranked[end] + ranked[end + 1]) / 2 if end + 1 < len(ranked) else 0.0
    return thresholds, best_f1


def grid_thresholds(
    y_true, scores, step: float = 0.001, absent_threshold: float = ABSENT_CLASS_THRESHOLD
):
    """The same search on a fixed grid of thresholds (the usual Kaggle-kernel way)."""
    truth = np.asarray(y_true).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    grid = np.arange(0.0, 1.0 + step / 2, step)
    thresholds = np.full(truth.shape[1], absent_threshold, dtype=np.float64)
    best_f1 = np.zeros(truth.shape[1], dtype=np.float64)
    for value in grid:
        f1 = f1_per_class(truth, scores >= value)
        better = (f1 > best_f1) & truth.any(axis=0)
        thresholds[better], best_f1[better] = value, f1[better]
    return thresholds, best_f1


def apply_thresholds(scores, thresholds) -> np.ndarray:
    """0/1 predictions: ``scores >= thresholds`` per class."""
    return (np.asarray(scores) >= np.asarray(thresholds)[None, :]).astype(np.int8)
