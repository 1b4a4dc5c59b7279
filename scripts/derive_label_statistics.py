"""Derive the label-set distribution that the synthetic generator samples from.

Reads the 2018 challenge's train.csv and writes
``hpa_keras/synthetic/label_set_counts.json``: every distinct label set with the
number of images that carry it. That one table holds the class frequencies,
the labels-per-image distribution and all co-occurrences of the real data, and
no Ids, so it can ship with the package.

    python scripts/derive_label_statistics.py ../shared/data/hpa-kaggle-2018/train.csv

With ``--class-counts`` it only prints a label file's scheme, image count
and images per class (each class once per image), the figures embedded as
``training_counts`` in ``hpa_keras/classes.py``:

    python scripts/derive_label_statistics.py --class-counts \
        ../shared/data/hpa-2021-single-cell/train.csv
"""

import argparse
import collections
import hashlib
import json
from pathlib import Path

from hpa_keras.atomic import write_text_atomic
from hpa_keras.data.labels import read_labels

OUTPUT = Path(__file__).resolve().parents[1] / "hpa_keras" / "synthetic" / "label_set_counts.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("train_csv", type=Path)
    parser.add_argument("--out", type=Path, default=OUTPUT)
    parser.add_argument("--class-counts", action="store_true", help="print class counts only")
    arguments = parser.parse_args()

    table = read_labels(arguments.train_csv)
    if arguments.class_counts:
        print(f"{table.scheme}: {len(table)} images; per class: {table.class_counts().tolist()}")
        return
    counts = collections.Counter(table.labels)
    ordered = sorted(counts.items(), key=lambda item: (-item[1], len(item[0]), item[0]))
    document = {
        "description": "Distinct label sets of the HPA Kaggle 2018 train.csv with image counts",
        "source_md5": hashlib.md5(arguments.train_csv.read_bytes()).hexdigest(),
        "num_images": len(table),
        "label_sets": [list(label_set) for label_set, _ in ordered],
        "counts": [count for _, count in ordered],
    }
    write_text_atomic(arguments.out, json.dumps(document, separators=(",", ":")) + "\n")
    print(f"{len(ordered)} distinct label sets from {len(table)} images -> {arguments.out}")


if __name__ == "__main__":
    main()
