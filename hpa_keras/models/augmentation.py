"""Augmentation as Keras layers (test-time augmentation is in :mod:`hpa_keras.inference.tta`).

Microscopy fields have no up, down, left or right: each of the eight
symmetries of the square (four rotations by 90 degrees, each with or without a
mirror) shows an equally real field, so they are the main augmentation for
HPA images (the 2018 winners trained and predicted with them). Small
rotations, zooms and per-channel intensity changes (stains vary between
experiments) add to them.

The layers run inside the model, so augmentation happens on the GPU and only
when ``training=True``; ``model.predict`` and ``model.evaluate`` see the
images untouched. They also work inside a tf.data ``map`` on the CPU. All are
registered for saving, so a model saved with them reloads in safe mode.
"""

import keras
from keras import ops

from hpa_keras.registration import finish_registration

PACKAGE = "hpa_keras"


@keras.saving.register_keras_serializable(package=PACKAGE)
class RandomDihedral(keras.layers.Layer):
    """One of the eight symmetries of the square per image, chosen at random.

    Composed of a transpose (for square images), a vertical flip and a
    horizontal flip, each drawn per sample with probability 1/2: the eight
    combinations are the eight dihedral transforms, equally likely. Images of
    unknown static size are taken to be square (HPA fields are).

    Args:
        seed: integer seed for reproducible draws.

    Example:
        >>> layer = RandomDihedral(seed=0)
        >>> augmented = layer(images, training=True)  # images: (B, H, H, C)
    """

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        if not training:
            return images
        batch = ops.shape(images)[0]
        draws = keras.random.uniform((3, batch, 1, 1, 1), seed=self.seed_generator) < 0.5
        # A side of unknown size (a model that takes any field) is taken as square: HPA fields
        # and the crops and tiles of them are.
        square = images.shape[1] == images.shape[2]
        if square:
            images = ops.where(draws[0], ops.transpose(images, (0, 2, 1, 3)), images)
        images = ops.where(draws[1], ops.flip(images, axis=1), images)
        return ops.where(draws[2], ops.flip(images, axis=2), images)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


@keras.saving.register_keras_serializable(package=PACKAGE)
class RandomChannelIntensity(keras.layers.Layer):
    """Per-image, per-channel brightness and contrast jitter.

    Each channel of each image becomes ``x * gain + shift`` with ``gain``
    drawn from ``[1 - contrast, 1 + contrast]`` and ``shift`` from
    ``[-brightness, brightness]``, independently per channel: the four stains
    of an HPA sample vary independently between experiments. ``brightness`` is
    in the units of the input (for inputs normalized to mean 0 and std 1, 0.1
    is a tenth of a standard deviation).

    Args:
        brightness: largest additive shift.
        contrast: largest relative change of the gain.
        seed: integer seed for reproducible draws.
    """

    def __init__(self, brightness=0.1, contrast=0.1, seed=None, **kwargs):
        super().__init__(**kwargs)
        if brightness < 0 or not 0 <= contrast < 1:
            raise ValueError("brightness must be >= 0 and contrast in [0, 1)")
        self.brightness = brightness
        self.contrast = contrast
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        if not training:
            return images
        shape = (ops.shape(images)[0], 1, 1, ops.shape(images)[-1])
        gain = keras.random.uniform(
            shape,
            1 - self.contrast,
            1 + self.contrast,
            seed=self.seed_generator,
            dtype=images.dtype,
        )
        shift = keras.random.uniform(
            shape,
            -self.brightness,
            self.brightness,
            seed=self.seed_generator,
            dtype=images.dtype,
        )
        return images * gain + shift

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "brightness": self.brightness,
            "contrast": self.contrast,
            "seed": self.seed,
        }


def make_augmentation(
    dihedral: bool = True,
    rotation: float = 0.0,
    zoom: float = 0.0,
    brightness: float = 0.0,
    contrast: float = 0.0,
    seed: int | None = None,
    name: str = "augmentation",
) -> keras.Sequential:
    """A Sequential of the requested augmentations, to put at the front of a model.

    Args:
        dihedral: the eight flips and 90-degree rotations.
        rotation: largest extra rotation, as a fraction of a full turn (0.05 is
            18 degrees); borders are filled by reflection.
        zoom: largest zoom-in, as a fraction (0.2 crops up to 20% of the side
            and scales back up).
        brightness, contrast: per-channel intensity jitter (see
            :class:`RandomChannelIntensity`).
        seed: base seed; each layer gets its own, derived from it.

    Example:
        >>> augmentation = make_augmentation(rotation=0.05, zoom=0.1, brightness=0.1)
        >>> inputs = keras.Input((256, 256, 4))
        >>> features = augmentation(inputs)  # identity outside training
    """

    def layer_seed(offset):
        return None if seed is None else seed + offset

    layers = []
    if dihedral:
        layers.append(RandomDihedral(seed=layer_seed(0), name="dihedral"))
    if rotation:
        layers.append(
            keras.layers.RandomRotation(
                rotation, fill_mode="reflect", seed=layer_seed(1), name="rotation"
            )
        )
    if zoom:
        layers.append(
            keras.layers.RandomZoom(
                (-zoom, 0.0), fill_mode="reflect", seed=layer_seed(2), name="zoom"
            )
        )
    if brightness or contrast:
        layers.append(
            RandomChannelIntensity(
                brightness, contrast, seed=layer_seed(3), name="channel_intensity"
            )
        )
    return keras.Sequential(layers, name=name)


# Last: a registration deferred while this module was being imported (see registration.py)
finish_registration(__name__)
