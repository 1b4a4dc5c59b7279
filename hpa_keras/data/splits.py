"""Multilabel stratified K-fold assignment, and how balanced a split is.

With 28 classes, some on a dozen images, a plain random K-fold split leaves
rare classes missing from some folds and over-represented in others, so
validation F1 on those classes is noise. Iterative stratification (Sechidis et
al. 2011, as implemented by the iterative-stratification package) assigns
samples so that every fold holds close to 1/K of every class.
"""

import numpy as np

from hpa_keras.errors import InputError


def stratified_folds(label_matrix: np.ndarray, num_folds: int, seed: int) -> np.ndarray:
    """The fold (0..num_folds-1) of each sample, stratified over all labels at once.

    Args:
        label_matrix: ``(N, C)`` multi-hot labels.
        num_folds: K, at least 2 and at most N.
        seed: fixes the assignment (same labels and seed, same folds).
    """
    # Imported here: it pulls in scikit-learn (1.1 s), which worker processes that
    # import this package for reading images should not pay for.
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    label_matrix = np.asarray(label_matrix)
    count = len(label_matrix)
    if num_folds < 2:
        raise InputError(f"--folds must be at least 2, got {num_folds}")
    if count < num_folds:
        raise InputError(f"--folds {num_folds} is more than the {count} labeled samples")
    splitter = MultilabelStratifiedKFold(n_splits=num_folds, shuffle=True, random_state=seed)
    folds = np.full(count, -1, dtype=np.int64)
    for fold, (_, held_out) in enumerate(splitter.split(np.zeros(count), label_matrix)):
        folds[held_out] = fold
    return folds


def random_folds(count: int, num_folds: int, seed: int) -> np.ndarray:
    """A plain random K-fold assignment of equal sizes, the baseline stratification beats."""
    order = np.random.default_rng(seed).permutation(count)
    folds = np.empty(count, dtype=np.int64)
    folds[order] = np.arange(count) % num_folds
    return folds


def fold_class_counts(label_matrix: np.ndarray, folds: np.ndarray, num_folds: int) -> np.ndarray:
    """``(K, C)`` number of samples of each class in each fold."""
    label_matrix = np.asarray(label_matrix)
    return np.stack([label_matrix[folds == fold].sum(axis=0) for fold in range(num_folds)]).astype(
        np.int64
    )


def fold_balance(label_matrix: np.ndarray, folds: np.ndarray, num_folds: int) -> dict:
    """How far each fold's class frequencies stray from the whole set's (see below)."""
    counts = fold_class_counts(label_matrix, folds, num_folds)
    return balance_of_counts(counts, np.bincount(folds, minlength=num_folds))


def balance_of_counts(class_counts: np.ndarray, fold_sizes: np.ndarray) -> dict:
    """Balance of a split given its ``(K, C)`` per-fold class counts and ``(K,)`` fold sizes.

    Returns the largest absolute deviation of a fold's per-class frequency
    from the overall frequency (in percentage points), the largest relative
    deviation (as a fraction of the class's overall frequency, over classes
    with at least K samples), the class where the relative one occurs, and
    how many (fold, class) cells hold none of a class that has at least K
    samples.
    """
    counts = np.asarray(class_counts, dtype=np.float64)
    sizes = np.asarray(fold_sizes, dtype=np.float64)
    overall = counts.sum(axis=0) / sizes.sum()
    per_fold = counts / sizes[:, None]
    deviation = np.abs(per_fold - overall)
    enough = counts.sum(axis=0) >= len(sizes)
    relative = np.where(enough, deviation / np.where(overall > 0, overall, 1), 0.0)
    return {
        "fold_sizes": sizes.astype(int).tolist(),
        "max_abs_deviation_points": float(100 * deviation.max()),
        "max_relative_deviation": float(relative.max()),
        "worst_class": int(np.unravel_index(relative.argmax(), relative.shape)[1]),
        "empty_fold_class_cells": int(((per_fold == 0) & enough).sum()),
    }
