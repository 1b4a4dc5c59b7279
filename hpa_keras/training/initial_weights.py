"""``fit --init-from RUN``: training starts from another run's weights, such as the 2018
winner's DenseNet imported by ``hpa-keras import-model`` and fine-tuned on a user's own
labelled fields.

The weights are copied layer by layer, by each layer's path in the registry model (nested
backbones included), from the run's saved model into the one ``fit`` builds: the same
registry model with the same builder options, so every layer must fit, except the
classification layer, which starts new when the record set has other classes than the
run (its own shape differs). The standardization of the new run is its own records'.
"""

import os
from pathlib import Path

from hpa_keras.classes import resolve_channels
from hpa_keras.errors import InputError
from hpa_keras.models.registry import canonical_model_name
from hpa_keras.runs.documents import read_run_config
from hpa_keras.runs.files import CONFIG_FILE, MODEL_FILE
from hpa_keras.runs.folders import check_finished_run


def initial_run_settings(folder: str | os.PathLike) -> dict:
    """The registry model, builder options and channels of the run ``folder`` (its
    ``config.yaml``);
    InputError naming the folder when it is not a finished run or names no model."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"init_from: {folder}: no run folder there")
    check_finished_run(folder)
    config = read_run_config(folder)
    if not config.get("model"):
        raise InputError(f"init_from: {folder / CONFIG_FILE} names no model")
    options = config.get("model_options") or {}
    if not isinstance(options, dict):
        raise InputError(f"init_from: {folder / CONFIG_FILE}: model_options is not a mapping")
    try:
        channels = resolve_channels(config.get("channels", "rgby"))
    except InputError as error:
        raise InputError(f"init_from: {folder / CONFIG_FILE}: {error}") from None
    return {
        "model": canonical_model_name(config["model"]),
        "model_options": options,
        "channels": channels,
    }


def _registry_model(task_model):
    """The registry model inside a saved task model (its last nested model)."""
    import keras  # lazy: imports TensorFlow

    nested = [layer for layer in task_model.layers if isinstance(layer, keras.Model)]
    return nested[-1] if nested else task_model


def _layers_by_path(model, prefix: str = "") -> dict:
    import keras  # lazy: imports TensorFlow

    found = {}
    for layer in model.layers:
        path = f"{prefix}{layer.name}"
        if isinstance(layer, keras.Model):
            found |= _layers_by_path(layer, path + "/")
        elif layer.weights:
            found[path] = layer
    return found


def load_initial_weights(core, folder: str | os.PathLike) -> str:
    """Copy the weights of run ``folder``'s model into ``core`` (the registry model ``fit``
    built). Returns what was copied, for the log; InputError naming the first layer that
    does not fit."""
    from hpa_keras.models.saving import load_model

    folder = Path(folder)
    source = _layers_by_path(_registry_model(load_model(folder / MODEL_FILE)))
    target = _layers_by_path(core)
    classifier = core.layers[-1].name
    copied, renewed = 0, []
    for path, layer in target.items():
        if path not in source:
            raise InputError(
                f"init_from: {folder / MODEL_FILE} has no layer {path}; not a run of this model"
            )
        values = source[path].get_weights()
        wanted = [tuple(value.shape) for value in layer.get_weights()]
        if [tuple(value.shape) for value in values] != wanted:
            if path == classifier:
                renewed.append(path)
                continue
            raise InputError(
                f"init_from: layer {path} has weights of shapes "
                f"{[tuple(value.shape) for value in values]} in {folder}, {wanted} here "
                "(other model_options, or another input size for a fixed-size model?)"
            )
        layer.set_weights(values)
        copied += 1
    extra = " (the classification layer starts new: other classes)" if renewed else ""
    return f"started from {folder}: the weights of {copied} layers{extra}"
