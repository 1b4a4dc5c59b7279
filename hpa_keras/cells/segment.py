"""Classical cell segmentation of HPA fields: nuclei from blue, cells grown from them.

The method (all of it scikit-image and SciPy, no model to download):

1. Work at a fixed scale. Each field is shrunk so its longer side is
   ``working_size`` pixels (512: the 2018 challenge's fields, a quarter of
   the 2048 px originals; HPA-Cell-Segmentation also works at a quarter).
   Cells are then about the same number of pixels whatever the camera, so
   the length settings below mean the same thing for every field, and a
   3072 px field costs what a 512 px one does. Smaller fields are not
   enlarged; lengths are scaled to them instead.
2. Nuclei: the blue channel, smoothed, above a threshold chosen by Otsu's
   method on the *logarithm* of the intensity. Fluorescence spans orders of
   magnitude between fields and between bright and dim cells; on the
   log scale the background and the stained objects are two clear modes,
   where a linear Otsu threshold would cut into dim nuclei beside bright
   ones. Holes filled, specks removed; touching nuclei split by a watershed
   of the distance transform seeded at its h-maxima (maxima that stand at
   least ``split_depth`` pixels above their surroundings, so one lobed
   nucleus is not cut into lobes).
3. Cells: the brighter of the microtubule (red) and ER (yellow) channels,
   smoothed, above its own log-Otsu threshold, is the cytoplasm. Each
   nucleus then grows over it by a watershed of the inverted intensity:
   two cells meet along the dim valley between them, where real cell
   borders lie, rather than half way between nuclei.
4. Cells smaller than ``min_cell_area`` are removed with their nuclei;
   cells are numbered 1..N in reading order, and each nucleus carries its
   cell's number. The masks are enlarged back to the field's size
   (nearest neighbour: numbers are not blended).

Measured against the HPA's own segmenter on five real 2048 px 2021 fields
in the manual (docs/cells.md, "Masks").
"""

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage
from skimage.measure import label
from skimage.morphology import h_maxima
from skimage.segmentation import watershed
from tqdm.auto import tqdm

from hpa_keras.atomic import removed_on_bad_input, write_text_atomic
from hpa_keras.data.cells import find_mask_files, mask_ids, read_mask, write_mask
from hpa_keras.data.images import index_image_folder, read_channel, stain_plane, to_unit_float
from hpa_keras.data.quality import log_otsu_threshold
from hpa_keras.errors import InputError
from hpa_keras.parallel import default_workers, ordered_map
from hpa_keras.settings import setting

SUMMARY_FILE = "segmentation.json"
REFERENCE_SIDE = 512  # the lengths below are in pixels of a field shrunk to this side


@dataclass(frozen=True)
class SegmentationSettings:
    """The segmenter's settings; lengths and areas in pixels of a 512 px field."""

    working_size: int = setting(
        REFERENCE_SIDE,
        "segment each field shrunk so its longer side is this many pixels (smaller fields "
        "are not enlarged)",
        metavar="S",
    )
    nucleus_smoothing: float = setting(
        2.0, "Gaussian sigma applied to the blue channel", metavar="PX"
    )
    cell_smoothing: float = setting(
        3.0, "Gaussian sigma applied to the red/yellow channels", metavar="PX"
    )
    split_depth: float = setting(
        3.0,
        "touching nuclei are split where each has a centre this many pixels deeper than "
        "the neck between them",
        metavar="PX",
    )
    min_nucleus_area: int = setting(200, "nuclei smaller than this are specks", metavar="PX2")
    min_cell_area: int = setting(1000, "cells smaller than this are removed", metavar="PX2")

    def validate(self) -> None:
        if not 64 <= self.working_size <= 8192:
            raise InputError(f"--working-size must be between 64 and 8192, got {self.working_size}")
        for name in (
            "nucleus_smoothing", "cell_smoothing", "split_depth", "min_nucleus_area",
            "min_cell_area",
        ):  # fmt: skip
            if getattr(self, name) < 0:
                raise InputError(f"--{name.replace('_', '-')} must be 0 or more")


def _smooth(image: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return image
    return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma)


def segment_nuclei(blue: np.ndarray, settings: SegmentationSettings, scale: float) -> np.ndarray:
    """Nucleus labels (int32) of a working-size blue channel in [0, 1]."""

    smoothed = _smooth(blue, settings.nucleus_smoothing * scale)
    threshold = log_otsu_threshold(smoothed)
    if threshold is None:
        return np.zeros(blue.shape, np.int32)
    foreground = ndimage.binary_fill_holes(smoothed > threshold)
    foreground = _without_small(foreground, settings.min_nucleus_area * scale**2)
    if not foreground.any():
        return np.zeros(blue.shape, np.int32)
    distance = ndimage.distance_transform_edt(foreground).astype(np.float32)
    distance = _smooth(distance, settings.nucleus_smoothing * scale)
    seeds = label(h_maxima(distance, max(settings.split_depth * scale, 1e-3)))
    return watershed(-distance, seeds, mask=foreground).astype(np.int32)


def _without_small(mask: np.ndarray, min_area: float) -> np.ndarray:
    """``mask`` without its connected pieces smaller than ``min_area`` pixels."""
    count, pieces, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), 8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_area
    keep[0] = False
    return keep[pieces]


def grow_cells(
    nuclei: np.ndarray, cytoplasm: np.ndarray, settings: SegmentationSettings, scale: float
) -> np.ndarray:
    """Cell labels (int32) grown from ``nuclei`` over a working-size cytoplasm image."""

    smoothed = _smooth(cytoplasm, settings.cell_smoothing * scale)
    threshold = log_otsu_threshold(smoothed)
    foreground = nuclei > 0
    if threshold is not None:
        foreground |= smoothed > threshold
    foreground = ndimage.binary_fill_holes(foreground)
    return watershed(-smoothed, nuclei, mask=foreground).astype(np.int32)


def _renumbered(cells: np.ndarray, nuclei: np.ndarray, min_area: float):
    """Small cells (and their nuclei) removed, the rest numbered 1..N in reading order."""
    areas = np.bincount(cells.ravel())
    kept = np.flatnonzero(areas >= max(min_area, 1))
    kept = kept[kept > 0]
    if kept.size:
        # reading order: by the row, then column, of each cell's first pixel
        first = np.full(areas.size, cells.size, np.int64)
        flat = cells.ravel()
        np.minimum.at(first, flat, np.arange(flat.size))
        kept = kept[np.argsort(first[kept], kind="stable")]
    lookup = np.zeros(areas.size, np.int32)
    lookup[kept] = np.arange(1, kept.size + 1, dtype=np.int32)
    return lookup[cells], lookup[nuclei]


def segment_working(
    blue: np.ndarray,
    cytoplasm: np.ndarray | None,
    settings: SegmentationSettings,
    scale: float,
) -> tuple[np.ndarray, np.ndarray]:
    """``(cells, nuclei)`` label images (int32) of a field already at its working scale.

    ``blue`` and ``cytoplasm`` are float32 in [0, 1]; ``scale`` multiplies the settings'
    lengths (1 where a pixel is what it is in a 2048 px HPA field shrunk to 512, 0.32 um).
    ``annotate`` calls it on planes it shrank itself, to the physical pixel size its
    files state, where :func:`segment_field` assumes every field spans an HPA field.
    """
    nuclei = segment_nuclei(blue, settings, scale)
    cells = nuclei.copy() if cytoplasm is None else grow_cells(nuclei, cytoplasm, settings, scale)
    return _renumbered(cells, nuclei, settings.min_cell_area * scale**2)


def segment_field(
    blue: np.ndarray,
    cytoplasm: np.ndarray | None,
    settings: SegmentationSettings = SegmentationSettings(),  # noqa: B008 (frozen)
) -> tuple[np.ndarray, np.ndarray]:
    """``(cells, nuclei)`` label images (int32, the field's size) of one field.

    Args:
        blue: the nucleus channel, uint8/uint16 or float in [0, 1].
        cytoplasm: the brighter of the microtubule and ER channels (same type
            and size), or None: cells are then their nuclei.
    """
    height, width = blue.shape
    side = max(height, width)
    working = min(settings.working_size, side)
    factor = working / side
    scale = working / REFERENCE_SIDE
    size = (max(1, round(width * factor)), max(1, round(height * factor)))

    def shrink(channel):
        channel = channel if channel.dtype == np.float32 else to_unit_float(channel)
        if factor == 1:
            return channel
        return cv2.resize(channel, size, interpolation=cv2.INTER_AREA)

    cells, nuclei = segment_working(
        shrink(blue), None if cytoplasm is None else shrink(cytoplasm), settings, scale
    )
    if factor != 1:
        cells = cv2.resize(cells, (width, height), interpolation=cv2.INTER_NEAREST)
        nuclei = cv2.resize(nuclei, (width, height), interpolation=cv2.INTER_NEAREST)
    return cells, nuclei


# ------------------------------------------------------------------ folders


def read_segmentation_channels(channel_paths: dict) -> tuple[np.ndarray, np.ndarray | None]:
    """A field's blue channel and the pixelwise maximum of its red and yellow channels (in
    [0, 1]); the field's files are named in any error."""

    def plane(channel):
        path = channel_paths.get(channel)
        if path is None:
            return None
        array = read_channel(path, allow_colour=True)
        if array.ndim == 3:
            array, _ = stain_plane(array, channel, path)
        return to_unit_float(array)

    blue = plane("blue")
    if blue is None:
        present = next(iter(channel_paths.values()))
        raise InputError(
            f"{present}: field has no blue (nucleus) channel file; cells are grown from nuclei"
        )
    cytoplasm = None
    for channel in ("red", "yellow"):
        image = plane(channel)
        if image is None:
            continue
        if image.shape != blue.shape:
            raise InputError(
                f"{channel_paths[channel]}: {image.shape[1]}x{image.shape[0]} pixels, the blue "
                f"channel is {blue.shape[1]}x{blue.shape[0]}"
            )
        cytoplasm = image if cytoplasm is None else np.maximum(cytoplasm, image)
    return blue, cytoplasm


@dataclass(frozen=True)
class _FieldTask:
    field_id: str
    channel_paths: dict
    out: str
    settings: SegmentationSettings


def _segment_task(task: _FieldTask) -> dict:
    """Segment one field and write its masks; problems come back as values."""
    start = time.perf_counter()
    try:
        blue, cytoplasm = read_segmentation_channels(task.channel_paths)
        cells, nuclei = segment_field(blue, cytoplasm, task.settings)
    except InputError as error:
        return {"id": task.field_id, "error": str(error)}
    count = int(cells.max())
    if count:
        out = Path(task.out)
        # nuclei first: a field counts as done when its cell mask exists
        write_mask(out / f"{task.field_id}_nuclei.png", nuclei)
        write_mask(out / f"{task.field_id}_cells.png", cells)
    return {
        "id": task.field_id,
        "cells": count,
        "size": [int(blue.shape[0]), int(blue.shape[1])],
        "seconds": round(time.perf_counter() - start, 3),
    }


def segment_folder(
    images: str | os.PathLike,
    out: str | os.PathLike,
    settings: SegmentationSettings = SegmentationSettings(),  # noqa: B008 (frozen)
    workers: int | None = None,
    overwrite: bool = False,
    on_error: str = "fail",
    progress: bool = True,
) -> dict:
    """Segment every field of an image folder into ``out``; returns the summary.

    Fields whose cell mask is already in ``out`` are kept (a rerun finishes
    an interrupted one) unless ``overwrite``. A field where no cell is
    found gets no mask files and is listed in the summary's ``no_cells``.
    With ``on_error="skip"`` an unreadable field is listed in ``errors``
    instead of stopping the run; stopped by one, it removes the masks it wrote
    (a new ``out`` entirely). Writes ``segmentation.json``, which describes every field
    with masks in ``out``: those kept are counted from their masks, so a rerun after a
    kill gives the summary an uninterrupted run would have.
    """


    settings.validate()
    if on_error not in ("fail", "skip"):
        raise InputError(f"--on-error must be fail or skip, got {on_error}")
    index = index_image_folder(images)
    if not index:
        raise InputError(f"{images}: no <Id>_<red|green|blue|yellow>.png/.tif/.jpg files")
    out = Path(out)
    with removed_on_bad_input(out):  # an unreadable field: no half-made MASKS left
        out.mkdir(parents=True, exist_ok=True)
        done = set() if overwrite else set(mask_ids(out))  # one listing, not a stat per name
        todo = [field_id for field_id in sorted(index) if field_id not in done]
        kept = len(index) - len(todo)
        kept_fields = _kept_field_records(out, [field_id for field_id in index if field_id in done])
        if kept and progress:
            print(f"{kept} of {len(index)} fields already have masks in {out}; kept")
        tasks = (_FieldTask(field_id, index[field_id], str(out), settings) for field_id in todo)
        fields, errors, no_cells = [], [], []
        started = time.perf_counter()
        results = ordered_map(_segment_task, tasks, max(1, workers or default_workers()))
        try:
            for result in tqdm(
                results, total=len(todo), desc="segmenting", unit="field", disable=not progress
            ):
                if "error" in result:
                    if on_error == "fail":
                        raise InputError(result["error"])
                    errors.append(result)
                elif result["cells"] == 0:
                    no_cells.append(result["id"])
                else:
                    fields.append(result)
        finally:
            results.close()
    elapsed = time.perf_counter() - started
    segmented_now = len(fields)
    fields = sorted(kept_fields + fields, key=lambda field: field["id"])
    summary = {
        "method": "log-Otsu nuclei, distance-transform split, seeded watershed of red/yellow",
        "settings": asdict(settings),
        "images": str(Path(images).resolve()),
        "num_fields": len(index),
        "segmented": segmented_now,
        "kept": kept,
        "no_cells": no_cells,
        "errors": errors,
        "cells": sum(field["cells"] for field in fields),  # of every field with masks
        "cells_per_field": {field["id"]: field["cells"] for field in fields},
        "seconds": round(elapsed, 2),
        "fields": fields,
    }
    write_text_atomic(out / SUMMARY_FILE, json.dumps(summary, indent=1) + "\n")
    return summary


def _kept_field_records(out: Path, field_ids: list) -> list:
    """The summary records of fields whose masks an earlier run left in ``out``, rebuilt
    from the masks themselves: cells counted and size read from each cell mask.

    A run killed before writing its summary (or an earlier summary since overwritten by
    another run's) cannot then lose or misstate the fields it finished: the summary of a
    rerun describes every field with masks in the folder, as an uninterrupted run's does.
    Only the seconds a field took come from the earlier summary, where it has the field
    with the same cells and size (else None).
    """
    earlier = {}
    try:
        document = json.loads((out / SUMMARY_FILE).read_text())
        earlier = {field["id"]: field for field in document.get("fields", [])}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        pass  # no summary, or one cut short by hand: the masks say what is needed
    records = []
    for field_id in sorted(field_ids):
        cells = read_mask(find_mask_files(out, field_id)[0])
        record = {
            "id": field_id,
            "cells": int(np.count_nonzero(np.bincount(cells.ravel())[1:])),
            "size": [int(cells.shape[0]), int(cells.shape[1])],
        }
        before = earlier.get(field_id, {})
        same = before.get("cells") == record["cells"] and before.get("size") == record["size"]
        record["seconds"] = before.get("seconds") if same else None
        records.append(record)
    return records
