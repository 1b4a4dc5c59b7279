"""A small capsule network with dynamic routing (Sabour, Frosst and Hinton 2017).

Tried on the 2018 challenge; kept here as an honest, small baseline. Each
class has an output capsule, a 16-dimensional vector whose length (in [0, 1))
is the probability that the class is present, which suits multi-label
outputs; train it with the capsule margin loss (m+ 0.9, m- 0.1, lambda 0.5).

To stay small on 512x512 fields, strided convolutions bring the feature map
down to at most 16x16 before the primary capsules (the paper's 28x28 MNIST
digits needed none); 512 input capsules then feed 28 output capsules.
"""

import keras
from keras import ops

from hpa_keras.errors import InputError
from hpa_keras.models.layers import PACKAGE
from hpa_keras.registration import finish_registration


def squash(vectors, axis=-1):
    """Shrink vectors to length in [0, 1) keeping their direction: |v|^2/(1+|v|^2) v/|v|."""
    squared = ops.sum(ops.square(vectors), axis=axis, keepdims=True)
    return squared / (1.0 + squared) * vectors / ops.sqrt(squared + keras.config.epsilon())


@keras.saving.register_keras_serializable(package=PACKAGE)
class Squash(keras.layers.Layer):
    """The squashing non-linearity as a layer."""

    def call(self, vectors):
        return squash(vectors)


@keras.saving.register_keras_serializable(package=PACKAGE)
class CapsuleLayer(keras.layers.Layer):
    """Fully connected capsules with routing by agreement.

    Args:
        num_capsules: output capsules (one per class).
        capsule_dim: length of each output capsule's vector.
        routings: routing iterations (3 in the paper).
    """

    def __init__(self, num_capsules, capsule_dim, routings=3, **kwargs):
        super().__init__(**kwargs)
        if routings < 1:
            raise ValueError("routings must be at least 1")
        self.num_capsules = num_capsules
        self.capsule_dim = capsule_dim
        self.routings = routings

    def build(self, input_shape):
        _, inputs, input_dim = input_shape
        if inputs is None:
            raise ValueError("CapsuleLayer needs a fixed number of input capsules")
        self.transforms = self.add_weight(
            name="transforms",
            shape=(inputs, self.num_capsules, self.capsule_dim, input_dim),
            initializer="glorot_uniform",
        )

    def call(self, capsules):
        # Predictions of every input capsule for every output capsule: (B, in, out, dim).
        predictions = ops.einsum("bid,iokd->biok", capsules, self.transforms)
        logits = ops.zeros_like(predictions[..., 0])
        for iteration in range(self.routings):
            coupling = ops.softmax(logits, axis=2)  # each input splits itself over outputs
            outputs = squash(ops.einsum("bio,biok->bok", coupling, predictions))
            if iteration < self.routings - 1:
                logits = logits + ops.einsum("bok,biok->bio", outputs, predictions)
        return outputs

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_capsules, self.capsule_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "num_capsules": self.num_capsules,
            "capsule_dim": self.capsule_dim,
            "routings": self.routings,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class CapsuleLength(keras.layers.Layer):
    """The length of each capsule vector: the class probability."""

    def call(self, capsules):
        return ops.sqrt(ops.sum(ops.square(capsules), axis=-1) + keras.config.epsilon())


def build_capsnet(
    input_shape=(512, 512, 4),
    num_classes=28,
    weights=None,
    width=64,
    primary_capsules=8,
    primary_dim=8,
    capsule_dim=16,
    routings=3,
):
    """A capsule network whose outputs are the lengths of ``num_classes`` capsules.

    Args:
        width: filters of the convolutional front end.
        primary_capsules: capsule types at each position of the primary grid.
        primary_dim, capsule_dim: vector lengths of primary and class capsules.
        routings: routing-by-agreement iterations.
    """
    if weights == "imagenet":
        raise InputError("capsnet has no ImageNet weights; use weights=None")
    inputs = keras.Input(input_shape, name="images")
    features = keras.layers.Conv2D(
        width, 5, strides=2, padding="same", activation="relu", name="conv1"
    )(inputs)
    side, index = (input_shape[0] + 1) // 2, 2
    while side > 16:
        features = keras.layers.Conv2D(
            width, 3, strides=2, padding="same", activation="relu", name=f"conv{index}"
        )(features)
        side, index = (side + 1) // 2, index + 1
    features = keras.layers.Conv2D(
        primary_capsules * primary_dim, 3, strides=2, padding="same", name="primary_conv"
    )(features)
    grid = features.shape[1] * features.shape[2] * primary_capsules
    capsules = keras.layers.Reshape((grid, primary_dim), name="primary_capsules")(features)
    capsules = Squash(name="primary_squash")(capsules)
    capsules = CapsuleLayer(num_classes, capsule_dim, routings, name="class_capsules")(capsules)
    outputs = CapsuleLength(name="probabilities", dtype="float32")(capsules)
    model = keras.Model(inputs, outputs, name="capsnet")
    if weights is not None:
        model.load_weights(weights)
    return model


# Last: a registration deferred while this module was being imported (see registration.py)
finish_registration(__name__)
