"""The manual's picture of annotate's viewer (docs/viewer_field.jpg), from an OME-TIFF made of
the real 2021 fields of the maintainers' sample folder.

1. The five 2048 px fields become one OME-TIFF of five scenes, its channels named as a
   microscope names them (DAPI, Tubulin, GFP, Calreticulin) at 0.08 um a pixel.
2. A GAP-Net cell run is trained for one epoch on built-in cells (the classes it gives
   real cells mean nothing; the outlines are what the picture shows).
3. ``hpa-keras annotate`` reads the OME-TIFF with a channel map (its output is printed:
   the manual's "From an OME-TIFF" shows it).
4. Chromium (Playwright) opens the first field's page, selects a cell and takes the
   screenshot.

    python scripts/draw_viewer.py [--data ../shared/data/hpa-2021-single-cell] [--out draw-viewer]
"""

import argparse
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("DAPI", "Tubulin", "GFP", "Calreticulin")
STAINS = ("blue", "red", "green", "yellow")
MAP = ",".join(f"{name}={stain}" for name, stain in zip(NAMES, STAINS, strict=True))


def hpa_keras(*arguments) -> None:
    command = [sys.executable, "-m", "hpa_keras", *map(str, arguments)]
    print("$ hpa-keras " + " ".join(map(str, arguments)), flush=True)
    subprocess.run(command, check=True, cwd=ROOT)


def write_plate(images: Path, path: Path) -> None:
    from bioio_base.types import PhysicalPixelSizes
    from bioio_ome_tiff.writers import OmeTiffWriter

    fields = sorted({file.name.rsplit("_", 1)[0] for file in images.glob("*_blue.png")})
    scenes = [
        np.stack([cv2.imread(str(images / f"{field}_{stain}.png"), cv2.IMREAD_GRAYSCALE)
                  for stain in STAINS])
        for field in fields
    ]  # fmt: skip
    OmeTiffWriter.save(
        scenes, str(path), dim_order=["CYX"] * len(scenes),
        channel_names=[list(NAMES)] * len(scenes),
        physical_pixel_sizes=[PhysicalPixelSizes(None, 0.08, 0.08)] * len(scenes),
    )  # fmt: skip


def screenshot(annotation: Path, target: Path) -> None:
    import csv

    from playwright.sync_api import sync_playwright

    with open(annotation / "cells.csv") as handle:
        first = next(csv.DictReader(handle))
    page_path = annotation / "fields" / f"{first['field']}.html"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1180, "height": 860})
        page.goto(page_path.as_uri())
        polygons = page.locator("polygon")
        polygons.nth(min(4, polygons.count() - 1)).click()
        picture = target.with_suffix(".png")
        page.screenshot(path=str(picture))
        browser.close()
    cv2.imwrite(str(target), cv2.imread(str(picture)), [cv2.IMWRITE_JPEG_QUALITY, 85])
    picture.unlink()
    print(f"wrote {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/hpa-2021-single-cell"))
    parser.add_argument("--out", default="draw-viewer")
    arguments = parser.parse_args()
    out = Path(arguments.out).resolve()
    (out / "plate").mkdir(parents=True, exist_ok=True)
    write_plate(Path(arguments.data) / "images", out / "plate" / "real-2021.ome.tiff")
    if not (out / "cell-run" / "model.keras").is_file():
        hpa_keras("make-demo-data", out / "cells", "--num-samples", 24, "--image-size", 256,
                  "--cells", "--scheme", "hpa2021", "--test-fraction", 0, "--quiet")  # fmt: skip
        hpa_keras("make-tfrecords", "--images", out / "cells" / "train", "--labels",
                  out / "cells" / "train.csv", "--masks", out / "cells" / "masks",
                  "--cell-size", 128, "--out", out / "records", "--folds", 2,
                  "--quiet")  # fmt: skip
        hpa_keras("fit", "--data", out / "records", "--out", out / "cell-run", "--model",
                  "gapnet", "--epochs", 1, "--batch-size", 32, "--quiet")  # fmt: skip
    hpa_keras("annotate", "--images", out / "plate", "--run", out / "cell-run", "--out",
              out / "annotation", "--channels", MAP, "--overwrite")  # fmt: skip
    screenshot(out / "annotation", ROOT / "docs" / "viewer_field.jpg")


if __name__ == "__main__":
    main()
