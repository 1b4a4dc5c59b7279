"""``TrainingConfig``: every setting of a training run, in groups that check themselves.

One dataclass per group (:class:`DataSettings`, :class:`ModelSettings`, ...,
:class:`CellSettings`), each with its fields and a ``validate_<group>`` method;
``TrainingConfig`` inherits them all, so its fields stay flat (``config.lr``).

The same names are the keys of a run's ``config.yaml``, of a YAML file given
to ``--config``, and (with dashes) the flags of ``hpa-keras fit``, which are
generated from the fields below: each field carries its help line and
choices (:func:`hpa_keras.settings.setting`). Values resolve as flags over
the YAML file over these defaults (:func:`resolve_config`), and every value
is checked before anything is written (:meth:`TrainingConfig.validate`).
"""

import dataclasses
import typing
from pathlib import Path

from hpa_keras.classes import CHANNEL_MODES, resolve_channels
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
from hpa_keras.training.initial_weights import initial_run_settings

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


class _SettingsGroup:
    """The checks the groups share; each names the setting it refuses."""

    def _check_choices(self, group) -> None:
        for field in dataclasses.fields(group):
            allowed = field.metadata.get("choices")
            if allowed and getattr(self, field.name) not in allowed:
                raise InputError(
                    f"{field.name}: {getattr(self, field.name)!r} is not one of "
                    f"{', '.join(map(str, allowed))}"
                )

    def _check_positive(self, *names) -> None:
        for key in names:
            if not getattr(self, key) > 0:
                raise InputError(f"{key}: must be positive, got {getattr(self, key)}")

    def _check_at_least_zero(self, *names) -> None:
        for key in names:
            if getattr(self, key) < 0:
                raise InputError(f"{key}: must be 0 or more, got {getattr(self, key)}")

    def _check_fraction(self, key) -> None:
        """``key`` strictly between 0 and 1."""
        if not 0 < getattr(self, key) < 1:
            raise InputError(f"{key}: must be in (0, 1), got {getattr(self, key)}")


@dataclasses.dataclass
class DataSettings(_SettingsGroup):
    """The records, the validation fold and what the model sees of a field.

    ``data`` (make-tfrecords folder), ``fold`` (validation fold), ``image_size``
    (``None``: as stored), ``crop`` and ``tiles`` (training crops and how the rest sees
    them), ``tta``, ``validate_source``, ``channels``, ``batch_size``, ``cache`` (keep
    decoded images in memory), ``shuffle_buffer``.
    """

    TITLE: typing.ClassVar[str] = "Data"

    data: str | None = setting(None, "make-tfrecords folder to train on", metavar="DIR")
    fold: int = setting(0, "validation fold; training uses the others", metavar="K")
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
    channels: str = setting(
        "rgby", "rgby, rgb, g, SubCell's rybg, rbg, ybg, bg, or a comma-separated list of stains"
    )
    batch_size: int = setting(32, "global batch size (split across replicas)")
    cache: bool = setting(False, "keep decoded images in memory after the first epoch")
    shuffle_buffer: int = setting(
        1024, "records in the shuffle buffer (a raw 512 px record is 1 MiB)"
    )

    def validate_data(self) -> None:
        """InputError naming the first data setting that is missing or out of range."""
        self._check_choices(DataSettings)
        if not self.data:
            raise InputError("data: give the make-tfrecords folder to train on (--data)")
        self._check_positive("batch_size", "shuffle_buffer")
        self._check_at_least_zero("fold")
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


@dataclasses.dataclass
class ModelSettings(_SettingsGroup):
    """Which network, its starting weights and its builder's options.

    ``model`` (registry name), ``weights`` (``None``, ``"imagenet"`` or a file),
    ``model_options`` (builder keyword arguments, such as ``{"width": 16}``).
    """

    TITLE: typing.ClassVar[str] = "Model"

    model: str = setting("gapnet", "model name (see `hpa-keras models`)", metavar="NAME")
    weights: str | None = setting(None, "imagenet or a weights file", metavar="WEIGHTS")
    model_options: dict = setting(help="builder options", default_factory=dict, flag=False)
    init_from: str | None = setting(
        None,
        "a run folder (fit's, or import-model's) whose model weights training starts from",
        metavar="RUN",
    )

    def validate_model(self) -> None:
        """Bring ``model`` to its registry name (``GapNet`` -> ``gapnet``; a typo: did you
        mean); InputError for an unknown model or options that are not a mapping, or an
        ``init_from`` run of another model (its ``model_options`` are taken when none are
        given)."""
        self.model = canonical_model_name(self.model)
        if self.model not in MODELS:
            raise InputError(f"model: {self.model!r} is not one of {', '.join(map(str, MODELS))}")
        if not isinstance(self.model_options, dict):
            raise InputError(f"model_options: must be a mapping, got {self.model_options!r}")
        if self.init_from is not None:
            if self.weights is not None:
                raise InputError("init_from and weights are two starting points: choose one")
            started = initial_run_settings(self.init_from)
            if started["model"] != self.model:
                raise InputError(
                    f"init_from: {self.init_from} is a {started['model']} run; train it with "
                    f"--model {started['model']} (its builder options are taken from the run)"
                )
            if not self.model_options:
                self.model_options = dict(started["model_options"])
            if resolve_channels(self.channels) != started["channels"]:
                # the first convolution's kernel fits any order of as many stains: refused,
                # not silently loaded with the stains swapped
                named = next(
                    (mode for mode, names in CHANNEL_MODES.items() if names == started["channels"]),
                    ",".join(started["channels"]),
                )
                raise InputError(
                    f"init_from: {self.init_from} reads {', '.join(started['channels'])}; "
                    f"train it with --channels {named}"
                )


@dataclasses.dataclass
class AugmentationSettings(_SettingsGroup):
    """Random changes to each training field (brightness in standard
    deviations)."""

    TITLE: typing.ClassVar[str] = "Augmentation"

    dihedral: bool = setting(True, "random flips and 90-degree rotations")
    rotation: float = setting(0.0, "largest extra rotation, as a fraction of a full turn")
    zoom: float = setting(0.0, "largest random zoom-in, as a fraction of the side")
    brightness: float = setting(0.1, "largest per-channel shift, in standard deviations")
    contrast: float = setting(0.1, "largest per-channel relative gain change")

    def validate_augmentation(self) -> None:
        """InputError naming the first augmentation strength out of range."""
        self._check_at_least_zero("rotation", "zoom", "brightness", "contrast")
        if not self.contrast < 1:
            raise InputError(f"contrast: must be below 1, got {self.contrast}")


@dataclasses.dataclass
class LossSettings(_SettingsGroup):
    """The training loss and its class weighting.

    ``focal_alpha`` ``None`` means no class balancing: Keras' own default of 0.25 would
    weight the positives, the rare side here, below the negatives.
    """

    TITLE: typing.ClassVar[str] = "Loss"

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

    def validate_loss(self) -> None:
        """InputError naming the first loss setting out of range."""
        self._check_choices(LossSettings)
        self._check_at_least_zero("focal_gamma", "lovasz_weight")
        if self.focal_alpha is not None:
            self._check_fraction("focal_alpha")


@dataclasses.dataclass
class OptimizationSettings(_SettingsGroup):
    """The optimizer, its learning rates (a frozen first stage, a slower backbone) and
    averaged weights (an exponential moving average, or stochastic weight averaging)."""

    TITLE: typing.ClassVar[str] = "Optimization"

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

    def validate_optimization(self) -> None:
        """InputError naming the first optimization setting out of range, or ``ema`` and
        ``swa_epochs`` together."""
        self._check_choices(OptimizationSettings)
        self._check_positive("lr", "frozen_lr")
        self._check_at_least_zero("frozen_epochs")
        self._check_fraction("ema_momentum")
        if self.swa_epochs and self.ema:
            raise InputError("swa_epochs and ema are two ways to average weights: choose one")
        self._check_at_least_zero("backbone_lr_factor")


@dataclasses.dataclass
class ScheduleSettings(_SettingsGroup):
    """How long a run trains and how its learning rate moves.

    ``epochs``, ``steps_per_epoch``, ``early_stopping_patience``, ``schedule`` and the
    settings only one schedule reads (``plateau_factor``, ``plateau_patience``,
    ``sgdr_epochs``, ``sgdr_t_mul``; :data:`SCHEDULE_SETTINGS`), ``min_lr``.
    """

    TITLE: typing.ClassVar[str] = "Schedule"

    epochs: int = setting(10, "training epochs (after the frozen stage, if any)")
    steps_per_epoch: int | None = setting(
        None, "training batches per epoch", default_text="one pass over the training folds"
    )
    early_stopping_patience: int = setting(
        0, "stop after N epochs without a better tuned macro F1 (0: off)"
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

    def validate_schedule(self, given=()) -> None:
        """InputError naming the first schedule setting out of range, or a setting that only
        another schedule reads (see :meth:`TrainingConfig.validate` for ``given``)."""
        self._check_choices(ScheduleSettings)
        self._check_positive("epochs", "sgdr_epochs", "min_lr", "sgdr_t_mul")
        self._check_at_least_zero("early_stopping_patience", "plateau_patience")
        self._check_fraction("plateau_factor")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise InputError(f"steps_per_epoch: must be at least 1, got {self.steps_per_epoch}")
        defaults = {field.name: field.default for field in dataclasses.fields(ScheduleSettings)}
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


@dataclasses.dataclass
class ThresholdSettings(_SettingsGroup):
    """How the per-class thresholds are chosen on the validation fold."""

    TITLE: typing.ClassVar[str] = "Thresholds"

    threshold_strategy: str = setting(
        "per_class", "how thresholds are chosen on validation", choices=THRESHOLD_STRATEGIES
    )

    def validate_thresholds(self) -> None:
        """InputError for an unknown threshold strategy."""
        self._check_choices(ThresholdSettings)


@dataclasses.dataclass
class RuntimeSettings(_SettingsGroup):
    """Where the run is written, its seed, and where and how it computes and reports.

    The settings of :data:`DISPLAY_SETTINGS` may differ when a run resumes.
    """

    TITLE: typing.ClassVar[str] = "Runtime"

    out: str | None = setting(
        None, "run folder", default_text="runs/MODEL-foldK", metavar="RUN_DIR"
    )
    seed: int = setting(0, "seed of weights, shuffles and augmentation")
    deterministic: bool = setting(
        False,
        "the same seed repeats the run exactly: TensorFlow's op determinism and an input "
        "pipeline in a fixed order (slower data)",
    )
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

    def validate_runtime(self) -> None:
        """InputError for an unknown strategy or verbosity."""
        self._check_choices(RuntimeSettings)


@dataclasses.dataclass
class CellSettings(_SettingsGroup):
    """How cell records train, each cell on its own or a field's cells as a bag."""

    TITLE: typing.ClassVar[str] = "Cells"

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

    def validate_cells(self) -> None:
        """InputError for an unknown pooling, or a bag setting that is not positive when
        cells are pooled."""
        self._check_choices(CellSettings)
        pooled = self.cell_pooling != "none"
        if pooled and (self.bag_size < 1 or self.bags_per_batch < 1 or self.lse_sharpness <= 0):
            raise InputError("bag_size, bags_per_batch and lse_sharpness must be positive")


# The groups in the order of the settings table and of `--help`. A dataclass collects the
# fields of its bases from the last base to the first, so TrainingConfig names them reversed.
SETTING_GROUPS = (
    DataSettings,
    ModelSettings,
    AugmentationSettings,
    LossSettings,
    OptimizationSettings,
    ScheduleSettings,
    ThresholdSettings,
    RuntimeSettings,
    CellSettings,
)


@dataclasses.dataclass
class TrainingConfig(
    CellSettings,
    RuntimeSettings,
    ThresholdSettings,
    ScheduleSettings,
    OptimizationSettings,
    LossSettings,
    AugmentationSettings,
    ModelSettings,
    DataSettings,
):
    """Every setting of a training run; ``config.yaml`` holds these keys.

    The settings come in groups, one dataclass each with its own check:
    :class:`DataSettings`, :class:`ModelSettings`, :class:`AugmentationSettings`,
    :class:`LossSettings`, :class:`OptimizationSettings`, :class:`ScheduleSettings`,
    :class:`ThresholdSettings`, :class:`RuntimeSettings` and :class:`CellSettings`.
    ``TrainingConfig`` inherits them all, so its fields stay flat: ``config.lr``, the flag
    ``--lr`` and the key ``lr:`` in a YAML file. :meth:`validate` runs each group's check,
    then the rules that join settings of different groups.
    """

    GROUPS: typing.ClassVar[tuple] = SETTING_GROUPS

    def validate(self, given=()) -> None:
        """Check every value; raise InputError naming the setting.

        ``given``: the names of settings given explicitly (command-line flags). A setting
        that only another schedule reads (``plateau_factor`` with ``schedule: cosine``) is
        refused when it is given or differs from its default (a YAML file's, or one set in
        Python), so a resolved ``config.yaml`` that lists every default still passes.
        """
        self.validate_model()  # first: the rules below read the model's registry name
        self._check_choices(TrainingConfig)  # every vocabulary before any range, as ever
        self.validate_data()
        self.validate_augmentation()
        self.validate_loss()
        self.validate_optimization()
        self.validate_schedule(given)
        self.validate_thresholds()
        self.validate_runtime()
        self.validate_cells()
        self._check_across_groups()

    def _check_across_groups(self) -> None:
        """The rules that join settings of two or more groups."""
        if self.swa_epochs < 0 or self.swa_epochs > self.epochs:
            raise InputError(f"swa_epochs: must be between 0 and epochs ({self.epochs})")
        if self.crop is not None and self.model in FIXED_SIZE_MODELS and not self.tiles:
            raise InputError(
                f"tiles: {self.model} takes one input size, so a model trained on crops must "
                "also see crops: give --tiles N (1: the centre crop)"
            )
        if self.frozen_epochs and self.model not in BACKBONE_MODELS:
            raise InputError(
                f"frozen_epochs: model {self.model} has no pretrained backbone to freeze "
                f"(models with one: {', '.join(BACKBONE_MODELS)})"
            )
        self._refuse_together(
            f"cell_pooling {self.cell_pooling}",
            self.cell_pooling != "none",
            (
                ("crop", self.crop), ("tiles", self.tiles), ("swa_epochs", self.swa_epochs),
                ("cache", self.cache), ("tta", self.tta != 1),
            ),
            "a bag's cells are whole crops, seen once each",
        )  # fmt: skip
        self._refuse_together(
            "deterministic",
            self.deterministic,
            (("data_service", self.data_service),),
            "a tf.data service's workers hand out batches in the order they finish them",
        )
        self._refuse_together(
            "distributed",
            self.distributed,
            (
                ("cell_pooling", self.cell_pooling != "none"),
                ("swa_epochs", self.swa_epochs),
                ("strategy mirrored", self.strategy == "mirrored"),
            ),
            "a multi-process run trains on field or cell records, every device of every process",
        )

    @staticmethod
    def _refuse_together(name, chosen, others, reason) -> None:
        """InputError when ``chosen`` and any of ``others`` (name, value) is set."""
        unsupported = [other for other, value in others if value] if chosen else []
        if unsupported:
            raise InputError(f"{name}: not with {', '.join(unsupported)} ({reason})")

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
        stored = read_manifest(config.data).image_size
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
