"""``load_dataset``: the tf.data input pipeline from make-tfrecords shards.

Training: the fold's shard files are shuffled and read in parallel
(``interleave``, ``deterministic=False``), serialized records are shuffled in
a bounded buffer, decoded in parallel (``png``: only the channels asked
for), optionally resized and randomly cropped, and batched. With
``deterministic=True`` (``fit --deterministic``) the parallel steps hand on
their elements in the order they came in (``tf.data.Options.deterministic``),
so the same seed gives the same batches, at a cost: a record slow to read or
decode holds back those behind it. Conversion to
float and normalization work on whole batches. Every step uses ``AUTOTUNE``
and the end is prefetched. (Parsing and decoding ``raw`` records a batch at
a time was measured too: slower than per-record decoding spread over the
cores.)

Evaluation and prediction: the files are read one after another in the
manifest's order and nothing is shuffled, cropped or dropped, so every
sample appears exactly once and always in the same order (for an unlabeled
set, the order of its ``sample_submission.csv``).

Resizing: a size other than the stored one goes through
:func:`hpa_keras.data.images.resize_square`, the OpenCV function that
``make-tfrecords`` and ``predict --images`` use (area when shrinking), so a
model sees the same pixels whichever way its input was made.

Memory: the shuffle buffer holds serialized records (a ``raw`` 512x512
record is 1 MiB; 1,024 of them, the default, are 1 GiB; ``png`` records about
half that) and the prefetch a few batches, whatever the data set's size.
``cache=True`` keeps every decoded image in memory (N x S x S x C bytes, twice
that for 16-bit records: 31,072 challenge images at 512x512, all four
channels, are 32.6 GB; the 3,200 training images of the demo at 256x256,
0.8 GB), which pays off only when the whole set fits and decoding is the
bottleneck.

The data pipeline starts from a list of files, so under a ``tf.distribute``
strategy with several workers tf.data's default auto-sharding gives each
worker its own files.
"""

import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from hpa_keras.classes import CHANNELS, resolve_channels
from hpa_keras.data.images import image_dimensions, read_sample, resize_square
from hpa_keras.data.manifest import Manifest
from hpa_keras.data.tfrecords import READ_BUFFER_BYTES, read_manifest
from hpa_keras.distributed import process_share
from hpa_keras.errors import InputError
from hpa_keras.parallel import default_workers
from hpa_keras.storage import is_url

AUTOTUNE = tf.data.AUTOTUNE
NORMALIZATIONS = ("manifest", "unit", "none")


def _as_set(values) -> set | None:
    if values is None:
        return None
    if isinstance(values, str | int | np.integer):
        return {values}
    return set(values)


def select_shards(manifest: Manifest, folds=None, sources=None) -> list[dict]:
    """The manifest's shards of ``folds`` (an int, a list, or None for all) and of
    ``sources`` (a name, a list, or None for all)."""
    shards = list(manifest.shards)
    wanted_folds = _as_set(folds)
    if wanted_folds is not None and manifest.labeled:
        wanted_folds = {int(fold) for fold in wanted_folds}
        available = {shard["fold"] for shard in shards}
        missing = sorted(wanted_folds - available)
        if missing:
            raise InputError(
                f"fold {missing[0]} is not in this data set (folds: {sorted(available)})"
            )
        shards = [shard for shard in shards if shard["fold"] in wanted_folds]
    wanted_sources = _as_set(sources)
    if wanted_sources is not None:
        names = manifest.source_names
        unknown = sorted(wanted_sources - set(names))
        if unknown:
            raise InputError(
                f"source {unknown[0]!r} is not in this data set (sources: {', '.join(names)})"
            )
        shards = [shard for shard in shards if shard["source"] in wanted_sources]
    return shards


def shard_paths(
    tfrecord_dir: str | os.PathLike, manifest: Manifest, folds=None, sources=None
) -> list:
    """Paths of the shards of ``folds`` and ``sources``, in the manifest's order."""
    return shard_files(tfrecord_dir, select_shards(manifest, folds, sources))


def shard_files(tfrecord_dir: str | os.PathLike, shards: list[dict]) -> list[str]:
    """The files of manifest entries ``shards``, each checked to be there, whole
    (:func:`check_shard_files`)."""
    paths = [os.path.join(os.fspath(tfrecord_dir), shard["file"]) for shard in shards]
    check_shard_files(paths, shards)
    return paths


def load_dataset(
    tfrecord_dir: str | os.PathLike,
    folds=None,
    training: bool = True,
    batch_size: int = 32,
    image_size: int | None = None,
    channels: str | Sequence[str] = "rgby",
    normalization: str = "manifest",
    cache: bool = False,
    repeat: bool | None = None,
    shuffle_buffer: int = 1024,
    seed: int | None = None,
    augment=None,
    sources=None,
    crop: int | None = None,
    process_count: int = 1,
    process_index: int = 0,
    data_service: str | None = None,
    deterministic: bool = False,
) -> tf.data.Dataset:
    """A dataset of ``(images, multi_hot_labels)``, or ``(images, ids)`` when unlabeled.

    Args:
        tfrecord_dir: a make-tfrecords output folder (with ``manifest.json``).
        folds: fold or folds to read; ``None`` reads all.
        training: shuffle files and records, read files in parallel without a
            fixed order, crop, drop the last partial batch, repeat by default.
        batch_size: samples per batch.
        image_size: the fields' side after resizing; the stored size when ``None``.
        channels: ``"rgby"``, ``"rgb"`` (no yellow), ``"g"`` or a list of names.
        normalization: ``"manifest"`` (float32, per-channel mean and std of
            the data set), ``"unit"`` (float32 pixels over their maximum, in
            [0, 1]) or ``"none"`` (the stored uint8 or uint16 pixels, to
            standardize on the device with
            :class:`hpa_keras.models.layers.ChannelStandardization`: the
            fastest, see the manual's input pipeline).
        cache: keep decoded images in memory after the first pass.
        repeat: repeat forever; defaults to ``training``.
        shuffle_buffer: records in the shuffle buffer (training only).
        seed: seed for the shuffles and crops.
        augment: an optional Keras layer (for example from
            :func:`hpa_keras.models.augmentation.make_augmentation`) applied to
            each training batch on the CPU, for users who prefer that to
            augmenting inside the model.
        sources: source name or names to read (``None``: all).
        crop: with ``training``: a random ``crop x crop`` window of each field
            (after resizing); evaluation always gives the whole field.
        process_count, process_index: in a multi-process run, read only this
            process's share of the shards (shard ``i`` for process ``i % count``).
        data_service: a tf.data service dispatcher (``grpc://HOST:PORT``) to run
            the reading, decoding, cropping and ``augment`` of training data on
            its workers (see :mod:`hpa_keras.data.service`); evaluation data is
            read here, in its fixed order.
        deterministic: training batches in an order fixed by ``seed``: files read in
            turn and records decoded and cropped in order (evaluation order is always
            fixed). The crops draw from a stateful random op, so their values repeat
            only where TensorFlow's op determinism is on too, as ``fit
            --deterministic`` turns it on: it runs that map serially.

    Images are ``(batch, size, size, len(channels))`` (``crop`` in training),
    float32 (uint8 or uint16 with ``normalization="none"``); labels float32
    ``(batch, classes)``; ids strings ``(batch,)``.
    """
    manifest = read_manifest(tfrecord_dir)
    names = resolve_channels(channels)
    _check_loader_settings(normalization, batch_size)
    shards = _shards_to_read(tfrecord_dir, manifest, folds, sources, process_count, process_index)
    files = shard_files(tfrecord_dir, shards)
    stored = manifest.image_size
    size = image_size or stored
    if crop is not None and not 0 < crop <= size:
        raise InputError(f"crop {crop} must be between 1 and the field's side {size}")
    indices = [CHANNELS.index(name) for name in names]
    repeat = training if repeat is None else repeat

    ordered = deterministic or not training
    dataset = _decoded_fields(
        files, manifest, indices, size, training, cache, shuffle_buffer, seed, ordered
    )
    if training and crop is not None and crop < size:
        dataset = _random_crops(dataset, (crop, crop, len(indices)), seed, ordered)
    counted = not repeat and not (data_service is not None and training)
    dataset = _batched(dataset, batch_size, training, repeat, shards if counted else None)
    dataset = _finished_batches(dataset, manifest, names, normalization, training, ordered, augment)
    if data_service is not None and training:
        from hpa_keras.data.service import distribute_over  # lazy: imports TensorFlow

        dataset = distribute_over(dataset, data_service)
    if deterministic:  # also the steps that take no deterministic argument (augment's map)
        options = tf.data.Options()
        options.deterministic = True
        dataset = dataset.with_options(options)
    return dataset.prefetch(AUTOTUNE)


def _check_loader_settings(normalization, batch_size) -> None:
    if normalization not in NORMALIZATIONS:
        raise InputError(f"normalization {normalization!r}: use one of {NORMALIZATIONS}")
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}")


def _shards_to_read(tfrecord_dir, manifest, folds, sources, process_count, process_index):
    """The shards of ``folds`` and ``sources`` that this process reads; InputError if none."""
    shards = select_shards(manifest, folds, sources)
    if not shards:
        raise InputError(f"{tfrecord_dir}: no records of folds {folds} and sources {sources}")
    return process_share(shards, process_count, process_index)


def _decoded_fields(files, manifest, indices, size, training, cache, shuffle_buffer, seed, ordered):
    """The records of ``files`` decoded one by one to ``(image, target)`` at ``size``, with
    the channels at ``indices``; in training, shuffled (before decoding unless ``cache``,
    so the buffer holds serialized records) and, unless ``ordered``, read and decoded
    without a fixed order."""
    dataset = _record_stream(files, training, seed, ordered)
    if not cache:  # shuffle serialized records: the buffer costs their size, no more
        dataset = _shuffle(dataset, training, shuffle_buffer, seed)
    decoder = _make_single_decoder(manifest, indices, size)
    dataset = dataset.map(decoder, num_parallel_calls=AUTOTUNE, deterministic=ordered)
    if cache:
        dataset = _shuffle(dataset.cache(), training, shuffle_buffer, seed)
    return dataset


def _batched(dataset, batch_size, training, repeat, shards):
    """Batches (in training without the last partial one), repeated forever when ``repeat``;
    with the length the manifest's ``shards`` give, when given (a finite dataset read here,
    not a service worker's part)."""
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.batch(batch_size, drop_remainder=training)
    if shards is not None:
        # Keras then shows progress totals and does not warn that a dataset of unknown
        # length "ran out of data".
        records = sum(shard["num_records"] for shard in shards)
        batches = records // batch_size if training else -(-records // batch_size)
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(batches))
    return dataset


def _random_crops(dataset, window, seed, ordered):
    """A random ``window`` (height, width, channels) of each decoded field."""
    return dataset.map(
        lambda image, target: (tf.image.random_crop(image, window, seed=seed), target),
        num_parallel_calls=AUTOTUNE,
        deterministic=ordered,
    )


def _finished_batches(dataset, manifest, names, normalization, training, ordered, augment):
    """Batches brought to ``normalization`` (in their order when ``ordered``) and, in
    training, through ``augment``."""
    finish = _make_finisher(manifest, names, normalization)
    if finish is not None:
        dataset = dataset.map(finish, num_parallel_calls=AUTOTUNE, deterministic=ordered)
    if augment is not None and training:
        dataset = dataset.map(
            lambda images, target: (augment(images, training=True), target),
            num_parallel_calls=AUTOTUNE,
        )
    return dataset


def dataset_ids(tfrecord_dir: str | os.PathLike, folds=None, sources=None) -> list[str]:
    """Sample Ids in the evaluation order of :func:`load_dataset` (``training=False``)."""
    return dataset_labels(tfrecord_dir, folds, sources)[0]


def dataset_labels(
    tfrecord_dir: str | os.PathLike, folds=None, sources=None
) -> tuple[list[str], np.ndarray]:
    """``(ids, multi-hot labels (N, classes) float32)`` in the evaluation order of
    :func:`load_dataset`.

    Reads only the Id and label fields (no image is decoded); an unlabeled
    set gives all-zero labels.
    """
    manifest = read_manifest(tfrecord_dir)
    files = shard_paths(tfrecord_dir, manifest, folds, sources)
    num_classes = manifest.num_classes
    spec = {"id": tf.io.FixedLenFeature([], tf.string), "labels": tf.io.VarLenFeature(tf.int64)}

    def parse(record):
        fields = tf.io.parse_single_example(record, spec)
        return fields["id"], _multi_hot(fields["labels"].values, num_classes)

    ids, labels = [], []
    records = tf.data.TFRecordDataset(files, buffer_size=READ_BUFFER_BYTES).map(parse)
    for sample_id, target in records.batch(4096).as_numpy_iterator():
        ids.extend(value.decode("utf-8") for value in sample_id)
        labels.append(target)
    stacked = np.concatenate(labels) if labels else np.zeros((0, num_classes), np.float32)
    return ids, stacked.astype(np.float32)


class ImageFolderErrors(list):
    """Problems met while a :func:`load_image_folder` dataset was read (file and reason)."""

    def raise_first(self) -> None:
        if self:
            more = f" (and {len(self) - 1} more)" if len(self) > 1 else ""
            raise InputError(self[0] + more)


def load_image_folder(
    index: dict,
    ids: Sequence[str],
    image_size: int,
    channels: str | Sequence[str] = "rgby",
    batch_size: int = 32,
    sixteen_bit_rule: str = "full-range",
    parallel_reads: int | None = None,
    bit_depth: int = 8,
) -> tuple[tf.data.Dataset, ImageFolderErrors]:
    """Batches of images of the samples ``ids`` of an image folder, in that order.

    Args:
        index: ``{Id: {channel: path}}`` from
            :func:`hpa_keras.data.images.index_image_folder`.
        ids: the samples, in the order wanted (every Id once).
        image_size: output side; each field is read and resized exactly as
            ``make-tfrecords`` stores it (:func:`hpa_keras.data.images.read_sample`).
        channels: which stains, as in :func:`load_dataset`.
        sixteen_bit_rule, bit_depth: as the records were made (uint8 for 8,
            uint16 for 16).
        parallel_reads: samples decoded at once; default one per core.

    Returns ``(dataset, errors)``: the dataset yields ``(images, ids)``
    batches; files are read and decoded in parallel and the batches
    prefetched, so ``model.predict(dataset)`` keeps the device busy. The
    parallelism is the core count rather than ``AUTOTUNE``: on a machine
    whose CPU also runs the model, AUTOTUNE started so many decoders that
    prediction fell well below the in-memory rate, and one per core kept up
    with it (``benchmarks/bench_predict.py``; the figures: docs/results.md).
    A sample that cannot be read (missing channel, corrupt file) stops the
    iteration with a TensorFlow error; its file and reason are then in
    ``errors`` (``errors.raise_first()`` raises them as an InputError).
    """

    names = resolve_channels(channels)
    indices = [CHANNELS.index(name) for name in names]
    errors = ImageFolderErrors()
    ids = [str(sample_id) for sample_id in ids]
    check_image_headers(index, ids)
    dtype = tf.uint16 if bit_depth == 16 else tf.uint8

    def read(sample_id) -> np.ndarray:
        sample_id = sample_id.decode("utf-8")
        try:
            image = read_sample(index[sample_id], image_size, sixteen_bit_rule, bit_depth)
        except InputError as error:
            errors.append(str(error))
            raise
        return np.ascontiguousarray(image[..., indices])

    def decode(sample_id):
        image = tf.numpy_function(read, [sample_id], dtype, stateful=False)
        return tf.ensure_shape(image, (image_size, image_size, len(indices))), sample_id

    dataset = (
        tf.data.Dataset.from_tensor_slices(tf.constant(ids, dtype=tf.string))
        .map(decode, num_parallel_calls=parallel_reads or default_workers(), deterministic=True)
        .batch(batch_size)
        .apply(tf.data.experimental.assert_cardinality(-(-len(ids) // batch_size)))
        .prefetch(AUTOTUNE)
    )
    return dataset, errors


def check_image_headers(index: dict, ids) -> None:
    """Every file of the samples ``ids`` exists, is not empty and has the header of an image
    of a sane size: what can be checked before a pipeline starts, in a fraction of a
    millisecond a file, so that a bad file is named before TensorFlow's threads run (a
    file damaged past its header is still named from inside the pipeline)."""

    for sample_id in ids:
        for path in index[sample_id].values():
            if path is not None:
                image_dimensions(path)


def check_shard_files(paths, shards) -> None:
    """Every shard exists and has the size the manifest recorded: a copy cut short or a
    shard replaced is named before training or prediction starts (``hpa-keras verify``
    reads every record). Local files only: a URL's size costs a request per shard."""
    for path, shard in zip(paths, shards, strict=True):
        if is_url(path) or "bytes" not in shard:
            continue
        try:
            size = os.path.getsize(path)
        except FileNotFoundError:
            raise InputError(f"{path}: shard missing (listed in the manifest)") from None
        if size != shard["bytes"]:
            raise InputError(
                f"{path}: {size} bytes, the manifest says {shard['bytes']} (cut short or "
                "changed since make-tfrecords wrote it; hpa-keras verify checks every record)"
            )


def _record_stream(files, training, seed, ordered):
    """Serialized records: in evaluation the files one after another; in training the files
    shuffled and read several at once, their records taken in turn when ``ordered``, else
    as they arrive."""
    if not training:  # one file after another: a fixed order, each record once
        return tf.data.TFRecordDataset(files, buffer_size=READ_BUFFER_BYTES)
    return (
        tf.data.Dataset.from_tensor_slices(files)
        .shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
        .interleave(
            lambda path: tf.data.TFRecordDataset(path, buffer_size=READ_BUFFER_BYTES),
            cycle_length=min(len(files), 8),
            num_parallel_calls=AUTOTUNE,
            deterministic=ordered,
        )
    )


def _shuffle(dataset, training, shuffle_buffer, seed):
    if training and shuffle_buffer > 1:
        return dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    return dataset


def _spec(encoding):
    """Parsing spec: ``image`` has a fixed count (4 PNGs or 1 raw buffer), so no sparse copy."""
    return {
        "id": tf.io.FixedLenFeature([], tf.string),
        "image": tf.io.FixedLenFeature([4 if encoding == "png" else 1], tf.string),
        "labels": tf.io.VarLenFeature(tf.int64),
    }


def _multi_hot(labels, num_classes):
    """Class indices (padded with -1, which one_hot maps to zeros) to multi-hot, last axis.

    A sum clipped at 1 rather than a max, so an empty label set gives zeros.
    """
    return tf.minimum(tf.reduce_sum(tf.one_hot(labels, num_classes, dtype=tf.float32), -2), 1.0)


def _select_channels(images, indices):
    """The channels ``indices`` of the last axis: nothing for all four in order, a slice
    for a contiguous run, a gather otherwise (an element-wise gather of every pixel costs
    more than decoding a raw record)."""
    if indices == list(range(images.shape[-1])):
        return images
    if indices == list(range(indices[0], indices[-1] + 1)):
        return images[..., indices[0] : indices[-1] + 1]
    return tf.gather(images, indices, axis=-1)


def _resize_like_conversion(image, size: int, dtype):
    """``resize_square`` (OpenCV, area when shrinking) inside tf.data: the same pixels as
    make-tfrecords and predict --images give."""

    channels = image.shape[-1]
    resized = tf.numpy_function(
        lambda array: np.ascontiguousarray(resize_square(array, size)),
        [image],
        dtype,
        stateful=False,
    )
    return tf.ensure_shape(resized, (size, size, channels))


def _make_single_decoder(manifest, indices, size, field_id: bool = False):
    """One record to ``(image (S, S, C), multi-hot labels or the Id)``, in the stored type;
    with ``field_id`` (cell records) also the cell's field Id, from the same parse."""
    encoding, stored = manifest.encoding, manifest.image_size
    labeled, num_classes = manifest.labeled, manifest.num_classes
    dtype = tf.uint16 if manifest.bit_depth == 16 else tf.uint8
    spec = _spec(encoding)
    if field_id:
        spec["field_id"] = tf.io.FixedLenFeature([], tf.string)

    def decode(record):
        features = tf.io.parse_single_example(record, spec)
        parts = features["image"]
        if encoding == "png":
            planes = [tf.io.decode_png(parts[index], channels=1, dtype=dtype) for index in indices]
            image = planes[0] if len(planes) == 1 else tf.concat(planes, axis=-1)
        else:
            pixels = tf.io.decode_raw(parts[0], dtype, little_endian=True)
            image = _select_channels(tf.reshape(pixels, (stored, stored, 4)), indices)
        image = tf.ensure_shape(image, (stored, stored, len(indices)))
        if size != stored:
            image = _resize_like_conversion(image, size, dtype)
        target = _multi_hot(features["labels"].values, num_classes) if labeled else features["id"]
        if field_id:
            return image, target, features["field_id"]
        return image, target

    return decode


def _make_finisher(manifest, names, normalization):
    """Conversion to float and normalization of a batch, or None when there is nothing to do."""
    if normalization == "none":
        return None
    if normalization == "manifest":
        indices = [CHANNELS.index(name) for name in names]
        mean = tf.constant([manifest.channel_mean[index] for index in indices], tf.float32)
        std = tf.constant([max(manifest.channel_std[index], 1e-3) for index in indices], tf.float32)
    else:
        top = 65535.0 if manifest.bit_depth == 16 else 255.0
        mean, std = tf.constant(0.0), tf.constant(top)

    def finish(images, target):
        return (tf.cast(images, tf.float32) - mean) / std, target

    return finish
