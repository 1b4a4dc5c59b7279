"""Encoding and writing shards: worker processes encode samples, the main process writes.

Workers (:mod:`hpa_keras.parallel`) read, check, resize and encode samples;
only the main process imports TensorFlow, to serialize and write records.
Each shard is written to a temporary name and renamed when complete, then
its statistics go to ``.progress/<shard>.json``: a finished shard is never
written again, and encoding is deterministic, so a resumed run ends byte
for byte as an uninterrupted one.
"""

import collections
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from hpa_keras.atomic import atomic_path, write_text_atomic
from hpa_keras.classes import CHANNELS, get_scheme
from hpa_keras.data.cell_records import (
    CellSettings,
    cell_features,
    cell_record_id,
    check_cell_label_fields,
    cut_cells,
    read_cell_labels,
)
from hpa_keras.data.conversion.sources import ConversionSettings
from hpa_keras.data.images import encode_png, read_sample, resize_square
from hpa_keras.data.tfrecords import encode_image, serialize_example, sha256_of
from hpa_keras.errors import InputError
from hpa_keras.parallel import ordered_map

PROGRESS_FOLDER = ".progress"


def progress_path(out: Path, shard: dict) -> Path:
    """Where a finished shard's statistics are kept until the manifest gathers them."""
    return out / PROGRESS_FOLDER / f"{shard['file']}.json"


def remove_stale_temporaries(out: Path) -> None:
    for path in out.glob(".*.tfrecord.*.tmp"):
        path.unlink(missing_ok=True)


def write_shards(
    out: Path, plan: dict, index: dict, settings: ConversionSettings, workers: int, progress: bool
) -> None:
    """Encode the samples of the shards not finished yet, in plan order, and write them."""
    pending = [shard for shard in plan["shards"] if not progress_path(out, shard).exists()]
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


def _cell_label_table(settings: ConversionSettings, plan: dict) -> dict | None:
    """The cell label file, read and checked against the plan's fields (None without one)."""
    if settings.cell_labels is None:
        return None
    table = read_cell_labels(settings.cell_labels, plan["scheme"])
    check_cell_label_fields(table, plan["labels"], settings.cell_labels)
    return table


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

    A histogram per channel (OpenCV's: 256 bins for uint8, 65,536 for uint16)
    is far cheaper than summing a float64 copy of every pixel, which costs
    about as much as decoding the PNGs. OpenCV counts in float32: exact up to
    2**24 pixels a bin (a 4096x4096 field), within 1e-7 relative beyond.
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


# ------------------------------------------------------------------ writing


class _ShardTotals:
    """What a shard's records add up to: the statistics its progress file keeps."""

    def __init__(self, num_classes: int):
        self.class_counts = np.zeros(num_classes, np.int64)
        self.channel_sum = np.zeros(len(CHANNELS))
        self.channel_square_sum = np.zeros(len(CHANNELS))
        self.formats = collections.Counter()
        self.sizes = collections.Counter()
        self.depths = collections.Counter()
        self.pixels = self.written = 0
        self.skipped = []
        self.cell_totals = collections.Counter(
            fields=0, cells=0, edge=0, small=0, with_cell_labels=0
        )
        self.cell_class_counts = np.zeros(num_classes, np.int64)
        self.cells_per_field = []  # in record order: bags of a field's cells are counted from it

    def add_field(self, num_cells: int) -> None:
        self.cell_totals["fields"] += 1
        self.cells_per_field.append(num_cells)

    def add_record(self, labels, shape, sums, square_sums, cell: dict | None) -> None:
        self.class_counts[labels] += 1
        self.channel_sum += sums
        self.channel_square_sum += square_sums
        self.pixels += shape[0] * shape[1]
        self.written += 1
        if cell is not None:
            self.cell_totals["cells"] += 1
            self.cell_totals["edge"] += cell["edge"]
            self.cell_totals["small"] += cell["small"]
            self.cell_totals["with_cell_labels"] += cell["has_cell_labels"]
            self.cell_class_counts[cell["cell_labels"]] += 1

    def add_sample(self, details: dict) -> None:
        self.formats[details["format"]] += 1
        self.sizes["{1}x{0}".format(*details["original_size"])] += 1
        self.depths[str(details["bit_depth"])] += 1

    def progress(self, shard: dict, size: int, digest: str) -> dict:
        return {
            "file": shard["file"],
            "fold": shard["fold"],
            "source": shard["source"],
            "num_records": self.written,
            "bytes": size,
            "sha256": digest,
            "class_counts": self.class_counts.tolist(),
            "channel_sum": self.channel_sum.tolist(),
            "channel_square_sum": self.channel_square_sum.tolist(),
            "pixels": self.pixels,
            "formats": dict(self.formats),
            "original_sizes": dict(self.sizes),
            "file_bit_depths": dict(self.depths),
            "skipped": self.skipped,
            "cell_totals": dict(self.cell_totals),
            "cells_per_field": self.cells_per_field,
            "cell_class_counts": self.cell_class_counts.tolist(),
        }


def _write_shard(out, shard, plan, settings, results, bar) -> None:
    """Write one shard atomically, then its statistics; raise on a bad sample in fail mode."""
    import tensorflow as tf  # the deliberate lazy import: only the writing process needs it

    num_classes = get_scheme(plan["scheme"]).num_classes
    totals = _ShardTotals(num_classes)
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
                    totals.skipped.append([sample_id, _file_in(error), error])
                    continue
                labels = plan["labels"][sample_id]
                records, details = _records_of(sample_id, encoded, settings, num_classes)
                if settings.per_cell:
                    totals.add_field(len(records))
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
                    totals.add_record(labels, shape, sums, square_sums, cell)
                totals.add_sample(details)
        digest = sha256_of(temporary)
        size = temporary.stat().st_size
    progress = totals.progress(shard, size, digest)
    write_text_atomic(progress_path(out, shard), json.dumps(progress) + "\n")


def _records_of(sample_id, encoded, settings, num_classes: int):
    """A worker's result as ``(record Id, image parts, shape, statistics, cell features)``
    records, one a field or one a cell, and the field's file details."""
    if not settings.per_cell:
        image_parts, shape, statistics, details = encoded
        return [(sample_id, image_parts, shape, statistics, None)], details
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
    return records, details


def _file_in(error: str) -> str:
    """The file an error message names (messages start with 'path: reason')."""
    return error.split(": ", 1)[0]
