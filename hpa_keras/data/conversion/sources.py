"""Settings and sources: what decides a record set, and each source's folder and label file.

:class:`ConversionSettings` holds every choice a resumed run must repeat;
a :class:`Source` is one image folder with its label file. Loading a source
indexes its folder and reads its labels (:func:`load_source`); the sources of
one conversion are checked together (:func:`check_sources`), and each is
described once, by :func:`source_record`, for the plan's arguments and the
manifest alike.
"""

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from hpa_keras.data.cell_records import (
    CELL_CONTEXTS,
    DEFAULT_CELL_CONTEXT,
    DEFAULT_CELL_MARGIN,
    CellSettings,
)
from hpa_keras.data.images import (
    BIT_DEPTHS,
    SAMPLE_SUBFOLDERS,
    SIXTEEN_BIT_RULES,
    index_image_folder,
    sample_folder,
)
from hpa_keras.data.labels import DEFAULT_GROUP_COLUMN, LabelTable, read_id_file
from hpa_keras.data.tfrecords import ENCODINGS
from hpa_keras.errors import InputError
from hpa_keras.settings import setting
from hpa_keras.storage import local_folder

DEFAULT_SHARD_SIZE_MB = 150
# HPA v18 Ids are <antibody>_<plate>_<well>_<field>[_suffix]; Kaggle 2018 Ids are UUIDs.
V18_ID = re.compile(r"^(?P<antibody>\d+)_[A-Za-z0-9]+_[A-Za-z]+\d+_\d+(?:_.*)?$")
KAGGLE_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
GROUP_RULE = "HPA v18 Ids: the antibody (the number before the first '_'); other Ids: their own"


@dataclass(frozen=True)
class ConversionSettings:
    """What decides the records; a resumed run must match these exactly."""

    image_size: int | None = setting(
        None,
        "store fields at SxS (area interpolation)",
        default_text="keep; all samples must then share one size",
        metavar="S",
    )
    encoding: str = setting(
        "raw",
        "raw: the pixels, the fastest to train from; png: the channel PNGs, lossless and "
        "about half the size, decoded while training",
        choices=ENCODINGS,
    )
    shard_size_mb: float | None = setting(
        None, "target shard size in MB", default_text=str(DEFAULT_SHARD_SIZE_MB), metavar="MB"
    )
    num_shards: int | None = setting(None, "number of shards instead of a size", metavar="N")
    num_folds: int = setting(5, "cross-validation folds", flag="--folds", metavar="K")
    seed: int = setting(0, "fixes the folds and the shard order")
    on_error: str = setting(
        "fail",
        "fail: stop at a bad sample; skip: leave it out and list it in errors.csv",
        choices=("fail", "skip"),
    )
    missing: str = setting(
        "fail",
        "Ids of a label file without image files: fail, or ignore them and count them (a "
        "partial download, such as part of the 74,606 HPA v18 images)",
        choices=("fail", "ignore"),
    )
    sixteen_bit_rule: str = setting(
        "full-range",
        "how 16-bit images become 8-bit: full-range (v * 255 / 65535) or per-image "
        "(each channel over its 99.99th percentile)",
        choices=SIXTEEN_BIT_RULES,
        flag="--sixteen-bit",
    )
    bit_depth: int = setting(
        8,
        "8: uint8 records (16-bit files converted by --sixteen-bit); 16: uint16 records, "
        "every file 16-bit",
        choices=BIT_DEPTHS,
    )
    group_column: str = setting(
        DEFAULT_GROUP_COLUMN,
        "label-file column giving each sample's group (kept in one fold), used when the "
        f"file has it; otherwise: {GROUP_RULE}",
        metavar="NAME",
    )
    masks: str | None = setting(
        None,
        "folder of cell masks (<Id>_cells.png from hpa-keras segment, or the HPA's or "
        "Cellpose's): write one record per cell instead of per field",
        default_text="records per field",
        metavar="MASKS",
    )
    cell_size: int = setting(128, "side of a cell record's crop, in pixels", metavar="S")
    cell_margin: float = setting(
        DEFAULT_CELL_MARGIN,
        "the crop around a cell: its box's longer side plus this share of it on each side",
        metavar="F",
    )
    cell_context: str = setting(
        DEFAULT_CELL_CONTEXT,
        "pixels of the crop outside the cell: keep (neighbours show) or zero",
        choices=CELL_CONTEXTS,
    )
    cell_labels: str | None = setting(
        None,
        "ID,cell,Label file of each cell's own classes (make-demo-data --cells writes "
        "cells.csv), stored beside the field's labels",
        default_text="none: cells carry their field's labels only",
        metavar="CSV",
    )

    def validate(self) -> None:
        if self.encoding not in ENCODINGS:
            raise InputError(f"--encoding must be one of {', '.join(ENCODINGS)}")
        if self.shard_size_mb is not None and self.num_shards is not None:
            raise InputError("give --shard-size-mb or --num-shards, not both")
        if self.shard_size_mb is not None and self.shard_size_mb <= 0:
            raise InputError(f"--shard-size-mb must be positive, got {self.shard_size_mb}")
        if self.num_shards is not None and self.num_shards < 1:
            raise InputError(f"--num-shards must be at least 1, got {self.num_shards}")
        if self.image_size is not None and not 8 <= self.image_size <= 8192:
            raise InputError(f"--image-size must be between 8 and 8192, got {self.image_size}")
        if self.on_error not in ("fail", "skip"):
            raise InputError(f"--on-error must be fail or skip, got {self.on_error}")
        if self.missing not in ("fail", "ignore"):
            raise InputError(f"--missing must be fail or ignore, got {self.missing}")
        if self.sixteen_bit_rule not in SIXTEEN_BIT_RULES:
            raise InputError(f"--sixteen-bit must be one of {', '.join(SIXTEEN_BIT_RULES)}")
        if self.bit_depth not in BIT_DEPTHS:
            raise InputError(f"--bit-depth must be 8 or 16, got {self.bit_depth}")
        if not self.group_column:
            raise InputError("--group-column must name a column")
        if self.masks is None and self.cell_labels is not None:
            raise InputError("--cell-labels needs --masks (the cells they number)")
        if self.masks is not None:
            if not local_folder(self.masks, "--masks").is_dir():
                raise InputError(f"{self.masks}: mask folder not found")
            if self.image_size is not None:
                raise InputError(
                    "--image-size resizes fields; with --masks cells are cut from fields at "
                    "their own size and stored at --cell-size"
                )
            if not 8 <= self.cell_size <= 2048:
                raise InputError(f"--cell-size must be between 8 and 2048, got {self.cell_size}")
            if not 0.0 <= self.cell_margin <= 1.0:
                raise InputError(f"--cell-margin must be in [0, 1], got {self.cell_margin}")
            if self.cell_context not in CELL_CONTEXTS:
                raise InputError(f"--cell-context must be one of {', '.join(CELL_CONTEXTS)}")

    @property
    def per_cell(self) -> bool:
        return self.masks is not None

    def cell_settings(self) -> CellSettings:
        return CellSettings(
            masks=str(self.masks),
            cell_size=self.cell_size,
            margin=self.cell_margin,
            context=self.cell_context,
            bit_depth=self.bit_depth,
            sixteen_bit_rule=self.sixteen_bit_rule,
        )


@dataclass(frozen=True)
class Source:
    """One image folder and its label file (``None``: unlabeled, every Id of the folder).

    ``name`` defaults to ``kaggle`` when every Id is a Kaggle 2018 UUID,
    ``hpa-v18`` when every Id is an HPA v18 field Id, else the folder's name.
    """

    images: str | os.PathLike
    labels: str | os.PathLike | None = None
    name: str | None = None


@dataclass
class LoadedSource:
    """A source read: its name, folder index, label table and the files it leaves out."""

    name: str
    images: Path
    labels: Path | None
    table: LabelTable
    index: dict
    ignored: dict


def _default_name(ids, images: Path) -> str:
    if ids and all(KAGGLE_ID.match(sample_id) for sample_id in ids):
        return "kaggle"
    if ids and all(V18_ID.match(sample_id) for sample_id in ids):
        return "hpa-v18"
    return re.sub(r"[^a-z0-9]+", "-", images.resolve().name.lower()).strip("-") or "images"


def load_source(source: Source, group_column: str) -> LoadedSource:
    images = local_folder(source.images, "--images")
    if not images.is_dir():
        raise InputError(f"{images}: image folder not found")
    index = index_image_folder(images)
    ignored = {"num_ids": 0, "num_files": 0, "first_ids": [], "reason": None}
    if source.labels is not None:
        table = read_id_file(source.labels, group_column)
        if table.ids and not any(sample_id in index for sample_id in table.ids):
            raise InputError(_no_files_message(images, source.labels, table.ids))
        ignored = _unlisted_files(table, index)
    else:
        if not index:
            raise InputError(_no_files_message(images, None, ()))
        ids = tuple(sorted(index))
        table = LabelTable(ids=ids, labels=tuple(() for _ in ids), source="", labeled=False)
    name = source.name or _default_name(sorted(set(table.ids) & set(index)), images)
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name):
        raise InputError(f"source name {name!r}: use lower-case letters, digits and '-'")
    labels = Path(source.labels) if source.labels is not None else None
    return LoadedSource(name, images, labels, table, index, ignored)


def _no_files_message(images: Path, labels, ids) -> str:
    """Why ``images`` has no files of the Ids in ``labels`` (of any Id, without labels); when a
    data set root was given for its image folder, the ``--images`` to give instead. (``--missing
    ignore`` would not help: it converts the Ids that have files, and none has.)"""
    if labels is not None:
        found = (sample_folder(images, sample_id) for sample_id in ids[:20])
        folders = [next((folder for folder in found if folder is not None), None)]
        what = f"none of the {len(ids)} Ids in {labels} has image files in {images}"
    else:
        subfolders = (images / name for name in SAMPLE_SUBFOLDERS if name)
        folders = [path for path in subfolders if path.is_dir() and index_image_folder(path)]
        what = f"{images}: no <Id>_<red|green|blue|yellow>.png/.tif/.jpg files"
    folders = [folder for folder in folders if folder is not None and folder != images]
    if len(folders) == 1:
        return f"{what}, but {folders[0]} has them: pass --images {folders[0]}"
    if folders:
        return (
            f"{what}, but {folders[0]} and {folders[1]} have them: pass --images {folders[0]} "
            f"(or {folders[1]})"
        )
    return what


def problems_of(source: LoadedSource) -> list:
    """``(Id, file, reason)`` for each Id of the label file that has no image files."""
    return [
        (
            sample_id,
            str(source.images / f"{sample_id}_<channel>.png"),
            f"Id {sample_id} in {source.labels} has no image files in {source.images}",
        )
        for sample_id in source.table.ids
        if source.labels is not None and sample_id not in source.index
    ]


def missing_of(source: LoadedSource) -> dict:
    """Ids of the label file without image files (``--missing ignore`` counts them)."""
    absent = [sample_id for sample_id in source.table.ids if sample_id not in source.index]
    if source.labels is None:
        absent = []
    return {"num_ids": len(absent), "first_ids": absent[:5]}


def _unlisted_files(table: LabelTable, index: dict) -> dict:
    """The image files of Ids the label file does not list: ignored, and counted.

    A download folder or a subset CSV (one fold, one class) is the usual
    reason, so these are not errors; the manifest and the command's output
    say how many files were left out, and the first few Ids.
    """
    unlisted = sorted(set(index) - set(table.ids))
    return {
        "num_ids": len(unlisted),
        "num_files": sum(len(index[sample_id]) for sample_id in unlisted),
        "first_ids": unlisted[:5],
        "reason": "not in the label file",
    }


def sample_group(sample_id: str, explicit: str | None = None) -> str:
    """The group a sample's fold follows: the label file's value when given, the antibody of
    an HPA v18 Id, else the Id itself (a group of one)."""
    if explicit is not None:
        return explicit
    match = V18_ID.match(sample_id)
    return match["antibody"] if match else f"id:{sample_id}"


def check_sources(sources: list[LoadedSource]) -> str | None:
    """Unique names and Ids, one labeled-ness and one scheme; returns the scheme."""
    names = [source.name for source in sources]
    if len(set(names)) != len(names):
        raise InputError(
            f"two sources are both named {max(names, key=names.count)!r}; name them apart "
            "with --source-name"
        )
    if len({source.table.labeled for source in sources}) > 1:
        labeled = next(source for source in sources if source.table.labeled)
        unlabeled = next(source for source in sources if not source.table.labeled)
        raise InputError(
            f"{unlabeled.images}: unlabeled, but {labeled.labels} gives labels; one record set "
            "is either a training set (labels) or a test set (none)"
        )
    schemes = {source.table.scheme for source in sources if source.table.labeled}
    if len(schemes) > 1:
        raise InputError(
            "the label files use different schemes ("
            + ", ".join(f"{source.labels}: {source.table.scheme}" for source in sources)
            + "); convert each scheme to its own record set"
        )
    owner = {}
    for source in sources:
        for sample_id in source.table.ids:
            if sample_id not in source.index:
                continue  # reported as a missing sample, not a duplicate
            if sample_id in owner:
                raise InputError(
                    f"Id {sample_id} is in {owner[sample_id].images} and in {source.images}; "
                    "every Id of a record set must be unique"
                )
            owner[sample_id] = source
    return schemes.pop() if schemes else None


def unlabeled_scheme(sources: list[LoadedSource]) -> str:
    """The one scheme the unlabeled sources' Id files name; the 2018 scheme when they differ
    or name none."""
    schemes = {source.table.scheme for source in sources if source.labels is not None}
    return schemes.pop() if len(schemes) == 1 else "hpa2018"


def file_digest(path) -> str | None:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else None


def source_record(source: LoadedSource) -> dict:
    """A source as the plan's arguments and the manifest name it: folders and label digest."""
    return {
        "name": source.name,
        "images": str(source.images.resolve()),
        "labels": str(source.labels.resolve()) if source.labels else None,
        "labels_sha256": file_digest(source.labels),
    }


def arguments_record(records: list[dict], settings: ConversionSettings) -> dict:
    """What a resumed run must repeat: the sources (their :func:`source_record`) and settings."""
    return {
        "sources": records,
        "image_size": settings.image_size,
        "encoding": settings.encoding,
        "shard_size_mb": settings.shard_size_mb,
        "num_shards": settings.num_shards,
        "num_folds": settings.num_folds,
        "seed": settings.seed,
        "on_error": settings.on_error,
        "missing": settings.missing,
        "sixteen_bit_rule": settings.sixteen_bit_rule,
        "bit_depth": settings.bit_depth,
        "group_column": settings.group_column,
        **(
            {
                "masks": str(Path(settings.masks).resolve()),
                "cell_size": settings.cell_size,
                "cell_margin": settings.cell_margin,
                "cell_context": settings.cell_context,
                "cell_labels": str(Path(settings.cell_labels).resolve())
                if settings.cell_labels
                else None,
                "cell_labels_sha256": file_digest(settings.cell_labels),
            }
            if settings.per_cell
            else {}
        ),
    }
