"""Label sets with a guarantee for ``predict --coverage``: conformal thresholds from a cv folder.

A conformal threshold needs a calibration set the model neither trained nor tuned on
(:mod:`hpa_keras.scoring.conformal`). A cv folder has one: every image of its record set
was predicted by the fold model that did not train on it, and each fold run keeps those
predictions with their labels (``fold-K/oof.npz``). A single run has no such set: its
validation images chose its best epoch and its thresholds, so its own predictions of
them are not exchangeable with new images, and ``--coverage`` is refused for it.

The out-of-fold predictions are single fold models', so the thresholds are applied to
single fold models too: a class is in an image's set when **any** fold model gives it
at least its threshold, the union of the members' sets. Each member's prediction of a
new image is drawn like its own out-of-fold predictions (it trained on neither), so its
set covers as on them, and the union covers at least as well as any member. The
ensemble's mean probabilities, smoother than any member's, are not: judged against the
same thresholds they covered 0.88 of the demo's test images at a promised 0.9, the
union 0.90 (docs/results.md). Each fold's best epoch was also chosen on its
validation images, which makes them slightly kinder than new images; the union's
margin absorbs that. The rate on new images is measured, not promised exactly, by
``hpa-keras evaluate`` on a labelled set of the same kind.
"""

import os
from pathlib import Path

import numpy as np

from hpa_keras.errors import InputError
from hpa_keras.runs.documents import read_calibration, read_fold_predictions
from hpa_keras.runs.files import FOLD_OOF_FILE
from hpa_keras.runs.folders import expand_runs, is_cv_folder, run_paths
from hpa_keras.scoring.calibration import Calibration
from hpa_keras.scoring.conformal import (
    ConformalThresholds,
    conformal_thresholds,
    union_label_sets,
)


def out_of_fold_predictions(cv_folder: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, int]:
    """``(labels, probabilities, views)`` of every fold's validation images, pooled.

    Raises:
        InputError: naming the folder or file, when it is no cv folder, a fold has no
            ``oof.npz`` or one without labels (a cv made before they were stored: run
            the same ``hpa-keras cv`` command again, which keeps the trained folds and
            adds them), or the folds were predicted with different views.
    """
    if not is_cv_folder(cv_folder):
        raise InputError(
            f"{cv_folder}: --coverage needs a cv folder (hpa-keras cv): its out-of-fold "
            "predictions are the images the label sets are calibrated on; a single run's "
            "validation images chose its epoch and thresholds, so they cannot serve"
        )
    folders, _ = expand_runs([cv_folder])
    labels, probabilities, views = [], [], set()
    for folder in folders:
        stored = read_fold_predictions(folder)
        if stored is None or stored.labels is None:
            what = "no" if stored is None else "no labels in its"
            raise InputError(
                f"{Path(folder) / FOLD_OOF_FILE}: {what} out-of-fold predictions; run the "
                "same `hpa-keras cv` command again (it keeps the trained folds) to store them"
            )
        labels.append(stored.labels)
        probabilities.append(stored.probabilities)
        views.add(stored.views)
    if len(views) > 1:
        raise InputError(f"{cv_folder}: its folds were predicted with {sorted(views)} views")
    return np.concatenate(labels), np.concatenate(probabilities), views.pop()


def conformal_for(
    runs, coverage: float, guarantee: str = "image", views: int | None = None
) -> ConformalThresholds:
    """Conformal thresholds for predicting with ``runs`` (one cv folder) at ``coverage``.

    ``views``: the dihedral views prediction will average; they must be those the
    out-of-fold predictions were made with (the cv's ``--tta``), since more views give
    other probabilities than the ones the thresholds were fitted on.
    """
    folders = run_paths(runs)
    if len(folders) != 1:
        raise InputError(
            f"--coverage takes one cv folder as --run, got {len(folders)} folders: the label "
            "sets are calibrated on that cv's out-of-fold predictions"
        )
    labels, probabilities, fitted_views = out_of_fold_predictions(folders[0])
    if views is not None and views != fitted_views:
        raise InputError(
            f"--tta {views}: the label sets of {folders[0]} are calibrated on out-of-fold "
            f"predictions of {fitted_views} view(s); predict with --tta {fitted_views}"
        )
    return conformal_thresholds(labels, probabilities, coverage, guarantee)


def coverage_description(conformal: ConformalThresholds, labels: list[list[int]]) -> str:
    """What the written sets (``labels``, one list of classes per image) promise, in one
    line for the terminal."""
    promise = (
        "hold all true labels of an image"
        if conformal.guarantee == "image"
        else "hold each true class of an image (per-class recall)"
    )
    sizes = np.array([len(row) for row in labels])
    line = (
        f"label sets at coverage {conformal.coverage:g}: they {promise} at a rate of at least "
        f"{conformal.coverage:g} on images like the {conformal.images} out-of-fold ones they "
        f"were calibrated on; {sizes.mean() if len(sizes) else 0:.2f} labels per image, "
        f"{int((sizes == 0).sum())} empty"
    )
    always = int(np.count_nonzero(conformal.include_always))
    if always:
        line += f"; {always} class(es) on every image: too few out-of-fold images back the rate"
    return line


def label_set_rows(member_probabilities, conformal: ConformalThresholds) -> list[list[int]]:
    """Each image's label set, the union of the members' (``(M, N, C)``, or ``(N, C)`` for
    one; :func:`~hpa_keras.scoring.conformal.union_label_sets`), as class indices (ascending), the
    submission's form; a set may be empty (adding its top class would break nothing but
    is no part of the promise)."""
    sets = union_label_sets(member_probabilities, conformal)
    return [np.flatnonzero(row).tolist() for row in sets]


def stored_calibration(runs) -> Calibration | None:
    """The calibration maps of ``runs`` when it is one folder with a ``calibration.json``
    (a cv folder), else ``None``: maps fitted on one ensemble's out-of-fold predictions
    serve that ensemble only."""
    folders = run_paths(runs)
    return read_calibration(folders[0]) if len(folders) == 1 else None
