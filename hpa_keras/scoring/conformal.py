"""Split-conformal label sets: per-class thresholds whose sets hold the true labels at a set rate.

A tuned threshold makes no promise about new images (issue 25 saw validation
gains from tuning vanish on held-out images). A conformal threshold does:
fitted on a labelled calibration set the model never trained or tuned on, it
gives label sets ``probabilities >= thresholds`` that contain the truth at a
rate of at least ``coverage`` on new images, whatever the model and however
badly calibrated its probabilities are. What it needs is that
the calibration images and the new ones are exchangeable (drawn the same way,
e.g. a random split of one collection); a new microscope or cell line breaks that,
and so does reusing the calibration images for tuning or early stopping.

The rate is marginal: an average over draws of the calibration set and of the
new image, not a promise for each image or each calibration set. Over random
calibration sets of ``n`` images it lies between ``coverage`` and ``coverage +
1/(n + 1)`` on average when scores do not tie, and one calibration set's rate
scatters around that by about ``sqrt(coverage * (1 - coverage) / n)``.

Two guarantees, chosen with ``guarantee``:

``"image"`` (default)
    With probability at least ``coverage`` the set of a new image contains
    **all** of its true labels. The nonconformity of a calibration image is the
    largest ``1 - p_k`` over its true labels ``k`` (its least confident true
    label); the threshold ``q`` is the ``ceil((n + 1) * coverage)``-th smallest of
    the ``n`` scores, and the set is ``{k : 1 - p_k <= q}``, the same cut ``1 - q``
    for every class. An image with no true label scores 0: any set, even the
    empty one, holds all of its (zero) labels, so it counts as covered both in
    calibration and in :func:`empirical_coverage`, and the guarantee is over all
    images, labelled or not (``ConformalThresholds.unlabelled`` counts them).
    Because one missed label fails the whole image, images with many labels
    are the hard ones and set the cut: the sets are wider than a per-label rate
    would need, and the rate is not promised for images with many labels
    separately, only on average over the mix of label counts in the
    calibration set.

``"class"``
    Per class: for a new image that has class ``k``, ``k`` is in its set with
    probability at least ``coverage`` (class-conditional recall, the recall
    of every class at least ``coverage``). Class ``k``'s threshold comes from the
    ``n_k`` calibration images that have it, in the same way: the
    ``ceil((n_k + 1) * coverage)``-th smallest of their ``1 - p_k``. It says nothing
    about images without ``k`` (how often ``k`` is added to them) nor about all
    of an image's labels at once.

When the rank ``ceil((n + 1) * coverage)`` exceeds ``n``, too few calibration
scores back the rate (``n < coverage / (1 - coverage)``, 9 for 0.9) and the only
threshold that keeps the promise includes the class on every image: threshold
0. For ``"class"`` this is what a class with too few positives gets, rather
than the threshold pooled over classes, which would promise a rate nothing
measured for that class; ``ConformalThresholds.include_always`` marks such
classes, so a caller can see (and say) that the set adds them to every image.

Scores are compared in probability space (``p_k >= 1 - q``, the threshold being
a calibration probability itself), so ``probabilities >= thresholds``
reproduces the calibration cut exactly, with no rounding of ``1 - (1 - p)``.
Ties at the cut only add labels, so they keep the promise.

:func:`cross_fitted_coverage` measures the rate on a labelled set with no separate
calibration set: thresholds fitted on all folds but one, sets of the fold left out,
pooled (what ``hpa-keras evaluate`` prints).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hpa_keras.errors import InputError
from hpa_keras.scoring.calibration import cross_fit_folds

GUARANTEES = ("image", "class")
# Threshold of a class included on every image: every probability is >= 0.
INCLUDE_ALWAYS = 0.0
# (n + 1) * coverage is a float product: 10 * 0.9 may come out a hair above 9. A rank that
# exact arithmetic puts on an integer must not move up by one (a wider set than the
# guarantee needs, and "include always" where 9 scores suffice).
_RANK_TOLERANCE = 1e-9


@dataclass(frozen=True)
class ConformalThresholds:
    """Per-class thresholds of conformal label sets, with what they promise and what backs it.

    Attributes:
        thresholds: ``(C,)`` probability thresholds; the set of an image is
            ``probabilities >= thresholds``.
        coverage: the promised rate (see the module docstring for what it is a rate of).
        guarantee: ``"image"`` or ``"class"``.
        images: calibration images.
        positives: ``(C,)`` calibration images with each class.
        unlabelled: calibration images with no true label (covered by any set).
        include_always: ``(C,)`` classes whose threshold is 0 because too few
            calibration scores back the rate (all or none of them for ``"image"``).
    """

    thresholds: np.ndarray
    coverage: float
    guarantee: str
    images: int
    positives: np.ndarray
    unlabelled: int
    include_always: np.ndarray

    def to_dict(self) -> dict:
        """A JSON-friendly dict (plain lists and numbers); :meth:`from_dict` reads it back."""
        return {
            "guarantee": self.guarantee,
            "coverage": float(self.coverage),
            "thresholds": [float(value) for value in self.thresholds],
            "images": int(self.images),
            "positives": [int(value) for value in self.positives],
            "unlabelled": int(self.unlabelled),
            "include_always": [bool(value) for value in self.include_always],
        }

    @classmethod
    def from_dict(cls, document: dict, source: str = "conformal thresholds") -> ConformalThresholds:
        """Read :meth:`to_dict`'s output; :class:`InputError` names the field that is wrong."""
        if not isinstance(document, dict):
            raise InputError(f"{source}: expected a JSON object, got {type(document).__name__}")
        missing = [
            name
            for name in (
                "guarantee",
                "coverage",
                "thresholds",
                "images",
                "positives",
                "unlabelled",
                "include_always",
            )
            if name not in document
        ]
        if missing:
            raise InputError(f"{source}: missing field(s) {', '.join(missing)}")
        guarantee = _check_guarantee(document["guarantee"], f"{source}: field 'guarantee'")
        coverage = _check_coverage(document["coverage"], f"{source}: field 'coverage'")
        thresholds = _number_list(document["thresholds"], f"{source}: field 'thresholds'")
        if np.any((thresholds < 0) | (thresholds > 1)):
            raise InputError(f"{source}: field 'thresholds' has values outside [0, 1]")
        classes = len(thresholds)
        positives = _number_list(document["positives"], f"{source}: field 'positives'")
        if len(positives) != classes or np.any(positives < 0) or np.any(positives % 1):
            raise InputError(
                f"{source}: field 'positives' must be {classes} counts (one per threshold)"
            )
        flags = document["include_always"]
        if (
            not isinstance(flags, list)
            or len(flags) != classes
            or not all(isinstance(flag, bool) for flag in flags)
        ):
            raise InputError(
                f"{source}: field 'include_always' must be {classes} true/false values"
            )
        counts = {}
        for name in ("images", "unlabelled"):
            value = document[name]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InputError(f"{source}: field {name!r} must be a count, got {value!r}")
            counts[name] = value
        if counts["unlabelled"] > counts["images"]:
            raise InputError(f"{source}: field 'unlabelled' exceeds field 'images'")
        return cls(
            thresholds=thresholds,
            coverage=coverage,
            guarantee=guarantee,
            images=counts["images"],
            positives=positives.astype(np.int64),
            unlabelled=counts["unlabelled"],
            include_always=np.array(flags, dtype=bool),
        )


@dataclass(frozen=True)
class EmpiricalCoverage:
    """The rate label sets reached on a labelled set, to set against the promised one.

    Attributes:
        guarantee: which rate was measured.
        rate: ``"image"``: the share of images whose true labels are all in their
            set; ``"class"``: the mean over classes with a positive of ``per_class``.
        per_class: ``(C,)`` recall of each class in the sets (NaN for a class with
            no positive image), measured for both guarantees.
        mean_set_size: labels per set, averaged over images.
        images: images measured.
    """

    guarantee: str
    rate: float
    per_class: np.ndarray
    mean_set_size: float
    images: int

    def to_dict(self) -> dict:
        """A JSON-friendly dict; a class with no positive image has recall ``None``."""
        return {
            "guarantee": self.guarantee,
            "rate": float(self.rate),
            "per_class": [None if np.isnan(value) else float(value) for value in self.per_class],
            "mean_set_size": float(self.mean_set_size),
            "images": int(self.images),
        }


def conformal_thresholds(
    labels, probabilities, coverage: float = 0.9, guarantee: str = "image"
) -> ConformalThresholds:
    """Fit conformal thresholds on a calibration set (see the module docstring for the promise).

    Args:
        labels: 0/1 true labels ``(N, C)`` of the calibration images.
        probabilities: the model's probabilities ``(N, C)`` for them, in ``[0, 1]``;
            the images must not have been used to train or tune the model.
        coverage: the rate to promise, in ``(0, 1)``.
        guarantee: ``"image"`` (all true labels of an image in its set) or
            ``"class"`` (each class's recall).

    Returns:
        :class:`ConformalThresholds`; apply them with :func:`label_sets`.
    """
    coverage = _check_coverage(coverage, "coverage")
    guarantee = _check_guarantee(guarantee, "guarantee")
    truth, scores = _check_pair(labels, probabilities)
    images, classes = truth.shape
    positives = truth.sum(axis=0).astype(np.int64)
    unlabelled = int((~truth.any(axis=1)).sum())
    if guarantee == "image":
        # An image's conformity is the probability of its least confident true label; an
        # image with none gets 1 (nonconformity 0), which any threshold covers.
        conformity = np.where(truth, scores, 1.0).min(axis=1)
        threshold = _conformal_cut(conformity, coverage)
        include_always = np.full(classes, threshold is None)
        thresholds = np.full(classes, INCLUDE_ALWAYS if threshold is None else threshold)
    else:
        thresholds = np.empty(classes, dtype=np.float64)
        include_always = np.zeros(classes, dtype=bool)
        for column in range(classes):
            threshold = _conformal_cut(scores[truth[:, column], column], coverage)
            include_always[column] = threshold is None
            thresholds[column] = INCLUDE_ALWAYS if threshold is None else threshold
    return ConformalThresholds(
        thresholds=thresholds.astype(np.float64),
        coverage=coverage,
        guarantee=guarantee,
        images=images,
        positives=positives,
        unlabelled=unlabelled,
        include_always=include_always,
    )


def conformal_rank(count: int, coverage: float) -> int:
    """The rank ``ceil((count + 1) * coverage)`` of the conformal quantile among ``count`` scores.

    A rank above ``count`` means no calibration score is high enough to back the rate.
    """
    return math.ceil((count + 1) * coverage - _RANK_TOLERANCE)


def label_sets(probabilities, conformal: ConformalThresholds) -> np.ndarray:
    """The boolean label sets ``(N, C)``: ``probabilities >= conformal.thresholds``."""
    scores = _check_probabilities(probabilities, "probabilities")
    if scores.shape[1] != len(conformal.thresholds):
        raise InputError(
            f"probabilities have {scores.shape[1]} classes, the conformal thresholds "
            f"{len(conformal.thresholds)}"
        )
    return scores >= conformal.thresholds


def union_label_sets(member_probabilities, conformal: ConformalThresholds) -> np.ndarray:
    """Boolean ``(N, C)``: the union of the label sets of each member ``(M, N, C)`` of an
    ensemble (``(N, C)``: one member, its own sets). With thresholds fitted on single
    models' held-out predictions, each member's set covers a new image as on them, and
    the union at least as well; the members' mean, smoother than any of them, need not
    (:mod:`hpa_keras.inference.label_sets`)."""
    members = np.asarray(member_probabilities)
    if members.ndim == 2:
        members = members[None]
    if members.ndim != 3:
        raise InputError(f"member probabilities must be (M, N, C), got shape {members.shape}")
    return np.any([label_sets(member, conformal) for member in members], axis=0)


def empirical_coverage(labels, sets, guarantee: str = "image") -> EmpiricalCoverage:
    """Measure on labelled images the rate that label sets reach.

    Args:
        labels: 0/1 true labels ``(N, C)``.
        sets: boolean label sets ``(N, C)`` from :func:`label_sets`.
        guarantee: the rate to measure as :attr:`EmpiricalCoverage.rate`: ``"image"``,
            the share of images whose true labels are all in the set (an image with
            no true label counts as covered), or ``"class"``, the mean recall of the
            classes with a positive image.

    Returns:
        :class:`EmpiricalCoverage`, with per-class recall and the mean set size for both.
    """
    guarantee = _check_guarantee(guarantee, "guarantee")
    truth = _check_labels(labels, "labels")
    chosen = _check_labels(sets, "sets")
    if truth.shape != chosen.shape:
        raise InputError(f"labels {truth.shape} and sets {chosen.shape} must have the same shape")
    if len(truth) == 0:
        raise InputError("labels: no images to measure coverage on")
    found = (truth & chosen).sum(axis=0)
    present = truth.sum(axis=0)
    per_class = np.where(present > 0, found / np.maximum(present, 1), np.nan)
    if guarantee == "image":
        rate = float(np.mean(~np.any(truth & ~chosen, axis=1)))
    else:
        rate = float(np.nanmean(per_class)) if np.any(present > 0) else float("nan")
    return EmpiricalCoverage(
        guarantee=guarantee,
        rate=rate,
        per_class=per_class.astype(np.float64),
        mean_set_size=float(chosen.sum(axis=1).mean()),
        images=len(truth),
    )


def cross_fitted_coverage(
    labels,
    probabilities,
    coverage: float = 0.9,
    folds: int = 5,
    seed: int = 0,
    guarantee: str = "image",
) -> EmpiricalCoverage:
    """The rate conformal label sets reach on a labelled set, fitted on that same set.

    Thresholds fitted on a set and measured on it would count the set's own images in
    their quantile; here the images are cut into folds
    (:func:`~hpa_keras.scoring.calibration.cross_fit_folds`), thresholds are fitted by
    :func:`conformal_thresholds` on all folds but one and the label sets of the fold left
    out come from them; the sets of all folds are then measured together by
    :func:`empirical_coverage`. It says what sets calibrated on images like these would
    reach on new ones (each fold's thresholds rest on ``(K - 1) / K`` of the images, so
    slightly fewer than a fit on all of them).

    Returns:
        :class:`EmpiricalCoverage` of the pooled sets (``images``: all of them).
    """
    coverage = _check_coverage(coverage, "coverage")
    guarantee = _check_guarantee(guarantee, "guarantee")
    truth, scores = _check_pair(labels, probabilities)
    sets = np.zeros(truth.shape, dtype=bool)
    everything = np.arange(len(truth))
    for held_out in cross_fit_folds(len(truth), folds, seed):
        fitted = np.setdiff1d(everything, held_out, assume_unique=True)
        conformal = conformal_thresholds(truth[fitted], scores[fitted], coverage, guarantee)
        sets[held_out] = label_sets(scores[held_out], conformal)
    return empirical_coverage(truth, sets, guarantee)


def _conformal_cut(conformity: np.ndarray, coverage: float) -> float | None:
    """The probability threshold from calibration conformities (``p`` of the true label).

    The nonconformity ``1 - p``'s ``rank``-th smallest value is the conformity's
    ``rank``-th largest; ``None`` when the rank exceeds the number of scores.
    """
    rank = conformal_rank(len(conformity), coverage)
    if rank > len(conformity):
        return None
    return float(np.sort(conformity)[len(conformity) - rank])


def _check_coverage(coverage, name: str) -> float:
    if isinstance(coverage, bool) or not isinstance(coverage, int | float | np.floating):
        raise InputError(f"{name} must be a number in (0, 1), got {coverage!r}")
    if not 0.0 < float(coverage) < 1.0:
        raise InputError(f"{name} must be in (0, 1) (exclusive), got {coverage!r}")
    return float(coverage)


def _check_guarantee(guarantee, name: str) -> str:
    if guarantee not in GUARANTEES:
        raise InputError(f"{name} must be one of {', '.join(GUARANTEES)}, got {guarantee!r}")
    return guarantee


def _number_list(values, name: str) -> np.ndarray:
    if not isinstance(values, list) or not all(
        isinstance(value, int | float) and not isinstance(value, bool) for value in values
    ):
        raise InputError(f"{name} must be a list of numbers")
    array = np.array(values, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        raise InputError(f"{name} has values that are not finite")
    return array


def _check_probabilities(probabilities, name: str) -> np.ndarray:
    try:
        scores = np.asarray(probabilities, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InputError(f"{name} must be a numeric (N, C) array: {error}") from None
    if scores.ndim != 2:
        raise InputError(f"{name} must be a 2-D (N, C) array, got shape {scores.shape}")
    if np.isnan(scores).any():
        raise InputError(f"{name} contain NaN")
    if scores.size and (scores.min() < 0 or scores.max() > 1):
        raise InputError(
            f"{name} must lie in [0, 1], got values from {scores.min():g} to {scores.max():g}"
        )
    return scores


def _check_labels(labels, name: str) -> np.ndarray:
    try:
        array = np.asarray(labels)
    except (TypeError, ValueError) as error:
        raise InputError(f"{name} must be a 0/1 (N, C) array: {error}") from None
    if array.ndim != 2:
        raise InputError(f"{name} must be a 2-D (N, C) array, got shape {array.shape}")
    if array.dtype != bool and (
        not np.issubdtype(array.dtype, np.number) or not np.isin(array, (0, 1)).all()
    ):
        raise InputError(f"{name} must hold only 0 and 1")
    return array.astype(bool)


def _check_pair(labels, probabilities) -> tuple[np.ndarray, np.ndarray]:
    truth = _check_labels(labels, "labels")
    scores = _check_probabilities(probabilities, "probabilities")
    if truth.shape != scores.shape:
        raise InputError(
            f"labels {truth.shape} and probabilities {scores.shape} must have the same shape"
        )
    if len(truth) == 0:
        raise InputError("labels: no calibration images")
    return truth, scores
