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

from hpa_keras.classes import CLASS_NAMES
from hpa_keras.errors import InputError

MODEL_FILE = "model.keras"
THRESHOLDS_FILE = "thresholds.json"  # written by hpa_keras.training.callbacks.ThresholdSearch
CONFIG_FILE = "config.yaml"


@dataclass
class Run:
    """A loaded run.

    Attributes:
        folder: the run folder.
        model: the Keras model (uint8 images of ``image_size`` and
            ``channels`` in, one probability per class out).
        thresholds: float64 ``(num_classes,)`` decision thresholds.
        class_names: the names of the model's outputs, in order.
        image_size: the side of the model's square input.
        channels: the stains the model reads, in order (for example
            ``("red", "green", "blue", "yellow")``).
        config: the run's resolved training settings (``config.yaml``).
    """

    folder: Path
    model: object
    thresholds: np.ndarray
    class_names: tuple[str, ...]
    image_size: int
    channels: tuple[str, ...]
    config: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


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
    names = document.get("class_names") or [
        entry.get("name") for entry in document.get("classes", [])
    ]
    if len(names) != len(thresholds) or not all(isinstance(name, str) for name in names):
        names = (
            CLASS_NAMES
            if len(thresholds) == len(CLASS_NAMES)
            else [str(index) for index in range(len(thresholds))]
        )
    return Run(
        folder=folder,
        model=model,
        thresholds=thresholds,
        class_names=tuple(names),
        image_size=int(input_shape[1]),
        channels=tuple(channels),
        config=config,
    )
