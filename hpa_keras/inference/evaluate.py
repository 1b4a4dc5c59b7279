"""Evaluating runs (or an ensemble) on labeled data: predict, then score.

:func:`evaluate_runs` predicts the images of a record set or a labeled
folder with one or more runs and scores them as an
:class:`~hpa_keras.scoring.evaluation.Evaluation`; by default it picks the
records a run did not train on (its validation fold, or a cv folder's
out-of-fold predictions).
"""

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from hpa_keras.data.tfrecords import read_manifest
from hpa_keras.errors import InputError
from hpa_keras.inference.label_sets import conformal_for
from hpa_keras.inference.predict import (
    predict_ids_by_member,
    predict_runs_by_member,
    training_labels_per_image,
)
from hpa_keras.runs.documents import (
    read_calibration,
    read_cv,
    read_input_settings,
    read_run_config,
)
from hpa_keras.runs.files import OOF_FILE
from hpa_keras.runs.folders import (
    class_names_of,
    default_views,
    expand_runs,
    is_cv_folder,
    run_paths,
)
from hpa_keras.scoring.evaluation import LABEL_SET_COVERAGE, Evaluation


def _run_validation(folder: Path, data: Path) -> tuple[int, str | None] | None:
    """``(fold, source)`` a run validated on if it trained on the records in ``data``;
    ``None`` otherwise.

    The records are recognised by their contents (``input.json``'s fingerprint of the
    shards' digests), so a run started from another folder, or records copied elsewhere,
    are still recognised; runs made before the fingerprint existed fall back to the path
    of ``config.yaml``.
    """

    config = read_run_config(folder)
    fingerprint = read_input_settings(folder).data_fingerprint
    if fingerprint is not None:
        trained_here = fingerprint == read_manifest(data).fingerprint()
    else:
        trained_on = config.get("data")
        trained_here = bool(trained_on) and Path(trained_on).resolve() == data.resolve()
    if trained_here:
        return int(config.get("fold", 0)), config.get("validate_source")
    return None


def default_folds(runs: Sequence[str | os.PathLike], data: str | os.PathLike):
    """The folds to evaluate when none are given: the runs' validation fold if they were
    trained on ``data`` (scoring all of it would score training samples), else all."""
    return default_selection(runs, data)[0]


def default_selection(runs: Sequence[str | os.PathLike], data: str | os.PathLike, folds=None):
    """``(folds, sources)`` to evaluate: ``folds`` when given, else the runs' validation fold
    if they were trained on ``data``, else everything (``None``); and the runs' validation
    source if they were trained on ``data`` with one (``--validate-source``: the folds are
    scored on the images ``fit`` scored), else every source (``None``)."""
    found = {_run_validation(Path(folder), Path(data)) for folder in runs}
    if found == {None}:
        return folds, None
    sources = {entry[1] for entry in found if entry}
    source = sources.pop() if len(sources) == 1 else None
    if folds is not None:
        return folds, source
    folds = {entry[0] if entry else None for entry in found}
    if len(folds) > 1:
        raise InputError(
            f"the runs were trained on {data} with different validation folds "
            f"({', '.join(str(fold) for fold in sorted(folds, key=str))}): every fold is "
            "training data for one of them; give --fold, or evaluate on held-out data"
        )
    return [folds.pop()], source


def _cv_trained_on(runs, data) -> bool:
    """Whether ``runs`` is one cv folder whose folds trained on the records in ``data``."""
    if len(runs) != 1 or not is_cv_folder(runs[0]):
        return False
    folders, _ = expand_runs(runs)
    fingerprint = read_manifest(data).fingerprint()
    return all(read_input_settings(folder).data_fingerprint == fingerprint for folder in folders)


def _out_of_fold(cv_folder: Path, data, sources):
    """``(ids, labels, probabilities, thresholds)`` of a cv's own out-of-fold predictions."""
    from hpa_keras.data.pipeline import dataset_labels  # lazy: imports TensorFlow

    _, document = expand_runs([cv_folder])
    table = pd.read_csv(Path(cv_folder) / OOF_FILE, keep_default_na=False)
    folds = sorted(int(fold) for fold in set(table["fold"]))
    if sources is None:
        sources = read_cv(cv_folder).settings.get("validate_source")
    ids, labels = dataset_labels(data, folds, sources)
    missing = sorted(set(ids) - set(table["Id"]))
    if missing:
        raise InputError(
            f"{Path(cv_folder) / OOF_FILE}: no out-of-fold prediction for {len(missing)} images "
            f"of {data} (first: {missing[0]}); evaluate with --fold to predict them"
        )
    rows = table.set_index("Id").loc[ids]
    probabilities = rows[[str(index) for index in range(labels.shape[1])]].to_numpy(np.float32)
    return ids, labels, probabilities, document.thresholds, folds


def evaluate_runs(
    runs: Sequence[str | os.PathLike],
    data=None,
    folds=None,
    images=None,
    labels_file=None,
    tta: int | None = None,
    batch_size: int = 16,
    sources=None,
    thresholds=None,
    engine: str | None = None,
) -> Evaluation:
    """Predict labeled data with ``runs`` (an ensemble if several) and score it.

    Args:
        runs: run folders from ``hpa-keras fit``, or one cv folder (an
            ensemble judged against its out-of-fold thresholds).
        data: a labeled make-tfrecords folder; ``folds`` picks folds of it and
            ``sources`` its sources. Without ``folds``: the runs' validation
            fold (and validation source) when they were trained on this
            folder; a cv folder on its own records is scored on its
            out-of-fold predictions (each image by the model that did not
            train on it); other data whole.
        images, labels_file: instead of ``data``, an image folder and its
            label CSV (every Id of the CSV is evaluated, in its order).
        tta: dihedral views averaged per image (default: as the thresholds
            were tuned).
        thresholds: a ``thresholds.json`` to judge with (needed by several
            plain runs).
        engine: as :func:`~hpa_keras.inference.predict.predict_runs`.
    """

    runs = run_paths(runs)
    tta = default_views(runs) if tta is None else tta
    first = expand_runs(runs)[0][0]
    if read_input_settings(first).scheme == "subcell":
        raise InputError(
            f"{first}: predicts SubCell's 31 classes, which no label file of the challenges "
            "holds; map its probabilities with hpa_keras.classes.map_subcell_probabilities "
            "and score them yourself, or fine-tune it on your labels (fit --init-from)"
        )
    if data is not None:
        # lazy: imports TensorFlow
        from hpa_keras.data.pipeline import dataset_labels
        from hpa_keras.data.tfrecords import read_manifest

        if not read_manifest(data).labeled:
            raise InputError(f"{data}: the TFRecords are unlabeled; evaluation needs labels")
        out_of_fold = folds is None and thresholds is None and _cv_trained_on(runs, data)
        members = None  # each member's probabilities, for the cv's label sets
        if out_of_fold:
            ids, labels, probabilities, chosen, folds = _out_of_fold(Path(runs[0]), data, sources)
        else:
            folds, default_sources = default_selection(expand_runs(runs)[0], data, folds)
            sources = sources if sources is not None else default_sources
            ids, labels = dataset_labels(data, folds, sources)
            if not ids:
                raise InputError(f"{data}: nothing to evaluate (no samples)")
            members, chosen = predict_ids_by_member(
                runs, ids, data=data, folds=folds, tta=tta, batch_size=batch_size,
                sources=sources, thresholds=thresholds, engine=engine,
            )  # fmt: skip
            probabilities = np.mean(members, axis=0)  # what predict_ids gives
    elif images is not None:
        from hpa_keras.data.labels import read_labels  # lazy: imports TensorFlow

        out_of_fold = False
        if labels_file is None:
            raise InputError("--images needs --labels, a CSV with Id,Target")
        table = read_labels(labels_file)
        labels = table.multi_hot()
        # The labels file fixes the Ids and their order (input_ids checks every image exists).
        ids, members, chosen = predict_runs_by_member(
            runs, images=images, ids_file=labels_file, tta=tta, batch_size=batch_size,
            thresholds=thresholds, engine=engine,
        )  # fmt: skip
        probabilities = np.mean(members, axis=0)  # what predict_runs gives
    else:
        raise InputError("give --data (labeled TFRecords) or --images with --labels")
    # predict_ids refused labels of another scheme than the runs' before predicting
    # (hpa_keras.inference.predict.check_runs_and_input, shared with predict)
    names = class_names_of(expand_runs(runs)[0][0])
    details = _evaluation_details(runs, data, images, folds, sources, tta, out_of_fold)
    # The stored maps are scored on images they were not fitted on: not on a cv's own
    # out-of-fold predictions (their fitting set), and only with the folder's thresholds.
    calibration = sets = None
    if len(runs) == 1 and thresholds is None and not out_of_fold:
        calibration = read_calibration(runs[0])
        sets = _label_sets_of(runs[0], tta)
    return Evaluation(
        ids, labels, probabilities, chosen, class_names=names, details=details,
        calibration=calibration, label_sets=sets,
        label_set_members=members if sets is not None else None,
    )  # fmt: skip


def _label_sets_of(folder, tta: int):
    """The 90% label sets ``predict --coverage`` would write with a cv folder, to measure on
    the evaluated images; None for a single run, other views or a cv without stored labels
    (an older one): there is nothing to measure then, which is no error of the evaluation."""
    try:
        return conformal_for([folder], LABEL_SET_COVERAGE, "image", views=tta)
    except InputError:
        return None


def _evaluation_details(runs, data, images, folds, sources, tta, out_of_fold) -> dict:
    """What an evaluation was of: ``Evaluation.details``, written to its summary."""
    return {
        "runs": [str(folder) for folder in runs],
        "data": str(data if data is not None else images),
        "folds": None if folds is None else [int(fold) for fold in np.atleast_1d(folds)],
        "sources": None if sources is None else sorted(np.atleast_1d(sources).tolist()),
        "tta": tta,
        "training_labels_per_image": training_labels_per_image(runs),
        **({"out_of_fold": True} if out_of_fold else {}),
    }
