"""Why one F1 count stays hand-written: numpy against scikit-learn on challenge-sized data.

    python benchmarks/bench_metrics.py [--repeats 5]

On 31,072 x 28 labels (the real train.csv from ../shared when present,
else label sets drawn from its distribution) with noisy scores, prints the
seconds per call (best of ``--repeats``) and the ratio, for:

- per-class F1 at one threshold: ``hpa_keras.scoring.metrics.f1_per_class``
  against ``sklearn.metrics.f1_score(average=None, zero_division=0)``;
- the report's F1-against-threshold curves, F1 of every class at 101
  thresholds: ``f1_threshold_curves`` (the numpy count 101 times) against
  scikit-learn called 101 times;
- precision, recall, F1 and ROC AUC of the evaluation table, which use
  scikit-learn (for scale: they run once per evaluation).

and checks that both give the same numbers.
"""

import argparse
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TRAIN_CSV = SHARED / "hpa-kaggle-2018" / "train.csv"


def labels_and_scores(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from hpa_keras.data.labels import read_labels

    rng = np.random.default_rng(seed)
    if TRAIN_CSV.is_file():
        labels = read_labels(TRAIN_CSV).multi_hot()
    else:
        from hpa_keras.classes import NUM_CLASSES
        from hpa_keras.synthetic.label_sampler import sample_label_sets

        sets = sample_label_sets(rng, 31072)
        labels = np.zeros((len(sets), NUM_CLASSES), np.float32)
        for row, indices in enumerate(sets):
            labels[row, list(indices)] = 1
    scores = np.clip(0.6 * labels + rng.normal(0.2, 0.2, labels.shape), 0, 1).astype(np.float32)
    return labels, scores


def best_time(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    options = parser.parse_args()
    from sklearn.metrics import f1_score

    from hpa_keras.scoring.evaluation import (
        THRESHOLD_GRID,
        f1_threshold_curves,
        precision_recall_f1,
        roc_auc_per_class,
    )
    from hpa_keras.scoring.metrics import f1_per_class

    labels, scores = labels_and_scores()
    truth = labels.astype(bool)
    decided = scores >= 0.5

    def sklearn_curves():
        return np.stack(
            [
                f1_score(truth, scores >= threshold, average=None, zero_division=0)
                for threshold in THRESHOLD_GRID
            ]
        )

    np.testing.assert_allclose(
        f1_per_class(truth, decided), f1_score(truth, decided, average=None, zero_division=0)
    )
    np.testing.assert_allclose(f1_threshold_curves(labels, scores), sklearn_curves())
    rows = [
        (
            "F1 per class, one threshold",
            best_time(lambda: f1_per_class(truth, decided), options.repeats),
            best_time(
                lambda: f1_score(truth, decided, average=None, zero_division=0), options.repeats
            ),
        ),
        (
            "F1 curves, 101 thresholds",
            best_time(lambda: f1_threshold_curves(labels, scores), options.repeats),
            best_time(sklearn_curves, max(1, options.repeats // 2)),
        ),
    ]
    source = "real train.csv" if TRAIN_CSV.is_file() else "sampled label sets"
    print(
        f"{len(labels)} x {labels.shape[1]} labels ({source}); seconds per call, best of "
        f"{options.repeats}; results equal"
    )
    print(f"  {'':<30} {'numpy':>9} {'scikit-learn':>13} {'ratio':>7}")
    for name, numpy_seconds, sklearn_seconds in rows:
        print(
            f"  {name:<30} {numpy_seconds:9.4f} {sklearn_seconds:13.4f} "
            f"{sklearn_seconds / numpy_seconds:6.1f}x"
        )
    table = best_time(lambda: precision_recall_f1(labels, decided), options.repeats)
    areas = best_time(lambda: roc_auc_per_class(labels, scores), options.repeats)
    print(
        f"  scikit-learn, once per evaluation: precision/recall/F1 {table:.4f} s, "
        f"ROC AUC of 28 classes {areas:.4f} s"
    )


if __name__ == "__main__":
    main()
