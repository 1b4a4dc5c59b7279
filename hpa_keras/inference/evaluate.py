"""Scoring a run (or an ensemble) on labeled data: per-class figures, macro and micro F1, ROC AUC.

The figures come from scikit-learn: per-class precision, recall and F1 with
``zero_division=0`` (a class never predicted and never present scores 0, as
in the challenge), micro F1 over all label decisions, and ROC AUC per class,
left undefined (NaN) for a class whose evaluation labels are all one value.
Only the F1-against-threshold curves of the report keep a numpy count
(:func:`hpa_keras.training.metrics.f1_per_class`): they need F1 at 101
thresholds for every class, and ``python benchmarks/bench_metrics.py``
shows the vectorized count to be many times faster than calling
scikit-learn 101 times.

:func:`evaluate_runs` predicts and scores in one call;
:mod:`hpa_keras.reports.html` turns an :class:`Evaluation` into CSV, text,
plots and a self-contained HTML page.
"""

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from hpa_keras.classes import CLASS_NAMES
from hpa_keras.errors import InputError
from hpa_keras.training.metrics import f1_per_class
from hpa_keras.training.thresholds import labels_per_image_warning

THRESHOLD_GRID = np.round(np.linspace(0.0, 1.0, 101), 2)


def precision_recall_f1(labels, predicted) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall and F1 (scikit-learn, ``zero_division=0``)."""
    from sklearn.metrics import precision_recall_fscore_support

    precision, recall, f1, _ = precision_recall_fscore_support(
        np.asarray(labels).astype(bool),
        np.asarray(predicted).astype(bool),
        average=None,
        zero_division=0,
    )
    return precision, recall, f1


def micro_f1(labels, predicted) -> float:
    """F1 of all label decisions pooled (scikit-learn): dominated by the frequent classes."""
    from sklearn.metrics import f1_score

    return float(
        f1_score(
            np.asarray(labels).astype(bool),
            np.asarray(predicted).astype(bool),
            average="micro",
            zero_division=0,
        )
    )


def roc_auc_per_class(labels, scores) -> np.ndarray:
    """ROC AUC of each class (scikit-learn); NaN for a class without both label values."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    areas = np.full(labels.shape[1], np.nan)
    for index in range(labels.shape[1]):
        column = labels[:, index]
        if column.any() and not column.all():
            areas[index] = roc_auc_score(column, scores[:, index])
    return areas


def f1_threshold_curves(labels, scores, grid=THRESHOLD_GRID) -> np.ndarray:
    """F1 of each class at each threshold of ``grid``: ``(len(grid), C)``."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores)
    return np.stack([f1_per_class(labels, scores >= threshold) for threshold in grid])


@dataclass
class Evaluation:
    """Labels, probabilities and thresholds of one evaluation, and everything scored from them."""

    ids: list[str]
    labels: np.ndarray
    probabilities: np.ndarray
    thresholds: np.ndarray
    class_names: Sequence[str] = CLASS_NAMES
    details: dict = field(default_factory=dict)

    def __setattr__(self, name, value):
        # Any new labels, probabilities or thresholds invalidate the cached class table.
        super().__setattr__(name, value)
        if name != "_table":
            super().__setattr__("_table", None)

    def __post_init__(self):
        self.labels = np.asarray(self.labels, dtype=np.float32)
        self.probabilities = np.asarray(self.probabilities, dtype=np.float32)
        self.thresholds = np.asarray(self.thresholds, dtype=np.float64)
        if self.labels.shape != self.probabilities.shape:
            raise ValueError(
                f"labels {self.labels.shape} and probabilities {self.probabilities.shape} differ"
            )
        if self.thresholds.shape != (self.labels.shape[1],):
            raise ValueError(
                f"{len(self.thresholds)} thresholds for {self.labels.shape[1]} classes"
            )

    @property
    def predicted(self) -> np.ndarray:
        """0/1 decisions with the thresholds (no top-class rule: the score of the thresholds)."""
        return self.probabilities >= self.thresholds[None, :]

    def class_table(self) -> pd.DataFrame:
        """One row per class: support, predicted count, precision, recall, F1, F1 at 0.5,
        threshold, ROC AUC. Computed once (the report asks for it several times); a copy
        is returned."""
        if self._table is None:
            self._table = self._compute_class_table()
        return self._table.copy()

    def _compute_class_table(self) -> pd.DataFrame:
        precision, recall, f1 = precision_recall_f1(self.labels, self.predicted)
        return pd.DataFrame(
            {
                "class": np.arange(len(self.class_names)),
                "name": list(self.class_names),
                "support": self.labels.sum(axis=0).astype(int),
                "predicted": self.predicted.sum(axis=0).astype(int),
                "precision": precision,
                "recall": recall,
                "f1": f1,
                "f1_at_0.5": f1_per_class(self.labels, self.probabilities >= 0.5),
                "threshold": self.thresholds,
                "roc_auc": roc_auc_per_class(self.labels, self.probabilities),
            }
        )

    def summary(self) -> dict:
        """Macro and micro F1 (thresholds and 0.5), macro precision/recall, mean ROC AUC."""
        table = self.class_table()
        areas = table["roc_auc"].dropna()
        return {
            "samples": int(len(self.labels)),
            "labels_per_image": float(self.labels.sum(axis=1).mean()) if len(self.labels) else 0.0,
            "predicted_labels_per_image": (
                float(self.predicted.sum(axis=1).mean()) if len(self.labels) else 0.0
            ),
            "macro_f1": float(table["f1"].mean()),
            "macro_f1_at_0.5": float(table["f1_at_0.5"].mean()),
            "micro_f1": micro_f1(self.labels, self.predicted),
            "micro_f1_at_0.5": micro_f1(self.labels, self.probabilities >= 0.5),
            "macro_precision": float(table["precision"].mean()),
            "macro_recall": float(table["recall"].mean()),
            "mean_roc_auc": float(areas.mean()) if len(areas) else float("nan"),
            "classes_with_auc": int(len(areas)),
            "classes_present": int((table["support"] > 0).sum()),
            "classes_f1_zero": int((table["f1"] == 0).sum()),
            **self.details,
        }

    def warnings(self) -> list[str]:
        """What makes the figures suspect: labels per image predicted more than a factor of
        two from the training data's (``details["training_labels_per_image"]``, when known)."""
        summary = self.summary()
        message = labels_per_image_warning(
            summary["predicted_labels_per_image"], self.details.get("training_labels_per_image")
        )
        return [message] if message else []

    def threshold_curves(self, grid=THRESHOLD_GRID) -> np.ndarray:
        return f1_threshold_curves(self.labels, self.probabilities, grid)


def summary_line(evaluation: Evaluation, what: str = "images") -> str:
    """One line: how many images (which folds), macro F1 (tuned and at 0.5), micro F1, AUC."""
    summary = evaluation.summary()
    folds, sources = summary.get("folds"), summary.get("sources")
    parts = []
    if folds:
        kind = "out of fold, folds" if summary.get("out_of_fold") else "fold"
        parts.append(f"{kind} {', '.join(map(str, folds))}")
    if sources:
        parts.append(f"{', '.join(sources)} only")
    where = f" ({'; '.join(parts)})" if parts else ""
    return (
        f"{summary['samples']} {what}{where}: macro F1 {summary['macro_f1']:.3f} "
        f"(at 0.5: {summary['macro_f1_at_0.5']:.3f}), micro F1 {summary['micro_f1']:.3f}, "
        f"mean ROC AUC {summary['mean_roc_auc']:.3f}"
    )


def _run_validation(folder: Path, data: Path) -> tuple[int, str | None] | None:
    """``(fold, source)`` a run validated on if it trained on the records in ``data``;
    ``None`` otherwise.

    The records are recognised by their contents (``input.json``'s fingerprint of the
    shards' digests), so a run started from another folder, or records copied elsewhere,
    are still recognised; runs made before the fingerprint existed fall back to the path
    of ``config.yaml``.
    """
    from hpa_keras.data.tfrecords import read_manifest, record_set_fingerprint
    from hpa_keras.inference.runs import read_input_settings, read_run_config

    config = read_run_config(folder)
    fingerprint = read_input_settings(folder).get("data_fingerprint")
    if fingerprint is not None:
        trained_here = fingerprint == record_set_fingerprint(read_manifest(data))
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
    from hpa_keras.data.tfrecords import read_manifest, record_set_fingerprint
    from hpa_keras.inference.runs import expand_runs, read_input_settings
    from hpa_keras.training.cv import is_cv_folder

    if len(runs) != 1 or not is_cv_folder(runs[0]):
        return False
    folders, _ = expand_runs(runs)
    fingerprint = record_set_fingerprint(read_manifest(data))
    return all(
        read_input_settings(folder).get("data_fingerprint") == fingerprint for folder in folders
    )


def _out_of_fold(cv_folder: Path, data, sources):
    """``(ids, labels, probabilities, thresholds)`` of a cv's own out-of-fold predictions."""
    from hpa_keras.data.pipeline import dataset_labels
    from hpa_keras.inference.runs import expand_runs
    from hpa_keras.training.cv import OOF_FILE, read_cv

    _, document = expand_runs([cv_folder])
    table = pd.read_csv(Path(cv_folder) / OOF_FILE, keep_default_na=False)
    folds = sorted(int(fold) for fold in set(table["fold"]))
    if sources is None:
        sources = read_cv(cv_folder)["settings"].get("validate_source")
    ids, labels = dataset_labels(data, folds, sources)
    missing = sorted(set(ids) - set(table["Id"]))
    if missing:
        raise InputError(
            f"{Path(cv_folder) / OOF_FILE}: no out-of-fold prediction for {len(missing)} images "
            f"of {data} (first: {missing[0]}); evaluate with --fold to predict them"
        )
    rows = table.set_index("Id").loc[ids]
    probabilities = rows[[str(index) for index in range(labels.shape[1])]].to_numpy(np.float32)
    return ids, labels, probabilities, np.asarray(document["thresholds"]), folds


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
    """
    from hpa_keras.inference.predict import predict_ids, predict_runs, training_labels_per_image
    from hpa_keras.inference.runs import class_names_of, default_views, expand_runs, run_paths

    runs = run_paths(runs)
    tta = default_views(runs) if tta is None else tta
    if data is not None:
        from hpa_keras.data.pipeline import dataset_labels
        from hpa_keras.data.tfrecords import read_manifest

        if not read_manifest(data).get("labeled", False):
            raise InputError(f"{data}: the TFRecords are unlabeled; evaluation needs labels")
        out_of_fold = folds is None and thresholds is None and _cv_trained_on(runs, data)
        if out_of_fold:
            ids, labels, probabilities, chosen, folds = _out_of_fold(Path(runs[0]), data, sources)
        else:
            folds, default_sources = default_selection(expand_runs(runs)[0], data, folds)
            sources = sources if sources is not None else default_sources
            ids, labels = dataset_labels(data, folds, sources)
            if not ids:
                raise InputError(f"{data}: nothing to evaluate (no samples)")
            probabilities, chosen = predict_ids(
                runs, ids, data=data, folds=folds, tta=tta, batch_size=batch_size,
                sources=sources, thresholds=thresholds,
            )  # fmt: skip
    elif images is not None:
        from hpa_keras.data.labels import read_labels

        out_of_fold = False
        if labels_file is None:
            raise InputError("--images needs --labels, a CSV with Id,Target")
        table = read_labels(labels_file)
        labels = table.multi_hot()
        # The labels file fixes the Ids and their order (input_ids checks every image exists).
        ids, probabilities, chosen = predict_runs(
            runs, images=images, ids_file=labels_file, tta=tta, batch_size=batch_size,
            thresholds=thresholds,
        )  # fmt: skip
    else:
        raise InputError("give --data (labeled TFRecords) or --images with --labels")
    # predict_ids refused labels of another scheme than the runs' before predicting
    # (hpa_keras.inference.predict.check_runs_and_input, shared with predict)
    names = class_names_of(expand_runs(runs)[0][0])
    details = {
        "runs": [str(folder) for folder in runs],
        "data": str(data if data is not None else images),
        "folds": None if folds is None else [int(fold) for fold in np.atleast_1d(folds)],
        "sources": None if sources is None else sorted(np.atleast_1d(sources).tolist()),
        "tta": tta,
        "training_labels_per_image": training_labels_per_image(runs),
        **({"out_of_fold": True} if out_of_fold else {}),
    }
    return Evaluation(ids, labels, probabilities, chosen, class_names=names, details=details)
