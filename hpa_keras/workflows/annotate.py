"""``hpa-keras annotate``: a plate of fields from a user's own microscope, cell by cell.

For each field (docs/own-images.md):

1. **read** it (per-channel files, or an OME-TIFF / OME-Zarr scene with a channel map;
   :mod:`hpa_keras.data.microscope`) and bring it to the working scale (0.32 um a pixel);
2. **quality control** (:mod:`hpa_keras.data.quality`): blank, saturated, out of focus,
   shifted stains, then the cell count;
3. **segment** it (:func:`~hpa_keras.cells.segment.segment_working`, at the working
   scale, or the user's masks);
4. **classify** every cell and take its embedding
   (:class:`~hpa_keras.inference.cell_embedding.CellClassifier`);
5. **write** its part: ``parts/<field>.npz`` (the cells' numbers, places, probabilities,
   embeddings) and then ``parts/<field>.json`` (the field's record, which marks it done),
   its masks and its pictures, each atomically.

A killed annotate continues where it stopped: fields with a record are not read again.
Reading, quality control and segmentation run in ``workers`` processes, classification in
this one (one copy of the model). ``--shard K/N`` takes every N-th field from the K-th, so
N machines share a plate; :func:`merge_annotations` joins their folders. Once every field
is done, :func:`~hpa_keras.workflows.annotation_outputs.write_outputs` reads the parts
back one at a time into the tables, the AnnData file, the UMAP and the viewer.
"""

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from hpa_keras.atomic import atomic_path, write_text_atomic
from hpa_keras.cells.segment import SegmentationSettings, segment_working
from hpa_keras.data.cells import read_field_masks, write_mask
from hpa_keras.data.microscope import (
    FieldSource,
    list_fields,
    parse_channel_map,
    read_field,
    working_planes,
)
from hpa_keras.data.quality import (
    QualitySettings,
    cells_per_area,
    measure_quality,
    quality_flags,
)
from hpa_keras.errors import InputError
from hpa_keras.parallel import ordered_map
from hpa_keras.reports.samples import composite
from hpa_keras.reports.viewer import PICTURES
from hpa_keras.settings import setting
from hpa_keras.workflows.annotation_outputs import (
    MASKS,
    PARTS,
    SETTINGS_FILE,
    write_outputs,
)

SCREEN_SIDE = 1024  # the field page's picture: longer side at most this
THUMBNAIL_SIDE = 192
OUTLINE_TOLERANCE = 1.0  # pixels of the screen picture a simplified outline may stray


@dataclass(frozen=True)
class AnnotationSettings:
    """How annotate reads fields and what it keeps (the settings a resumed run must share)."""

    channels: str | None = setting(
        None,
        "which file channel is which stain, as DAPI=blue,Tubulin=red,GFP=green,"
        "Calreticulin=yellow (OME files; default: channels named red, green, blue, yellow)",
        metavar="MAP",
    )
    pixel_size: float | None = setting(
        None,
        "micrometres per pixel, over the files' metadata (per-channel files: default an HPA "
        "field, 2048 px at 0.08 um)",
        default_text="from the files",
        metavar="UM",
    )
    masks: str | None = setting(
        None,
        "folder of cell masks (<Id>_cells.png, the HPA's or Cellpose's as make-tfrecords "
        "--masks reads them) instead of segmenting",
        default_text="segment",
        metavar="DIR",
    )
    skip_flagged: bool = setting(
        False, "do not classify fields with a quality flag (they stay in the outputs, flagged)"
    )
    image_weight: float = setting(
        0.5, "the field run's share when --image-run mixes one in", metavar="W"
    )
    tta: int | None = setting(
        None, "dihedral views (1, 2, 4, 8)", default_text="the run's own", metavar="N"
    )
    table_format: str = setting("csv", "the per-cell table's format", choices=("csv", "parquet"))


@dataclass
class FieldTask:
    """One field for a worker: where it is and how to treat it."""

    index: int
    source: FieldSource
    out: str
    settings: AnnotationSettings
    quality: QualitySettings
    segmentation: SegmentationSettings
    stains_needed: tuple
    bit_depth: int = 8  # the run's: a 16-bit run cannot read 8-bit fields
    channel_map: dict | None = None
    timings: dict = field(default_factory=dict)


def check_extra() -> None:
    """The annotate extra's packages are importable; InputError saying what to install."""
    import importlib.util

    missing = [
        name for name in ("anndata", "umap", "h5py") if importlib.util.find_spec(name) is None
    ]
    if missing:
        raise InputError(
            f"annotate writes AnnData and a UMAP and needs {', '.join(missing)}: "
            "pip install 'hpa-keras[annotate]'"
        )


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"2/8"`` as ``(2, 8)``; InputError for anything else."""
    if text is None:
        return None
    try:
        number, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise InputError(f"--shard {text!r}: expected K/N, as 2/8") from None
    if not 1 <= number <= count:
        raise InputError(f"--shard {text!r}: K must be between 1 and N")
    return number, count


def shard_sources(sources: list, shard: tuple[int, int] | None) -> list:
    """The fields of shard K of N: every N-th from the K-th (in the plate's order)."""
    if shard is None:
        return sources
    number, count = shard
    return sources[number - 1 :: count]


# ------------------------------------------------------------------ one field


def screen_picture(stains: dict, side: int) -> np.ndarray:
    """The field's colour composite, its longer side ``side`` at most, as uint8 RGB."""
    height, width = next(iter(stains.values())).shape
    factor = min(1.0, side / max(height, width))
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    shrunk = {
        stain: cv2.resize(plane, size, interpolation=cv2.INTER_AREA) if factor < 1 else plane
        for stain, plane in stains.items()
    }
    return np.rint(composite(shrunk) * 255).astype(np.uint8)


def _write_jpeg(path: Path, rgb: np.ndarray) -> None:
    ok, data = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85]
    )
    if not ok:
        raise InputError(f"{path}: could not encode the picture")
    with atomic_path(path, suffix=".jpg") as temporary:
        Path(temporary).write_bytes(data.tobytes())


def cell_outlines(cells: np.ndarray, shape: tuple[int, int]) -> dict[int, list]:
    """Each cell's outline on a picture of ``shape`` (``{number: [[x, y], ...]}``): the
    mask shrunk to the picture (nearest neighbour), its outer contour simplified."""
    height, width = shape
    small = cv2.resize(cells.astype(np.int32), (width, height), interpolation=cv2.INTER_NEAREST)
    outlines = {}
    for number in np.unique(small[small > 0]):
        inside = (small == number).astype(np.uint8)
        contours, _ = cv2.findContours(inside, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        if not contours:
            continue
        contour = max(contours, key=cv2.contourArea)
        contour = cv2.approxPolyDP(contour, OUTLINE_TOLERANCE, True)
        outlines[int(number)] = contour.reshape(-1, 2).tolist()
    return outlines


def cell_centroids(cells: np.ndarray) -> dict[int, tuple[float, float]]:
    """``{number: (row, column)}``, each cell's centre of mass in the field's pixels (from
    its pixels alone: no coordinate grid of the whole field)."""
    foreground = np.flatnonzero(cells)
    numbers = cells.ravel()[foreground]
    rows, columns = np.divmod(foreground, cells.shape[1])
    counts = np.bincount(numbers)
    row_sums = np.bincount(numbers, weights=rows)
    column_sums = np.bincount(numbers, weights=columns)
    return {
        int(number): (row_sums[number] / counts[number], column_sums[number] / counts[number])
        for number in np.flatnonzero(counts)
    }


def cell_count(cells: np.ndarray) -> int:
    """The cells of a label image (masks from other tools may skip numbers)."""
    return int(np.count_nonzero(np.bincount(cells.ravel())[1:])) if cells.size else 0


def _check_readable(fld, task: FieldTask) -> None:
    """The field's pixels fit the run: InputError naming it; a note for 12-bit values."""
    if task.bit_depth == 16 and fld.dtype != np.uint16:
        raise InputError(f"{fld.source.name}: 8-bit, but the run reads 16-bit images")
    if fld.dtype == np.uint16:
        top = max(int(plane.max()) for plane in fld.stains.values())
        if 0 < top <= 4095:
            fld.notes.append(
                f"16-bit values up to {top} (a 12-bit camera?), read on the 16-bit scale"
            )


def _field_cells(fld, working: dict, task: FieldTask) -> tuple[np.ndarray, np.ndarray | None]:
    """``(cells, nuclei)`` at the field's size: the user's masks, or segmented at the
    working scale and enlarged back (nearest neighbour)."""
    if task.settings.masks is not None:
        return read_field_masks(task.settings.masks, task.source.field_id, fld.shape)
    if "blue" not in working:
        raise InputError(
            f"{task.source.name}: has no blue (nucleus) stain to segment; give --masks"
        )
    cytoplasm = [working[stain] for stain in ("red", "yellow") if stain in working]
    cells, nuclei = segment_working(
        working["blue"], np.maximum.reduce(cytoplasm) if cytoplasm else None, task.segmentation, 1.0
    )
    height, width = fld.shape
    if cells.shape != fld.shape:
        cells = cv2.resize(cells, (width, height), interpolation=cv2.INTER_NEAREST)
        nuclei = cv2.resize(nuclei, (width, height), interpolation=cv2.INTER_NEAREST)
    return cells, nuclei


def prepare_field(task: FieldTask) -> dict:
    """Read, check and segment one field (a worker's part); problems come back as values."""
    timings, start = {}, time.perf_counter()
    try:
        fld = read_field(task.source, task.channel_map, task.settings.pixel_size)
        missing = [stain for stain in task.stains_needed if stain not in fld.stains]
        if missing:
            error = InputError(
                f"{fld.source.name}: has no {missing[0]} stain, which the run reads (it reads "
                f"{', '.join(task.stains_needed)}); give --channels for it, or a run trained "
                "without it"
            )
            flags = [f"missing:{stain}" for stain in missing]
            return {"index": task.index, "source": task.source, "error": str(error), "flags": flags}
        _check_readable(fld, task)
        working = working_planes(fld)
        timings["read"] = time.perf_counter() - start
        start = time.perf_counter()
        measures = measure_quality(fld.stains, working)
        timings["quality"] = time.perf_counter() - start
        start = time.perf_counter()
        cells, nuclei = _field_cells(fld, working, task)
        timings["segment"] = time.perf_counter() - start
    except InputError as error:
        return {"index": task.index, "source": task.source, "error": str(error)}
    start = time.perf_counter()
    count = cell_count(cells)
    density = cells_per_area(count, fld.shape, fld.pixel_size)
    flags = quality_flags(measures, task.quality, task.stains_needed, density)
    out = Path(task.out)
    field_id = task.source.field_id
    if task.settings.masks is None and count:
        write_mask(out / MASKS / f"{field_id}_nuclei.png", nuclei)
        write_mask(out / MASKS / f"{field_id}_cells.png", cells)
    picture = screen_picture(fld.stains, SCREEN_SIDE)
    _write_jpeg(out / PICTURES / f"{field_id}.jpg", picture)
    height, width = picture.shape[:2]
    factor = min(1.0, THUMBNAIL_SIDE / max(height, width))  # shrunk from the picture
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    thumbnail = cv2.resize(picture, size, interpolation=cv2.INTER_AREA)
    _write_jpeg(out / PICTURES / f"{field_id}_thumbnail.jpg", thumbnail)
    timings["pictures"] = time.perf_counter() - start
    centroids = cell_centroids(cells) if count else {}
    return {
        "index": task.index,
        "source": task.source,
        "stains": fld.stains,
        "cells": cells,
        "record": {
            "field": field_id,
            "index": task.index,
            "file": task.source.location,
            "scene": task.source.scene,
            "height": int(fld.shape[0]),
            "width": int(fld.shape[1]),
            "pixel_size": fld.pixel_size,
            "pixel_size_from": fld.pixel_size_from,
            "stains": sorted(fld.stains),
            "bit_depth": 8 if fld.dtype == np.uint8 else 16,
            "notes": fld.notes,
            "quality": _finite(measures),
            "cells_per_100um2": _finite(density),
            "flags": flags,
            "picture": [int(picture.shape[0]), int(picture.shape[1])],
            "outlines": {
                str(number): points
                for number, points in cell_outlines(cells, picture.shape[:2]).items()
            },
        },
        "centroids": centroids,
        "timings": timings,
    }


def _finite(value):
    """JSON-safe, nested: NaN (nothing measured) as None, infinities as text."""
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, float) and np.isnan(value):
        return None
    if isinstance(value, float) and np.isinf(value):
        return "inf" if value > 0 else "-inf"  # far beyond any limit, not "not measured"
    return value


def write_part(out: Path, prepared: dict, classified) -> dict:
    """A field's part: its cells (``.npz``), then its record (``.json``, the done mark)."""
    start = time.perf_counter()
    record = prepared["record"]
    field_id = record["field"]
    if classified is not None:
        centroids = prepared["centroids"]
        numbers = classified.numbers
        arrays = {
            "cell": numbers,
            "centroid": np.array([centroids[int(n)] for n in numbers], np.float64).reshape(-1, 2),
            "area": np.array([g["area"] for g in classified.geometry], np.int64),
            "edge": np.array([g["edge"] for g in classified.geometry], bool),
            "small": np.array([g["small"] for g in classified.geometry], bool),
            "probabilities": classified.probabilities.astype(np.float32),
            "shown": classified.shown.astype(np.float32),
            "labels": classified.labels,
            "entropy": classified.entropy.astype(np.float32),
            "embedding": classified.embeddings.astype(np.float32),
        }
        with (
            atomic_path(out / PARTS / f"{field_id}.npz", suffix=".npz") as temporary,
            open(temporary, "wb") as handle,
        ):
            np.savez(handle, **arrays)
        record["cells"] = int(len(numbers))
        record["classified"] = True
        record["pixel_means"] = classified.pixel_means
    else:
        record["cells"] = cell_count(prepared["cells"])
        record["classified"] = False
    prepared["timings"]["write"] = time.perf_counter() - start
    record["seconds"] = {stage: round(value, 4) for stage, value in prepared["timings"].items()}
    write_text_atomic(out / PARTS / f"{field_id}.json", json.dumps(record))
    return record


# ------------------------------------------------------------------ the plate


def _files_signature(paths) -> list:
    """``[path, size, modification time]`` of each file: what changes when a file does."""
    signature = []
    for path in sorted(map(Path, paths)):
        if path.is_dir():  # an OME-Zarr: its metadata file stands for it
            path = next(
                (path / name for name in (".zattrs", "zarr.json") if (path / name).is_file()), path
            )
        stat = path.stat()
        signature.append([str(path), stat.st_size, stat.st_mtime_ns])
    return signature


def _run_files(folder) -> list:
    folder = Path(folder)
    return [*folder.glob("*.keras"), *folder.glob("*/*.keras"), *folder.glob("thresholds.json")]


def _settings_document(
    images, runs, image_run, settings, quality, segmentation, shard, sources, mine
) -> dict:
    run_folders = [*runs, *([image_run] if image_run else [])]
    return {
        "images": str(Path(images).resolve()),
        "runs": [str(Path(run).resolve()) for run in runs],
        "image_run": str(Path(image_run).resolve()) if image_run else None,
        "run_files": _files_signature(path for run in run_folders for path in _run_files(run)),
        "settings": asdict(settings),
        "quality": asdict(quality),
        "segmentation": asdict(segmentation),
        "shard": list(shard) if shard else None,
        "plate": [source.field_id for source in sources],
        "fields": [source.field_id for source in mine],
        "field_files": _files_signature(
            {source.path for source in mine if source.kind == "ome"}
            | {path for source in mine for path in source.paths.values()}
        ),
    }


OUTPUT_FOLDERS = (PARTS, MASKS, PICTURES, "fields")


def clear_annotation(out: Path) -> None:
    """Every output of an annotation folder removed (``--overwrite``)."""
    for name in OUTPUT_FOLDERS:
        shutil.rmtree(out / name, ignore_errors=True)
    for pattern in ("cells.*", "fields.csv", "*.h5ad", "umap.*", "*.html", "summary.json"):
        for path in out.glob(pattern):
            path.unlink()


def _check_resumable(out: Path, document: dict, overwrite: bool) -> None:
    """An ``out`` with parts of fields is resumed only with the same settings, images and
    run files; one without (a run that failed before its first field) starts again."""
    path = out / SETTINGS_FILE
    if not path.is_file():
        return
    if overwrite:
        clear_annotation(out)
        return
    if not any((out / PARTS).glob("*.json")):
        return
    try:
        before = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: unreadable ({error}); use --overwrite to start again") from None
    differing = [key for key in document if before.get(key) != document[key]]
    if differing:
        what = {
            "run_files": "run files (a run trained again?)",
            "field_files": "image files (changed since)",
            "plate": "fields",
        }.get(differing[0], differing[0].replace("_", " "))
        raise InputError(
            f"{out}: was annotated with other {what} ({path}); give another --out, or "
            "--overwrite to start again"
        )


def done_fields(out: Path) -> set[str]:
    """The fields whose record is in ``out/parts``, but for those that failed (a rerun
    tries them again: their file may have been fixed)."""
    folder = out / PARTS
    if not folder.is_dir():
        return set()
    return {
        path.stem for path in folder.glob("*.json") if "error" not in json.loads(path.read_text())
    }


def annotate(
    images,
    runs,
    out,
    image_run=None,
    settings: AnnotationSettings = AnnotationSettings(),  # noqa: B008 (frozen)
    quality: QualitySettings = QualitySettings(),  # noqa: B008 (frozen)
    segmentation: SegmentationSettings = SegmentationSettings(),  # noqa: B008 (frozen)
    shard: tuple[int, int] | None = None,
    workers: int = 1,
    on_error: str = "fail",
    overwrite: bool = False,
    progress: bool = True,
    outputs: bool = True,
) -> dict:
    """Annotate every field of ``images`` (of shard ``shard``) into ``out``; returns the
    summary (also ``out/summary.json``).

    Args:
        images: a folder of fields or one OME file (:func:`~hpa_keras.data.microscope.list_fields`).
        runs: a run folder or cv folder (cells or fields), as ``predict --run``.
        out: the annotation folder (created; an existing one is resumed).
        image_run: a field run mixed into a cell run (``--image-run``).
        on_error: ``fail`` stops at the first unreadable field, ``skip`` records it and goes on.
        outputs: write the tables, AnnData, UMAP and viewer once every field is done.
    """
    from hpa_keras.inference.cell_embedding import CellClassifier  # lazy: TensorFlow
    from hpa_keras.inference.runs import load_run  # lazy: TensorFlow

    if on_error not in ("fail", "skip"):
        raise InputError(f"--on-error {on_error!r}: fail or skip")
    check_extra()
    quality.validate()
    segmentation.validate()
    channel_map = parse_channel_map(settings.channels)
    runs = [runs] if isinstance(runs, (str, os.PathLike)) else list(runs)
    if len(runs) != 1:
        raise InputError("annotate takes one --run (a run folder or a cv folder)")
    out = Path(out)
    sources = list_fields(images)
    mine = shard_sources(sources, shard)
    document = _settings_document(
        images, runs, image_run, settings, quality, segmentation, shard, sources, mine
    )
    _check_resumable(out, document, overwrite)
    run = load_run(runs[0])
    image = load_run(image_run) if image_run else None
    classifier = CellClassifier(run, image, settings.image_weight, views=settings.tta)
    for name in (PARTS, MASKS, PICTURES):
        (out / name).mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / SETTINGS_FILE, json.dumps(document, indent=1))
    finished = done_fields(out)
    wanted = {source.field_id for source in mine}
    tasks = [
        FieldTask(
            index=index,
            source=source,
            out=str(out),
            settings=settings,
            quality=quality,
            segmentation=segmentation,
            stains_needed=classifier.channels,
            bit_depth=run.bit_depth,
            channel_map=channel_map,
        )
        for index, source in enumerate(sources)
        if source.field_id in wanted and source.field_id not in finished
    ]
    started = time.perf_counter()
    bar = tqdm(total=len(mine), initial=len(mine) - len(tasks), disable=not progress, unit="field")
    errors = _annotate_fields(tasks, out, classifier, settings, workers, on_error, bar)
    bar.close()
    summary = {
        "fields": len(mine),
        "annotated_now": len(tasks) - len(errors),
        "kept": len(mine) - len(tasks),
        "errors": errors,
        "seconds": round(time.perf_counter() - started, 2),
        "shard": list(shard) if shard else None,
    }
    if outputs:
        started = time.perf_counter()
        summary.update(write_outputs([out], out, run, classifier))
        summary["seconds_outputs"] = round(time.perf_counter() - started, 2)
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=1))
    return summary


def _annotate_fields(tasks, out, classifier, settings, workers, on_error, bar) -> list[str]:
    """Each task's field prepared (in ``workers`` processes), classified and written;
    returns the errors of the fields skipped (``on_error="skip"``)."""
    errors = []
    for prepared in ordered_map(prepare_field, tasks, workers, max_pending=2 * max(workers, 1)):
        if "error" not in prepared:
            start = time.perf_counter()
            record = prepared["record"]
            classified = None
            try:
                if not (settings.skip_flagged and record["flags"]) and prepared["cells"].any():
                    classified = classifier.classify(
                        prepared["stains"], prepared["cells"], prepared["source"].name
                    )
            except InputError as error:
                prepared["error"] = str(error)
            prepared["timings"]["classify"] = time.perf_counter() - start
        if "error" in prepared:
            if on_error == "fail":
                raise InputError(prepared["error"])
            errors.append(prepared["error"])
            source = prepared["source"]
            record = {"field": source.field_id, "index": prepared["index"]}
            record.update(file=source.location, scene=source.scene, error=prepared["error"])
            record.update(cells=0, classified=False, flags=prepared.get("flags", ["unreadable"]))
            write_text_atomic(out / PARTS / f"{record['field']}.json", json.dumps(record))
            bar.update(1)
            continue
        write_part(out, prepared, classified)
        bar.update(1)
    return errors


def merge_annotations(folders, out) -> dict:
    """Join annotate's shard folders (``--shard K/N``, all N of them) into ``out``: their
    parts, masks and pictures copied, then every output written over all their fields."""
    from hpa_keras.inference.cell_embedding import CellClassifier  # lazy: TensorFlow
    from hpa_keras.inference.runs import load_run  # lazy: TensorFlow

    check_extra()
    folders = [Path(folder) for folder in folders]
    documents = []
    for folder in folders:
        path = folder / SETTINGS_FILE
        if not path.is_file():
            raise InputError(f"{folder}: not an annotate folder (no {SETTINGS_FILE})")
        documents.append(json.loads(path.read_text()))
    first = documents[0]
    for folder, document in zip(folders[1:], documents[1:], strict=True):
        for key in ("images", "plate", "runs", "image_run", "run_files", "settings", "quality",
                    "segmentation"):  # fmt: skip
            if document.get(key) != first.get(key):
                what = {"plate": "fields", "run_files": "run files"}.get(key, key.replace("_", " "))
                raise InputError(f"{folder}: annotated with other {what} than {folders[0]}")
    counts = {tuple(document["shard"] or (1, 1))[1] for document in documents}
    numbers = sorted(tuple(document["shard"] or (1, 1))[0] for document in documents)
    if len(counts) != 1 or numbers != list(range(1, next(iter(counts)) + 1)):
        raise InputError(
            f"shards {numbers} of {sorted(counts)}: give every shard's folder once (1 to N)"
        )
    out = Path(out)
    if out.resolve() in {folder.resolve() for folder in folders}:
        raise InputError(f"{out}: the merged folder must be a new one, not a shard's")
    if out.is_dir() and any(out.iterdir()):
        raise InputError(f"{out}: not empty; the merged annotation goes into a new folder")
    fields = []
    for folder, document in zip(folders, documents, strict=True):
        missing = sorted(set(document["fields"]) - done_fields(folder))
        if missing:
            raise InputError(
                f"{folder}: {len(missing)} of its fields are not annotated yet (first: "
                f"{missing[0]}); run that shard again to finish it"
            )
        fields += document["fields"]
    for name in (PARTS, MASKS, PICTURES):
        (out / name).mkdir(parents=True, exist_ok=True)
        for folder in folders:
            for path in sorted((folder / name).glob("*")):
                target = out / name / path.name
                if not target.exists():
                    shutil.copy2(path, target)
    merged = {**first, "shard": None, "fields": fields, "merged_from": [str(f) for f in folders]}
    write_text_atomic(out / SETTINGS_FILE, json.dumps(merged, indent=1))
    run = load_run(first["runs"][0])
    image = load_run(first["image_run"]) if first["image_run"] else None
    settings = first["settings"]
    classifier = CellClassifier(run, image, settings["image_weight"], views=settings["tta"])
    summary = {"fields": len(fields), "merged_from": [str(folder) for folder in folders]}
    summary.update(write_outputs([out], out, run, classifier))
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=1))
    return summary
