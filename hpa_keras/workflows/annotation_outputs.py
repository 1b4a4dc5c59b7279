"""What ``annotate`` leaves for a biologist's tools, built from its per-field parts.

* ``cells.csv`` (or ``cells.parquet``): one row a cell: field, cell, Label (the classes over
  the run's thresholds), each class's probability (calibrated where the run has maps),
  entropy, centroid (pixels and micrometres), area, edge and small flags, the field's
  quality flags.
* ``fields.csv``: one row a field: its file, size, pixel size, cells, quality measures
  and flags, and its labels summarised from its cells (a field has a class when a cell
  has it; Negative only when every cell is: the 2021 rule).
* ``annotation.h5ad``: AnnData, ``X`` the cells' embeddings, ``obs`` the table's columns,
  ``obsm`` the probabilities, the centroids in micrometres (``spatial``) and the UMAP
  (``X_umap``), ``uns`` the class names, thresholds, runs and settings.
* ``umap.png`` and the viewer (:mod:`hpa_keras.reports.viewer`).

The parts are read one field at a time and ``X`` is written into the file as they come,
so memory holds one field's embeddings, the per-cell columns and the UMAP's sample, not
the plate's embeddings.
"""

import csv
import heapq
import io
import json
from pathlib import Path

import numpy as np

from hpa_keras.atomic import atomic_path, write_text_atomic
from hpa_keras.cells.average_precision import field_scores
from hpa_keras.classes import format_target, get_scheme
from hpa_keras.data.quality import FLAGS
from hpa_keras.errors import InputError, warn
from hpa_keras.reports.viewer import (
    GALLERY_CELLS,
    write_field_page,
    write_umap_picture,
    write_viewer,
)
from hpa_keras.scoring.thresholds import labels_per_image_warning

UMAP_SAMPLE = 2000  # cells the UMAP is fitted on (and the viewer's map shows): memory
UMAP_MIN_CELLS = 10  # fewer and no UMAP is drawn
UMAP_NEIGHBOURS = 15
H5AD = "annotation.h5ad"
# The annotation folder's layout (the pictures' folder is the viewer's: PICTURES)
SETTINGS_FILE = "annotation.json"
PARTS = "parts"
MASKS = "masks"


def _plate_order(document: dict) -> list[str]:
    """The annotation's fields (its settings file's, a merge's all shards') in the plate's
    order."""
    position = {field_id: index for index, field_id in enumerate(document["plate"])}
    return sorted(document["fields"], key=position.__getitem__)


def _part(folder: Path, field_id: str) -> dict | None:
    path = folder / PARTS / f"{field_id}.npz"
    if not path.is_file():
        return None
    with np.load(path) as arrays:
        return {name: arrays[name] for name in arrays.files}


def _object_index(values):
    import pandas as pd

    return pd.Index(list(values), dtype=object)


def _cell_columns(class_names) -> list[str]:
    return [
        "field", "cell", "Label", *class_names, "entropy", "top_class", "top_probability",
        "x", "y", "x_um", "y_um", "area", "area_um2", "edge", "small", "flags", "flagged",
    ]  # fmt: skip


TEXT_COLUMNS = ("field", "Label", "top_class", "flags")
INTEGER_COLUMNS = ("cell", "area")
BOOLEAN_COLUMNS = ("edge", "small", "flagged")


def _arrow_schema(columns):
    """The Parquet table's types (the rest, probabilities and places, float64): an empty
    table has them too, so shards' tables concatenate."""
    import pyarrow as pa

    def kind(name):
        if name in TEXT_COLUMNS:
            return pa.string()
        if name in INTEGER_COLUMNS:
            return pa.int64()
        return pa.bool_() if name in BOOLEAN_COLUMNS else pa.float64()

    return pa.schema([(name, kind(name)) for name in columns])


class _TableWriter:
    """The per-cell table, written part by part (CSV rows, or Parquet row groups)."""

    def __init__(self, path: Path, columns: list[str], table_format: str):
        self.path, self.columns, self.format = path, columns, table_format
        self._context = atomic_path(path, suffix=path.suffix)
        self.temporary = Path(self._context.__enter__())
        if table_format == "parquet":
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise InputError(
                    "--table-format parquet needs pyarrow: pip install 'hpa-keras[annotate]'"
                ) from None
            self.writer = None
        else:
            self.handle = open(self.temporary, "w", newline="")  # noqa: SIM115 (closed by close)
            self.writer = csv.writer(self.handle, lineterminator="\n")
            self.writer.writerow(columns)

    def add(self, rows: list[list]) -> None:
        if not rows:
            return
        if self.format == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            schema = _arrow_schema(self.columns)
            table = pa.Table.from_pylist(
                [dict(zip(self.columns, row, strict=True)) for row in rows], schema=schema
            )
            if self.writer is None:
                self.writer = pq.ParquetWriter(self.temporary, schema)
            self.writer.write_table(table)
            return
        self.writer.writerows(
            [
                [f"{value:.4f}" if isinstance(value, float) else value for value in row]
                for row in rows
            ]
        )

    def abort(self, error: BaseException) -> None:
        """Remove the half-written table (the one of an earlier run stays)."""
        if self.format == "csv":
            self.handle.close()
        elif self.writer is not None:
            self.writer.close()
        self._context.__exit__(type(error), error, error.__traceback__)

    def close(self) -> None:
        if self.format == "parquet":
            if self.writer is None:  # no cell at all: an empty table of the same columns
                import pyarrow.parquet as pq

                pq.write_table(_arrow_schema(self.columns).empty_table(), self.temporary)
            else:
                self.writer.close()
        else:
            self.handle.close()
        self._context.__exit__(None, None, None)


class _Plate:
    """The outputs being written, field by field: the table, ``X``, the per-cell columns,
    the UMAP's sample (a reservoir over the plate) and the gallery's heaps."""

    def __init__(self, store, table, run, scheme):
        self.store, self.table = store, table
        self.class_names, self.scheme = list(run.class_names), scheme
        self.matrix, self.row, self.labels = None, 0, 0
        self.obs, self.probabilities, self.spatial = [], [], []
        self.sample, self.rng = [], np.random.default_rng(0)
        self.best = {index: [] for index in range(len(self.class_names))}

    def add(self, record: dict, part: dict) -> None:
        count = len(part["cell"])
        if self.matrix is None:  # X grows as the fields come: one pass over the parts
            width = part["embedding"].shape[1]
            self.matrix = self.store.create_dataset(
                "X", shape=(0, width), maxshape=(None, width), dtype="float32",
                chunks=(1024, width),
            )  # fmt: skip
            self.matrix.attrs["encoding-type"] = "array"
            self.matrix.attrs["encoding-version"] = "0.2.0"
        self.matrix.resize(self.row + count, axis=0)
        self.matrix[self.row : self.row + count] = part["embedding"]
        rows = _cell_rows(record, part, self.class_names, self.scheme, record.get("flags", []))
        self.table.add(rows)
        skip = slice(3, 3 + len(self.class_names))  # the probabilities: in obsm instead
        self.obs.extend([cell[: skip.start] + cell[skip.stop :] for cell in rows])
        self.probabilities.append(part["shown"])
        self.spatial.append(part["centroid"][:, ::-1] * record["pixel_size"])
        for index in range(self.row, self.row + count):
            if len(self.sample) < UMAP_SAMPLE:
                self.sample.append(index)
            else:
                slot = int(self.rng.integers(0, index + 1))
                if slot < UMAP_SAMPLE:
                    self.sample[slot] = index
        self._add_to_gallery(record["field"], record, part)
        self.row += count
        self.labels += int(part["labels"].sum())

    def _add_to_gallery(self, field_id: str, full: dict, part: dict) -> None:
        boxes = _picture_boxes(full)
        for class_index, heap in self.best.items():
            for position in np.flatnonzero(part["labels"][:, class_index]):
                number = int(part["cell"][position])
                if number not in boxes:
                    continue  # too small to outline on the picture
                probability = float(part["shown"][position, class_index])
                entry = (probability, field_id, number, boxes[number], full["picture"])
                if len(heap) < GALLERY_CELLS:
                    heapq.heappush(heap, entry)
                else:
                    heapq.heappushpop(heap, entry)

    def gallery(self) -> dict:
        names = self.class_names
        return {
            names[index]: sorted(heap, reverse=True) for index, heap in self.best.items() if heap
        }

    def umap_points(self, coordinates, sampled, columns) -> list[dict]:
        top, probability = columns.index("top_class"), columns.index("top_probability")
        return [
            {
                "x": float(coordinates[index, 0]),
                "y": float(coordinates[index, 1]),
                "field": self.obs[index][0],
                "cell": int(self.obs[index][1]),
                "top": self.obs[index][top],
                "p": float(self.obs[index][probability]),
            }
            for index in sampled
        ]


def _warn_of_label_counts(plate: _Plate, run) -> None:
    """Far more (or fewer) classes per cell than the run's training data had: the
    thresholds do not suit these cells (a run tuned on a few images, another microscope)."""
    from hpa_keras.inference.predict import training_labels_per_image  # lazy: TensorFlow

    if not plate.row:
        return
    message = labels_per_image_warning(
        plate.labels / plate.row, training_labels_per_image([run.folder])
    )
    if message:
        warn(message.replace("per image predicted", "per cell predicted"))


def _warn_of_stains(means: list[dict], run, out: Path) -> None:
    """The stain check (:mod:`hpa_keras.inference.input_shift`) on what the run saw: the
    mean of the classified fields' pixel means, from MIN_IMAGES fields on."""
    from hpa_keras.inference.input_shift import MIN_IMAGES, means_warning  # lazy: TensorFlow

    if len(means) < MIN_IMAGES:
        return
    average = {stain: float(np.mean([mean[stain] for mean in means])) for stain in means[0]}
    message = means_warning([run.folder], average, f"{out}: the cells'")
    if message:
        warn(message)


def _neighbours(fields: list[str], position: int) -> tuple[str | None, str | None]:
    previous = fields[position - 1] if position else None
    following = fields[position + 1] if position + 1 < len(fields) else None
    return previous, following


def write_outputs(folders, out, run, classifier) -> dict:
    """Every output of ``out`` from the parts in ``folders`` (annotate's own folder, or a
    merge's), each field's part read once; returns what they hold: ``cells``,
    ``fields_flagged``, ``umap``, ``outputs``."""
    import h5py
    import pandas as pd

    out = Path(out)
    folder = Path(folders[0])
    document = json.loads((folder / SETTINGS_FILE).read_text())
    fields = _plate_order(document)
    scheme = get_scheme(run.scheme)
    class_names = list(run.class_names)
    negative = class_names.index("Negative") if "Negative" in class_names else None
    table_path = out / f"cells.{document['settings']['table_format']}"
    table = _TableWriter(
        table_path, _cell_columns(class_names), document["settings"]["table_format"]
    )
    columns = [name for name in _cell_columns(class_names) if name not in class_names]
    field_rows, pixel_means = [], []
    h5ad_context = atomic_path(out / H5AD, suffix=".h5ad")
    h5ad_path = Path(h5ad_context.__enter__())
    try:
        with h5py.File(h5ad_path, "w") as store:
            store.attrs["encoding-type"] = "anndata"
            store.attrs["encoding-version"] = "0.1.0"
            plate = _Plate(store, table, run, scheme)
            for position, field_id in enumerate(fields):
                record = json.loads((folder / PARTS / f"{field_id}.json").read_text())
                part = _part(folder, field_id) if record.get("classified") else None
                field_rows.append(
                    _field_row(record, class_names, run.thresholds, negative, part, scheme)
                )
                cells = None
                if part is not None and len(part["cell"]):
                    plate.add(record, part)
                    cells = part_summary(part, class_names)
                    pixel_means.append(record.get("pixel_means"))
                write_field_page(out, record, cells, *_neighbours(fields, position))
            frame = _anndata_frame(pd.DataFrame(plate.obs, columns=columns))
            width = plate.matrix.shape[1] if plate.matrix is not None else 0
            _write_elements(store, frame, width, plate, run, document, classifier.calibrated)
            umap = _umap(store, plate.sample, plate.row)
    except BaseException as error:
        h5ad_context.__exit__(type(error), error, error.__traceback__)
        table.abort(error)
        raise
    h5ad_context.__exit__(None, None, None)
    table.close()
    _write_fields_table(out / "fields.csv", field_rows)
    points = None
    if umap is not None:
        coordinates, sampled = umap
        points = plate.umap_points(coordinates, sampled, columns)
        tops = [point["top"] for point in points]
        write_umap_picture(out / "umap.png", coordinates[sampled], tops, class_names)
    write_viewer(out, field_rows, plate.gallery(), points, class_names)
    _warn_of_label_counts(plate, run)
    _warn_of_stains([means for means in pixel_means if means], run, out)
    return {
        "cells": int(plate.row),
        "fields_flagged": int(sum(bool(row["flags"]) for row in field_rows)),
        "umap": umap is not None,
        "outputs": [
            str(table_path),
            str(out / "fields.csv"),
            str(out / H5AD),
            str(out / "index.html"),
        ],
    }


def _picture_boxes(record: dict) -> dict[int, list[int]]:
    """``{cell: [x0, y0, x1, y1]}`` of each outlined cell on the field's picture."""
    boxes = {}
    for number, points in (record.get("outlines") or {}).items():
        points = np.asarray(points)
        boxes[int(number)] = [*map(int, points.min(axis=0)), *map(int, points.max(axis=0) + 1)]
    return boxes


def part_summary(part: dict, class_names) -> dict:
    """Per cell what the field page shows: its classes (those over the thresholds) with
    their probabilities, and those of the most probable other classes (two at least, five
    rows at least)."""
    cells = {}
    for position, number in enumerate(part["cell"]):
        shown, chosen = part["shown"][position], part["labels"][position]
        order = [index for index in np.argsort(shown)[::-1] if chosen[index]]
        others = [index for index in np.argsort(shown)[::-1] if not chosen[index]]
        order += others[: max(2, 5 - len(order))]  # and the likeliest classes not given
        cells[str(int(number))] = {
            "labels": [class_names[index] for index in np.flatnonzero(chosen)],
            "top": [
                [class_names[index], round(float(shown[index]), 3), bool(chosen[index])]
                for index in order
            ],
            "entropy": round(float(part["entropy"][position]), 3),
        }
    return cells


def _cell_rows(record, part, class_names, scheme, flags) -> list[list]:
    pixel = record["pixel_size"]
    kinds = ";".join(flags)
    rows = []
    for position, number in enumerate(part["cell"]):
        shown = part["shown"][position]
        chosen = np.flatnonzero(part["labels"][position]).tolist()
        top = int(np.argmax(shown))
        y, x = part["centroid"][position]
        rows.append(
            [
                record["field"], int(number), format_target(chosen, scheme),
                *(float(value) for value in shown), float(part["entropy"][position]),
                class_names[top], float(shown[top]), float(x), float(y), float(x * pixel),
                float(y * pixel), int(part["area"][position]),
                float(part["area"][position] * pixel**2), bool(part["edge"][position]),
                bool(part["small"][position]), kinds, bool(flags),
            ]
        )  # fmt: skip
    return rows


def _field_row(record, class_names, thresholds, negative, part, scheme) -> dict:
    row = {
        "field": record["field"],
        "file": record.get("file", ""),
        "scene": record.get("scene", 0),
        "width": record.get("width"),
        "height": record.get("height"),
        "pixel_size": record.get("pixel_size"),
        "cells": record.get("cells", 0),
        "classified": record.get("classified", False),
        "flags": ";".join(record.get("flags", [])),
        "error": record.get("error", ""),
        "notes": "; ".join(record.get("notes", [])),
    }
    quality = record.get("quality") or {}
    for stain, value in (quality.get("blank_ratio") or {}).items():
        row[f"blank_ratio_{stain}"] = value
    for stain, value in (quality.get("saturated") or {}).items():
        row[f"saturated_{stain}"] = value
    row["focus"] = quality.get("focus")
    for pair, value in (quality.get("shift") or {}).items():
        row[f"shift_{pair}_um"] = value
    row["cells_per_100um2"] = record.get("cells_per_100um2")
    if part is not None and len(part["cell"]):
        scores = field_scores(part["probabilities"], negative)
        row["Label"] = format_target(np.flatnonzero(scores >= thresholds).tolist(), scheme)
        order = np.argsort(scores)[::-1][:3]
        row["top_classes"] = "; ".join(f"{class_names[i]} {scores[i]:.2f}" for i in order)
    else:
        row["Label"], row["top_classes"] = "", ""
    for stage, seconds in (record.get("seconds") or {}).items():
        row[f"seconds_{stage}"] = seconds
    return row


def _write_fields_table(path: Path, rows: list[dict]) -> None:
    columns = []
    for row in rows:
        columns += [name for name in row if name not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: "" if value is None else value for key, value in row.items()})
    write_text_atomic(path, buffer.getvalue())


def _anndata_frame(obs):
    """obs as AnnData writes it: strings as object columns, the field a category."""
    import pandas as pd

    obs.index = _object_index(
        f"{field}_{cell}" for field, cell in zip(obs["field"], obs["cell"], strict=True)
    )
    for name in ("field", "top_class"):
        values = obs[name].astype(object).tolist()
        categories = _object_index(dict.fromkeys(values))
        codes = [categories.get_loc(value) for value in values]
        obs[name] = pd.Categorical.from_codes(codes, categories=categories)
    for name in ("Label", "flags"):
        obs[name] = pd.Series(obs[name].astype(object).tolist(), index=obs.index, dtype=object)
    return obs


def _write_elements(store, obs, width: int, plate: _Plate, run, document, calibrated) -> None:
    import pandas as pd
    from anndata.io import write_elem

    if "X" not in store:  # no cell at all
        matrix = store.create_dataset("X", shape=(0, width), dtype="float32")
        matrix.attrs["encoding-type"] = "array"
        matrix.attrs["encoding-version"] = "0.2.0"
    width = store["X"].shape[1]
    class_names = plate.class_names
    write_elem(store, "obs", obs)
    write_elem(
        store, "var", pd.DataFrame(index=_object_index(f"embedding_{i}" for i in range(width)))
    )
    empty = np.zeros((0, len(class_names)))
    write_elem(
        store,
        "obsm",
        {
            "probabilities": np.concatenate(plate.probabilities) if plate.probabilities else empty,
            "spatial": np.concatenate(plate.spatial) if plate.spatial else np.zeros((0, 2)),
        },
    )
    uns = {
        "class_names": np.array(class_names, dtype=object),
        "thresholds": np.asarray(run.thresholds, np.float64),
        "scheme": run.scheme,
        "run": str(run.folder),
        "calibrated": bool(calibrated),  # the probabilities went through calibration maps
        "settings": json.dumps(document["settings"]),
        "quality_settings": json.dumps(document["quality"]),
        "segmentation_settings": json.dumps(document["segmentation"]),
        "quality_flags": np.array(FLAGS, dtype=object),
    }
    write_elem(store, "uns", uns)
    for name in ("layers", "obsp", "varm", "varp"):
        write_elem(store, name, {})


def _umap(store, sample: list[int], total: int):
    """UMAP of the embeddings: fitted on the sample, every cell placed by it (in chunks);
    written as ``obsm/X_umap``. None (and nothing written) below UMAP_MIN_CELLS."""
    if total < UMAP_MIN_CELLS:
        return None
    import umap  # the annotate extra; lazy: numba compiles on first use
    from anndata.io import write_elem

    sample = sorted(sample)
    matrix = store["X"]
    fitted = umap.UMAP(n_neighbors=min(UMAP_NEIGHBOURS, len(sample) - 1), random_state=0, n_jobs=1)
    sample_embedding = fitted.fit_transform(matrix[sample])
    coordinates = np.zeros((total, 2), np.float32)
    coordinates[sample] = sample_embedding
    if len(sample) < total:
        chosen = set(sample)
        rest = np.array([index for index in range(total) if index not in chosen])
        for start in range(0, len(rest), UMAP_SAMPLE):
            chunk = rest[start : start + UMAP_SAMPLE]
            coordinates[chunk] = fitted.transform(matrix[chunk])
    write_elem(store, "obsm/X_umap", coordinates)
    return coordinates, sample
