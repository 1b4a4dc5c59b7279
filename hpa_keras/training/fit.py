"""``fit(config)``: the one place that joins data, model, loss and callbacks.

A run trains one model on the folds of a make-tfrecords folder other than
``config.fold`` and validates on that fold. It leaves a run folder::

    RUN_DIR/
      config.yaml          the resolved settings (CLI flags over YAML over defaults)
      input.json           how the model reads images: size, crop, tiles, bit depth, classes
      model.keras          the best epoch's model (uint8 images in, probabilities out)
      thresholds.json      the best epoch's per-class thresholds and F1
      history.csv          one row per epoch (losses, macro F1, learning rate)
      learning_curves.png  the history as a picture
      logs/                TensorBoard logs
      best-epochNNN.weights.h5  the best epoch's weights, named in thresholds.json
      backup/              while running: the state a restarted run resumes from

The saved model (:func:`hpa_keras.models.build_task_model`, which a notebook
calls with the same settings) contains the per-channel standardization
(statistics of the training folds only) and the augmentation layers (inactive
at inference), so it takes the uint8 images of ``load_dataset(..., normalization="none")``
directly and predicts the same way wherever it is loaded.

Started again with the same command after being killed, a run resumes after
its last finished epoch (``keras.callbacks.BackupAndRestore``); a finished
run folder is never overwritten.
"""

import contextlib
import dataclasses
import importlib.util
import shutil
import tempfile
import time
import warnings
from pathlib import Path

from hpa_keras import storage
from hpa_keras.atomic import atomic_path, write_text_atomic
from hpa_keras.classes import CHANNELS, HPA2021, resolve_channels
from hpa_keras.data.tfrecords import read_manifest
from hpa_keras.distributed import Placement, backend, barrier, make_placement, process_index
from hpa_keras.errors import InputError, warn
from hpa_keras.models import freeze_backbone, unfreeze
from hpa_keras.reports.figures import save_figure
from hpa_keras.reports.tables import fallback_lines, threshold_table
from hpa_keras.reports.training import learning_curve_figure, read_history
from hpa_keras.runs.documents import (
    InputSettings,
    read_thresholds_document,
    write_input_settings,
    write_run_config,
)
from hpa_keras.runs.files import (
    BACKUP_FOLDER,
    CONFIG_FILE,
    CURVES_FILE,
    HISTORY_FILE,
    LOGS_FOLDER,
    LR_FINDER_FILE,
    MODEL_FILE,
    STAGE_ONE_WEIGHTS,
    SWA_STATE_FILE,
    THRESHOLDS_FILE,
)
from hpa_keras.runs.folders import claim_run_folder
from hpa_keras.scoring.metrics import macro_f1_metric
from hpa_keras.tensorflow_setup import import_tensorflow_quietly
from hpa_keras.training.config import DISPLAY_SETTINGS, TrainingConfig, resolve_config
from hpa_keras.training.initial_weights import load_initial_weights
from hpa_keras.training.progress import stopped_short

__all__ = ["TrainingConfig", "find_learning_rate_for", "fit", "resolve_config"]


# ------------------------------------------------------------------ building


def check_validation_source(manifest: dict, config: TrainingConfig) -> None:
    """The source to validate on exists and has records in the validation fold."""
    if config.validate_source is None:
        return
    names = manifest.source_names
    if config.validate_source not in names:
        raise InputError(
            f"validate_source: {config.validate_source!r} is not a source of {config.data} "
            f"(sources: {', '.join(names)})"
        )
    fold = manifest.fold_entry(config.fold)
    if not fold["sources"].get(config.validate_source, {}).get("num_records"):
        raise InputError(
            f"validate_source: fold {config.fold} has no {config.validate_source} records"
        )


def opening_line(config: TrainingConfig, manifest: dict, config_file=None) -> str:
    """What a run trains, in one line: model, size, training and validation images, settings."""
    what = "cells" if manifest.is_cells else "images"
    folds = manifest.training_folds(config.fold)
    _, train_count = manifest.class_counts_of(folds)
    fold = manifest.fold_entry(config.fold)
    where = f"fold {config.fold}"
    validation_count = fold["num_records"]
    if config.validate_source is not None:
        validation_count = fold["sources"][config.validate_source]["num_records"]
        where += f", {config.validate_source} only"
    size, stored = field_size(config, manifest), manifest.image_size
    seen = f"{size} px" + (f" (stored at {stored})" if size != stored else "")
    if config.crop is not None:
        seen += f", {config.crop} px crops"
    return (
        f"fit: {config.model} at {seen}; {train_count} training {what} "
        f"(fold{'s' if len(folds) > 1 else ''} {', '.join(map(str, folds))}), "
        f"{validation_count} validation {what} ({where}); "
        + (f"settings from {config_file}" if config_file else "default settings")
        + (f"; deterministic (seed {config.seed}; slower data)" if config.deterministic else "")
        + f"; into {config.run_dir}"
    )


def field_size(config: TrainingConfig, manifest: dict) -> int:
    """The side of the fields the model sees whole (the stored size unless resized)."""
    return config.image_size or manifest.image_size


def input_settings(config: TrainingConfig, manifest: dict) -> InputSettings:
    """What a run needs to read new images as it was trained (written as ``input.json``)."""
    training = manifest.training_folds(config.fold)
    mean, std = manifest.channel_statistics(exclude_folds=[config.fold])
    counted = any(fold.get("pixels") for fold in manifest.folds if fold["fold"] in training)
    return InputSettings(
        data_fingerprint=manifest.fingerprint(),
        kind=manifest.kind,
        cell_pooling=config.cell_pooling,
        fold=config.fold,
        image_size=field_size(config, manifest),
        stored_size=manifest.image_size,
        crop=config.crop,
        tiles=config.tiles,
        tta=config.tta,
        channels=tuple(resolve_channels(config.channels)),
        bit_depth=manifest.bit_depth,
        sixteen_bit_rule=manifest.sixteen_bit_rule,
        scheme=manifest.scheme,
        class_names=tuple(manifest.class_names),
        sources=tuple(manifest.source_names),
        validate_source=config.validate_source,
        labels_per_image=manifest.labels_per_image(training),
        pixel_mean=dict(zip(CHANNELS, mean, strict=True)) if counted else None,
        pixel_std=dict(zip(CHANNELS, std, strict=True)) if counted else None,
        cell_margin=(manifest.cells or {}).get("margin"),
        cell_context=(manifest.cells or {}).get("context"),
    )


def make_loss(config: TrainingConfig, class_counts, num_samples: int):
    """The configured loss, its weights computed from the training folds' counts."""
    import keras  # lazy: imports TensorFlow

    # lazy: imports TensorFlow
    from hpa_keras.training.losses import (
        CapsuleMarginLoss,
        FocalLovaszLoss,
        LovaszHingeLoss,
        SoftF1Loss,
        WeightedBinaryCrossentropy,
        inverse_log_class_weights,
        positive_weights,
    )

    class_weights = inverse_log_class_weights(class_counts) if config.class_weight else None
    if config.loss == "bce":
        return WeightedBinaryCrossentropy(class_weights=class_weights, name="bce")
    if config.loss == "weighted_bce":
        return WeightedBinaryCrossentropy(
            pos_weights=positive_weights(class_counts, num_samples, config.pos_weight),
            class_weights=class_weights,
        )
    if config.loss == "focal":
        # Class balancing only when asked for: Keras' alpha weights the positive term, and its
        # default 0.25 would weight the rare positives of HPA classes below the negatives.
        balanced = config.focal_alpha is not None
        return keras.losses.BinaryFocalCrossentropy(
            apply_class_balancing=balanced,
            alpha=config.focal_alpha if balanced else 0.25,
            gamma=config.focal_gamma,
        )
    if config.loss == "lovasz":
        return LovaszHingeLoss()
    if config.loss == "focal_lovasz":
        return FocalLovaszLoss(config.focal_gamma, config.focal_alpha, config.lovasz_weight)
    if config.loss == "soft_f1":
        return SoftF1Loss()
    return CapsuleMarginLoss()


def mixed_precision_policy() -> str:
    """``mixed_float16`` where a GPU is visible, ``mixed_bfloat16`` on CPU or TPU."""

    if backend() == "jax":
        import jax  # lazy: an optional dependency

        return "mixed_float16" if jax.default_backend() == "gpu" else "mixed_bfloat16"
    if backend() == "torch":
        import torch  # lazy: an optional dependency

        return "mixed_float16" if torch.cuda.is_available() else "mixed_bfloat16"
    import tensorflow as tf  # lazy: imports TensorFlow

    return "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"


# ------------------------------------------------------------------ running


class _Run:
    """The state of one ``fit``: paths, data, model and the callbacks of each stage."""

    def __init__(self, config: TrainingConfig, manifest: dict, resuming: bool, placement=None):
        from hpa_keras.data.pipeline import load_dataset  # lazy: imports TensorFlow

        placement = placement or Placement(backend())
        self.placement = placement
        self.config = config
        self.manifest = manifest
        self.resuming = resuming
        self.folder = config.run_dir
        self.train_folds = manifest.training_folds(config.fold)
        self.class_counts, self.num_train = manifest.class_counts_of(self.train_folds)
        self.steps_per_epoch = config.steps_per_epoch or max(1, self.num_train // config.batch_size)
        common = {
            # Each process feeds its share of the global batch; Keras joins them.
            "batch_size": config.batch_size // placement.process_count,
            "process_count": placement.process_count,
            "process_index": placement.process_index,
            "image_size": config.image_size,
            "channels": config.channels,
            "normalization": "none",
            "cache": config.cache,
        }
        if config.cell_pooling != "none":
            self._load_bags(config)
        else:
            self.train_data = load_dataset(
                config.data,
                folds=self.train_folds,
                training=True,
                shuffle_buffer=config.shuffle_buffer,
                seed=config.seed,
                crop=config.crop,
                data_service=config.data_service,
                deterministic=config.deterministic,
                **common,
            )
            self.validation_data = load_dataset(
                config.data,
                folds=[config.fold],
                training=False,
                sources=config.validate_source,
                **common,
            )
        self.averaging = None
        if config.swa_epochs:
            # lazy: imports TensorFlow
            from hpa_keras.training.callbacks import StochasticWeightAveraging

            state = self.folder / SWA_STATE_FILE
            if not resuming:
                state.unlink(missing_ok=True)
            start = config.frozen_epochs + config.epochs - config.swa_epochs
            self.averaging = StochasticWeightAveraging(start, state)

    def _load_bags(self, config: TrainingConfig) -> None:
        """Multiple-instance data: bags of a field's cells, for training and validation."""
        # lazy: imports TensorFlow
        from hpa_keras.data.bags import count_bags, load_cell_bags
        from hpa_keras.data.pipeline import select_shards

        if config.image_size not in (None, self.manifest.image_size):
            raise InputError("cell_pooling: cells are read at their stored size; drop image_size")
        common = {
            "bags_per_batch": config.bags_per_batch,
            "bag_size": config.bag_size,
            "channels": config.channels,
            "seed": config.seed,
        }
        self.train_data = load_cell_bags(
            config.data, folds=self.train_folds, training=True, **common
        )
        self.validation_data = load_cell_bags(
            config.data, folds=[config.fold], training=False, sources=config.validate_source,
            **common,
        )  # fmt: skip
        if not config.steps_per_epoch:
            shards = select_shards(self.manifest, self.train_folds)
            bags = count_bags(shards, config.bag_size)
            self.steps_per_epoch = max(1, bags // config.bags_per_batch)

    def compile(self, model, core, learning_rate, epochs=None, schedule=None):
        """Compile for a stage of ``epochs`` epochs (the length of a ``cosine`` decay).

        ``schedule`` overrides the configured one: the learning-rate range
        test needs ``"constant"``, a rate it can set batch by batch.
        """
        import keras  # lazy: imports TensorFlow

        # lazy: imports TensorFlow
        from hpa_keras.training.optimizers import backbone_multipliers, make_optimizer

        config = self.config
        schedule = schedule or config.schedule
        if schedule == "cosine":
            learning_rate = keras.optimizers.schedules.CosineDecay(
                initial_learning_rate=learning_rate,
                decay_steps=(epochs or config.epochs) * self.steps_per_epoch,
                alpha=min(config.min_lr / learning_rate, 1.0),
            )
        elif schedule == "sgdr":
            learning_rate = keras.optimizers.schedules.CosineDecayRestarts(
                initial_learning_rate=learning_rate,
                first_decay_steps=config.sgdr_epochs * self.steps_per_epoch,
                t_mul=config.sgdr_t_mul,
                alpha=min(config.min_lr / learning_rate, 1.0),
            )
        multipliers = (
            backbone_multipliers(core, config.backbone_lr_factor)
            if config.backbone_lr_factor != 1.0
            else None
        )
        averaging = {"use_ema": True, "ema_momentum": config.ema_momentum} if config.ema else {}
        model.compile(
            optimizer=make_optimizer(config.optimizer, learning_rate, multipliers, **averaging),
            loss=make_loss(config, self.class_counts, self.num_train),
            metrics=[macro_f1_metric()],
        )

    def callbacks(self, stage: int, search):
        import keras  # lazy: imports TensorFlow

        from hpa_keras.training.callbacks import LearningRateLogger  # lazy: imports TensorFlow

        config, folder = self.config, self.folder
        # ThresholdSearch saves the best epoch's weights itself, with its thresholds: a
        # separate ModelCheckpoint could leave thresholds of one epoch beside weights of another.
        callbacks = [search, keras.callbacks.TerminateOnNaN()]
        if config.ema:  # first: the callbacks after it validate and save the EMA weights
            callbacks.insert(0, keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
        if config.swa_epochs and stage == 2:
            callbacks.insert(1, self.averaging)
        if config.schedule == "plateau":
            callbacks.append(
                keras.callbacks.ReduceLROnPlateau(
                    monitor="val_loss",
                    factor=config.plateau_factor,
                    patience=config.plateau_patience,
                    min_lr=config.min_lr,
                    verbose=1 if config.verbose else 0,
                )
            )
        if config.early_stopping_patience:
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor="val_macro_f1_tuned",
                    mode="max",
                    patience=config.early_stopping_patience,
                )
            )
        callbacks.append(LearningRateLogger())
        callbacks.append(keras.callbacks.CSVLogger(str(folder / HISTORY_FILE), append=True))
        if config.tensorboard:
            callbacks.append(
                keras.callbacks.TensorBoard(
                    log_dir=str(folder / LOGS_FOLDER), write_graph=False, profile_batch=0
                )
            )
        # Last, so an epoch counts as done only after everything above recorded it.
        callbacks.append(
            keras.callbacks.BackupAndRestore(
                str(folder / BACKUP_FOLDER / f"stage{stage}"), double_checkpoint=True
            )
        )
        return callbacks


def fit(config: TrainingConfig, callbacks=(), config_file=None) -> dict:
    """Train as configured; returns a summary of the best epoch.

    Args:
        config: the settings (see :func:`resolve_config`).
        callbacks: extra Keras callbacks, called after the built-in ones in
            every stage (so they see ``val_macro_f1_tuned`` and friends).
        config_file: the ``--config`` file or recipe the settings came from,
            named in the opening line.

    Raises InputError for bad settings or data, before anything is written.
    """

    import_tensorflow_quietly()
    if config.out is not None and storage.is_url(config.out):

        def train(local, extra):
            return fit(dataclasses.replace(config, out=str(local)), extra, config_file)

        summary = train_at_url(config.out, callbacks, train)
        summary["run"] = config.out
        return summary
    config.validate()
    manifest = read_manifest(config.data)
    placement = _checked_placement(config, manifest)
    if placement.is_chief:
        _announce(config, manifest, config_file)
    if config.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise InputError(
            "tensorboard: TensorBoard logs need the tensorboard package (pip install "
            "tensorboard), or turn them off with --no-tensorboard"
        )
    folder = config.run_dir
    resuming, made_folder = _ready_run_folder(config, manifest, placement)
    scratch = None if placement.is_chief else _private_copy(folder, placement)
    if scratch is not None:
        config = dataclasses.replace(config, out=str(scratch / "run"), verbose=0, tensorboard=False)
    try:
        with _dtype_policy(config), _op_determinism(config):
            summary = _fit(config, manifest, resuming, list(callbacks), placement)
    except BaseException as error:
        if placement.is_chief:
            _leave_run_folder_whole(folder, made_folder, resuming, error)
        raise
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    if scratch is not None:
        summary["run"] = str(folder)
    return summary


def train_at_url(url, callbacks, train):
    """``train(local_folder, callbacks)`` for an output folder ``url`` (``fit``'s, ``cv``'s):
    it trains in a local copy of the folder (what an interrupted run left there comes down
    first), uploaded after every epoch and at the end. Returns what ``train`` returns."""
    from hpa_keras.training.callbacks import UploadEachEpoch  # lazy: imports TensorFlow

    chief = process_index() == 0  # the others keep their copy to themselves

    def work(staged):
        extra = [UploadEachEpoch(staged), *callbacks] if chief else list(callbacks)
        return train(staged.local, extra)

    return storage.work_at_url(url, work, upload=chief)


def _checked_placement(config: TrainingConfig, manifest) -> Placement:
    """Where the run trains, once its settings suit the records and the devices."""
    manifest.training_folds(config.fold)
    check_validation_source(manifest, config)
    if config.crop is not None and config.crop > field_size(config, manifest):
        raise InputError(
            f"crop: {config.crop} is larger than the fields ({field_size(config, manifest)} px)"
        )
    placement = make_placement(config.strategy, config.distributed)
    if config.ema and placement.backend == "jax":
        raise InputError(
            "ema: Keras' SwapEMAWeights loses the weights on the JAX backend when validation "
            "predicts inside the epoch (deleted arrays, Keras 3.15); use swa_epochs, or ema on "
            "TensorFlow"
        )
    check_batch_division(config, placement)
    return placement


def _announce(config: TrainingConfig, manifest, config_file) -> None:
    """The opening line, and a warning for each source that only the validation fold holds."""
    say(config, opening_line(config, manifest, config_file))
    for name, count in manifest.sources_only_in_fold(config.fold):
        warn(
            f"all {count} {name} records are in fold {config.fold}, the validation fold: "
            f"training sees none of that source"
            + (
                f", and validation leaves them out (--validate-source {config.validate_source})"
                if config.validate_source not in (None, name)
                else ""
            )
        )


def _ready_run_folder(config: TrainingConfig, manifest, placement) -> tuple[bool, bool]:
    """``(resuming, made_folder)``: the run folder claimed (a new run, or an interrupted run
    of these settings to resume), then its ``config.yaml`` and ``input.json`` written."""
    folder = config.run_dir
    # Every process checks the folder (so a refusal stops them all) before process 0 writes.
    resuming = claim_run_folder(
        folder, config.to_dict(), manifest.fingerprint(), ignore=(*DISPLAY_SETTINGS, "out")
    )
    barrier("hpa-keras fit: run folder checked")
    made_folder = placement.is_chief and not resuming and not folder.exists()
    if placement.is_chief:
        if not resuming:
            folder.mkdir(parents=True, exist_ok=True)
            write_run_config(folder, config.to_dict())
        write_input_settings(folder, input_settings(config, manifest))
    barrier("hpa-keras fit: run folder ready")
    return resuming, made_folder


def _private_copy(folder: Path, placement) -> Path:
    """A scratch folder holding a copy of the run folder as ``run``: the processes other
    than 0 train there (what BackupAndRestore and ThresholdSearch resume from) and throw it
    away at the end: one process writes the run."""
    if not (folder / CONFIG_FILE).is_file():
        raise InputError(
            f"{folder}: process {placement.process_index} does not see the run folder "
            "process 0 made; give a folder every host shares (a network file system) or "
            "a gs:// URL"
        )
    scratch = Path(tempfile.mkdtemp(prefix=f"hpa-keras-process{placement.process_index}-"))
    shutil.copytree(folder, scratch / "run", ignore=shutil.ignore_patterns(LOGS_FOLDER))
    return scratch


@contextlib.contextmanager
def _dtype_policy(config: TrainingConfig):
    """Keras' dtype policy for the run (mixed precision when asked), restored after it."""
    import keras  # lazy: imports TensorFlow

    previous_policy = keras.config.dtype_policy()
    if config.mixed_precision:
        keras.config.set_dtype_policy(mixed_precision_policy())
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous_policy)


@contextlib.contextmanager
def _op_determinism(config: TrainingConfig):
    """TensorFlow's op determinism for a ``deterministic`` run, as it was again after it.

    On every backend: the input pipeline is tf.data, TensorFlow ops, whichever backend
    trains. Op determinism orders its parallel steps and runs the maps that draw random
    numbers (the crops) serially, so each record gets the same draw in every run; on the
    TensorFlow backend it also makes the model's ops pick deterministic kernels. It is a
    setting of the whole process, so it is put back after the run: a later run in the same
    notebook or test session is not slowed by it.
    """
    if not config.deterministic:
        yield
        return
    import tensorflow as tf  # lazy: imports TensorFlow
    from tensorflow.python.framework import config as tf_config  # lazy: imports TensorFlow

    was_on = tf_config.is_op_determinism_enabled()
    tf.config.experimental.enable_op_determinism()
    try:
        yield
    finally:
        if not was_on:
            tf_config.disable_op_determinism()


def check_batch_division(config: TrainingConfig, placement) -> None:
    """The global batch splits evenly over the processes and the replicas."""
    for count, what in ((placement.process_count, "processes"), (placement.replicas, "devices")):
        if config.batch_size % count:
            raise InputError(
                f"batch_size: {config.batch_size} does not divide over {count} {what}; "
                f"use a multiple of {count}"
            )


def _fit(
    config: TrainingConfig, manifest, resuming: bool, extra_callbacks: list, placement
) -> dict:
    import keras  # lazy: imports TensorFlow

    from hpa_keras.models.task import build_task_model, task_model_settings  # lazy: TensorFlow

    started = time.perf_counter()
    keras.utils.set_random_seed(config.seed)
    run = _Run(config, manifest, resuming, placement)
    with placement.scope():
        cell_model, core = build_task_model(**task_model_settings(config, manifest))
        if config.init_from is not None and not resuming:
            say(config, load_initial_weights(core, config.init_from))
        model = _trained_model(cell_model, config, manifest)
        search = _threshold_search(run, manifest, resuming)
        fit_options = {
            "shuffle": False,  # load_dataset shuffles; Keras would only warn
            "steps_per_epoch": run.steps_per_epoch,
            "verbose": config.verbose,
        }
        if config.frozen_epochs:
            _train_frozen_stage(run, model, core, search, extra_callbacks, fit_options)
        run.compile(model, core, config.lr, config.epochs)
        if config.frozen_epochs:
            say(config, f"stage 2: {config.epochs} epochs, all layers")
        model.fit(
            run.train_data,
            initial_epoch=config.frozen_epochs,
            epochs=config.frozen_epochs + config.epochs,
            callbacks=run.callbacks(2, search) + extra_callbacks,
            **fit_options,
        )
        if run.averaging is not None:
            last = config.frozen_epochs + config.epochs
            say(config, f"averaging the weights of epochs {last - config.swa_epochs + 1}-{last}")
            run.averaging.apply(model, run.train_data, run.steps_per_epoch)
            search.record_final(last, f"mean of epochs {last - config.swa_epochs + 1}-{last}")
        _load_best_weights(model, search)
        with atomic_path(run.folder / MODEL_FILE, suffix=".keras") as temporary:
            cell_model.save(temporary)  # with cell_pooling: the cells' model, not the bags'
    return _finish_run(run, placement, started)


def _threshold_search(run: "_Run", manifest, resuming: bool):
    """The ThresholdSearch of the run: validates every epoch, keeps the best epoch's
    thresholds and weights in the run folder."""
    from hpa_keras.training.callbacks import ThresholdSearch  # lazy: imports TensorFlow

    config = run.config
    return ThresholdSearch(
        run.validation_data,
        strategy=config.threshold_strategy,
        class_frequencies=run.class_counts / max(run.num_train, 1),
        out=run.folder / THRESHOLDS_FILE,
        weights_folder=run.folder,
        print_table=config.print_table,
        resume=resuming,
        class_names=manifest.class_names,
        tiles=config.tiles,
        tile_size=config.crop,
        views=config.tta,
    )


def _train_frozen_stage(run: "_Run", model, core, search, extra_callbacks, fit_options) -> None:
    """Stage 1: the backbone frozen for ``frozen_epochs`` (its weights kept for a resume),
    then unfrozen."""
    config, folder = run.config, run.folder
    if (folder / STAGE_ONE_WEIGHTS).is_file():
        model.load_weights(folder / STAGE_ONE_WEIGHTS)
        say(config, f"stage 1 (frozen backbone) already done; loaded {STAGE_ONE_WEIGHTS}")
    else:
        freeze_backbone(core)
        run.compile(model, core, config.frozen_lr, config.frozen_epochs)
        say(config, f"stage 1: {config.frozen_epochs} epochs with the backbone frozen")
        model.fit(
            run.train_data,
            epochs=config.frozen_epochs,
            callbacks=run.callbacks(1, search) + extra_callbacks,
            **fit_options,
        )
        with atomic_path(folder / STAGE_ONE_WEIGHTS, suffix=".weights.h5") as temporary:
            model.save_weights(temporary)
    unfreeze(core)


def _load_best_weights(model, search) -> None:
    """The best epoch's weights (the thresholds' own) into ``model``."""
    best_weights = search.best_weights_path
    if best_weights is not None and best_weights.is_file():
        with warnings.catch_warnings():
            # A best epoch from the frozen stage saved fewer optimizer variables;
            # only the model's weights matter from here on.
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            model.load_weights(best_weights)


def _finish_run(run: "_Run", placement, started: float) -> dict:
    """The finished run folder (its history, no resume state) and the run's summary."""
    config, folder = run.config, run.folder
    history = _finish_history(folder, config)
    shutil.rmtree(folder / BACKUP_FOLDER, ignore_errors=True)
    (folder / STAGE_ONE_WEIGHTS).unlink(missing_ok=True)
    (folder / SWA_STATE_FILE).unlink(missing_ok=True)
    document = read_thresholds_document(folder / THRESHOLDS_FILE)
    if config.verbose:
        print(f"best epoch {document.epoch}, validation fold {config.fold}:")
        print(threshold_table(document.to_dict()))
    if placement.is_chief:
        for line in fallback_lines(document.to_dict(), "validation images"):
            warn(f"thresholds: {line}")
    short = stopped_short(history, epochs=config.epochs)
    if short and placement.is_chief:
        warn(short)
    return {
        "run": str(folder),
        "epochs": int(len(history)),
        "best_epoch": document.epoch,
        "val_macro_f1_at_0.5": document.macro_f1_at_half,
        "val_macro_f1_tuned": document.macro_f1_tuned,
        "seconds": round(time.perf_counter() - started, 1),
        "replicas": placement.replicas,
        "processes": placement.process_count,
        "process_index": placement.process_index,
        "backend": placement.backend,
        "stopped_short": short,
    }


def _trained_model(cell_model, config: TrainingConfig, manifest: dict):
    """The model ``fit`` trains: the model itself, or with cell_pooling its bag model
    (:func:`hpa_keras.models.layers.bag_model`), which shares its weights."""
    if config.cell_pooling == "none":
        return cell_model
    from hpa_keras.models.layers import bag_model  # lazy: imports TensorFlow

    # In the 2021 scheme a field is Negative only when all its cells are
    negative = HPA2021.class_names.index("Negative") if manifest.scheme == HPA2021.name else None
    return bag_model(
        cell_model, config.bag_size, config.cell_pooling, config.lse_sharpness, negative
    )


def _leave_run_folder_whole(folder: Path, made_folder: bool, resuming: bool, error) -> None:
    """After a crash or an interruption, the run folder is either a resumable run or gone.

    A run with a finished epoch (its backup written, the last callback of an epoch) is an
    interrupted run that the same command resumes: it stays, and the error says so. A new
    run that finished no epoch holds nothing worth keeping: its folder is removed (or
    emptied, when the user gave an existing empty folder), so a rerun starts cleanly.
    """
    if (folder / BACKUP_FOLDER).exists() or (folder / STAGE_ONE_WEIGHTS).exists():
        error.add_note(
            f"{folder}: the finished epochs are kept; run the same command again to resume"
        )
        return
    if resuming:
        return
    if made_folder:
        shutil.rmtree(folder, ignore_errors=True)
    else:
        for entry in folder.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)  # the crash's error is the one to see
            else:
                entry.unlink(missing_ok=True)


def _finish_history(folder: Path, config: TrainingConfig):
    """One row per epoch in history.csv, and its picture; returns the history."""

    history = read_history(folder / HISTORY_FILE)
    # An epoch re-run after a kill between its CSV row and its backup appears twice: keep one.
    write_text_atomic(folder / HISTORY_FILE, history.to_csv(index=False))
    title = f"{config.model}, validation fold {config.fold}"
    save_figure(learning_curve_figure(history, title), folder / CURVES_FILE)
    return history


def say(config: TrainingConfig, message: str) -> None:
    """Print ``message`` (at once) unless ``config`` is quiet (``verbose: 0``)."""
    if config.verbose:
        print(message, flush=True)


def find_learning_rate_for(config: TrainingConfig, steps: int = 100) -> dict:
    """The learning-rate range test for ``config``'s model and data; writes lr_finder.png."""

    import_tensorflow_quietly()
    # lazy: imports TensorFlow
    from hpa_keras.models.task import build_task_model, task_model_settings
    from hpa_keras.training.callbacks import find_learning_rate

    config.validate()
    manifest = read_manifest(config.data)
    run = _Run(config, manifest, resuming=False)
    model, core = build_task_model(**task_model_settings(config, manifest))
    run.compile(model, core, config.lr, schedule="constant")  # the test sets the rate itself
    finder = find_learning_rate(model, run.train_data, steps=steps)
    path = config.run_dir / LR_FINDER_FILE
    save_figure(finder.figure(f"Learning-rate range test: {config.model}"), path)
    return {"suggested_lr": finder.suggestion(), "plot": str(path), "steps": len(finder.losses)}
