"""Reading and writing the challenge's label files.

``train.csv`` has columns ``Id,Target`` (Target: space-separated class
indices); ``sample_submission.csv`` has ``Id,Predicted`` and fixes the Ids and
their order for a submission. Files from other tools often carry a UTF-8
byte-order mark or Windows (CRLF) line ends; both are accepted. Everything else
that is wrong (an empty file, a missing column, a duplicate Id, a bad Target)
raises :class:`~hpa_keras.errors.InputError` naming the file, the line and the
reason, so a user can fix the row rather than guess.
"""

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hpa_keras.atomic import write_text_atomic
from hpa_keras.classes import NUM_CLASSES, format_target, parse_target
from hpa_keras.errors import InputError


@dataclass(frozen=True)
class LabelTable:
    """Sample Ids in file order, with their label sets (empty lists when unlabeled)."""

    ids: tuple[str, ...]
    labels: tuple[tuple[int, ...], ...]
    source: str = ""
    labeled: bool = True
    _row_of_id: dict = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if len(self.ids) != len(self.labels):
            raise ValueError("ids and labels must have the same length")
        object.__setattr__(
            self, "_row_of_id", {sample_id: row for row, sample_id in enumerate(self.ids)}
        )

    def __len__(self) -> int:
        return len(self.ids)

    def labels_of(self, sample_id: str) -> tuple[int, ...]:
        """The label set of one Id; ``KeyError`` if the Id is not in the table."""
        return self.labels[self._row_of_id[sample_id]]

    def multi_hot(self) -> np.ndarray:
        """An ``(N, 28)`` float32 matrix of the label sets."""
        matrix = np.zeros((len(self.ids), NUM_CLASSES), dtype=np.float32)
        for row, indices in enumerate(self.labels):
            matrix[row, list(indices)] = 1.0
        return matrix

    def class_counts(self) -> np.ndarray:
        """How many samples carry each of the 28 classes (int64)."""
        return self.multi_hot().sum(axis=0).astype(np.int64)


def read_labels(path: str | os.PathLike) -> LabelTable:
    """Read a ``train.csv``-style file (``Id,Target``; every row needs a label)."""
    ids, rows = _read_id_table(path, value_column="Target")
    labels = []
    for line, sample_id, target in rows:
        try:
            labels.append(tuple(parse_target(target)))
        except InputError as error:
            raise InputError(f"{path}: line {line} (Id {sample_id}): {error}") from None
    return LabelTable(ids=tuple(ids), labels=tuple(labels), source=str(path), labeled=True)


def read_sample_submission(path: str | os.PathLike) -> LabelTable:
    """Read a ``sample_submission.csv`` (``Id,Predicted``): the Ids, unlabeled.

    The ``Predicted`` column is a placeholder in the Kaggle file and is ignored.
    """
    ids, _ = _read_id_table(path, value_column="Predicted")
    return LabelTable(
        ids=tuple(ids), labels=tuple(() for _ in ids), source=str(path), labeled=False
    )


def read_id_file(path: str | os.PathLike) -> LabelTable:
    """Read either kind of file, deciding by its header (``Target`` or ``Predicted``).

    A header with neither is an error that names both, since either could
    have been meant.
    """
    text = _read_text(path)
    columns = [name.strip() for name in next(csv.reader(io.StringIO(text)), [])]
    if "Target" in columns:
        return read_labels(path)
    if "Predicted" in columns:
        return read_sample_submission(path)
    if not text.strip():
        raise InputError(f"{path}: file is empty; expected a header line 'Id,Target'")
    raise InputError(
        f"{path}: line 1: no 'Target' column (a label file has Id,Target; a sample submission "
        f"Id,Predicted); the header is {','.join(columns)!r}"
    )


def write_labels(path: str | os.PathLike, ids, labels, column: str = "Target") -> None:
    """Write ``Id,<column>`` rows atomically; ``labels`` are iterables of indices."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["Id", column])
    for sample_id, indices in zip(ids, labels, strict=True):
        writer.writerow([sample_id, format_target(indices)])
    write_text_atomic(path, buffer.getvalue())


def _read_text(path: str | os.PathLike) -> str:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, expected a CSV file") from None
    try:
        return data.decode("utf-8-sig")  # drops a byte-order mark if present
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not UTF-8 text (byte {error.start}: {error.reason})") from None


def _read_id_table(path, value_column: str):
    """Parse ``Id,<value_column>`` rows: ``(ids, [(line, id, value), ...])``."""
    text = _read_text(path)
    if not text.strip():
        raise InputError(f"{path}: file is empty; expected a header line 'Id,{value_column}'")
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [name.strip() for name in next(reader)]
    for required in ("Id", value_column):
        if required not in header:
            raise InputError(
                f"{path}: line 1: missing column '{required}' "
                f"(header is {','.join(header)!r}; expected 'Id,{value_column}')"
            )
    id_column, value_index = header.index("Id"), header.index(value_column)
    ids, rows, first_line_of = [], [], {}
    for fields in reader:
        line = reader.line_num
        if not any(value.strip() for value in fields):
            continue  # blank lines, including a trailing one
        if len(fields) != len(header):
            raise InputError(
                f"{path}: line {line}: {len(fields)} fields, expected {len(header)} "
                f"({','.join(header)})"
            )
        sample_id = fields[id_column].strip()
        if not sample_id:
            raise InputError(f"{path}: line {line}: empty Id")
        if sample_id in first_line_of:
            raise InputError(
                f"{path}: line {line}: duplicate Id {sample_id} "
                f"(first seen on line {first_line_of[sample_id]})"
            )
        first_line_of[sample_id] = line
        ids.append(sample_id)
        rows.append((line, sample_id, fields[value_index]))
    if not ids:
        raise InputError(f"{path}: has a header but no rows")
    return ids, rows
