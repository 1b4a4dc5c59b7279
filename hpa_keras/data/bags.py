"""Bags of cells: the cell records of one field together, for multiple-instance training.

``fit --cell-pooling max|lse`` learns from a field's label through the
pooled prediction of its cells (:class:`hpa_keras.models.layers.BagPooling`),
so it needs each field's cells in one batch element. Cell records are
written field by field and a shard never splits a field
(:mod:`hpa_keras.data.cell_records`), so reading shards one after another
(in a new order every epoch when training) meets each field's cells in one
run; a generator cuts the stream where the field changes and pads each bag
to ``bag_size`` cells (repeating its own cells) with a mask. A field of more than ``bag_size`` cells
becomes several bags, each with the field's labels (a class seen in the
other part is then asked of this one too: choose ``bag_size`` above the
usual cell count; the manifest's cell counts say what that is).
"""

import os

import numpy as np
import tensorflow as tf

from hpa_keras.classes import CHANNELS, resolve_channels
from hpa_keras.data.pipeline import (
    AUTOTUNE,
    _make_single_decoder,
    select_shards,
    shard_files,
)
from hpa_keras.data.tfrecords import READ_BUFFER_BYTES, read_manifest
from hpa_keras.errors import InputError

BAG_SHUFFLE = 64  # bags shuffled in memory when training, beyond the shard order


def count_bags(shards: list[dict], bag_size: int) -> int:
    """The bags the manifest's ``shards`` make: each field's cells in runs of ``bag_size``
    (the manifest keeps every cell shard's cells per field, so nothing is read)."""
    return sum(-(-count // bag_size) for shard in shards for count in shard["cells_per_field"])


def load_cell_bags(
    tfrecord_dir: str | os.PathLike,
    folds=None,
    training: bool = True,
    bags_per_batch: int = 4,
    bag_size: int = 48,
    channels="rgby",
    seed: int | None = None,
    sources=None,
    repeat: bool | None = None,
) -> tf.data.Dataset:
    """Batches of ``((images (B, K, S, S, C), mask (B, K)), field labels (B, classes))``.

    Images are the stored pixels (uint8 or uint16), as ``load_dataset(...,
    normalization="none")`` gives them: the model standardizes them.
    """
    manifest = read_manifest(tfrecord_dir)
    _check_bag_records(tfrecord_dir, manifest)
    shards = select_shards(manifest, folds, sources)
    if not shards:
        raise InputError(f"{tfrecord_dir}: no records of folds {folds} and sources {sources}")
    files = shard_files(tfrecord_dir, shards)
    names = resolve_channels(channels)

    indices = [CHANNELS.index(name) for name in names]
    size, classes = manifest.image_size, manifest.num_classes
    dtype = np.uint16 if manifest.bit_depth == 16 else np.uint8
    decode = _make_single_decoder(manifest, indices, size, field_id=True)
    repeat = training if repeat is None else repeat

    def bags():
        return _field_bags(files, decode, bag_size, dtype, training, repeat, seed)

    signature = (
        (
            tf.TensorSpec((bag_size, size, size, len(indices)), tf.as_dtype(dtype)),
            tf.TensorSpec((bag_size,), tf.float32),
        ),
        tf.TensorSpec((classes,), tf.float32),
    )
    dataset = tf.data.Dataset.from_generator(bags, output_signature=signature)
    if training:
        dataset = dataset.shuffle(BAG_SHUFFLE, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(bags_per_batch, drop_remainder=training)
    if not repeat:
        total = count_bags(shards, bag_size)
        batches = total // bags_per_batch if training else -(-total // bags_per_batch)
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(batches))
    return dataset.prefetch(AUTOTUNE)


def _check_bag_records(tfrecord_dir, manifest) -> None:
    """InputError unless the records are labeled cell records."""
    if not manifest.is_cells:
        raise InputError(
            f"{tfrecord_dir}: field records; multiple-instance training (cell_pooling) needs "
            "cell records (make-tfrecords --masks)"
        )
    if not manifest.labeled:
        raise InputError(f"{tfrecord_dir}: unlabeled records; bags train on field labels")


def _field_bags(files, decode, bag_size, dtype, training, repeat, seed):
    """Yield ``((bag, mask), field labels)``: the cells of one field in ``files``' order
    (shuffled per pass in training), at most ``bag_size`` a bag (larger fields are split);
    passes over the files forever when ``repeat``."""
    rng = np.random.default_rng(seed)
    while True:
        order = list(files)
        if training:
            rng.shuffle(order)
        records = tf.data.TFRecordDataset(order, buffer_size=READ_BUFFER_BYTES).map(
            decode,
            num_parallel_calls=AUTOTUNE,
            deterministic=True,  # a field's cells must stay together
        )
        images, current, target = [], None, None
        for image, labels, field_id in records.as_numpy_iterator():
            if field_id != current or len(images) == bag_size:
                if images:
                    yield _pack_bag(images, target, bag_size, dtype)
                images, current, target = [], field_id, labels
            images.append(image)
        if images:
            yield _pack_bag(images, target, bag_size, dtype)
        if not repeat:
            return


def _pack_bag(images, target, bag_size, dtype):
    """``((bag, mask), target)``: the field's cells padded to ``bag_size``."""
    # Padding repeats the field's own cells (masked out of the pooling): zero images
    # would reach BatchNorm's batch statistics and pull them towards black crops.
    order = np.arange(bag_size) % len(images)
    bag = np.stack(images)[order].astype(dtype, copy=False)
    mask = np.zeros(bag_size, np.float32)
    mask[: len(images)] = 1.0
    return (bag, mask), target
