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
    # Imported here: it pulls in scikit-learn (a second or two), which worker processes that
    # import this package for reading images should not pay for.
    # lazy: slow to import; the input checks run first
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


def grouped_stratified_folds(
    label_matrix: np.ndarray, groups, num_folds: int, seed: int
) -> np.ndarray:
    """The fold of each sample, stratified over all labels and keeping every group in one fold.

    Fields of one antibody look alike, so a split that puts some in training
    and others in validation measures memory, not generalization. This is
    iterative stratification (Sechidis et al. 2011) over groups instead of
    samples: each group carries its per-class counts and its size; classes
    are taken from the rarest (fewest unassigned positives) up, and each
    group holding the class goes to the fold that still lacks most of it
    (ties: the fold that lacks most samples, then at random), largest groups
    first so that the small ones can even out what the large ones leave.
    Groups without any label fill the folds by size last.

    Args:
        label_matrix: ``(N, C)`` multi-hot labels.
        groups: ``(N,)`` group keys (any hashable values).
        num_folds: K, at least 2 and at most the number of groups.
        seed: fixes the assignment.
    """
    label_matrix = np.asarray(label_matrix, dtype=np.float64)
    keys, group_of = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
    if num_folds < 2:
        raise InputError(f"--folds must be at least 2, got {num_folds}")
    if len(keys) < num_folds:
        raise InputError(f"--folds {num_folds} is more than the {len(keys)} groups of samples")
    rng = np.random.default_rng(seed)
    counts = np.zeros((len(keys), label_matrix.shape[1]))
    np.add.at(counts, group_of, label_matrix)
    sizes = np.bincount(group_of, minlength=len(keys)).astype(np.float64)
    share = 1.0 / num_folds
    label_demand = np.tile(counts.sum(axis=0) * share, (num_folds, 1))
    size_demand = np.full(num_folds, sizes.sum() * share)
    fold_of_group = np.full(len(keys), -1, dtype=np.int64)
    # A random order first, then a stable sort by size: ties between equal sizes stay random.
    order = rng.permutation(len(keys))
    order = order[np.argsort(-sizes[order], kind="stable")]

    def assign(group: int, demand: np.ndarray) -> None:
        best = np.flatnonzero(demand == demand.max())
        if len(best) > 1:
            room = size_demand[best]
            best = best[room == room.max()]
        fold = int(best[rng.integers(len(best))]) if len(best) > 1 else int(best[0])
        fold_of_group[group] = fold
        label_demand[fold] -= counts[group]
        size_demand[fold] -= sizes[group]

    unassigned = np.ones(len(keys), dtype=bool)
    while True:
        remaining = (counts * unassigned[:, None]).sum(axis=0)
        present = np.flatnonzero(remaining > 0)
        if not len(present):
            break
        label = int(present[np.argmin(remaining[present])])
        for group in order:
            if unassigned[group] and counts[group, label] > 0:
                assign(group, label_demand[:, label])
                unassigned[group] = False
    for group in order:
        if unassigned[group]:
            assign(group, size_demand)
            unassigned[group] = False
    return fold_of_group[group_of]


def groups_across_folds(groups, folds) -> int:
    """How many groups have samples in more than one fold (0 for a grouped split)."""
    table = {}
    for group, fold in zip(np.asarray(groups, dtype=object), np.asarray(folds), strict=True):
        table.setdefault(group, set()).add(int(fold))
    return sum(len(members) > 1 for members in table.values())
