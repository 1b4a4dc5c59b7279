"""TFRecords of HPA samples: the record schema, the manifest, reading back and verifying.

One ``tf.train.Example`` per sample (the schema is in the manual, docs/tfrecords.md,
so any TFRecord reader can use the shards):

    id        bytes    the sample Id
    image     bytes[]  png: four grayscale PNGs, red, green, blue, yellow;
                       raw: one value, the pixels in (height, width, 4) order
                       (uint8, or little-endian uint16 when bit_depth is 16)
    format    bytes    b"png" or b"raw"
    bit_depth int64    8 or 16
    height, width, channels   int64, the stored size
    original_height, original_width   int64, the size of the source field
    source    bytes    the name of the source folder it came from (kaggle, hpa-v18...)
    labels    int64[]  class indices (empty for unlabeled samples)
    fold      int64    cross-validation fold, -1 for unlabeled samples

:mod:`hpa_keras.data.conversion` writes them (``make-tfrecords``);
:mod:`hpa_keras.data.pipeline` reads them for training. The manifest
(``manifest.json``) describes a record set: its sources, label scheme,
folds, shards with their checksums, and per-fold statistics.
"""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from hpa_keras import storage
from hpa_keras.data.images import decode_png, encode_png
from hpa_keras.data.manifest import (  # noqa: F401 (the manifest's names, also read from here)
    FORMAT_VERSION,
    LEGACY_SOURCE,
    MANIFEST_FILE,
    MANIFEST_KEYS,
    READABLE_VERSIONS,
    UNLABELED_FOLD,
    Manifest,
    channel_statistics,
)
from hpa_keras.errors import InputError
from hpa_keras.storage import exists, is_file, is_url, join, open_binary, read_bytes

PLAN_FILE = "plan.json"
ENCODINGS = ("png", "raw")
READ_BUFFER_BYTES = 8 * 2**20  # TFRecordDataset read buffer: large sequential reads


# ------------------------------------------------------------------ records


def serialize_example(
    sample_id: str,
    image_parts: list[bytes],
    encoding: str,
    shape,
    labels,
    fold: int,
    source: str = LEGACY_SOURCE,
    original_size=None,
    bit_depth: int = 8,
    cell: dict | None = None,
) -> bytes:
    """One record, serialized; ``image_parts`` as made by :func:`encode_image`; ``cell`` the
    features of a cell record (:func:`hpa_keras.data.cell_records.cell_features`)."""
    import tensorflow as tf  # lazy: imports TensorFlow

    def int64_list(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))

    def bytes_list(values):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))

    height, width, channels = shape
    original_height, original_width = original_size or (height, width)
    features = {
        "id": bytes_list([sample_id.encode("utf-8")]),
        "image": bytes_list(image_parts),
        "format": bytes_list([encoding.encode("ascii")]),
        "bit_depth": int64_list([bit_depth]),
        "height": int64_list([height]),
        "width": int64_list([width]),
        "channels": int64_list([channels]),
        "original_height": int64_list([original_height]),
        "original_width": int64_list([original_width]),
        "source": bytes_list([source.encode("utf-8")]),
        "labels": int64_list(labels),
        "fold": int64_list([fold]),
    }
    if cell is not None:
        features.update(
            field_id=bytes_list([cell["field_id"].encode("utf-8")]),
            cell=int64_list([cell["cell"]]),
            box=int64_list(cell["box"]),
            mask=bytes_list([cell["mask"]]),
            cell_labels=int64_list(cell["cell_labels"]),
            has_cell_labels=int64_list([cell["has_cell_labels"]]),
            edge=int64_list([cell["edge"]]),
            small=int64_list([cell["small"]]),
            area=int64_list([cell["area"]]),
            window=int64_list([cell["window"]]),
        )
    example = tf.train.Example(features=tf.train.Features(feature=features))
    # deterministic: map entries sorted, so every process writes the same bytes (resume, tests)
    return example.SerializeToString(deterministic=True)


def encode_image(image: np.ndarray, encoding: str) -> list[bytes]:
    """``(H, W, 4)`` uint8 or uint16 to the stored parts: four grayscale PNGs, or one raw
    buffer (uint16 little-endian)."""
    if encoding == "png":
        return [encode_png(image[..., channel]) for channel in range(image.shape[-1])]
    dtype = "<u2" if image.dtype == np.uint16 else np.uint8
    return [np.ascontiguousarray(image, dtype=dtype).tobytes()]


def decode_image(parts: list[bytes], encoding: str, shape, bit_depth: int = 8) -> np.ndarray:
    """The inverse of :func:`encode_image` (numpy; the tf.data loader has its own)."""
    if encoding == "png":
        if len(parts) != shape[-1]:
            raise ValueError(f"{len(parts)} PNG parts, the record says {shape[-1]} channels")
        image = np.stack([decode_png(part) for part in parts], axis=-1)
        if image.dtype != (np.uint16 if bit_depth == 16 else np.uint8):
            raise ValueError(f"PNG of {image.dtype}, the record says {bit_depth}-bit")
    else:
        dtype = np.dtype("<u2") if bit_depth == 16 else np.dtype(np.uint8)
        image = np.frombuffer(parts[0], dtype)
        if image.size != int(np.prod(shape)):
            raise ValueError(f"{image.size} raw values, expected {int(np.prod(shape))}")
        image = image.reshape(shape).astype(dtype.newbyteorder("="), copy=False)
    if tuple(image.shape) != tuple(shape):
        raise ValueError(f"image has shape {image.shape}, record says {tuple(shape)}")
    return image


def parse_example_bytes(serialized: bytes) -> dict:
    """A record's fields as Python values (for verify and for readers outside tf.data).

    Records written before sources and bit depths existed read as 8-bit, of
    source ``"default"``, at their stored size.
    """
    import tensorflow as tf  # lazy: imports TensorFlow

    feature = tf.train.Example.FromString(serialized).features.feature

    def integer(name, default):
        values = feature[name].int64_list.value if name in feature else []
        return int(values[0]) if values else default

    shape = (integer("height", 0), integer("width", 0), integer("channels", 0))
    source = feature["source"].bytes_list.value[0].decode("utf-8") if "source" in feature else None
    return {
        "id": feature["id"].bytes_list.value[0].decode("utf-8"),
        "image": list(feature["image"].bytes_list.value),
        "format": feature["format"].bytes_list.value[0].decode("ascii"),
        "bit_depth": integer("bit_depth", 8),
        "shape": shape,
        "original_size": (
            integer("original_height", shape[0]),
            integer("original_width", shape[1]),
        ),
        "source": source or LEGACY_SOURCE,
        "labels": list(feature["labels"].int64_list.value),
        "fold": integer("fold", UNLABELED_FOLD),
        "cell": _cell_fields(feature) if "cell" in feature else None,
    }


def _cell_fields(feature) -> dict:
    """A cell record's own fields (see :mod:`hpa_keras.data.cell_records`); ``mask`` decoded."""
    return {
        "field_id": feature["field_id"].bytes_list.value[0].decode("utf-8"),
        "cell": int(feature["cell"].int64_list.value[0]),
        "box": tuple(int(value) for value in feature["box"].int64_list.value),
        "mask": decode_png(feature["mask"].bytes_list.value[0]),
        "cell_labels": list(feature["cell_labels"].int64_list.value),
        "has_cell_labels": bool(feature["has_cell_labels"].int64_list.value[0]),
        "edge": bool(feature["edge"].int64_list.value[0]),
        "small": bool(feature["small"].int64_list.value[0]),
        "area": int(feature["area"].int64_list.value[0]),
        "window": int(feature["window"].int64_list.value[0]),
    }


def read_shard(path: str | os.PathLike) -> list[dict]:
    """Every record of one shard, parsed and with ``image`` decoded to numpy."""
    import tensorflow as tf  # lazy: imports TensorFlow

    records = []
    for serialized in tf.data.TFRecordDataset(
        str(path), buffer_size=READ_BUFFER_BYTES
    ).as_numpy_iterator():
        record = parse_example_bytes(serialized)
        record["image"] = decode_image(
            record["image"], record["format"], record["shape"], record["bit_depth"]
        )
        records.append(record)
    return records


# ------------------------------------------------------------------ manifest


def read_manifest(folder: str | os.PathLike) -> Manifest:
    """The manifest of a TFRecord folder (:class:`~hpa_keras.data.manifest.Manifest`), with
    a clear error when there is none or it is not one.

    A manifest of format 1 (before sources, bit depths and label schemes)
    reads as one 8-bit source named ``default`` in the 2018 scheme.
    """

    path = join(folder, MANIFEST_FILE) if is_url(folder) else Path(folder) / MANIFEST_FILE
    if not is_file(path):
        hint = (
            " (an interrupted make-tfrecords? run it again)"
            if exists(join(folder, PLAN_FILE))
            else ""
        )
        raise InputError(f"{path}: not found; is this a make-tfrecords output folder?{hint}")
    try:
        manifest = json.loads(read_bytes(path).decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: not valid JSON ({error})") from None
    return Manifest.from_dict(manifest, path)


def sha256_of(path: str | os.PathLike) -> str:
    """The sha256 of a local file or URL (:func:`hpa_keras.storage.open_binary`)."""

    digest = hashlib.sha256()
    with open_binary(path) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------ verify


def verify_tfrecords(folder: str | os.PathLike, progress: bool = True) -> list[str]:
    """Re-read every shard against the manifest; returns the problems found (empty if none).

    Checks each shard's sha256 and record count, that every record parses and
    its image decodes to the recorded shape, that Ids are unique across
    shards, that each record's fold is its shard's, and the per-fold class
    counts. ``folder`` may be a URL (``gs://``, ``ram://``): it is read through
    :mod:`hpa_keras.storage`, whose InputError names a URL that cannot be reached.
    """
    import tensorflow as tf  # lazy: imports TensorFlow


    folder = os.fspath(folder)
    manifest = read_manifest(folder)
    problems, seen = [], {}
    class_counts: dict[int, np.ndarray] = {}
    shards = manifest.shards
    for shard in tqdm(shards, desc="verifying shards", unit="shard", disable=not progress):
        path = storage.join(folder, shard["file"])
        if not storage.is_file(path):
            problems.append(f"{path}: shard missing")
            continue
        if sha256_of(path) != shard["sha256"]:
            problems.append(f"{path}: sha256 differs from the manifest (file changed or corrupt)")
        count = 0
        counts = class_counts.setdefault(shard["fold"], np.zeros(manifest.num_classes, np.int64))
        try:
            with storage.reaching(path):  # a URL that cannot be reached: InputError
                for serialized in tf.data.TFRecordDataset(
                    path, buffer_size=READ_BUFFER_BYTES
                ).as_numpy_iterator():
                    record = parse_example_bytes(serialized)
                    count += 1
                    decode_image(
                        record["image"], record["format"], record["shape"], record["bit_depth"]
                    )
                    cell = record["cell"]
                    if cell is not None and cell["mask"].shape != tuple(record["shape"][:2]):
                        problems.append(
                            f"{path}: record {record['id']} has a {cell['mask'].shape} mask for a "
                            f"{tuple(record['shape'][:2])} crop"
                        )
                    if record["id"] in seen:
                        problems.append(f"{path}: Id {record['id']} also in {seen[record['id']]}")
                    seen[record["id"]] = shard["file"]
                    if record["source"] not in (shard["source"], LEGACY_SOURCE):
                        problems.append(
                            f"{path}: record {record['id']} is from source {record['source']}, "
                            f"the shard is {shard['source']}"
                        )
                    if record["fold"] != shard["fold"]:
                        problems.append(
                            f"{path}: record {record['id']} has fold {record['fold']}, the shard "
                            f"is fold {shard['fold']}"
                        )
                    counts[record["labels"]] += 1
        except InputError:
            raise
        except (tf.errors.DataLossError, ValueError, KeyError, IndexError) as error:
            reason = str(error).splitlines()[0]
            problems.append(f"{path}: unreadable after {count} records ({reason})")
            continue
        if count != shard["num_records"]:
            problems.append(f"{path}: {count} records, the manifest says {shard['num_records']}")
    for fold in manifest.folds:
        found = class_counts.get(fold["fold"])
        if found is not None and found.tolist() != fold["class_counts"]:
            problems.append(f"{folder}: class counts of fold {fold['fold']} differ from manifest")
    return problems
