"""How many positives a class needs before its own tuned threshold beats the shared one.

Tuning sets of several sizes are drawn from the challenge's real label
matrix (``../shared``; labels sampled from its distribution when absent)
with noisy synthetic scores whose level differs by class (rarer classes
score lower, as real models' do, so per-class thresholds have something to
gain). On each draw every class gets its F1-best threshold
(:func:`best_thresholds`) and the one threshold shared by all classes
(:func:`global_threshold`), both tuned on the draw; both are scored on
15,000 held-out rows. Printed per number of positives the class had in the
tuning set: the mean held-out F1 of its own threshold minus the shared
one's. Below the smallest count from which the own threshold no longer
loses on average, a class falls back to the shared one:
``MIN_TUNING_POSITIVES`` in ``hpa_keras/scoring/thresholds.py``. (With
class levels half as far apart, ``LEVEL = 0.5``, the shared threshold wins
at every count: the answer depends on how differently calibrated the
classes are, and real models' rare classes seldom reach 0.5.)

    python benchmarks/bench_threshold_support.py
"""

from pathlib import Path

import numpy as np

from hpa_keras.data.labels import read_labels
from hpa_keras.scoring.metrics import f1_per_class
from hpa_keras.scoring.thresholds import best_thresholds, global_threshold
from hpa_keras.synthetic.label_sampler import sample_label_sets

REAL = Path(__file__).resolve().parents[2] / "shared/data/hpa-kaggle-2018/train.csv"
TUNING_SIZES = (8, 40, 200, 1000)
DRAWS = 60
HELD_OUT = 15_000
LEVEL = 1.0  # logits a class scores lower for each e-fold rarer than the median class
BUCKETS = ((0, 0), (1, 1), (2, 2), (3, 3), (4, 4), (5, 6), (7, 9), (10, 19), (20, 10**9))


def main() -> None:
    rng = np.random.default_rng(0)
    if REAL.is_file():
        truth = read_labels(REAL).multi_hot().astype(bool)
        source = "real train.csv labels"
    else:
        truth = np.zeros((31072, 28), bool)
        for row, labels in enumerate(sample_label_sets(rng, len(truth))):
            truth[row, list(labels)] = True
        source = "labels sampled from the real distribution"
    frequency = truth.mean(axis=0)
    level = LEVEL * np.log(frequency / np.median(frequency))  # rare classes score lower
    logits = 1.5 * (2 * truth - 1) + level + rng.normal(0, 1.5, truth.shape)
    scores = 1 / (1 + np.exp(-logits))
    order = rng.permutation(len(truth))
    held, pool = order[:HELD_OUT], order[HELD_OUT:]
    print(f"{source}; {DRAWS} tuning draws of each size, {HELD_OUT} held-out rows")
    gains = {bucket: [] for bucket in BUCKETS}
    for size in TUNING_SIZES:
        for _ in range(DRAWS):
            rows = rng.choice(pool, size, replace=False)
            own, _ = best_thresholds(truth[rows], scores[rows])
            shared, _ = global_threshold(truth[rows], scores[rows])
            own_f1 = f1_per_class(truth[held], scores[held] >= own)
            shared_f1 = f1_per_class(truth[held], scores[held] >= shared)
            positives = truth[rows].sum(axis=0)
            for bucket in BUCKETS:
                inside = (positives >= bucket[0]) & (positives <= bucket[1])
                gains[bucket].extend(own_f1[inside] - shared_f1[inside])
    print("positives in tuning set | classes | held-out F1, own - shared")
    for bucket in BUCKETS:
        if not gains[bucket]:
            continue
        low, high = bucket
        label = str(low) if low == high else (f"{low}+" if high > 10**6 else f"{low}-{high}")
        gain = np.asarray(gains[bucket])
        error = gain.std() / np.sqrt(len(gain))
        print(f"{label:>23} | {len(gain):7d} | {gain.mean():+.3f} ± {error:.3f}")


if __name__ == "__main__":
    main()
