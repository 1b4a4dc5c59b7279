"""Published PyTorch checkpoints read into Keras models, parameter by parameter, by name.

The owner of the ``.pth`` format in this package. PyTorch (the ``import`` extra) is needed
only here, to unpickle the file (``torch.load(..., weights_only=True)``: tensors, never
code); the models it fills are Keras layers and run without it.

Every mapping consumes the state dict as :class:`StateDict` hands it out: each parameter
is taken once, by its published name, checked against the shape the Keras layer needs; a
parameter that is missing or of the wrong shape stops the import with one line naming
the file and that parameter, and so does one left over at the end (a checkpoint of
another architecture). Parameters the original model holds but never uses in ``forward``
(torchvision's ImageNet classifier inside the winner's DenseNet) and the second names
PyTorch gives a shared module (the winner's ``encoder2.0...`` for
``backbone.features.denseblock1...``) are declared, and checked equal to the first.

Layout conversions: a convolution's ``(out, in, kh, kw)`` kernel becomes Keras'
``(kh, kw, in, out)``; a linear layer's ``(out, in)`` its transpose; BatchNorm's weight,
bias, running mean and variance are Keras' gamma, beta, moving mean and variance; an
attention projection's ``(heads * size, width)`` becomes ``(width, heads, size)``.
"""

import hashlib
import os
import pickle
import re
from pathlib import Path

import numpy as np

from hpa_keras.errors import InputError

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
INSTALL_HINT = "pip install 'hpa-keras[import]'"


def is_torch_checkpoint(path) -> bool:
    """Whether ``path`` names a PyTorch checkpoint (by its suffix)."""
    return isinstance(path, str | os.PathLike) and Path(path).suffix.lower() in TORCH_SUFFIXES


def file_digest(path: str | os.PathLike) -> str:
    """The SHA-256 of a file, hex: what an import records of each file it read."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _torch():
    try:
        import torch  # lazy: optional (the import extra), and heavy
    except ImportError:
        raise InputError(
            f"reading a PyTorch checkpoint needs PyTorch, which is not installed: {INSTALL_HINT} "
            "(only the import needs it; the imported run predicts without it)"
        ) from None
    return torch


_NOT_A_CHECKPOINT = "not a readable PyTorch checkpoint (truncated, or another format)"
_REFUSED_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")


def _numpy_globals() -> list:
    """The numpy names a checkpoint's numpy scalars and arrays unpickle through (data
    constructors only: the unpickler still runs no other code)."""
    core = getattr(np, "_core", None) or np.core
    dtypes = [getattr(np.dtypes, name) for name in dir(np.dtypes) if name.endswith("DType")]
    return [core.multiarray.scalar, core.multiarray._reconstruct, np.ndarray, np.dtype, *dtypes]


def read_state_dict(path: str | os.PathLike, allow_pickle: bool = False) -> dict[str, np.ndarray]:
    """The parameters of a ``.pth`` file as numpy arrays, by name.

    Accepts a bare state dict, or a dict holding one under ``state_dict`` or ``model``
    (training scripts save ``{"state_dict": ..., "epoch": ...}``); a ``module.`` prefix
    (``DataParallel``) on every name is dropped. InputError naming the file when it is
    missing, empty, truncated, not a PyTorch file, or holds no tensors.

    The file is unpickled safely (``weights_only``: tensors, numbers, numpy values);
    one that also holds other Python objects (a training script's ``args``) is refused,
    naming the object, unless ``allow_pickle`` (for files one trusts: unpickling may run
    code the file names).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no checkpoint there")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file (an interrupted download?)")
    torch = _torch()
    try:
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=not allow_pickle)
        except pickle.UnpicklingError as error:
            if "weights_only" not in str(error).replace(" ", "_").lower():
                raise
            # Training scripts save numpy values beside the weights (a best score, an
            # array of thresholds): data, which the safe unpickler allows when named.
            with torch.serialization.safe_globals(_numpy_globals()):
                loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        named = _REFUSED_GLOBAL.search(str(error))
        if named:
            raise InputError(
                f"{path}: holds a Python object ({named.group(1)}) besides the weights, which "
                "a safe load refuses (unpickling it could run code); if you trust the file, "
                "add --allow-pickle"
            ) from None
        raise InputError(f"{path}: {_NOT_A_CHECKPOINT} (UnpicklingError)") from None
    except Exception as error:  # zip, pickle and torch raise many types for a bad file
        raise InputError(f"{path}: {_NOT_A_CHECKPOINT} ({type(error).__name__})") from None
    for key in ("state_dict", "model"):
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
            break
    if not isinstance(loaded, dict) or not loaded:
        raise InputError(f"{path}: holds no state dict of parameters")
    state = {}
    for name, value in loaded.items():
        if not isinstance(value, torch.Tensor):
            raise InputError(f"{path}: entry {name!r} is not a tensor ({type(value).__name__})")
        value = value.detach().cpu()
        state[str(name)] = value.float().numpy() if value.is_floating_point() else value.numpy()
    if all(name.startswith("module.") for name in state):
        state = {name[len("module.") :]: value for name, value in state.items()}
    return state


class StateDict:
    """A checkpoint's parameters, handed out once each, by name, shape-checked.

    Args:
        state: name -> array (:func:`read_state_dict`).
        source: the file, for messages.
        architecture: what the file should hold, for messages.
    """

    def __init__(self, state: dict, source, architecture: str):
        self.state = dict(state)
        self.source = str(source)
        self.architecture = architecture
        self.consumed: set[str] = set()

    def __contains__(self, name: str) -> bool:
        return name in self.state

    def take(self, name: str, shape: tuple) -> np.ndarray:
        """Parameter ``name``, which must have ``shape`` (in PyTorch's layout)."""
        if name not in self.state:
            raise InputError(
                f"{self.source}: no parameter {name!r}; not a checkpoint of {self.architecture}"
                " (or a truncated one)"
            )
        value = self.state[name]
        if tuple(value.shape) != tuple(shape):
            raise InputError(
                f"{self.source}: parameter {name!r} has shape {tuple(value.shape)}, "
                f"{self.architecture} here needs {tuple(shape)}"
            )
        self.consumed.add(name)
        return value

    def declare(self, name: str, same_as: str | None = None) -> None:
        """Consume ``name`` without loading it: unused by the original's ``forward``, or
        (``same_as``) a second name of a parameter already read, which must be equal."""
        if same_as is not None:
            if same_as not in self.consumed:
                raise InputError(f"{self.source}: parameter {name!r} duplicates no parameter read")
            if not np.array_equal(self.state[name], self.state[same_as]):
                raise InputError(
                    f"{self.source}: parameter {name!r} differs from {same_as!r}, the module "
                    "it names in the published model"
                )
        self.consumed.add(name)

    def finish(self, ignored: tuple[str, ...] = ("num_batches_tracked",)) -> None:
        """InputError naming the first parameter nothing consumed (BatchNorm's step
        counters aside)."""
        left = [
            name for name in self.state if name not in self.consumed and not name.endswith(ignored)
        ]
        if left:
            raise InputError(
                f"{self.source}: parameter {left[0]!r} is not part of {self.architecture} "
                f"({len(left)} such; a checkpoint of another architecture?)"
            )


# ------------------------------------------------------------------ layer assignments


def _set(layer, values) -> None:
    layer.set_weights([np.asarray(value, dtype=np.float32) for value in values])


def assign_convolution(layer, state: StateDict, prefix: str) -> None:
    """A Conv2D from ``prefix.weight`` (and ``prefix.bias``, zero where PyTorch has none)."""
    height, width, channels, filters = layer.kernel.shape
    kernel = state.take(f"{prefix}.weight", (filters, channels, height, width))
    values = [kernel.transpose(2, 3, 1, 0)]
    if layer.use_bias:
        bias_name = f"{prefix}.bias"
        values.append(
            state.take(bias_name, (filters,)) if bias_name in state else np.zeros(filters)
        )
    _set(layer, values)


def assign_batch_norm(layer, state: StateDict, prefix: str) -> None:
    """A BatchNormalization from ``prefix.{weight,bias,running_mean,running_var}``."""
    size = (layer.gamma.shape[0],)
    _set(
        layer,
        [
            state.take(f"{prefix}.{part}", size)
            for part in ("weight", "bias", "running_mean", "running_var")
        ],
    )
    if f"{prefix}.num_batches_tracked" in state:
        state.declare(f"{prefix}.num_batches_tracked")


def assign_dense(layer, state: StateDict, prefix: str) -> None:
    """A Dense from ``prefix.weight`` (transposed) and ``prefix.bias``."""
    inputs, units = layer.kernel.shape
    _set(
        layer,
        [state.take(f"{prefix}.weight", (units, inputs)).T, state.take(f"{prefix}.bias", (units,))],
    )


def assign_layer_norm(layer, state: StateDict, prefix: str) -> None:
    size = (layer.gamma.shape[0],)
    _set(layer, [state.take(f"{prefix}.weight", size), state.take(f"{prefix}.bias", size)])


def _assign_by_type(layer, state: StateDict, prefix: str) -> None:
    import keras  # lazy: imports TensorFlow

    if isinstance(layer, keras.layers.Conv2D):
        assign_convolution(layer, state, prefix)
    elif isinstance(layer, keras.layers.BatchNormalization):
        assign_batch_norm(layer, state, prefix)
    elif isinstance(layer, keras.layers.Dense):
        assign_dense(layer, state, prefix)
    else:
        raise InputError(f"no PyTorch mapping for layer {layer.name} ({type(layer).__name__})")


def _layers_with_weights(model) -> list:
    found = []
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            found.extend(_layers_with_weights(layer))
        elif layer.weights:
            found.append(layer)
    return found


# ------------------------------------------------------------------ torchvision


def densenet_parameter(layer_name: str, prefix: str = "features.") -> str:
    """torchvision's module path of a layer of :func:`hpa_keras.models.densenet.densenet_trunk`
    (``denseblock1_denselayer2_conv1`` -> ``features.denseblock1.denselayer2.conv1``)."""
    return prefix + layer_name.replace("_", ".")


_RESNET_LAYER = re.compile(r"conv(\d)_block(\d+)_(\d)_(conv|bn)")


def resnet_parameter(layer_name: str) -> str:
    """torchvision's module path of a layer of the basic-block ResNet built here
    (``conv3_block1_0_conv`` -> ``layer2.0.downsample.0``, ``conv1_bn`` -> ``bn1``)."""
    if layer_name in ("conv1_conv", "conv1_bn"):
        return "conv1" if layer_name.endswith("conv") else "bn1"
    match = _RESNET_LAYER.fullmatch(layer_name)
    if match is None:
        raise InputError(f"no torchvision name for ResNet layer {layer_name}")
    stage, block, part, kind = match.groups()
    where = f"layer{int(stage) - 1}.{int(block) - 1}"
    if part == "0":
        return f"{where}.downsample.{0 if kind == 'conv' else 1}"
    return f"{where}.{kind}{part}"


# torchvision's published DenseNet checkpoints name a dense layer's parts as its first
# release did (``denselayer1.norm.1.weight``); torchvision renames them when it loads them
# (densenet.py, _load_state_dict), with this pattern.
_OLD_DENSENET_NAME = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def renamed_old_densenet(state: dict) -> dict:
    """``state`` with torchvision's first-release DenseNet names as its modules name them
    now (``denselayer1.norm.1.weight`` -> ``denselayer1.norm1.weight``)."""
    renamed = {}
    for name, value in state.items():
        match = _OLD_DENSENET_NAME.match(name)
        renamed[match.group(1) + match.group(2) if match else name] = value
    return renamed


def load_torchvision_trunk(trunk, path, name: str) -> dict:
    """torchvision's ImageNet checkpoint of ``name`` (resnet18, resnet34, densenet161) into a
    3-channel trunk built here; its ImageNet classifier (``fc``, ``classifier``) is left out.
    Returns the file's name, size and SHA-256."""
    is_densenet = name.startswith("densenet")
    parameters = read_state_dict(path)
    if is_densenet:
        parameters = renamed_old_densenet(parameters)
    state = StateDict(parameters, path, f"torchvision's {name}")
    for layer in _layers_with_weights(trunk):
        parameter = densenet_parameter(layer.name) if is_densenet else resnet_parameter(layer.name)
        _assign_by_type(layer, state, parameter)
    unused = "classifier" if is_densenet else "fc"  # the ImageNet classifier
    for part in ("weight", "bias"):
        if f"{unused}.{part}" in state:
            state.declare(f"{unused}.{part}")
    state.finish()
    return describe_file(path)


def describe_file(path) -> dict:
    """What an import records of a file it read: name, bytes, SHA-256."""
    path = Path(path)
    return {"file": path.name, "bytes": path.stat().st_size, "sha256": file_digest(path)}


# ------------------------------------------------------------------ the 2018 winner's DenseNet

WINNER = "the 2018 winner's DenseNet (CellProfiling/densenet, DensenetClass)"
# DensenetClass wraps torchvision's modules in Sequentials of its own, so its state dict
# names each of them twice: these second names, and backbone.classifier (torchvision's
# ImageNet classifier, which its forward never calls).
WINNER_ALIASES = (
    ("conv1.0", "backbone.features.conv0"),
    ("conv1.1", "backbone.features.norm0"),
    ("encoder2.0", "backbone.features.denseblock1"),
    ("encoder3.0", "backbone.features.transition1"),
    ("encoder3.1", "backbone.features.denseblock2"),
    ("encoder4.0", "backbone.features.transition2"),
    ("encoder4.1", "backbone.features.denseblock3"),
    ("encoder5.0", "backbone.features.transition3"),
    ("encoder5.1", "backbone.features.denseblock4"),
    ("encoder5.2", "backbone.features.norm5"),
)
WINNER_HEAD = ("bn1", "fc1", "bn2", "logit")


def _count(state: StateDict, pattern: str) -> int:
    count = 0
    while pattern.format(count + 1) in state:
        count += 1
    return count


def winner_settings(state: StateDict) -> dict:
    """The ``build_hpa_densenet121`` options and input channels the checkpoint was trained
    with, read from its parameter names and shapes."""
    if "backbone.features.conv0.weight" not in state:
        raise InputError(
            f"{state.source}: no parameter 'backbone.features.conv0.weight'; not {WINNER}"
        )
    stem = state.state["backbone.features.conv0.weight"]
    blocks = []
    while True:
        block = f"backbone.features.denseblock{len(blocks) + 1}"
        layers = _count(state, block + ".denselayer{}.conv1.weight")
        if not layers:
            break
        blocks.append(layers)
    if not blocks or "logit.weight" not in state:
        raise InputError(f"{state.source}: no dense blocks or no logit layer; not {WINNER}")
    growth_name = "backbone.features.denseblock1.denselayer1.conv2.weight"
    if growth_name not in state:
        raise InputError(f"{state.source}: no parameter {growth_name!r}; not {WINNER}")
    growth = state.state[growth_name].shape[0]
    return {
        "blocks": ",".join(str(count) for count in blocks),
        "growth_rate": int(growth),
        "initial_features": int(stem.shape[0]),
        "channels": int(stem.shape[1]),
        "num_classes": int(state.state["logit.weight"].shape[0]),
    }


def load_winner_densenet(model, state: StateDict) -> None:
    """Every parameter of the winner's checkpoint into ``build_hpa_densenet121``'s model."""
    for layer in _layers_with_weights(model.get_layer("backbone")):
        _assign_by_type(layer, state, densenet_parameter(layer.name, "backbone.features."))
    for name in WINNER_HEAD:
        _assign_by_type(model.get_layer(name), state, name)
    for part in ("weight", "bias"):
        if f"backbone.classifier.{part}" in state:
            state.declare(f"backbone.classifier.{part}")
    for name in list(state.state):
        for alias, original in WINNER_ALIASES:
            if name.startswith(alias + "."):
                state.declare(name, same_as=original + name[len(alias) :])
    state.finish()


# ------------------------------------------------------------------ SubCell

SUBCELL_ENCODER = "a SubCell encoder (SubCellPortable, ViTPoolClassifier's encoder and pool_model)"
SUBCELL_CLASSIFIER = "a SubCell classifier (SubCellPortable, ViTPoolClassifier.make_classifier)"


def _pool_index(state: StateDict) -> int:
    """The Linear's index in the pooler's Sequentials: 1 as trained (a Dropout first), 0 as
    SubCellPortable renames it (``k.replace("1.", "0.")``)."""
    return 1 if "pool_model.attention_v.1.weight" in state else 0


def _classifier_indices(state: StateDict) -> tuple[int, int, int]:
    """The three Linears' indices: 0, 3, 6 as trained (ReLU and Dropout between), or 0, 2, 4
    as SubCellPortable renames them."""
    return (0, 3, 6) if "3.weight" in state else (0, 2, 4)


def subcell_settings(encoder: StateDict, classifiers: list[StateDict], heads: int | None) -> dict:
    """The ``build_subcell_vit`` options of a SubCell encoder and its classifiers, read from
    the parameters' shapes. The attention heads cannot be read from them: ``heads`` (from
    SubCell's ``model_config.yaml``), else ViT's 64 channels per head."""
    needed = (
        "encoder.embeddings.position_embeddings",
        "encoder.embeddings.patch_embeddings.projection.weight",
        "encoder.encoder.layer.0.intermediate.dense.weight",
        "pool_model.attention.weight",
    )
    for name in needed:
        if name not in encoder:
            raise InputError(f"{encoder.source}: no parameter {name!r}; not {SUBCELL_ENCODER}")
    positions = encoder.state["encoder.embeddings.position_embeddings"].shape[1] - 1
    hidden, channels, patch, _ = encoder.state[needed[1]].shape
    side = int(round(positions**0.5))
    if side * side != positions:
        raise InputError(f"{encoder.source}: {positions} position embeddings are not a square grid")
    pool_heads, pool_units = encoder.state["pool_model.attention.weight"].shape
    last = _classifier_indices(classifiers[0])[-1]
    if f"{last}.weight" not in classifiers[0]:
        raise InputError(
            f"{classifiers[0].source}: no parameter '{last}.weight'; not {SUBCELL_CLASSIFIER}"
        )
    return {
        "input_size": side * patch,
        "channels": int(channels),
        "hidden_size": int(hidden),
        "layers": _count_layers(encoder),
        "heads": _heads(encoder, int(hidden), heads),
        "mlp_size": int(encoder.state[needed[2]].shape[0]),
        "patch_size": int(patch),
        "pool_heads": int(pool_heads),
        "pool_units": int(pool_units),
        "classifiers": len(classifiers),
        "num_classes": int(classifiers[0].state[f"{last}.weight"].shape[0]),
    }


def _heads(encoder: StateDict, hidden: int, heads: int | None) -> int:
    """``heads``, or ViT's 64 channels a head (ViT-B/16: 12); InputError where they do not
    divide the width."""
    heads = heads or max(hidden // 64, 1)
    if hidden % heads:
        raise InputError(
            f"{encoder.source}: a width of {hidden} does not split into {heads} attention "
            "heads; give the model's model_config.yaml (--config)"
        )
    return heads


def _count_layers(encoder: StateDict) -> int:
    count = 0
    while f"encoder.encoder.layer.{count}.attention.attention.query.weight" in encoder:
        count += 1
    return count


def assign_attention(layer, state: StateDict, prefix: str) -> None:
    """A Keras MultiHeadAttention from Hugging Face's ViT attention at ``prefix``
    (``attention.{query,key,value}`` and ``output.dense``)."""
    heads, size = layer.num_heads, layer.key_dim
    width = heads * size
    for part, dense in (
        ("query", layer._query_dense),
        ("key", layer._key_dense),
        ("value", layer._value_dense),
    ):
        weight = state.take(f"{prefix}.attention.{part}.weight", (width, width))
        bias = state.take(f"{prefix}.attention.{part}.bias", (width,))
        _set(dense, [weight.T.reshape(width, heads, size), bias.reshape(heads, size)])
    weight = state.take(f"{prefix}.output.dense.weight", (width, width))
    bias = state.take(f"{prefix}.output.dense.bias", (width,))
    _set(layer._output_dense, [weight.T.reshape(heads, size, width), bias])


def load_subcell(model, encoder: StateDict, classifiers: list[StateDict]) -> list[str]:
    """A SubCell encoder file and its classifier files into ``build_subcell_vit``'s model.
    Returns the encoder file's parameters outside ``encoder.`` and ``pool_model.``, which
    SubCellPortable does not read either (none in a file of the published structure)."""
    backbone = model.get_layer("backbone")
    vit = backbone.get_layer("encoder")
    embeddings = vit.get_layer("embeddings")
    positions = tuple(embeddings.position_embeddings.shape)
    _set(
        embeddings,
        [
            encoder.take("encoder.embeddings.cls_token", (1, 1, positions[-1])),
            encoder.take("encoder.embeddings.position_embeddings", positions),
        ],
    )
    assign_convolution(
        vit.get_layer("patch_embeddings"), encoder, "encoder.embeddings.patch_embeddings.projection"
    )
    for index in range(_count_layers(encoder)):
        prefix = f"encoder.encoder.layer.{index}"
        try:
            block = [
                vit.get_layer(f"layer{index}_{part}")
                for part in (
                    "layernorm_before",
                    "attention",
                    "layernorm_after",
                    "intermediate",
                    "output",
                )
            ]
        except ValueError:
            raise InputError(f"{encoder.source}: {prefix} is not part of the model built") from None
        assign_layer_norm(block[0], encoder, f"{prefix}.layernorm_before")
        assign_attention(block[1], encoder, f"{prefix}.attention")
        assign_layer_norm(block[2], encoder, f"{prefix}.layernorm_after")
        assign_dense(block[3], encoder, f"{prefix}.intermediate.dense")
        assign_dense(block[4], encoder, f"{prefix}.output.dense")
    assign_layer_norm(vit.get_layer("layernorm"), encoder, "encoder.layernorm")
    pool = backbone.get_layer("pool").get_layer("pool_model")
    index = _pool_index(encoder)
    assign_dense(pool.attention_v, encoder, f"pool_model.attention_v.{index}")
    assign_dense(pool.attention_u, encoder, f"pool_model.attention_u.{index}")
    assign_dense(pool.attention, encoder, "pool_model.attention")
    ignored = [name for name in encoder.state if not name.startswith(("encoder.", "pool_model."))]
    for name in ignored:  # SubCellPortable reads only these two parts of the file
        encoder.declare(name)
    encoder.finish()
    heads = model.get_layer("classifiers")
    for number, state in enumerate(classifiers):
        indices = _classifier_indices(state)
        for layer, index in zip(heads.classifier_layers(number), indices, strict=True):
            assign_dense(layer, state, str(index))
        state.finish()
    return ignored
