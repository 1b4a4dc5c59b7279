"""``make_tfrecords``: image folders and label files to one sharded, resumable record set.

A conversion reads one or more **sources**, each a folder of
``<Id>_<channel>`` images with its label file (the Kaggle training set, the
HPA v18 external images, ...), and writes one record set:

1. Plan: read the label files, index the folders, check that Ids are
   unique across sources, give every sample its group (fields of one
   antibody), assign multilabel-stratified folds that keep each group in
   one fold, cut each (fold, source) into shards, write ``plan.json``.
2. Write each shard to a temporary name, rename it when complete, then
   record its statistics in ``.progress/``.
3. Gather those into ``manifest.json``.

A run killed anywhere and started again with the same arguments finds the
plan, skips the shards it already finished and writes the rest; encoding is
deterministic, so the result is byte for byte that of an uninterrupted run.

Workers (:mod:`hpa_keras.parallel`) read, check, resize and encode samples;
only the main process imports TensorFlow, to serialize and write records.
Shards never mix folds or sources, so a fold (or one source of a fold, for
``fit --validate-source``) is read as whole files.

Why four PNGs rather than one 4-channel PNG: a Kaggle channel file that is
already a grayscale PNG of the right size and depth is stored byte for
byte, so conversion costs one decode (for checking and statistics) and no
encode, records are exactly the source files, and they are smaller than one
re-encoded 4-channel PNG (447 KiB a real 512x512 sample, see
benchmarks/bench_tfrecords.py). A loader can also decode only the channels
it uses.
"""

import collections
import csv
import dataclasses
import hashlib
import io
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from hpa_keras import __version__
from hpa_keras.atomic import atomic_path, removed_on_bad_input, write_text_atomic
from hpa_keras.classes import CHANNELS, get_scheme
from hpa_keras.data.cell_records import (
    CELL_CONTEXTS,
    CellSettings,
    cell_features,
    cell_record_id,
    check_cell_label_fields,
    cut_cells,
    read_cell_labels,
)
from hpa_keras.data.cells import find_mask_files, mask_ids
from hpa_keras.data.images import (
    BIT_DEPTHS,
    SAMPLE_SUBFOLDERS,
    SIXTEEN_BIT_RULES,
    encode_png,
    index_image_folder,
    read_sample,
    resize_square,
    sample_folder,
)
from hpa_keras.data.labels import DEFAULT_GROUP_COLUMN, LabelTable, read_id_file
from hpa_keras.data.splits import grouped_stratified_folds, stratified_folds
from hpa_keras.data.tfrecords import (
    ENCODINGS,
    FORMAT_VERSION,
    MANIFEST_FILE,
    PLAN_FILE,
    UNLABELED_FOLD,
    channel_statistics,
    encode_image,
    serialize_example,
    sha256_of,
)
from hpa_keras.errors import InputError
from hpa_keras.parallel import default_workers, ordered_map
from hpa_keras.settings import setting
from hpa_keras.storage import local_folder

PROGRESS_FOLDER = ".progress"
ERRORS_FILE = "errors.csv"
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
        0.1,
        "the crop around a cell: its box's longer side plus this share of it on each side",
        metavar="F",
    )
    cell_context: str = setting(
        "keep",
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


# ------------------------------------------------------------------ workers


@dataclass(frozen=True)
class _Task:
    """What a worker needs to turn one sample into record bytes."""

    sample_id: str
    channel_paths: dict
    image_size: int
    resize: bool
    encoding: str
    sixteen_bit_rule: str
    bit_depth: int
    cells: CellSettings | None = None  # set: cut the field into cell records
    cell_labels: dict | None = None  # {cell number: classes} of this field, where known


def _encode_task(task: _Task):
    """Read, check, resize and encode one sample; errors come back as values, not raised."""
    if not task.channel_paths:
        return task.sample_id, None, f"Id {task.sample_id}: no image files found (removed?)"
    if task.cells is not None:
        return _encode_cells_task(task)
    details = {}
    try:
        image = read_sample(
            task.channel_paths, None, task.sixteen_bit_rule, task.bit_depth, details=details
        )
        if image.shape[:2] != (task.image_size, task.image_size) and not task.resize:
            first = next(iter(task.channel_paths.values()))
            raise InputError(
                f"{first}: {image.shape[1]}x{image.shape[0]} pixels, but the data set's "
                f"samples are {task.image_size}x{task.image_size}; pass --image-size to "
                "resize all samples to one size"
            )
        resized = image.shape[:2] != (task.image_size, task.image_size)
        image = resize_square(image, task.image_size)
    except InputError as error:
        return task.sample_id, None, str(error)
    statistics = _channel_sums(image)
    if task.encoding == "png" and not resized:
        parts = [
            _source_png_bytes(task.channel_paths[channel], task.bit_depth)
            or encode_png(image[..., index])
            for index, channel in enumerate(CHANNELS)
        ]
    else:
        parts = encode_image(image, task.encoding)
    return task.sample_id, (parts, image.shape, statistics, details), None


def _encode_cells_task(task: _Task):
    """One field's cells as encoded crops: ``(Id, [(crop, parts, statistics)], details)``."""
    details = {}
    try:
        crops = cut_cells(task.sample_id, task.channel_paths, task.cells, task.cell_labels, details)
    except InputError as error:
        return task.sample_id, None, str(error)
    encoded = []
    for crop in crops:
        image = crop.pop("image")
        encoded.append(
            (crop, encode_image(image, task.encoding), image.shape, _channel_sums(image))
        )
    return task.sample_id, (encoded, details), None


def _channel_sums(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel sum and sum of squares of the pixels, exactly, via histograms.

    A histogram per channel (OpenCV's: 256 bins for uint8, 65,536 for uint16;
    0.5 ms for four 512x512 uint8 channels) is far cheaper than summing a
    float64 copy of every pixel, which cost as much as decoding the PNGs.
    OpenCV counts in float32: exact up to 2**24 pixels a bin (a 4096x4096
    field), within 1e-7 relative beyond.
    """
    levels = 65536 if image.dtype == np.uint16 else 256
    values = np.arange(levels, dtype=np.float64)
    histograms = np.stack(
        [
            cv2.calcHist([image], [channel], None, [levels], [0, levels]).ravel()
            for channel in range(image.shape[-1])
        ]
    ).astype(np.float64)
    return histograms @ values, histograms @ np.square(values)


def _source_png_bytes(path: Path, bit_depth: int) -> bytes | None:
    """A channel file's own bytes when it is already a grayscale PNG of ``bit_depth``, else None.

    The IHDR chunk at a fixed offset holds bit depth (byte 24) and colour type
    (byte 25, 0 = grayscale); the pixels were decoded and checked already.
    """
    data = Path(path).read_bytes()
    is_png = data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return data if is_png and data[24] == bit_depth and data[25] == 0 else None


# ------------------------------------------------------------------ planning


@dataclass
class _LoadedSource:
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


def _load_source(source: Source, group_column: str) -> _LoadedSource:
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
    return _LoadedSource(name, images, labels, table, index, ignored)


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


def _problems_of(source: _LoadedSource) -> list:
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


def _missing_of(source: _LoadedSource) -> dict:
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


def _check_sources(sources: list[_LoadedSource]) -> str | None:
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


def _unlabeled_scheme(sources: list[_LoadedSource]) -> str:
    """The one scheme the unlabeled sources' Id files name; the 2018 scheme when they differ
    or name none."""
    schemes = {source.table.scheme for source in sources if source.labels is not None}
    return schemes.pop() if len(schemes) == 1 else "hpa2018"


def _shard_sizes(count: int, samples_per_shard: int) -> list[int]:
    shards = max(1, int(np.ceil(count / samples_per_shard)))
    return [len(part) for part in np.array_split(np.arange(count), shards)]


def _make_plan(sources: list[_LoadedSource], settings: ConversionSettings, workers: int) -> dict:
    scheme = _check_sources(sources)
    labeled = scheme is not None
    problems = [problem for source in sources for problem in _problems_of(source)]
    missing = {source.name: _missing_of(source) for source in sources}
    if settings.missing == "ignore":
        problems = []
    elif problems and settings.on_error == "fail":
        raise InputError(
            problems[0][2]
            + _more(len(problems))
            + "; pass --missing ignore to convert the Ids that have files"
        )
    ids, labels_of, source_of, explicit_groups = [], {}, {}, {}
    for source in sources:
        table = source.table
        for row, sample_id in enumerate(table.ids):
            if sample_id not in source.index:
                continue
            ids.append(sample_id)
            labels_of[sample_id] = list(table.labels[row])
            source_of[sample_id] = source.name
            if table.groups is not None:
                explicit_groups[sample_id] = table.groups[row]
    if not ids:
        listed = ", ".join(str(source.labels) for source in sources)
        raise InputError(f"none of the Ids in {listed} has image files")
    if settings.per_cell:
        with_masks = set(mask_ids(settings.masks))  # one listing, not a stat per name
        without = [field_id for field_id in ids if field_id not in with_masks]
        if without and settings.on_error == "fail":
            raise InputError(
                f"{Path(settings.masks) / (without[0] + '_cells.png')}: no cell mask for field "
                f"{without[0]}{_more(len(without))}; run hpa-keras segment --images ... --out "
                f"{settings.masks}, or pass --on-error skip to leave such fields out"
            )

    rng = np.random.default_rng(settings.seed)
    grouping, fold_method = None, None
    if labeled:
        matrix = np.zeros((len(ids), get_scheme(scheme).num_classes), np.float32)
        for row, sample_id in enumerate(ids):
            matrix[row, labels_of[sample_id]] = 1
        groups = [sample_group(sample_id, explicit_groups.get(sample_id)) for sample_id in ids]
        sizes = collections.Counter(groups)
        grouping = {
            "rule": (
                f"the {settings.group_column!r} column of the label file"
                if explicit_groups
                else GROUP_RULE
            ),
            "num_groups": len(sizes),
            "largest_group": max(sizes.values()),
            "samples_in_shared_groups": sum(size for size in sizes.values() if size > 1),
        }
        if grouping["largest_group"] > 1:
            folds = grouped_stratified_folds(matrix, groups, settings.num_folds, settings.seed)
            fold_method = "grouped multilabel stratified"
        else:
            folds = stratified_folds(matrix, settings.num_folds, settings.seed)
            fold_method = "multilabel stratified"
        fold_of = dict(zip(ids, folds.tolist(), strict=True))
        # Within a shard the order is shuffled, so each shard mixes all kinds of samples.
        layout_groups = []
        for fold in range(settings.num_folds):
            for source in sources:
                members = [i for i in ids if fold_of[i] == fold and source_of[i] == source.name]
                if members:
                    layout_groups.append((fold, source.name, list(rng.permutation(members))))
    else:
        layout_groups = [  # file or CSV order: a submission keeps it
            (UNLABELED_FOLD, source.name, [i for i in ids if source_of[i] == source.name])
            for source in sources
        ]
        layout_groups = [group for group in layout_groups if group[2]]

    index = {sample_id: source.index[sample_id] for source in sources for sample_id in source.index}
    image_size, bytes_per_sample = _pilot(ids, index, settings, workers)
    if settings.num_shards is not None:
        per_group = [
            max(1, round(settings.num_shards * len(members) / len(ids)))
            for _, _, members in layout_groups
        ]
        samples_per_shard = [
            int(np.ceil(len(members) / count))
            for (_, _, members), count in zip(layout_groups, per_group, strict=True)
        ]
    else:
        megabytes = settings.shard_size_mb or DEFAULT_SHARD_SIZE_MB
        per_shard = max(1, int(megabytes * 2**20 // bytes_per_sample))
        samples_per_shard = [per_shard] * len(layout_groups)

    split = "train" if labeled else "test"
    layout = [
        (fold, name, members[start : start + size])
        for (fold, name, members), per_shard in zip(layout_groups, samples_per_shard, strict=True)
        for start, size in zip(
            np.cumsum([0] + _shard_sizes(len(members), per_shard)[:-1]),
            _shard_sizes(len(members), per_shard),
            strict=True,
        )
    ]
    total = len(layout)
    several = len(sources) > 1
    shards = []
    for number, (fold, name, members) in enumerate(layout):
        tag = (f"fold{fold}-" if labeled else "") + (f"{name}-" if several else "")
        shards.append(
            {
                "file": f"{split}-{tag}{number:05d}-of-{total:05d}.tfrecord",
                "fold": int(fold),
                "source": name,
                "ids": list(members),
            }
        )
    return {
        "format_version": FORMAT_VERSION,
        "arguments": _arguments_record(sources, settings),
        "split": split,
        "labeled": labeled,
        # an unlabeled set takes the scheme its sample submission names (2021's
        # PredictionString), so a 2021 test set predicts and submits in 2021's classes
        "scheme": scheme or _unlabeled_scheme(sources),
        "image_size": image_size,
        "fold_method": fold_method,
        "grouping": grouping,
        "labels": {sample_id: labels_of[sample_id] for sample_id in ids},
        "problems": [list(problem) for problem in problems],
        "sources": [
            {
                "name": source.name,
                "images": str(source.images.resolve()),
                "labels": str(source.labels.resolve()) if source.labels else None,
                "labels_sha256": _file_digest(source.labels),
                "ignored": source.ignored,
                "missing": missing[source.name] if settings.missing == "ignore" else None,
                "labels_with_repeated_classes": source.table.repeated_classes,
            }
            for source in sources
        ],
        "shards": shards,
    }


def _more(count: int) -> str:
    return f" (and {count - 1} more such problems)" if count > 1 else ""


def _pilot(ids, index, settings, workers):
    """The records' side, and their mean size in bytes, for the shard plan.

    Raw records have a known size, so only the side is needed: the settings'
    or, when fields keep their size, the first readable file's header. PNG
    records are sized by encoding the first two samples that read. Full-size
    fields cost 0.1-0.2 s each to decode, so nothing is decoded that the plan
    does not need (bad files are reported when their shard is written).
    """
    from hpa_keras.data.images import image_dimensions

    if settings.per_cell:
        return settings.cell_size, _cell_bytes_per_field(ids, settings)
    image_size = settings.image_size
    if image_size is None:
        for sample_id in ids[: max(8, workers)]:
            paths = [path for path in index[sample_id].values() if path is not None]
            try:
                height, width = image_dimensions(paths[0])
            except (InputError, IndexError):
                continue
            if height != width:
                raise InputError(
                    f"{paths[0]}: the field is not square ({width}x{height}); pass --image-size"
                )
            image_size = height
            break
    if settings.encoding == "raw" and image_size is not None:
        return int(image_size), float(image_size**2 * 4 * settings.bit_depth // 8)
    sizes, first_error = [], None
    for sample_id in ids[: max(8, workers)]:
        try:
            image = read_sample(
                index[sample_id], image_size, settings.sixteen_bit_rule, settings.bit_depth
            )
        except InputError as error:
            first_error = first_error or str(error)
            continue  # reported with the file and reason when its shard is written
        if image_size is None:
            image_size = image.shape[0]
        if image.shape[:2] == (image_size, image_size):
            sizes.append(sum(len(part) for part in encode_image(image, settings.encoding)))
        if len(sizes) == 2:
            break
    if image_size is None:
        tried = min(len(ids), max(8, workers))
        raise InputError(f"{first_error} (and none of the first {tried} samples could be read)")
    fallback = float(image_size**2 * 4 * settings.bit_depth // 8)
    return int(image_size), float(np.mean(sizes)) if sizes else fallback


def _cell_bytes_per_field(ids, settings) -> float:
    """The mean bytes of a field's cell records, from the cell counts of the first masks."""
    from hpa_keras.data.cells import read_mask

    counts = []
    for field_id in ids[:8]:
        cell_path, _ = find_mask_files(settings.masks, field_id)
        if cell_path is None:
            continue
        try:
            counts.append(np.unique(read_mask(cell_path)).size - 1)
        except InputError:
            continue  # reported with the file and reason when its shard is written
    per_cell = settings.cell_size**2 * (4 * settings.bit_depth // 8 + 1)
    if settings.encoding == "png":
        per_cell /= 2
    return float(max(np.mean(counts) if counts else 20.0, 1.0) * per_cell)


def _file_digest(path) -> str | None:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else None


def _arguments_record(sources: list[_LoadedSource], settings) -> dict:
    return {
        "sources": [
            {
                "name": source.name,
                "images": str(source.images.resolve()),
                "labels": str(source.labels.resolve()) if source.labels else None,
                "labels_sha256": _file_digest(source.labels),
            }
            for source in sources
        ],
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
                "cell_labels_sha256": _file_digest(settings.cell_labels),
            }
            if settings.per_cell
            else {}
        ),
    }


# ------------------------------------------------------------------ writing


def make_tfrecords(
    images: str | os.PathLike | None = None,
    out: str | os.PathLike = "tfrecords",
    labels: str | os.PathLike | None = None,
    settings: ConversionSettings = ConversionSettings(),  # noqa: B008 (frozen, so shareable)
    workers: int | None = None,
    progress: bool = True,
    sources: list[Source] | None = None,
) -> dict:
    """Convert image folders (and their labels) into sharded TFRecords; returns the manifest.

    Args:
        images, labels: one source: an image folder and its ``train.csv``
            (labeled records with folds), a ``sample_submission.csv`` or
            ``None`` (unlabeled records); or
        sources: several :class:`Source` folders into one record set (for
            example the Kaggle training set and the HPA v18 images).
        out: the output folder, or a URL (``gs://...``): written in a local
            folder, then uploaded file by file, the manifest last
            (:mod:`hpa_keras.storage`).
        settings: size, encoding, shards, folds, bit depth, grouping.
        workers: processes that read and encode (default: all cores).

    Started again with the same arguments after an interruption, it finishes
    the missing shards; with different arguments on the same ``out`` it
    refuses. Stopped by bad input (InputError), it removes what it wrote: a
    new ``out`` entirely (:func:`hpa_keras.atomic.removed_on_bad_input`).
    """
    settings.validate()
    if (images is None) == (sources is None):
        raise InputError("give an image folder, or a list of sources, not both")
    from hpa_keras import storage

    if storage.is_url(out):
        with storage.staged_folder(os.fspath(out)) as staged:
            return make_tfrecords(
                images, staged.local, labels, settings, workers, progress, sources
            )
    sources = sources if sources is not None else [Source(images, labels)]
    if any(source.labels is not None and storage.is_url(source.labels) for source in sources):
        # Label files are small: read a local copy (the digest and error messages name it
        # by its URL's file name).
        with tempfile.TemporaryDirectory(prefix="hpa-keras-labels-") as folder:
            local = []
            for index, source in enumerate(sources):
                if source.labels is not None and storage.is_url(source.labels):
                    copy_folder = Path(folder) / str(index)
                    copy_folder.mkdir()
                    copy = storage.download_file(os.fspath(source.labels), copy_folder)
                    source = dataclasses.replace(source, labels=copy)
                local.append(source)
            return make_tfrecords(None, out, None, settings, workers, progress, local)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    with removed_on_bad_input(out):
        return _convert(sources, out, settings, max(1, workers or default_workers()), progress)


def _convert(sources, out: Path, settings: ConversionSettings, workers: int, progress) -> dict:
    """make_tfrecords into the local folder ``out``."""
    loaded = [_load_source(source, settings.group_column) for source in sources]
    out.mkdir(parents=True, exist_ok=True)

    arguments = _arguments_record(loaded, settings)
    plan = _existing_plan(out, arguments)
    if plan is None:
        plan = _make_plan(loaded, settings, workers)
        write_text_atomic(out / PLAN_FILE, json.dumps(plan) + "\n")
    (out / PROGRESS_FOLDER).mkdir(exist_ok=True)
    _remove_stale_temporaries(out)

    index = {}  # indexed again on resume: picks up files fixed since
    for source in loaded:
        index.update(source.index)
    pending = [shard for shard in plan["shards"] if not _progress_path(out, shard).exists()]
    done = len(plan["shards"]) - len(pending)
    if done and pending:
        print(f"resuming: {done} of {len(plan['shards'])} shards already complete")
    total_samples = sum(len(shard["ids"]) for shard in pending)
    cell_settings = settings.cell_settings() if settings.per_cell else None
    cell_labels = _cell_label_table(settings, plan)
    tasks = (
        _Task(
            sample_id,
            index.get(sample_id, {}),
            plan["image_size"],
            settings.image_size is not None,
            settings.encoding,
            settings.sixteen_bit_rule,
            settings.bit_depth,
            cell_settings,
            None if cell_labels is None else cell_labels.get(sample_id, {}),
        )
        for shard in pending
        for sample_id in shard["ids"]
    )
    results = ordered_map(_encode_task, tasks, workers)
    try:
        with tqdm(
            total=total_samples,
            desc="writing records",
            unit="field" if settings.per_cell else "sample",
            disable=not progress,
            mininterval=0.5,
        ) as bar:
            for shard in pending:
                _write_shard(out, shard, plan, settings, results, bar)
    finally:
        results.close()  # stops the workers, also when a bad sample or Ctrl-C ends the run

    manifest = _assemble_manifest(out, plan, settings)
    write_text_atomic(out / MANIFEST_FILE, json.dumps(manifest, indent=1) + "\n")
    return manifest


def _cell_label_table(settings: ConversionSettings, plan: dict) -> dict | None:
    """The cell label file, read and checked against the plan's fields (None without one)."""
    if settings.cell_labels is None:
        return None
    table = read_cell_labels(settings.cell_labels, plan["scheme"])
    check_cell_label_fields(table, plan["labels"], settings.cell_labels)
    return table


def _existing_plan(out: Path, arguments: dict):
    plan_path = out / PLAN_FILE
    if not plan_path.exists():
        leftovers = sorted(path.name for path in out.glob("*.tfrecord"))
        if leftovers:
            raise InputError(
                f"{out}: holds shards ({leftovers[0]}, ...) but no {PLAN_FILE}; "
                "choose an empty folder"
            )
        return None
    plan = json.loads(plan_path.read_text())
    previous = plan.get("arguments", {})
    differences = [key for key in arguments if previous.get(key) != arguments[key]]
    if differences:
        raise InputError(
            f"{out}: holds records made with other arguments (differs in: "
            f"{', '.join(differences)}); use a new --out folder, or delete this one to start over"
        )
    return plan


def _progress_path(out: Path, shard: dict) -> Path:
    return out / PROGRESS_FOLDER / f"{shard['file']}.json"


def _remove_stale_temporaries(out: Path) -> None:
    for path in out.glob(".*.tfrecord.*.tmp"):
        path.unlink(missing_ok=True)


def _write_shard(out, shard, plan, settings, results, bar) -> None:
    """Write one shard atomically, then its statistics; raise on a bad sample in fail mode."""
    import tensorflow as tf

    num_classes = get_scheme(plan["scheme"]).num_classes
    class_counts = np.zeros(num_classes, np.int64)
    channel_sum = np.zeros(len(CHANNELS))
    channel_square_sum = np.zeros(len(CHANNELS))
    formats, sizes, depths = collections.Counter(), collections.Counter(), collections.Counter()
    pixels = written = 0
    skipped = []
    cell_totals = collections.Counter(fields=0, cells=0, edge=0, small=0, with_cell_labels=0)
    cell_class_counts = np.zeros(num_classes, np.int64)
    cells_per_field = []  # in record order: bags of a field's cells are counted from it
    with atomic_path(out / shard["file"]) as temporary:
        with tf.io.TFRecordWriter(str(temporary)) as writer:
            for expected_id in shard["ids"]:
                sample_id, encoded, error = next(results)
                bar.update()
                if sample_id != expected_id:  # the plan and the task stream must agree
                    raise RuntimeError(f"record order broke: {sample_id} != {expected_id}")
                if error is not None:
                    if settings.on_error == "fail":
                        raise InputError(error)
                    skipped.append([sample_id, _file_in(error), error])
                    continue
                labels = plan["labels"][sample_id]
                if settings.per_cell:
                    crops, details = encoded
                    records = [
                        (
                            cell_record_id(sample_id, crop["number"]),
                            parts,
                            shape,
                            statistics,
                            cell_features(sample_id, crop, num_classes),
                        )
                        for crop, parts, shape, statistics in crops
                    ]
                    cell_totals["fields"] += 1
                    cells_per_field.append(len(crops))
                else:
                    image_parts, shape, statistics, details = encoded
                    records = [(sample_id, image_parts, shape, statistics, None)]
                for record_id, image_parts, shape, (sums, square_sums), cell in records:
                    writer.write(
                        serialize_example(
                            record_id,
                            image_parts,
                            settings.encoding,
                            shape,
                            labels,
                            shard["fold"],
                            source=shard["source"],
                            original_size=details["original_size"],
                            bit_depth=settings.bit_depth,
                            cell=cell,
                        )
                    )
                    class_counts[labels] += 1
                    channel_sum += sums
                    channel_square_sum += square_sums
                    pixels += shape[0] * shape[1]
                    written += 1
                    if cell is not None:
                        cell_totals["cells"] += 1
                        cell_totals["edge"] += cell["edge"]
                        cell_totals["small"] += cell["small"]
                        cell_totals["with_cell_labels"] += cell["has_cell_labels"]
                        cell_class_counts[cell["cell_labels"]] += 1
                formats[details["format"]] += 1
                sizes["{1}x{0}".format(*details["original_size"])] += 1
                depths[str(details["bit_depth"])] += 1
        digest = sha256_of(temporary)
        size = temporary.stat().st_size
    progress = {
        "file": shard["file"],
        "fold": shard["fold"],
        "source": shard["source"],
        "num_records": written,
        "bytes": size,
        "sha256": digest,
        "class_counts": class_counts.tolist(),
        "channel_sum": channel_sum.tolist(),
        "channel_square_sum": channel_square_sum.tolist(),
        "pixels": pixels,
        "formats": dict(formats),
        "original_sizes": dict(sizes),
        "file_bit_depths": dict(depths),
        "skipped": skipped,
        "cell_totals": dict(cell_totals),
        "cells_per_field": cells_per_field,
        "cell_class_counts": cell_class_counts.tolist(),
    }
    write_text_atomic(_progress_path(out, shard), json.dumps(progress) + "\n")


def _file_in(error: str) -> str:
    """The file an error message names (messages start with 'path: reason')."""
    return error.split(": ", 1)[0]


def _merged_counts(entries, key) -> dict:
    total = collections.Counter()
    for entry in entries:
        total.update(entry[key])
    return dict(sorted(total.items()))


def _cell_summary(shards: list, settings: ConversionSettings) -> dict:
    """What a cell record set holds: fields, cells, flags, and how the crops were cut."""
    totals = collections.Counter()
    for shard in shards:
        totals.update(shard.get("cell_totals", {}))
    return {
        "masks": str(Path(settings.masks).resolve()),
        "cell_labels": str(Path(settings.cell_labels).resolve()) if settings.cell_labels else None,
        "cell_size": settings.cell_size,
        "margin": settings.cell_margin,
        "context": settings.cell_context,
        "num_fields": totals["fields"],
        "num_cells": totals["cells"],
        "num_edge": totals["edge"],
        "num_small": totals["small"],
        "num_with_cell_labels": totals["with_cell_labels"],
        "cell_class_counts": np.sum(
            [shard.get("cell_class_counts", [0]) for shard in shards], axis=0
        ).tolist(),
        "small_rule": "area under 0.1 of the field's median cell area",
        "edge_rule": "the cell's box touches the field's border",
    }


def _assemble_manifest(out: Path, plan: dict, settings: ConversionSettings) -> dict:
    shards = [json.loads(_progress_path(out, shard).read_text()) for shard in plan["shards"]]
    skipped = list(plan["problems"])
    for shard in shards:
        skipped.extend(shard["skipped"])
    errors_file = None
    if skipped:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["Id", "file", "reason"])
        writer.writerows(skipped)
        write_text_atomic(out / ERRORS_FILE, buffer.getvalue())
        errors_file = ERRORS_FILE
    else:
        (out / ERRORS_FILE).unlink(missing_ok=True)

    scheme = get_scheme(plan["scheme"])
    folds = []
    for fold in sorted({shard["fold"] for shard in shards}):
        members = [shard for shard in shards if shard["fold"] == fold]
        by_source = {}
        for shard in members:
            entry = by_source.setdefault(
                shard["source"], {"num_records": 0, "class_counts": [0] * scheme.num_classes}
            )
            entry["num_records"] += shard["num_records"]
            entry["class_counts"] = np.add(entry["class_counts"], shard["class_counts"]).tolist()
        folds.append(
            {
                "fold": fold,
                "num_records": sum(shard["num_records"] for shard in members),
                "shards": [shard["file"] for shard in members],
                "class_counts": np.sum(
                    [shard["class_counts"] for shard in members], axis=0
                ).tolist(),
                "channel_sum": np.sum([shard["channel_sum"] for shard in members], axis=0).tolist(),
                "channel_square_sum": np.sum(
                    [shard["channel_square_sum"] for shard in members], axis=0
                ).tolist(),
                "pixels": sum(shard["pixels"] for shard in members),
                "sources": by_source,
            }
        )
    mean, std = channel_statistics(folds)
    sources = []
    for source in plan["sources"]:
        members = [shard for shard in shards if shard["source"] == source["name"]]
        sources.append(
            {
                **source,
                "num_records": sum(shard["num_records"] for shard in members),
                "formats": _merged_counts(members, "formats"),
                "original_sizes": _merged_counts(members, "original_sizes"),
                "file_bit_depths": _merged_counts(members, "file_bit_depths"),
            }
        )
    ignored = {
        "num_ids": sum(source["ignored"]["num_ids"] for source in sources),
        "num_files": sum(source["ignored"]["num_files"] for source in sources),
        "first_ids": [i for source in sources for i in source["ignored"]["first_ids"]][:5],
    }
    return {
        "format_version": FORMAT_VERSION,
        "created_by": f"hpa-keras {__version__}",
        "kind": "cells" if settings.per_cell else "fields",
        "cells": _cell_summary(shards, settings) if settings.per_cell else None,
        "source": {key: sources[0][key] for key in ("images", "labels", "labels_sha256")},
        "sources": sources,
        "split": plan["split"],
        "labeled": plan["labeled"],
        "scheme": scheme.name,
        "class_names": list(scheme.class_names),
        "num_classes": scheme.num_classes,
        "image_size": plan["image_size"],
        "channels": list(CHANNELS),
        "encoding": settings.encoding,
        "bit_depth": settings.bit_depth,
        "sixteen_bit_rule": settings.sixteen_bit_rule,
        "num_folds": settings.num_folds if plan["labeled"] else 0,
        "fold_method": plan["fold_method"],
        "grouping": plan["grouping"],
        "seed": settings.seed,
        "num_records": sum(shard["num_records"] for shard in shards),
        "num_skipped": len(skipped),
        "errors_file": errors_file,
        "ignored": ignored,
        "class_counts": np.sum([fold["class_counts"] for fold in folds], axis=0).tolist(),
        "channel_mean": mean,
        "channel_std": std,
        "folds": folds,
        "shards": [
            {
                **{
                    key: shard[key]
                    for key in ("file", "fold", "source", "num_records", "bytes", "sha256")
                },
                **({"cells_per_field": shard["cells_per_field"]} if settings.per_cell else {}),
            }
            for shard in shards
        ],
    }
