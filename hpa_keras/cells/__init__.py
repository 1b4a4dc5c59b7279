"""Cells of a field: segmentation into masks, matching masks, the 2021 submission and score.

    >>> from hpa_keras.cells import segment_field, segment_folder, match_cells
    >>> from hpa_keras.cells import read_submission, submission_fields, mean_average_precision
    >>> from hpa_keras.cells import score_cell_submission

The mask files themselves (names, rules, reading, crops) are
:mod:`hpa_keras.data.cells`.
"""

from hpa_keras._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "SegmentationSettings": "segment",
        "segment_field": "segment",
        "segment_folder": "segment",
        "match_cells": "matching",
        "iou_matrix": "matching",
        "MatchResult": "matching",
        "mean_average_precision": "average_precision",
        "submission_fields": "average_precision",
        "FieldCells": "average_precision",
        "read_submission": "submission",
        "write_submission": "submission",
        "prediction_string": "submission",
        "encode_binary_mask": "submission",
        "decode_binary_mask": "submission",
        "score_cell_submission": "scoring",
        "format_cell_score": "scoring",
    },
)
