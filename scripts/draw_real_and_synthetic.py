"""The README picture of real HPA samples in each form beside built-in synthetic ones.

    python scripts/draw_real_and_synthetic.py [--out docs/real_and_synthetic.jpg]

Top row: real samples from ../shared as hpa-keras reads them (a Kaggle 2018
512 px sample, an HPA v18 colour-JPEG field, a 2021 2048 px field, all
area-resized to 512 px for the picture); bottom row: synthetic samples of
the same classes from the built-in generator. Each is the four-stain
composite (protein green, nucleus blue, microtubules red, ER yellow).
"""

import argparse
import textwrap
from pathlib import Path

import cv2
import numpy as np

from hpa_keras.classes import CLASS_NAMES, CLASS_NAMES_2021, parse_target
from hpa_keras.data.images import index_image_folder, read_sample, to_unit_float
from hpa_keras.data.labels import read_labels
from hpa_keras.reports.figures import plt
from hpa_keras.reports.samples import composite
from hpa_keras.synthetic.generator import render_sample

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DOCS = Path(__file__).resolve().parents[1] / "docs"
SIZE = 512


def real_samples() -> list[tuple[np.ndarray, str, list[int]]]:
    kaggle = SHARED / "hpa-kaggle-2018" / "four-channel"
    table = read_labels(kaggle / "train.csv")
    chosen = next(i for i, labels in zip(table.ids, table.labels, strict=True) if len(labels) > 1)
    v18 = SHARED / "hpa-v18-external"
    v18_labels = read_labels(v18 / "HPAv18RBGY_wodpl.csv")
    fields = SHARED / "hpa-2021-single-cell"
    field = "5c27f04c-bb99-11e8-b2b9-ac1f6b6435d0"
    field_row = next(
        line.split(",") for line in (fields / "labels.csv").read_text().splitlines()
        if line.startswith(field)
    )  # fmt: skip
    samples = []
    image = read_sample(index_image_folder(kaggle / "train")[chosen], SIZE)
    samples.append((image, f"Kaggle 2018, 512 px, {chosen[:8]}...", list(table.labels_of(chosen))))
    sample = "10580_1610_C1_1"
    details = {}
    image = read_sample(index_image_folder(v18 / "images")[sample], SIZE, details=details)
    side = details["original_size"][0]
    samples.append(
        (image, f"HPA v18 colour JPEGs, {side} px, {sample}", list(v18_labels.labels_of(sample)))
    )
    image = read_sample(index_image_folder(fields / "images")[field], SIZE)
    labels_2021 = parse_target(field_row[1], scheme="hpa2021")
    names = ", ".join(CLASS_NAMES_2021[index] for index in labels_2021)
    # The synthetic twin draws the field's 2018 labels (the generator's classes).
    samples.append(
        (image, f"2021 field, 2048 px, {field[:8]}...\n2021: {names}", parse_target(field_row[2]))
    )
    return samples


def label_text(labels) -> str:
    return textwrap.fill(", ".join(CLASS_NAMES[index] for index in labels), 52)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DOCS / "real_and_synthetic.jpg")
    options = parser.parse_args()
    real = real_samples()
    figure, axes = plt.subplots(2, 3, figsize=(12, 10.6))
    for axis, (image, title, labels) in zip(axes[0], real, strict=True):
        planes = {name: image[..., k] for k, name in enumerate(("red", "green", "blue", "yellow"))}
        axis.imshow(composite(planes))
        axis.set_title(f"{title}\n2018: {label_text(labels)}", fontsize=8)
    for axis, (_, _, labels) in zip(axes[1], real, strict=True):
        classes = list(labels)
        rendered = render_sample(np.random.default_rng(len(classes)), classes, SIZE)
        image = to_unit_float((np.clip(rendered, 0, 1) * 255).astype(np.uint8))
        planes = {name: image[..., k] for k, name in enumerate(("red", "green", "blue", "yellow"))}
        axis.imshow(composite(planes))
        axis.set_title(f"synthetic (built-in), 512 px\n{label_text(classes)}", fontsize=8)
    for axis in axes.ravel():
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle(
        "Real HPA samples as hpa-keras reads them (top), built-in synthetic ones of the "
        "same classes (bottom)"
    )
    figure.tight_layout(rect=(0, 0, 1, 0.97))
    options.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(options.out.with_suffix(".png"), dpi=80)
    image = cv2.imread(str(options.out.with_suffix(".png")))
    cv2.imwrite(str(options.out), image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    options.out.with_suffix(".png").unlink()
    print(f"wrote {options.out}")


if __name__ == "__main__":
    main()
