"""Grouped folds on the real HPA v18 label list: the leak they prevent and the balance they keep.

    python benchmarks/bench_grouped_folds.py [--folds 5] [--seeds 3]

The v18 list (74,606 fields, ``<antibody>_<plate>_<well>_<field>``) has many
fields per antibody, and fields of one antibody look alike. For the v18
list alone, and for the Kaggle train.csv and the v18 list together (as the
2018 winners trained; Kaggle Ids carry no antibody, so each is its own
group), prints for each split method, worst over ``--seeds`` seeds:

- the leak: antibodies with fields in more than one fold, and the share of
  validation fields whose antibody also has fields in the training folds;
- the balance: the largest deviation of a fold's class frequency from the
  overall one (points, and relative to the class frequency), and the
  (fold, class) cells with no example;
- the seconds a split takes.

Methods: multilabel stratified over samples (iterative stratification, no
groups), random groups (each antibody to a random fold) and the package's
grouped multilabel stratification.
"""

import argparse
import time
from pathlib import Path

import numpy as np

from hpa_keras.data.conversion import sample_group
from hpa_keras.data.labels import read_labels
from hpa_keras.data.splits import (
    fold_balance,
    grouped_stratified_folds,
    groups_across_folds,
    stratified_folds,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def leaked_share(groups: np.ndarray, folds: np.ndarray) -> float:
    """Worst fold: the share of its fields whose group also has fields outside it."""
    worst = 0.0
    for fold in np.unique(folds):
        inside = folds == fold
        outside_groups = set(groups[~inside])
        worst = max(worst, float(np.mean([group in outside_groups for group in groups[inside]])))
    return worst


def random_group_folds(groups: np.ndarray, num_folds: int, seed: int) -> np.ndarray:
    keys = np.unique(groups)
    order = np.random.default_rng(seed).permutation(len(keys))
    fold_of = dict(zip(keys[order], np.arange(len(keys)) % num_folds, strict=True))
    return np.array([fold_of[group] for group in groups])


METHODS = {
    "stratified, no groups": lambda matrix, groups, k, seed: stratified_folds(matrix, k, seed),
    "random groups": lambda matrix, groups, k, seed: random_group_folds(groups, k, seed),
    "grouped stratified": grouped_stratified_folds,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    options = parser.parse_args()
    v18 = read_labels(SHARED / "hpa-v18-external" / "HPAv18RBGY_wodpl.csv")
    kaggle = read_labels(SHARED / "hpa-kaggle-2018" / "train.csv")
    sets = {
        "HPA v18 list": (v18.multi_hot(), list(v18.ids)),
        "Kaggle train.csv + v18 list": (
            np.concatenate([kaggle.multi_hot(), v18.multi_hot()]),
            list(kaggle.ids) + list(v18.ids),
        ),
    }
    for name, (matrix, ids) in sets.items():
        groups = np.array([sample_group(sample_id) for sample_id in ids])
        sizes = np.unique(groups, return_counts=True)[1]
        print(
            f"\n{name}: {len(ids)} fields, {len(sizes)} groups (largest {sizes.max()}, "
            f"{int((sizes > 1).sum())} with several fields); {options.folds} folds, worst of "
            f"{options.seeds} seeds"
        )
        print(
            f"  {'method':<24} {'groups across folds':>20} {'leaked val. share':>18} "
            f"{'max dev. points':>16} {'relative':>9} {'empty cells':>12} {'s a split':>10}"
        )
        for method, split in METHODS.items():
            worst = {"across": 0, "leak": 0.0, "points": 0.0, "relative": 0.0, "empty": 0}
            seconds = 0.0
            for seed in range(options.seeds):
                started = time.perf_counter()
                folds = split(matrix, groups, options.folds, seed)
                seconds += time.perf_counter() - started
                balance = fold_balance(matrix, folds, options.folds)
                worst["across"] = max(worst["across"], groups_across_folds(groups, folds))
                worst["leak"] = max(worst["leak"], leaked_share(groups, folds))
                worst["points"] = max(worst["points"], balance["max_abs_deviation_points"])
                worst["relative"] = max(worst["relative"], balance["max_relative_deviation"])
                worst["empty"] = max(worst["empty"], balance["empty_fold_class_cells"])
            print(
                f"  {method:<24} {worst['across']:>20,d} {100 * worst['leak']:>17.1f}% "
                f"{worst['points']:>16.2f} {100 * worst['relative']:>8.0f}% "
                f"{worst['empty']:>12d} {seconds / options.seeds:>10.2f}"
            )


if __name__ == "__main__":
    main()
