"""Custom layers of hpa-keras models, registered so saved models reload in safe mode."""

import keras
from keras import ops

from hpa_keras.classes import CHANNELS, resolve_channels
from hpa_keras.data.manifest import Manifest
from hpa_keras.registration import finish_registration

PACKAGE = "hpa_keras"


@keras.saving.register_keras_serializable(package=PACKAGE)
class ChannelStandardization(keras.layers.Layer):
    """``(x - mean) / std`` per channel, on the device, for uint8 or float inputs.

    Feeding uint8 images from ``load_dataset(..., normalization="none")`` and
    standardizing here moves a quarter of the bytes to the GPU and takes the
    float conversion off the CPU, where it cost the input pipeline more than
    half its throughput (see the manual, docs/tfrecords.md, "Input pipeline"). The statistics are
    part of the saved model, so prediction always uses the ones the model was
    trained with.

    Args:
        mean: per-channel means, in pixel units (0-255).
        std: per-channel standard deviations, in pixel units.
        inverse: the inverse, ``(x * std + mean) * scale``: standardized
            values back to pixel units, for a pretrained backbone whose own
            input scaling (:class:`BackbonePreprocessing`) starts from pixels.
        scale: with ``inverse``, a factor on the pixels (1/257 maps 16-bit
            pixels to the 0-255 range ImageNet weights were trained on).

    Example:
        >>> manifest = read_manifest("tfrecords/train")
        >>> standardize = ChannelStandardization.from_manifest(manifest, "rgby")
    """

    def __init__(self, mean, std, inverse=False, scale=1.0, **kwargs):
        super().__init__(**kwargs)
        if len(mean) != len(std):
            raise ValueError("mean and std need one value per channel")
        if min(std) <= 0:
            raise ValueError("std must be positive")
        self.mean = [float(value) for value in mean]
        self.std = [float(value) for value in std]
        self.inverse = bool(inverse)
        self.scale = float(scale)

    @classmethod
    def from_manifest(cls, manifest: Manifest | dict, channels="rgby", **kwargs):
        """The statistics of a make-tfrecords manifest (or of a dict holding its
        ``channel_mean`` and ``channel_std``), for the chosen channels."""
        if isinstance(manifest, Manifest):
            mean, std = manifest.channel_mean, manifest.channel_std
        else:
            mean, std = manifest["channel_mean"], manifest["channel_std"]
        indices = [CHANNELS.index(name) for name in resolve_channels(channels)]
        return cls(
            [mean[index] for index in indices],
            [max(std[index], 1e-3) for index in indices],
            **kwargs,
        )

    def call(self, images):
        images = ops.cast(images, self.compute_dtype)
        mean = ops.convert_to_tensor(self.mean, dtype=self.compute_dtype)
        std = ops.convert_to_tensor(self.std, dtype=self.compute_dtype)
        if self.inverse:  # back to pixel units (times ``scale``), after augmentation
            return (images * std + mean) * self.scale
        return (images - mean) / std

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "mean": self.mean,
            "std": self.std,
            "inverse": self.inverse,
            "scale": self.scale,
        }


# ImageNet statistics of the conventions keras.applications' weights were trained with.
IMAGENET_MEAN_PIXELS = (123.68, 116.779, 103.939)  # red, green, blue (caffe subtracts these)
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # red, green, blue (torch), of pixels / 255
IMAGENET_STD = (0.229, 0.224, 0.225)
# The 2018 winner's own (CellProfiling/densenet, predict/models.py): its training images'
# means and standard deviations, of pixels / 255, red, green, blue, yellow.
HPA2018_WINNER_MEAN = (0.074598, 0.050630, 0.050891, 0.076287)
HPA2018_WINNER_STD = (0.122813, 0.085745, 0.129882, 0.119411)
# SubCell's min-max: one range over a whole crop, every channel (SubCellPortable's
# min_max_standardize), with its guard against a flat crop.
MIN_MAX_EPSILON = 1e-6
PREPROCESSING_MODES = ("caffe", "torch", "tf", "hpa2018", "min-max")


@keras.saving.register_keras_serializable(package=PACKAGE)
class BackbonePreprocessing(keras.layers.Layer):
    """The input scaling an ImageNet backbone's weights were trained with, for RGB(Y) pixels.

    Keras' ``preprocess_input`` functions work on 3-channel images (and
    caffe's flips them to BGR); this layer does the same arithmetic on the
    package's channel order (red, green, blue, then yellow), the first
    convolution's pretrained kernel being permuted to match (see
    :func:`hpa_keras.models.applications.widen_first_kernel`). Yellow, the
    fourth channel, is scaled like the channel whose filters it starts from
    (red) or, with ``fourth_channel="mean"``, with the mean of the three.

    Args:
        mode: ``"caffe"`` (ResNet50, VGG19: subtract the mean pixel), ``"torch"``
            (DenseNet, EfficientNetV2-B, ConvNeXt, ResNet18/34: /255, subtract
            the mean, divide by the std), ``"tf"`` (InceptionResNetV2: to [-1, 1]),
            and two of HPA models: ``"hpa2018"`` (the 2018 winner's DenseNet: /255,
            its own RGBY means and stds) and ``"min-max"`` (SubCell: each image to
            [0, 1] by its own minimum and maximum over all its channels).
        fourth_channel: ``"red"``, ``"mean"`` or ``"zero"`` (scaled like red; the two HPA
            modes scale yellow as their models were trained).
    """

    def __init__(self, mode="torch", fourth_channel="red", **kwargs):
        super().__init__(**kwargs)
        if mode not in PREPROCESSING_MODES:
            raise ValueError(f"preprocessing mode {mode!r}: use one of {PREPROCESSING_MODES}")
        self.mode = mode
        self.fourth_channel = fourth_channel

    def _per_channel(self, values, channels):
        extra = sum(values) / 3 if self.fourth_channel == "mean" else values[0]
        return list(values[:channels]) + [extra] * max(channels - 3, 0)

    def call(self, images):
        images = ops.cast(images, self.compute_dtype)
        if self.mode == "tf":
            return images / 127.5 - 1.0
        if self.mode == "min-max":
            low = ops.min(images, axis=(1, 2, 3), keepdims=True)
            high = ops.max(images, axis=(1, 2, 3), keepdims=True)
            return (images - low) / (high - low + MIN_MAX_EPSILON)
        channels = images.shape[-1]
        if self.mode == "hpa2018":
            mean = ops.convert_to_tensor(HPA2018_WINNER_MEAN[:channels], self.compute_dtype)
            std = ops.convert_to_tensor(HPA2018_WINNER_STD[:channels], self.compute_dtype)
            return (images / 255.0 - mean) / std
        if self.mode == "caffe":
            mean = self._per_channel(IMAGENET_MEAN_PIXELS, channels)
            return images - ops.convert_to_tensor(mean, dtype=self.compute_dtype)
        mean = ops.convert_to_tensor(self._per_channel(IMAGENET_MEAN, channels), self.compute_dtype)
        std = ops.convert_to_tensor(self._per_channel(IMAGENET_STD, channels), self.compute_dtype)
        return (images / 255.0 - mean) / std

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "fourth_channel": self.fourth_channel}


# Initial 4->3 mixes of ChannelMixing: rows are inputs (red, green, blue, yellow),
# columns the three channels an ImageNet backbone expects.
CHANNEL_MIXES = {
    # The original Kaggle kernel's: R + Y/2, G + Y/2, B (yellow shown as red plus green).
    "kaggle": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.5, 0.0]],
    # A later variant's: R/2 + B/2, Y/2 + B/2, G (the protein on its own channel).
    "variant": [[0.5, 0.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.5, 0.0], [0.0, 0.5, 0.0]],
    # Start from red, green, blue and learn how much yellow to mix in.
    "identity": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]],
}


@keras.saving.register_keras_serializable(package=PACKAGE)
class ChannelMixing(keras.layers.Layer):
    """A 1x1 convolution without bias that mixes input channels into output channels.

    Puts a 4-channel HPA image in front of a backbone pretrained on 3-channel
    photographs, so the backbone's ImageNet weights load unchanged.

    Args:
        initial: ``"kaggle"``, ``"variant"`` or ``"identity"`` (see
            ``CHANNEL_MIXES``), or an explicit ``(in, out)`` matrix.
        trainable: learn the mix (default) or keep it fixed.

    Example:
        >>> mixed = ChannelMixing("kaggle", trainable=False)(four_channel_images)
    """

    def __init__(self, initial="kaggle", **kwargs):
        super().__init__(**kwargs)
        if isinstance(initial, str):
            if initial not in CHANNEL_MIXES:
                raise ValueError(f"initial mix {initial!r}: use one of {sorted(CHANNEL_MIXES)}")
            matrix = CHANNEL_MIXES[initial]
        else:
            matrix = [[float(value) for value in row] for row in initial]
        self.initial = initial
        self.matrix = matrix

    def build(self, input_shape):
        if input_shape[-1] != len(self.matrix):
            raise ValueError(
                f"ChannelMixing expects {len(self.matrix)} input channels, got {input_shape[-1]}"
            )
        self.kernel = self.add_weight(
            name="kernel",
            shape=(len(self.matrix), len(self.matrix[0])),
            initializer=keras.initializers.Constant(self.matrix),
            trainable=True,
        )

    def call(self, images):
        return ops.einsum(
            "bhwc,cd->bhwd",
            ops.cast(images, self.compute_dtype),
            ops.cast(self.kernel, self.compute_dtype),
        )

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], len(self.matrix[0]))

    def get_config(self):
        return {**super().get_config(), "initial": self.initial}


def classification_head(features, num_classes: int, dropout: float = 0.3, name: str = "head"):
    """Dropout and a sigmoid layer giving one independent probability per class.

    The output is float32 even under a mixed-precision policy, so losses and
    thresholds see full-precision probabilities.
    """
    if dropout:
        features = keras.layers.Dropout(dropout, name=f"{name}_dropout")(features)
    return keras.layers.Dense(
        num_classes, activation="sigmoid", dtype="float32", name=f"{name}_probabilities"
    )(features)


@keras.saving.register_keras_serializable(package=PACKAGE)
class MergeBagAxis(keras.layers.Layer):
    """``(bags, cells, ...)`` to ``(bags * cells, ...)``: a bag's cells go through a cell
    model as one batch (see :class:`BagPooling`)."""

    def call(self, inputs):
        shape = ops.shape(inputs)
        return ops.reshape(inputs, (-1, *shape[2:]))

    def compute_output_shape(self, input_shape):
        bags, cells = input_shape[0], input_shape[1]
        merged = None if bags is None or cells is None else bags * cells
        return (merged, *input_shape[2:])


@keras.saving.register_keras_serializable(package=PACKAGE)
class BagPooling(keras.layers.Layer):
    """A field's probabilities from its cells': multiple-instance pooling over a bag.

    Inputs: the cells' probabilities ``(bags * cells, classes)`` (a cell
    model's output on :class:`MergeBagAxis`' batch) and the bag's mask
    ``(bags, cells)`` (1 for a cell, 0 for padding). A class is in a field
    when it is in some cell: ``max`` takes the largest cell probability,
    ``lse`` the smooth maximum ``(1/r) log mean exp(r p)`` over the bag's
    cells (between their mean and their maximum; every cell gets gradient,
    not only the largest). ``negative_class`` is the other way round, as the
    2021 labels define Negative: a field is Negative only when all its cells
    are, so that class takes the minimum (or the smooth minimum).
    """

    def __init__(self, cells: int, mode: str = "max", sharpness: float = 5.0,
                 negative_class: int | None = None, **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        if mode not in ("max", "lse"):
            raise ValueError(f"mode must be max or lse, got {mode!r}")
        self.cells, self.mode, self.sharpness = int(cells), mode, float(sharpness)
        self.negative_class = negative_class

    def call(self, inputs):
        probabilities, mask = inputs
        classes = ops.shape(probabilities)[-1]
        probabilities = ops.reshape(probabilities, (-1, self.cells, classes))
        present = ops.expand_dims(ops.cast(mask, probabilities.dtype), -1)
        pooled_max = self._pool(probabilities, present)
        if self.negative_class is None:
            return pooled_max
        pooled_min = 1.0 - self._pool(1.0 - probabilities, present)
        is_negative = ops.one_hot(self.negative_class, classes, dtype=probabilities.dtype)
        return pooled_max * (1.0 - is_negative) + pooled_min * is_negative

    def _pool(self, values, present):
        if self.mode == "max":
            # padding cells count as 0, below every probability
            return ops.max(values * present, axis=1)
        r = self.sharpness
        count = ops.maximum(ops.sum(present, axis=1), 1.0)
        top = ops.max(values * present, axis=1, keepdims=True)  # for a stable exp
        total = ops.sum(ops.exp(r * (values - top)) * present, axis=1)
        return ops.squeeze(top, 1) + ops.log(total / count + 1e-12) / r

    def compute_output_shape(self, input_shape):
        return (input_shape[1][0], input_shape[0][-1])

    def get_config(self):
        return {
            **super().get_config(),
            "cells": self.cells,
            "mode": self.mode,
            "sharpness": self.sharpness,
            "negative_class": self.negative_class,
        }


def bag_model(cell_model, cells: int, mode: str, sharpness: float, negative_class=None):
    """A model of bags: ``(images (bags, cells, S, S, C), mask (bags, cells))`` to the bags'
    pooled probabilities, sharing ``cell_model``'s weights (train it, save ``cell_model``)."""
    images = keras.Input(shape=(cells, *cell_model.input_shape[1:]), dtype=cell_model.input.dtype,
                         name="bag_images")  # fmt: skip
    mask = keras.Input(shape=(cells,), name="bag_mask")
    probabilities = cell_model(MergeBagAxis(name="merge_bag")(images))
    pooled = BagPooling(cells, mode, sharpness, negative_class, name="bag_pooling")(
        [probabilities, mask]
    )
    return keras.Model([images, mask], pooled, name=f"{cell_model.name}_bags")


# Last: a registration deferred while this module was being imported (see registration.py)
finish_registration(__name__)
