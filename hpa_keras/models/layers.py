"""Custom layers of hpa-keras models, registered so saved models reload in safe mode."""

import keras
from keras import ops

PACKAGE = "hpa_keras"


@keras.saving.register_keras_serializable(package=PACKAGE)
class ChannelStandardization(keras.layers.Layer):
    """``(x - mean) / std`` per channel, on the device, for uint8 or float inputs.

    Feeding uint8 images from ``load_dataset(..., normalization="none")`` and
    standardizing here moves a quarter of the bytes to the GPU and takes the
    float conversion off the CPU, where it cost the input pipeline more than
    half its throughput (see README, "Input pipeline"). The statistics are
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
    def from_manifest(cls, manifest: dict, channels="rgby", **kwargs):
        """The statistics of a make-tfrecords manifest, for the chosen channels."""
        from hpa_keras.classes import CHANNELS
        from hpa_keras.data.pipeline import resolve_channels

        indices = [CHANNELS.index(name) for name in resolve_channels(channels)]
        return cls(
            [manifest["channel_mean"][index] for index in indices],
            [max(manifest["channel_std"][index], 1e-3) for index in indices],
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
PREPROCESSING_MODES = ("caffe", "torch", "tf")


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
        mode: ``"caffe"`` (ResNet50: subtract the mean pixel), ``"torch"``
            (DenseNet, EfficientNetV2-B, ConvNeXt, ResNet34: /255, subtract
            the mean, divide by the std) or ``"tf"`` (InceptionResNetV2: to [-1, 1]).
        fourth_channel: ``"red"``, ``"mean"`` or ``"zero"`` (scaled like red).
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
        channels = images.shape[-1]
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
