"""Cell records: one TFRecord per cell, cut from a field with its mask (``make-tfrecords
--masks``).

Each cell becomes a square crop centred on the cell (its box's longer side
plus a margin on each side, resized to ``cell_size``; the field's edge
padded with zeros), with its binary mask at the same size, its box in the
field, the field's Id and labels (the weak, image-level truth every cell of
a field shares) and, where a ``cells.csv`` gives them, the cell's own labels.
Cells cut by the field's edge and cells much smaller than the field's
typical cell are flagged (``edge``, ``small``), never dropped: whether to
train on them is a decision for the training step, and the 2021 metric
scores every cell of the masks.

The conversion around it (sources, folds, shards, resuming, the manifest)
is :mod:`hpa_keras.data.conversion`'s: folds are drawn per field, so the
cells of one field always share a fold.
"""

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hpa_keras.classes import HPA2021, parse_target
from hpa_keras.data.cells import (
    cell_geometry,
    crop_window,
    cut_window,
    mask_png_bytes,
    read_field_masks,
    resize_window,
)
from hpa_keras.data.images import read_sample
from hpa_keras.data.labels import open_csv
from hpa_keras.errors import InputError

CELL_CONTEXTS = ("keep", "zero")
DEFAULT_CELL_MARGIN = 0.1  # make-tfrecords --cell-margin
DEFAULT_CELL_CONTEXT = "keep"  # make-tfrecords --cell-context


def cell_record_id(field_id: str, number: int) -> str:
    """A cell record's Id: the field's Id and the cell's number in its mask."""
    return f"{field_id}_{number}"


def cell_label_scheme(path: str | os.PathLike) -> str:
    """The scheme of a cells.csv by its header, as make-demo-data writes them: ``ID`` and
    ``|``-separated labels for 2021, ``Id`` and space-separated for 2018."""
    header = next(csv.reader(open_csv(path)), [])
    return "hpa2021" if header and header[0] == "ID" else "hpa2018"


def read_cell_labels(
    path: str | os.PathLike, scheme: str, truth: bool = True
) -> dict[str, dict[int, list[int]]]:
    """``{field Id: {cell number: classes}}`` from a ``cells.csv`` (``ID,cell,Label``; the
    2018 scheme's ``Id`` and space-separated labels are read too).

    An empty Label is a cell that shows none of the classes in the 2018
    scheme, which has no class for that. In the 2021 scheme it is refused,
    with a message saying to write 18: there a cell without a pattern is
    Negative (18), a class scored like any other, so "no class" cannot be
    true of a 2021 cell, and reading the empty field as Negative would guess
    at what may as well be a cell nobody labelled. make-tfrecords
    ``--cell-labels`` and ``evaluate --cells`` both read cells.csv here, so
    they accept and refuse the same rows. Also refused: a missing column, an
    empty ID, a cell number that is not a positive integer, a class out of
    range and a (field, cell) pair listed twice. ``truth=False`` reads a table of
    predictions (``predict``'s ``_cells.csv``, for ``show``), where an empty 2021 Label
    is a cell with no class over its threshold.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: cell label file not found")
    with open_csv(path) as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        id_column = next((name for name in ("ID", "Id") if name in columns), None)
        if id_column is None or "cell" not in columns or "Label" not in columns:
            raise InputError(
                f"{path}: expected the columns ID,cell,Label (found {','.join(columns) or 'none'})"
            )
        table: dict[str, dict[int, list[int]]] = {}
        for line, row in enumerate(reader, start=2):
            try:
                number = int(row["cell"])
            except (TypeError, ValueError):
                raise InputError(
                    f"{path}, line {line}: cell {row['cell']!r} is not a cell number"
                ) from None
            if number < 1:
                raise InputError(f"{path}, line {line}: cell {number}; cells are numbered from 1")
            if not (row[id_column] or "").strip():
                raise InputError(f"{path}, line {line}: no field {id_column}")
            label_text = (row["Label"] or "").strip()
            if not label_text and truth and scheme == HPA2021.name:
                raise InputError(
                    f"{path}, line {line}: cell {number} of {row[id_column]} has an empty "
                    "Label; in the 2021 scheme a cell without a pattern is Negative: write 18"
                )
            try:
                labels = parse_target(
                    label_text.replace(" ", "|") if scheme == "hpa2021" else label_text,
                    allow_empty=True,
                    scheme=scheme,
                )
            except InputError as error:
                raise InputError(f"{path}, line {line}: {error}") from None
            cells = table.setdefault(row[id_column], {})
            if number in cells:
                raise InputError(
                    f"{path}, line {line}: cell {number} of {row[id_column]} is listed twice"
                )
            cells[number] = labels
    return table


def check_cell_rows(
    rows: dict[int, list[int]], present, field_id: str, masks, every_cell: bool = False
) -> None:
    """The rows a cells.csv gives one field against the cells its mask has: a row for a cell
    the mask lacks is an error (the labels were made for other masks), for make-tfrecords
    and evaluate alike. ``every_cell``: a mask cell without a row is one too (scoring needs
    the truth of every cell; a record may leave its cell's labels unknown)."""
    present = set(int(number) for number in present)
    where = Path(masks) / field_id
    unknown = sorted(set(rows) - present)
    if unknown:
        numbers = f"numbers {min(present)}-{max(present)}" if present else "none"
        raise InputError(
            f"{where}: cell label rows for cell {unknown[0]} of field {field_id}, which its "
            f"mask does not have ({len(present)} cells, {numbers}); were the labels made "
            "for other masks?"
        )
    unlabeled = sorted(present - set(rows))
    if every_cell and unlabeled:
        raise InputError(
            f"{where}: cell {unlabeled[0]} of field {field_id} has no cell label row "
            f"({len(unlabeled)} cells without one); every true cell needs its classes "
            "(2018: an empty Label for none; 2021: 18 for Negative)"
        )


@dataclass(frozen=True)
class CellSettings:
    """How cells are cut (part of ConversionSettings when --masks is given)."""

    masks: str
    cell_size: int
    margin: float
    context: str
    bit_depth: int
    sixteen_bit_rule: str


def cut_cells(
    field_id: str,
    channel_paths: dict,
    settings: CellSettings,
    cell_labels: dict[int, list[int]] | None,
    details: dict,
) -> list[dict]:
    """Every cell of one field as a dict: ``number``, ``image`` (S, S, 4), ``mask`` (S, S)
    uint8 0/1, ``box``, ``area``, ``edge``, ``small``, ``window`` (the crop's side in field
    pixels) and ``cell_labels`` (None where unknown).

    Raises InputError for a bad field or mask (see :mod:`hpa_keras.data.cells` for the
    mask rules) and for a cell label row whose cell is not in the mask.
    """
    image = read_sample(
        channel_paths, None, settings.sixteen_bit_rule, settings.bit_depth, details=details
    )
    cells, _ = read_field_masks(settings.masks, field_id, image.shape[:2])
    crops = cell_crops(image, cells, settings.cell_size, settings.margin, settings.context)
    if cell_labels is not None:
        check_cell_rows(cell_labels, {crop["number"] for crop in crops}, field_id, settings.masks)
    for crop in crops:
        crop["cell_labels"] = None if cell_labels is None else cell_labels.get(crop["number"])
    return crops


def cell_crops(
    image: np.ndarray, cells: np.ndarray, cell_size: int, margin: float, context: str
) -> list[dict]:
    """Every cell of a field's ``image`` (H, W, C) and its mask ``cells`` (H, W) as a dict:
    ``number``, ``image`` (S, S, C), ``mask`` (S, S) uint8 0/1, ``box``, ``area``, ``edge``,
    ``small`` and ``window`` (the crop's side in field pixels). The one rule cell records
    and ``annotate`` cut cells by."""
    crops = []
    for cell in cell_geometry(cells):
        top, left, side = crop_window(cell.box, margin)
        window = cut_window(image, top, left, side)
        inside = cut_window(cells, top, left, side) == cell.number
        crop = resize_window(window, cell_size)
        mask = resize_window(inside.astype(np.uint8), cell_size, nearest=True)
        if context == "zero":  # after resizing, so the stored mask bounds it exactly
            crop = crop * mask[..., None].astype(crop.dtype)
        crops.append(
            {
                "number": cell.number,
                "image": crop,
                "mask": mask,
                "box": cell.box,
                "area": cell.area,
                "edge": cell.edge,
                "small": cell.small,
                "window": side,
            }
        )
    return crops


def cell_features(field_id: str, crop: dict, num_classes: int) -> dict:
    """The record features a cell adds to a field record's (docs/cells.md, "Cell records")."""
    own = crop["cell_labels"]
    if own is not None and any(not 0 <= label < num_classes for label in own):
        raise InputError(f"cell {crop['number']} of {field_id}: label out of range")
    return {
        "field_id": field_id,
        "cell": crop["number"],
        "box": list(crop["box"]),
        "mask": mask_png_bytes(crop["mask"]),
        "cell_labels": list(own or []),
        "has_cell_labels": int(own is not None),
        "edge": int(crop["edge"]),
        "small": int(crop["small"]),
        "area": crop["area"],
        "window": crop["window"],
    }


def check_cell_label_fields(table: dict, field_ids, path) -> None:
    """Every field a cell label file names must be one of the record set's fields."""
    unknown = sorted(set(table) - set(field_ids))
    if unknown:
        raise InputError(
            f"{path}: gives cell labels for {len(unknown)} fields that are not in the label "
            f"files' fields with images (first: {unknown[0]})"
        )
