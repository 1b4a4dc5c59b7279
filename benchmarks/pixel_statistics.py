"""How the synthetic images compare with real HPA images, channel by channel.

Generates synthetic samples and prints, per channel, the mean pixel value,
the median and the 99th percentile (averaged over files) next to the same
figures for the real HPA channel PNGs in ../shared, and the mean PNG size.

    python benchmarks/pixel_statistics.py --num-samples 120 --image-size 256
"""

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np

from hpa_keras.classes import CHANNELS
from hpa_keras.synthetic.generator import DemoDataSettings, make_demo_data

SHARED = Path(__file__).resolve().parents[2] / "shared/data/hpa-kaggle-2018/channel-samples"


def statistics(paths) -> str:
    images = [cv2.imread(str(path), cv2.IMREAD_UNCHANGED) for path in paths]
    figures = np.array(
        [[image.mean(), np.median(image), np.percentile(image, 99)] for image in images]
    ).mean(axis=0)
    kilobytes = np.mean([path.stat().st_size for path in paths]) / 1024
    return (
        f"{figures[0]:5.1f} / {figures[1]:5.1f} / {figures[2]:5.1f}  "
        f"{kilobytes:6.1f} KiB ({images[0].shape[0]} px)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-samples", type=int, default=120)
    parser.add_argument("--image-size", type=int, default=256)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        make_demo_data(
            folder,
            DemoDataSettings(
                num_samples=arguments.num_samples,
                image_size=arguments.image_size,
                test_fraction=0.0,
            ),
            progress=False,
        )
        print("channel   synthetic mean / median / p99, PNG size     real HPA, same")
        for channel in CHANNELS:
            synthetic = sorted((Path(folder) / "train").glob(f"*_{channel}.png"))[:100]
            real = sorted(SHARED.glob(f"*_{channel}.png"))
            line = f"{channel:8s}  {statistics(synthetic)}"
            print(line + (f"   {statistics(real)}" if real else "   (../shared absent)"))


if __name__ == "__main__":
    main()
