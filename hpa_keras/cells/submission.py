"""The 2021 challenge's submission format: each cell's mask and class confidences.

One row per field: ``ID,ImageWidth,ImageHeight,PredictionString``, where the
prediction string is space-separated triples ``class confidence mask``, one
per (cell, class) the submitter scores. ``mask`` is the cell's binary mask in
the encoding of the Open Images challenge, whose metric the 2021 challenge
used: COCO run-length encoding (pycocotools, column-major), compressed with
zlib at its best level, then base64 (ASCII). Listing every class for every
cell, each with its probability, is what ranks cells best under mean average
precision: a class left out is a confidence of zero.
"""

import base64
import csv
import io
import os
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hpa_keras.atomic import write_text_atomic
from hpa_keras.data.labels import open_csv
from hpa_keras.errors import InputError

COLUMNS = ("ID", "ImageWidth", "ImageHeight", "PredictionString")


def _coco_mask():
    try:
        from pycocotools import mask as coco_mask  # lazy: an optional dependency
    except ImportError:
        raise InputError(
            "the 2021 submission format needs pycocotools (pip install pycocotools), the COCO "
            "run-length encoder the challenge's metric decodes"
        ) from None
    return coco_mask


def encode_binary_mask(mask: np.ndarray) -> str:
    """A 2-D boolean mask as the challenge's text: COCO RLE, zlib, base64."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a cell mask is 2-D, got shape {mask.shape}")
    fortran = np.asfortranarray(mask.astype(np.uint8)[:, :, None])
    counts = _coco_mask().encode(fortran)[0]["counts"]
    return base64.b64encode(zlib.compress(counts, zlib.Z_BEST_COMPRESSION)).decode("ascii")


def rle_counts(counts: bytes) -> list[int]:
    """The run lengths of COCO's compressed RLE text (pycocotools' ``rleFrString``): each
    count in 5-bit groups of the characters ``0``-``o``, a set 0x20 bit continuing it, the
    sign in 0x10 of its last group, counts from the fourth on stored as differences from the
    count two before. InputError for a character outside the alphabet, a count cut off at
    the end, or a negative run length."""
    values, value, shift = [], 0, 0
    for character in counts:
        group = character - 48
        if not 0 <= group < 64:
            raise InputError(f"a mask whose RLE holds {chr(character)!r}, not COCO RLE text")
        value |= (group & 0x1F) << shift
        shift += 5
        if group & 0x20:
            continue
        if group & 0x10:
            value -= 1 << shift
        if len(values) > 2:
            value += values[-2]
        if value < 0:
            raise InputError(f"a mask whose RLE has a negative run length ({value})")
        values.append(value)
        value, shift = 0, 0
    if shift:
        raise InputError("a mask whose RLE text ends in the middle of a run length")
    return values


def decode_binary_mask(text: str, height: int, width: int) -> np.ndarray:
    """The inverse of :func:`encode_binary_mask`: a boolean ``(height, width)`` mask.

    The run lengths must add up to ``width x height`` exactly: pycocotools
    decodes runs that fall short or run over into an array of that size
    without a word (what it leaves unset is whatever memory held), so a mask
    of another size, or junk that happens to decompress, would be scored as
    some other shape. Checked here, it is an InputError saying both sizes.
    """
    try:
        counts = zlib.decompress(base64.b64decode(text, validate=True))
    except (ValueError, zlib.error) as error:
        raise InputError(f"a mask that is not base64 zlib-compressed COCO RLE ({error})") from None
    pixels = sum(rle_counts(counts))
    if pixels != int(height) * int(width):
        raise InputError(
            f"a mask whose run lengths cover {pixels} pixels, not the field's {width}x{height} "
            f"= {int(width) * int(height)} (a mask of another size?)"
        )
    rle = {"size": [int(height), int(width)], "counts": counts}
    try:
        with warnings.catch_warnings():  # pycocotools 2.0.11 calls np.array(copy=False)
            warnings.simplefilter("ignore", DeprecationWarning)
            return _coco_mask().decode(rle).astype(bool)
    except Exception as error:  # pycocotools raises bare exceptions on bad counts
        raise InputError(
            f"a mask whose run lengths do not fit {width}x{height} ({error})"
        ) from None


def prediction_string(cells: np.ndarray, probabilities: dict[int, np.ndarray]) -> str:
    """The PredictionString of one field: for each cell of ``cells`` (a label image) and
    each class, ``class confidence mask``; ``probabilities`` maps cell numbers to a vector
    of class probabilities."""
    parts = []
    for number in sorted(probabilities):
        encoded = encode_binary_mask(cells == number)
        for index, confidence in enumerate(np.asarray(probabilities[number], np.float64)):
            parts.append(f"{index} {confidence:.5g} {encoded}")
    return " ".join(parts)


def write_submission(path: str | os.PathLike, rows: list[tuple[str, int, int, str]]) -> None:
    """Write ``(ID, width, height, prediction string)`` rows atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    write_text_atomic(path, buffer.getvalue())


@dataclass(frozen=True)
class FieldPrediction:
    """One field of a 2021 submission: its size and ``(class, confidence, mask)`` items.

    The items of one cell (one encoded mask) share one decoded array, which is how
    :func:`hpa_keras.cells.average_precision.submission_fields` groups them into cells.
    """

    field_id: str
    width: int
    height: int
    items: list[tuple[int, float, np.ndarray]]


def read_submission(path: str | os.PathLike, num_classes: int = 19) -> dict[str, FieldPrediction]:
    """A 2021 submission, masks decoded; every problem is an error naming the line.

    Refused: a missing column, a field listed twice, a size that is not two
    positive integers, a PredictionString that is not ``class confidence
    mask`` triples, a class outside ``0..num_classes - 1``, a confidence that
    is not a number in [0, 1] (NaN included: it would sort anywhere), and a
    mask that is not base64 zlib COCO RLE of exactly the row's size.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: submission not found")
    # A 2048 px field's PredictionString (19 classes a cell, dozens of cells) runs to
    # megabytes, beyond the csv module's default field limit of 128 KiB.
    limit = csv.field_size_limit(2**31 - 1)
    try:
        return _read_rows(path, num_classes)
    finally:
        csv.field_size_limit(limit)


def _read_rows(path: Path, num_classes: int) -> dict[str, FieldPrediction]:
    fields = {}
    with open_csv(path) as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in COLUMNS if column not in (reader.fieldnames or [])]
        if missing:
            raise InputError(
                f"{path}: no {', '.join(missing)} column; expected {','.join(COLUMNS)}"
            )
        for line, row in enumerate(reader, start=2):
            where = f"{path}, line {line}"
            field_id = row["ID"]
            if field_id in fields:
                raise InputError(f"{where}: field {field_id} appears twice")
            try:
                width, height = int(row["ImageWidth"]), int(row["ImageHeight"])
            except (TypeError, ValueError):
                raise InputError(f"{where}: ImageWidth/ImageHeight are not integers") from None
            if width < 1 or height < 1:
                raise InputError(f"{where}: a field of {width}x{height} pixels")
            tokens = (row["PredictionString"] or "").split()
            if len(tokens) % 3:
                raise InputError(
                    f"{where}: {len(tokens)} values in PredictionString; expected triples "
                    "'class confidence mask'"
                )
            items, decoded = [], {}
            for start in range(0, len(tokens), 3):
                label_text, confidence_text, encoded = tokens[start : start + 3]
                try:
                    label, confidence = int(label_text), float(confidence_text)
                except ValueError:
                    raise InputError(
                        f"{where}: triple {start // 3 + 1} ({label_text} {confidence_text} ...) "
                        "does not start with a class number and a confidence"
                    ) from None
                if not 0 <= label < num_classes:
                    raise InputError(f"{where}: class {label} outside 0..{num_classes - 1}")
                if not 0.0 <= confidence <= 1.0:  # NaN fails too
                    raise InputError(
                        f"{where}: triple {start // 3 + 1}: confidence {confidence_text} of class "
                        f"{label}; confidences are probabilities in [0, 1]"
                    )
                if encoded not in decoded:
                    try:
                        decoded[encoded] = decode_binary_mask(encoded, height, width)
                    except InputError as error:
                        raise InputError(f"{where}: {error}") from None
                items.append((label, confidence, decoded[encoded]))
            fields[field_id] = FieldPrediction(field_id, width, height, items)
    return fields
