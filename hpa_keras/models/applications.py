"""Pretrained backbones for 4-channel HPA images, each with the input scaling of its weights.

Every backbone here takes the four stains in pixel units (0-255, red,
green, blue, yellow) and starts with a :class:`BackbonePreprocessing` layer
in the convention its ImageNet weights were trained with (the one Keras'
``preprocess_input`` applies):

| backbone | Keras application | input scaling |
|---|---|---|
| densenet121, densenet169 | DenseNet121, DenseNet169 | torch: /255, ImageNet mean and std |
| resnet50 | ResNet50 | caffe: BGR, minus the mean pixel |
| vgg19 | VGG19 | caffe |
| efficientnetv2_b0 ... b3 | EfficientNetV2B0 ... B3 | torch (Keras' 3-channel rescaling off) |
| convnext_tiny | ConvNeXtTiny | torch (likewise) |
| inception_resnet_v2 | InceptionResNetV2, after a 4->3 ChannelMixing | tf: [-1, 1] |
| resnet18, resnet34 | none in Keras: built here in torchvision's arithmetic | torch |
| densenet161 | none in Keras: torchvision's layout (:mod:`hpa_keras.models.densenet`) | torch |

``keras.applications`` builds 4-channel inputs only without pretrained
weights, so the weights are loaded into a 3-channel twin, built exactly as
Keras builds it for its weight file, and copied across layer by layer; the
first convolution's kernel is permuted into the package's channel order
(caffe's is BGR: its input channel 0 is blue) and widened with a fourth
(yellow) slice by ``fourth_channel``:

- ``"red"`` (default): a copy of the red filters, as the 2018 winners did
  (the ER stain is, like the microtubules, a cytoplasmic reference);
- ``"mean"``: the mean of the red, green and blue filters;
- ``"zero"``: zeros, so that yellow starts with no effect (the 4-channel
  model then computes exactly what the 3-channel one does: tested).

The three built here have no Keras weights: ``weights=FILE.pth`` takes torchvision's
published ImageNet checkpoint (read with PyTorch, the ``import`` extra, mapped by name in
:mod:`hpa_keras.models.torch_checkpoints`) into the 3-channel twin, widened the same way.

``weights="imagenet"`` uses Keras' own file in the Keras cache
(``$KERAS_HOME/models`` or ``~/.keras/models``) and, when it is not there,
downloads it as Keras does; offline, it fails at once with the file's name,
where to put it and where Keras publishes it. ``weights=PATH`` takes a file.
"""

import os
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import keras
import numpy as np

from hpa_keras.errors import InputError
from hpa_keras.models.densenet import (
    DENSENET_SETTINGS,
    TORCH_BATCH_NORM_EPSILON,
    densenet_trunk,
)
from hpa_keras.models.layers import BackbonePreprocessing, ChannelMixing, classification_head
from hpa_keras.models.registry import REGISTRY
from hpa_keras.models.torch_checkpoints import is_torch_checkpoint, load_torchvision_trunk

FOURTH_CHANNEL_RULES = ("red", "mean", "zero")
KERAS_WEIGHTS = "https://storage.googleapis.com/tensorflow/keras-applications/"


@dataclass(frozen=True)
class Backbone:
    """One pretrained trunk: how to build it and where its weights are (the input scaling
    they expect is the model's registry record's ``input_scaling``)."""

    application: str | None  # the keras.applications function, None when built here
    weights_file: str | None  # Keras' notop weight file
    weights_folder: str = ""  # where Keras publishes it, under KERAS_WEIGHTS
    options: tuple = ()  # extra keyword arguments of the application

    @property
    def url(self) -> str | None:
        if self.weights_file is None:
            return None
        return f"{KERAS_WEIGHTS}{self.weights_folder}/{self.weights_file}"


def _densenet(application):
    file = f"{application.lower()}_weights_tf_dim_ordering_tf_kernels_notop.h5"
    return Backbone(application, file, "densenet")


def _efficientnet(variant):
    return Backbone(
        f"EfficientNetV2{variant.upper()}",
        f"efficientnetv2-{variant}_notop.h5",
        "efficientnet_v2",
        (("include_preprocessing", False),),
    )


BACKBONES = {
    "densenet121": _densenet("DenseNet121"),
    "densenet169": _densenet("DenseNet169"),
    "resnet50": Backbone(
        "ResNet50", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5", "resnet"
    ),
    "efficientnetv2_b0": _efficientnet("b0"),
    "efficientnetv2_b1": _efficientnet("b1"),
    "efficientnetv2_b2": _efficientnet("b2"),
    "efficientnetv2_b3": _efficientnet("b3"),
    "convnext_tiny": Backbone(
        "ConvNeXtTiny",
        "convnext_tiny_notop.h5",
        "convnext",
        (("include_preprocessing", False),),
    ),
    "resnet18": Backbone(None, None),
    "resnet34": Backbone(None, None),
    "densenet161": Backbone(None, None),
    "vgg19": Backbone("VGG19", "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5", "vgg19"),
    "inception_resnet_v2": Backbone(
        "InceptionResNetV2",
        "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "inception_resnet_v2",
    ),
}


# ------------------------------------------------------------------ weights


def keras_cache_folder() -> Path:
    """Where Keras keeps downloaded weights: ``$KERAS_HOME/models`` or ``~/.keras/models``."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


def _reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether the host of ``url`` answers within ``timeout`` seconds (no long hang offline)."""
    host = urlparse(url).hostname
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def resolve_weights(name: str, weights):
    """``None``, or the local file to load for ``weights`` (``"imagenet"`` or a path)."""
    if weights is None:
        return None
    if weights == "imagenet":
        backbone = BACKBONES.get(name)
        if backbone is None or backbone.weights_file is None:
            raise InputError(
                f"Keras ships no ImageNet weights for {name}; pass weights=FILE.pth: "
                f"torchvision's ImageNet checkpoint of {name} (read with PyTorch: pip install "
                "'hpa-keras[import]'), or a Keras weights file of a 3-channel build of it"
                if backbone is not None
                else f"{name} has no ImageNet weights; train it from scratch (weights=None)"
            )
        path = keras_cache_folder() / backbone.weights_file
        if path.is_file():
            return str(path)
        advice = (
            f"put {backbone.weights_file} (from {backbone.url}) into {path.parent}/, or pass "
            "weights=PATH to a copy of it"
        )
        if not _reachable(backbone.url):
            raise InputError(
                f"ImageNet weights for {name} are not in the Keras cache ({path}) and "
                f"{urlparse(backbone.url).hostname} cannot be reached to download them; " + advice
            )
        try:
            return keras.utils.get_file(backbone.weights_file, backbone.url, cache_subdir="models")
        except Exception as error:  # urllib and Keras raise several types
            raise InputError(f"downloading {backbone.url} failed ({error}); {advice}") from None
    path = Path(weights)
    if not path.is_file():
        raise InputError(f"{path}: weights file not found")
    return str(path)


def widen_first_kernel(
    kernel: np.ndarray, channels: int, rule: str = "red", bgr: bool = False
) -> np.ndarray:
    """A ``(kh, kw, 3, filters)`` pretrained kernel for ``channels`` inputs in the package's
    order (red, green, blue, yellow): a BGR kernel (caffe) is flipped first, then the
    fourth slice is added by ``rule`` (see the module docstring)."""
    if rule not in FOURTH_CHANNEL_RULES:
        raise InputError(f"fourth-channel rule {rule!r}: use one of {FOURTH_CHANNEL_RULES}")
    rgb = kernel[:, :, ::-1] if bgr else kernel
    if rule == "red":
        extra = rgb[:, :, :1]
    elif rule == "mean":
        extra = rgb.mean(axis=2, keepdims=True)
    else:
        extra = np.zeros_like(rgb[:, :, :1])
    return np.concatenate([rgb] + [extra] * (channels - 3), axis=2)


def _leaves_with_weights(model) -> list:
    leaves = []
    for layer in model.layers:
        if hasattr(layer, "layers"):
            leaves.extend(_leaves_with_weights(layer))
        elif layer.weights:
            leaves.append(layer)
    return leaves


def copy_weights_widening_first_conv(source, target, rule: str, bgr: bool = False) -> None:
    """Copy every weight of a 3-channel ``source`` into the ``target`` twin, layer by layer in
    order (nested blocks included), widening the first convolution's kernel."""
    sources, targets = _leaves_with_weights(source), _leaves_with_weights(target)
    if len(sources) != len(targets):
        raise InputError(f"{source.name}: the 3- and 4-channel twins differ in their layers")
    widened = False
    for origin, destination in zip(sources, targets, strict=True):
        weights = origin.get_weights()
        wanted = [value.shape for value in destination.get_weights()]
        if not widened and weights[0].ndim == 4 and weights[0].shape != wanted[0]:
            weights = [widen_first_kernel(weights[0], wanted[0][2], rule, bgr)] + weights[1:]
            widened = True
        destination.set_weights(weights)


# ------------------------------------------------------------------ trunks

# torchvision's basic-block ResNets: (filters, blocks) per stage.
RESNET_STAGES = {
    "resnet18": ((64, 2), (128, 2), (256, 2), (512, 2)),
    "resnet34": ((64, 3), (128, 4), (256, 6), (512, 3)),
}


def _application_trunk(name: str, input_shape, weights):
    backbone = BACKBONES[name]
    application = getattr(keras.applications, backbone.application)
    return application(
        include_top=False,
        weights=weights,
        input_shape=input_shape,
        pooling="avg",
        **dict(backbone.options),
    )


def _keras_twin(name: str, input_shape, weights_path):
    """The 3-channel trunk exactly as Keras builds it for its weight file (its own
    preprocessing included: those layers carry no weights)."""
    backbone = BACKBONES[name]
    application = getattr(keras.applications, backbone.application)
    return application(
        include_top=False, weights=weights_path, input_shape=input_shape, pooling="avg"
    )


def _tiny_densenet(input_shape, weights, name, growth_rate=8, blocks=(1, 1, 1, 1)):
    """A DenseNet of Keras' layout and layer names (``conv1_conv``, ``conv2_block1_...``,
    ``pool2``...) with one narrow dense layer per block: the 4-channel surgery, freezing and
    saving of the pretrained backbones are tested on it in seconds."""
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


def _residual_network(input_shape, weights, name, stages, bottleneck, stem_filters=64):
    """A ResNet of Keras' layer names (``conv1_conv``, ``conv2_block1_...``): bottleneck
    blocks (ResNet50's) or basic blocks of two 3x3 convolutions (ResNet18's and 34's),
    ``stages`` as ``(filters, blocks)`` per stage. Strided convolutions and the stem's
    pooling pad symmetrically, as torchvision does (Keras' ``"same"`` pads a strided
    layer on one side only), and BatchNorm has torchvision's epsilon (1e-5; Keras' ResNets
    1.001e-5), so torchvision's weights compute the same here."""
    layers = keras.layers
    inputs = keras.Input(input_shape)
    features = layers.ZeroPadding2D(3, name="conv1_pad")(inputs)
    features = layers.Conv2D(stem_filters, 7, strides=2, name="conv1_conv")(features)
    features = layers.BatchNormalization(epsilon=TORCH_BATCH_NORM_EPSILON, name="conv1_bn")(
        features
    )
    features = layers.Activation("relu", name="conv1_relu")(features)
    features = layers.ZeroPadding2D(1, name="pool1_pad")(features)  # after a ReLU: as -inf
    features = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(features)
    for stage, (width, count) in enumerate(stages, start=2):
        for block in range(1, count + 1):
            prefix = f"conv{stage}_block{block}"
            stride = 2 if block == 1 and stage > 2 else 1
            out_channels = 4 * width if bottleneck else width
            shortcut = features
            if block == 1 and (stride != 1 or features.shape[-1] != out_channels):
                shortcut = layers.Conv2D(out_channels, 1, strides=stride, name=f"{prefix}_0_conv")(
                    features
                )
                shortcut = layers.BatchNormalization(
                    epsilon=TORCH_BATCH_NORM_EPSILON, name=f"{prefix}_0_bn"
                )(shortcut)
            parts = (
                ((1, stride, width), (3, 1, width), (1, 1, out_channels))
                if bottleneck
                else ((3, stride, width), (3, 1, width))
            )
            branch = features
            for part, (size, step, channels) in enumerate(parts, start=1):
                if step > 1 and size > 1:
                    branch = layers.ZeroPadding2D(size // 2, name=f"{prefix}_{part}_pad")(branch)
                branch = layers.Conv2D(
                    channels,
                    size,
                    strides=step,
                    padding="same" if step == 1 else "valid",
                    name=f"{prefix}_{part}_conv",
                )(branch)
                branch = layers.BatchNormalization(
                    epsilon=TORCH_BATCH_NORM_EPSILON, name=f"{prefix}_{part}_bn"
                )(branch)
                if part < len(parts):
                    branch = layers.Activation("relu", name=f"{prefix}_{part}_relu")(branch)
            features = layers.Add(name=f"{prefix}_add")([shortcut, branch])
            features = layers.Activation("relu", name=f"{prefix}_out")(features)
    outputs = layers.GlobalAveragePooling2D(name="avg_pool")(features)
    model = keras.Model(inputs, outputs, name=name)
    if weights is not None:
        model.load_weights(weights)
    return model


def _torchvision_densenet(input_shape, weights, name, settings):
    """torchvision's DenseNet trunk, ReLU and average pooling, as the other trunks end."""
    trunk = densenet_trunk(input_shape, *settings, name=f"{name}_features")
    inputs = keras.Input(input_shape)
    features = keras.layers.Activation("relu", name="relu")(trunk(inputs))
    pooled = keras.layers.GlobalAveragePooling2D(name="avg_pool")(features)
    model = keras.Model(inputs, pooled, name=name)
    if weights is not None:
        model.load_weights(weights)
    return model


def _trunk(name: str, input_shape, weights_path, variant: str):
    """The trunk for ``input_shape`` (3 or 4 channels) with weights from ``weights_path``
    (a Keras weights file, or torchvision's checkpoint for the trunks built here)."""
    if is_torch_checkpoint(weights_path):
        if BACKBONES[name].application is not None:
            raise InputError(
                f"{weights_path}: torchvision checkpoints load into resnet18, resnet34 and "
                f"densenet161; {name} takes Keras' weights (weights='imagenet' or a .h5 file)"
            )
        trunk = _trunk(name, input_shape, None, variant)
        load_torchvision_trunk(trunk, weights_path, name)
        return trunk
    if name == "densenet161":
        settings = DENSENET_SETTINGS["tiny" if variant == "tiny" else name]
        return _torchvision_densenet(input_shape, weights_path, name, settings)
    if variant == "tiny":
        if name.startswith("densenet"):
            return _tiny_densenet(input_shape, weights_path, f"{name}_tiny")
        return _residual_network(
            input_shape, weights_path, f"{name}_tiny", ((8, 1), (16, 1)), bottleneck=False,
            stem_filters=16,
        )  # fmt: skip
    if name in RESNET_STAGES:
        return _residual_network(
            input_shape, weights_path, name, RESNET_STAGES[name], bottleneck=False
        )
    return _application_trunk(name, input_shape, weights_path)


def _backbone(name, input_shape, weights_path, fourth_channel, variant):
    """The trunk (average-pooled features) for 4-channel input, its weights copied from the
    3-channel twin when pretrained."""
    channels = input_shape[-1]
    with warnings.catch_warnings():  # 4 input channels is the point here, not a mistake
        warnings.filterwarnings("ignore", message="This model usually expects 1 or 3 input")
        if channels == 3 or weights_path is None:
            return _trunk(name, input_shape, weights_path, variant)
        three = (*input_shape[:-1], 3)
        keras_file = not is_torch_checkpoint(weights_path)
        if variant == "full" and BACKBONES[name].application is not None and keras_file:
            twin = _keras_twin(name, three, weights_path)
        else:
            twin = _trunk(name, three, weights_path, variant)
        widened = _trunk(name, input_shape, None, variant)
    bgr = REGISTRY[name].input_scaling == "caffe"
    copy_weights_widening_first_conv(twin, widened, fourth_channel, bgr=bgr)
    return widened


def _four_channel_model(name, input_shape, num_classes, weights, fourth_channel, dropout, variant):
    if variant not in ("full", "tiny"):
        raise InputError(f"variant {variant!r}: use 'full' or 'tiny'")
    if fourth_channel not in FOURTH_CHANNEL_RULES:
        raise InputError(
            f"fourth_channel {fourth_channel!r}: use one of {', '.join(FOURTH_CHANNEL_RULES)}"
        )
    backbone = _backbone(name, input_shape, resolve_weights(name, weights), fourth_channel, variant)
    backbone.name = "backbone"
    inputs = keras.Input(input_shape, name="images")
    scaled = BackbonePreprocessing(
        REGISTRY[name].input_scaling, fourth_channel, name="preprocessing"
    )(inputs)
    outputs = classification_head(backbone(scaled), num_classes, dropout=dropout)
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
        f"{title} for pixel inputs (0-255, RGBY): its ImageNet input scaling "
        f"({REGISTRY[name].input_scaling}), a 4-channel first convolution (the fourth "
        "channel's filters by ``fourth_channel``), a dropout and sigmoid head; "
        '``variant="tiny"`` for tests.'
    )
    return build


build_densenet121 = _four_channel_builder("densenet121", "DenseNet121")
build_densenet169 = _four_channel_builder("densenet169", "DenseNet169")
build_resnet50 = _four_channel_builder("resnet50", "ResNet50")
build_resnet18 = _four_channel_builder("resnet18", "ResNet18 (basic blocks, built here)")
build_resnet34 = _four_channel_builder("resnet34", "ResNet34 (basic blocks, built here)")
build_densenet161 = _four_channel_builder("densenet161", "DenseNet161 (torchvision's layout)")
build_vgg19 = _four_channel_builder("vgg19", "VGG19")
build_efficientnetv2_b0 = _four_channel_builder("efficientnetv2_b0", "EfficientNetV2-B0")
build_efficientnetv2_b1 = _four_channel_builder("efficientnetv2_b1", "EfficientNetV2-B1")
build_efficientnetv2_b2 = _four_channel_builder("efficientnetv2_b2", "EfficientNetV2-B2")
build_efficientnetv2_b3 = _four_channel_builder("efficientnetv2_b3", "EfficientNetV2-B3")
build_convnext_tiny = _four_channel_builder("convnext_tiny", "ConvNeXt-Tiny")


def build_inception_resnet_v2(
    input_shape=(512, 512, 4),
    num_classes=28,
    weights=None,
    mix="kaggle",
    trainable_mix=True,
    dropout=0.3,
    variant="full",
):
    """InceptionResNetV2 for pixel inputs: scaled to [-1, 1] (its weights' convention), then
    a 4->3 ``ChannelMixing`` layer in front of the unchanged 3-channel trunk.

    Args:
        mix: initial mix, ``"kaggle"`` (R + Y/2, G + Y/2, B), ``"variant"``
            (R/2 + B/2, Y/2 + B/2, G) or ``"identity"`` (R, G, B; learn the rest).
        trainable_mix: learn the mix (default) or keep it fixed.
        variant: ``"full"``, or ``"tiny"``: the same scaling, mixing and head
            around a two-convolution stand-in trunk, for fast tests of
            everything but InceptionResNetV2 itself (which Keras tests).
    """
    if variant not in ("full", "tiny"):
        raise InputError(f"variant {variant!r}: use 'full' or 'tiny'")
    weights_path = resolve_weights("inception_resnet_v2", weights)
    inputs = keras.Input(input_shape, name="images")
    scaled = BackbonePreprocessing(
        REGISTRY["inception_resnet_v2"].input_scaling, name="preprocessing"
    )(inputs)
    mixed = ChannelMixing(mix, trainable=trainable_mix, name="channel_mixing")(scaled)
    if variant == "full":
        backbone = _application_trunk("inception_resnet_v2", (*input_shape[:-1], 3), weights_path)
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
