"""Samples made of the real HPA channel PNGs in ../shared, for benchmarks.

The 200 files there hold one channel per Id, so one red, green, blue and
yellow file are grouped into a sample (its label is meaningless), repeated
under new Ids to the count asked for.
"""

import os
from pathlib import Path

import cv2
import numpy as np

from hpa_keras.classes import CHANNELS
from hpa_keras.data.labels import write_labels
from hpa_keras.synthetic.label_sampler import sample_label_sets

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "hpa-kaggle-2018"


def real_hpa_folder(folder: Path, count: int, size: int = 512) -> Path | None:
    """A Kaggle-layout folder (train/ and train.csv) of ``count`` samples; None without ../shared.

    At 512 px the files are hard-linked; at other sizes they are area-resized copies.
    """
    source = SHARED / "channel-samples"
    if not source.is_dir():
        return None
    files = {channel: sorted(source.glob(f"*_{channel}.png")) for channel in CHANNELS}
    groups = min(len(paths) for paths in files.values())
    images = folder / "train"
    images.mkdir(parents=True)
    ids = []
    for index in range(count):
        sample_id = f"real-{index:05d}"
        for channel in CHANNELS:
            original = files[channel][index % groups]
            target = images / f"{sample_id}_{channel}.png"
            if size == 512:
                os.link(original, target)
            else:
                plane = cv2.imread(str(original), cv2.IMREAD_UNCHANGED)
                cv2.imwrite(
                    str(target), cv2.resize(plane, (size, size), interpolation=cv2.INTER_AREA)
                )
        ids.append(sample_id)
    write_labels(folder / "train.csv", ids, sample_label_sets(np.random.default_rng(0), count))
    return folder
