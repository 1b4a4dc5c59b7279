"""How far apart are the stains of image sets that should and should not share a model?

Prints, for pairs of image sets (the first as the "training" images), each stain's pixel
mean shift in the first set's pixel standard deviations: the figure ``predict`` warns on
over ``MAX_MEAN_SHIFT`` for the reference stains (red, blue, yellow; see
``hpa_keras.inference.input_shift``). Pairs: the 2018 challenge's 80 four-channel samples
split in halves (the spread within one release); the HPA's v18 colour JPEGs and 2021
fields against them (other releases a user would rightly predict); the generator's
widefield style against its HPA-like style (where the models collapse: docs/results.md).

    python benchmarks/input_shift.py                  # real sets from ../shared, if present
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np

from hpa_keras.classes import CHANNELS
from hpa_keras.data.images import index_images, read_sample
from hpa_keras.inference.input_shift import MAX_MEAN_SHIFT, REFERENCE_STAINS
from hpa_keras.synthetic.generator import DemoDataSettings, make_demo_data

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def pixels_of(folder, ids=None, image_size: int = 512) -> np.ndarray:
    """``(images, pixels, 4)`` float64 of a folder's samples (``ids``: a subset)."""
    all_ids, index = index_images(folder)
    chosen = all_ids if ids is None else ids
    return np.stack(
        [read_sample(index[i], image_size=image_size).reshape(-1, 4) for i in chosen]
    ).astype(np.float64)


def shifts(training: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Per stain: ``|mean(other) - mean(training)| / std(training)``."""
    mean, std = training.mean(axis=(0, 1)), training.std(axis=(0, 1))
    return np.abs(other.mean(axis=(0, 1)) - mean) / std


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--synthetic-samples", type=int, default=200)
    arguments = parser.parse_args(argv)
    pairs = []
    kaggle = SHARED / "hpa-kaggle-2018" / "four-channel" / "train"
    if kaggle.is_dir():
        ids, _ = index_images(kaggle)
        reference = pixels_of(kaggle)
        pairs.append(
            ("2018 challenge: second half vs first", pixels_of(kaggle, ids[: len(ids) // 2]),
             pixels_of(kaggle, ids[len(ids) // 2 :]))
        )  # fmt: skip
        for name, folder in (
            ("v18 colour JPEGs vs 2018 challenge", SHARED / "hpa-v18-external" / "images"),
            ("2021 fields vs 2018 challenge", SHARED / "hpa-2021-single-cell" / "images"),
        ):
            if folder.is_dir():
                pairs.append((name, reference, pixels_of(folder)))
    else:
        print(f"{kaggle}: absent; only the generator's styles are compared")
    with tempfile.TemporaryDirectory() as scratch:
        styles = {}
        for style in ("hpa-like", "widefield"):
            settings = DemoDataSettings(
                num_samples=arguments.synthetic_samples, image_size=128, seed=0,
                test_fraction=0.0, style=style,
            )  # fmt: skip
            make_demo_data(Path(scratch) / style, settings, progress=False)
            styles[style] = pixels_of(Path(scratch) / style / "train", image_size=128)
        pairs.append(
            ("generator: widefield vs hpa-like style", styles["hpa-like"], styles["widefield"])
        )
    print(f"pixel mean shift per stain, in the first set's standard deviations "
          f"(warned over {MAX_MEAN_SHIFT} for {', '.join(REFERENCE_STAINS)})")  # fmt: skip
    print(f"  {'pair':42} " + " ".join(f"{stain:>7}" for stain in CHANNELS) + "  warned")
    for name, training, other in pairs:
        values = shifts(training, other)
        warned = any(values[CHANNELS.index(stain)] > MAX_MEAN_SHIFT for stain in REFERENCE_STAINS)
        print(f"  {name:42} " + " ".join(f"{value:7.2f}" for value in values)
              + f"  {'yes' if warned else 'no'}")  # fmt: skip


if __name__ == "__main__":
    main()
