"""Scoring a 2021 submission against true cells: the challenge's mAP, macro F1 per cell and
per field, and the summary ``hpa-keras evaluate --cells`` writes (``cells_summary.json``)."""

import json
import os
from pathlib import Path

from hpa_keras.atomic import write_text_atomic
from hpa_keras.cells.average_precision import (
    CHALLENGE_IOU,
    cell_f1_figures,
    mean_average_precision,
    submission_fields,
)
from hpa_keras.cells.submission import read_submission
from hpa_keras.classes import get_scheme
from hpa_keras.data.cell_records import cell_label_scheme, read_cell_labels
from hpa_keras.errors import InputError

SUMMARY_FILE = "cells_summary.json"


def score_cell_submission(
    submission: str | os.PathLike,
    masks: str | os.PathLike,
    cell_labels: str | os.PathLike,
    out: str | os.PathLike | None = None,
    iou: float = CHALLENGE_IOU,
) -> dict:
    """Score a 2021 submission (``ID,ImageWidth,ImageHeight,PredictionString``) against the
    true cell masks (``<Id>_cells.png`` in ``masks``) and their labels (``cells.csv``:
    ``ID,cell,Label``), predicted cells matched to true ones at IoU >= ``iou``.

    Returns the summary: ``mAP`` (over the classes with true cells),
    ``average_precision`` and ``true_cells`` per class name (AP ``None`` where a class has
    no true cell), ``macro_f1`` (per cell and per field, at 0.5 and tuned on these cells),
    ``iou_threshold``, ``interpolation``, ``scheme``, ``submission`` and ``num_fields``.
    With ``out``, the summary is also written to ``out/cells_summary.json``.

    >>> summary = score_cell_submission("submission.csv", "masks", "cells.csv")  # doctest: +SKIP
    """
    if not 0.5 <= iou <= 1.0:
        raise InputError(f"--iou must be in [0.5, 1], got {iou}")
    scheme = get_scheme(cell_label_scheme(cell_labels))
    truth = read_cell_labels(cell_labels, scheme.name)
    predicted = read_submission(submission, scheme.num_classes)
    fields = submission_fields(predicted, masks, truth, scheme.num_classes)
    score = mean_average_precision(fields, scheme.num_classes, iou)
    names = scheme.class_names
    per_class = zip(score.average_precision, score.num_true, strict=True)
    summary = {
        "mAP": score.mean_average_precision,
        "average_precision": {
            names[index]: (None if count == 0 else value)
            for index, (value, count) in enumerate(per_class)
        },
        "true_cells": dict(zip(names, score.num_true, strict=True)),
        "iou_threshold": iou,
        "interpolation": score.interpolation,
        "scheme": scheme.name,
        "submission": str(Path(submission).resolve()),
        "num_fields": len(fields),
        "macro_f1": cell_f1_figures(fields, iou, scheme),
    }
    if out is not None:
        write_text_atomic(Path(out) / SUMMARY_FILE, json.dumps(summary, indent=1) + "\n")
    return summary


def format_cell_score(summary: dict) -> str:
    """The terminal text of :func:`score_cell_submission`'s summary: AP and true cells per
    class, the mAP, and the macro F1 figures."""
    lines = [f"{'class':40} {'true cells':>10} {'AP':>6}"]
    for index, (name, count) in enumerate(summary["true_cells"].items()):
        value = summary["average_precision"][name]
        shown = "-" if value is None else f"{value:.3f}"
        lines.append(f"{index:2d} {name:37} {count:10d} {shown:>6}")
    scored = sum(1 for count in summary["true_cells"].values() if count)
    f1 = summary["macro_f1"]
    lines += [
        f"mAP {summary['mAP']:.4f} over the {scored} classes with true cells "
        f"({summary['num_fields']} fields, cells matched at IoU >= {summary['iou_threshold']})",
        f"per cell: macro F1 {f1['cells_at_0.5']:.4f} at 0.5, {f1['cells_tuned']:.4f} with "
        f"thresholds tuned on these same cells (optimistic); per field (the cells' maximum): "
        f"{f1['fields_at_0.5']:.4f} at 0.5, {f1['fields_tuned']:.4f} tuned",
    ]
    return "\n".join(lines)
