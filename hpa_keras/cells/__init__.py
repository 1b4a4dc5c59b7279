"""Cells of a field: segmentation into cell and nucleus masks, and matching masks.

    >>> from hpa_keras.cells import segment_field, segment_folder, match_cells

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
    },
)
