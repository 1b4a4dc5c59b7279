"""``hpa-keras import-model``: a published PyTorch model of the HPA as an ordinary run folder.

    >>> from hpa_keras.workflows.import_model import import_hpa_densenet, import_subcell
    >>> import_hpa_densenet("model.pth", "runs/hpa-densenet")
    >>> import_subcell("encoder.pth", ["classifier_s0.pth", "classifier_s1.pth"],
    ...                "runs/subcell", channels="rybg")

The run folder is what ``fit`` leaves (``model.keras``, ``input.json``,
``thresholds.json``, ``config.yaml``) plus ``import.json``: the published model it came
from, every file read (name, bytes, SHA-256) and why its thresholds are what they are.
``predict``, ``evaluate``, ``cam``, ``annotate`` and ``fit --init-from`` take it like a
trained run. The model is the task model ``fit`` would build for the registry model
(``hpa_densenet121``, ``subcell_vit``), its input scaling the original's, so it reads
stored pixels as every run does; PyTorch is needed only here, to read the files.

The folder appears whole or not at all: it is written beside ``out`` under a temporary
name and renamed when complete.
"""

import datetime
from pathlib import Path

from hpa_keras.atomic import atomic_folder, check_output_path
from hpa_keras.classes import CHANNELS, HPA2018, SUBCELL, resolve_channels
from hpa_keras.data.cell_records import DEFAULT_CELL_MARGIN
from hpa_keras.errors import InputError, warn
from hpa_keras.models.torch_checkpoints import (
    SUBCELL_CLASSIFIER,
    SUBCELL_ENCODER,
    WINNER,
    StateDict,
    describe_file,
    load_subcell,
    load_winner_densenet,
    read_state_dict,
    renamed_old_densenet,
    subcell_settings,
    winner_settings,
)
from hpa_keras.runs.documents import (
    InputSettings,
    ThresholdsDocument,
    write_import_record,
    write_input_settings,
    write_run_config,
    write_thresholds_document,
)
from hpa_keras.runs.files import MODEL_FILE

IMPORT_SOURCES = ("hpa-densenet", "subcell")
# The published prediction script (predict_d121.py) resizes every field to 1536 px
# (resize_image.py) and then to its crop_size, 1024 px, which the network sees.
WINNER_INPUT_SIZE = 1024
WINNER_THRESHOLD_NOTE = (
    "0.5 for every class, as the published predict_d121.py judges its probabilities (and "
    "it keeps each image's most probable class, as predict does unless --allow-empty). "
    "The winner's competition thresholds were chosen so that each class was predicted as "
    "often on the test images as it occurs in the training labels; they depend on the "
    "test set and were not published. Tune thresholds for your images on labelled ones."
)
SUBCELL_THRESHOLD_NOTE = (
    "0.5 for every class, the sigmoid's midpoint: SubCell publishes no thresholds "
    "(SubCellPortable reports each cell's three most probable classes). predict keeps "
    "each cell's most probable class when none reaches 0.5, unless --allow-empty."
)
RANDOM_WEIGHTS_NOTE = (
    "The import is proven to compute what the PyTorch original computes (tests compare "
    "both on models of the published structure with random weights); how well the "
    "published weights localize proteins is what their authors report, not measured here."
)
# How the run cuts cells (annotate): the pixels outside the cell set to zero, as in half of
# SubCell's training crops (subcell-embed masks the surroundings with mask_prob 0.5).
SUBCELL_CELL_CONTEXT = "zero"


def _pixel_statistics() -> tuple[list[float], list[float]]:
    """The winner's RGBY means and stds in pixel units (0-255), one per stain of CHANNELS."""
    from hpa_keras.models.layers import HPA2018_WINNER_MEAN, HPA2018_WINNER_STD

    return [value * 255 for value in HPA2018_WINNER_MEAN], [
        value * 255 for value in HPA2018_WINNER_STD
    ]


def _task_model(model: str, num_classes: int, channels, input_size, options: dict, statistics):
    """The task model fit builds for ``model`` (its core to be filled), as a trained run's."""
    from hpa_keras.models.task import build_task_model  # lazy: imports TensorFlow

    mean, std = statistics
    return build_task_model(
        model,
        num_classes=num_classes,
        channel_mean=mean,
        channel_std=std,
        channels=channels,
        input_size=input_size,
        model_options=options,
    )


def _classes(count: int, published) -> tuple[str | None, tuple[str, ...]]:
    """The scheme and class names of a model of ``count`` outputs: the ``published`` scheme's
    where the count is its own, else none and the indices (a model retrained elsewhere)."""
    if count == published.num_classes:
        return published.name, published.class_names
    return None, tuple(str(index) for index in range(count))


def _check_out(out) -> Path:
    out = Path(out)
    check_output_path(out, "folder")
    if out.exists() and any(out.iterdir()):
        raise InputError(f"--out {out}: not empty; give a new folder for the imported run")
    return out


def _write_run(folder: Path, model, settings: InputSettings, config: dict, provenance: dict):
    from hpa_keras.atomic import atomic_path

    with atomic_path(folder / MODEL_FILE, suffix=".keras") as temporary:
        model.save(temporary)
    write_input_settings(folder, settings)
    write_run_config(folder, config)
    count = len(settings.class_names)
    write_thresholds_document(
        folder,
        ThresholdsDocument(
            strategy="published: 0.5 (import.json says why)",
            thresholds=[0.5] * count,
            class_names=settings.class_names,
        ),
    )
    write_import_record(folder, provenance)


def _provenance(source: str, files: dict, model: str, options: dict, thresholds: str) -> dict:
    from hpa_keras import __version__

    return {
        "source": source,
        "model": model,
        "model_options": options,
        "files": files,
        "thresholds": thresholds,
        "accuracy": RANDOM_WEIGHTS_NOTE,
        "imported_by": f"hpa-keras {__version__}",
        "imported_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def import_hpa_densenet(
    checkpoint, out, input_size: int = WINNER_INPUT_SIZE, allow_pickle: bool = False
) -> dict:
    """The 2018 winner's DenseNet121 checkpoint (CellProfiling/densenet's release) as a run
    folder ``out``. Returns its ``import.json``.

    Args:
        checkpoint: the published ``.pth`` (``{"state_dict": ...}``, as its ``load_pretrained``
            reads it).
        out: the run folder to make (new or empty).
        input_size: the side fields are resized to (1024: what the published script feeds).
        allow_pickle: load Python objects beside the weights (files one trusts; see
            :func:`~hpa_keras.models.torch_checkpoints.read_state_dict`).
    """
    parameters = renamed_old_densenet(read_state_dict(checkpoint, allow_pickle))
    state = StateDict(parameters, checkpoint, WINNER)
    found = winner_settings(state)
    if found["channels"] not in (3, 4):
        raise InputError(f"{checkpoint}: a first convolution of {found['channels']} channels")
    channels = CHANNELS[: found["channels"]]
    if (found["num_classes"], found["channels"]) != (HPA2018.num_classes, len(CHANNELS)):
        warn(
            f"{checkpoint}: {found['num_classes']} classes from {found['channels']} stains "
            f"({', '.join(channels)}), not the published model's 28 from 4: imported as the "
            "winner's architecture retrained"
            + (
                "; its classes are named by index"
                if found["num_classes"] != HPA2018.num_classes
                else ""
            )
        )
    options = {key: found[key] for key in ("blocks", "growth_rate", "initial_features")}
    out = _check_out(out)
    mean, std = _pixel_statistics()
    with atomic_folder(out) as temporary:
        model, core = _task_model(
            "hpa_densenet121", found["num_classes"], channels, None, options, (mean, std)
        )
        load_winner_densenet(core, state)
        scheme, class_names = _classes(found["num_classes"], HPA2018)
        settings = InputSettings(
            kind="fields",
            image_size=int(input_size),
            channels=tuple(channels),
            bit_depth=8,
            scheme=scheme,
            class_names=class_names,
            labels_per_image=(
                sum(HPA2018.training_counts) / HPA2018.training_images if scheme else None
            ),
            pixel_mean={name: mean[CHANNELS.index(name)] for name in channels},
            pixel_std={name: std[CHANNELS.index(name)] for name in channels},
        )
        provenance = _provenance(
            "hpa-densenet",
            {"checkpoint": describe_file(checkpoint)},
            "hpa_densenet121",
            options,
            WINNER_THRESHOLD_NOTE,
        )
        config = {
            "model": "hpa_densenet121",
            "model_options": options,
            "channels": list(channels),
            "imported_from": "hpa-densenet",
        }
        _write_run(temporary, model, settings, config, provenance)
    return provenance


def _subcell_heads(config) -> int | None:
    """The attention heads in SubCell's ``model_config.yaml`` (``None`` without the file)."""
    if config is None:
        return None
    from hpa_keras.settings import read_settings_file

    settings = read_settings_file(config)
    vit = (settings.get("model_config") or settings).get("vit_model") or {}
    heads = vit.get("num_attention_heads")
    if not isinstance(heads, int) or heads < 1:
        raise InputError(f"{config}: no model_config.vit_model.num_attention_heads")
    return heads


def import_subcell(
    encoder, classifiers, out, channels: str = "rybg", config=None, allow_pickle: bool = False
) -> dict:
    """A SubCell encoder and its classifiers (SubCellPortable's model files) as a cell run
    folder ``out``; several classifier files are averaged, as SubCellPortable does.
    Returns its ``import.json``.

    Args:
        encoder: the ``encoder.pth`` of one model (its ``encoder.`` and ``pool_model.``
            parameters).
        classifiers: one or more ``classifier_s*.pth`` of the same model.
        out: the run folder to make (new or empty).
        channels: the encoder's channel set: ``rybg``, ``rbg``, ``ybg`` or ``bg``.
        config: SubCell's ``model_config.yaml`` of that model, for its attention heads
            (the weights do not show them); without it, ViT's 64 channels per head.
        allow_pickle: as :func:`import_hpa_densenet`'s.
    """
    if channels not in ("rybg", "rbg", "ybg", "bg"):
        raise InputError(f"--channels {channels!r}: SubCell's sets are rybg, rbg, ybg and bg")
    names = resolve_channels(channels)
    if not classifiers:
        raise InputError("give at least one SubCell classifier file (--classifier)")
    encoder_state = StateDict(read_state_dict(encoder, allow_pickle), encoder, SUBCELL_ENCODER)
    classifier_states = [
        StateDict(read_state_dict(path, allow_pickle), path, SUBCELL_CLASSIFIER)
        for path in classifiers
    ]
    found = subcell_settings(encoder_state, classifier_states, _subcell_heads(config))
    if found["channels"] != len(names):
        raise InputError(
            f"{encoder}: an encoder of {found['channels']} channels, not {channels}'s "
            f"{len(names)}; give the --channels it was trained on"
        )
    options = {
        key: value
        for key, value in found.items()
        if key not in ("input_size", "channels", "num_classes")
    }
    size = found["input_size"]
    out = _check_out(out)
    with atomic_folder(out) as temporary:
        model, core = _task_model(
            "subcell_vit",
            found["num_classes"],
            names,
            size,
            options,
            ([0.0] * len(CHANNELS), [1.0] * len(CHANNELS)),
        )
        ignored = load_subcell(core, encoder_state, classifier_states)
        scheme, class_names = _classes(found["num_classes"], SUBCELL)
        settings = InputSettings(
            kind="cells",
            image_size=size,
            channels=names,
            bit_depth=8,
            scheme=scheme,
            class_names=class_names,
            cell_margin=DEFAULT_CELL_MARGIN,
            cell_context=SUBCELL_CELL_CONTEXT,
        )
        files = {
            "encoder": describe_file(encoder),
            "classifiers": [describe_file(path) for path in classifiers],
        }
        if config is not None:
            files["config"] = describe_file(config)
        provenance = _provenance("subcell", files, "subcell_vit", options, SUBCELL_THRESHOLD_NOTE)
        provenance["channels"] = channels
        provenance["attention_heads"] = (
            f"{options['heads']}, from {Path(config).name}"
            if config is not None
            else f"{options['heads']}: not in the weights, ViT's 64 channels a head (no --config)"
        )
        provenance["ignored_parameters"] = ignored
        run_config = {
            "model": "subcell_vit",
            "model_options": options,
            "channels": list(names),
            "crop": size,
            "imported_from": "subcell",
        }
        _write_run(temporary, model, settings, run_config, provenance)
    return provenance
