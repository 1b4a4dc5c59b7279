"""Scoring probabilities against labels: per-class figures, macro and micro F1, ROC AUC.

The figures come from scikit-learn: per-class precision, recall and F1 with
``zero_division=0`` (a class never predicted and never present scores 0, as
in the challenge), micro F1 over all label decisions, and ROC AUC per class,
left undefined (NaN) for a class whose evaluation labels are all one value.
Only the F1-against-threshold curves of the report keep a numpy count
(:func:`hpa_keras.scoring.metrics.f1_per_class`): they need F1 at 101
thresholds for every class, and ``python benchmarks/bench_metrics.py``
shows the vectorized count to be many times faster than calling
scikit-learn 101 times.

How far the probabilities are from meaning what they say is scored too: expected
calibration error per class and overall (:mod:`hpa_keras.scoring.calibration`).
A cv folder stores calibration maps fitted on its out-of-fold predictions; an
:class:`Evaluation` given them (``calibration``) scores the calibrated probabilities'
ECE beside the raw one. What calibration and conformal label sets would reach on
such data is also measured by cross-fitting on the evaluated set itself
(:meth:`Evaluation.cross_fitted_probabilities`,
:meth:`Evaluation.label_set_coverage`): each image scored by what was fitted
without it, which needs no stored maps.

:class:`Evaluation` holds the labels and probabilities of one scored set;
:func:`hpa_keras.inference.evaluate.evaluate_runs` predicts and scores in one
call, and :mod:`hpa_keras.reports.html` turns an :class:`Evaluation` into
CSV, text, plots and a self-contained HTML page. Training and inference
both import this module; it imports neither.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hpa_keras.classes import CLASS_NAMES
from hpa_keras.scoring.calibration import (
    Calibration,
    CalibrationError,
    cross_fitted_calibration,
    expected_calibration_error,
)
from hpa_keras.scoring.conformal import (
    ConformalThresholds,
    EmpiricalCoverage,
    cross_fitted_coverage,
    empirical_coverage,
    union_label_sets,
)
from hpa_keras.scoring.metrics import f1_per_class
from hpa_keras.scoring.thresholds import labels_per_image_warning
from hpa_keras.scoring.uncertainty import most_uncertain, predictive_entropy

THRESHOLD_GRID = np.round(np.linspace(0.0, 1.0, 101), 2)
# Cross-fitting on the evaluated set itself (calibration maps, conformal thresholds): the
# folds and their seed, so that a report and a printed line give the same figures.
CROSS_FIT_FOLDS = 5
CROSS_FIT_SEED = 0
LABEL_SET_COVERAGE = 0.9
UNCERTAIN_IMAGES = 10


def precision_recall_f1(labels, predicted) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall and F1 (scikit-learn, ``zero_division=0``)."""
    # lazy: slow to import; the input checks run first
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
    from sklearn.metrics import f1_score  # lazy: slow to import; the input checks run first

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
    from sklearn.metrics import roc_auc_score  # lazy: slow to import; the input checks run first

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
    """Labels, probabilities and thresholds of one evaluation, and everything scored from them.

    ``probabilities`` are the runs' as predicted (the thresholds judge them); ``calibration``,
    the maps stored with the runs (a cv folder's ``calibration.json``), when given, is
    scored too: :meth:`calibrated_ece`; so are ``label_sets``, conformal thresholds fitted
    elsewhere (a cv's out-of-fold predictions, as ``predict --coverage`` uses them):
    :meth:`stored_label_set_coverage`, on ``label_set_members`` (the members'
    probabilities ``(M, N, C)``, whose sets' union is the image's set) when given.
    """

    ids: list[str]
    labels: np.ndarray
    probabilities: np.ndarray
    thresholds: np.ndarray
    class_names: Sequence[str] = CLASS_NAMES
    details: dict = field(default_factory=dict)
    calibration: Calibration | None = None
    label_sets: ConformalThresholds | None = None
    label_set_members: np.ndarray | None = None

    def __setattr__(self, name, value):
        # Any new labels, probabilities or thresholds invalidate what was computed from them.
        super().__setattr__(name, value)
        if not name.startswith("_"):
            super().__setattr__("_cache", {})

    def _cached(self, key, compute):
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

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
        threshold, ROC AUC, expected calibration error. Computed once (the report asks for
        it several times); a copy is returned."""
        return self._cached("table", self._compute_class_table).copy()

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
                "ece": self._calibration_error().per_class,
            }
        )

    def _calibration_error(self) -> CalibrationError:
        """ECE of the probabilities as predicted, per class and overall."""
        return self._cached(
            "ece", lambda: expected_calibration_error(self.labels, self.probabilities)
        )

    def calibrated_ece(self) -> float | None:
        """Overall ECE of the probabilities after the stored ``calibration`` (None without)."""
        if self.calibration is None:
            return None
        return self._cached(
            "stored_ece",
            lambda: (
                expected_calibration_error(
                    self.labels, self.calibration.apply(self.probabilities)
                ).overall
            ),
        )

    def cross_fitted_probabilities(self) -> np.ndarray | None:
        """The probabilities calibrated by maps fitted on this same set, each image's by maps
        fitted without it (:func:`~hpa_keras.scoring.calibration.cross_fitted_calibration`):
        what calibration could gain on data like this, when the run stores none. ``None``
        with fewer than two images. Computed once."""
        if len(self.labels) < 2:
            return None
        return self._cached(
            "calibrated",
            lambda: cross_fitted_calibration(
                self.labels, self.probabilities, folds=CROSS_FIT_FOLDS, seed=CROSS_FIT_SEED
            ),
        )

    def cross_fitted_ece(self) -> float:
        """Overall ECE of :meth:`cross_fitted_probabilities` (NaN with fewer than two images)."""
        calibrated = self.cross_fitted_probabilities()
        if calibrated is None:
            return float("nan")
        return expected_calibration_error(self.labels, calibrated).overall

    def label_set_coverage(self, coverage: float = LABEL_SET_COVERAGE) -> EmpiricalCoverage | None:
        """The rate conformal label sets promising ``coverage`` of images reach here, cross-
        fitted on this set (:func:`~hpa_keras.scoring.conformal.cross_fitted_coverage`).
        ``None`` with fewer than two images."""
        if len(self.labels) < 2:
            return None
        return self._cached(
            ("coverage", coverage),
            lambda: cross_fitted_coverage(
                self.labels, self.probabilities, coverage,
                folds=CROSS_FIT_FOLDS, seed=CROSS_FIT_SEED,
            ),
        )  # fmt: skip

    def stored_label_set_coverage(self) -> EmpiricalCoverage | None:
        """The rate the given ``label_sets`` reach on this set (None without them)."""
        if self.label_sets is None:
            return None
        return self._cached(
            "stored_coverage",
            lambda: empirical_coverage(
                self.labels,
                union_label_sets(
                    self.probabilities
                    if self.label_set_members is None
                    else self.label_set_members,
                    self.label_sets,
                ),  # fmt: skip
                self.label_sets.guarantee,
            ),
        )

    def uncertain_table(self, count: int = UNCERTAIN_IMAGES) -> pd.DataFrame:
        """The ``count`` images with the highest predictive entropy (most unsure first): id,
        entropy (bits, averaged over classes), true and predicted labels as space-separated
        class numbers (the challenge's ``Target`` form)."""
        entropy = predictive_entropy(self.probabilities)
        chosen = most_uncertain(entropy, count)

        def numbers(rows):
            return [" ".join(map(str, np.flatnonzero(row))) for row in rows]

        return pd.DataFrame(
            {
                "id": [self.ids[index] for index in chosen],
                "entropy": entropy[chosen],
                "labels": numbers(self.labels[chosen] > 0),
                "predicted": numbers(self.predicted[chosen]),
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
            "ece": self._calibration_error().overall,
            **({} if self.calibration is None else {"ece_calibrated": self.calibrated_ece()}),
            **self._stored_label_set_summary(),
            **self.details,
        }

    def _stored_label_set_summary(self) -> dict:
        measured = self.stored_label_set_coverage()
        if measured is None:
            return {}
        return {
            "label_sets": {
                "coverage": self.label_sets.coverage,
                "guarantee": self.label_sets.guarantee,
                "calibration_images": self.label_sets.images,
                "rate": measured.rate,
                "mean_set_size": measured.mean_set_size,
            }
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
    """One line: how many images (which folds), macro F1 (tuned and at 0.5), micro F1, AUC,
    expected calibration error."""
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
        f"mean ROC AUC {summary['mean_roc_auc']:.3f}, ECE {summary['ece']:.3f}"
        + (
            f" ({summary['ece_calibrated']:.3f} calibrated)"
            if summary.get("ece_calibrated") is not None
            else ""
        )
    )


def coverage_line(evaluation: Evaluation, coverage: float = LABEL_SET_COVERAGE) -> str:
    """What conformal label sets promising ``coverage`` of images reach on this set,
    cross-fitted on it, and how many labels they hold."""
    measured = evaluation.label_set_coverage(coverage)
    if measured is None:
        line = f"label sets at {coverage:.0%}: not measured (fewer than two images)"
    else:
        line = (
            f"label sets at {coverage:.0%}: cover {measured.rate:.2f} of images, "
            f"{measured.mean_set_size:.1f} labels on average (cross-fitted on this set)"
        )
    stored = evaluation.stored_label_set_coverage()
    if stored is not None:
        line += (
            f"; the cv's own at {evaluation.label_sets.coverage:.0%} (predict --coverage, from "
            f"{evaluation.label_sets.images} out-of-fold images): cover {stored.rate:.2f}, "
            f"{stored.mean_set_size:.1f} labels on average"
        )
    return line
