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

from hpa_keras.scoring.metrics import f1_per_class, macro_f1

ABSENT_CLASS_THRESHOLD = 0.5

# A class with fewer positives than this in the tuning set does not keep its own tuned
# threshold; it falls back to the threshold shared by all classes. Its own best cut is then
# set by one or two scores, and `python benchmarks/bench_threshold_support.py` measures its
# held-out F1 below the shared threshold's with 1 or 2 positives and level from 3 on (the
# figures: docs/results.md).
MIN_TUNING_POSITIVES = 3
# A fallback global threshold that would mark more of the tuning images than this with a
# class is not used for it (see supported_thresholds).
MAX_FALLBACK_SHARE = 0.5


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


def global_threshold(y_true, scores) -> tuple[float, float]:
    """The one threshold, shared by all classes, that maximizes macro F1 (exact).

    Every distinct score is a candidate; per class, the true and predicted
    positives at each candidate come from binary searches in that class's
    sorted scores, so the search costs ``C`` sorts and ``C`` vectorized
    searches rather than one F1 evaluation per candidate.

    Returns:
        ``(threshold, macro_f1)``.
    """
    truth = np.asarray(y_true).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    if truth.shape != scores.shape or truth.ndim != 2:
        raise ValueError(f"y_true {truth.shape} and scores {scores.shape} must be the same (N, C)")
    candidates = np.unique(scores)
    f1_sum = np.zeros(len(candidates), dtype=np.float64)
    for column in range(truth.shape[1]):
        ranked = np.sort(scores[:, column])
        ranked_positive = np.sort(scores[truth[:, column], column])
        predicted = len(ranked) - np.searchsorted(ranked, candidates, side="left")
        true_positive = len(ranked_positive) - np.searchsorted(
            ranked_positive, candidates, side="left"
        )
        denominator = predicted + len(ranked_positive)
        f1_sum += np.where(denominator > 0, 2 * true_positive / np.maximum(denominator, 1), 0.0)
    choice = int(np.argmax(f1_sum))
    threshold = (candidates[choice] + candidates[choice - 1]) / 2 if choice > 0 else 0.0
    return float(threshold), float(f1_sum[choice] / truth.shape[1])


PREVALENCE_BUCKETS = (0.5, 0.4, 0.3, 0.2)


def bucket_thresholds(class_frequencies, buckets=PREVALENCE_BUCKETS) -> np.ndarray:
    """Thresholds by prevalence: the most frequent classes get the first value.

    Classes are ranked by their training frequency and split into
    ``len(buckets)`` groups of (nearly) equal size; the most frequent group
    gets ``buckets[0]`` (0.5), the rarest ``buckets[-1]`` (0.2). A rare
    class's probabilities seldom reach 0.5, so it needs a lower bar. Nothing
    is fitted to validation data, which makes this the safe choice when the
    validation set holds only a few examples of the rare classes.
    """
    frequencies = np.asarray(class_frequencies, dtype=np.float64)
    order = np.argsort(-frequencies, kind="stable")
    thresholds = np.empty(len(frequencies), dtype=np.float64)
    for group, members in enumerate(np.array_split(order, len(buckets))):
        thresholds[members] = buckets[group]
    return thresholds


def rate_matching_thresholds(scores, class_frequencies) -> np.ndarray:
    """Per-class thresholds under which each class is predicted as often as in training.

    For a class seen on a fraction ``r`` of the training images, the threshold
    is set so that ``round(r * N)`` of the ``N`` scored images pass it. It
    needs no labels, so it can be fitted on the test predictions themselves
    (assuming test and training share the label distribution, as the
    challenge's public and private sets roughly did).
    """
    scores = np.asarray(scores, dtype=np.float64)
    frequencies = np.asarray(class_frequencies, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] != len(frequencies):
        raise ValueError(
            f"scores {scores.shape} need one column per class frequency ({len(frequencies)})"
        )
    count = scores.shape[0]
    thresholds = np.empty(len(frequencies), dtype=np.float64)
    for column, frequency in enumerate(frequencies):
        ranked = np.sort(scores[:, column])[::-1]
        kept = int(round(min(max(frequency, 0.0), 1.0) * count))
        if kept == 0:
            thresholds[column] = np.nextafter(ranked[0], np.inf)  # nothing passes
        elif kept == count:
            thresholds[column] = ranked[-1]
        else:
            thresholds[column] = (ranked[kept - 1] + ranked[kept]) / 2
    return thresholds


# Shrinkage strengths tried (in positives: a class with n positives keeps n / (n + k) of its own
# threshold); 0 is the per-class search, the largest close to one global threshold.
SHRINKAGE_GRID = (0.0, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)


def shrink_thresholds(per_class, global_value, positives, strength):
    """``w t_c + (1 - w) t_global`` with ``w = n_c / (n_c + strength)``: a class with few
    positives, whose own best cut is noise, leans on the threshold shared by all."""
    positives = np.asarray(positives, dtype=np.float64)
    weight = positives / (positives + strength) if strength > 0 else np.ones_like(positives)
    return weight * np.asarray(per_class) + (1 - weight) * global_value


def shrunk_thresholds(y_true, scores, grid=SHRINKAGE_GRID, folds: int = 5, seed: int = 0):
    """Per-class thresholds shrunk toward the global one, the strength chosen by
    cross-validation over the rows (not by hand).

    For each strength of ``grid``, thresholds are searched on ``folds - 1``
    parts of the rows and scored (macro F1) on the held-out part; the
    strength with the best mean held-out score is applied to thresholds
    searched on all rows.

    Returns ``(thresholds, details)``: ``details`` holds the grid, the mean
    held-out macro F1 of each strength and the strength chosen.
    """

    truth = np.asarray(y_true).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    rows = np.random.default_rng(seed).permutation(len(truth))
    parts = np.array_split(rows, min(folds, max(len(truth), 2)))
    held_out_f1 = np.zeros(len(grid))
    for part in parts:
        train = np.setdiff1d(rows, part)
        if not len(part) or not len(train):
            continue
        per_class, _ = best_thresholds(truth[train], scores[train])
        shared = global_threshold(truth[train], scores[train])[0]
        positives = truth[train].sum(axis=0)
        for index, strength in enumerate(grid):
            chosen = shrink_thresholds(per_class, shared, positives, strength)
            held_out_f1[index] += macro_f1(truth[part], scores[part] >= chosen) / len(parts)
    best = int(np.argmax(held_out_f1))
    per_class, _ = best_thresholds(truth, scores)
    shared = global_threshold(truth, scores)[0]
    thresholds = shrink_thresholds(per_class, shared, truth.sum(axis=0), grid[best])
    details = {
        "grid": [float(value) for value in grid],
        "held_out_macro_f1": [round(float(value), 6) for value in held_out_f1],
        "strength": float(grid[best]),
        "global_threshold": float(shared),
    }
    return thresholds, details


THRESHOLD_STRATEGIES = ("per_class", "shrunk", "global", "buckets", "rate", "fixed")
# The strategies that fit thresholds to the tuning labels, so that need their support checked.
TUNED_STRATEGIES = ("per_class", "shrunk", "global")


def supported_thresholds(
    thresholds, y_true, scores, per_class: bool = True, min_positives: int = MIN_TUNING_POSITIVES
) -> tuple[np.ndarray, list[dict]]:
    """Tuned thresholds with those the tuning set does not support replaced.

    A class's threshold is not kept when (``per_class``) the class has fewer
    than ``min_positives`` positives in the tuning set, or when it marks every
    tuning image (a threshold of 0, or at or below the class's lowest score:
    the best cut kept everything, which says only that the scores do not
    separate this class here, and would label every new image with it). It is
    replaced by the global threshold, tuned (:func:`global_threshold`) on the
    same rows but on the supported classes only (those that keep their own),
    since a threshold shared with the others would inherit their noise; or by
    ``ABSENT_CLASS_THRESHOLD`` (0.5) where no class is supported, or where
    the global one would mark more than ``MAX_FALLBACK_SHARE`` (half) of the
    tuning images with the class (a rare class on half the images is a
    threshold that does not separate it either).

    Returns:
        ``(thresholds, fallbacks)``: one entry per replaced class, with its
        ``index``, ``positives``, ``tuned`` (the value not kept),
        ``threshold`` (the value used), ``fallback`` (``"global"`` or
        ``"default"``), ``cause`` (``"few_positives"`` or ``"marks_every_image"``)
        and ``reason`` (a sentence).
    """
    truth = np.asarray(y_true).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    thresholds = np.array(thresholds, dtype=np.float64)
    if not len(truth):
        return thresholds, []
    count = len(truth)
    positives = truth.sum(axis=0)
    lowest = scores.min(axis=0)
    supported = (positives >= min_positives if per_class else True) & (thresholds > lowest)
    shared = None
    fallbacks = []
    for column in range(len(thresholds)):
        if per_class and positives[column] < min_positives:
            cause = "few_positives"
            reason = (
                f"{positives[column]} positive{'s' if positives[column] != 1 else ''} in the "
                f"{count} tuning images (fewer than {min_positives})"
            )
        elif thresholds[column] <= lowest[column]:
            cause = "marks_every_image"
            reason = f"its threshold would mark every one of the {count} tuning images"
        else:
            continue
        if shared is None:
            shared = (
                global_threshold(truth[:, supported], scores[:, supported])[0]
                if supported.any()
                else ABSENT_CLASS_THRESHOLD
            )
        marked = float(np.mean(scores[:, column] >= shared))
        usable = bool(supported.any()) and shared > lowest[column] and marked <= MAX_FALLBACK_SHARE
        fallbacks.append(
            {
                "index": column,
                "positives": int(positives[column]),
                "tuned": float(thresholds[column]),
                "threshold": float(shared if usable else ABSENT_CLASS_THRESHOLD),
                "fallback": "global" if usable else "default",
                "cause": cause,
                "reason": reason,
            }
        )
        thresholds[column] = fallbacks[-1]["threshold"]
    return thresholds, fallbacks


def tune_thresholds(
    strategy: str,
    y_true,
    scores,
    class_frequencies=None,
    fixed: float = 0.5,
    min_positives: int = MIN_TUNING_POSITIVES,
) -> tuple[np.ndarray, list[dict]]:
    """``(thresholds, fallbacks)``: :func:`search_thresholds`, and which classes of a
    strategy that tunes on labels (``TUNED_STRATEGIES``) fell back and why
    (:func:`supported_thresholds`; ``"global"`` checks only for thresholds that mark
    every image)."""
    thresholds = _strategy_thresholds(strategy, y_true, scores, class_frequencies, fixed)
    if strategy not in TUNED_STRATEGIES:
        return thresholds, []
    return supported_thresholds(
        thresholds, y_true, scores, per_class=strategy != "global", min_positives=min_positives
    )


def search_thresholds(
    strategy: str, y_true, scores, class_frequencies=None, fixed: float = 0.5
) -> np.ndarray:
    """Thresholds by the named strategy.

    ``"per_class"`` (:func:`best_thresholds`), ``"shrunk"``
    (:func:`shrunk_thresholds`: per class, shrunk toward the global threshold
    by a strength chosen by cross-validation), ``"global"``
    (:func:`global_threshold`), ``"buckets"`` (:func:`bucket_thresholds`,
    needs ``class_frequencies``), ``"rate"`` (:func:`rate_matching_thresholds`,
    needs ``class_frequencies``) or ``"fixed"`` (``fixed`` for every class).

    The strategies that tune on labels keep only thresholds the labels support
    (:func:`supported_thresholds`): a class with fewer than
    ``MIN_TUNING_POSITIVES`` positives, or whose threshold would mark every
    image, gets the global one. :func:`tune_thresholds` also says which.
    """
    return tune_thresholds(strategy, y_true, scores, class_frequencies, fixed)[0]


def _strategy_thresholds(strategy, y_true, scores, class_frequencies, fixed) -> np.ndarray:
    classes = np.asarray(scores).shape[1]
    if strategy not in THRESHOLD_STRATEGIES:
        raise ValueError(f"threshold strategy {strategy!r}: use one of {THRESHOLD_STRATEGIES}")
    if strategy in ("buckets", "rate") and class_frequencies is None:
        raise ValueError(f"threshold strategy {strategy!r} needs the training class frequencies")
    if strategy == "per_class":
        return best_thresholds(y_true, scores)[0]
    if strategy == "shrunk":
        return shrunk_thresholds(y_true, scores)[0]
    if strategy == "global":
        return np.full(classes, global_threshold(y_true, scores)[0])
    if strategy == "buckets":
        return bucket_thresholds(class_frequencies)
    if strategy == "rate":
        return rate_matching_thresholds(scores, class_frequencies)
    return np.full(classes, float(fixed))


# Predicted labels per image more than this many times the training data's (or fewer than
# its fraction) are warned about: the 2018 training set has 1.6 per image and its 28 classes'
# frequencies differ by 1000x, so a factor of two is far outside what a sound set of
# thresholds gives, and what per-class thresholds of 0 give (13 per image) is far beyond it.
LABELS_PER_IMAGE_FACTOR = 2.0


def labels_per_image_warning(
    predicted: float, training: float | None, factor: float = LABELS_PER_IMAGE_FACTOR
) -> str | None:
    """A warning when ``predicted`` labels per image differ from the training data's
    ``training`` by more than ``factor`` either way; ``None`` otherwise or when
    ``training`` is unknown."""
    if training is None or not training > 0:
        return None
    if predicted <= factor * training and predicted >= training / factor:
        return None
    return (
        f"{predicted:.2f} labels per image predicted, {training:.2f} in the training data "
        f"({predicted / training:.1f}x, more than a factor of {factor:g} off): the thresholds "
        "(thresholds.json: tuned on a small validation set? an imported run's 0.5?) do not "
        "suit these images"
    )
