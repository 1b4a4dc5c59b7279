"""The 2021 challenge's score: mean over classes of average precision over cells.

The challenge scored submissions with the Open Images instance-segmentation
metric at an IoU threshold of 0.6 (as its evaluation page describes). For
each class ``k`` the true objects are the true cells labeled ``k``, over all
fields; the detections are the predicted cells, each with its confidence for
``k``. Within a field, detections are taken in descending confidence and
each is a true positive when the true cell of class ``k`` it overlaps most
has IoU >= 0.6 with it and no earlier detection took that cell; otherwise a
false positive (at a threshold of 0.5 or more a detection can overlap at
most one true cell that much, so "the one it overlaps most" is the only
candidate). Pooled over fields and ordered by confidence, the detections
give a precision-recall curve; its average precision is the area under the
curve's **upper envelope** (precision made non-increasing from the right,
then summed over the recall steps), as in Open Images'
``compute_average_precision`` and PASCAL VOC since 2010. ``interpolation=
"none"`` skips the envelope: the plain step sum scikit-learn's
``average_precision_score`` computes, a lower bound of the envelope's value.
Classes with no true cell are left out of the mean (their AP is undefined).
"""

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hpa_keras.classes import get_scheme
from hpa_keras.data.cell_records import check_cell_rows
from hpa_keras.data.cells import find_mask_files, read_mask
from hpa_keras.errors import InputError
from hpa_keras.scoring.metrics import f1_per_class
from hpa_keras.scoring.thresholds import best_thresholds

INTERPOLATIONS = ("envelope", "none")
CHALLENGE_IOU = 0.6


@dataclass
class FieldCells:
    """One field for scoring: true cells and predicted cells with their IoU.

    ``iou[i, j]``: predicted cell ``i`` against true cell ``j``;
    ``scores[i, k]``: predicted cell ``i``'s confidence for class ``k``
    (NaN where a submission leaves the class out: no detection, which is
    not a detection of confidence 0); ``true_classes[j]``: the
    classes of true cell ``j``.
    """

    iou: np.ndarray
    scores: np.ndarray
    true_classes: list[set[int]]
    field_id: str = ""


def iou_with_cells(predicted_masks: list[np.ndarray], true_cells: np.ndarray):
    """``(iou, true numbers)``: each predicted boolean mask against each cell of a true label
    image (numbers sorted), via one bincount per predicted mask."""
    numbers, inverse = np.unique(true_cells, return_inverse=True)
    inverse = inverse.reshape(true_cells.shape)
    areas = np.bincount(inverse.ravel(), minlength=numbers.size)
    iou = np.zeros((len(predicted_masks), numbers.size))
    for row, mask in enumerate(predicted_masks):
        if mask.shape != true_cells.shape:
            raise ValueError(
                f"a predicted mask of {mask.shape}, the true mask is {true_cells.shape}"
            )
        intersections = np.bincount(inverse[mask], minlength=numbers.size)
        union = mask.sum() + areas - intersections
        iou[row] = np.divide(intersections, union, out=np.zeros(numbers.size), where=union > 0)
    keep = numbers != 0
    return iou[:, keep], numbers[keep]


def average_precision(
    scores: np.ndarray, true_positive: np.ndarray, num_true: int, interpolation="envelope"
) -> float:
    """AP of detections (``scores``, ``true_positive`` flags) against ``num_true`` objects."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}")
    if num_true == 0:
        return float("nan")
    if len(scores) == 0:
        return 0.0
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    hits = np.asarray(true_positive, bool)[order]
    true_positives = np.cumsum(hits)
    precision = true_positives / np.arange(1, hits.size + 1)
    recall = true_positives / num_true
    if interpolation == "envelope":
        precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.diff(np.concatenate([[0.0], recall]))
    return float(np.sum(steps * precision))


def _class_detections(fields: list[FieldCells], label: int, iou_threshold: float):
    """Scores and true-positive flags of every predicted cell for ``label``, and the number
    of true cells of ``label``."""
    scores, flags, num_true = [], [], 0
    for field_cells in fields:
        truth = np.asarray([label in classes for classes in field_cells.true_classes], bool)
        num_true += int(truth.sum())
        if field_cells.scores.shape[0] == 0:
            continue
        confidence = field_cells.scores[:, label]
        taken = np.zeros(int(truth.sum()), bool)
        candidates = field_cells.iou[:, truth] if truth.any() else None
        for detection in np.argsort(-confidence, kind="stable"):
            if np.isnan(confidence[detection]):
                continue  # the submission does not score this class for this cell
            hit = False
            if candidates is not None:
                best = int(np.argmax(candidates[detection]))
                if candidates[detection, best] >= iou_threshold and not taken[best]:
                    taken[best] = hit = True
            scores.append(confidence[detection])
            flags.append(hit)
    return np.asarray(scores), np.asarray(flags, bool), num_true


@dataclass
class CellScore:
    """mAP over classes and what it is made of."""

    mean_average_precision: float
    average_precision: list[float]  # per class; nan where a class has no true cell
    num_true: list[int]
    iou_threshold: float
    interpolation: str


def mean_average_precision(
    fields: list[FieldCells],
    num_classes: int,
    iou_threshold: float = CHALLENGE_IOU,
    interpolation: str = "envelope",
) -> CellScore:
    """The challenge's mAP of per-cell predictions (see the module docstring)."""
    if iou_threshold < 0.5:
        raise ValueError("IoU thresholds below 0.5 let a cell match several; use 0.5 or more")
    per_class, counts = [], []
    for label in range(num_classes):
        scores, flags, num_true = _class_detections(fields, label, iou_threshold)
        per_class.append(average_precision(scores, flags, num_true, interpolation))
        counts.append(num_true)
    values = np.asarray(per_class)
    scored = ~np.isnan(values)
    overall = float(values[scored].mean()) if scored.any() else float("nan")
    return CellScore(overall, per_class, counts, iou_threshold, interpolation)


def submission_fields(
    submission: dict,
    masks: str | os.PathLike,
    cell_labels: dict[str, dict[int, list[int]]],
    num_classes: int,
) -> list[FieldCells]:
    """A read submission (:func:`hpa_keras.cells.submission.read_submission`) against true
    masks and each true cell's classes, as :class:`FieldCells`.

    The submission must list exactly the fields of ``cell_labels``, at their
    masks' size, and the cell labels must give exactly the cells of each
    mask: a row for a cell the mask lacks, or a cell without a row, is an
    error (:func:`hpa_keras.data.cell_records.check_cell_rows`, the check
    make-tfrecords makes), since a truth made for other masks cannot score.
    """

    extra = sorted(set(submission) - set(cell_labels))
    absent = sorted(set(cell_labels) - set(submission))
    if extra or absent:
        parts = []
        if extra:
            parts.append(f"{len(extra)} fields not in the truth (first: {extra[0]})")
        if absent:
            parts.append(f"no row for {len(absent)} fields of the truth (first: {absent[0]})")
        raise InputError("the submission's fields differ from the truth's: " + "; ".join(parts))
    fields = []
    for field_id in sorted(cell_labels):
        cell_path, _ = find_mask_files(masks, field_id)
        if cell_path is None:
            raise InputError(
                f"{Path(masks) / (field_id + '_cells.png')}: no true mask for {field_id}"
            )
        truth = read_mask(cell_path)
        prediction = submission[field_id]
        if (prediction.height, prediction.width) != truth.shape:
            raise InputError(
                f"submission field {field_id}: {prediction.width}x{prediction.height}, its true "
                f"mask {cell_path.name} is {truth.shape[1]}x{truth.shape[0]}"
            )
        cells: dict[int, dict] = {}
        for label, confidence, mask in prediction.items:
            entry = cells.setdefault(id(mask), {"mask": mask, "scores": {}})
            entry["scores"][label] = max(confidence, entry["scores"].get(label, -np.inf))
        predicted = list(cells.values())
        iou, numbers = iou_with_cells([entry["mask"] for entry in predicted], truth)
        scores = np.full((len(predicted), num_classes), np.nan)
        for row, entry in enumerate(predicted):
            for label, confidence in entry["scores"].items():
                scores[row, label] = confidence
        known = cell_labels[field_id]
        check_cell_rows(known, numbers, field_id, masks, every_cell=True)
        true_classes = [set(known[int(number)]) for number in numbers]
        fields.append(FieldCells(iou, scores, true_classes, field_id))
    return fields


def matched_cell_scores(fields: list[FieldCells], iou_threshold: float = CHALLENGE_IOU):
    """``(truth (N, C) 0/1, scores (N, C))`` over the true cells of every field: each true
    cell takes the scores of the predicted cell matched to it (IoU >= threshold), zeros
    when none is (a missed cell predicts nothing). Left-out classes score 0."""
    truths, scores = [], []
    for field_cells in fields:
        classes = field_cells.scores.shape[1]
        for column, true_classes in enumerate(field_cells.true_classes):
            row = np.zeros(classes)
            row[list(true_classes)] = 1
            truths.append(row)
            if field_cells.iou.shape[0]:
                best = int(np.argmax(field_cells.iou[:, column]))
                if field_cells.iou[best, column] >= iou_threshold:
                    scores.append(np.nan_to_num(field_cells.scores[best], nan=0.0))
                    continue
            scores.append(np.zeros(classes))
    classes = fields[0].scores.shape[1] if fields else 0
    return (
        np.asarray(truths).reshape(-1, classes),
        np.asarray(scores).reshape(-1, classes),
    )


def field_level(fields: list[FieldCells], negative_class: int | None = None):
    """``(truth (F, C), scores (F, C))`` per field from its cells: a field has a class when
    a cell has it, and its score is its cells' maximum; Negative (``negative_class``) the
    other way round, when every cell is, with the cells' minimum, as the 2021 labels say."""
    truths, scores = [], []
    for field_cells in fields:
        classes = field_cells.scores.shape[1]
        truth = np.zeros(classes)
        for true_classes in field_cells.true_classes:
            truth[list(true_classes)] = 1
        if negative_class is not None:
            cells = field_cells.true_classes
            truth[negative_class] = float(bool(cells) and all(negative_class in c for c in cells))
        truths.append(truth)
        scores.append(field_scores(field_cells.scores, negative_class, classes))
    return np.asarray(truths), np.asarray(scores)


def field_scores(cell_scores, negative_class: int | None = None, classes: int | None = None):
    """A field's score per class from its cells' ``(N, C)``: their maximum, Negative their
    minimum (a field is Negative only when every cell is); zeros for a field of no cells."""
    predicted = np.nan_to_num(np.asarray(cell_scores, np.float64), nan=0.0)
    if not len(predicted):
        return np.zeros(classes if classes is not None else predicted.shape[-1])
    score = predicted.max(axis=0)
    if negative_class is not None:
        score[negative_class] = predicted[:, negative_class].min()
    return score


def cell_f1_figures(fields: list[FieldCells], iou_threshold: float, scheme) -> dict:
    """Macro F1 per cell (matched cells' scores; unmatched true cells predict nothing) and per
    field (cells' maximum), at 0.5 and at thresholds tuned on the same data (an optimistic
    figure: there is no other data to tune them on here). Classes without a true cell are
    left out, as in the mAP."""

    scheme = get_scheme(scheme)
    negative = scheme.class_names.index("Negative") if "Negative" in scheme.class_names else None
    figures = {}
    for level, (truth, scores) in (
        ("cells", matched_cell_scores(fields, iou_threshold)),
        ("fields", field_level(fields, negative)),
    ):
        present = truth.sum(axis=0) > 0
        at_half = f1_per_class(truth, scores >= 0.5)[present]
        _, tuned = best_thresholds(truth, scores)
        figures[f"{level}_at_0.5"] = float(at_half.mean()) if present.any() else float("nan")
        figures[f"{level}_tuned"] = float(tuned[present].mean()) if present.any() else float("nan")
    return figures
