"""Inference from run folders: probabilities, test-time augmentation, ensembles, submissions.

A run folder (from ``hpa-keras fit``) holds everything prediction needs:
``model.keras`` takes uint8 images of its own size and channels (both read
from the model and ``config.yaml``) and ``thresholds.json`` turns
probabilities into labels. Input is a make-tfrecords folder or, for a few
hundred files, a folder of ``<Id>_<channel>`` images read directly.

Several runs (for example one per fold) form an ensemble: their
probabilities are averaged, and so are their thresholds.
"""

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from hpa_keras.atomic import write_text_atomic
from hpa_keras.classes import CHANNELS, NUM_CLASSES
from hpa_keras.errors import InputError


class Run:
    """A finished run folder: its model, thresholds and input format."""

    def __init__(self, folder: str | os.PathLike):
        from hpa_keras.callbacks import read_thresholds
        from hpa_keras.data.pipeline import resolve_channels
        from hpa_keras.models import load_model

        self.folder = Path(folder)
        if not (self.folder / "model.keras").is_file():
            hint = " (still training, or interrupted?)" if (self.folder / "backup").exists() else ""
            raise InputError(f"{self.folder}: no model.keras; not a finished run folder{hint}")
        try:
            self.thresholds = read_thresholds(self.folder)
        except (FileNotFoundError, ValueError) as error:
            raise InputError(str(error)) from None
        config_path = self.folder / "config.yaml"
        config = yaml.safe_load(config_path.read_text()) if config_path.is_file() else {}
        self.channels = resolve_channels(config.get("channels", "rgby"))
        self.model = load_model(self.folder / "model.keras")
        self.image_size = int(self.model.input.shape[1])
        if len(self.thresholds) != NUM_CLASSES:
            raise InputError(f"{self.folder}: thresholds.json has {len(self.thresholds)} values")


def _tfrecord_batches(folder, run: Run, batch_size: int, folds=None) -> Iterator[np.ndarray]:
    from hpa_keras.data.pipeline import load_dataset

    dataset = load_dataset(
        folder,
        folds=folds,
        training=False,
        batch_size=batch_size,
        image_size=run.image_size,
        channels=run.channels,
        normalization="none",
    )
    for images, _ in dataset:
        yield images.numpy()


def _folder_batches(index: dict, ids: Sequence[str], run: Run, batch_size: int):
    from hpa_keras.data.images import read_sample

    channel_indices = [CHANNELS.index(name) for name in run.channels]
    for start in range(0, len(ids), batch_size):
        batch = [
            read_sample(index[sample_id], image_size=run.image_size)[..., channel_indices]
            for sample_id in ids[start : start + batch_size]
        ]
        yield np.stack(batch)


def _dihedral_view(images: np.ndarray, index: int) -> np.ndarray:
    """:func:`hpa_keras.augment.dihedral_view` for numpy batches (equality is tested)."""
    view = np.rot90(images, k=index // 2, axes=(1, 2))
    return np.ascontiguousarray(view[:, :, ::-1] if index % 2 else view)


def _predict_batches(model, batches, tta: int) -> np.ndarray:
    """Mean probabilities over ``tta`` dihedral views of each batch."""
    outputs = []
    for images in batches:
        # numpy, not keras.ops: TensorFlow's CPU kernels log an error line for uint8 rotations.
        views = [_dihedral_view(images, index) for index in range(tta)]
        predictions = [np.asarray(model.predict_on_batch(view)) for view in views]
        outputs.append(np.mean(predictions, axis=0))
    if not outputs:
        return np.zeros((0, NUM_CLASSES), dtype=np.float32)
    return np.concatenate(outputs).astype(np.float32)


def input_ids(data=None, images=None, ids_file=None, folds=None) -> tuple[list[str], dict | None]:
    """The Ids to predict, in submission order, and the image index for ``images``.

    From TFRecords: their evaluation order. From an image folder: the order
    of ``ids_file`` (for example the challenge's ``sample_submission.csv``)
    when given, every listed Id needing its four channel files; otherwise the
    folder's Ids sorted.
    """
    from hpa_keras.data.images import index_image_folder
    from hpa_keras.labels import read_id_file

    if (data is None) == (images is None):
        raise InputError("give exactly one of --data (TFRecords) and --images (an image folder)")
    if data is not None:
        from hpa_keras.data.pipeline import dataset_ids

        return dataset_ids(data, folds), None
    index = index_image_folder(images)
    if ids_file is not None:
        ids = list(read_id_file(ids_file).ids)
        for sample_id in ids:
            if sample_id not in index:
                raise InputError(f"{ids_file}: Id {sample_id} has no image files in {images}")
    else:
        ids = sorted(index)
    if not ids:
        raise InputError(f"{images}: no <Id>_<channel> image files")
    return ids, index


def predict_runs(
    runs: Sequence[str | os.PathLike],
    data=None,
    images=None,
    ids_file=None,
    tta: int = 1,
    batch_size: int = 16,
    folds=None,
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(ids, probabilities, thresholds)`` averaged over ``runs``.

    Args:
        runs: run folders; more than one makes an ensemble (mean of the
            probabilities and of the thresholds).
        data: a make-tfrecords folder, or
        images: a folder of ``<Id>_<channel>`` images (PNG, TIFF, JPEG).
        ids_file: with ``images``: a CSV with an ``Id`` column fixing which
            Ids are predicted and their order.
        tta: dihedral views averaged per image: 1, 2, 4 or 8.
        folds: with ``data``: the fold or folds to predict (default: all).
    """
    _check_prediction_settings(runs, tta)
    ids, index = input_ids(data, images, ids_file, folds)
    probabilities, thresholds = predict_ids(
        runs, ids, data=data, index=index, folds=folds, tta=tta, batch_size=batch_size
    )
    return ids, probabilities, thresholds


def _check_prediction_settings(runs, tta: int) -> None:
    if tta not in (1, 2, 4, 8):
        raise InputError(f"--tta must be 1, 2, 4 or 8, got {tta}")
    if not runs:
        raise InputError("give at least one run folder (--run)")


def predict_ids(
    runs, ids, data=None, index=None, folds=None, tta: int = 1, batch_size: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """``(probabilities, thresholds)`` of Ids already known, averaged over ``runs``.

    ``ids`` are those of ``data`` (and ``folds``) in evaluation order, as
    :func:`hpa_keras.data.pipeline.dataset_labels` gives them, or keys of the
    image-folder ``index`` in the order wanted. For callers that read the Ids
    anyway (evaluation reads them with the labels), so that the TFRecords are
    not read once more just for them.
    """
    _check_prediction_settings(runs, tta)
    probabilities, thresholds = [], []
    for folder in runs:
        run = Run(folder)
        batches = (
            _tfrecord_batches(data, run, batch_size, folds)
            if data is not None
            else _folder_batches(index, ids, run, batch_size)
        )
        scores = _predict_batches(run.model, batches, tta)
        if len(scores) != len(ids):
            raise InputError(f"{folder}: {len(scores)} predictions for {len(ids)} Ids")
        probabilities.append(scores)
        thresholds.append(run.thresholds)
    return np.mean(probabilities, axis=0), np.mean(thresholds, axis=0)


def submission_labels(probabilities, thresholds, require_label: bool = True) -> list[list[int]]:
    """Per row, the classes whose probability reaches its threshold.

    With ``require_label`` (the default: every HPA image shows its protein
    somewhere) a row with none gets its most probable class.
    """
    probabilities = np.asarray(probabilities)
    passed = probabilities >= np.asarray(thresholds)[None, :]
    rows = []
    for row, scores in zip(passed, probabilities, strict=True):
        labels = np.flatnonzero(row).tolist()
        if not labels and require_label:
            labels = [int(np.argmax(scores))]
        rows.append(labels)
    return rows


def write_submission(path, ids, labels) -> None:
    """A Kaggle submission: ``Id,Predicted`` with space-separated class indices."""
    from hpa_keras.labels import write_labels

    write_labels(path, ids, labels, column="Predicted")


def write_probabilities(path, ids, probabilities) -> None:
    """``Id`` and one column per class (``0`` ... ``27``) of probabilities."""
    table = pd.DataFrame(np.asarray(probabilities), columns=[str(c) for c in range(NUM_CLASSES)])
    table.insert(0, "Id", ids)
    write_text_atomic(path, table.to_csv(index=False, float_format="%.6f"))
