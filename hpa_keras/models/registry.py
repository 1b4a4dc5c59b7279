"""The model registry: every builder under its name.

    >>> from hpa_keras.models import build_model, list_models
    >>> model = build_model("gapnet", input_shape=(256, 256, 4))

Every builder is ``build_<name>(input_shape, num_classes, weights, **options)``
and returns an uncompiled ``keras.Model`` ending in ``num_classes`` sigmoid
probabilities (float32 even under a mixed-precision policy). Options set to
``None`` are dropped, so a command line can pass every flag through. Names are
case-insensitive, and a typo is answered with the closest one
(:func:`canonical_model_name`).
"""

import difflib
import importlib
import inspect

from hpa_keras.errors import InputError
from hpa_keras.settings import coerce_value

# Each builder is recorded as "module:function" and imported on first use (model_builder):
# the registry's tables load without Keras or TensorFlow, so `hpa-keras models`, settings
# checks and "did you mean" answers take milliseconds, not a TensorFlow start-up.
MODELS = {
    "gapnet": "hpa_keras.models.gapnet:build_gapnet",
    "inception_resnet_v2": "hpa_keras.models.applications:build_inception_resnet_v2",
    "densenet121": "hpa_keras.models.applications:build_densenet121",
    "densenet169": "hpa_keras.models.applications:build_densenet169",
    "resnet50": "hpa_keras.models.applications:build_resnet50",
    "resnet34": "hpa_keras.models.applications:build_resnet34",
    "efficientnetv2_b0": "hpa_keras.models.applications:build_efficientnetv2_b0",
    "efficientnetv2_b1": "hpa_keras.models.applications:build_efficientnetv2_b1",
    "efficientnetv2_b2": "hpa_keras.models.applications:build_efficientnetv2_b2",
    "efficientnetv2_b3": "hpa_keras.models.applications:build_efficientnetv2_b3",
    "convnext_tiny": "hpa_keras.models.applications:build_convnext_tiny",
    "simple_cnn": "hpa_keras.models.simple_cnn:build_simple_cnn",
    "capsnet": "hpa_keras.models.capsnet:build_capsnet",
}

DESCRIPTIONS = {
    "gapnet": "GapNet-PL: 3 GAP taps concatenated, 2 dense layers (ICLR 2019)",
    "inception_resnet_v2": "InceptionResNetV2 behind a 4->3 channel mixing layer ([-1, 1])",
    "densenet121": "DenseNet121, 4-channel first convolution (torch scaling)",
    "densenet169": "DenseNet169, 4-channel first convolution (torch scaling)",
    "resnet50": "ResNet50, 4-channel first convolution (caffe scaling, BGR kernel reordered)",
    "resnet34": "ResNet34 (basic blocks; no Keras ImageNet weights: weights from a file)",
    "efficientnetv2_b0": "EfficientNetV2-B0, 4-channel first convolution (torch scaling)",
    "efficientnetv2_b1": "EfficientNetV2-B1, 4-channel first convolution (torch scaling)",
    "efficientnetv2_b2": "EfficientNetV2-B2, 4-channel first convolution (torch scaling)",
    "efficientnetv2_b3": "EfficientNetV2-B3, 4-channel first convolution (torch scaling)",
    "convnext_tiny": "ConvNeXt-Tiny, 4-channel first convolution (torch scaling)",
    "simple_cnn": "baseline: 3 conv/BatchNorm/pool/ReLU blocks, 2 dense layers",
    "capsnet": "baseline: capsule network with dynamic routing (Sabour et al. 2017)",
}

# Models built around a pretrained backbone (a nested model named "backbone"), which
# two-stage fine-tuning freezes and differential learning rates slow down.
BACKBONE_MODELS = (
    "inception_resnet_v2",
    "densenet121",
    "densenet169",
    "resnet50",
    "resnet34",
    "efficientnetv2_b0",
    "efficientnetv2_b1",
    "efficientnetv2_b2",
    "efficientnetv2_b3",
    "convnext_tiny",
)

# Models that need one input size (capsnet's capsule grid is fixed by it); the others pool
# globally and take a whole field of any size, however they were trained.
FIXED_SIZE_MODELS = ("capsnet",)

# Options that make a small, fast variant of each model, for tests and smoke runs.
TINY_OPTIONS = {
    "gapnet": {"width": 4, "depth": 1, "dense_units": 8},
    "inception_resnet_v2": {"variant": "tiny"},
    "densenet121": {"variant": "tiny"},
    "densenet169": {"variant": "tiny"},
    "resnet50": {"variant": "tiny"},
    "resnet34": {"variant": "tiny"},
    "efficientnetv2_b0": {"variant": "tiny"},
    "efficientnetv2_b1": {"variant": "tiny"},
    "efficientnetv2_b2": {"variant": "tiny"},
    "efficientnetv2_b3": {"variant": "tiny"},
    "convnext_tiny": {"variant": "tiny"},
    "simple_cnn": {"width": 4, "dense_units": 8},
    "capsnet": {"width": 8, "primary_capsules": 2, "primary_dim": 4, "capsule_dim": 4},
}


# Parameter counts of the default builds (input 512x512x4, 28 classes, no options), so that
# `hpa-keras models` lists them without building anything. tests/test_models.py keeps them
# equal to the built models (every model under the `large` marker; two small ones always).
# Only capsnet's count depends on the input size.
PARAMETER_COUNTS_AT = {"input_shape": (512, 512, 4), "num_classes": 28}
PARAMETER_COUNTS = {
    "gapnet": 632_092,
    "inception_resnet_v2": 54_379_784,
    "densenet121": 7_069_340,
    "densenet169": 12_692_636,
    "resnet50": 23_648_220,
    "resnet34": 21_327_708,
    "efficientnetv2_b0": 5_955_468,
    "efficientnetv2_b1": 6_967_280,
    "efficientnetv2_b2": 8_809_114,
    "efficientnetv2_b3": 12_974_018,
    "convnext_tiny": 27_843_196,
    "simple_cnn": 134_428,
    "capsnet": 2_026_112,
}


def list_models() -> list[str]:
    """The registered model names."""
    return list(MODELS)


def canonical_model_name(name) -> str:
    """The registered spelling of model ``name``: case, surrounding spaces and ``-`` for
    ``_`` are forgiven (``GapNet``, ``simple-cnn``). Anything else is an InputError that
    offers the closest registered name and lists them all. Every check of a model name
    (settings, :func:`build_model`) goes through here."""
    key = str(name).strip().lower().replace("-", "_")
    if key in MODELS:
        return key
    close = difflib.get_close_matches(key, MODELS, n=1)
    hint = f" did you mean {close[0]}?" if close else ""
    raise InputError(f"unknown model {name!r};{hint} available: {', '.join(MODELS)}")


def model_builder(name: str):
    """The builder function of model ``name``, imported now (it imports Keras)."""
    module, function = MODELS[canonical_model_name(name)].split(":")
    return getattr(importlib.import_module(module), function)


def build_model(
    name: str, input_shape=(512, 512, 4), num_classes: int = 28, weights=None, **options
):
    """Build model ``name``; unknown names and options get a clear error."""
    name = canonical_model_name(name)
    builder = model_builder(name)
    options = {key: value for key, value in options.items() if value is not None}
    accepted = inspect.signature(builder).parameters
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        choices = [key for key in accepted if key not in ("input_shape", "num_classes", "weights")]
        raise InputError(f"model {name} has no option {unknown[0]!r}; options: {choices}")
    for key, value in options.items():  # "16" or 1e-3 from a file: the default's type
        default = accepted[key].default
        if isinstance(default, (bool, int, float, str)):
            options[key] = coerce_value(key, type(default), value, f"model_options of {name}")
    return builder(
        input_shape=tuple(input_shape), num_classes=num_classes, weights=weights, **options
    )
