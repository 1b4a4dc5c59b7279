"""``hpa-keras demo``: the main job on built-in data, from a fresh install.

Today it generates a synthetic data set in the Kaggle layout, shows it (a
picture of each class's pattern, a grid of labeled training samples, one
sample's four channels), and converts it to verified TFRecords with
stratified folds. Later stages (training, evaluation, the submission) are
added here as the package grows, so the demo always runs everything there is.
"""

from pathlib import Path

import numpy as np

from hpa_keras.classes import CLASS_NAMES, NUM_CLASSES
from hpa_keras.data.synthetic import DemoDataSettings, make_demo_data, render_sample
from hpa_keras.display import gallery_figure, save_figure, write_sample_figure
from hpa_keras.labels import read_labels

DEMO_SETTINGS = DemoDataSettings(num_samples=400, image_size=256, seed=0, test_fraction=0.2)


def class_gallery(path: Path, image_size: int = 256, seed: int = 0) -> None:
    """One synthetic sample per class, each carrying only that label."""
    images = [
        render_sample(np.random.default_rng([seed, 0xC1A55, index]), [index], image_size)
        for index in range(NUM_CLASSES)
    ]
    titles = [f"{index} {name}" for index, name in enumerate(CLASS_NAMES)]
    save_figure(gallery_figure(images, titles), path, dpi=90)


def training_gallery(path: Path, data: Path, count: int = 14) -> None:
    """The first ``count`` training samples as written to disk, titled with their labels."""
    from hpa_keras.data.images import find_sample_files, read_sample, to_unit_float

    table = read_labels(data / "train.csv")
    images, titles = [], []
    for sample_id, labels in list(zip(table.ids, table.labels, strict=True))[:count]:
        images.append(to_unit_float(read_sample(find_sample_files(data, sample_id))))
        titles.append("\n".join(CLASS_NAMES[index] for index in labels))
    save_figure(gallery_figure(images, titles), path, dpi=90)


def run_demo(out: str | Path = "hpa-demo", workers: int | None = None, progress: bool = True):
    """Generate the demo data under ``out/data``, picture it, convert it to TFRecords."""
    out = Path(out)
    data = out / "data"
    print(
        f"[1/3] Generating {DEMO_SETTINGS.num_samples} synthetic HPA-like samples "
        f"({DEMO_SETTINGS.image_size}x{DEMO_SETTINGS.image_size}) in {data}"
    )
    summary = make_demo_data(
        data, DEMO_SETTINGS, workers=workers, overwrite=True, progress=progress
    )
    table = read_labels(data / "train.csv")
    counts = table.class_counts()
    print(
        f"      {summary['num_train']} training and {summary['num_test']} test samples; "
        f"labels per image: {np.mean([len(labels) for labels in table.labels]):.2f} on average"
    )
    common = np.argsort(-counts)[:3]
    print(
        "      most frequent: "
        + ", ".join(f"{CLASS_NAMES[k]} ({counts[k]})" for k in common)
        + f"; classes with no training sample: {int((counts == 0).sum())}"
    )

    print(f"[2/3] Drawing pictures in {out}")
    class_gallery(out / "classes.png")
    training_gallery(out / "train_samples.png", data)
    first_id = table.ids[0]
    write_sample_figure(data, first_id, out / "sample.png")
    for name, what in (
        ("classes.png", "one sample per class, only that label"),
        ("train_samples.png", "training samples with their labels"),
        ("sample.png", f"sample {first_id}: composite and the four channels"),
    ):
        print(f"      {out / name}: {what}")
    records = convert_to_tfrecords(data, out, workers, progress)
    return {"data": data, "summary": summary, "tfrecords": records}


def convert_to_tfrecords(data: Path, out: Path, workers, progress) -> dict:
    """Train and test splits to verified TFRecords in ``out/tfrecords/{train,test}``."""
    import shutil

    from hpa_keras.data.tfrecords import (
        ConversionSettings,
        make_tfrecords,
        summarize_folds,
        verify_tfrecords,
    )

    print(f"[3/3] Converting to TFRecords in {out / 'tfrecords'}")
    folders = {}
    for split, labels in (("train", "train.csv"), ("test", "sample_submission.csv")):
        folder = out / "tfrecords" / split
        shutil.rmtree(folder, ignore_errors=True)  # the data were just regenerated
        manifest = make_tfrecords(
            data / split,
            folder,
            labels=data / labels,
            settings=ConversionSettings(num_folds=5),
            workers=workers,
            progress=progress,
        )
        problems = verify_tfrecords(folder, progress=False)
        if problems:
            raise RuntimeError("TFRecords failed verification: " + "; ".join(problems))
        folders[split] = folder
        shards = len(manifest["shards"])
        print(
            f"      {split}: {manifest['num_records']} records in {shards} "
            f"shard{'s' if shards > 1 else ''}, verified"
        )
        if split == "train":
            print(f"      5 stratified folds of {summarize_folds(manifest)['fold_sizes']} records")
    return folders
