"""Labels for every cell: a cell run's per-cell probabilities as a 2021 submission and a
table biologists can read.

A cell run (``fit`` on cell records) predicts cell records; each record's
Id is ``<field Id>_<cell number>``, so the probabilities go back to the
cells of the masks the records were cut from. The submission lists, for
every cell of every field, every class with its probability (the ranking
the 2021 metric scores); the table gives each cell its classes over the
run's thresholds and the probabilities beside them.
"""

import csv
import io
import os
from pathlib import Path

import numpy as np

from hpa_keras.atomic import write_text_atomic
from hpa_keras.cells.submission import prediction_string, write_submission
from hpa_keras.classes import format_target, get_scheme
from hpa_keras.data.cells import cell_geometry, check_masks, find_mask_files, read_mask
from hpa_keras.data.tfrecords import read_manifest
from hpa_keras.errors import InputError
from hpa_keras.scoring.uncertainty import predictive_entropy


def split_cell_id(record_id: str) -> tuple[str, int]:
    """``(field Id, cell number)`` of a cell record's Id."""
    field_id, _, number = record_id.rpartition("_")
    if not field_id or not number.isdigit():
        raise InputError(f"record {record_id}: not a cell record's Id (<field Id>_<cell>)")
    return field_id, int(number)


def cells_by_field(ids, probabilities) -> dict[str, dict[int, np.ndarray]]:
    """``{field Id: {cell number: probabilities}}`` in the records' order."""
    fields: dict[str, dict[int, np.ndarray]] = {}
    for record_id, row in zip(ids, np.asarray(probabilities), strict=True):
        field_id, number = split_cell_id(record_id)
        fields.setdefault(field_id, {})[number] = row
    return fields


def mix_with_fields(cell_ids, cell_probabilities, field_ids, field_probabilities, weight: float):
    """Each cell's probabilities mixed with its field's: ``(1 - weight) * cell + weight *
    field``, the same classes in the same order (a cell run and a field run of one scheme).

    The field run sees the whole field, context a crop lacks (how many cells
    show a pattern, their neighbours); the cell run says which cells. 0 keeps
    the cells', 1 gives every cell its field's probabilities (the baseline of
    labelling cells with their image's prediction).
    """
    if not 0.0 <= weight <= 1.0:
        raise InputError(f"--image-weight must be in [0, 1], got {weight}")
    cell_probabilities = np.asarray(cell_probabilities, np.float64)
    field_probabilities = np.asarray(field_probabilities, np.float64)
    if cell_probabilities.shape[1] != field_probabilities.shape[1]:
        raise InputError(
            f"the field run predicts {field_probabilities.shape[1]} classes, the cell run "
            f"{cell_probabilities.shape[1]}: both must use one label scheme"
        )
    row_of = {field_id: row for row, field_id in enumerate(field_ids)}
    mixed = np.empty_like(cell_probabilities)
    for index, record_id in enumerate(cell_ids):
        field_id, _ = split_cell_id(record_id)
        if field_id not in row_of:
            raise InputError(f"field {field_id} has cells but the field run did not predict it")
        field = field_probabilities[row_of[field_id]]
        mixed[index] = (1 - weight) * cell_probabilities[index] + weight * field
    return mixed


def check_run_and_records(run_kind: str, data_kind: str, data) -> None:
    """A cell run reads cell records, a field run field records: anything else is an error."""
    if run_kind == data_kind:
        return
    if run_kind == "cells":
        raise InputError(
            f"{data}: field records, but the run was trained on cells; cut the fields into "
            "cell records first (make-tfrecords --masks MASKS)"
        )
    raise InputError(
        f"{data}: cell records, but the run was trained on whole fields; predict the fields' "
        "records, or train a run on these cell records"
    )


def record_geometry(data: str | os.PathLike) -> dict[str, dict]:
    """``{field Id: {"size": (height, width), "boxes": {cell: box}}}`` of a cell record set:
    the size of the field each cell was cut from and its box there (y0, x0, y1, x1), read
    from the records without decoding their images."""
    import tensorflow as tf  # lazy: imports TensorFlow

    from hpa_keras.data.pipeline import shard_paths  # lazy: imports TensorFlow

    spec = {
        "field_id": tf.io.FixedLenFeature([], tf.string),
        "cell": tf.io.FixedLenFeature([], tf.int64),
        "box": tf.io.FixedLenFeature([4], tf.int64),
        "original_height": tf.io.FixedLenFeature([], tf.int64),
        "original_width": tf.io.FixedLenFeature([], tf.int64),
    }
    dataset = tf.data.TFRecordDataset(shard_paths(data, read_manifest(data)))
    dataset = dataset.batch(4096).map(lambda batch: tf.io.parse_example(batch, spec))
    fields: dict[str, dict] = {}
    for batch in dataset.as_numpy_iterator():
        for field_id, number, box, height, width in zip(
            batch["field_id"], batch["cell"], batch["box"], batch["original_height"],
            batch["original_width"], strict=True,
        ):  # fmt: skip
            entry = fields.setdefault(
                field_id.decode("utf-8"), {"size": (int(height), int(width)), "boxes": {}}
            )
            entry["boxes"][int(number)] = tuple(int(value) for value in box)
    return fields


def _check_mask_fits_records(field_id, mask, geometry, masks) -> None:
    """A field's mask against the records cut from it: the field's size and each cell's box."""
    if geometry is None:
        raise InputError(f"field {field_id}: predicted, but the records have no such field")
    height, width = geometry["size"]
    if mask.shape != (height, width):
        raise InputError(
            f"field {field_id}: its mask in {masks} is {mask.shape[1]}x{mask.shape[0]}, but "
            f"its cells were cut from a {width}x{height} field; give the masks the records "
            "were cut from (--masks)"
        )
    for cell in cell_geometry(mask):
        recorded = geometry["boxes"].get(cell.number)
        if recorded is not None and tuple(recorded) != tuple(cell.box):
            raise InputError(
                f"field {field_id}: cell {cell.number} lies at {cell.box} in its mask in {masks} "
                f"but at {tuple(recorded)} in the records (y0, x0, y1, x1); were the records "
                "cut from these masks?"
            )


def write_cell_predictions(
    ids,
    probabilities,
    thresholds,
    masks: str | os.PathLike,
    out: str | os.PathLike,
    table: str | os.PathLike,
    class_names,
    scheme: str,
    records: str | os.PathLike | None = None,
    table_probabilities=None,
    submission_probabilities=None,
) -> dict:
    """Write the 2021-format submission (``out``) and the per-cell table (``table``: Id,
    cell, the classes over the thresholds, each class's probability, and the cell's
    predictive entropy in bits, :func:`~hpa_keras.scoring.uncertainty.predictive_entropy`).

    The classes are decided on ``probabilities``, which the thresholds were tuned on, and
    the submission's confidences are those too (the 2021 score ranks cells per class; a
    calibration map's ties would reorder them). ``table_probabilities`` (``(N, C)``, the
    rows of ``ids``): what the table shows instead, the calibrated probabilities.
    ``submission_probabilities`` (``(N, 19)``): what the submission holds instead, for a
    run of other classes than the 2021 challenge's (SubCell's, mapped).

    Every field's cells must all have been predicted, and every predicted
    cell must be in its field's mask: records cut from other masks are an
    error naming the field. With ``records`` (the cell records predicted),
    each mask must also be of the size of the field its records were cut
    from, with every cell where the records say it was: masks of another size
    would give the submission a wrong ImageWidth/ImageHeight and masks no
    true cell could match. Nothing is written when a field fails.
    """
    fields = cells_by_field(ids, probabilities)
    shown = fields if table_probabilities is None else cells_by_field(ids, table_probabilities)
    submitted = (
        fields
        if submission_probabilities is None
        else cells_by_field(ids, submission_probabilities)
    )
    geometry = record_geometry(records) if records is not None else None
    thresholds = np.asarray(thresholds)
    rows, table_rows, labeled = [], [], 0
    for field_id, cells in fields.items():
        mask = _cell_mask(masks, field_id)
        if geometry is not None:
            _check_mask_fits_records(field_id, mask, geometry.get(field_id), masks)
        numbers = set(int(number) for number in np.unique(mask) if number)
        if set(cells) != numbers:
            extra, absent = sorted(set(cells) - numbers), sorted(numbers - set(cells))
            raise InputError(
                f"field {field_id}: the records' cells differ from its mask in {masks} "
                f"(cells without a mask cell: {extra[:3]}, mask cells without a record: "
                f"{absent[:3]}); were the records cut from these masks?"
            )
        rows.append(
            (field_id, mask.shape[1], mask.shape[0], prediction_string(mask, submitted[field_id]))
        )
        for number in sorted(cells):
            chosen = np.flatnonzero(cells[number] >= thresholds).tolist()
            labeled += bool(chosen)
            label = format_target(chosen, scheme)
            table_rows.append((field_id, number, label, shown[field_id][number]))
    write_submission(out, rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([get_scheme(scheme).id_column, "cell", "Label", *class_names, "entropy"])
    for field_id, number, label, values in table_rows:
        # How unsure the cell's probabilities are (bits, the mean over classes of each
        # class's binary entropy): the cells to look at first.
        entropy = predictive_entropy(values[None, :])[0]
        writer.writerow(
            [field_id, number, label, *(f"{value:.4f}" for value in values), f"{entropy:.4f}"]
        )
    write_text_atomic(table, buffer.getvalue())
    return {"fields": len(rows), "cells": len(table_rows), "cells_with_a_class": labeled}


def _cell_mask(masks, field_id) -> np.ndarray:
    """A field's cell mask, read and checked (its size is the field's: nothing to compare)."""
    cell_path, _ = find_mask_files(masks, field_id)
    if cell_path is None:
        raise InputError(f"{Path(masks) / (field_id + '_cells.png')}: no mask for field {field_id}")
    cells = read_mask(cell_path)
    check_masks(cells, None, cells.shape, cell_path)
    return cells
