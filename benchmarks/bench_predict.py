"""Prediction throughput: the tf.data prediction path against model.predict on tensors in memory.

    python benchmarks/bench_predict.py [--samples 240] [--size 512] [--repeats 3]

Data: the 80 real four-channel HPA samples of ../shared (512 px), repeated
under new Ids (hard links) to ``--samples``; converted to raw and png
TFRecords. Model: GAP-Net behind the uint8 input, standardization and
augmentation layers of a run's model (as ``hpa-keras fit`` saves it).

Printed, in images per second (best of ``--repeats``, each case measured in
turn so machine load affects all alike), for 1 and 8 dihedral views:

- reference: ``model.predict`` (through the TTA wrapper for 8 views) on the
  same uint8 images already in memory, as tensors in a prefetched
  ``tf.data.Dataset``: the ceiling, with nothing to read or decode;
- the same images as a numpy array (Keras then slices the array itself,
  which is slower than the tensor dataset);
- ``predict_run`` from raw TFRecords, png TFRecords and the image folder,
  and each as a ratio of the reference;
- the previous implementation for the image folder: a numpy loop over
  batches decoded one file at a time in the main thread, ``predict_on_batch``
  per view.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
SHARED = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "hpa-kaggle-2018" / "four-channel"
)


def sample_folder(folder: Path, count: int) -> tuple[Path, list[str]]:
    from hpa_keras.classes import CHANNELS
    from hpa_keras.data.labels import read_labels, write_labels

    table = read_labels(SHARED / "train.csv")
    images = folder / "images"
    images.mkdir(parents=True)
    ids, labels = [], []
    for index in range(count):
        source = table.ids[index % len(table)]
        sample_id = f"{source}-{index // len(table)}"
        for channel in CHANNELS:
            os.link(
                SHARED / "train" / f"{source}_{channel}.png", images / f"{sample_id}_{channel}.png"
            )
        ids.append(sample_id)
        labels.append(table.labels[index % len(table)])
    write_labels(folder / "labels.csv", ids, labels)
    return images, ids


def training_model(size: int):
    """A run's model as fit builds it: uint8 -> standardization -> augmentation -> GAP-Net."""
    import keras

    from hpa_keras.models import ChannelStandardization, build_model, make_augmentation

    inputs = keras.Input((size, size, 4), dtype="uint8")
    features = ChannelStandardization([20.0] * 4, [30.0] * 4)(inputs)
    features = make_augmentation(brightness=0.1, contrast=0.1)(features)
    outputs = build_model("gapnet", input_shape=(size, size, 4))(features)
    return keras.Model(inputs, outputs)


def previous_loop(model, index, ids, size, batch_size, tta):
    """The 0.1 implementation: decode in the main thread, numpy views, predict_on_batch."""
    from hpa_keras.data.images import read_sample

    outputs = []
    for start in range(0, len(ids), batch_size):
        images = np.stack(
            [read_sample(index[i], image_size=size) for i in ids[start : start + batch_size]]
        )
        views = []
        for view_index in range(tta):
            view = np.rot90(images, k=view_index // 2, axes=(1, 2))
            views.append(np.ascontiguousarray(view[:, :, ::-1] if view_index % 2 else view))
        outputs.append(
            np.mean([np.asarray(model.predict_on_batch(view)) for view in views], axis=0)
        )
    return np.concatenate(outputs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=240)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    if not (SHARED / "train.csv").is_file():
        raise SystemExit(f"needs the real samples in {SHARED}")

    from hpa_keras.tensorflow_setup import import_tensorflow_quietly

    import_tensorflow_quietly()
    from hpa_keras.data.conversion import ConversionSettings, make_tfrecords
    from hpa_keras.data.images import index_image_folder
    from hpa_keras.inference.predict import predict_run
    from hpa_keras.inference.runs import Run
    from hpa_keras.inference.tta import with_tta

    work = Path(tempfile.mkdtemp(prefix="bench-predict-"))
    images, ids = sample_folder(work, options.samples)
    records = {}
    for encoding in ("raw", "png"):
        records[encoding] = work / encoding
        make_tfrecords(
            images,
            records[encoding],
            labels=work / "labels.csv",
            workers=2,
            progress=False,
            settings=ConversionSettings(encoding=encoding, image_size=options.size),
        )
    from hpa_keras.data.pipeline import dataset_ids

    index = index_image_folder(images)
    model = training_model(options.size)
    run = Run(
        folder=work,
        model=model,
        thresholds=np.full(28, 0.5),
        class_names=tuple(map(str, range(28))),
        image_size=options.size,
        channels=("red", "green", "blue", "yellow"),
    )
    from hpa_keras.data.images import read_sample

    in_memory = np.stack([read_sample(index[sample_id], options.size) for sample_id in ids])
    record_ids = {encoding: dataset_ids(folder) for encoding, folder in records.items()}
    print(
        f"{options.samples} real HPA samples at {options.size} px, GAP-Net, "
        f"batch {options.batch_size}, {os.cpu_count()} CPU cores; images per second, "
        f"best of {options.repeats}"
    )
    import tensorflow as tf

    tensors = tf.data.Dataset.from_tensor_slices(tf.constant(in_memory))
    tensors = tensors.batch(options.batch_size).prefetch(tf.data.AUTOTUNE)
    for tta in (1, 8):
        predictor = with_tta(model, tta)
        cases = {
            "reference: in-memory tensors": lambda p=predictor: p.predict(tensors, verbose=0),
            "in-memory numpy array": lambda p=predictor: p.predict(
                in_memory, batch_size=options.batch_size, verbose=0
            ),
            "predict_run, raw TFRecords": lambda views=tta: predict_run(
                run,
                record_ids["raw"],
                data=records["raw"],
                tta=views,
                batch_size=options.batch_size,
            ),
            "predict_run, png TFRecords": lambda views=tta: predict_run(
                run,
                record_ids["png"],
                data=records["png"],
                tta=views,
                batch_size=options.batch_size,
            ),
            "predict_run, image folder (PNG files)": lambda views=tta: predict_run(
                run, ids, index=index, tta=views, batch_size=options.batch_size
            ),
            "previous loop, image folder": lambda views=tta: previous_loop(
                model, index, ids, options.size, options.batch_size, views
            ),
        }
        for case in cases.values():  # compile and warm the file cache once
            case()
        best = dict.fromkeys(cases, 0.0)
        for _ in range(options.repeats):
            for name, case in cases.items():
                started = time.perf_counter()
                case()
                best[name] = max(best[name], options.samples / (time.perf_counter() - started))
        reference = best["reference: in-memory tensors"]
        print(f"\n{tta} view{'s' if tta > 1 else ''} per image")
        for name, rate in best.items():
            print(f"  {name:<42} {rate:8.1f}  {rate / reference:5.2f}x")


if __name__ == "__main__":
    main()
