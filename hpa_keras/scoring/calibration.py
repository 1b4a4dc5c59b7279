"""Calibrated probabilities: per-class maps fitted on held-out predictions, and calibration error.

A network trained with a weighted loss, augmentation and early stopping ranks images well,
but its probabilities need not mean what they say: a class's 0.8 may be right far more or
far less often than 8 times in 10, and the error differs from class to class. Averaging
fold models, thresholds that have to transfer to new images and conformal label sets all
read the probabilities as probabilities, so each class gets a map from the network's
probability to a calibrated one, fitted on predictions the model did not train on
(out-of-fold predictions, in the views and ensemble the map will serve).

The maps, from the fewest parameters to the most (none falls, Platt's while its slope is
positive, as it is for a model that ranks better than chance: ranking and ROC AUC stay as
they were, but for ties on isotonic's flat steps):

- ``identity``: the probability as it is.
- ``temperature``: ``sigmoid(logit(p) / T)``, ``T`` fitted by log loss. One parameter that
  keeps 0.5 in place: it fixes over- or under-confidence and nothing else, so it needs
  the fewest examples.
- ``platt``: ``sigmoid(slope * logit(p) + intercept)``, fitted as scikit-learn's
  ``CalibratedClassifierCV(method="sigmoid")`` does (``sklearn.calibration.
  _sigmoid_calibration``: Platt's log loss against smoothed targets ``(n+ + 1) / (n+ + 2)``
  and ``1 / (n- + 2)``), fed the logit of the probability. The smoothing keeps the slope
  finite when a few positives are perfectly separated, where plain log loss has no
  minimum.
- ``isotonic``: scikit-learn's :class:`~sklearn.isotonic.IsotonicRegression` (clipped to
  [0, 1] and outside the fitted range), kept as its thresholds and applied by linear
  interpolation, which is what its ``predict`` does. Any monotone distortion, but with
  few positives or negatives it learns the fold by heart.
- ``shared-temperature``: one temperature fitted on all rare classes pooled (below).

Probabilities are clipped to ``[PROBABILITY_CLIP, 1 - PROBABILITY_CLIP]`` before a logit,
so a saturated 0 or 1 gives a finite logit.

:func:`fit_calibration` with ``method="auto"`` chooses each class's map by cross-fitting:
every candidate is fitted on K-1 folds and scored (log loss or Brier score) on the fold
left out, and the lowest held-out score wins, the simpler map on a tie. A map is only a
candidate where the class has the examples for it (:data:`MIN_SIGMOID_EXAMPLES` positives
and negatives for temperature and Platt, :data:`MIN_ISOTONIC_EXAMPLES` for isotonic): a
candidate that overfits its fold could still win by chance. A class with fewer than
:data:`MIN_SIGMOID_EXAMPLES` of one kind cannot back a map of its own; such classes share
one temperature fitted on them pooled, or keep the identity when even the pool has too
few. Each class records its map, why, and the held-out scores behind the choice.

:class:`Calibration` holds the maps: ``apply`` maps probabilities, ``to_dict`` and
``from_dict`` give and read a JSON-friendly document (plain numbers only; the run and cv
folders keep it as ``calibration.json``, :func:`hpa_keras.runs.documents.write_calibration`).

:func:`expected_calibration_error` and :func:`reliability_curve` say how far probabilities
are from calibrated, per class and over all label decisions: equal-width bins of the
predicted probability of the positive label, each bin's |positive rate - mean
probability| weighted by its share of the decisions.

:func:`cross_fitted_calibration` calibrates a labelled set with maps fitted on the same
set, each image by maps fitted without it: what calibration would gain on such data, for
a report where no calibration was fitted elsewhere.

This module imports numpy only; fitting imports scikit-learn and SciPy when called
(slow to import, and reading or applying a calibration needs neither).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from threadpoolctl import threadpool_limits

from hpa_keras.classes import CLASS_NAMES
from hpa_keras.errors import InputError

IDENTITY = "identity"
TEMPERATURE = "temperature"
PLATT = "platt"
ISOTONIC = "isotonic"
SHARED_TEMPERATURE = "shared-temperature"
# The methods fit_calibration can be asked for, from the fewest parameters to the most
# (cross-fitting prefers the earlier one on a tie).
METHODS = (IDENTITY, TEMPERATURE, PLATT, ISOTONIC)
ALL_METHODS = (*METHODS, SHARED_TEMPERATURE)
SCORES = ("log_loss", "brier")

# A class needs this many positives and this many negatives for a temperature or Platt map
# of its own; fewer, and it joins the rare classes' shared temperature. With one or two
# positives a fitted slope follows those few images, not the class.
MIN_SIGMOID_EXAMPLES = 5
# ...and this many of each for isotonic to be tried: its steps have as many free values as
# the data allow, so with few examples it reproduces the training fold.
MIN_ISOTONIC_EXAMPLES = 50
# Probabilities are kept this far from 0 and 1 before a logit, and in the log loss.
PROBABILITY_CLIP = 1e-6
DEFAULT_BINS = 15
# The range searched for log T: T from about 0.007 to about 150, far beyond any network's
# miscalibration, and finite where the data are separable (log loss falls without end).
_LOG_TEMPERATURE_BOUNDS = (-5.0, 5.0)


# ------------------------------------------------------------------ small maps


def _sigmoid(values: np.ndarray) -> np.ndarray:
    """Logistic function without overflow warnings for large |values|."""
    small = np.exp(-np.abs(values))
    return np.where(values >= 0, 1.0 / (1.0 + small), small / (1.0 + small))


def _logit(probabilities: np.ndarray) -> np.ndarray:
    clipped = np.clip(probabilities, PROBABILITY_CLIP, 1.0 - PROBABILITY_CLIP)
    return np.log(clipped) - np.log1p(-clipped)


def _softplus(values: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, values)


@dataclass(frozen=True, eq=False)
class ClassCalibration:
    """One class's map and why it was chosen.

    Attributes:
        name: the class.
        method: one of :data:`ALL_METHODS`.
        reason: why this map (the candidates and their scores, or the fallback's cause).
        positives, negatives: the class's examples in the data it was fitted on.
        temperature: ``T`` of ``temperature`` and ``shared-temperature``.
        slope, intercept: Platt's ``sigmoid(slope * logit(p) + intercept)``.
        x, y: isotonic's thresholds: the map interpolates ``p`` from ``x`` to ``y``.
        scores: the held-out score of each candidate tried (empty when none was scored).
    """

    name: str
    method: str
    reason: str = ""
    positives: int = 0
    negatives: int = 0
    temperature: float | None = None
    slope: float | None = None
    intercept: float | None = None
    x: np.ndarray | None = None
    y: np.ndarray | None = None
    scores: dict = field(default_factory=dict)

    def apply(self, probabilities: np.ndarray) -> np.ndarray:
        """The calibrated probabilities of this class (float64, 1-D in, 1-D out)."""
        probabilities = np.asarray(probabilities, dtype=np.float64)
        if self.method in (TEMPERATURE, SHARED_TEMPERATURE):
            return _sigmoid(_logit(probabilities) / self.temperature)
        if self.method == PLATT:
            return _sigmoid(self.slope * _logit(probabilities) + self.intercept)
        if self.method == ISOTONIC:
            return np.interp(probabilities, self.x, self.y)
        return probabilities.copy()

    def to_dict(self) -> dict:
        """The map as ``calibration.json`` holds it: only the parameters its method uses."""
        document = {
            "name": self.name,
            "method": self.method,
            "reason": self.reason,
            "positives": int(self.positives),
            "negatives": int(self.negatives),
        }
        if self.method in (TEMPERATURE, SHARED_TEMPERATURE):
            document["temperature"] = float(self.temperature)
        elif self.method == PLATT:
            document["slope"] = float(self.slope)
            document["intercept"] = float(self.intercept)
        elif self.method == ISOTONIC:
            document["x"] = [float(value) for value in self.x]
            document["y"] = [float(value) for value in self.y]
        document["scores"] = {key: float(value) for key, value in self.scores.items()}
        return document


# ------------------------------------------------------------------ checking inputs


def _check_probabilities(probabilities, what: str = "probabilities") -> np.ndarray:
    try:
        values = np.asarray(probabilities, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be numbers between 0 and 1") from None
    bad = ~((values >= 0) & (values <= 1))  # NaN is bad too
    if bad.any():
        where = np.argwhere(bad)[0]
        place = f" at {tuple(int(index) for index in where)}" if values.ndim else ""
        raise InputError(
            f"{what} must lie between 0 and 1: found {values[tuple(where)].item()!r}{place}"
        )
    return values


def _check_pair(labels, probabilities) -> tuple[np.ndarray, np.ndarray]:
    """Labels as float64 0/1 and probabilities as float64, both ``(N, C)`` (1-D: one class)."""
    probabilities = _check_probabilities(probabilities)
    labels = np.asarray(labels)
    if labels.shape != probabilities.shape:
        raise InputError(
            f"labels {labels.shape} and probabilities {probabilities.shape} must have the "
            "same shape (images, classes)"
        )
    if probabilities.ndim == 1:
        labels, probabilities = labels[:, None], probabilities[:, None]
    if probabilities.ndim != 2 or probabilities.shape[0] == 0:
        raise InputError(
            f"labels and probabilities must be (images, classes) with at least one image, "
            f"got {probabilities.shape}"
        )
    try:
        numbers = labels.astype(np.float64)
    except (TypeError, ValueError):
        raise InputError("labels must be 0 or 1") from None
    bad = (numbers != 0) & (numbers != 1)
    if bad.any():
        where = tuple(int(index) for index in np.argwhere(bad)[0])
        raise InputError(f"labels must be 0 or 1: found {labels[where].item()!r} at {where}")
    return numbers, probabilities


def _check_bins(bins) -> int:
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise InputError(f"bins must be a positive integer, got {bins!r}")
    return int(bins)


# ------------------------------------------------------------------ fitting one class


def _log_loss(labels: np.ndarray, probabilities: np.ndarray) -> float:
    clipped = np.clip(probabilities, PROBABILITY_CLIP, 1.0 - PROBABILITY_CLIP)
    return float(-np.mean(labels * np.log(clipped) + (1 - labels) * np.log1p(-clipped)))


def _brier(labels: np.ndarray, probabilities: np.ndarray) -> float:
    return float(np.mean((probabilities - labels) ** 2))


_SCORERS = {"log_loss": _log_loss, "brier": _brier}


def fit_temperature(labels, probabilities) -> float:
    """The ``T`` of ``sigmoid(logit(p) / T)`` with the least log loss on these examples.

    Log loss is convex in ``1 / T``, so it has one minimum along ``log T`` too: a bounded
    scalar search finds it without a starting guess.
    """
    from scipy.optimize import minimize_scalar  # lazy: slow to import; applying needs none

    labels = np.asarray(labels, dtype=np.float64).ravel()
    logits = _logit(np.asarray(probabilities, dtype=np.float64).ravel())

    def loss(log_temperature: float) -> float:
        scaled = logits * math.exp(-log_temperature)
        return float(np.mean(labels * _softplus(-scaled) + (1 - labels) * _softplus(scaled)))

    result = minimize_scalar(
        loss, bounds=_LOG_TEMPERATURE_BOUNDS, method="bounded", options={"xatol": 1e-7}
    )
    return float(math.exp(result.x))


def fit_platt(labels, probabilities) -> tuple[float, float]:
    """``(slope, intercept)`` of ``sigmoid(slope * logit(p) + intercept)``, Platt's way.

    The same problem as ``sklearn.calibration._sigmoid_calibration`` (which
    ``CalibratedClassifierCV(method="sigmoid")`` solves) on the logit feature: log loss
    against the smoothed targets ``(n+ + 1) / (n+ + 2)`` and ``1 / (n- + 2)``, from the
    same start, by L-BFGS-B with an exact gradient. scikit-learn writes the map as
    ``1 / (1 + exp(A f + B))``: ``slope = -A`` and ``intercept = -B``.
    """
    from scipy.optimize import minimize  # lazy: slow to import; applying needs none

    labels = np.asarray(labels, dtype=np.float64).ravel()
    logits = _logit(np.asarray(probabilities, dtype=np.float64).ravel())
    positives = float(labels.sum())
    negatives = float(len(labels) - positives)
    targets = np.where(labels > 0, (positives + 1) / (positives + 2), 1 / (negatives + 2))

    def loss_and_gradient(parameters):
        raw = parameters[0] * logits + parameters[1]
        loss = np.sum(targets * _softplus(-raw) + (1 - targets) * _softplus(raw))
        error = _sigmoid(raw) - targets
        return float(loss), np.array([error @ logits, error.sum()])

    start = np.array([0.0, math.log((positives + 1) / (negatives + 1))])
    result = minimize(
        loss_and_gradient,
        start,
        method="L-BFGS-B",
        jac=True,
        options={"gtol": 1e-8, "ftol": 64 * np.finfo(float).eps},
    )
    return float(result.x[0]), float(result.x[1])


def fit_isotonic(labels, probabilities) -> tuple[np.ndarray, np.ndarray]:
    """Isotonic regression's thresholds ``(x, y)``: ``np.interp(p, x, y)`` is its
    ``predict`` (clipped to [0, 1] and to the fitted range)."""
    from sklearn.isotonic import IsotonicRegression  # lazy: slow to import; applying needs none

    regression = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
    regression.fit(
        np.asarray(probabilities, dtype=np.float64).ravel(),
        np.asarray(labels, dtype=np.float64).ravel(),
    )
    return (
        np.asarray(regression.X_thresholds_, dtype=np.float64),
        np.asarray(regression.y_thresholds_, dtype=np.float64),
    )


def _fit_map(method: str, name: str, labels: np.ndarray, probabilities: np.ndarray, **extra):
    """``ClassCalibration`` of ``method`` fitted on one class's labels and probabilities."""
    positives = int(labels.sum())
    counts = {"positives": positives, "negatives": int(len(labels) - positives)}
    if method == TEMPERATURE:
        return ClassCalibration(
            name, method, temperature=fit_temperature(labels, probabilities), **counts, **extra
        )
    if method == PLATT:
        slope, intercept = fit_platt(labels, probabilities)
        return ClassCalibration(name, method, slope=slope, intercept=intercept, **counts, **extra)
    if method == ISOTONIC:
        x, y = fit_isotonic(labels, probabilities)
        return ClassCalibration(name, method, x=x, y=y, **counts, **extra)
    return ClassCalibration(name, IDENTITY, **counts, **extra)


def _cross_fitted_scores(
    labels: np.ndarray, probabilities: np.ndarray, methods, folds: int, seed: int, score: str
) -> tuple[dict, int]:
    """Each method's score on predictions held out from its fit, and the folds used.

    Folds are stratified on the class's labels, so every fold holds some positives.
    """
    from sklearn.model_selection import StratifiedKFold  # lazy: slow to import

    positives = int(labels.sum())
    splits = min(folds, positives, len(labels) - positives)
    held_out = {method: np.empty_like(probabilities) for method in methods}
    splitter = StratifiedKFold(n_splits=splits, shuffle=True, random_state=seed)
    for train, test in splitter.split(probabilities, labels):
        for method in methods:
            fitted = _fit_map(method, "", labels[train], probabilities[train])
            held_out[method][test] = fitted.apply(probabilities[test])
    scorer = _SCORERS[score]
    return {method: scorer(labels, held_out[method]) for method in methods}, splits


# ------------------------------------------------------------------ Calibration


@dataclass(frozen=True, eq=False)
class Calibration:
    """Per-class calibration maps for ``(images, classes)`` probabilities.

        >>> calibration = fit_calibration(oof_labels, oof_probabilities)
        >>> calibrated = calibration.apply(test_probabilities)
        >>> calibration.methods      # ("platt", "isotonic", "shared-temperature", ...)

    Attributes:
        classes: one :class:`ClassCalibration` per class, in column order.
        requested: the method asked of :func:`fit_calibration` (``"auto"`` or a name).
        score: the held-out score that chose the maps (``"log_loss"`` or ``"brier"``).
        folds: the most folds of the cross-fitting (a class with fewer positives or
            negatives uses as many folds as it has).
        seed: the seed of the folds.
        num_samples: the images the maps were fitted on.
        min_sigmoid, min_isotonic: the examples of each label a class needed for its own
            temperature or Platt map, and for isotonic.
    """

    classes: tuple[ClassCalibration, ...]
    requested: str = "auto"
    score: str = "log_loss"
    folds: int | None = None
    seed: int | None = None
    num_samples: int | None = None
    min_sigmoid: int = MIN_SIGMOID_EXAMPLES
    min_isotonic: int = MIN_ISOTONIC_EXAMPLES

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(entry.name for entry in self.classes)

    @property
    def methods(self) -> tuple[str, ...]:
        """Each class's map, in column order."""
        return tuple(entry.method for entry in self.classes)

    def apply(self, probabilities):
        """Calibrated probabilities, the shape of ``probabilities`` (``(N, C)`` or one image's
        ``(C,)``) and its dtype when float32 or float64 (float64 otherwise)."""
        given = np.asarray(probabilities)
        values = _check_probabilities(given)
        if values.ndim not in (1, 2) or values.shape[-1] != len(self.classes):
            raise InputError(
                f"probabilities {values.shape} do not fit a calibration of "
                f"{len(self.classes)} classes: expected (images, {len(self.classes)})"
            )
        rows = values.reshape(-1, len(self.classes))
        calibrated = np.empty_like(rows)
        for index, entry in enumerate(self.classes):
            calibrated[:, index] = entry.apply(rows[:, index])
        dtype = given.dtype if given.dtype in (np.float32, np.float64) else np.float64
        return calibrated.reshape(values.shape).astype(dtype, copy=False)

    def to_dict(self) -> dict:
        """The calibration as ``calibration.json`` holds it: strings, numbers, lists."""
        return {
            "requested": self.requested,
            "score": self.score,
            "folds": self.folds,
            "seed": self.seed,
            "num_samples": self.num_samples,
            "min_sigmoid": self.min_sigmoid,
            "min_isotonic": self.min_isotonic,
            "classes": [entry.to_dict() for entry in self.classes],
        }

    @classmethod
    def from_dict(cls, document, source: str = "calibration") -> Calibration:
        """Checked; InputError naming ``source`` and the field on a malformed document."""
        if not isinstance(document, dict):
            _wrong(source, "a mapping", document)
        entries = document.get("classes")
        if not isinstance(entries, list) or not entries:
            _wrong(f"{source}: classes", "a non-empty list of mappings", entries)
        classes = tuple(
            _class_from_dict(entry, f"{source}: classes[{index}]")
            for index, entry in enumerate(entries)
        )
        score = _optional(document, "score", _text, source, "log_loss")
        if score not in SCORES:
            _wrong(f"{source}: score", f"one of {', '.join(SCORES)}", score)
        return cls(
            classes=classes,
            requested=_optional(document, "requested", _text, source, "auto"),
            score=score,
            folds=_optional(document, "folds", _integer, source, None),
            seed=_optional(document, "seed", _integer, source, None),
            num_samples=_optional(document, "num_samples", _integer, source, None),
            min_sigmoid=_optional(document, "min_sigmoid", _integer, source, MIN_SIGMOID_EXAMPLES),
            min_isotonic=_optional(
                document, "min_isotonic", _integer, source, MIN_ISOTONIC_EXAMPLES
            ),
        )


# ------------------------------------------------------------------ reading a document


def _describe(value) -> str:
    return "null" if value is None else f"{type(value).__name__} {value!r}"[:80]


def _wrong(where: str, expected: str, value):
    raise InputError(f"{where}: expected {expected}, got {_describe(value)}")


def _text(value, where: str) -> str:
    if not isinstance(value, str):
        _wrong(where, "a string", value)
    return value


def _integer(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        _wrong(where, "a whole number of at least 0", value)
    return value


def _finite(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        _wrong(where, "a finite number", value)
    return float(value)


def _positive(value, where: str) -> float:
    if _finite(value, where) <= 0:
        _wrong(where, "a number above 0", value)
    return float(value)


def _scores(value, where: str) -> dict:
    if not isinstance(value, dict):
        _wrong(where, "a mapping of method to score", value)
    return {_text(key, where): _finite(item, f"{where}.{key}") for key, item in value.items()}


def _optional(document: dict, key: str, check, source: str, default):
    value = document.get(key)
    return default if value is None else check(value, f"{source}: {key}")


def _required(document: dict, key: str, check, where: str):
    if document.get(key) is None:
        raise InputError(f"{where}: no {key}")
    return check(document[key], f"{where}.{key}")


def _steps(value, where: str) -> np.ndarray:
    """Isotonic thresholds: a list of numbers in [0, 1], never falling."""
    if not isinstance(value, list) or not value:
        _wrong(where, "a non-empty list of numbers", value)
    steps = np.array([_finite(item, where) for item in value])
    if np.any((steps < 0) | (steps > 1)) or np.any(np.diff(steps) < 0):
        raise InputError(f"{where}: expected numbers between 0 and 1 that never fall")
    return steps


def _class_from_dict(document, where: str) -> ClassCalibration:
    if not isinstance(document, dict):
        _wrong(where, "a mapping", document)
    method = _required(document, "method", _text, where)
    if method not in ALL_METHODS:
        _wrong(f"{where}.method", f"one of {', '.join(ALL_METHODS)}", method)
    values = {
        "name": _required(document, "name", _text, where),
        "method": method,
        "reason": _optional(document, "reason", _text, where, ""),
        "positives": _optional(document, "positives", _integer, where, 0),
        "negatives": _optional(document, "negatives", _integer, where, 0),
        "scores": _optional(document, "scores", _scores, where, {}),
    }
    if method in (TEMPERATURE, SHARED_TEMPERATURE):
        values["temperature"] = _required(document, "temperature", _positive, where)
    elif method == PLATT:
        values["slope"] = _required(document, "slope", _finite, where)
        values["intercept"] = _required(document, "intercept", _finite, where)
    elif method == ISOTONIC:
        values["x"] = _required(document, "x", _steps, where)
        values["y"] = _required(document, "y", _steps, where)
        if len(values["x"]) != len(values["y"]):
            raise InputError(f"{where}: x and y must have the same length")
    return ClassCalibration(**values)


# ------------------------------------------------------------------ fitting all classes


def _class_names(class_names, count: int) -> tuple[str, ...]:
    if class_names is None:
        if count == len(CLASS_NAMES):
            return CLASS_NAMES
        return tuple(f"class {index}" for index in range(count))
    names = tuple(class_names)
    if len(names) != count:
        raise InputError(f"{len(names)} class names for probabilities of {count} classes")
    return names


def fit_calibration(
    labels,
    probabilities,
    method: str = "auto",
    folds: int = 5,
    seed: int = 0,
    score: str = "log_loss",
    class_names=None,
    min_sigmoid: int = MIN_SIGMOID_EXAMPLES,
    min_isotonic: int = MIN_ISOTONIC_EXAMPLES,
) -> Calibration:
    """Per-class calibration maps fitted on ``labels`` and ``probabilities`` ``(N, C)``.

    Fit on predictions the model did not train on (out-of-fold ones), in the views and
    ensemble the maps will be applied to: a map fitted on one run's probabilities does
    not fit an average of several.

    Args:
        labels: 0/1 ``(N, C)``.
        probabilities: ``(N, C)``, each between 0 and 1.
        method: ``"auto"`` (chosen per class by cross-fitting, with the rare classes'
            fallback) or one of :data:`METHODS` for every class (a class without both
            labels then keeps the identity: there is nothing to fit).
        folds: the most folds of the cross-fitting, at least 2.
        seed: the folds' shuffle.
        score: what the cross-fitting minimizes: ``"log_loss"`` (punishes a confident
            miss hardest) or ``"brier"``.
        class_names: the classes, in column order (default: the 2018 scheme's when there
            are 28 columns, else ``class 0``, ``class 1``...).
        min_sigmoid, min_isotonic: see :data:`MIN_SIGMOID_EXAMPLES` and
            :data:`MIN_ISOTONIC_EXAMPLES`.

    Raises:
        InputError: on labels and probabilities of different shapes, labels other than 0
            and 1, probabilities outside [0, 1], or an unknown method or score.
    """
    labels, probabilities = _check_pair(labels, probabilities)
    if method != "auto" and method not in METHODS:
        raise InputError(f"calibration method {method!r}: expected auto or one of {METHODS}")
    if score not in SCORES:
        raise InputError(f"calibration score {score!r}: expected one of {SCORES}")
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise InputError(f"calibration folds must be an integer of at least 2, got {folds!r}")
    names = _class_names(class_names, probabilities.shape[1])
    settings = {
        "requested": method,
        "score": score,
        "folds": folds,
        "seed": seed,
        "num_samples": int(len(labels)),
        "min_sigmoid": min_sigmoid,
        "min_isotonic": min_isotonic,
    }
    if method != "auto":
        return Calibration(
            classes=tuple(
                _forced(method, name, labels[:, index], probabilities[:, index])
                for index, name in enumerate(names)
            ),
            **settings,
        )
    with _one_blas_thread():
        return _fit_per_class(labels, probabilities, names, settings, folds, seed, score)


def _one_blas_thread():
    """One BLAS thread while many one- or two-parameter maps are fitted: threaded BLAS
    inside SciPy's L-BFGS-B only adds its start-up cost to each fit (many times the fit
    itself on a busy machine)."""
    return threadpool_limits(limits=1, user_api="blas")


def _fit_per_class(labels, probabilities, names, settings, folds, seed, score) -> Calibration:
    """The auto method: a rare class gets the rare classes' fallback, every other class
    the map that cross-fitting chooses."""
    min_sigmoid, min_isotonic = settings["min_sigmoid"], settings["min_isotonic"]
    positives = labels.sum(axis=0)
    fewest = np.minimum(positives, len(labels) - positives)
    rare = [index for index in range(len(names)) if fewest[index] < min_sigmoid]
    shared = _shared_temperature(labels[:, rare], probabilities[:, rare], min_sigmoid)
    classes = []
    for index, name in enumerate(names):
        column = (labels[:, index], probabilities[:, index])
        if index in rare:
            classes.append(_rare(name, *column, len(rare), shared, min_sigmoid))
        else:
            classes.append(_chosen(name, *column, folds, seed, score, min_isotonic))
    return Calibration(classes=tuple(classes), **settings)


def cross_fit_folds(count: int, folds: int = 5, seed: int = 0) -> list[np.ndarray]:
    """The held-out indices of each fold: ``count`` images shuffled by ``seed`` and cut
    into ``min(folds, count)`` folds of near-equal size (each image in exactly one).

    Used to measure on a set something fitted on that same set: each image is scored by
    what was fitted without it, so the figure is an honest guess of what a fit on other
    images of the same kind would give.
    """
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
        raise InputError(f"folds must be an integer of at least 2, got {folds!r}")
    if count < 2:
        raise InputError(f"cross-fitting needs at least 2 images, got {count}")
    order = np.random.default_rng(seed).permutation(count)
    return [np.sort(part) for part in np.array_split(order, min(int(folds), count))]


def cross_fitted_calibration(
    labels, probabilities, folds: int = 5, seed: int = 0, **options
) -> np.ndarray:
    """Calibrated probabilities of a labelled set, each image's by maps fitted without it.

    Shows what calibration would gain on data like this when no calibration was fitted
    elsewhere: maps fitted on all images and applied to the same images would score
    themselves on what they learned. Here the images are cut into folds
    (:func:`cross_fit_folds`); :func:`fit_calibration` is fitted on all folds but one
    (with ``options``, e.g. ``method``) and applied to the one left out.

    Returns:
        ``(N, C)`` float64 calibrated probabilities, in the order of ``probabilities``.
    """
    labels, probabilities = _check_pair(labels, probabilities)
    calibrated = np.empty_like(probabilities)
    everything = np.arange(len(labels))
    with _one_blas_thread():
        for held_out in cross_fit_folds(len(labels), folds, seed):
            fitted = np.setdiff1d(everything, held_out, assume_unique=True)
            calibration = fit_calibration(
                labels[fitted], probabilities[fitted], folds=folds, seed=seed, **options
            )
            calibrated[held_out] = calibration.apply(probabilities[held_out])
    return calibrated


def _forced(method: str, name: str, labels: np.ndarray, probabilities: np.ndarray):
    positives = int(labels.sum())
    if method != IDENTITY and positives in (0, len(labels)):
        missing = "positives" if positives == 0 else "negatives"
        return _fit_map(
            IDENTITY, name, labels, probabilities, reason=f"no {missing}: nothing to fit"
        )
    return _fit_map(method, name, labels, probabilities, reason=f"{method} asked for")


def _chosen(name, labels, probabilities, folds, seed, score, min_isotonic) -> ClassCalibration:
    """The candidate with the lowest cross-fitted score, refitted on all examples."""
    positives = int(labels.sum())
    fewest = min(positives, len(labels) - positives)
    candidates = METHODS if fewest >= min_isotonic else METHODS[:-1]
    scores, splits = _cross_fitted_scores(labels, probabilities, candidates, folds, seed, score)
    best = min(candidates, key=lambda candidate: scores[candidate])  # the first on a tie
    reason = f"lowest {score} held out over {splits} folds among {', '.join(candidates)}"
    if ISOTONIC not in candidates:
        reason += f" (isotonic needs {min_isotonic} positives and negatives)"
    return _fit_map(best, name, labels, probabilities, reason=reason, scores=scores)


def _shared_temperature(labels, probabilities, min_sigmoid: int) -> float | None:
    """One temperature for the rare classes pooled, or None when the pool is too small."""
    positives = int(labels.sum())
    if min(positives, labels.size - positives) < min_sigmoid:
        return None
    return fit_temperature(labels, probabilities)


def _rare(name, labels, probabilities, count, temperature, min_sigmoid) -> ClassCalibration:
    positives = int(labels.sum())
    counts = {"positives": positives, "negatives": int(len(labels) - positives)}
    cause = (
        f"{positives} positives and {counts['negatives']} negatives, fewer than {min_sigmoid} "
        "of one for a map of its own"
    )
    if temperature is None:
        reason = (
            f"{cause}; the rare classes pooled ({count}) still have fewer than {min_sigmoid} "
            "of one: nothing to learn"
        )
        return ClassCalibration(name, IDENTITY, reason=reason, **counts)
    reason = f"{cause}: the temperature shared by the {count} rare classes"
    return ClassCalibration(
        name, SHARED_TEMPERATURE, reason=reason, temperature=temperature, **counts
    )


# ------------------------------------------------------------------ how far from calibrated


@dataclass(frozen=True, eq=False)
class ReliabilityCurve:
    """Equal-width bins of predicted probability: what a reliability diagram draws.

    Bins are ``(lower, upper]`` (the first holds 0 too), as in scikit-learn's
    ``calibration_curve(strategy="uniform")``. An empty bin has count 0 and NaN means.

    Attributes:
        edges: ``(bins + 1,)`` from 0 to 1.
        centers: each bin's middle.
        mean_predicted: the mean probability in each bin.
        observed: the positive rate in each bin.
        counts: the label decisions in each bin.
    """

    edges: np.ndarray
    centers: np.ndarray
    mean_predicted: np.ndarray
    observed: np.ndarray
    counts: np.ndarray

    @property
    def error(self) -> float:
        """Expected calibration error: |observed - mean predicted| weighted by bin count."""
        filled = self.counts > 0
        gaps = np.abs(self.observed[filled] - self.mean_predicted[filled])
        return float(np.sum(gaps * self.counts[filled]) / self.counts.sum())


def _curve(labels: np.ndarray, probabilities: np.ndarray, bins: int) -> ReliabilityCurve:
    edges = np.linspace(0.0, 1.0, bins + 1)
    labels, probabilities = labels.ravel(), probabilities.ravel()
    index = np.searchsorted(edges[1:-1], probabilities)
    counts = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(index, weights=probabilities, minlength=bins) / counts
        observed = np.bincount(index, weights=labels, minlength=bins) / counts
    return ReliabilityCurve(edges, (edges[:-1] + edges[1:]) / 2, mean, observed, counts)


def reliability_curve(labels, probabilities, bins: int = DEFAULT_BINS) -> ReliabilityCurve:
    """The reliability curve of all label decisions pooled (pass one column for a class).

    Raises:
        InputError: on different shapes, labels other than 0/1, probabilities outside [0, 1].
    """
    labels, probabilities = _check_pair(labels, probabilities)
    return _curve(labels, probabilities, _check_bins(bins))


class CalibrationError(NamedTuple):
    """Expected calibration error per class ``(C,)`` and over all label decisions."""

    per_class: np.ndarray
    overall: float


def expected_calibration_error(labels, probabilities, bins: int = DEFAULT_BINS) -> CalibrationError:
    """Expected calibration error of binary per-label probabilities, per class and overall.

    In each of ``bins`` equal-width bins of the probability of the positive label, the
    gap between the positive rate and the mean probability, weighted by the bin's share
    of the decisions; ``overall`` pools every label decision of every class (the classes
    weigh by their images, not equally). 0 is calibrated; a model that says 0.9 where
    half are positive adds 0.4 times those decisions' share.

    Raises:
        InputError: on different shapes, labels other than 0/1, probabilities outside [0, 1].
    """
    labels, probabilities = _check_pair(labels, probabilities)
    bins = _check_bins(bins)
    per_class = np.array(
        [
            _curve(labels[:, index], probabilities[:, index], bins).error
            for index in range(labels.shape[1])
        ]
    )
    return CalibrationError(per_class, _curve(labels, probabilities, bins).error)
