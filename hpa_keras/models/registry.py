"""The model registry: one record per model, every builder under its name.

    >>> from hpa_keras.models import build_model, list_models
    >>> model = build_model("gapnet", input_shape=(256, 256, 4))

Every builder is ``build_<name>(input_shape, num_classes, weights, **options)``
and returns an uncompiled ``keras.Model`` ending in ``num_classes`` sigmoid
probabilities (float32 even under a mixed-precision policy). Options set to
``None`` are dropped, so a command line can pass every flag through. Names are
case-insensitive, and a typo is answered with the closest one
(:func:`canonical_model_name`).

A model is declared once, as a :class:`ModelRecord` in :data:`REGISTRY`
(timm's registry, without its import-time decorators): adding a model is its
builder plus one record. The older tables (``MODELS``, ``DESCRIPTIONS``,
``BACKBONE_MODELS``, ``FIXED_SIZE_MODELS``, ``TINY_OPTIONS``,
``PARAMETER_COUNTS``) are views of it.
"""

import difflib
import importlib
import inspect
from dataclasses import dataclass, field

from hpa_keras.errors import InputError
from hpa_keras.settings import coerce_value

# Parameter counts are those of the default builds at this input (no options), so that
# `hpa-keras models` lists them without building anything. tests/test_models.py keeps them
# equal to the built models (every model under the `large` marker; two small ones always).
# Only capsnet's count depends on the input size.
PARAMETER_COUNTS_AT = {"input_shape": (512, 512, 4), "num_classes": 28}

INPUT_SCALINGS = ("torch", "caffe", "tf", "hpa2018", "min-max")


@dataclass(frozen=True)
class ModelRecord:
    """One registered model: how to build it and what a user of it needs to know.

    Args:
        name: the registered name (lower case, ``_`` between words).
        builder: ``"module:function"``, imported on first use (:func:`model_builder`):
            the registry loads without Keras or TensorFlow, so ``hpa-keras models``,
            settings checks and "did you mean" answers take milliseconds.
        description: one line for ``hpa-keras models``.
        parameters: the parameter count of the default build at
            :data:`PARAMETER_COUNTS_AT` (512x512x4, 28 classes).
        tiny_options: builder options of a small, fast variant, for tests and smoke runs.
        backbone: built around a pretrained backbone (a nested model named
            ``"backbone"``), which two-stage fine-tuning freezes and differential
            learning rates slow down. The training model feeds such a model pixel
            units, which it scales itself (``input_scaling``).
        input_scaling: the pixel convention of the backbone's pretrained weights that the
            model's ``BackbonePreprocessing`` applies: ImageNet's ``"torch"``, ``"caffe"``
            or ``"tf"`` (:mod:`hpa_keras.models.applications`), or an imported HPA
            model's ``"hpa2018"`` or ``"min-max"`` (:mod:`hpa_keras.models.hpa_models`);
            ``None`` for models trained from scratch on standardized inputs.
        weights: the named weights ``weights=`` accepts besides ``None`` (the default:
            from scratch) and a file path, e.g. ``("imagenet",)``.
        fixed_size: the model needs the one input size it was built at (capsnet's
            capsule grid is fixed by it); the others pool globally and take a whole
            field of any size, however they were trained.
    """

    name: str
    builder: str
    description: str
    parameters: int
    tiny_options: dict = field(default_factory=dict)
    backbone: bool = False
    input_scaling: str | None = None
    weights: tuple[str, ...] = ()
    fixed_size: bool = False

    def __post_init__(self):
        if self.input_scaling not in (None, *INPUT_SCALINGS):
            raise ValueError(f"{self.name}: input_scaling {self.input_scaling!r}")
        if self.backbone != (self.input_scaling is not None):
            raise ValueError(f"{self.name}: a backbone model, and only one, has input_scaling")


_TINY_BACKBONE = {"variant": "tiny"}


def _backbone(
    name: str, function: str, description: str, parameters: int, scaling: str, weights=("imagenet",)
) -> ModelRecord:
    return ModelRecord(
        name,
        f"hpa_keras.models.applications:{function}",
        description,
        parameters,
        dict(_TINY_BACKBONE),
        backbone=True,
        input_scaling=scaling,
        weights=weights,
    )


def _efficientnet(variant: str, parameters: int) -> ModelRecord:
    return _backbone(
        f"efficientnetv2_{variant}",
        f"build_efficientnetv2_{variant}",
        f"EfficientNetV2-{variant.upper()}, 4-channel first convolution (torch scaling)",
        parameters,
        "torch",
    )


_RECORDS = (
    ModelRecord(
        "gapnet",
        "hpa_keras.models.gapnet:build_gapnet",
        "GapNet-PL: 3 GAP taps concatenated, 2 dense layers (ICLR 2019)",
        632_092,
        {"width": 4, "depth": 1, "dense_units": 8},
    ),
    _backbone(
        "inception_resnet_v2",
        "build_inception_resnet_v2",
        "InceptionResNetV2 behind a 4->3 channel mixing layer ([-1, 1])",
        54_379_784,
        "tf",
    ),
    _backbone(
        "densenet121",
        "build_densenet121",
        "DenseNet121, 4-channel first convolution (torch scaling)",
        7_069_340,
        "torch",
    ),
    _backbone(
        "densenet169",
        "build_densenet169",
        "DenseNet169, 4-channel first convolution (torch scaling)",
        12_692_636,
        "torch",
    ),
    _backbone(
        "resnet50",
        "build_resnet50",
        "ResNet50, 4-channel first convolution (caffe scaling, BGR kernel reordered)",
        23_648_220,
        "caffe",
    ),
    _backbone(
        "resnet18",
        "build_resnet18",
        "ResNet18 (basic blocks; ImageNet weights: torchvision's .pth file)",
        11_208_412,
        "torch",
        weights=(),
    ),
    _backbone(
        "resnet34",
        "build_resnet34",
        "ResNet34 (basic blocks; ImageNet weights: torchvision's .pth file)",
        21_327_708,
        "torch",
        weights=(),
    ),
    _backbone(
        "densenet161",
        "build_densenet161",
        "DenseNet161, torchvision's layout (ImageNet weights: torchvision's .pth file)",
        26_758_492,
        "torch",
        weights=(),
    ),
    _backbone(
        "vgg19",
        "build_vgg19",
        "VGG19, 4-channel first convolution (caffe scaling, BGR kernel reordered)",
        20_039_324,
        "caffe",
    ),
    _efficientnet("b0", 5_955_468),
    _efficientnet("b1", 6_967_280),
    _efficientnet("b2", 8_809_114),
    _efficientnet("b3", 12_974_018),
    _backbone(
        "convnext_tiny",
        "build_convnext_tiny",
        "ConvNeXt-Tiny, 4-channel first convolution (torch scaling)",
        27_843_196,
        "torch",
    ),
    ModelRecord(
        "densenet",
        "hpa_keras.models.densenet:build_densenet",
        "DenseNet from scratch: blocks, growth_rate, initial_features as options",
        7_069_340,
        {"blocks": "1,1", "growth_rate": 4, "initial_features": 8},
    ),
    ModelRecord(
        "densenet73",
        "hpa_keras.models.densenet:build_densenet73",
        "the seeds' DenseNet73 from scratch: blocks 6,12,16, growth 12, 64 initial features",
        514_276,
        {"variant": "tiny"},
    ),
    ModelRecord(
        "hpa_densenet121",
        "hpa_keras.models.hpa_models:build_hpa_densenet121",
        "the 2018 winner's DenseNet121 (CellProfiling/densenet): import-model --from hpa-densenet",
        9_179_804,
        {"blocks": "1,1,1,1", "growth_rate": 8, "initial_features": 16, "large": False},
        backbone=True,
        input_scaling="hpa2018",
    ),
    ModelRecord(
        "subcell_vit",
        "hpa_keras.models.hpa_models:build_subcell_vit",
        "SubCell's ViT-B/16 for 448 px cells (CellProfiling): import-model --from subcell",
        88_345_118,
        {"hidden_size": 16, "layers": 1, "heads": 2, "mlp_size": 32, "pool_units": 8},
        backbone=True,
        input_scaling="min-max",
        fixed_size=True,
    ),
    ModelRecord(
        "simple_cnn",
        "hpa_keras.models.simple_cnn:build_simple_cnn",
        "baseline: 3 conv/BatchNorm/pool/ReLU blocks, 2 dense layers",
        134_428,
        {"width": 4, "dense_units": 8},
    ),
    ModelRecord(
        "capsnet",
        "hpa_keras.models.capsnet:build_capsnet",
        "baseline: capsule network with dynamic routing (Sabour et al. 2017)",
        2_026_112,
        {"width": 8, "primary_capsules": 2, "primary_dim": 4, "capsule_dim": 4},
        fixed_size=True,
    ),
)

# Every model, in the order `hpa-keras models` lists them.
REGISTRY: dict[str, ModelRecord] = {record.name: record for record in _RECORDS}

# The older tables, as views of the records (the CLI, settings checks, tests and the manual
# use them).
MODELS = {name: record.builder for name, record in REGISTRY.items()}
DESCRIPTIONS = {name: record.description for name, record in REGISTRY.items()}
BACKBONE_MODELS = tuple(name for name, record in REGISTRY.items() if record.backbone)
FIXED_SIZE_MODELS = tuple(name for name, record in REGISTRY.items() if record.fixed_size)
TINY_OPTIONS = {name: dict(record.tiny_options) for name, record in REGISTRY.items()}
PARAMETER_COUNTS = {name: record.parameters for name, record in REGISTRY.items()}


def list_models() -> list[str]:
    """The registered model names."""
    return list(REGISTRY)


def canonical_model_name(name) -> str:
    """The registered spelling of model ``name``: case, surrounding spaces and ``-`` for
    ``_`` are forgiven (``GapNet``, ``simple-cnn``). Anything else is an InputError that
    offers the closest registered name and lists them all. Every check of a model name
    (settings, :func:`build_model`) goes through here."""
    key = str(name).strip().lower().replace("-", "_")
    if key in REGISTRY:
        return key
    close = difflib.get_close_matches(key, REGISTRY, n=1)
    hint = f" did you mean {close[0]}?" if close else ""
    raise InputError(f"unknown model {name!r};{hint} available: {', '.join(REGISTRY)}")


def model_record(name) -> ModelRecord:
    """The record of model ``name`` (any spelling :func:`canonical_model_name` accepts)."""
    return REGISTRY[canonical_model_name(name)]


def model_builder(name: str):
    """The builder function of model ``name``, imported now (it imports Keras)."""
    module, function = model_record(name).builder.split(":")
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
