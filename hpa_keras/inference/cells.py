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
from hpa_keras.data.cells import check_masks, find_mask_files, read_mask
from hpa_keras.errors import InputError


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


def write_cell_predictions(
    ids,
    probabilities,
    thresholds,
    masks: str | os.PathLike,
    out: str | os.PathLike,
    table: str | os.PathLike,
    class_names,
    scheme: str,
) -> dict:
    """Write the 2021-format submission (``out``) and the per-cell table (``table``).

    Every field's cells must all have been predicted, and every predicted
    cell must be in its field's mask: records cut from other masks are an
    error naming the field.
    """
    fields = cells_by_field(ids, probabilities)
    thresholds = np.asarray(thresholds)
    rows, table_rows, labeled = [], [], 0
    for field_id, cells in fields.items():
        mask = _cell_mask(masks, field_id)
        numbers = set(int(number) for number in np.unique(mask) if number)
        if set(cells) != numbers:
            extra, absent = sorted(set(cells) - numbers), sorted(numbers - set(cells))
            raise InputError(
                f"field {field_id}: the records' cells differ from its mask in {masks} "
                f"(cells without a mask cell: {extra[:3]}, mask cells without a record: "
                f"{absent[:3]}); were the records cut from these masks?"
            )
        rows.append((field_id, mask.shape[1], mask.shape[0], prediction_string(mask, cells)))
        for number in sorted(cells):
            chosen = np.flatnonzero(cells[number] >= thresholds).tolist()
            labeled += bool(chosen)
            table_rows.append((field_id, number, format_target(chosen, scheme), cells[number]))
    write_submission(out, rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([get_scheme(scheme).id_column, "cell", "Label", *class_names])
    for field_id, number, label, values in table_rows:
        writer.writerow([field_id, number, label, *(f"{value:.4f}" for value in values)])
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
