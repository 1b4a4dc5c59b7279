"""A finished run folder as one object: the model with its thresholds and input settings.

``hpa-keras fit`` leaves ``model.keras`` (uint8 images in, probabilities
out, standardization inside), ``thresholds.json`` and ``config.yaml`` in a
run folder. :func:`load_run` reads all three and checks that they agree, so
prediction, evaluation and Grad-CAM (and a user's notebook) start from the
same place:

    >>> run = hpa_keras.load_run("runs/gapnet-fold0")
    >>> probabilities = run.model.predict(images)          # uint8 (N, S, S, C)
    >>> labels = probabilities >= run.thresholds

A ``hpa-keras cv`` folder loads as its ensemble: one :class:`Run` whose
model averages the fold models and whose thresholds are those tuned on the
out-of-fold predictions.

Every problem (no such folder, a run still training, a corrupt or refused
model, a malformed thresholds or config file) is an InputError naming the
file and the reason.
"""

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from hpa_keras.classes import SCHEMES, resolve_channels
from hpa_keras.data.cell_records import DEFAULT_CELL_CONTEXT, DEFAULT_CELL_MARGIN
from hpa_keras.errors import InputError
from hpa_keras.models.saving import load_model
from hpa_keras.runs.documents import (
    read_calibration,
    read_input_settings,
    read_run_config,
    read_thresholds_document,
)
from hpa_keras.runs.files import CONFIG_FILE, INPUT_FILE, MODEL_FILE, THRESHOLDS_FILE
from hpa_keras.runs.folders import check_finished_run, expand_runs, is_cv_folder
from hpa_keras.scoring.calibration import Calibration


@dataclass(repr=False)
class Run:
    """A loaded run (or a cv folder's ensemble of fold runs); see :func:`load_run`.

    Attributes:
        folder: the run folder (or the cv folder).
        model: the Keras model (uint8 images of ``image_size`` and
            ``channels`` in, one probability per class out); for a cv
            folder the mean of its fold models.
        thresholds: float64 ``(num_classes,)`` decision thresholds (a cv
            folder's: tuned on its out-of-fold predictions).
        class_names: the names of the model's outputs, in order.
        image_size: the side fields are resized to before the model sees them.
        channels: the stains the model reads, in order (for example
            ``("red", "green", "blue", "yellow")``).
        config: the run's resolved training settings (``config.yaml``).
        crop: the side of the crops it trained on (``None``: whole fields).
        tiles: 0: it sees whole fields; N: the mean over N x N crop-sized tiles.
        bit_depth: 8 or 16, the pixel type of its input.
        sixteen_bit_rule: how 16-bit files became 8-bit for it.
        scheme: the label scheme of its outputs (``hpa2018``, ``hpa2021``).
        views: the dihedral views its thresholds were tuned with, which
            prediction uses unless told otherwise.
        kind: ``fields`` (whole images) or ``cells`` (single-cell crops).
        members: a cv folder's fold runs (empty for a single run).
        cell_margin, cell_context: how a cell run's crops were cut (its records'
            ``--cell-margin`` and ``--cell-context``), which ``annotate`` cuts new cells by.
        calibration: the folder's calibration maps (``calibration.json``; a cv folder's
            are fitted on its out-of-fold predictions), or ``None``. They map the
            probabilities a user reads; the thresholds judge the probabilities as
            predicted, which they were tuned on.
    """

    folder: Path
    model: object
    thresholds: np.ndarray
    class_names: tuple[str, ...]
    image_size: int
    channels: tuple[str, ...]
    config: dict = field(default_factory=dict)
    crop: int | None = None
    tiles: int = 0
    bit_depth: int = 8
    sixteen_bit_rule: str = "full-range"
    scheme: str = "hpa2018"
    views: int = 1
    kind: str = "fields"
    members: tuple["Run", ...] = ()
    calibration: Calibration | None = None
    cell_margin: float = DEFAULT_CELL_MARGIN
    cell_context: str = DEFAULT_CELL_CONTEXT

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __repr__(self) -> str:
        what = f"ensemble of {len(self.members)} fold runs" if self.members else "run"
        model = getattr(self.model, "name", type(self.model).__name__)
        pixels = f"uint{self.bit_depth} {''.join(name[0] for name in self.channels)}"
        tuned = "out-of-fold" if self.members else "validation"
        return (
            f"Run({str(self.folder)!r}: {what}, {self.kind})\n"
            f"  model {model}: {pixels} {self.image_size} px -> {self.num_classes} "
            f"{self.scheme} classes\n"
            f"  sees {self.views_description}, {self.views} view{'s' * (self.views > 1)}\n"
            f"  thresholds ({tuned}): {np.min(self.thresholds):.2f} to "
            f"{np.max(self.thresholds):.2f}, median {np.median(self.thresholds):.2f}"
        )

    def predictor(self, views: int = 1, engine: str = "keras"):
        """The model as prediction uses it: ``views`` dihedral views, the run's tiles; an
        object with ``predict(images, verbose=0)``.

        ``engine``: ``"keras"`` (the Keras model), ``"openvino"`` or ``"auto"`` (OpenVINO
        where installed; :mod:`hpa_keras.inference.engine`), optionally with
        ``:float32`` or ``:bfloat16``. A cv's ensemble predicts through Keras; its folds,
        predicted one by one as ``predict`` does, each through its own engine.

        Built once per view count and engine and kept, so that predicting several inputs
        with one run traces the wrapper once (about a second for 8 views of a 512 px
        GAP-Net on 2 cores) and compiles an engine once.
        """
        from hpa_keras.inference.engine import (  # lazy: imports TensorFlow
            EnginePredictor,
            parse_engine,
            uses_openvino,
        )
        from hpa_keras.inference.tta import with_tta  # lazy: imports TensorFlow

        name, precision = parse_engine(engine)
        cache = self.__dict__.setdefault("_predictors", {})
        if views not in cache:
            cache[views] = with_tta(self.model, views, tiles=self.tiles, tile_size=self.crop)
        if not uses_openvino(name) or self.members:
            return cache[views]
        key = (views, precision)
        if key not in cache:
            cache[key] = EnginePredictor(
                self, views, cache[views], precision, required=name == "openvino"
            )
        return cache[key]

    @property
    def views_description(self) -> str:
        """How the run sees a field, for summaries: the whole field or its tiles."""
        if not self.tiles:
            return f"whole {self.image_size} px fields"
        return f"{self.tiles}x{self.tiles} tiles of {self.crop} px over {self.image_size} px fields"


def load_run(folder: str | os.PathLike) -> Run:
    """Load a finished run folder, or a cv folder as its ensemble, ready to predict.

    Args:
        folder: a run folder written by ``hpa-keras fit`` (``model.keras``,
            ``thresholds.json``, ``config.yaml``, ``input.json``), or a
            folder written by ``hpa-keras cv`` (``cv.yaml`` and one
            ``fold-K`` run folder per fold).

    Returns:
        A :class:`Run`: ``model`` takes uint8 images ``(N, image_size,
        image_size, len(channels))`` (standardization is inside) and returns
        ``(N, num_classes)`` probabilities; ``probabilities >= thresholds``
        are the predicted labels, ``class_names`` name the columns, and
        ``views`` is the number of dihedral views the thresholds were tuned
        with. ``repr(run)`` summarises it in four lines.

        A cv folder gives its ensemble: ``model`` is the mean of the fold
        models, ``thresholds`` are those tuned on the out-of-fold
        predictions (``thresholds.json`` of the cv folder, not the mean of
        each fold's own), ``views`` the views they were tuned with, and
        ``members`` holds the fold runs themselves. This is what
        ``hpa-keras predict --run CV_FOLDER`` predicts with. To use one fold
        alone, load its folder: ``load_run("runs/cv/fold-0")``.

    Raises:
        InputError: naming the file and the reason, for a missing folder, a
            run still training, an unfinished cv, a corrupt or refused model
            (safe mode), malformed thresholds or config, a model whose
            input or output does not match its files, or cv folds that
            disagree.

    Example:
        >>> import hpa_keras
        >>> run = hpa_keras.load_run("runs/gapnet-fold0")    # or a cv folder
        >>> run
        Run('runs/gapnet-fold0': run, fields)
          model gapnet: uint8 rgby 512 px -> 28 hpa2018 classes
          sees whole 512 px fields, 1 view
          thresholds (validation): 0.05 to 0.80, median 0.30
        >>> probabilities = run.model.predict(images)        # uint8 (N, 512, 512, 4)
        >>> labels = probabilities >= run.thresholds
        >>> table = hpa_keras.predict_images(run, "test/")   # files in, DataFrame out
    """
    if is_cv_folder(folder):
        return _load_cv(Path(folder))
    return _load_one(Path(folder))


def _load_cv(folder: Path) -> Run:
    """A cv folder's fold runs as one Run: the mean model with the out-of-fold thresholds."""
    from hpa_keras.inference.tta import MeanOfModels  # lazy: imports TensorFlow

    folders, document = expand_runs([folder])
    members = tuple(_load_one(member) for member in folders)
    first = members[0]
    for member in members[1:]:
        for name in ("image_size", "channels", "class_names", "bit_depth", "tiles", "crop"):
            if getattr(member, name) != getattr(first, name):
                raise InputError(
                    f"{member.folder}: its {name.replace('_', ' ')} differs from "
                    f"{first.folder.name}'s; the folds of a cv cannot be averaged"
                )
    thresholds = document.thresholds
    if len(thresholds) != first.num_classes:
        raise InputError(
            f"{folder / THRESHOLDS_FILE}: {len(thresholds)} thresholds for models with "
            f"{first.num_classes} outputs"
        )
    model = MeanOfModels([member.model for member in members], name=f"mean_of_{len(members)}")
    return replace(
        first,
        folder=folder,
        model=model,
        thresholds=thresholds,
        views=int(document.views or 1),
        members=members,
        calibration=read_calibration(folder),
    )


def _load_one(folder: Path) -> Run:
    """One fit run folder as a Run; InputError on any problem."""

    check_finished_run(folder)
    document = read_thresholds_document(folder)
    config = read_run_config(folder)
    try:
        channels = resolve_channels(config.get("channels", "rgby"))
    except InputError as error:
        raise InputError(f"{folder / CONFIG_FILE}: {error}") from None
    settings = read_input_settings(folder)
    model = load_model(folder / MODEL_FILE)
    input_shape, output_shape = tuple(model.input.shape), tuple(model.output.shape)
    if len(input_shape) != 4 or input_shape[1] != input_shape[2]:
        raise InputError(f"{folder / MODEL_FILE}: expected square image input, got {input_shape}")
    if input_shape[-1] != len(channels):
        raise InputError(
            f"{folder / MODEL_FILE}: takes {input_shape[-1]} channels, but {CONFIG_FILE} says "
            f"{len(channels)} ({', '.join(channels)})"
        )
    thresholds = document.thresholds
    if len(thresholds) != output_shape[-1]:
        raise InputError(
            f"{folder / THRESHOLDS_FILE}: {len(thresholds)} thresholds for a model with "
            f"{output_shape[-1]} outputs"
        )
    scheme = settings.scheme or next(
        (name for name, known in SCHEMES.items() if known.num_classes == len(thresholds)),
        "hpa2018",
    )
    names = settings.class_names or document.class_names
    if not names or len(names) != len(thresholds):
        known = SCHEMES.get(scheme)
        names = (
            known.class_names
            if known and known.num_classes == len(thresholds)
            else [str(index) for index in range(len(thresholds))]
        )
    image_size = settings.image_size or input_shape[1]
    if image_size is None:
        raise InputError(f"{folder}: the model takes any size and {INPUT_FILE} is missing")
    bit_depth = settings.bit_depth or (16 if "16" in str(model.input.dtype) else 8)
    return Run(
        folder=folder,
        model=model,
        thresholds=thresholds,
        class_names=tuple(names),
        image_size=int(image_size),
        channels=tuple(channels),
        config=config,
        crop=settings.crop,
        tiles=int(settings.tiles or 0),
        bit_depth=int(bit_depth),
        sixteen_bit_rule=settings.sixteen_bit_rule,
        scheme=scheme,
        views=int(settings.tta or 1),
        kind=settings.kind,
        calibration=read_calibration(folder),
        cell_margin=DEFAULT_CELL_MARGIN if settings.cell_margin is None else settings.cell_margin,
        cell_context=settings.cell_context or DEFAULT_CELL_CONTEXT,
    )
