"""The documents of run and cv folders, one schema each: typed, checked, written atomically.

- :class:`ThresholdsDocument` (``thresholds.json``): the decision thresholds and what they
  scored; ``fit`` writes one per run (the best epoch's), ``cv`` one per cv folder (tuned on
  the out-of-fold predictions, with the cv's own fields: ``views``, ``folds``,
  ``by_strategy``...).
- :class:`InputSettings` (``input.json``): how a run's model reads images.
- the run config (``config.yaml``): the resolved training settings, a mapping (its keys are
  those of :class:`hpa_keras.training.TrainingConfig`).
- :class:`CvDocument` (``cv.yaml``) and :class:`CvSummary` (``cv_summary.json``).
- the calibration maps (``calibration.json``): a
  :class:`~hpa_keras.scoring.calibration.Calibration`, which checks its own document.
- :class:`FoldPredictions` (a cv fold's ``oof.npz``): its validation fold's Ids, labels and
  probabilities, the calibration set of the cv's calibration maps and conformal sets.

Each reads with ``read_...`` (a folder or the file itself) and writes with ``write_...``.
Every field a file may lack (written by an older version) has a default; a malformed file
or field is an :class:`~hpa_keras.errors.InputError` naming the file and the field.
"""

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from hpa_keras.atomic import atomic_path, write_text_atomic
from hpa_keras.classes import CLASS_NAMES
from hpa_keras.errors import InputError
from hpa_keras.runs.files import (
    CALIBRATION_FILE,
    CONFIG_FILE,
    CV_FILE,
    CV_SUMMARY_FILE,
    FOLD_OOF_FILE,
    IMPORT_FILE,
    INPUT_FILE,
    THRESHOLDS_FILE,
)
from hpa_keras.scoring.calibration import Calibration
from hpa_keras.scoring.metrics import f1_per_class
from hpa_keras.scoring.thresholds import MIN_TUNING_POSITIVES, apply_thresholds
from hpa_keras.settings import read_settings_file, read_yaml

# ------------------------------------------------------------------ checking fields


def _describe(value) -> str:
    return "null" if value is None else f"{type(value).__name__} {value!r}"[:80]


def _wrong(where: str, expected: str, value):
    raise InputError(f"{where}: expected {expected}, got {_describe(value)}")


def _integer(value, where):
    if isinstance(value, bool) or not isinstance(value, int):
        _wrong(where, "an integer", value)
    return value


def _number(value, where):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _wrong(where, "a number", value)
    return float(value)


def _text(value, where):
    if not isinstance(value, str):
        _wrong(where, "a string", value)
    return value


def _mapping(value, where):
    if not isinstance(value, dict):
        _wrong(where, "a mapping", value)
    return value


def _texts(value, where):
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        _wrong(where, "a list of strings", value)
    return tuple(value)


def _integers(value, where):
    if not isinstance(value, list) or any(
        isinstance(item, bool) or not isinstance(item, int) for item in value
    ):
        _wrong(where, "a list of integers", value)
    return list(value)


def _stain_numbers(value, where):
    if not isinstance(value, dict) or not all(
        isinstance(key, str) and isinstance(item, int | float) and not isinstance(item, bool)
        for key, item in value.items()
    ):
        _wrong(where, "a mapping of stain names to numbers", value)
    return {key: float(item) for key, item in value.items()}


def _mappings(value, where):
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        _wrong(where, "a list of mappings", value)
    return list(value)


def _thresholds(value, where):
    try:
        thresholds = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        thresholds = np.full(2, np.nan)  # refused below
    if thresholds.ndim != 1 or not np.all((thresholds >= 0) & (thresholds <= 1)):
        raise InputError(f"{where} must be a list of numbers between 0 and 1")
    return thresholds


def _key(check, name: str | None = None, required: bool = False, written: str = "always"):
    """A field's metadata: its checker, its key in the file (``name``, else the field's
    name), whether a file must have it, and when it is written (``always``, or ``given``:
    only when not ``None``)."""
    return {"check": check, "key": name, "required": required, "written": written}


def _key_of(spec: dataclasses.Field) -> str:
    return spec.metadata["key"] or spec.name


def _from_mapping(cls, document, source: str, what: str):
    """``cls`` from a parsed document, each field checked; InputError naming ``source``."""
    if not isinstance(document, dict):
        raise InputError(f"{source}: not {what} (expected a mapping, got {_describe(document)})")
    values = {}
    for spec in dataclasses.fields(cls):
        key = _key_of(spec)
        if document.get(key) is None:
            if spec.metadata["required"]:
                raise InputError(f"{source}: not {what} (no {key})")
            continue
        values[spec.name] = spec.metadata["check"](document[key], f"{source}: {key}")
    return cls(**values)


def _to_mapping(document) -> dict:
    """The fields as the file holds them, in their order (tuples and arrays as lists)."""
    result = {}
    for spec in dataclasses.fields(document):
        value = getattr(document, spec.name)
        if value is None and spec.metadata["written"] == "given":
            continue
        if isinstance(value, np.ndarray):
            value = [float(item) for item in value]
        elif isinstance(value, tuple):
            value = list(value)
        result[_key_of(spec)] = value
    return result


def _file_in(path, name: str) -> Path:
    """``path`` itself, or the file ``name`` in it when ``path`` is a folder."""
    path = Path(path)
    return path / name if path.is_dir() else path


def _read_json(path: Path, what: str):
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: not {what} ({type(error).__name__}: {error})") from None


# ------------------------------------------------------------------ thresholds.json


@dataclass(kw_only=True)
class ThresholdsDocument:
    """A ``thresholds.json``: per-class decision thresholds and what they scored.

    ``fit`` writes the best epoch's (scored on the validation fold); ``cv`` writes the
    ones tuned on all out-of-fold predictions, with ``views``, ``tiles``, ``folds``,
    ``num_oof_samples`` and every strategy's figures (``by_strategy``). Only
    ``thresholds`` is required: the other fields default for files of older versions.

    Attributes:
        thresholds: float64 ``(num_classes,)``, each between 0 and 1.
        strategy: the threshold strategy that chose them.
        epoch: the epoch they come from (``fit``; ``None`` for a cv).
        num_validation_samples: the images they were tuned and scored on.
        macro_f1_at_half: macro F1 at 0.5 on those images (``macro_f1_at_0.5``).
        macro_f1_tuned: macro F1 with the thresholds on those images.
        class_names: the classes, in order.
        min_positives: the fewest positives a class needs for its own threshold.
        fallbacks: the classes whose tuned threshold was not kept, each with its cause.
        classes: one entry per class: support, threshold, F1 at 0.5 and tuned.
        weights: what the weights are, when not an epoch's own (stochastic averaging).
        weights_file: the weights file of the epoch, in the run folder.
        views, tiles, folds, num_oof_samples, by_strategy: a cv's (``None`` for a run).
    """

    strategy: str | None = field(default=None, metadata=_key(_text))
    epoch: int | None = field(default=None, metadata=_key(_integer))
    num_validation_samples: int | None = field(default=None, metadata=_key(_integer))
    macro_f1_at_half: float | None = field(
        default=None, metadata=_key(_number, name="macro_f1_at_0.5")
    )
    macro_f1_tuned: float | None = field(default=None, metadata=_key(_number))
    thresholds: np.ndarray = field(metadata=_key(_thresholds, required=True))
    class_names: tuple[str, ...] = field(default=(), metadata=_key(_texts))
    min_positives: int | None = field(default=None, metadata=_key(_integer))
    fallbacks: list[dict] = field(default_factory=list, metadata=_key(_mappings))
    classes: list[dict] = field(default_factory=list, metadata=_key(_mappings))
    weights: str | None = field(default=None, metadata=_key(_text, written="given"))
    weights_file: str | None = field(default=None, metadata=_key(_text, written="given"))
    views: int | None = field(default=None, metadata=_key(_integer, written="given"))
    tiles: int | None = field(default=None, metadata=_key(_integer, written="given"))
    folds: list[int] | None = field(default=None, metadata=_key(_integers, written="given"))
    num_oof_samples: int | None = field(default=None, metadata=_key(_integer, written="given"))
    by_strategy: dict | None = field(default=None, metadata=_key(_mapping, written="given"))

    def __post_init__(self):
        self.thresholds = np.asarray(self.thresholds, dtype=np.float64)
        self.class_names = tuple(self.class_names)

    def to_dict(self) -> dict:
        """The document as ``thresholds.json`` holds it."""
        return _to_mapping(self)

    @classmethod
    def from_dict(cls, document, source: str = THRESHOLDS_FILE) -> "ThresholdsDocument":
        """Checked; InputError naming ``source`` and the field on a malformed document."""
        return _from_mapping(cls, document, source, "a thresholds file")


def thresholds_document(
    labels, scores, thresholds, strategy, epoch, class_names=CLASS_NAMES, fallbacks=()
) -> ThresholdsDocument:
    """The thresholds and what they score on ``labels`` and ``scores``.

    ``fallbacks`` (from :func:`hpa_keras.scoring.thresholds.tune_thresholds`): the
    classes whose tuned threshold was not kept, listed with the reason under
    ``fallbacks`` (each named) and marked in their ``classes`` entry (``fallback``:
    ``"global"``, ``"default"`` or ``None``).
    """
    labels = np.asarray(labels)
    fallen = {entry["index"]: entry for entry in fallbacks}
    at_half = f1_per_class(labels, scores >= 0.5)
    tuned = f1_per_class(labels, apply_thresholds(scores, thresholds))
    return ThresholdsDocument(
        strategy=strategy,
        epoch=epoch,
        num_validation_samples=int(len(labels)),
        macro_f1_at_half=float(at_half.mean()),
        macro_f1_tuned=float(tuned.mean()),
        thresholds=np.asarray([float(value) for value in thresholds]),
        class_names=tuple(class_names),
        min_positives=MIN_TUNING_POSITIVES,
        fallbacks=[{**entry, "name": class_names[entry["index"]]} for entry in fallbacks],
        classes=[
            {
                "index": index,
                "name": name,
                "support": int(labels[:, index].sum()),
                "threshold": float(thresholds[index]),
                "f1_at_0.5": float(at_half[index]),
                "f1_tuned": float(tuned[index]),
                "fallback": fallen[index]["fallback"] if index in fallen else None,
            }
            for index, name in enumerate(class_names)
        ],
    )


def read_thresholds_document(path: str | os.PathLike) -> ThresholdsDocument:
    """A ``thresholds.json`` (a file, or a run or cv folder holding one), checked.
    InputError naming the file (and the field) when it is missing or malformed."""
    path = _file_in(path, THRESHOLDS_FILE)
    if not path.is_file():
        raise InputError(f"{path}: no thresholds file")
    return ThresholdsDocument.from_dict(_read_json(path, "a thresholds file"), str(path))


def read_thresholds(path: str | os.PathLike) -> np.ndarray:
    """The thresholds of a ``thresholds.json`` (a file or a run folder holding one)."""
    return read_thresholds_document(path).thresholds


def write_thresholds_document(path: str | os.PathLike, document: ThresholdsDocument) -> None:
    """Write ``document`` to ``path`` (a file, or a folder to hold ``thresholds.json``)."""
    write_text_atomic(
        _file_in(path, THRESHOLDS_FILE), json.dumps(document.to_dict(), indent=2) + "\n"
    )


# ------------------------------------------------------------------ input.json


@dataclass
class InputSettings:
    """A run's ``input.json``: how its model reads new images as it was trained.

    Runs made before the file existed read as the defaults (fields of 8-bit images,
    one view, no tiles).
    """

    data_fingerprint: str | None = field(default=None, metadata=_key(_text))
    kind: str = field(default="fields", metadata=_key(_text))  # cells: trained on cells
    cell_pooling: str | None = field(default=None, metadata=_key(_text))
    fold: int | None = field(default=None, metadata=_key(_integer))
    image_size: int | None = field(default=None, metadata=_key(_integer))
    stored_size: int | None = field(default=None, metadata=_key(_integer))
    crop: int | None = field(default=None, metadata=_key(_integer))
    tiles: int = field(default=0, metadata=_key(_integer))
    tta: int = field(default=1, metadata=_key(_integer))
    channels: tuple[str, ...] | None = field(default=None, metadata=_key(_texts))
    bit_depth: int | None = field(default=None, metadata=_key(_integer))
    sixteen_bit_rule: str = field(default="full-range", metadata=_key(_text))
    scheme: str | None = field(default=None, metadata=_key(_text))
    class_names: tuple[str, ...] | None = field(default=None, metadata=_key(_texts))
    sources: tuple[str, ...] | None = field(default=None, metadata=_key(_texts))
    validate_source: str | None = field(default=None, metadata=_key(_text))
    # The training folds' mean labels per image: predict, evaluate and the report warn
    # when a run's decisions give far more or fewer.
    labels_per_image: float | None = field(default=None, metadata=_key(_number))
    # The training folds' pixel mean and standard deviation per stain (the records' units):
    # predict warns when new images' stains are far from them (inference.input_shift).
    pixel_mean: dict | None = field(default=None, metadata=_key(_stain_numbers, written="given"))
    pixel_std: dict | None = field(default=None, metadata=_key(_stain_numbers, written="given"))
    # How a cell run's crops were cut (the records' margin and context): annotate cuts
    # new cells the same way.
    cell_margin: float | None = field(default=None, metadata=_key(_number, written="given"))
    cell_context: str | None = field(default=None, metadata=_key(_text, written="given"))

    def to_dict(self) -> dict:
        """The settings as ``input.json`` holds them."""
        return _to_mapping(self)

    @classmethod
    def from_dict(cls, document, source: str = INPUT_FILE) -> "InputSettings":
        """Checked; InputError naming ``source`` and the field on a malformed document."""
        return _from_mapping(cls, document, source, "input settings")


def read_input_settings(folder: str | os.PathLike) -> InputSettings:
    """A run's ``input.json`` (the defaults for runs made before it existed)."""
    path = Path(folder) / INPUT_FILE
    if not path.is_file():
        return InputSettings()
    return InputSettings.from_dict(_read_json(path, "valid JSON"), str(path))


def write_input_settings(folder: str | os.PathLike, settings: InputSettings) -> None:
    write_text_atomic(Path(folder) / INPUT_FILE, json.dumps(settings.to_dict(), indent=1))


# ------------------------------------------------------------------ import.json


def read_import_record(folder: str | os.PathLike) -> dict | None:
    """An imported run's ``import.json`` (what was imported, from which files), or ``None``
    for a trained run."""
    path = Path(folder) / IMPORT_FILE
    if not path.is_file():
        return None
    return _mapping(_read_json(path, "valid JSON"), str(path))


def write_import_record(folder: str | os.PathLike, record: dict) -> None:
    write_text_atomic(Path(folder) / IMPORT_FILE, json.dumps(record, indent=2) + "\n")


# ------------------------------------------------------------------ config.yaml


def run_config_text(settings: dict) -> str:
    """The text of a ``config.yaml`` holding ``settings``."""
    return yaml.safe_dump(settings, sort_keys=False)


def as_run_config(settings: dict) -> dict:
    """``settings`` as ``config.yaml`` gives them back (tuples as lists): to compare with a
    saved one."""
    return read_yaml(run_config_text(settings), CONFIG_FILE)


def read_run_config(folder: str | os.PathLike) -> dict:
    """A run folder's ``config.yaml`` as a dict (empty if the file is absent)."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        return {}
    return read_settings_file(path)


def write_run_config(folder: str | os.PathLike, settings: dict) -> None:
    write_text_atomic(Path(folder) / CONFIG_FILE, run_config_text(settings))


# ------------------------------------------------------------------ cv.yaml, cv_summary.json


@dataclass(kw_only=True)
class CvDocument:
    """A cv folder's ``cv.yaml``: the settings its folds share, the folds, the records.

    A restarted cv must match them; ``data_fingerprint`` recognises the same records
    reached by another path.
    """

    settings: dict = field(default_factory=dict, metadata=_key(_mapping))
    folds: list[int] = field(metadata=_key(_integers, required=True))
    data_fingerprint: str | None = field(default=None, metadata=_key(_text))

    def to_dict(self) -> dict:
        """The document as ``cv.yaml`` holds it."""
        return _to_mapping(self)

    @classmethod
    def from_dict(cls, document, source: str = CV_FILE) -> "CvDocument":
        return _from_mapping(cls, document, source, "a cv settings file")


def read_cv(path: str | os.PathLike) -> CvDocument:
    """The ``cv.yaml`` of a cv folder: its ``settings`` and ``folds``."""
    file = Path(path) / CV_FILE
    return CvDocument.from_dict(read_settings_file(file), str(file))


def write_cv(path: str | os.PathLike, document: CvDocument) -> None:
    write_text_atomic(Path(path) / CV_FILE, yaml.safe_dump(document.to_dict(), sort_keys=False))


@dataclass(kw_only=True)
class CvSummary:
    """A cv folder's ``cv_summary.json``: per-fold and pooled macro F1 and their spread.

    Attributes:
        folds: per fold: ``fold``, ``samples`` and its macro F1 with its own thresholds,
            the out-of-fold thresholds and at 0.5.
        fold_macro_f1_mean, fold_macro_f1_std: over the folds, with their own thresholds.
        oof_macro_f1: all out-of-fold predictions, with the thresholds tuned on them.
        oof_macro_f1_cross_fitted: each fold with thresholds tuned on the other folds.
        oof_macro_f1_at_half: all out-of-fold predictions at 0.5 (``oof_macro_f1_at_0.5``).
        strategy: the threshold strategy of the cv's thresholds.
        oof_macro_f1_by_strategy: ``oof_macro_f1`` of every strategy.
        samples: the out-of-fold predictions.
        views: the dihedral views they were predicted with.
        stopped_short: the folds whose best epoch was their last, still improving, and the
            epochs to train instead (:func:`hpa_keras.training.progress.folds_stopped_short`);
            ``None`` (not written) when none did, or in a summary written before it existed.
    """

    folds: list[dict] = field(metadata=_key(_mappings, required=True))
    fold_macro_f1_mean: float | None = field(default=None, metadata=_key(_number))
    fold_macro_f1_std: float | None = field(default=None, metadata=_key(_number))
    oof_macro_f1: float | None = field(default=None, metadata=_key(_number))
    oof_macro_f1_cross_fitted: float | None = field(default=None, metadata=_key(_number))
    oof_macro_f1_at_half: float | None = field(
        default=None, metadata=_key(_number, name="oof_macro_f1_at_0.5")
    )
    strategy: str | None = field(default=None, metadata=_key(_text))
    oof_macro_f1_by_strategy: dict = field(default_factory=dict, metadata=_key(_mapping))
    samples: int | None = field(default=None, metadata=_key(_integer))
    views: int | None = field(default=None, metadata=_key(_integer))
    stopped_short: str | None = field(default=None, metadata=_key(_text, written="given"))

    def to_dict(self) -> dict:
        """The summary as ``cv_summary.json`` holds it."""
        return _to_mapping(self)

    @classmethod
    def from_dict(cls, document, source: str = CV_SUMMARY_FILE) -> "CvSummary":
        return _from_mapping(cls, document, source, "a cv summary")


def read_cv_summary(path: str | os.PathLike) -> CvSummary:
    """A cv folder's ``cv_summary.json`` (the folder or the file)."""
    path = _file_in(path, CV_SUMMARY_FILE)
    if not path.is_file():
        raise InputError(f"{path}: no cv summary (an unfinished cv?)")
    return CvSummary.from_dict(_read_json(path, "a cv summary"), str(path))


def write_cv_summary(path: str | os.PathLike, summary: CvSummary) -> None:
    write_text_atomic(
        _file_in(path, CV_SUMMARY_FILE), json.dumps(summary.to_dict(), indent=1) + "\n"
    )


# ------------------------------------------------------------------ calibration.json


def read_calibration(folder: str | os.PathLike) -> Calibration | None:
    """A run or cv folder's ``calibration.json``; None when it has none (not calibrated,
    or made before calibration existed), so callers keep the probabilities as they are.
    InputError naming the file (and the field) when it is malformed."""
    path = Path(folder) / CALIBRATION_FILE
    if not path.is_file():
        return None
    return Calibration.from_dict(_read_json(path, "a calibration file"), str(path))


def write_calibration(folder: str | os.PathLike, calibration: Calibration) -> None:
    """Write ``calibration`` to ``folder``'s ``calibration.json``."""
    write_text_atomic(
        Path(folder) / CALIBRATION_FILE, json.dumps(calibration.to_dict(), indent=1) + "\n"
    )


# ------------------------------------------------------------------ fold-K/oof.npz


@dataclass(frozen=True)
class FoldPredictions:
    """A cv fold's validation predictions (``fold-K/oof.npz``), made by its own run.

    Attributes:
        ids: the fold's Ids, in evaluation order.
        probabilities: float ``(N, C)``, in ``views`` dihedral views.
        views: the views averaged per image.
        labels: 0/1 uint8 ``(N, C)``, the true labels; ``None`` in a file written before
            they were stored (the cv's record set gives them then).
    """

    ids: list[str]
    probabilities: np.ndarray
    views: int
    labels: np.ndarray | None = None


def read_fold_predictions(folder: str | os.PathLike) -> FoldPredictions | None:
    """A fold run folder's ``oof.npz``; None when it has none. InputError naming the file
    when it cannot be read or its arrays disagree."""
    path = Path(folder) / FOLD_OOF_FILE
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            ids = [str(sample_id) for sample_id in stored["ids"]]
            probabilities = np.asarray(stored["probabilities"])
            views = int(stored["views"])
            labels = np.asarray(stored["labels"], dtype=np.uint8) if "labels" in stored else None
    except (OSError, ValueError, KeyError) as error:
        raise InputError(f"{path}: cannot read the fold's predictions ({error})") from None
    rows = len(ids)
    if probabilities.ndim != 2 or len(probabilities) != rows:
        raise InputError(f"{path}: {probabilities.shape} probabilities for {rows} Ids")
    if labels is not None and labels.shape != probabilities.shape:
        raise InputError(f"{path}: labels {labels.shape} and probabilities disagree")
    return FoldPredictions(ids, probabilities, views, labels)


def write_fold_predictions(folder: str | os.PathLike, predictions: FoldPredictions) -> None:
    """Write ``predictions`` to ``folder``'s ``oof.npz`` (atomically)."""
    arrays = {
        "ids": np.array(predictions.ids),
        "probabilities": np.asarray(predictions.probabilities),
        "views": predictions.views,
    }
    if predictions.labels is not None:
        arrays["labels"] = np.asarray(predictions.labels, dtype=np.uint8)
    with atomic_path(Path(folder) / FOLD_OOF_FILE, suffix=".npz") as temporary:
        np.savez(temporary, **arrays)
