"""Matching the cells of two instance masks by overlap (intersection over union).

Used to measure a segmentation against another (``scripts/measure_segmentation.py``)
and, in the 2021 challenge's metric, to pair predicted cells with true ones
(there at IoU >= 0.6). Two cells match when their IoU reaches the threshold;
at a threshold of 0.5 or more each cell can match at most one other (two
cells that each overlap a third by more than half of their union cannot
both exist), so no assignment problem has to be solved.
"""

from dataclasses import dataclass

import numpy as np


def overlap_table(predicted: np.ndarray, reference: np.ndarray):
    """``(intersections, predicted numbers, reference numbers, predicted areas, reference
    areas)``; ``intersections[i, j]`` is the pixel count shared by the i-th predicted and
    j-th reference cell (numbers sorted, background left out)."""
    if predicted.shape != reference.shape:
        raise ValueError(f"masks of shapes {predicted.shape} and {reference.shape}")
    predicted_numbers, predicted_index = np.unique(predicted, return_inverse=True)
    reference_numbers, reference_index = np.unique(reference, return_inverse=True)
    table = np.bincount(
        predicted_index.ravel() * reference_numbers.size + reference_index.ravel(),
        minlength=predicted_numbers.size * reference_numbers.size,
    ).reshape(predicted_numbers.size, reference_numbers.size)
    predicted_areas = table.sum(axis=1)
    reference_areas = table.sum(axis=0)
    keep_rows = predicted_numbers != 0
    keep_columns = reference_numbers != 0
    return (
        table[np.ix_(keep_rows, keep_columns)],
        predicted_numbers[keep_rows],
        reference_numbers[keep_columns],
        predicted_areas[keep_rows],
        reference_areas[keep_columns],
    )


def iou_matrix(predicted: np.ndarray, reference: np.ndarray):
    """``(iou, predicted numbers, reference numbers)`` of every pair of cells."""
    intersections, predicted_numbers, reference_numbers, predicted_areas, reference_areas = (
        overlap_table(predicted, reference)
    )
    union = predicted_areas[:, None] + reference_areas[None, :] - intersections
    iou = np.divide(intersections, union, out=np.zeros(intersections.shape), where=union > 0)
    return iou, predicted_numbers, reference_numbers


@dataclass(frozen=True)
class MatchResult:
    """Cells of a predicted mask matched to a reference mask."""

    matches: list[tuple[int, int, float]]  # (predicted number, reference number, IoU)
    num_predicted: int
    num_reference: int

    @property
    def precision(self) -> float:
        return len(self.matches) / self.num_predicted if self.num_predicted else 0.0

    @property
    def recall(self) -> float:
        return len(self.matches) / self.num_reference if self.num_reference else 0.0

    @property
    def mean_iou(self) -> float:
        """Mean IoU of the matched pairs (how well matched cells agree in outline)."""
        return float(np.mean([iou for _, _, iou in self.matches])) if self.matches else 0.0


def match_cells(predicted: np.ndarray, reference: np.ndarray, threshold: float = 0.5):
    """Pairs of cells with IoU >= ``threshold`` (>= 0.5, where matches are unique)."""
    if threshold < 0.5:
        raise ValueError("below IoU 0.5 a cell may match several; use 0.5 or more")
    iou, predicted_numbers, reference_numbers = iou_matrix(predicted, reference)
    rows, columns = np.nonzero(iou >= threshold)
    matches = [
        (int(predicted_numbers[row]), int(reference_numbers[column]), float(iou[row, column]))
        for row, column in zip(rows, columns, strict=True)
    ]
    return MatchResult(matches, int(predicted_numbers.size), int(reference_numbers.size))
