"""DenseNets in torchvision's layout, of any depth: the trunk of DenseNet161, of the 2018
winner's DenseNet121 and of the seeds' DenseNet73, and a configurable builder.

Keras ships DenseNet121, 169 and 201 only, with its own layer names and a BatchNorm
epsilon of 1.001e-5. The DenseNets the HPA published were trained in PyTorch, so the trunk
here follows ``torchvision.models.densenet`` layer for layer: its names (``conv0``,
``denseblock1_denselayer1_norm1``, ``transition1_conv``, ``norm5``: torchvision's module
paths under ``features`` with ``_`` for ``.``), its epsilon (1e-5) and its paddings, so a
torchvision state dict maps onto it by name (:mod:`hpa_keras.models.torch_checkpoints`).

    >>> from hpa_keras.models import build_model
    >>> model = build_model("densenet", input_shape=(256, 256, 4), blocks="6,12,16",
    ...                     growth_rate=12, initial_features=64)   # DenseNet73
"""

import keras

from hpa_keras.errors import InputError
from hpa_keras.models.layers import classification_head

# The settings of the named DenseNets: blocks (dense layers per block), growth rate,
# initial features (torchvision's block_config, growth_rate, num_init_features).
DENSENET_SETTINGS = {
    "densenet121": ((6, 12, 24, 16), 32, 64),
    "densenet161": ((6, 12, 36, 24), 48, 96),
    # The seeds' network trained from scratch: three dense blocks, narrow growth.
    "densenet73": ((6, 12, 16), 12, 64),
    # For tests: the same layout, one narrow layer per block.
    "tiny": ((1, 1, 1, 1), 8, 16),
}
TORCH_BATCH_NORM_EPSILON = 1e-5  # torchvision's (Keras' DenseNets and ResNets: 1.001e-5)
BOTTLENECK_SIZE = 4  # torchvision's bn_size: a dense layer's 1x1 conv has 4 x growth filters


def _batch_norm(name):
    # momentum 0.9 is PyTorch's 0.1: fine-tuning updates the statistics as the original did
    return keras.layers.BatchNormalization(
        epsilon=TORCH_BATCH_NORM_EPSILON, momentum=0.9, name=name
    )


def _dense_layer(features, growth_rate: int, name: str):
    layers = keras.layers
    branch = _batch_norm(f"{name}_norm1")(features)
    branch = layers.Activation("relu", name=f"{name}_relu1")(branch)
    branch = layers.Conv2D(BOTTLENECK_SIZE * growth_rate, 1, use_bias=False, name=f"{name}_conv1")(
        branch
    )
    branch = _batch_norm(f"{name}_norm2")(branch)
    branch = layers.Activation("relu", name=f"{name}_relu2")(branch)
    branch = layers.ZeroPadding2D(1, name=f"{name}_pad2")(branch)
    branch = layers.Conv2D(growth_rate, 3, use_bias=False, name=f"{name}_conv2")(branch)
    return layers.Concatenate(name=f"{name}_concat")([features, branch])


def densenet_trunk(
    input_shape,
    blocks=(6, 12, 24, 16),
    growth_rate: int = 32,
    initial_features: int = 64,
    extra_pool: bool = False,
    name: str = "densenet",
):
    """torchvision's ``DenseNet.features`` as a Keras model: images to the last BatchNorm's
    output (``norm5``; no ReLU, no pooling), in torchvision's layer names.

    Args:
        input_shape: ``(height, width, channels)``; height and width may be ``None``.
        blocks: dense layers per block (torchvision's ``block_config``).
        growth_rate: channels each dense layer adds.
        initial_features: the first convolution's filters.
        extra_pool: a 2x2 max-pooling after the stem (``large_pool``), as the 2018 winner's
            ``large`` model has for its 1024 px inputs.
        name: the model's name.
    """
    layers = keras.layers
    inputs = keras.Input(input_shape)
    features = layers.ZeroPadding2D(3, name="pad0")(inputs)
    features = layers.Conv2D(initial_features, 7, strides=2, use_bias=False, name="conv0")(features)
    features = _batch_norm("norm0")(features)
    features = layers.Activation("relu", name="relu0")(features)
    features = layers.ZeroPadding2D(1, name="pad_pool0")(features)  # after a ReLU: as -inf
    features = layers.MaxPooling2D(3, strides=2, name="pool0")(features)
    if extra_pool:
        features = layers.MaxPooling2D(2, strides=2, name="large_pool")(features)
    for block, count in enumerate(blocks, start=1):
        for index in range(1, count + 1):
            features = _dense_layer(features, growth_rate, f"denseblock{block}_denselayer{index}")
        if block < len(blocks):
            prefix = f"transition{block}"
            features = _batch_norm(f"{prefix}_norm")(features)
            features = layers.Activation("relu", name=f"{prefix}_relu")(features)
            features = layers.Conv2D(
                features.shape[-1] // 2, 1, use_bias=False, name=f"{prefix}_conv"
            )(features)
            features = layers.AveragePooling2D(2, strides=2, name=f"{prefix}_pool")(features)
    features = _batch_norm("norm5")(features)
    return keras.Model(inputs, features, name=name)


def parse_blocks(blocks) -> tuple[int, ...]:
    """Dense layers per block from ``(6, 12, 16)`` or ``"6,12,16"``; InputError otherwise."""
    if isinstance(blocks, str):
        parts = [part.strip() for part in blocks.split(",")]
    else:
        parts = list(blocks)
    try:
        counts = tuple(int(part) for part in parts)
    except (TypeError, ValueError):
        raise InputError(f"blocks {blocks!r}: dense layers per block, such as 6,12,16") from None
    if not counts or min(counts) < 1:
        raise InputError(f"blocks {blocks!r}: at least one block, each of one layer or more")
    return counts


def build_densenet(
    input_shape=(512, 512, 4),
    num_classes=28,
    weights=None,
    blocks="6,12,24,16",
    growth_rate=32,
    initial_features=64,
    dropout=0.3,
):
    """A DenseNet of any depth and width trained from scratch on standardized inputs (any
    number of channels): the torchvision trunk, ReLU, global average pooling, the head.

    Args:
        blocks: dense layers per block, ``"6,12,24,16"`` (DenseNet121's) by default.
        growth_rate: channels each dense layer adds.
        initial_features: the first convolution's filters.
        weights: ``None``, or a Keras weights file of this build (``load_weights``).
    """
    counts = parse_blocks(blocks)
    if growth_rate < 1 or initial_features < 1:
        raise InputError("growth_rate and initial_features must be positive")
    trunk = densenet_trunk(input_shape, counts, growth_rate, initial_features, name="backbone")
    inputs = keras.Input(input_shape, name="images")
    features = keras.layers.Activation("relu", name="relu")(trunk(inputs))
    pooled = keras.layers.GlobalAveragePooling2D(name="avg_pool")(features)
    model = keras.Model(inputs, classification_head(pooled, num_classes, dropout), name="densenet")
    if weights is not None:
        model.load_weights(weights)
    return model


def build_densenet73(
    input_shape=(512, 512, 4), num_classes=28, weights=None, dropout=0.3, variant="full"
):
    """The seeds' DenseNet73: :func:`build_densenet` with three dense blocks of 6, 12 and 16
    layers, growth rate 12 and 64 initial features; ``variant="tiny"``, one narrow layer a
    block, for tests."""
    if variant not in ("full", "tiny"):
        raise InputError(f"variant {variant!r}: use 'full' or 'tiny'")
    blocks, growth_rate, initial_features = DENSENET_SETTINGS["densenet73"]
    if variant == "tiny":
        blocks, growth_rate, initial_features = (1, 1, 1), 4, 8
    model = build_densenet(
        input_shape, num_classes, weights, blocks, growth_rate, initial_features, dropout
    )
    model.name = "densenet73"
    return model
