"""Reading and writing the challenges' label files, in either scheme.

- 2018 (``hpa2018``): ``train.csv`` has ``Id,Target`` (space-separated
  indices 0-27); ``sample_submission.csv`` has ``Id,Predicted``.
- 2021 (``hpa2021``): ``train.csv`` has ``ID,Label`` (``|``-separated
  indices 0-18); its ``sample_submission.csv`` has ``ID,ImageWidth,
  ImageHeight,PredictionString``.

The scheme is read from the header (``Target`` or ``Label``); the Id column
may be ``Id`` or ``ID`` in either. A file may carry a grouping column (by
default ``Group``): samples of one group (fields of one antibody) are then
kept in one cross-validation fold.

Files from other tools often carry a UTF-8 byte-order mark or Windows (CRLF)
line ends; both are accepted. Everything else that is wrong (an empty file,
a missing column, a duplicate Id, a bad label, an empty group) raises
:class:`~hpa_keras.errors.InputError` naming the file, the line and the
reason, so a user can fix the row rather than guess.
"""

import csv
import io
import os
from dataclasses import dataclass, field

import numpy as np

from hpa_keras.atomic import write_text_atomic
from hpa_keras.classes import SCHEMES, format_target, get_scheme, parse_target
from hpa_keras.errors import InputError
from hpa_keras.storage import read_bytes

ID_COLUMNS = ("Id", "ID")
UNLABELED_COLUMNS = {"Predicted": "hpa2018", "PredictionString": "hpa2021"}
DEFAULT_GROUP_COLUMN = "Group"


@dataclass(frozen=True)
class LabelTable:
    """Sample Ids in file order, with their label sets (empty lists when unlabeled).

    ``scheme`` names the label scheme (``"hpa2018"`` or ``"hpa2021"``);
    ``groups`` holds each sample's group when the file had a grouping
    column, else ``None``; ``repeated_classes`` counts the rows whose label
    set named a class twice (collapsed in the 2021 scheme, see
    :class:`hpa_keras.classes.LabelScheme`).
    """

    ids: tuple[str, ...]
    labels: tuple[tuple[int, ...], ...]
    source: str = ""
    labeled: bool = True
    scheme: str = "hpa2018"
    groups: tuple[str, ...] | None = None
    repeated_classes: int = 0
    _row_of_id: dict = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if len(self.ids) != len(self.labels):
            raise ValueError("ids and labels must have the same length")
        if self.groups is not None and len(self.groups) != len(self.ids):
            raise ValueError("ids and groups must have the same length")
        object.__setattr__(
            self, "_row_of_id", {sample_id: row for row, sample_id in enumerate(self.ids)}
        )

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def num_classes(self) -> int:
        return get_scheme(self.scheme).num_classes

    def labels_of(self, sample_id: str) -> tuple[int, ...]:
        """The label set of one Id; ``KeyError`` if the Id is not in the table."""
        return self.labels[self._row_of_id[sample_id]]

    def multi_hot(self) -> np.ndarray:
        """An ``(N, classes)`` float32 matrix of the label sets."""
        matrix = np.zeros((len(self.ids), self.num_classes), dtype=np.float32)
        for row, indices in enumerate(self.labels):
            matrix[row, list(indices)] = 1.0
        return matrix

    def class_counts(self) -> np.ndarray:
        """How many samples carry each class (int64)."""
        return self.multi_hot().sum(axis=0).astype(np.int64)


def read_labels(
    path: str | os.PathLike, group_column: str | None = DEFAULT_GROUP_COLUMN
) -> LabelTable:
    """Read a labeled file: ``Id,Target`` (2018) or ``ID,Label`` (2021); every row needs a label.

    ``group_column``: the column holding each sample's group, read when the
    file has it (every row then needs a value); ``None`` ignores it.
    """
    text = _read_text(path)
    header = _header(text)
    column = "Label" if "Label" in header and "Target" not in header else "Target"
    scheme = "hpa2021" if column == "Label" else "hpa2018"
    ids, rows, groups = _read_id_table(path, text, column, group_column)
    labels, repeated = [], 0
    separator = get_scheme(scheme).separator
    for line, sample_id, target in rows:
        try:
            labels.append(tuple(parse_target(target, scheme=scheme)))
        except InputError as error:
            raise InputError(f"{path}: line {line} (Id {sample_id}): {error}") from None
        tokens = [token for token in target.split(separator.strip() or None) if token.strip()]
        repeated += len(tokens) != len(labels[-1])
    return LabelTable(
        ids=tuple(ids),
        labels=tuple(labels),
        source=str(path),
        labeled=True,
        scheme=scheme,
        groups=groups,
        repeated_classes=repeated,
    )


def read_sample_submission(path: str | os.PathLike) -> LabelTable:
    """Read a sample submission (``Id,Predicted`` or 2021's ``ID,...,PredictionString``): the
    Ids, unlabeled. The prediction column is a placeholder in the Kaggle files and is ignored."""
    text = _read_text(path)
    header = _header(text)
    column = next((name for name in UNLABELED_COLUMNS if name in header), "Predicted")
    ids, _, _ = _read_id_table(path, text, column, None)
    return LabelTable(
        ids=tuple(ids),
        labels=tuple(() for _ in ids),
        source=str(path),
        labeled=False,
        scheme=UNLABELED_COLUMNS[column],
    )


def read_id_file(
    path: str | os.PathLike, group_column: str | None = DEFAULT_GROUP_COLUMN
) -> LabelTable:
    """Read either kind of file, deciding by its header: ``Target`` or ``Label`` (labeled,
    2018 or 2021), ``Predicted`` or ``PredictionString`` (a sample submission).

    A header with none of them is an error that names them, since any could
    have been meant.
    """
    text = _read_text(path)
    columns = _header(text)
    if "Target" in columns or "Label" in columns:
        return read_labels(path, group_column)
    if any(name in columns for name in UNLABELED_COLUMNS):
        return read_sample_submission(path)
    if not text.strip():
        raise InputError(f"{path}: file is empty; expected a header line 'Id,Target'")
    raise InputError(
        f"{path}: line 1: no 'Target' column (a label file has Id,Target, or ID,Label in the "
        f"2021 scheme; a sample submission Id,Predicted); the header is {','.join(columns)!r}"
    )


def write_labels(
    path: str | os.PathLike, ids, labels, column: str | None = None, scheme="hpa2018"
) -> None:
    """Write ``Id,<column>`` rows atomically (2021: ``ID,Label`` with ``|``); ``labels`` are
    iterables of indices. ``column`` defaults to the scheme's label column."""
    scheme = get_scheme(scheme)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([scheme.id_column, column or scheme.label_column])
    for sample_id, indices in zip(ids, labels, strict=True):
        writer.writerow([sample_id, format_target(indices, scheme)])
    write_text_atomic(path, buffer.getvalue())


def open_csv(path: str | os.PathLike) -> io.StringIO:
    """A CSV file's text, ready for ``csv.reader``: read once, decoded as UTF-8 (a byte-order
    mark dropped), with one line naming the file when it is missing, a folder or not text."""
    text = _read_text(path)
    if "\0" in text:
        raise InputError(f"{path}: not a CSV text file (it holds NUL bytes)")
    return io.StringIO(text, newline="")


def _read_text(path: str | os.PathLike) -> str:

    try:
        data = read_bytes(path)  # a local file or a URL (gs://, ram://)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, expected a CSV file") from None
    try:
        return data.decode("utf-8-sig")  # drops a byte-order mark if present
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not UTF-8 text (byte {error.start}: {error.reason})") from None


def _header(text: str) -> list[str]:
    return [name.strip() for name in next(csv.reader(io.StringIO(text)), [])]


def _read_id_table(path, text: str, value_column: str, group_column: str | None):
    """Parse ``Id,<value_column>[,<group_column>]`` rows.

    Returns ``(ids, [(line, id, value), ...], groups or None)``.
    """
    if not text.strip():
        raise InputError(f"{path}: file is empty; expected a header line 'Id,{value_column}'")
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [name.strip() for name in next(reader)]
    id_name = next((name for name in ID_COLUMNS if name in header), None)
    if id_name is None:
        raise InputError(
            f"{path}: line 1: missing column 'Id' "
            f"(header is {','.join(header)!r}; expected 'Id,{value_column}')"
        )
    if value_column not in header:
        raise InputError(
            f"{path}: line 1: missing column '{value_column}' "
            f"(header is {','.join(header)!r}; expected '{id_name},{value_column}')"
        )
    id_column, value_index = header.index(id_name), header.index(value_column)
    group_index = header.index(group_column) if group_column in header else None
    ids, rows, groups, first_line_of = [], [], [], {}
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
        if group_index is not None:
            group = fields[group_index].strip()
            if not group:
                raise InputError(
                    f"{path}: line {line} (Id {sample_id}): empty {group_column}; every row "
                    f"needs a group when the file has a {group_column} column"
                )
            groups.append(group)
        first_line_of[sample_id] = line
        ids.append(sample_id)
        rows.append((line, sample_id, fields[value_index]))
    if not ids:
        raise InputError(f"{path}: has a header but no rows")
    return ids, rows, (tuple(groups) if group_index is not None else None)


__all__ = [
    "DEFAULT_GROUP_COLUMN",
    "SCHEMES",
    "LabelTable",
    "read_id_file",
    "read_labels",
    "read_sample_submission",
    "write_labels",
]
