"""ImageNet backbones from keras.applications for 4-channel HPA images.

DenseNet121/169 and ResNet50 get a true 4-channel first convolution.
``keras.applications`` builds 4-channel inputs only without pretrained
weights, so ImageNet weights are loaded into a 3-channel twin and copied
across layer by layer; the first convolution's kernel is widened from 3 to 4
input channels, the 4th (yellow) initialised by a documented rule:

- ``"red"`` (default): a copy of the red filters, as the 2018 winners did
  (the ER stain is, like the microtubules, a cytoplasmic reference);
- ``"mean"``: the mean of the red, green and blue filters.

InceptionResNetV2 keeps its 3-channel stem and gets a ``ChannelMixing`` layer
in front (a learnable or fixed 1x1 mix of the four stains into three).

No network at run time: ``weights="imagenet"`` looks for Keras' own weight
files in the Keras cache (``$KERAS_HOME/models`` or ``~/.keras/models``) and
says which file to put there when it is missing; ``weights=PATH`` takes a file.
"""

import os
import warnings
from pathlib import Path

import keras
import numpy as np

from hpa_keras.errors import InputError
from hpa_keras.models.layers import ChannelMixing, classification_head

# Keras' notop weight files and where Keras publishes them.
IMAGENET_FILES = {
    "densenet121": "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "densenet169": "densenet169_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "resnet50": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "inception_resnet_v2": "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
}
IMAGENET_URLS = {
    "densenet121": "https://storage.googleapis.com/tensorflow/keras-applications/densenet/",
    "densenet169": "https://storage.googleapis.com/tensorflow/keras-applications/densenet/",
    "resnet50": "https://storage.googleapis.com/tensorflow/keras-applications/resnet/",
    "inception_resnet_v2": (
        "https://storage.googleapis.com/tensorflow/keras-applications/inception_resnet_v2/"
    ),
}
FOURTH_CHANNEL_RULES = ("red", "mean")


def keras_cache_folder() -> Path:
    """Where Keras keeps downloaded weights: ``$KERAS_HOME/models`` or ``~/.keras/models``."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


def resolve_weights(name: str, weights):
    """``None``, or the local file to load for ``weights`` (``"imagenet"`` or a path)."""
    if weights is None:
        return None
    if weights == "imagenet":
        path = keras_cache_folder() / IMAGENET_FILES[name]
        if not path.is_file():
            raise InputError(
                f"ImageNet weights for {name} not found: no {path}. hpa-keras does not "
                f"download at run time; put {IMAGENET_FILES[name]} (from "
                f"{IMAGENET_URLS[name]}{IMAGENET_FILES[name]}) into {path.parent}/, "
                "or pass weights=PATH to a copy of it"
            )
        return str(path)
    path = Path(weights)
    if not path.is_file():
        raise InputError(f"{path}: weights file not found")
    return str(path)


def widen_first_kernel(kernel: np.ndarray, channels: int, rule: str = "red") -> np.ndarray:
    """A ``(kh, kw, 3, filters)`` kernel widened to ``channels`` inputs by ``rule``."""
    if rule not in FOURTH_CHANNEL_RULES:
        raise InputError(f"fourth-channel rule {rule!r}: use one of {FOURTH_CHANNEL_RULES}")
    extra = kernel[:, :, :1] if rule == "red" else kernel.mean(axis=2, keepdims=True)
    return np.concatenate([kernel] + [extra] * (channels - 3), axis=2)


def copy_weights_widening_first_conv(source, target, first_conv: str, rule: str) -> None:
    """Copy every weight of a 3-channel ``source`` into the 4-channel ``target`` twin."""
    target_layers = {layer.name: layer for layer in target.layers}
    for layer in source.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        if layer.name == first_conv:
            channels = target_layers[first_conv].get_weights()[0].shape[2]
            weights = [widen_first_kernel(weights[0], channels, rule)] + weights[1:]
        target_layers[layer.name].set_weights(weights)


def _backbone(name, input_shape, weights_path, fourth_channel, variant):
    """The convolutional trunk (average-pooled features) with a 4-channel first conv."""
    builder, first_conv = _BACKBONES[name](variant)
    channels = input_shape[-1]
    with warnings.catch_warnings():  # 4 input channels is the point here, not a mistake
        warnings.filterwarnings("ignore", message="This model usually expects 1 or 3 input")
        if channels == 3 or weights_path is None:
            return builder(input_shape, weights_path)
        twin = builder((*input_shape[:-1], 3), weights_path)
        widened = builder(input_shape, None)
    copy_weights_widening_first_conv(twin, widened, first_conv, fourth_channel)
    return widened


def _tiny_densenet(input_shape, weights, name, growth_rate=8, blocks=(1, 1, 1, 1)):
    """A DenseNet of Keras' layout and layer names (``conv1_conv``, ``conv2_block1_...``,
    ``pool2``...) with one narrow dense layer per block: the 4-channel surgery, freezing and
    saving of DenseNet121/169 are tested on it in seconds."""
    layers = keras.layers
    inputs = keras.Input(input_shape)
    features = layers.ZeroPadding2D(3)(inputs)
    features = layers.Conv2D(2 * growth_rate, 7, strides=2, use_bias=False, name="conv1_conv")(
        features
    )
    features = layers.BatchNormalization(epsilon=1.001e-5, name="conv1_bn")(features)
    features = layers.Activation("relu", name="conv1_relu")(features)
    features = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(features)
    for stage, count in enumerate(blocks, start=2):
        for block in range(1, count + 1):
            prefix = f"conv{stage}_block{block}"
            branch = layers.BatchNormalization(epsilon=1.001e-5, name=f"{prefix}_0_bn")(features)
            branch = layers.Activation("relu", name=f"{prefix}_0_relu")(branch)
            branch = layers.Conv2D(
                growth_rate, 3, padding="same", use_bias=False, name=f"{prefix}_1_conv"
            )(branch)
            features = layers.Concatenate(name=f"{prefix}_concat")([features, branch])
        if stage < 1 + len(blocks):  # a transition halves the channels and the side
            features = layers.BatchNormalization(epsilon=1.001e-5, name=f"pool{stage}_bn")(features)
            features = layers.Activation("relu", name=f"pool{stage}_relu")(features)
            features = layers.Conv2D(
                features.shape[-1] // 2, 1, use_bias=False, name=f"pool{stage}_conv"
            )(features)
            features = layers.AveragePooling2D(
                2, strides=2, padding="same", name=f"pool{stage}_pool"
            )(features)
    features = layers.BatchNormalization(epsilon=1.001e-5, name="bn")(features)
    features = layers.Activation("relu", name="relu")(features)
    outputs = layers.GlobalAveragePooling2D(name="avg_pool")(features)
    model = keras.Model(inputs, outputs, name=name)
    if weights is not None:
        model.load_weights(weights)
    return model


def _tiny_resnet(input_shape, weights, name, filters=(16, 32)):
    """A ResNet of Keras' ResNet50 layout and layer names (``conv1_conv``,
    ``conv2_block1_...``) with one narrow bottleneck block per stage, for fast tests."""
    layers = keras.layers
    inputs = keras.Input(input_shape)
    features = layers.ZeroPadding2D(3, name="conv1_pad")(inputs)
    features = layers.Conv2D(16, 7, strides=2, name="conv1_conv")(features)
    features = layers.BatchNormalization(epsilon=1.001e-5, name="conv1_bn")(features)
    features = layers.Activation("relu", name="conv1_relu")(features)
    features = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1_pool")(features)
    for stage, width in enumerate(filters, start=2):
        prefix = f"conv{stage}_block1"
        stride = 1 if stage == 2 else 2
        shortcut = layers.Conv2D(4 * width, 1, strides=stride, name=f"{prefix}_0_conv")(features)
        shortcut = layers.BatchNormalization(epsilon=1.001e-5, name=f"{prefix}_0_bn")(shortcut)
        branch = features
        for part, (size, step, channels) in enumerate(
            ((1, stride, width), (3, 1, width), (1, 1, 4 * width)), start=1
        ):
            branch = layers.Conv2D(
                channels, size, strides=step, padding="same", name=f"{prefix}_{part}_conv"
            )(branch)
            branch = layers.BatchNormalization(epsilon=1.001e-5, name=f"{prefix}_{part}_bn")(branch)
            if part < 3:
                branch = layers.Activation("relu", name=f"{prefix}_{part}_relu")(branch)
        features = layers.Add(name=f"{prefix}_add")([shortcut, branch])
        features = layers.Activation("relu", name=f"{prefix}_out")(features)
    outputs = layers.GlobalAveragePooling2D(name="avg_pool")(features)
    model = keras.Model(inputs, outputs, name=name)
    if weights is not None:
        model.load_weights(weights)
    return model


def _application(model_name, tiny):
    """``choose(variant)`` -> ``(build(input_shape, weights), first conv's name)``."""

    def choose(variant):
        def build(input_shape, weights):
            if variant == "full":
                application = getattr(keras.applications, model_name)
                return application(
                    include_top=False, weights=weights, input_shape=input_shape, pooling="avg"
                )
            return tiny(input_shape, weights, f"{model_name.lower()}_tiny")

        return build, "conv1_conv"

    return choose


_BACKBONES = {
    "densenet121": _application("DenseNet121", _tiny_densenet),
    "densenet169": _application("DenseNet169", _tiny_densenet),
    "resnet50": _application("ResNet50", _tiny_resnet),
}


def _four_channel_model(name, input_shape, num_classes, weights, fourth_channel, dropout, variant):
    if variant not in ("full", "tiny"):
        raise InputError(f"variant {variant!r}: use 'full' or 'tiny'")
    backbone = _backbone(name, input_shape, resolve_weights(name, weights), fourth_channel, variant)
    backbone.name = "backbone"
    inputs = keras.Input(input_shape, name="images")
    outputs = classification_head(backbone(inputs), num_classes, dropout=dropout)
    return keras.Model(inputs, outputs, name=name)


def _four_channel_builder(name: str, title: str):
    """``build_<name>``: one builder per backbone, the same signature for all of them
    (the registry reads it to check options)."""

    def build(
        input_shape=(512, 512, 4),
        num_classes=28,
        weights=None,
        fourth_channel="red",
        dropout=0.3,
        variant="full",
    ):
        return _four_channel_model(
            name, input_shape, num_classes, weights, fourth_channel, dropout, variant
        )

    build.__name__ = build.__qualname__ = f"build_{name}"
    build.__doc__ = (
        f"{title} with a 4-channel first convolution (the fourth channel's filters by "
        f'``fourth_channel``), a dropout and sigmoid head; ``variant="tiny"`` for tests.'
    )
    return build


build_densenet121 = _four_channel_builder("densenet121", "DenseNet121")
build_densenet169 = _four_channel_builder("densenet169", "DenseNet169")
build_resnet50 = _four_channel_builder("resnet50", "ResNet50")


def build_inception_resnet_v2(
    input_shape=(512, 512, 4),
    num_classes=28,
    weights=None,
    mix="kaggle",
    trainable_mix=True,
    dropout=0.3,
    variant="full",
):
    """InceptionResNetV2 behind a 4->3 ``ChannelMixing`` layer.

    Args:
        mix: initial mix, ``"kaggle"`` (R + Y/2, G + Y/2, B), ``"variant"``
            (R/2 + B/2, Y/2 + B/2, G) or ``"identity"`` (R, G, B; learn the rest).
        trainable_mix: learn the mix (default) or keep it fixed.
        variant: ``"full"``, or ``"tiny"``: the same mixing and head around a
            two-convolution stand-in trunk, for fast tests of everything but
            InceptionResNetV2 itself (which Keras tests).
    """
    if variant not in ("full", "tiny"):
        raise InputError(f"variant {variant!r}: use 'full' or 'tiny'")
    weights_path = resolve_weights("inception_resnet_v2", weights)
    inputs = keras.Input(input_shape, name="images")
    mixed = ChannelMixing(mix, trainable=trainable_mix, name="channel_mixing")(inputs)
    if variant == "full":
        backbone = keras.applications.InceptionResNetV2(
            include_top=False,
            weights=weights_path,
            input_shape=(*input_shape[:-1], 3),
            pooling="avg",
        )
    else:
        trunk_inputs = keras.Input((*input_shape[:-1], 3))
        trunk = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(trunk_inputs)
        trunk = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(trunk)
        backbone = keras.Model(trunk_inputs, keras.layers.GlobalAveragePooling2D()(trunk))
        if weights_path is not None:
            backbone.load_weights(weights_path)
    backbone.name = "backbone"
    outputs = classification_head(backbone(mixed), num_classes, dropout=dropout)
    return keras.Model(inputs, outputs, name="inception_resnet_v2")


# ---------------------------------------------------------- fine-tuning stages


def freeze_backbone(model) -> None:
    """Train only what follows the backbone (stage one of two-stage fine-tuning).

    Frozen BatchNorm layers run in inference mode, as fine-tuning needs.
    Compile the model again after changing what is trainable.
    """
    _backbone_of(model).trainable = False


def unfreeze(model, from_layer: str | None = None) -> None:
    """Make the backbone trainable again: all of it, or from the layer ``from_layer`` on.

    ``from_layer`` names a backbone layer (for example ``"conv5_block1_1_conv"``
    of ResNet50 or ``"conv4_block1_0_bn"`` of DenseNet121); the layers before
    it stay frozen. Compile the model again afterwards.
    """
    backbone = _backbone_of(model)
    names = [layer.name for layer in backbone.layers]
    if from_layer is not None and from_layer not in names:
        raise InputError(f"no layer {from_layer!r} in the backbone ({len(names)} layers)")
    first = names.index(from_layer) if from_layer is not None else 0
    backbone.trainable = True
    # Each layer explicitly: setting an already trainable backbone to trainable does not
    # reach layers frozen one by one by an earlier unfreeze(from_layer=...).
    for position, layer in enumerate(backbone.layers):
        layer.trainable = position >= first


def _backbone_of(model):
    try:
        return model.get_layer("backbone")
    except ValueError:
        raise InputError(f"model {model.name} has no pretrained backbone to freeze") from None
