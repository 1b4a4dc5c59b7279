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

    Example:
        >>> manifest = read_manifest("tfrecords/train")
        >>> standardize = ChannelStandardization.from_manifest(manifest, "rgby")
    """

    def __init__(self, mean, std, **kwargs):
        super().__init__(**kwargs)
        if len(mean) != len(std):
            raise ValueError("mean and std need one value per channel")
        if min(std) <= 0:
            raise ValueError("std must be positive")
        self.mean = [float(value) for value in mean]
        self.std = [float(value) for value in std]

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
        return (images - mean) / std

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "std": self.std}
