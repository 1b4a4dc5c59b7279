"""The task model: the model ``fit`` trains and saves, built the same way in a notebook.

    >>> from hpa_keras.models import build_task_model
    >>> model, core = build_task_model(
    ...     "gapnet", num_classes=28, channel_mean=[20, 30, 10, 25], channel_std=[30, 40, 20, 35]
    ... )

Keras-hub's split of a task, its backbone and its preprocessor, in one
functional model: stored pixels (uint8, or uint16 for 16-bit records) ->
per-channel standardization -> augmentation (active only in training) ->
for a pretrained backbone, back to pixel units (its own input scaling is
inside the core) -> the registry's model (``core``). The saved model thus
takes the images of ``load_dataset(..., normalization="none")`` directly.

:func:`task_model_settings` gives the keyword arguments ``fit`` uses for a
``TrainingConfig`` and a record set's manifest, so
``build_task_model(**task_model_settings(config, manifest))`` is the model of
that run (before training).
"""

import keras

from hpa_keras.classes import CHANNELS, resolve_channels
from hpa_keras.data.manifest import Manifest
from hpa_keras.errors import InputError
from hpa_keras.models.augmentation import make_augmentation
from hpa_keras.models.layers import ChannelStandardization
from hpa_keras.models.registry import build_model, model_record

__all__ = ["build_task_model", "task_model_settings"]


def build_task_model(
    model: str,
    *,
    num_classes: int,
    channel_mean,
    channel_std,
    channels="rgby",
    input_size: int | None = None,
    bit_depth: int = 8,
    weights=None,
    model_options: dict | None = None,
    dihedral: bool = True,
    rotation: float = 0.0,
    zoom: float = 0.0,
    brightness: float = 0.1,
    contrast: float = 0.1,
    seed: int | None = 0,
):
    """``(task_model, core)``: images -> standardization -> augmentation -> ``core``.

    The arguments carry the names and defaults of ``TrainingConfig``'s settings where it
    has them.

    Args:
        model: a registry name (:func:`hpa_keras.models.list_models`).
        num_classes: outputs (28 for the 2018 scheme, 19 for 2021).
        channel_mean, channel_std: per-channel statistics of the training images in
            stored pixel units, one per stain of ``hpa_keras.classes.CHANNELS``
            (red, green, blue, yellow), as ``channel_statistics`` gives them; the
            model's ``channels`` are picked from them.
        channels: the stains the model reads (``"rgby"``, ``"rgb"``, ``"g"`` or names).
        input_size: the side of the input; ``None`` takes fields of any size (models
            that pool globally: trained on crops, they see whole fields at validation
            and prediction). A fixed-size model (capsnet) needs one.
        bit_depth: 8 (uint8 input) or 16 (uint16; a backbone gets it back in 0-255).
        weights: ``None``, ``"imagenet"`` or a weights file, for the core.
        model_options: the core builder's options (``build_model``'s ``**options``).
        dihedral, rotation, zoom, brightness, contrast, seed: the augmentation
            (:func:`hpa_keras.models.augmentation.make_augmentation`).

    Returns:
        The uncompiled task model (named ``hpa_<model>``, input ``images``) and the
        registry model inside it, whose backbone two-stage training freezes.
    """
    record = model_record(model)
    if record.fixed_size and input_size is None:
        raise InputError(f"{record.name} takes one input size: give input_size")
    channels = resolve_channels(channels)
    shape = (input_size, input_size, len(channels))
    statistics = {"channel_mean": list(channel_mean), "channel_std": list(channel_std)}
    core = build_model(
        record.name,
        input_shape=shape,
        num_classes=num_classes,
        weights=weights,
        **(model_options or {}),
    )
    inputs = keras.Input(shape, dtype="uint16" if bit_depth == 16 else "uint8", name="images")
    features = ChannelStandardization.from_manifest(statistics, channels, name="standardization")(
        inputs
    )
    augmentation = make_augmentation(
        dihedral=dihedral,
        rotation=rotation,
        zoom=zoom,
        brightness=brightness,
        contrast=contrast,
        seed=seed,
    )
    if augmentation.layers:
        features = augmentation(features)
    if record.backbone:
        features = _back_to_pixels(statistics, channels, bit_depth)(features)
    outputs = core(features)
    return keras.Model(inputs, outputs, name=f"hpa_{record.name}"), core


def _back_to_pixels(statistics, channels, bit_depth):
    """The layer that undoes the standardization of ``channels`` before a backbone.

    Pretrained backbones scale pixels as their weights expect (BackbonePreprocessing):
    back to pixel units (16-bit ones to the 0-255 range), after augmenting in
    standard-deviation units like every other model.
    """
    indices = [CHANNELS.index(name) for name in channels]
    return ChannelStandardization(
        [statistics["channel_mean"][index] for index in indices],
        [statistics["channel_std"][index] for index in indices],
        inverse=True,
        scale=1 / 257 if bit_depth == 16 else 1.0,
        name="pixels",
    )


def task_model_settings(config, manifest: Manifest) -> dict:
    """The :func:`build_task_model` arguments of the model ``fit`` trains.

    Args:
        config: a ``TrainingConfig`` (or anything with its attribute names).
        manifest: the record set's manifest (``read_manifest``): the number of
            classes, the bit depth, the stored size, and the per-fold pixel sums,
            of which the statistics of the training folds (all but ``config.fold``)
            standardize the input.

    Trained on crops, the model takes fields of any size, except a fixed-size
    model (capsnet), built at the crop size; trained on whole fields, it is
    built at their side (``config.image_size``, or the stored size).
    """
    if config.crop is not None:
        side = config.crop if model_record(config.model).fixed_size else None
    else:
        side = config.image_size or manifest.image_size
    mean, std = manifest.channel_statistics(exclude_folds=[config.fold])
    return {
        "model": config.model,
        "num_classes": manifest.num_classes,
        "channel_mean": mean,
        "channel_std": std,
        "channels": config.channels,
        "input_size": side,
        "bit_depth": manifest.bit_depth,
        "weights": config.weights,
        "model_options": dict(config.model_options),
        "dihedral": config.dihedral,
        "rotation": config.rotation,
        "zoom": config.zoom,
        "brightness": config.brightness,
        "contrast": config.contrast,
        "seed": config.seed,
    }
