"""Sharded TFRecords with stratified folds: schema, resumable writer, manifest, verify.

One ``tf.train.Example`` per sample (the schema is in README.md, "TFRecord
format", so any TFRecord reader can use the shards):

    id        bytes    the sample Id
    image     bytes[]  png: four grayscale 8-bit PNGs, red, green, blue, yellow;
                       raw: one value, uint8 pixels in (height, width, 4) order
    format    bytes    b"png" or b"raw"
    height, width, channels   int64
    labels    int64[]  class indices (empty for unlabeled samples)
    fold      int64    cross-validation fold, -1 for unlabeled samples

A conversion runs in three steps. (1) Plan: read the labels, index the image
folder, assign multilabel-stratified folds, order and cut each fold into
shards, and write ``plan.json``. (2) Write each shard to a temporary name,
rename it when complete, then record its statistics in ``.progress/``. (3)
Gather those into ``manifest.json``. A run killed anywhere and started again
with the same arguments finds the plan, skips the shards it already finished
and writes the rest; encoding is deterministic, so the result is byte for
byte the same as an uninterrupted run.

Workers (``hpa_keras.parallel``) read, check, resize and encode samples; only
the main process imports TensorFlow, to serialize and write records.

Why four PNGs rather than one 4-channel PNG: a Kaggle channel file that is
already an 8-bit grayscale PNG of the right size is stored byte for byte, so
conversion costs one decode (for checking and statistics) and no encode,
records are exactly the source files, and they are smaller than one
re-encoded 4-channel PNG (447 KiB a real 512x512 sample, see
benchmarks/bench_tfrecords.py). A loader can also
decode only the channels it uses.
"""

import csv
import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from hpa_keras import __version__
from hpa_keras.atomic import atomic_path, write_text_atomic
from hpa_keras.classes import CHANNELS, CLASS_NAMES, NUM_CLASSES
from hpa_keras.data.images import (
    SIXTEEN_BIT_RULES,
    decode_png,
    encode_png,
    index_image_folder,
    read_sample,
    resize_square,
)
from hpa_keras.data.labels import LabelTable, read_id_file
from hpa_keras.data.splits import balance_of_counts, stratified_folds
from hpa_keras.errors import InputError
from hpa_keras.parallel import default_workers, ordered_map
from hpa_keras.settings import setting

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
PLAN_FILE = "plan.json"
PROGRESS_FOLDER = ".progress"
ERRORS_FILE = "errors.csv"
ENCODINGS = ("png", "raw")
DEFAULT_SHARD_SIZE_MB = 150
UNLABELED_FOLD = -1
READ_BUFFER_BYTES = 8 * 2**20  # TFRecordDataset read buffer: large sequential reads


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
        "raw: uint8 pixels, the fastest to train from; png: the channel PNGs, lossless and "
        "2.3x smaller, decoded while training",
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
    sixteen_bit_rule: str = setting(
        "full-range",
        "how 16-bit images become 8-bit: full-range (v * 255 / 65535) or per-image "
        "(each channel over its 99.99th percentile)",
        choices=SIXTEEN_BIT_RULES,
        flag="--sixteen-bit",
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
        if self.sixteen_bit_rule not in SIXTEEN_BIT_RULES:
            raise InputError(f"--sixteen-bit must be one of {', '.join(SIXTEEN_BIT_RULES)}")


# ------------------------------------------------------------------ records


def serialize_example(
    sample_id: str, image_parts: list[bytes], encoding: str, shape, labels, fold: int
) -> bytes:
    """One record, serialized; ``image_parts`` as made by :func:`encode_image`."""
    import tensorflow as tf

    def int64_list(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))

    def bytes_list(values):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))

    height, width, channels = shape
    features = {
        "id": bytes_list([sample_id.encode("utf-8")]),
        "image": bytes_list(image_parts),
        "format": bytes_list([encoding.encode("ascii")]),
        "height": int64_list([height]),
        "width": int64_list([width]),
        "channels": int64_list([channels]),
        "labels": int64_list(labels),
        "fold": int64_list([fold]),
    }
    example = tf.train.Example(features=tf.train.Features(feature=features))
    # deterministic: map entries sorted, so every process writes the same bytes (resume, tests)
    return example.SerializeToString(deterministic=True)


def encode_image(image: np.ndarray, encoding: str) -> list[bytes]:
    """``(H, W, 4)`` uint8 to the stored parts: four grayscale PNGs, or one raw buffer."""
    if encoding == "png":
        return [encode_png(image[..., channel]) for channel in range(image.shape[-1])]
    return [np.ascontiguousarray(image, dtype=np.uint8).tobytes()]


def decode_image(parts: list[bytes], encoding: str, shape) -> np.ndarray:
    """The inverse of :func:`encode_image` (numpy; the tf.data loader has its own)."""
    if encoding == "png":
        if len(parts) != shape[-1]:
            raise ValueError(f"{len(parts)} PNG parts, the record says {shape[-1]} channels")
        image = np.stack([decode_png(part) for part in parts], axis=-1)
    else:
        image = np.frombuffer(parts[0], np.uint8)
        if image.size != int(np.prod(shape)):
            raise ValueError(f"{image.size} raw bytes, expected {int(np.prod(shape))}")
        image = image.reshape(shape)
    if tuple(image.shape) != tuple(shape):
        raise ValueError(f"image has shape {image.shape}, record says {tuple(shape)}")
    return image


def parse_example_bytes(serialized: bytes) -> dict:
    """A record's fields as Python values (for verify and for readers outside tf.data)."""
    import tensorflow as tf

    feature = tf.train.Example.FromString(serialized).features.feature
    return {
        "id": feature["id"].bytes_list.value[0].decode("utf-8"),
        "image": list(feature["image"].bytes_list.value),
        "format": feature["format"].bytes_list.value[0].decode("ascii"),
        "shape": (
            feature["height"].int64_list.value[0],
            feature["width"].int64_list.value[0],
            feature["channels"].int64_list.value[0],
        ),
        "labels": list(feature["labels"].int64_list.value),
        "fold": feature["fold"].int64_list.value[0],
    }


def read_shard(path: str | os.PathLike) -> list[dict]:
    """Every record of one shard, parsed and with ``image`` decoded to numpy."""
    import tensorflow as tf

    records = []
    for serialized in tf.data.TFRecordDataset(
        str(path), buffer_size=READ_BUFFER_BYTES
    ).as_numpy_iterator():
        record = parse_example_bytes(serialized)
        record["image"] = decode_image(record["image"], record["format"], record["shape"])
        records.append(record)
    return records


# ------------------------------------------------------------------ planning


@dataclass(frozen=True)
class _Task:
    """What a worker needs to turn one sample into record bytes."""

    sample_id: str
    channel_paths: dict
    image_size: int
    resize: bool
    encoding: str
    sixteen_bit_rule: str


def _encode_task(task: _Task):
    """Read, check, resize and encode one sample; errors come back as values, not raised."""
    if not task.channel_paths:
        return task.sample_id, None, f"Id {task.sample_id}: no image files found (removed?)"
    try:
        image = read_sample(task.channel_paths, None, task.sixteen_bit_rule)
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
            _source_png_bytes(task.channel_paths[channel]) or encode_png(image[..., index])
            for index, channel in enumerate(CHANNELS)
        ]
    else:
        parts = encode_image(image, task.encoding)
    return task.sample_id, (parts, image.shape, statistics), None


_LEVELS = np.arange(256, dtype=np.float64)


def _channel_sums(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel sum and sum of squares of uint8 pixels, exactly, via histograms.

    A 256-bin histogram per channel (OpenCV's, 0.5 ms for four 512x512
    channels) is far cheaper than summing a float64 copy of every pixel, which
    cost as much as decoding the PNGs. OpenCV counts in float32: exact up to
    2**24 pixels a bin (a 4096x4096 field), within 1e-7 relative beyond.
    """
    histograms = np.stack(
        [
            cv2.calcHist([image], [channel], None, [256], [0, 256]).ravel()
            for channel in range(image.shape[-1])
        ]
    ).astype(np.float64)
    return histograms @ _LEVELS, histograms @ np.square(_LEVELS)


def _source_png_bytes(path: Path) -> bytes | None:
    """A channel file's own bytes when it is already an 8-bit grayscale PNG, else None.

    The IHDR chunk at a fixed offset holds bit depth (byte 24) and colour type
    (byte 25, 0 = grayscale); the pixels were decoded and checked already.
    """
    data = Path(path).read_bytes()
    is_png = data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return data if is_png and data[24] == 8 and data[25] == 0 else None


def _problems_between(table: LabelTable, index: dict, images: Path, labels_path) -> list:
    """``(Id, file, reason)`` for each Id of the label file that has no image files."""
    return [
        (
            sample_id,
            str(images / f"{sample_id}_<channel>.png"),
            f"Id {sample_id} in {labels_path} has no image files in {images}",
        )
        for sample_id in table.ids
        if sample_id not in index
    ]


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


def _shard_sizes(count: int, samples_per_shard: int) -> list[int]:
    shards = max(1, int(np.ceil(count / samples_per_shard)))
    return [len(part) for part in np.array_split(np.arange(count), shards)]


def _make_plan(
    images: Path, index: dict, labels, settings: ConversionSettings, workers: int
) -> dict:
    ignored = {"num_ids": 0, "num_files": 0, "first_ids": [], "reason": None}
    if labels is not None:
        table = read_id_file(labels)
        problems = _problems_between(table, index, images, labels)
        ignored = _unlisted_files(table, index)
    else:
        if not index:
            raise InputError(f"{images}: no <Id>_<red|green|blue|yellow>.png/.tif/.jpg files")
        ids = tuple(sorted(index))
        table = LabelTable(ids=ids, labels=tuple(() for _ in ids), source="", labeled=False)
        problems = []
    if problems and settings.on_error == "fail":
        raise InputError(problems[0][2] + _more(len(problems)))
    usable = [row for row, sample_id in enumerate(table.ids) if sample_id in index]
    if not usable:
        raise InputError(f"{images}: none of the Ids in {labels} has image files")
    ids = [table.ids[row] for row in usable]
    labels_of = {table.ids[row]: list(table.labels[row]) for row in usable}

    rng = np.random.default_rng(settings.seed)
    if table.labeled:
        matrix = table.multi_hot()[usable]
        folds = stratified_folds(matrix, settings.num_folds, settings.seed)
        # Within a fold the order is shuffled, so each shard mixes all kinds of samples.
        groups = [
            (fold, [ids[row] for row in rng.permutation(np.flatnonzero(folds == fold))])
            for fold in range(settings.num_folds)
        ]
    else:
        groups = [(UNLABELED_FOLD, ids)]  # file or CSV order: a submission keeps it

    image_size, bytes_per_sample = _pilot(ids, index, settings, workers)
    if settings.num_shards is not None:
        per_group = [
            max(1, round(settings.num_shards * len(members) / len(ids))) for _, members in groups
        ]
        samples_per_shard = [
            int(np.ceil(len(members) / count))
            for (_, members), count in zip(groups, per_group, strict=True)
        ]
    else:
        megabytes = settings.shard_size_mb or DEFAULT_SHARD_SIZE_MB
        per_shard = max(1, int(megabytes * 2**20 // bytes_per_sample))
        samples_per_shard = [per_shard] * len(groups)

    split = "train" if table.labeled else "test"
    layout = [
        (fold, members[start : start + size])
        for (fold, members), per_shard in zip(groups, samples_per_shard, strict=True)
        for start, size in zip(
            np.cumsum([0] + _shard_sizes(len(members), per_shard)[:-1]),
            _shard_sizes(len(members), per_shard),
            strict=True,
        )
    ]
    total = len(layout)
    shards = []
    for number, (fold, members) in enumerate(layout):
        tag = f"fold{fold}-" if table.labeled else ""
        shards.append(
            {
                "file": f"{split}-{tag}{number:05d}-of-{total:05d}.tfrecord",
                "fold": int(fold),
                "ids": list(members),
            }
        )
    return {
        "format_version": FORMAT_VERSION,
        "arguments": _arguments_record(images, labels, settings),
        "split": split,
        "labeled": table.labeled,
        "image_size": image_size,
        "labels": {sample_id: labels_of[sample_id] for sample_id in ids},
        "problems": [list(problem) for problem in problems],
        "ignored": ignored,
        "shards": shards,
    }


def _more(count: int) -> str:
    return f" (and {count - 1} more such problems)" if count > 1 else ""


def _pilot(ids, index, settings, workers):
    """The records' side, and their mean size in bytes, from the first few readable samples."""
    sizes, image_size = [], settings.image_size
    for sample_id in ids[: max(8, workers)]:
        try:
            image = read_sample(index[sample_id], settings.image_size, settings.sixteen_bit_rule)
        except InputError:
            continue  # reported with the file and reason when its shard is written
        if image_size is None:
            if image.shape[0] != image.shape[1]:
                raise InputError(
                    f"{next(iter(index[sample_id].values()))}: the field is not square "
                    f"({image.shape[1]}x{image.shape[0]}); pass --image-size"
                )
            image_size = image.shape[0]
        if image.shape[:2] == (image_size, image_size):
            sizes.append(sum(len(part) for part in encode_image(image, settings.encoding)))
    if image_size is None:
        raise InputError(
            f"none of the first {min(len(ids), max(8, workers))} samples could be read "
            f"(first Id {ids[0]}); check the image folder"
        )
    return int(image_size), float(np.mean(sizes)) if sizes else float(image_size**2 * 4)


def _arguments_record(images, labels, settings) -> dict:
    labels_digest = hashlib.sha256(Path(labels).read_bytes()).hexdigest() if labels else None
    return {
        "images": str(Path(images).resolve()),
        "labels": str(Path(labels).resolve()) if labels else None,
        "labels_sha256": labels_digest,
        "image_size": settings.image_size,
        "encoding": settings.encoding,
        "shard_size_mb": settings.shard_size_mb,
        "num_shards": settings.num_shards,
        "num_folds": settings.num_folds,
        "seed": settings.seed,
        "on_error": settings.on_error,
        "sixteen_bit_rule": settings.sixteen_bit_rule,
    }


# ------------------------------------------------------------------ writing


def make_tfrecords(
    images: str | os.PathLike,
    out: str | os.PathLike,
    labels: str | os.PathLike | None = None,
    settings: ConversionSettings = ConversionSettings(),  # noqa: B008 (frozen, so shareable)
    workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Convert an image folder (and its labels) into sharded TFRecords; returns the manifest.

    ``labels``: a ``train.csv`` (labeled records with folds), a
    ``sample_submission.csv`` or ``None`` (unlabeled records). Started again
    with the same arguments after an interruption, it finishes the missing
    shards; with different arguments on the same ``out`` it refuses.
    """
    settings.validate()
    images, out = Path(images), Path(out)
    if not images.is_dir():
        raise InputError(f"{images}: image folder not found")
    workers = max(1, workers or default_workers())
    out.mkdir(parents=True, exist_ok=True)

    arguments = _arguments_record(images, labels, settings)
    plan = _existing_plan(out, arguments)
    index = index_image_folder(images)  # again on resume: picks up files fixed since
    if plan is None:
        plan = _make_plan(images, index, labels, settings, workers)
        write_text_atomic(out / PLAN_FILE, json.dumps(plan) + "\n")
    (out / PROGRESS_FOLDER).mkdir(exist_ok=True)
    _remove_stale_temporaries(out)

    pending = [shard for shard in plan["shards"] if not _progress_path(out, shard).exists()]
    done = len(plan["shards"]) - len(pending)
    if done and pending:
        print(f"resuming: {done} of {len(plan['shards'])} shards already complete")
    total_samples = sum(len(shard["ids"]) for shard in pending)
    tasks = (
        _Task(
            sample_id,
            index.get(sample_id, {}),
            plan["image_size"],
            settings.image_size is not None,
            settings.encoding,
            settings.sixteen_bit_rule,
        )
        for shard in pending
        for sample_id in shard["ids"]
    )
    results = ordered_map(_encode_task, tasks, workers)
    try:
        with tqdm(
            total=total_samples,
            desc="writing records",
            unit="sample",
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

    class_counts = np.zeros(NUM_CLASSES, np.int64)
    channel_sum = np.zeros(len(CHANNELS))
    channel_square_sum = np.zeros(len(CHANNELS))
    pixels = written = 0
    skipped = []
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
                image_parts, shape, (sums, square_sums) = encoded
                labels = plan["labels"][sample_id]
                writer.write(
                    serialize_example(
                        sample_id, image_parts, settings.encoding, shape, labels, shard["fold"]
                    )
                )
                class_counts[labels] += 1
                channel_sum += sums
                channel_square_sum += square_sums
                pixels += shape[0] * shape[1]
                written += 1
        digest = _sha256(temporary)
        size = temporary.stat().st_size
    progress = {
        "file": shard["file"],
        "fold": shard["fold"],
        "num_records": written,
        "bytes": size,
        "sha256": digest,
        "class_counts": class_counts.tolist(),
        "channel_sum": channel_sum.tolist(),
        "channel_square_sum": channel_square_sum.tolist(),
        "pixels": pixels,
        "skipped": skipped,
    }
    write_text_atomic(_progress_path(out, shard), json.dumps(progress) + "\n")


def _file_in(error: str) -> str:
    """The file an error message names (messages start with 'path: reason')."""
    return error.split(": ", 1)[0]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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

    fold_numbers = sorted({shard["fold"] for shard in shards})
    folds = []
    for fold in fold_numbers:
        members = [shard for shard in shards if shard["fold"] == fold]
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
            }
        )
    mean, std = channel_statistics(folds)
    arguments = plan["arguments"]
    return {
        "format_version": FORMAT_VERSION,
        "created_by": f"hpa-keras {__version__}",
        "source": {
            "images": arguments["images"],
            "labels": arguments["labels"],
            "labels_sha256": arguments["labels_sha256"],
        },
        "split": plan["split"],
        "labeled": plan["labeled"],
        "image_size": plan["image_size"],
        "channels": list(CHANNELS),
        "encoding": settings.encoding,
        "sixteen_bit_rule": settings.sixteen_bit_rule,
        "num_folds": settings.num_folds if plan["labeled"] else 0,
        "seed": settings.seed,
        "num_records": sum(shard["num_records"] for shard in shards),
        "num_skipped": len(skipped),
        "errors_file": errors_file,
        "ignored": plan.get("ignored", {"num_ids": 0, "num_files": 0, "first_ids": []}),
        "class_names": list(CLASS_NAMES),
        "class_counts": np.sum([fold["class_counts"] for fold in folds], axis=0).tolist(),
        "channel_mean": mean,
        "channel_std": std,
        "folds": folds,
        "shards": [
            {key: shard[key] for key in ("file", "fold", "num_records", "bytes", "sha256")}
            for shard in shards
        ],
    }


def channel_statistics(folds: list[dict], exclude_folds=()) -> tuple[list, list]:
    """Per-channel mean and std (0-255 pixel units) over the folds not excluded.

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


def read_manifest(folder: str | os.PathLike) -> dict:
    """The manifest of a TFRecord folder, with a clear error when there is none."""
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        hint = (
            " (an interrupted make-tfrecords? run it again)"
            if (Path(folder) / PLAN_FILE).exists()
            else ""
        )
        raise InputError(f"{path}: not found; is this a make-tfrecords output folder?{hint}")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: not valid JSON ({error})") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise InputError(
            f"{path}: format version {manifest.get('format_version')}, this hpa-keras reads "
            f"{FORMAT_VERSION}"
        )
    return manifest


def summarize_folds(manifest: dict) -> dict | None:
    """Fold balance of a labeled manifest (see :func:`hpa_keras.data.splits.balance_of_counts`)."""
    folds = [fold for fold in manifest["folds"] if fold["fold"] != UNLABELED_FOLD]
    if len(folds) < 2:
        return None
    return balance_of_counts(
        [fold["class_counts"] for fold in folds], [fold["num_records"] for fold in folds]
    )


# ------------------------------------------------------------------ verify


def verify_tfrecords(folder: str | os.PathLike, progress: bool = True) -> list[str]:
    """Re-read every shard against the manifest; returns the problems found (empty if none).

    Checks each shard's sha256 and record count, that every record parses and
    its image decodes to the recorded shape, that Ids are unique across
    shards, that each record's fold is its shard's, and the per-fold class
    counts.
    """
    import tensorflow as tf

    folder = Path(folder)
    manifest = read_manifest(folder)
    problems, seen = [], {}
    class_counts: dict[int, np.ndarray] = {}
    shards = manifest["shards"]
    for shard in tqdm(shards, desc="verifying shards", unit="shard", disable=not progress):
        path = folder / shard["file"]
        if not path.is_file():
            problems.append(f"{path}: shard missing")
            continue
        if _sha256(path) != shard["sha256"]:
            problems.append(f"{path}: sha256 differs from the manifest (file changed or corrupt)")
        count = 0
        counts = class_counts.setdefault(shard["fold"], np.zeros(NUM_CLASSES, np.int64))
        try:
            for serialized in tf.data.TFRecordDataset(
                str(path), buffer_size=READ_BUFFER_BYTES
            ).as_numpy_iterator():
                record = parse_example_bytes(serialized)
                count += 1
                decode_image(record["image"], record["format"], record["shape"])
                if record["id"] in seen:
                    problems.append(f"{path}: Id {record['id']} also in {seen[record['id']]}")
                seen[record["id"]] = shard["file"]
                if record["fold"] != shard["fold"]:
                    problems.append(
                        f"{path}: record {record['id']} has fold {record['fold']}, the shard "
                        f"is fold {shard['fold']}"
                    )
                counts[record["labels"]] += 1
        except (tf.errors.DataLossError, ValueError, KeyError, IndexError) as error:
            reason = str(error).splitlines()[0]
            problems.append(f"{path}: unreadable after {count} records ({reason})")
            continue
        if count != shard["num_records"]:
            problems.append(f"{path}: {count} records, the manifest says {shard['num_records']}")
    for fold in manifest["folds"]:
        found = class_counts.get(fold["fold"])
        if found is not None and found.tolist() != fold["class_counts"]:
            problems.append(f"{folder}: class counts of fold {fold['fold']} differ from manifest")
    return problems
