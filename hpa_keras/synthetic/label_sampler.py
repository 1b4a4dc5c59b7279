"""Label sets drawn from the real distribution of the 2018 challenge.

The package ships ``label_set_counts.json``: each of the 577 distinct label
sets of the challenge's 31,072 training images with its count (made by
``scripts/derive_label_statistics.py``; no Ids). Sampling whole label sets
from that table reproduces at once the class frequencies (Nucleoplasm on 41%
of images, Rods & rings on 0.035%), the number of labels per image and every
co-occurrence, which independent per-class draws would not.
"""

import functools
import json
from importlib import resources

import numpy as np

from hpa_keras.classes import NUM_CLASSES


@functools.lru_cache(maxsize=1)
def _label_set_table() -> tuple[tuple[tuple[int, ...], ...], np.ndarray]:
    text = resources.files("hpa_keras.synthetic").joinpath("label_set_counts.json").read_text()
    document = json.loads(text)
    label_sets = tuple(tuple(label_set) for label_set in document["label_sets"])
    counts = np.asarray(document["counts"], dtype=np.int64)
    return label_sets, counts


def label_set_distribution() -> tuple[tuple[tuple[int, ...], ...], np.ndarray]:
    """The distinct label sets and their probabilities (summing to 1)."""
    label_sets, counts = _label_set_table()
    return label_sets, counts / counts.sum()


def real_class_counts() -> np.ndarray:
    """Per-class image counts in the challenge's train.csv (length 28, int64)."""
    label_sets, counts = _label_set_table()
    class_counts = np.zeros(NUM_CLASSES, np.int64)
    for label_set, count in zip(label_sets, counts, strict=True):
        class_counts[list(label_set)] += count
    return class_counts


def real_class_frequencies() -> np.ndarray:
    """Fraction of the challenge's images that carry each class (length 28)."""
    _, counts = _label_set_table()
    return real_class_counts() / counts.sum()


def sample_label_sets(
    rng: np.random.Generator, count: int, balance: float = 0.0
) -> list[tuple[int, ...]]:
    """``count`` label sets drawn independently from the real distribution.

    With ``balance`` > 0, that fraction of the draws is class-balanced
    instead: a class is chosen uniformly, then one of the real label sets
    containing it (in proportion to its real count). Each class then appears
    on at least ``balance / 28`` of the images, so that a few thousand
    synthetic samples hold enough Rods & rings (11 of 31,072 real images) to
    learn and to validate on, while co-occurrences stay real ones.
    """
    if not 0.0 <= balance <= 1.0:
        raise ValueError(f"balance must be in [0, 1], got {balance}")
    label_sets, probabilities = label_set_distribution()
    chosen = rng.choice(len(label_sets), size=count, p=probabilities)
    if balance > 0:
        balanced = np.flatnonzero(rng.random(count) < balance)
        classes = rng.integers(0, NUM_CLASSES, size=len(balanced))
        for position, class_index in zip(balanced, classes, strict=True):
            members = [index for index, labels in enumerate(label_sets) if class_index in labels]
            weights = probabilities[members] / probabilities[members].sum()
            chosen[position] = members[rng.choice(len(members), p=weights)]
    return [label_sets[index] for index in chosen]
