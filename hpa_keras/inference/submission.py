"""Kaggle submissions and probability tables: from probabilities and thresholds to files.

The 2018 challenge's format is ``Id,Predicted`` with space-separated class
indices, one row per test Id in the order of ``sample_submission.csv``.
"""

import numpy as np
import pandas as pd

from hpa_keras.atomic import write_text_atomic
from hpa_keras.classes import NUM_CLASSES
from hpa_keras.data.labels import write_labels


def submission_labels(probabilities, thresholds, require_label: bool = True) -> list[list[int]]:
    """Per row, the classes whose probability reaches its threshold.

    With ``require_label`` (the default: every HPA image shows its protein
    somewhere) a row with none gets its most probable class.
    """
    probabilities = np.asarray(probabilities)
    passed = probabilities >= np.asarray(thresholds)[None, :]
    rows = []
    for row, scores in zip(passed, probabilities, strict=True):
        labels = np.flatnonzero(row).tolist()
        if not labels and require_label:
            labels = [int(np.argmax(scores))]
        rows.append(labels)
    return rows


def write_submission(path, ids, labels, scheme="hpa2018") -> None:
    """Image-level predictions: the 2018 Kaggle submission (``Id,Predicted``, space-separated
    indices); in the 2021 scheme, whose submissions are per cell, the image-level labels in
    its label-file format (``ID,Label``, ``|``-separated)."""

    column = "Predicted" if scheme == "hpa2018" else None
    write_labels(path, ids, labels, column=column, scheme=scheme)


def write_probabilities(path, ids, probabilities, extra=None) -> None:
    """``Id`` and one column per class (``0`` ... ``27``) of probabilities, then the
    ``extra`` columns (a dict of name to one value per row, e.g. ``entropy``) in its order."""
    probabilities = np.asarray(probabilities)
    classes = probabilities.shape[1] if probabilities.ndim == 2 else NUM_CLASSES
    columns = [str(index) for index in range(classes)]
    table = pd.DataFrame(probabilities, columns=columns)
    table.insert(0, "Id", ids)
    for name, values in (extra or {}).items():
        table[name] = values
    write_text_atomic(path, table.to_csv(index=False, float_format="%.6f"))
