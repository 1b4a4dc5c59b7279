"""Images per second delivered to a training loop, three ways, side by side.

(a) the approach of the Kaggle kernels this project replaces: a
    ``keras.utils.PyDataset`` that reads each sample's four PNG files with
    OpenCV, resizes, stacks and flips in numpy;
(b) ``hpa_keras.data.load_dataset`` (training mode: shuffled, batched,
    multi-hot labels, prefetched) from ``png`` and ``raw`` shards, delivering
    uint8 for standardization on the device (``normalization="none"``, the
    recommended set-up) and, for comparison, float32 standardized on the CPU;
(c) the bare limit: the same stored records read and decoded in a tight
    tf.data loop (read, parse, decode, batch; nothing else).

At stored sizes 512 and 256, on real HPA channel PNGs (../shared, grouped
four at a time) and on synthetic data; output size = stored size.

    python benchmarks/bench_pipeline.py --num-samples 256
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import cv2
import keras
import numpy as np
import tensorflow as tf
from real_hpa import real_hpa_folder  # benchmarks/real_hpa.py

from hpa_keras.classes import CHANNELS, NUM_CLASSES
from hpa_keras.data.conversion import ConversionSettings, make_tfrecords
from hpa_keras.data.labels import read_labels
from hpa_keras.data.pipeline import load_dataset
from hpa_keras.data.tfrecords import read_manifest
from hpa_keras.synthetic.generator import DemoDataSettings, make_demo_data

BATCH = 32
EPOCHS = 3


class KernelStylePyDataset(keras.utils.PyDataset):
    """What the 2018 Kaggle kernels did, as a PyDataset."""

    def __init__(self, folder, ids, labels, image_size, batch_size=BATCH, **kwargs):
        super().__init__(**kwargs)
        self.folder, self.ids, self.labels = folder, ids, labels
        self.image_size, self.batch_size = image_size, batch_size
        self.rng = np.random.default_rng(0)

    def __len__(self):
        return len(self.ids) // self.batch_size

    def __getitem__(self, index):
        chosen = range(index * self.batch_size, (index + 1) * self.batch_size)
        images = np.empty((self.batch_size, self.image_size, self.image_size, 4), np.float32)
        targets = np.zeros((self.batch_size, NUM_CLASSES), np.float32)
        for row, sample in enumerate(chosen):
            planes = [
                cv2.resize(
                    cv2.imread(
                        str(self.folder / f"{self.ids[sample]}_{c}.png"), cv2.IMREAD_GRAYSCALE
                    ),
                    (self.image_size, self.image_size),
                )
                for c in CHANNELS
            ]
            image = np.stack(planes, axis=-1)
            if self.rng.random() < 0.5:
                image = np.fliplr(image)
            if self.rng.random() < 0.5:
                image = np.flipud(image)
            images[row] = image / 255.0
            targets[row, list(self.labels[sample])] = 1
        return images, targets


REPEATS = 3


def best_of(measure) -> float:
    """The best of REPEATS runs: other processes on a 2-core machine only ever slow a run."""
    return max(measure() for _ in range(REPEATS))


def rate(batches) -> float:
    """Images per second over EPOCHS passes, after one warm-up batch."""
    iterator = iter(batches)
    next(iterator)
    start, count = time.perf_counter(), 0
    for images, _ in iterator:
        count += int(images.shape[0])
    return count / (time.perf_counter() - start)


def kernel_rate(folder: Path, size: int) -> float:
    table = read_labels(folder / "train.csv")
    sequence = KernelStylePyDataset(folder / "train", table.ids, table.labels, size)

    def batches():
        for _ in range(EPOCHS):
            for index in range(len(sequence)):
                yield sequence[index]

    return rate(batches())


def pipeline_rate(records: Path, normalization: str) -> float:
    """As model.fit consumes it: repeating, EPOCHS passes.

    The shuffle buffer is a quarter of the records, as in real training (1,024 of 31,072):
    a buffer holding the whole set would have to be refilled, unoverlapped with
    decoding, before the first batch of every pass.
    """
    count = read_manifest(records).num_records
    dataset = load_dataset(
        records,
        training=True,
        batch_size=BATCH,
        repeat=True,
        seed=0,
        normalization=normalization,
        shuffle_buffer=max(count // 4, BATCH),
    )
    batches = EPOCHS * count // BATCH
    return rate(dataset.take(batches + 1))


def bare_rate(records: Path) -> float:
    manifest = read_manifest(records)
    files = [str(records / shard["file"]) for shard in manifest.shards]
    size, encoding = manifest.image_size, manifest.encoding
    spec = {"image": tf.io.VarLenFeature(tf.string)}

    def decode(record):
        parts = tf.io.parse_single_example(record, spec)["image"].values
        if encoding == "png":
            return tf.concat([tf.io.decode_png(parts[i], channels=1) for i in range(4)], -1), 0
        return tf.reshape(tf.io.decode_raw(parts[0], tf.uint8), (size, size, 4)), 0

    dataset = (
        tf.data.TFRecordDataset(files)
        .map(decode, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(BATCH)
        .prefetch(tf.data.AUTOTUNE)
    )
    return rate(dataset.repeat(EPOCHS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-samples", type=int, default=256)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 256])
    arguments = parser.parse_args()
    count = arguments.num_samples
    print(
        f"{count} samples, batches of {BATCH}, shuffle buffer {max(count // 4, BATCH)}, "
        f"{EPOCHS} passes, best of {REPEATS} runs; "
        f"images/s ({os.cpu_count()} cores)"
    )
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        for size in arguments.sizes:
            sources = {}
            real = real_hpa_folder(root / f"real-{size}", count, size)
            if real is not None:
                sources["real HPA"] = real
            synthetic = root / f"synthetic-{size}"
            make_demo_data(
                synthetic,
                DemoDataSettings(num_samples=count, image_size=size, seed=0, test_fraction=0.0),
                progress=False,
            )
            sources["synthetic"] = synthetic
            for name, folder in sources.items():
                kernel = best_of(lambda folder=folder, size=size: kernel_rate(folder, size))
                print(f"\n{name}, {size}x{size}:")
                print(f"  (a) Kaggle-kernel PyDataset (OpenCV + numpy): {kernel:8.1f}")
                for encoding in ("png", "raw"):
                    records = root / f"records-{name}-{size}-{encoding}".replace(" ", "_")
                    make_tfrecords(
                        folder / "train",
                        records,
                        labels=folder / "train.csv",
                        settings=ConversionSettings(encoding=encoding, num_folds=4),
                        progress=False,
                    )
                    bare = best_of(lambda records=records: bare_rate(records))
                    for normalization, what in (("none", "uint8"), ("manifest", "float32")):
                        pipeline = best_of(
                            lambda records=records, normalization=normalization: pipeline_rate(
                                records, normalization
                            )
                        )
                        print(
                            f"  (b) load_dataset, {encoding} shards, {what:7s}:   {pipeline:8.1f}"
                            f"   {pipeline / kernel:5.1f}x (a), {100 * pipeline / bare:5.1f}% "
                            "of (c)"
                        )
                    print(f"  (c) bare decode of the {encoding} records:      {bare:8.1f}")


if __name__ == "__main__":
    main()
