"""``TrainingConfig``: every setting of a training run, in one dataclass.

The same names are the keys of a run's ``config.yaml``, of a YAML file given
to ``--config``, and (with dashes) the flags of ``hpa-keras fit``, which are
generated from the fields below: each field carries its help line and
choices (:func:`hpa_keras.settings.setting`). Values resolve as flags over
the YAML file over these defaults (:func:`resolve_config`), and every value
is checked before anything is written (:meth:`TrainingConfig.validate`).
"""

import dataclasses
from pathlib import Path

from hpa_keras.data.tfrecords import read_manifest
from hpa_keras.errors import InputError
from hpa_keras.models.registry import (
    BACKBONE_MODELS,
    FIXED_SIZE_MODELS,
    MODELS,
    canonical_model_name,
)
from hpa_keras.scoring.thresholds import THRESHOLD_STRATEGIES
from hpa_keras.settings import coerce_settings, read_yaml, setting, settings_mapping

# The vocabularies live here, in a module without Keras, so that `hpa-keras fit --help`
# (generated from this dataclass) does not import TensorFlow.
POSITIVE_WEIGHT_RULES = ("none", "ratio", "log", "sqrt")
LOSSES = ("bce", "weighted_bce", "focal", "lovasz", "focal_lovasz", "soft_f1", "margin")
SCHEDULES = ("plateau", "cosine", "sgdr", "constant")
# Settings that only one schedule reads: giving them with another schedule is a mistake.
SCHEDULE_SETTINGS = {
    "plateau_patience": "plateau",
    "plateau_factor": "plateau",
    "sgdr_epochs": "sgdr",
    "sgdr_t_mul": "sgdr",
}
STRATEGIES = ("default", "mirrored")
CELL_POOLINGS = ("none", "max", "lse")
OPTIMIZER_NAMES = ("adam", "adamw", "sgd")
# Settings that change only what is printed or where the run computes, not what it
# computes: a resumed run may differ in them (resume a two-host run on one, say).
DISPLAY_SETTINGS = ("verbose", "print_table", "strategy", "distributed", "data_service")


@dataclasses.dataclass
class TrainingConfig:
    """Every setting of a training run; ``config.yaml`` holds these keys.

    Data: ``data`` (make-tfrecords folder), ``fold`` (validation fold),
    ``image_size`` (``None``: as stored), ``channels``, ``batch_size``,
    ``cache`` (keep decoded images in memory), ``shuffle_buffer``.

    Model: ``model`` (registry name), ``weights`` (``None``, ``"imagenet"``
    or a file), ``model_options`` (builder keyword arguments, such as
    ``{"width": 16}``), augmentation (``dihedral``, ``rotation``, ``zoom``,
    ``brightness``, ``contrast``; brightness in standard deviations).

    Loss: ``loss``, ``pos_weight`` (for ``weighted_bce``), ``class_weight``,
    ``focal_gamma``, ``focal_alpha`` (``None``: no class balancing; Keras'
    own default of 0.25 would weight the positives, the rare side here,
    below the negatives).

    Optimization: ``optimizer``, ``lr``, ``epochs``, ``frozen_epochs`` and
    ``frozen_lr``, ``backbone_lr_factor``, ``schedule`` and its settings
    (``plateau_factor``, ``plateau_patience``, ``min_lr``, ``sgdr_epochs``,
    ``sgdr_t_mul``), ``early_stopping_patience``, ``steps_per_epoch``.

    Thresholds: ``threshold_strategy``. Run: ``out``, ``seed``,
    ``mixed_precision``, ``strategy``, ``tensorboard``, ``verbose``,
    ``print_table``.
    """

    data: str | None = setting(None, "make-tfrecords folder to train on", metavar="DIR")
    out: str | None = setting(
        None, "run folder", default_text="runs/MODEL-foldK", metavar="RUN_DIR"
    )
    model: str = setting("gapnet", "model name (see `hpa-keras models`)", metavar="NAME")
    fold: int = setting(0, "validation fold; training uses the others", metavar="K")
    epochs: int = setting(10, "training epochs (after the frozen stage, if any)")
    image_size: int | None = setting(
        None, "train at SxS pixels", default_text="as stored", metavar="S"
    )
    crop: int | None = setting(
        None,
        "train on random CxC crops of the (resized) fields, as the 2018 winners trained at 512 "
        "from 768 px fields",
        default_text="none: whole fields",
        metavar="C",
    )
    tiles: int = setting(
        0,
        "how validation, evaluate and predict see a field: 0 the whole field (the models "
        "pool globally); N the mean over an NxN grid of crop-sized tiles (needs --crop)",
        metavar="N",
    )
    tta: int = setting(
        1,
        "dihedral views averaged when validating; evaluate and predict use the same by "
        "default, so the thresholds suit the probabilities they are applied to",
        choices=(1, 2, 4, 8),
    )
    validate_source: str | None = setting(
        None,
        "validate on this source's records of the fold only (the challenge scored only its "
        "own images: kaggle); training uses every source",
        default_text="all sources",
        metavar="NAME",
    )
    channels: str = setting("rgby", "rgby, rgb, g or a comma-separated list of stains")
    batch_size: int = setting(32, "global batch size (split across replicas)")
    cache: bool = setting(False, "keep decoded images in memory after the first epoch")
    shuffle_buffer: int = setting(
        1024, "records in the shuffle buffer (a raw 512 px record is 1 MiB)"
    )
    cell_pooling: str = setting(
        "none",
        "cell records: none: each cell learns its field's labels; max or lse (a smooth "
        "maximum): multiple instances, a field's label is the pooled prediction of its "
        "cells (Negative: their minimum), so a class seen in a few cells is not forced onto all",
        choices=CELL_POOLINGS,
    )
    bag_size: int = setting(
        48, "cell_pooling: most cells of one field in a bag (larger fields are split)"
    )
    bags_per_batch: int = setting(4, "cell_pooling: fields per training batch")
    lse_sharpness: float = setting(
        5.0, "cell_pooling lse: r of (1/r) log mean exp(r p); large r approaches the maximum"
    )
    weights: str | None = setting(None, "imagenet or a weights file", metavar="WEIGHTS")
    model_options: dict = setting(help="builder options", default_factory=dict, flag=False)
    dihedral: bool = setting(True, "random flips and 90-degree rotations")
    rotation: float = setting(0.0, "largest extra rotation, as a fraction of a full turn")
    zoom: float = setting(0.0, "largest random zoom-in, as a fraction of the side")
    brightness: float = setting(0.1, "largest per-channel shift, in standard deviations")
    contrast: float = setting(0.1, "largest per-channel relative gain change")
    loss: str = setting("weighted_bce", "training loss", choices=LOSSES)
    pos_weight: str = setting(
        "log", "weighted_bce's positive weights from N_neg/N_pos", choices=POSITIVE_WEIGHT_RULES
    )
    class_weight: bool = setting(False, "also weight classes by 1/log(N_i)")
    focal_gamma: float = setting(2.0, "focal loss focusing parameter gamma")
    focal_alpha: float | None = setting(
        None,
        "focal loss weight of the positive term (negatives get 1 - alpha)",
        default_text="none: no class balancing",
    )
    lovasz_weight: float = setting(1.0, "focal_lovasz: the weight of the Lovász hinge term")
    optimizer: str = setting("adam", "optimizer (sgd: momentum 0.9)", choices=OPTIMIZER_NAMES)
    ema: bool = setting(
        False,
        "keep the optimizer's exponential moving average of the weights (Keras' use_ema) and "
        "validate and save it",
    )
    ema_momentum: float = setting(0.99, "ema: the average's momentum per step")
    swa_epochs: int = setting(
        0,
        "stochastic weight averaging: the result is the mean of the weights at the end of "
        "the last N epochs, BatchNorm statistics recomputed (0: off, the best epoch)",
        metavar="N",
    )
    lr: float = setting(1e-3, "learning rate")
    frozen_epochs: int = setting(
        0, "first train N epochs with the pretrained backbone frozen (two-stage fine-tuning)"
    )
    frozen_lr: float = setting(1e-3, "learning rate of the frozen stage")
    backbone_lr_factor: float = setting(
        1.0, "the backbone learns at this fraction of --lr (differential learning rates)"
    )
    schedule: str = setting(
        "plateau",
        "plateau: ReduceLROnPlateau on val_loss; cosine: one decay from --lr to --min-lr; "
        "sgdr: cosine with warm restarts; constant",
        choices=SCHEDULES,
    )
    plateau_factor: float = setting(0.5, "plateau: multiply the rate by this on a plateau")
    plateau_patience: int = setting(2, "plateau: epochs without a lower val_loss before reducing")
    min_lr: float = setting(1e-6, "lowest learning rate of plateau, cosine and sgdr")
    sgdr_epochs: int = setting(4, "sgdr: epochs of the first cycle")
    sgdr_t_mul: float = setting(2.0, "sgdr: each cycle is this many times longer than the last")
    early_stopping_patience: int = setting(
        0, "stop after N epochs without a better tuned macro F1 (0: off)"
    )
    steps_per_epoch: int | None = setting(
        None, "training batches per epoch", default_text="one pass over the training folds"
    )
    threshold_strategy: str = setting(
        "per_class", "how thresholds are chosen on validation", choices=THRESHOLD_STRATEGIES
    )
    seed: int = setting(0, "seed of weights, shuffles and augmentation")
    mixed_precision: bool = setting(False, "mixed_float16 on GPU, mixed_bfloat16 on CPU")
    strategy: str = setting(
        "default",
        "mirrored: every local GPU (TensorFlow's MirroredStrategy; on JAX DataParallel)",
        choices=STRATEGIES,
    )
    distributed: bool = setting(
        False,
        "data parallel over several processes or hosts (JAX backend; see --coordinator)",
    )
    data_service: str | None = setting(
        None,
        "decode and augment training data on a tf.data service (its dispatcher)",
        metavar="grpc://HOST:PORT",
    )
    tensorboard: bool = setting(True, "write TensorBoard logs to RUN_DIR/logs")
    verbose: int = setting(
        2, "Keras' progress output: 0, 1 (bar) or 2 (a line per epoch)", choices=(0, 1, 2)
    )
    print_table: bool = setting(False, "print the per-class table after every epoch")

    def validate(self, given=()) -> None:
        """Check every value; raise InputError naming the setting.

        ``given``: the names of settings given explicitly (command-line flags). A setting
        that only another schedule reads (``plateau_factor`` with ``schedule: cosine``) is
        refused when it is given or differs from its default (a YAML file's, or one set in
        Python), so a resolved ``config.yaml`` that lists every default still passes.
        """

        self.model = canonical_model_name(self.model)  # GapNet -> gapnet; typos: did you mean
        choices = {"model": MODELS}
        for field in dataclasses.fields(self):
            if field.metadata.get("choices"):
                choices[field.name] = field.metadata["choices"]
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise InputError(
                    f"{key}: {getattr(self, key)!r} is not one of {', '.join(map(str, allowed))}"
                )
        if not self.data:
            raise InputError("data: give the make-tfrecords folder to train on (--data)")
        positive = [
            "epochs",
            "batch_size",
            "lr",
            "frozen_lr",
            "sgdr_epochs",
            "shuffle_buffer",
            "min_lr",
            "sgdr_t_mul",
        ]
        for key in positive:
            if not getattr(self, key) > 0:
                raise InputError(f"{key}: must be positive, got {getattr(self, key)}")
        at_least_zero = (
            "frozen_epochs",
            "early_stopping_patience",
            "plateau_patience",
            "fold",
            "rotation",
            "zoom",
            "brightness",
            "contrast",
            "focal_gamma",
        )
        for key in at_least_zero:
            if getattr(self, key) < 0:
                raise InputError(f"{key}: must be 0 or more, got {getattr(self, key)}")
        if not 0 < self.plateau_factor < 1:
            raise InputError(f"plateau_factor: must be in (0, 1), got {self.plateau_factor}")
        if not self.contrast < 1:
            raise InputError(f"contrast: must be below 1, got {self.contrast}")
        if not 0 < self.ema_momentum < 1:
            raise InputError(f"ema_momentum: must be in (0, 1), got {self.ema_momentum}")
        if self.swa_epochs < 0 or self.swa_epochs > self.epochs:
            raise InputError(f"swa_epochs: must be between 0 and epochs ({self.epochs})")
        if self.swa_epochs and self.ema:
            raise InputError("swa_epochs and ema are two ways to average weights: choose one")
        if self.lovasz_weight < 0:
            raise InputError(f"lovasz_weight: must be 0 or more, got {self.lovasz_weight}")
        if self.focal_alpha is not None and not 0 < self.focal_alpha < 1:
            raise InputError(f"focal_alpha: must be in (0, 1), got {self.focal_alpha}")
        if self.backbone_lr_factor < 0:
            raise InputError(
                f"backbone_lr_factor: must be 0 or more, got {self.backbone_lr_factor}"
            )
        if self.image_size is not None and self.image_size < 16:
            raise InputError(f"image_size: must be at least 16, got {self.image_size}")
        if self.crop is not None and self.crop < 16:
            raise InputError(f"crop: must be at least 16, got {self.crop}")
        if self.crop is not None and self.image_size is not None and self.crop > self.image_size:
            raise InputError(f"crop: {self.crop} is larger than image_size {self.image_size}")
        if self.tiles < 0:
            raise InputError(f"tiles: must be 0 (whole fields) or more, got {self.tiles}")
        if self.tiles and self.crop is None:
            raise InputError("tiles: tiles are crop-sized; give --crop as well")

        if self.crop is not None and self.model in FIXED_SIZE_MODELS and not self.tiles:
            raise InputError(
                f"tiles: {self.model} takes one input size, so a model trained on crops must "
                "also see crops: give --tiles N (1: the centre crop)"
            )
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise InputError(f"steps_per_epoch: must be at least 1, got {self.steps_per_epoch}")
        if self.frozen_epochs and self.model not in BACKBONE_MODELS:
            raise InputError(
                f"frozen_epochs: model {self.model} has no pretrained backbone to freeze "
                f"(models with one: {', '.join(BACKBONE_MODELS)})"
            )
        if self.cell_pooling != "none":
            if self.bag_size < 1 or self.bags_per_batch < 1 or self.lse_sharpness <= 0:
                raise InputError("bag_size, bags_per_batch and lse_sharpness must be positive")
            unsupported = [
                name
                for name, value in (
                    ("crop", self.crop), ("tiles", self.tiles), ("swa_epochs", self.swa_epochs),
                    ("cache", self.cache), ("tta", self.tta != 1),
                )
                if value
            ]  # fmt: skip
            if unsupported:
                raise InputError(
                    f"cell_pooling {self.cell_pooling}: not with {', '.join(unsupported)} (a "
                    "bag's cells are whole crops, seen once each)"
                )
        if self.distributed:
            unsupported = [
                name
                for name, value in (
                    ("cell_pooling", self.cell_pooling != "none"),
                    ("swa_epochs", self.swa_epochs),
                    ("strategy mirrored", self.strategy == "mirrored"),
                )
                if value
            ]
            if unsupported:
                raise InputError(
                    f"distributed: not with {', '.join(unsupported)} (a multi-process run "
                    "trains on field or cell records, every device of every process)"
                )
        if not isinstance(self.model_options, dict):
            raise InputError(f"model_options: must be a mapping, got {self.model_options!r}")
        self._check_schedule_settings(given)

    def _check_schedule_settings(self, given) -> None:
        defaults = {field.name: field.default for field in dataclasses.fields(self)}
        for name, schedule in SCHEDULE_SETTINGS.items():
            chosen = name in given or getattr(self, name) != defaults[name]
            if chosen and self.schedule != schedule:
                reason = ""
                if schedule == "plateau":
                    reason = ": ReduceLROnPlateau cannot change the rate of a schedule"
                raise InputError(
                    f"{name}: applies to --schedule {schedule} only, not to {self.schedule}"
                    + reason
                )

    @property
    def run_dir(self) -> Path:
        return Path(self.out or f"runs/{self.model}-fold{self.fold}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def resolve_config(overrides: dict | None = None, config_file=None) -> TrainingConfig:
    """Defaults, then the YAML file's values, then ``overrides`` (CLI flags that were given).

    ``config_file`` is a YAML file or a shipped recipe, ``recipes/NAME``
    (:mod:`hpa_keras.training.recipes`).

    Keys that are not settings are errors naming the file and key, so a typo
    in a YAML file is not silently ignored; values of the file and of
    ``overrides`` are brought to their fields' types (``lr: 1e-3``, ``"0.001"``,
    ``tensorboard: "yes"``) or refused naming the file, the key and the expected
    type (:func:`hpa_keras.settings.coerce_settings`).
    """
    file_values = {}
    if config_file is not None:
        from hpa_keras.training.recipes import resolve_config_file  # lazy: imports TensorFlow

        source, text = resolve_config_file(config_file)
        file_values = settings_mapping(read_yaml(text, source), source)
        file_values = coerce_settings(TrainingConfig, file_values, source)
    given = {key: value for key, value in (overrides or {}).items() if value is not None}
    given = coerce_settings(TrainingConfig, given, "settings")
    config = TrainingConfig(**{**file_values, **given})
    try:
        config.validate(given=set(given))
    except InputError as error:  # a value out of range that the file gave: name the file
        key = str(error).split(":", 1)[0]
        if key in file_values and key not in given:
            raise InputError(f"{source}: {error}") from None
        raise
    if config_file is not None and "image_size" not in given:
        check_file_image_size(source, config)
    return config


def check_file_image_size(source: str, config: TrainingConfig) -> None:
    """InputError when a config file's ``image_size`` is larger than the records' stored
    size: a recipe written for 512 px records would silently upsample 128 px ones (16x the
    compute, no new detail). An explicit ``image_size`` (``--image-size``) is obeyed. Records
    that cannot be read are left to ``fit``, which names the problem."""
    if config.image_size is None or not config.data:
        return

    try:
        stored = read_manifest(config.data)["image_size"]
    except InputError:
        return
    if config.image_size > stored:
        raise InputError(
            f"{source}: image_size {config.image_size} is larger than the records of "
            f"{config.data} ({stored} px): training would upsample every field "
            f"({(config.image_size / stored) ** 2:.3g}x the compute, no new detail); give "
            f"--image-size {stored} to train at the stored size, or --image-size "
            f"{config.image_size} to upsample anyway"
        )
