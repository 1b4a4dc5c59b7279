"""Fold balance of multilabel stratified K-fold against a plain random K-fold split.

On the challenge's real train.csv (31,072 images, 28 classes), prints for
each split the largest deviation of a fold's per-class frequency from the
overall frequency, in percentage points and relative to the class frequency,
and the number of (fold, class) cells left without a single example.

    python benchmarks/bench_folds.py ../shared/data/hpa-kaggle-2018/train.csv --folds 5
"""

import argparse
import time
from pathlib import Path

from hpa_keras.classes import CLASS_NAMES
from hpa_keras.data.labels import read_labels
from hpa_keras.data.splits import fold_balance, random_folds, stratified_folds

DEFAULT_CSV = Path(__file__).resolve().parents[2] / "shared/data/hpa-kaggle-2018/train.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("train_csv", type=Path, nargs="?", default=DEFAULT_CSV)
    parser.add_argument("--folds", type=int, nargs="+", default=[5])
    parser.add_argument("--seeds", type=int, default=3, help="average over this many seeds")
    arguments = parser.parse_args()
    matrix = read_labels(arguments.train_csv).multi_hot()
    print(f"{len(matrix)} images, {matrix.shape[1]} classes from {arguments.train_csv}")
    for folds in arguments.folds:
        print(f"\n{folds} folds (worst over {arguments.seeds} seeds):")
        for name in ("stratified", "random"):
            worst, seconds = None, 0.0
            for seed in range(arguments.seeds):
                start = time.perf_counter()
                if name == "stratified":
                    assignment = stratified_folds(matrix, folds, seed)
                else:
                    assignment = random_folds(len(matrix), folds, seed)
                seconds += time.perf_counter() - start
                balance = fold_balance(matrix, assignment, folds)
                if (
                    worst is None
                    or balance["max_relative_deviation"] > worst["max_relative_deviation"]
                ):
                    worst = balance
            print(
                f"  {name:10s}: max deviation {worst['max_abs_deviation_points']:.3f} points, "
                f"{100 * worst['max_relative_deviation']:5.1f}% relative "
                f"({CLASS_NAMES[worst['worst_class']]}); empty fold-class cells "
                f"{worst['empty_fold_class_cells']}; {seconds / arguments.seeds:.2f} s a split"
            )


if __name__ == "__main__":
    main()
