"""A finished run folder as one object: the model with its thresholds and input settings.

``hpa-keras fit`` leaves ``model.keras`` (uint8 images in, probabilities
out, standardization inside), ``thresholds.json`` and ``config.yaml`` in a
run folder. :func:`load_run` reads all three and checks that they agree, so
prediction, evaluation and Grad-CAM (and a user's notebook) start from the
same place:

    >>> run = hpa_keras.load_run("runs/gapnet-fold0")
    >>> probabilities = run.model.predict(images)          # uint8 (N, S, S, C)
    >>> labels = probabilities >= run.thresholds

Every problem (no such folder, a run still training, a corrupt or refused
model, a malformed thresholds or config file) is an InputError naming the
file and the reason.
"""

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from hpa_keras.classes import SCHEMES
from hpa_keras.errors import InputError

MODEL_FILE = "model.keras"
THRESHOLDS_FILE = "thresholds.json"  # written by hpa_keras.training.callbacks.ThresholdSearch
CONFIG_FILE = "config.yaml"
INPUT_FILE = "input.json"  # written by hpa_keras.training.fit


@dataclass
class Run:
    """A loaded run.

    Attributes:
        folder: the run folder.
        model: the Keras model (uint8 images of ``image_size`` and
            ``channels`` in, one probability per class out).
        thresholds: float64 ``(num_classes,)`` decision thresholds.
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

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def predictor(self, views: int = 1):
        """The model as prediction uses it: ``views`` dihedral views, the run's tiles.

        Built once per view count and kept, so that predicting several inputs
        with one run traces the wrapper once (about a second for 8 views of a
        512 px GAP-Net on 2 cores).
        """
        from hpa_keras.inference.tta import with_tta

        cache = self.__dict__.setdefault("_predictors", {})
        if views not in cache:
            cache[views] = with_tta(self.model, views, tiles=self.tiles, tile_size=self.crop)
        return cache[views]

    @property
    def views_description(self) -> str:
        """How the run sees a field, for summaries: the whole field or its tiles."""
        if not self.tiles:
            return f"whole {self.image_size} px fields"
        return f"{self.tiles}x{self.tiles} tiles of {self.crop} px over {self.image_size} px fields"


def read_input_settings(folder: str | os.PathLike) -> dict:
    """A run's ``input.json`` (empty for runs made before it existed)."""
    import json

    path = Path(folder) / INPUT_FILE
    if not path.is_file():
        return {}
    try:
        settings = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(settings, dict):
        raise InputError(f"{path}: expected a mapping of input settings")
    return settings


def read_run_config(folder: str | os.PathLike) -> dict:
    """A run folder's ``config.yaml`` as a dict (empty if the file is absent)."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        return {}
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise InputError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(config, dict):
        raise InputError(f"{path}: expected a mapping of settings, got {type(config).__name__}")
    return config


def class_names_of(folder: str | os.PathLike) -> tuple[str, ...]:
    """A run's class names without loading its model (``input.json``, else ``thresholds.json``)."""
    from hpa_keras.training.callbacks import read_thresholds_document

    names = read_input_settings(folder).get("class_names")
    if names:
        return tuple(names)
    document = read_thresholds_document(folder)
    if document.get("class_names"):
        return tuple(document["class_names"])
    count = len(document["thresholds"])
    known = next((scheme for scheme in SCHEMES.values() if scheme.num_classes == count), None)
    return known.class_names if known else tuple(str(index) for index in range(count))


def expand_runs(paths) -> tuple[list[Path], dict | None]:
    """Run folders, and the ensemble's thresholds document when ``paths`` is one cv folder.

    A cv folder stands for its fold runs, judged together against the
    thresholds tuned on their out-of-fold predictions. It cannot be mixed
    with other runs (their thresholds would no longer fit the mean).
    """
    from hpa_keras.training.callbacks import read_thresholds_document
    from hpa_keras.training.cv import fold_folder, is_cv_folder, read_cv

    paths = [Path(path) for path in paths]
    cv_folders = [path for path in paths if is_cv_folder(path)]
    if not cv_folders:
        return paths, None
    if len(paths) > 1:
        raise InputError(
            f"{cv_folders[0]}: a cv folder is one ensemble with its own thresholds; give it "
            "alone as --run"
        )
    folder = cv_folders[0]
    if not (folder / THRESHOLDS_FILE).is_file():
        raise InputError(f"{folder}: an unfinished cv (no {THRESHOLDS_FILE}); run it again")
    runs = [fold_folder(folder, fold) for fold in read_cv(folder)["folds"]]
    return runs, read_thresholds_document(folder / THRESHOLDS_FILE)


def default_views(paths) -> int:
    """The dihedral views the runs' thresholds were tuned with (1 for older runs)."""
    from hpa_keras.training.cv import is_cv_folder

    first = Path(list(paths)[0])
    if is_cv_folder(first):
        from hpa_keras.training.callbacks import read_thresholds_document

        return int(read_thresholds_document(first / THRESHOLDS_FILE).get("views", 1))
    return int(read_input_settings(first).get("tta") or 1)


def load_run(folder: str | os.PathLike) -> Run:
    """Load a finished run folder (see the module docstring); InputError on any problem."""
    from hpa_keras.data.pipeline import resolve_channels
    from hpa_keras.models.saving import load_model
    from hpa_keras.training.callbacks import read_thresholds_document

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such run folder")
    if not (folder / MODEL_FILE).is_file():
        hint = " (still training, or interrupted?)" if (folder / "backup").exists() else ""
        raise InputError(f"{folder}: no {MODEL_FILE}; not a finished run folder{hint}")
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
    thresholds = document["thresholds"]
    if len(thresholds) != output_shape[-1]:
        raise InputError(
            f"{folder / THRESHOLDS_FILE}: {len(thresholds)} thresholds for a model with "
            f"{output_shape[-1]} outputs"
        )
    scheme = settings.get("scheme") or next(
        (name for name, known in SCHEMES.items() if known.num_classes == len(thresholds)),
        "hpa2018",
    )
    names = settings.get("class_names") or document.get("class_names")
    if not names or len(names) != len(thresholds):
        known = SCHEMES.get(scheme)
        names = (
            known.class_names
            if known and known.num_classes == len(thresholds)
            else [str(index) for index in range(len(thresholds))]
        )
    image_size = settings.get("image_size") or input_shape[1]
    if image_size is None:
        raise InputError(f"{folder}: the model takes any size and {INPUT_FILE} is missing")
    bit_depth = settings.get("bit_depth") or (16 if "16" in str(model.input.dtype) else 8)
    return Run(
        folder=folder,
        model=model,
        thresholds=thresholds,
        class_names=tuple(names),
        image_size=int(image_size),
        channels=tuple(channels),
        config=config,
        crop=settings.get("crop"),
        tiles=int(settings.get("tiles") or 0),
        bit_depth=int(bit_depth),
        sixteen_bit_rule=settings.get("sixteen_bit_rule", "full-range"),
        scheme=scheme,
    )
