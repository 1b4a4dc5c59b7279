"""How well annotate's quality flags find degraded fields: the real HPA fields of the
maintainers' sample folder, unmodified and degraded on purpose, through the same quality
control annotate runs (measures, segmentation at the working scale, flags).

Degradations, each applied to every field (the stain rotating from field to field):

* ``blur 0.4 / 0.8 / 1.6 um``: a Gaussian blur of that sigma on every stain (defocus);
* ``saturated``: one stain multiplied until a fifth of its signal pixels clip;
* ``blank (dark)`` / ``blank (zero)``: one stain replaced by a camera's dark frame
  (offset and read noise) or by zeros;
* ``shifted 2 um``: one reference stain (red, blue or yellow) moved by 2 um.

Prints, per set and degradation, the share of fields flagged at all and by the flag
meant, then the share of unmodified fields flagged (false alarms) with their flags.

    python benchmarks/quality_flags.py [--data ../shared/data] [--kaggle 80]
"""

import argparse
import collections
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hpa_keras.cells.segment import SegmentationSettings, segment_working  # noqa: E402
from hpa_keras.data.microscope import (  # noqa: E402
    WORKING_PIXEL_SIZE,
    Field,
    FieldSource,
    list_fields,
    read_field,
    working_planes,
)
from hpa_keras.data.quality import (  # noqa: E402
    QualitySettings,
    cells_per_area,
    flag_kinds,
    log_otsu_threshold,
    measure_quality,
    quality_flags,
)

STAINS = ("red", "green", "blue", "yellow")
SETS = (
    ("2021 fields (2048 px)", "hpa-2021-single-cell/images"),
    ("v18 JPEGs (2048 px)", "hpa-v18-external/images"),
    ("2018 Kaggle (512 px)", "hpa-kaggle-2018/four-channel/train"),
)
EXPECTED = {
    "blur 0.4 um": "out_of_focus",
    "blur 0.8 um": "out_of_focus",
    "blur 1.6 um": "out_of_focus",
    "saturated": "saturated",
    "blank (dark)": "blank",
    "blank (zero)": "blank",
    "shifted 2 um": "shifted",
}


def field_flags(field: Field, settings=QualitySettings()) -> list[str]:  # noqa: B008
    """annotate's quality control of one field: measures, cells, flags."""
    working = working_planes(field)
    measures = measure_quality(field.stains, working)
    cytoplasm = np.maximum(working["red"], working["yellow"])
    cells, _ = segment_working(working["blue"], cytoplasm, SegmentationSettings(), 1.0)
    density = cells_per_area(int(cells.max()), working["blue"].shape, WORKING_PIXEL_SIZE)
    return quality_flags(measures, settings, STAINS, density)


def _with(field: Field, stains: dict) -> Field:
    return Field(field.source, stains, field.pixel_size, field.pixel_size_from)


def degrade(field: Field, kind: str, index: int, rng) -> Field:
    stains = dict(field.stains)
    top = 255 if field.dtype == np.uint8 else 65535
    if kind.startswith("blur"):
        sigma = float(kind.split()[1]) / field.pixel_size
        return _with(field, {s: cv2.GaussianBlur(p, (0, 0), sigma) for s, p in stains.items()})
    if kind == "saturated":
        stain = STAINS[index % 4]
        plane = stains[stain].astype(np.float32)
        working = working_planes(_with(field, {stain: stains[stain]}))[stain]
        level = (log_otsu_threshold(working) or 0) * top
        signal = plane[plane > level]
        gain = top / max(float(np.percentile(signal, 80)) if signal.size else 1.0, 1.0)
        stains[stain] = np.clip(plane * max(gain, 1.0), 0, top).astype(field.dtype)
        return _with(field, stains)
    if kind.startswith("blank"):
        stain = STAINS[index % 4]
        shape = stains[stain].shape
        if kind == "blank (zero)":
            stains[stain] = np.zeros(shape, field.dtype)
        else:
            dark = 0.012 * top + rng.normal(0, 0.008 * top, shape)
            stains[stain] = np.clip(dark, 0, top).astype(field.dtype)
        return _with(field, stains)
    if kind.startswith("shifted"):
        stain = ("red", "blue", "yellow")[index % 3]
        distance = 2.0 / field.pixel_size
        angle = rng.uniform(0, 2 * np.pi)
        matrix = np.float32([[1, 0, distance * np.cos(angle)], [0, 1, distance * np.sin(angle)]])
        height, width = stains[stain].shape
        stains[stain] = cv2.warpAffine(
            stains[stain], matrix, (width, height), borderMode=cv2.BORDER_REFLECT
        )
        return _with(field, stains)
    raise ValueError(kind)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data"))
    parser.add_argument("--kaggle", type=int, default=80, help="2018 samples to use")
    arguments = parser.parse_args()
    rng = np.random.default_rng(0)
    totals = collections.defaultdict(lambda: [0, 0, 0])  # kind -> fields, flagged, meant
    false_alarms, start = [], time.perf_counter()
    rows = []
    for set_name, folder in SETS:
        sources: list[FieldSource] = list_fields(Path(arguments.data) / folder)
        if "Kaggle" in set_name:
            sources = sources[: arguments.kaggle]
        counts = collections.defaultdict(lambda: [0, 0, 0])
        for index, source in enumerate(sources):
            field = read_field(source)
            flags = field_flags(field)
            counts["unmodified"][0] += 1
            counts["unmodified"][1] += bool(flags)
            if flags:
                false_alarms.append((source.field_id, flags))
            for kind, meant in EXPECTED.items():
                flags = field_flags(degrade(field, kind, index, rng))
                counts[kind][0] += 1
                counts[kind][1] += bool(flags)
                counts[kind][2] += meant in flag_kinds(flags)
        for kind, (fields, flagged, meant) in counts.items():
            rows.append((set_name, kind, fields, flagged, meant))
            totals[kind][0] += fields
            totals[kind][1] += flagged
            totals[kind][2] += meant
    print("| fields | degradation | n | flagged | by the flag meant |")
    print("|---|---|---|---|---|")
    for set_name, kind, fields, flagged, meant in rows:
        meant_text = "-" if kind == "unmodified" else f"{meant / fields:.0%}"
        print(f"| {set_name} | {kind} | {fields} | {flagged / fields:.0%} | {meant_text} |")
    degraded = [0, 0]
    for kind, (fields, flagged, meant) in totals.items():
        meant_text = "-" if kind == "unmodified" else f"{meant / fields:.0%}"
        print(f"| all | {kind} | {fields} | {flagged / fields:.0%} | {meant_text} |")
        if kind != "unmodified":
            degraded[0] += fields
            degraded[1] += flagged
    print(
        f"\ndegraded fields flagged: {degraded[1]}/{degraded[0]} "
        f"({degraded[1] / degraded[0]:.1%}); unmodified flagged: "
        f"{totals['unmodified'][1]}/{totals['unmodified'][0]} "
        f"({totals['unmodified'][1] / totals['unmodified'][0]:.1%}); "
        f"{time.perf_counter() - start:.0f} s"
    )
    for field_id, flags in false_alarms:
        print(f"  unmodified but flagged: {field_id}: {', '.join(flags)}")


if __name__ == "__main__":
    main()
