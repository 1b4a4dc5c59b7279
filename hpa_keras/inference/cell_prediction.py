"""Predicting cells: a cell run (``fit`` on cell records) over cell records, optionally
mixed with a field run's predictions of each cell's field, written as the 2021
submission and the per-cell table. What ``hpa-keras predict`` does for a cell run."""

import os
from pathlib import Path

import numpy as np

from hpa_keras.classes import HPA2021, SUBCELL, map_subcell_probabilities
from hpa_keras.data.tfrecords import read_manifest
from hpa_keras.errors import InputError, warn
from hpa_keras.inference.cells import mix_with_fields, write_cell_predictions
from hpa_keras.inference.label_sets import stored_calibration
from hpa_keras.inference.predict import check_runs_and_input, predict_runs
from hpa_keras.runs.documents import read_input_settings


def default_cell_table(out: str | os.PathLike) -> Path:
    """The per-cell table beside a submission: ``submission.csv`` -> ``submission_cells.csv``."""
    out = Path(out)
    return out.with_name(out.stem + "_cells.csv")


def check_cell_prediction(
    runs,
    data,
    masks=None,
    thresholds=None,
    image_runs=None,
    image_data=None,
    image_images=None,
) -> dict:
    """Before any model loads: the cell ``runs`` and their cell records ``data`` belong
    together (:func:`~hpa_keras.inference.predict.check_runs_and_input`), and so do
    ``image_runs`` (a field run or cv folder of the same label scheme) and their fields
    (``image_data`` records or an ``image_images`` folder). Returns the runs' facts with
    ``masks``: the masks given, else those the records were cut from (their manifest's)."""
    facts = check_runs_and_input(runs, data=data, thresholds=thresholds)
    if facts["kind"] != "cells":
        raise InputError(f"{facts['folder']}: predicts whole fields; cells need a cell run")
    if image_runs:
        if not (image_data or image_images):
            raise InputError(
                "--image-run needs the fields to predict: --image-data or --image-images"
            )
        image_facts = check_runs_and_input(
            image_runs, data=image_data, images=image_images, scheme=facts["scheme"]
        )
        if image_facts["kind"] != "fields":
            raise InputError(f"{image_runs[0]}: --image-run takes a run trained on whole fields")
    masks = masks or (read_manifest(data).cells or {}).get("masks")
    if masks is None:
        raise InputError(f"{data}: the records name no masks; give the masks they were cut from")
    return {**facts, "masks": masks}


def _warn_other_cut(run_folder, data) -> None:
    """Warn where the records' cells were cut otherwise than the run sees cells: the pixels
    around each cell kept or zeroed, or another crop size (resized, they are not what
    annotate's crops at the run's size are). An imported SubCell run sees zeroed
    surroundings at 448 px; make-tfrecords keeps them, at 128 px, by default."""
    cut = read_manifest(data).cells or {}
    settings = read_input_settings(run_folder)
    made = settings.cell_context
    if made and cut.get("context") and cut["context"] != made:
        warn(
            f"{data}: cells cut with --cell-context {cut['context']}, but {run_folder} "
            f"sees cells cut with {made} (the pixels around each cell "
            f"{'kept' if made == 'keep' else 'set to zero'}); make the records with "
            f"--cell-context {made} to predict them as the run was made"
        )
    size = settings.image_size
    if settings.data_fingerprint is None and size and cut.get("cell_size") not in (None, size):
        warn(
            f"{data}: cells cut at {cut['cell_size']} px, resized to the {size} px "
            f"{run_folder} sees; make the records with --cell-size {size} to cut them "
            "at its size, as annotate does"
        )


def predict_cells(
    runs,
    data: str | os.PathLike,
    out: str | os.PathLike,
    table: str | os.PathLike | None = None,
    masks: str | os.PathLike | None = None,
    tta: int | None = None,
    batch_size: int = 16,
    thresholds=None,
    image_runs=None,
    image_data=None,
    image_images=None,
    image_weight: float = 0.5,
    calibrated: bool = True,
    engine: str | None = None,
    embeddings: str | os.PathLike | None = None,
) -> dict:
    """Predict every cell of cell records with a cell run (or ensemble) and write the 2021
    submission (``out``: every cell of every field, every class with its probability) and
    the per-cell table (``table``; default: ``out``'s name with ``_cells.csv``: each cell's
    classes over the run's thresholds and its probabilities).

    Args:
        runs: a cell run folder, several with ``thresholds``, or a cv folder of cell runs.
        data: the cell records (``make-tfrecords --masks``).
        masks: the masks the records were cut from (default: the records' manifest's).
        tta, batch_size, thresholds, engine: as
            :func:`~hpa_keras.inference.predict.predict_runs`.
        image_runs: also a field run (or cv folder) whose probabilities for each cell's
            field are mixed in: ``(1 - image_weight) * cell + image_weight * field``;
            its fields are ``image_data`` (field records) or ``image_images`` (a folder).
        calibrated: the table's probabilities through the cv's calibration maps where
            ``runs`` is a cv folder with them (and, mixed with ``image_runs``, only where
            those have their own too: each part is calibrated before the mixing; the
            mixture itself was fitted by no one). The classes and the submission's
            confidences stay as predicted (see :func:`write_cell_predictions`).
        embeddings: also write each cell's embedding (the model's pooled features: a
            SubCell run's 1536-d cell embedding) with the records' Ids to this ``.npz``
            (:func:`~hpa_keras.inference.cell_embedding.write_embeddings`).

    A run of SubCell's classes (``subcell``) writes its 2021 submission in the 2021
    classes (:func:`~hpa_keras.classes.map_subcell_probabilities`: each the largest of the
    SubCell classes mapping to it; none maps to it: 0) and its table in its own 31.

    Returns ``fields``, ``cells``, ``cells_with_a_class``, ``out`` and ``table``, and what
    was written: the records' ``ids``, their ``probabilities`` (mixed, with ``image_runs``)
    and the ``thresholds`` they were judged with; ``calibrated``: whether the table's
    probabilities went through calibration maps.

    >>> predict_cells(["runs/cells"], "records_cells", "submission.csv")  # doctest: +SKIP
    """
    facts = check_cell_prediction(
        runs, data, masks, thresholds, image_runs, image_data, image_images
    )
    if image_runs and not 0 <= image_weight <= 1:
        raise InputError(f"--image-weight must be in [0, 1], got {image_weight}")
    _warn_other_cut(facts["folder"], data)
    ids, probabilities, chosen = predict_runs(
        runs, data=data, tta=tta, batch_size=batch_size, thresholds=thresholds, engine=engine
    )
    cell_map = stored_calibration(runs) if calibrated else None
    shown = cell_map.apply(probabilities) if cell_map is not None else None
    if image_runs:
        field_ids, field_probabilities, _ = predict_runs(
            image_runs, data=image_data, images=image_images, batch_size=batch_size,
            engine=engine,
        )  # fmt: skip
        field_map = stored_calibration(image_runs) if shown is not None else None
        shown = (
            mix_with_fields(
                ids, shown, field_ids, field_map.apply(field_probabilities), image_weight
            )
            if field_map is not None
            else None
        )
        probabilities = mix_with_fields(
            ids, probabilities, field_ids, field_probabilities, image_weight
        )
    table = Path(table) if table is not None else default_cell_table(out)
    submitted = None
    if facts["scheme"] == SUBCELL.name:
        submitted = np.nan_to_num(map_subcell_probabilities(probabilities, HPA2021), nan=0.0)
    written = write_cell_predictions(
        ids,
        probabilities,
        chosen,
        facts["masks"],
        out,
        table,
        facts["class_names"],
        facts["scheme"] or "hpa2018",
        records=data,
        table_probabilities=shown,
        submission_probabilities=submitted,
    )
    if embeddings is not None:
        from hpa_keras.inference.cell_embedding import record_embeddings, write_embeddings
        from hpa_keras.inference.runs import load_run

        first = runs[0] if isinstance(runs, list | tuple) else runs
        write_embeddings(embeddings, ids, record_embeddings(load_run(first), data, batch_size))
    return {
        **written,
        "out": Path(out),
        "table": table,
        "ids": ids,
        "probabilities": probabilities,
        "thresholds": chosen,
        "calibrated": shown is not None,
    }
