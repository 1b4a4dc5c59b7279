"""Keras callbacks for HPA training, usable in a notebook's own ``model.fit``.

- :class:`ThresholdSearch` predicts on the validation data at the end of each
  epoch, logs ``val_loss``, ``val_macro_f1`` (at 0.5) and
  ``val_macro_f1_tuned`` (with thresholds searched on those predictions),
  keeps the thresholds of the best epoch and writes them to
  ``thresholds.json``. Put it first in the callback list so that
  ``ModelCheckpoint``, ``ReduceLROnPlateau``, ``EarlyStopping`` and
  ``CSVLogger`` see what it logs.
- :class:`LRFinder` is the learning-rate range test: the rate grows
  exponentially batch by batch while the loss is recorded; the plot shows
  where the loss falls fastest.

Example:
    >>> search = ThresholdSearch(validation, out="run/thresholds.json")
    >>> checkpoint = keras.callbacks.ModelCheckpoint(
    ...     "run/best.weights.h5", monitor="val_macro_f1_tuned", mode="max",
    ...     save_best_only=True, save_weights_only=True)
    >>> model.fit(train, epochs=10, callbacks=[search, checkpoint])
"""

import dataclasses
import math
import os
import warnings
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from hpa_keras.atomic import atomic_path
from hpa_keras.classes import CLASS_NAMES
from hpa_keras.distributed import predict_across_processes, process_count, replica_count
from hpa_keras.reports.tables import threshold_table
from hpa_keras.reports.training import lr_finder_figure
from hpa_keras.runs.documents import (
    read_thresholds as read_thresholds,  # re-exported: hpa_keras.training.read_thresholds
)
from hpa_keras.runs.documents import (
    read_thresholds_document,
    thresholds_document,
    write_thresholds_document,
)
from hpa_keras.scoring.thresholds import tune_thresholds


def predict_with_labels(model, validation_data, batch_size: int = 32, labels=None):
    """``(labels, probabilities)`` for ``(x, y)`` arrays or a finite dataset of batches.

    A ``tf.data.Dataset`` goes through ``model.predict`` (which distributes
    it under a ``MirroredStrategy``; ``predict_on_batch`` would run the whole
    batch on every replica). Its labels are read in a separate pass unless
    given: pass the labels of an earlier call to skip that pass. In a
    multi-process run the dataset is this process's share, and the result
    every process's, gathered (:func:`hpa_keras.distributed.predict_across_processes`).
    """

    if isinstance(validation_data, (tuple, list)):
        images, labels = validation_data[:2]
        scores = model.predict(images, batch_size=batch_size, verbose=0)
        return np.asarray(labels, dtype=np.float32), np.asarray(scores, dtype=np.float32)
    if process_count() > 1:
        return predict_across_processes(model, validation_data)
    if labels is None:
        labels = np.concatenate(
            [np.asarray(batch[1], dtype=np.float32) for batch in validation_data]
        )
    with warnings.catch_warnings():
        # Keras warns when a dataset of unknown length "ran out of data": it is meant to.
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        if replica_count(model) > 1:
            scores = _predict_evenly(model, validation_data, len(labels))
        else:
            scores = model.predict(validation_data, verbose=0)
    scores = np.asarray(scores, dtype=np.float32)
    if len(labels) != len(scores):
        raise ValueError(
            f"the validation data gave {len(labels)} labels but {len(scores)} predictions; "
            "it must be finite and in a fixed order (load_dataset(..., training=False))"
        )
    return labels, scores


def _predict_evenly(model, dataset, count: int):
    """``model.predict`` under a multi-replica strategy, with the last batch padded to full size.

    The strategy splits each batch into per-replica slices of
    ``batch / replicas``; a short last batch can leave a replica with no
    sample at all, and TensorFlow's CPU convolutions fail on empty batches.
    Padding the last batch with zero images to the full batch size gives
    every replica a full slice; the padded rows are dropped afterwards.
    """

    spec = dataset.element_spec[0]
    batch_size = next(iter(dataset))[0].shape[0]
    images = dataset.map(lambda images, *rest: images).unbatch()
    padding = (-count) % batch_size
    if padding:
        zeros = tf.data.Dataset.from_tensors(tf.zeros(spec.shape[1:], spec.dtype)).repeat(padding)
        images = images.concatenate(zeros)
    return model.predict(images.batch(batch_size), verbose=0)[:count]


def class_table(labels, scores, thresholds, class_names=CLASS_NAMES) -> str:
    """A per-class text table: support, F1 at 0.5, threshold and tuned F1."""
    document = thresholds_document(labels, scores, thresholds, None, None, class_names)
    return threshold_table(document.to_dict())


class ThresholdSearch(keras.callbacks.Callback):
    """Validation macro F1 at 0.5 and with tuned thresholds, at the end of every epoch.

    Args:
        validation_data: ``(images, labels)`` arrays, or a finite
            ``tf.data.Dataset`` of ``(images, labels)`` batches (for example
            ``load_dataset(..., training=False)``).
        strategy: how thresholds are chosen (see
            :func:`hpa_keras.scoring.thresholds.search_thresholds`): ``"per_class"``
            (default), ``"shrunk"``, ``"global"``, ``"buckets"``, ``"rate"`` or ``"fixed"``;
            a class whose tuned threshold the validation labels do not support falls
            back to the global one (listed under ``fallbacks`` in ``thresholds.json``).
        class_frequencies: training frequency of each class, needed by
            ``"buckets"`` and ``"rate"``.
        out: where to write the best epoch's ``thresholds.json`` (optional).
        print_table: print the per-class table after each epoch (off by default: 28
            rows an epoch; ``last_table`` holds it either way).
        resume: start from the best score recorded in ``out``, so a resumed
            run does not replace better thresholds with worse ones.
        class_names: row names of the table.
        weights_folder: also save the best epoch's weights there, as
            ``best-epochNNN.weights.h5``, before the thresholds that name
            them (``weights_file`` in ``thresholds.json``): killed between the
            two writes, the previous pair stays whole.
        views, tiles, tile_size: predict the validation data as prediction
            will (:class:`hpa_keras.inference.tta.DihedralTTA`): dihedral
            views averaged, and a whole field (``tiles=0``) or an N x N grid
            of ``tile_size`` tiles, so the thresholds suit the probabilities
            they will be applied to.

    After training, ``best_thresholds``, ``best_score`` and ``best_epoch``
    hold the best epoch's result; the loss is logged as ``val_loss`` so that
    ``model.fit`` needs no ``validation_data`` of its own (one pass over the
    validation set per epoch, not two).
    """

    def __init__(
        self,
        validation_data,
        strategy: str = "per_class",
        class_frequencies=None,
        out: str | os.PathLike | None = None,
        print_table: bool = False,
        resume: bool = False,
        batch_size: int = 32,
        class_names=CLASS_NAMES,
        views: int = 1,
        tiles: int = 0,
        tile_size: int | None = None,
        weights_folder: str | os.PathLike | None = None,
    ):
        super().__init__()
        self.weights_folder = None if weights_folder is None else Path(weights_folder)
        self.best_weights_file = None
        self.validation_data = validation_data
        self.views, self.tiles, self.tile_size = views, tiles, tile_size
        self._predictor = None
        self.strategy = strategy
        self.class_frequencies = class_frequencies
        self.out = None if out is None else Path(out)
        self.print_table = print_table
        self.batch_size = batch_size
        self.class_names = tuple(class_names)
        self.best_score = -math.inf
        self.best_epoch = None
        self.best_thresholds = None
        self.last_table = None
        self._labels = None
        if resume and self.out is not None and self.out.is_file():
            document = read_thresholds_document(self.out)
            self.best_score = (
                document.macro_f1_tuned if document.macro_f1_tuned is not None else -math.inf
            )
            self.best_epoch = document.epoch
            self.best_thresholds = document.thresholds
            self.best_weights_file = document.weights_file
            # Weights of an epoch killed before its thresholds were written: that epoch runs
            # again, and a resumed run with no better epoch would otherwise keep them.
            self._remove_other_weights()

    @property
    def best_weights_path(self) -> Path | None:
        """The best epoch's weights file (with ``weights_folder``), else ``None``."""
        if self.weights_folder is None or self.best_weights_file is None:
            return None
        return self.weights_folder / self.best_weights_file

    def record_final(self, epoch: int, note: str):
        """Score the model as it is now and make it the run's result, better or not (the
        weights of stochastic weight averaging, say): thresholds searched on the validation
        predictions, weights and thresholds saved as for a best epoch. Returns the document."""
        labels, scores = predict_with_labels(
            self.predictor(), self.validation_data, self.batch_size, self._labels
        )
        thresholds, fallbacks = tune_thresholds(
            self.strategy, labels, scores, self.class_frequencies
        )
        document = thresholds_document(
            labels, scores, thresholds, self.strategy, epoch, self.class_names, fallbacks
        )
        document.weights = note
        self.best_score, self.best_epoch = document.macro_f1_tuned, epoch
        self.best_thresholds = thresholds
        self._save_best(document, epoch, prefix="swa")
        return document

    def _save_best(self, document, epoch: int, prefix: str = "best") -> None:
        """Weights first (a new file), then the thresholds naming them, then old weights go."""
        if self.weights_folder is not None:
            name = f"{prefix}-epoch{epoch:03d}.weights.h5"
            with atomic_path(self.weights_folder / name, suffix=".weights.h5") as temporary:
                self.model.save_weights(temporary)
            document = dataclasses.replace(document, weights_file=name)
            self.best_weights_file = name
        if self.out is not None:
            write_thresholds_document(self.out, document)
        self._remove_other_weights()

    def _remove_other_weights(self) -> None:
        """Every epoch's weights file in ``weights_folder`` but the one named as the best."""
        if self.weights_folder is None or self.best_weights_file is None:
            return
        for path in self.weights_folder.glob("*-epoch*.weights.h5"):
            if path.name != self.best_weights_file:
                path.unlink(missing_ok=True)

    def predictor(self):
        """The model, or its view-and-tile wrapper (built once; it shares the weights)."""
        if self._predictor is None:
            # lazy: imports TensorFlow
            from hpa_keras.distributed import model_scope
            from hpa_keras.inference.tta import with_tta

            with model_scope(self.model):
                self._predictor = with_tta(
                    self.model, self.views, tiles=self.tiles, tile_size=self.tile_size
                )
        return self._predictor

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        labels, scores = predict_with_labels(
            self.predictor(), self.validation_data, self.batch_size, self._labels
        )
        self._labels = labels
        thresholds, fallbacks = tune_thresholds(
            self.strategy, labels, scores, self.class_frequencies
        )
        # One document per epoch: the logs, the table and thresholds.json all come from it.
        document = thresholds_document(
            labels, scores, thresholds, self.strategy, epoch + 1, self.class_names, fallbacks
        )
        tuned = document.macro_f1_tuned
        loss = self._validation_loss(labels, scores)
        if loss is not None:
            logs["val_loss"] = loss
        logs["val_macro_f1"] = document.macro_f1_at_half
        logs["val_macro_f1_tuned"] = tuned
        self.last_table = threshold_table(document.to_dict())
        if tuned > self.best_score:
            self.best_score, self.best_epoch, self.best_thresholds = tuned, epoch + 1, thresholds
            self._save_best(document, epoch + 1)
        if self.print_table:
            print(f"\nEpoch {epoch + 1}: validation per class\n{self.last_table}", flush=True)

    def _validation_loss(self, labels, scores):
        """The compiled loss on the validation predictions: the mean of its per-sample values.

        ``Loss.call`` rather than ``Loss.__call__``: under a distribution
        strategy the latter divides by the number of replicas, which is right
        inside a replica's training step but not for a whole validation set.
        """
        loss = getattr(self.model, "loss", None)
        if isinstance(loss, str):
            loss = keras.losses.get(loss)
        if isinstance(loss, keras.losses.Loss):
            loss = loss.call
        if not callable(loss):
            return None
        values = keras.ops.convert_to_numpy(loss(labels, scores))
        return float(np.mean(values))


class UploadEachEpoch(keras.callbacks.Callback):
    """Upload a :class:`hpa_keras.storage.StagedFolder` at every epoch's end.

    Put it after ``BackupAndRestore``: the epoch's backup then reaches the URL
    with it, so a run preempted on one machine resumes on another.
    """

    def __init__(self, staged):
        super().__init__()
        self.staged = staged

    def on_epoch_end(self, epoch, logs=None):
        self.staged.upload()


class LearningRateLogger(keras.callbacks.Callback):
    """Log the optimizer's current learning rate as ``learning_rate`` at each epoch end.

    ``ReduceLROnPlateau`` logs it too, but a schedule or a constant rate
    would otherwise leave it out of ``history.csv``.
    """

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(
                keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
            )


class LRFinder(keras.callbacks.Callback):
    """The learning-rate range test (Smith 2017): loss against an exponentially growing rate.

    From ``min_lr`` the rate is multiplied by a constant factor after every
    batch to reach ``max_lr`` after ``steps`` batches; training stops early
    once the smoothed loss exceeds ``stop_factor`` times its lowest value.
    The compiled optimizer's rate must be a plain value (not a schedule).

    After training, ``learning_rates`` and ``losses`` (smoothed) hold the
    curve, :meth:`suggestion` a rate to train with and :meth:`figure` the plot.
    Run it on a throw-away copy of the model, or use
    :func:`find_learning_rate`, which restores the weights afterwards.
    """

    def __init__(
        self,
        min_lr: float = 1e-6,
        max_lr: float = 1.0,
        steps: int = 100,
        smoothing: float = 0.9,
        stop_factor: float = 4.0,
    ):
        super().__init__()
        if not 0 < min_lr < max_lr:
            raise ValueError(f"need 0 < min_lr < max_lr, got {min_lr} and {max_lr}")
        if steps < 2:
            raise ValueError(f"steps must be at least 2, got {steps}")
        self.min_lr, self.max_lr, self.steps = min_lr, max_lr, steps
        self.smoothing, self.stop_factor = smoothing, stop_factor
        self.learning_rates: list[float] = []
        self.losses: list[float] = []
        self.raw_losses: list[float] = []

    def _rate(self, step: int) -> float:
        return self.min_lr * (self.max_lr / self.min_lr) ** (step / (self.steps - 1))

    def on_train_begin(self, logs=None):
        self.learning_rates, self.losses, self.raw_losses = [], [], []
        self._average, self._previous_mean, self._best = 0.0, 0.0, math.inf
        self.model.optimizer.learning_rate = self._rate(0)

    def on_train_batch_end(self, batch, logs=None):
        step = len(self.learning_rates)
        # Keras logs the epoch's running mean; recover this batch's own loss from it.
        mean = float(logs["loss"])
        loss = mean * (batch + 1) - self._previous_mean * batch
        self._previous_mean = mean
        self._average = self.smoothing * self._average + (1 - self.smoothing) * loss
        smoothed = self._average / (1 - self.smoothing ** (step + 1))
        self.learning_rates.append(self._rate(step))
        self.raw_losses.append(loss)
        self.losses.append(smoothed)
        self._best = min(self._best, smoothed)
        if (
            step + 1 >= self.steps
            or not math.isfinite(loss)
            or smoothed > self.stop_factor * self._best
        ):
            self.model.stop_training = True
            return
        self.model.optimizer.learning_rate = self._rate(step + 1)

    def suggestion(self) -> float:
        """A rate to train with: a tenth of the rate at the lowest smoothed loss.

        The steepest-descent point is the other common choice, but on short,
        noisy curves it jumps around; the minimum divided by ten is stable
        and errs on the safe side.
        """
        if not self.losses:
            raise ValueError("no learning-rate test has run yet")
        return float(self.learning_rates[int(np.argmin(self.losses))] / 10)

    def figure(self, title: str = "Learning-rate range test"):
        """Smoothed loss against learning rate (log scale), the suggestion marked."""

        return lr_finder_figure(self.learning_rates, self.losses, self.suggestion(), title)


def find_learning_rate(
    model, dataset, min_lr: float = 1e-6, max_lr: float = 1.0, steps: int = 100
) -> LRFinder:
    """Run :class:`LRFinder` on a compiled model and restore its weights afterwards.

    ``dataset`` must yield at least ``steps`` training batches (a repeating
    training dataset does). The optimizer's moment estimates are changed by
    the test: compile the model again before training it.
    """
    weights = model.get_weights()
    finder = LRFinder(min_lr=min_lr, max_lr=max_lr, steps=steps)
    try:
        model.fit(
            dataset,
            epochs=1,
            steps_per_epoch=steps,
            callbacks=[finder],
            verbose=0,
            shuffle=False,  # a dataset shuffles itself; Keras would only warn
        )
    finally:
        model.set_weights(weights)
    return finder


class StochasticWeightAveraging(keras.callbacks.Callback):
    """The equal-weight average of the weights at the end of the last epochs (Izmailov et al.
    2018), as the 3rd place of 2018 trained; Keras has no built-in for it.

    From epoch ``start_epoch`` (0-based) on, each epoch's end adds the
    model's weights to a running mean, kept in ``state_file`` (written
    atomically) so that a run resumed after a kill continues the same mean.
    :meth:`apply` puts the mean into the model and recomputes the BatchNorm
    statistics for it: averaged weights need their own, which one pass over
    training batches in training mode gives (each layer's momentum set so
    the moving statistics become the plain mean over the pass).

    Args:
        start_epoch: the first epoch averaged.
        state_file: where the running mean is kept (``.npz``), or ``None``.
    """

    def __init__(self, start_epoch: int, state_file: str | os.PathLike | None = None):
        super().__init__()
        self.start_epoch = int(start_epoch)
        self.state_file = None if state_file is None else Path(state_file)
        self.average, self.count, self.last_epoch = None, 0, None
        if self.state_file is not None and self.state_file.is_file():
            with np.load(self.state_file) as state:
                self.count = int(state["count"])
                self.last_epoch = int(state["last_epoch"])
                self.average = [state[f"weight{index}"] for index in range(int(state["size"]))]

    def on_epoch_end(self, epoch, logs=None):
        if epoch < self.start_epoch or (self.last_epoch is not None and epoch <= self.last_epoch):
            return
        weights = [np.asarray(value, dtype=np.float64) for value in self.model.get_weights()]
        if self.average is None:
            self.average = weights
        else:
            self.average = [
                mean + (value - mean) / (self.count + 1)
                for mean, value in zip(self.average, weights, strict=True)
            ]
        self.count, self.last_epoch = self.count + 1, epoch
        if self.state_file is not None:
            arrays = {f"weight{index}": value for index, value in enumerate(self.average)}
            with atomic_path(self.state_file, suffix=".npz") as temporary:
                np.savez(temporary, count=self.count, last_epoch=epoch, size=len(arrays), **arrays)

    def apply(self, model, dataset, steps: int) -> None:
        """Set the averaged weights and recompute BatchNorm statistics over ``steps`` batches."""
        if self.average is None:
            raise ValueError("no epoch was averaged (start_epoch after the last epoch?)")
        model.set_weights(
            [
                mean.astype(value.dtype)
                for mean, value in zip(self.average, model.get_weights(), strict=True)
            ]
        )
        normalizations = [
            layer
            for layer in _all_layers(model)
            if isinstance(layer, keras.layers.BatchNormalization)
        ]
        if not normalizations:
            return
        saved = [layer.momentum for layer in normalizations]
        try:
            for step, (images, _) in enumerate(dataset.take(steps)):
                for layer in normalizations:  # the running mean of the batch statistics
                    layer.momentum = step / (step + 1)
                model(images, training=True)
        finally:
            for layer, momentum in zip(normalizations, saved, strict=True):
                layer.momentum = momentum


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)
