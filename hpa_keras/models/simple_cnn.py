"""The classic baseline of the 2018 challenge's kernels: a small plain CNN.

Three blocks of convolution, BatchNorm, max-pooling and ReLU, then two dense
layers. Every other model should beat it.
"""

import keras

from hpa_keras.errors import InputError
from hpa_keras.models.layers import classification_head


def build_simple_cnn(
    input_shape=(512, 512, 4),
    num_classes=28,
    weights=None,
    width=32,
    dense_units=256,
    dropout=0.3,
):
    """A three-block CNN with sigmoid outputs.

    Args:
        width: filters of the first block (then 2x and 4x).
        dense_units: units of the hidden dense layer.
        weights: ``None`` or a ``.weights.h5`` path from the same configuration.
    """
    if weights == "imagenet":
        raise InputError("simple_cnn has no ImageNet weights; use weights=None")
    inputs = keras.Input(input_shape, name="images")
    features = inputs
    for index, filters in enumerate((width, 2 * width, 4 * width), start=1):
        features = keras.layers.Conv2D(
            filters, 3, padding="same", use_bias=False, name=f"block{index}_conv"
        )(features)
        features = keras.layers.BatchNormalization(name=f"block{index}_bn")(features)
        features = keras.layers.MaxPooling2D(2, name=f"block{index}_pool")(features)
        features = keras.layers.ReLU(name=f"block{index}_relu")(features)
    features = keras.layers.GlobalAveragePooling2D(name="pool")(features)
    features = keras.layers.Dense(dense_units, activation="relu", name="dense")(features)
    outputs = classification_head(features, num_classes, dropout=dropout)
    model = keras.Model(inputs, outputs, name="simple_cnn")
    if weights is not None:
        model.load_weights(weights)
    return model
