"""Exact per-class threshold search against a 0.001-step grid, side by side.

On 31,072 x 28 scores (the challenge's real label matrix from ../shared, or
labels drawn from its distribution when absent; noisy synthetic scores),
prints the macro F1 each search reaches on those scores, the time each took,
and the ratio.

    python benchmarks/bench_thresholds.py
"""

import time
from pathlib import Path

import numpy as np

from hpa_keras.data.labels import read_labels
from hpa_keras.scoring.thresholds import best_thresholds, grid_thresholds
from hpa_keras.synthetic.label_sampler import sample_label_sets

REAL = Path(__file__).resolve().parents[2] / "shared/data/hpa-kaggle-2018/train.csv"


def main() -> None:
    rng = np.random.default_rng(0)
    if REAL.is_file():
        truth = read_labels(REAL).multi_hot().astype(np.int8)
        source = "real train.csv labels"
    else:
        truth = np.zeros((31072, 28), np.int8)
        for row, labels in enumerate(sample_label_sets(rng, len(truth))):
            truth[row, list(labels)] = 1
        source = "labels sampled from the real distribution"
    logits = 1.5 * (2 * truth - 1) + rng.normal(0, 1.5, truth.shape)
    scores = (1 / (1 + np.exp(-logits))).astype(np.float32)
    print(f"{truth.shape[0]} x {truth.shape[1]} scores, {source}")
    start = time.perf_counter()
    _, exact_f1 = best_thresholds(truth, scores)
    exact_seconds = time.perf_counter() - start
    start = time.perf_counter()
    _, grid_f1 = grid_thresholds(truth, scores, step=0.001)
    grid_seconds = time.perf_counter() - start
    print(f"  exact search:       macro F1 {exact_f1.mean():.5f}  {exact_seconds:7.3f} s")
    print(f"  0.001 grid search:  macro F1 {grid_f1.mean():.5f}  {grid_seconds:7.3f} s")
    print(
        f"  exact - grid: {exact_f1.mean() - grid_f1.mean():+.5f} macro F1; classes where "
        f"exact is higher: {int((exact_f1 > grid_f1 + 1e-12).sum())}, lower: "
        f"{int((exact_f1 < grid_f1 - 1e-12).sum())}; {grid_seconds / exact_seconds:.0f}x faster"
    )


if __name__ == "__main__":
    main()
