"""The manifest of a TFRecord set (``manifest.json``): its format, read and written here.

:class:`Manifest` names every field of the file with its type and its default;
:meth:`Manifest.from_dict` checks a parsed file (InputError naming the file and
the field) and :meth:`Manifest.to_dict` gives what ``make-tfrecords`` writes.
The questions answered from a manifest alone (the folds to train on, class
counts, labels per image, fold balance, the record set's fingerprint, channel
statistics) are its methods.

Fields added after a record set was written read with their defaults: a
manifest of format 1 (before sources, bit depths and label schemes) reads as
one 8-bit source named ``default`` in the 2018 scheme; one written before cell
records reads as fields. This module imports no TensorFlow.
"""

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field

import numpy as np

from hpa_keras.classes import CHANNELS, HPA2018, get_scheme
from hpa_keras.data.splits import balance_of_counts
from hpa_keras.errors import InputError

MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
UNLABELED_FOLD = -1
LEGACY_SOURCE = "default"  # the one source of a record set made before sources existed
KINDS = ("fields", "cells")

# What every manifest, of any format version, holds (the rest is read with defaults).
MANIFEST_KEYS = (
    "format_version",
    "num_records",
    "image_size",
    "labeled",
    "shards",
    "folds",
)

# The keys each entry of ``shards`` and ``folds`` must hold, with their types.
SHARD_KEYS = {"file": str, "fold": int, "num_records": int, "sha256": str}
FOLD_KEYS = {"fold": int, "num_records": int, "class_counts": list}


def _no_ignored() -> dict:
    return {"num_ids": 0, "num_files": 0, "first_ids": []}


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """A record set's ``manifest.json``, field by field, in the order the file has them.

    Fields without a default are required (:data:`MANIFEST_KEYS`). Defaults of
    ``None`` marked *derived* are filled by :meth:`from_dict` from other fields
    (the format-1 meaning): ``sources`` (one source ``default`` holding every
    record), ``class_names`` and ``num_classes`` (of ``scheme``),
    ``class_counts`` (summed over the folds), ``channel_mean`` and
    ``channel_std`` (from the folds' channel sums). Each fold entry holds
    ``fold``, ``num_records``, ``shards``, ``class_counts``, ``channel_sum``,
    ``channel_square_sum``, ``pixels`` and ``sources`` (per-source records and
    class counts); each shard entry ``file``, ``fold``, ``source``,
    ``num_records``, ``bytes``, ``sha256`` (and ``cells_per_field`` for cells).
    """

    format_version: int
    created_by: str | None = None
    kind: str = "fields"  # "cells": one record per cell crop
    cells: dict | None = None  # cell records: masks, crop settings and counts
    source: dict | None = None  # the first source's images, labels and labels_sha256
    sources: list[dict] | None = None  # derived
    split: str | None = None  # "train" or "test"
    labeled: bool
    scheme: str = HPA2018.name
    class_names: list[str] | None = None  # derived
    num_classes: int | None = None  # derived
    image_size: int
    channels: list[str] = field(default_factory=lambda: list(CHANNELS))
    encoding: str = "png"
    bit_depth: int = 8
    sixteen_bit_rule: str = "full-range"
    num_folds: int = 0
    fold_method: str | None = "stratified"
    grouping: dict | None = None
    seed: int | None = None
    num_records: int
    num_skipped: int = 0
    errors_file: str | None = None
    ignored: dict = field(default_factory=_no_ignored)
    class_counts: list[int] | None = None  # derived
    channel_mean: list[float] | None = None  # derived
    channel_std: list[float] | None = None  # derived
    folds: list[dict]
    shards: list[dict]

    # ------------------------------------------------------------ reading and writing

    @classmethod
    def from_dict(cls, data, path=MANIFEST_FILE) -> "Manifest":
        """The manifest in ``data`` (a parsed ``manifest.json``); InputError naming ``path``
        and the field when it is not an object, lacks a required field or has a wrong type.
        """
        if not isinstance(data, dict):
            kind = type(data).__name__
            raise InputError(f"{path}: not a manifest (a JSON {kind}, not an object)")
        missing = [key for key in MANIFEST_KEYS if key not in data]
        if missing:
            raise InputError(f"{path}: not a complete manifest (no {', '.join(missing)})")
        if data["format_version"] not in READABLE_VERSIONS or isinstance(
            data["format_version"], bool
        ):
            raise InputError(
                f"{path}: format version {data['format_version']}, this hpa-keras reads "
                f"{', '.join(map(str, READABLE_VERSIONS))}"
            )
        names = [item.name for item in dataclasses.fields(cls)]
        values = {key: data[key] for key in names if key in data}
        for item in dataclasses.fields(cls):
            if item.name in values and not _accepts(item.type, values[item.name]):
                raise InputError(
                    f"{path}: field {item.name!r} is {_described(values[item.name], item.type)}, "
                    f"not {_type_name(item.type)}"
                )
        for name, keys in (("shards", SHARD_KEYS), ("folds", FOLD_KEYS)):
            for index, entry in enumerate(values[name]):
                for key, kind in keys.items():
                    if key not in entry:
                        raise InputError(f"{path}: field '{name}[{index}].{key}' is missing")
                    if not _accepts(kind, entry[key]):
                        raise InputError(
                            f"{path}: field '{name}[{index}].{key}' is "
                            f"{_described(entry[key])}, not {_type_name(kind)}"
                        )
        if values.get("kind", "fields") not in KINDS:
            raise InputError(f"{path}: field 'kind' is {values['kind']!r}, not one of {KINDS}")
        try:
            get_scheme(values.get("scheme", HPA2018.name))
        except InputError as error:
            raise InputError(f"{path}: field 'scheme': {error}") from None
        return cls(**_with_derived_defaults(values))

    def to_dict(self) -> dict:
        """The manifest as ``make-tfrecords`` writes it (``json.dumps(..., indent=1)``)."""
        return {item.name: getattr(self, item.name) for item in dataclasses.fields(self)}

    def to_json(self) -> str:
        """The text of ``manifest.json``."""
        return json.dumps(self.to_dict(), indent=1) + "\n"

    # ------------------------------------------------------------ derived

    @property
    def is_cells(self) -> bool:
        """Whether the records are cell crops (``kind == "cells"``), not whole fields."""
        return self.kind == "cells"

    @property
    def source_names(self) -> list[str]:
        """The names of the record set's sources, in conversion order."""
        return [source["name"] for source in self.sources]

    @property
    def labeled_folds(self) -> list[int]:
        """The folds of labeled records, in the manifest's order."""
        return [fold["fold"] for fold in self.folds if fold["fold"] != UNLABELED_FOLD]

    @property
    def num_bytes(self) -> int:
        """The shards' total size in bytes."""
        return sum(shard.get("bytes", 0) for shard in self.shards)

    def fold_entry(self, fold: int) -> dict | None:
        """The ``folds`` entry of ``fold`` (None when there is none)."""
        return next((entry for entry in self.folds if entry["fold"] == fold), None)

    def fingerprint(self) -> str:
        """The identity of the record set's contents: a digest of its shards' own sha256
        digests and folds. The same records have the same fingerprint wherever the folder
        lies (copied, moved, reached by another path); different records, never."""
        entries = sorted((shard["sha256"], int(shard["fold"])) for shard in self.shards)
        return hashlib.sha256(json.dumps(entries).encode("ascii")).hexdigest()

    def training_folds(self, validation_fold: int) -> list[int]:
        """The labeled folds other than ``validation_fold``; errors when the fold is absent."""
        if not self.labeled:
            raise InputError("data: the TFRecords have no labels (made from a test set?)")
        folds = self.labeled_folds
        if validation_fold not in folds:
            raise InputError(f"fold: {validation_fold} is not in the data's folds {folds}")
        if len(folds) < 2:
            raise InputError("data: needs at least two folds (one to validate on)")
        return [fold for fold in folds if fold != validation_fold]

    def class_counts_of(self, folds) -> tuple[np.ndarray, int]:
        """Per-class positive counts and the number of records in ``folds``."""
        chosen = [fold for fold in self.folds if fold["fold"] in set(folds)]
        counts = np.sum([fold["class_counts"] for fold in chosen], axis=0)
        return np.asarray(counts, dtype=np.int64), int(sum(fold["num_records"] for fold in chosen))

    def labels_per_image(self, folds) -> float:
        """The mean number of labels per record in ``folds`` (from the class counts)."""
        counts, records = self.class_counts_of(folds)
        return float(counts.sum() / records) if records else 0.0

    def sources_only_in_fold(self, fold: int) -> list[tuple[str, int]]:
        """``(name, records)`` of each source whose every record is in ``fold``: with ``fold``
        validating, training sees none of it (grouped folds can put a small source in one)."""
        entry = self.fold_entry(fold)
        if entry is None:
            return []
        found = []
        for source in self.sources:
            in_fold = entry.get("sources", {}).get(source["name"], {}).get("num_records", 0)
            if source["num_records"] and in_fold == source["num_records"]:
                found.append((source["name"], source["num_records"]))
        return found

    def summarize_folds(self) -> dict | None:
        """Fold balance of a labeled record set (see
        :func:`hpa_keras.data.splits.balance_of_counts`); None with fewer than two folds."""
        folds = [fold for fold in self.folds if fold["fold"] != UNLABELED_FOLD]
        if len(folds) < 2:
            return None
        return balance_of_counts(
            [fold["class_counts"] for fold in folds], [fold["num_records"] for fold in folds]
        )

    def channel_statistics(self, exclude_folds=()) -> tuple[list, list]:
        """Per-channel mean and std over the folds not excluded (:func:`channel_statistics`)."""
        return channel_statistics(self.folds, exclude_folds)


def channel_statistics(folds: list[dict], exclude_folds=()) -> tuple[list, list]:
    """Per-channel mean and std (in the stored pixel units: 0-255, or 0-65535 for 16-bit
    records) over the folds not excluded.

    The manifest keeps per-fold sums so that a model validated on fold k can be
    normalized with statistics of the other folds only.
    """
    kept = [fold for fold in folds if fold["fold"] not in set(exclude_folds)]
    pixels = sum(fold["pixels"] for fold in kept)
    if pixels == 0:
        return [0.0] * len(CHANNELS), [1.0] * len(CHANNELS)
    total = np.sum([fold["channel_sum"] for fold in kept], axis=0)
    square = np.sum([fold["channel_square_sum"] for fold in kept], axis=0)
    mean = total / pixels
    std = np.sqrt(np.maximum(square / pixels - mean**2, 0.0))
    return [round(float(value), 4) for value in mean], [round(float(value), 4) for value in std]


def _with_derived_defaults(values: dict) -> dict:
    """``values`` with the derived fields that are missing filled in (their format-1
    meaning); the entries of ``shards`` and ``folds`` are copied, never changed in place."""
    values = dict(values)
    scheme = get_scheme(values.get("scheme", HPA2018.name))
    values.setdefault("class_names", list(scheme.class_names))
    values.setdefault("num_classes", len(values["class_names"]))
    if "sources" not in values:
        source = dict(values.get("source") or {}, name=LEGACY_SOURCE)
        source["num_records"] = values["num_records"]
        values["sources"] = [source]
    values["shards"] = [
        shard if "source" in shard else {**shard, "source": LEGACY_SOURCE}
        for shard in values["shards"]
    ]
    values["folds"] = [
        fold
        if "sources" in fold
        else {
            **fold,
            "sources": {
                LEGACY_SOURCE: {
                    "num_records": fold["num_records"],
                    "class_counts": fold["class_counts"],
                }
            },
        }
        for fold in values["folds"]
    ]
    if "class_counts" not in values:
        counts = [fold["class_counts"] for fold in values["folds"]]
        values["class_counts"] = (
            np.sum(counts, axis=0).tolist() if counts else [0] * values["num_classes"]
        )
    if "channel_mean" not in values or "channel_std" not in values:
        try:
            mean, std = channel_statistics(values["folds"])
        except KeyError:  # folds without channel sums
            mean, std = [0.0] * len(CHANNELS), [1.0] * len(CHANNELS)
        values.setdefault("channel_mean", mean)
        values.setdefault("channel_std", std)
    return values


def _accepts(kind, value) -> bool:
    """Whether ``value`` (parsed JSON) is of the annotated type ``kind``."""
    if isinstance(kind, types.UnionType):
        return any(_accepts(option, value) for option in typing.get_args(kind))
    if kind is type(None):
        return value is None
    origin = typing.get_origin(kind)
    if origin is list:
        (item,) = typing.get_args(kind)
        return isinstance(value, list) and all(_accepts(item, entry) for entry in value)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, kind)


_NAMES = {
    int: "an integer",
    float: "a number",
    str: "a string",
    bool: "true or false",
    dict: "an object",
    list: "a list",
    type(None): "null",
}


def _list_item(kind):
    """The item type of ``kind``'s list option (``list[float] | None``: float), or None."""
    options = typing.get_args(kind) if isinstance(kind, types.UnionType) else (kind,)
    for option in options:
        if typing.get_origin(option) is list:
            return typing.get_args(option)[0]
    return None


def _type_name(kind) -> str:
    if isinstance(kind, types.UnionType):
        return " or ".join(_type_name(option) for option in typing.get_args(kind))
    if typing.get_origin(kind) is list:
        (item,) = typing.get_args(kind)
        return f"a list of {_type_name(item).split(' ', 1)[-1]}s"
    return _NAMES.get(kind, kind.__name__)


def _described(value, kind=None) -> str:
    """A parsed JSON value as a message names it: its JSON type and, when short, itself;
    for a list meant to hold ``kind``'s items, its first entry that does not."""
    if isinstance(value, list):
        item = _list_item(kind)
        for index, entry in enumerate(value):
            if item is not None and not _accepts(item, entry):
                return f"a list with {_described(entry)} at [{index}]"
        return "a list"
    text = json.dumps(value)
    shown = f" ({text})" if len(text) <= 40 else ""
    return f"{_type_name(type(value))}{shown}"
