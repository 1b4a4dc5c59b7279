"""Measure ``hpa-keras segment`` against the HPA's own segmenter and draw both outlines.

    python scripts/measure_segmentation.py [--fields DIR] [--reference DIR]
        [--out docs/segmentation_vs_hpa.jpg] [--workers 1]

The five 2048 px fields of ``../shared/data/hpa-2021-single-cell`` come with
cell masks predicted by HPA-Cell-Segmentation (the HPA's U-Net). Each field
is segmented here (in one process, so the time per field is one core's,
reading the four PNGs included, after one untimed warm-up field),
cells are matched at IoU >= 0.5, and the script prints per field and in
total: predicted and reference cells, matches, precision, recall, mean IoU
of the matches, and seconds per field. The picture shows each field with
the HPA outlines in white and ours in cyan.
"""

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from hpa_keras.cells.matching import match_cells
from hpa_keras.cells.segment import (
    SegmentationSettings,
    read_segmentation_channels,
    segment_field,
)
from hpa_keras.classes import CHANNELS
from hpa_keras.data.cells import read_mask
from hpa_keras.data.images import index_image_folder, read_sample
from hpa_keras.reports.samples import composite, mask_outlines

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "hpa-2021-single-cell"
DOCS = Path(__file__).resolve().parents[1] / "docs"
PICTURE_SIDE = 480


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fields", default=SHARED / "images", type=Path)
    parser.add_argument("--reference", default=SHARED / "masks", type=Path)
    parser.add_argument("--out", default=DOCS / "segmentation_vs_hpa.jpg", type=Path)
    arguments = parser.parse_args()

    cv2.setNumThreads(1)
    index = index_image_folder(arguments.fields)
    settings = SegmentationSettings()
    # One field first, untimed: scikit-image and SciPy import their modules on first use, and
    # the first read of a file pays for the disk; neither is a field's time in a long run.
    segment_field(*read_segmentation_channels(index[sorted(index)[0]]), settings)
    totals = {"predicted": 0, "reference": 0, "matched": 0}
    ious, seconds, tiles, round_trips = [], [], [], []
    print(f"{'field':10} {'ours':>5} {'HPA':>5} {'match':>5} {'prec':>6} {'recall':>6} "
          f"{'mIoU':>6} {'s':>6}")  # fmt: skip
    for field_id in sorted(index):
        reference = read_mask(arguments.reference / f"{field_id}_predictedmask.png")
        start = time.perf_counter()
        blue, cytoplasm = read_segmentation_channels(index[field_id])
        cells, _ = segment_field(blue, cytoplasm, settings)
        seconds.append(time.perf_counter() - start)
        result = match_cells(cells, reference, 0.5)
        round_trips.append(_round_trip_iou(reference, settings.working_size))
        totals["predicted"] += result.num_predicted
        totals["reference"] += result.num_reference
        totals["matched"] += len(result.matches)
        ious.extend(iou for _, _, iou in result.matches)
        print(
            f"{field_id[:8]:10} {result.num_predicted:5d} {result.num_reference:5d} "
            f"{len(result.matches):5d} {result.precision:6.3f} {result.recall:6.3f} "
            f"{result.mean_iou:6.3f} {seconds[-1]:6.2f}"
        )
        image = read_sample(index[field_id], PICTURE_SIDE)
        picture = composite({name: image[..., i] for i, name in enumerate(CHANNELS)})
        picture = mask_outlines(picture, reference, (1.0, 1.0, 1.0))
        picture = mask_outlines(picture, cells, (0.0, 1.0, 1.0))
        tiles.append(picture)
    precision = totals["matched"] / totals["predicted"]
    recall = totals["matched"] / totals["reference"]
    print(
        f"{'all':10} {totals['predicted']:5d} {totals['reference']:5d} {totals['matched']:5d} "
        f"{precision:6.3f} {recall:6.3f} {np.mean(ious):6.3f} {np.mean(seconds):6.2f}"
    )
    print(f"mean IoU over all {len(ious)} matched cells; seconds per field on one core")
    at_challenge = sum(iou >= 0.6 for iou in ious)
    print(
        f"at IoU >= 0.6 (the 2021 metric's): {at_challenge} of {totals['reference']} HPA cells "
        f"matched ({at_challenge / totals['reference']:.3f})"
    )
    print(
        "the HPA masks alone, shrunk to the working size and enlarged back (nearest), keep "
        f"a mean IoU of {np.mean(round_trips):.3f} with themselves: the cost of the scale"
    )
    _save_picture(tiles, arguments.out)


def _round_trip_iou(reference: np.ndarray, working_size: int) -> float:
    height, width = reference.shape
    factor = min(working_size, max(height, width)) / max(height, width)
    small = cv2.resize(reference, (round(width * factor), round(height * factor)),
                       interpolation=cv2.INTER_NEAREST)  # fmt: skip
    back = cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)
    return match_cells(back, reference, 0.5).mean_iou


def _save_picture(tiles: list[np.ndarray], out: Path) -> None:
    gap = np.full((PICTURE_SIDE, 8, 3), 0.5, np.float32)
    row = np.concatenate([part for tile in tiles for part in (tile, gap)][:-1], axis=1)
    out.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.clip(row * 255, 0, 255).astype(np.uint8)
    cv2.imwrite(str(out), cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88])
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
