"""How a built-in data set's classes are spread over its cells (``make-demo-data --cells``).

    python scripts/cell_label_statistics.py DEMO_DIR

For each class: the fields that carry it, the mean share of a field's cells
that show it, and the share of those fields where only part of the cells
do; then the share of cells that show none of the classes (2018 scheme) or
are Negative (2021).
"""

import argparse
import collections
from pathlib import Path

import numpy as np

from hpa_keras.classes import get_scheme
from hpa_keras.data.cell_records import read_cell_labels
from hpa_keras.data.labels import read_labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo", type=Path)
    folder = parser.parse_args().demo
    table = read_labels(folder / "train.csv")
    cells = read_cell_labels(folder / "cells.csv", table.scheme)
    names = get_scheme(table.scheme).class_names
    shares = collections.defaultdict(list)
    for field_id, labels in zip(table.ids, table.labels, strict=True):
        shown = list(cells[field_id].values())
        for label in labels:
            shares[label].append(np.mean([label in classes for classes in shown]))
    print(f"{len(table.ids)} fields, {sum(len(field) for field in cells.values())} cells")
    print(f"{'class':34} {'fields':>6} {'cells showing':>13} {'partial fields':>14}")
    for label in sorted(shares):
        values = np.asarray(shares[label])
        print(f"{label:2d} {names[label]:31} {values.size:6d} {values.mean():13.2f} "
              f"{np.mean(values < 1):14.2f}")  # fmt: skip
    every = [classes for field in cells.values() for classes in field.values()]
    print(f"cells showing no class: {np.mean([not classes for classes in every]):.2f}")


if __name__ == "__main__":
    main()
