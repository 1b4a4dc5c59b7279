"""GapNet-PL (Rumetshofer et al., "Human-level protein localization with
convolutional neural networks", ICLR 2019).

Global average pooling taps after three stages of a plain CNN are
concatenated, so the classifier sees fine (small puncta), middle and coarse
(whole-cell) features at once, which suits localization patterns that range
from dots to the whole cytoplasm. The paper uses SELU activations; the popular
Kaggle version BatchNorm and ReLU. Both are offered.
"""

import keras

from hpa_keras.errors import InputError
from hpa_keras.models.layers import classification_head


def _conv(features, filters, strides, activation, name):
    if activation == "selu":
        return keras.layers.Conv2D(
            filters,
            3,
            strides=strides,
            padding="same",
            activation="selu",
            kernel_initializer="lecun_normal",
            name=name,
        )(features)
    features = keras.layers.Conv2D(
        filters, 3, strides=strides, padding="same", use_bias=False, name=name
    )(features)
    features = keras.layers.BatchNormalization(name=f"{name}_bn")(features)
    return keras.layers.ReLU(name=f"{name}_relu")(features)


def build_gapnet(
    input_shape=(512, 512, 4),
    num_classes=28,
    weights=None,
    activation="relu",
    width=32,
    depth=3,
    dense_units=256,
    dropout=0.3,
):
    """GapNet-PL as an uncompiled Keras model with sigmoid outputs.

    Args:
        input_shape: ``(height, width, channels)``.
        num_classes: outputs (28 for HPA).
        weights: ``None``, or a path to a ``.weights.h5`` file saved from a
            GAP-Net of the same configuration (there are no ImageNet weights).
        activation: ``"relu"`` (BatchNorm + ReLU, the Kaggle version) or
            ``"selu"`` (the paper's; AlphaDropout in the head).
        width: filters of the first stage (32 in the paper); stages use 1x,
            2x and 4x this.
        depth: convolutions in stages two and three besides the first (3 in
            the paper); the tiny test variant uses 1.
        dense_units: units of the two hidden dense layers (256 in the paper).
        dropout: dropout rate after each dense layer.

    Example:
        >>> model = build_gapnet((256, 256, 4), activation="selu")
    """
    if activation not in ("relu", "selu"):
        raise InputError(f"gapnet activation {activation!r}: use 'relu' or 'selu'")
    if weights == "imagenet":
        raise InputError("gapnet has no ImageNet weights; train it from scratch (weights=None)")
    inputs = keras.Input(input_shape, name="images")
    features = _conv(inputs, width, 2, activation, "stage1_conv")
    features = keras.layers.MaxPooling2D(2, name="stage1_pool")(features)
    taps = [keras.layers.GlobalAveragePooling2D(name="gap1")(features)]

    features = _conv(features, 2 * width, 2, activation, "stage2_conv1")
    for index in range(depth):
        features = _conv(features, 2 * width, 1, activation, f"stage2_conv{index + 2}")
    features = keras.layers.MaxPooling2D(2, name="stage2_pool")(features)
    taps.append(keras.layers.GlobalAveragePooling2D(name="gap2")(features))

    for index in range(depth):
        features = _conv(features, 4 * width, 1, activation, f"stage3_conv{index + 1}")
    taps.append(keras.layers.GlobalAveragePooling2D(name="gap3")(features))

    features = keras.layers.Concatenate(name="gap_concat")(taps)
    drop = keras.layers.AlphaDropout if activation == "selu" else keras.layers.Dropout
    for index in (1, 2):
        dense_options = (
            {"activation": "selu", "kernel_initializer": "lecun_normal"}
            if activation == "selu"
            else {"activation": "relu"}
        )
        features = keras.layers.Dense(dense_units, name=f"dense{index}", **dense_options)(features)
        features = drop(dropout, name=f"dense{index}_dropout")(features)
    outputs = classification_head(features, num_classes, dropout=0.0)
    model = keras.Model(inputs, outputs, name="gapnet")
    if weights is not None:
        model.load_weights(weights)
    return model
