"""Using finished runs: loading, prediction with test-time augmentation (fields and cells),
evaluation, Grad-CAM.

>>> from hpa_keras.inference import load_run, predict_images, predict_runs, evaluate_runs
>>> from hpa_keras.inference import predict_cells
"""

from hpa_keras._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "Run": "runs",
        "load_run": "runs",
        "DihedralTTA": "tta",
        "dihedral_view": "tta",
        "dihedral_views": "tta",
        "inverse_dihedral_view": "tta",
        "predict_with_tta": "tta",
        "predict_runs": "predict",
        "predict_ids": "predict",
        "predict_runs_by_member": "predict",
        "uncertainty_columns": "predict",
        "predict_images": "predict",
        "predict_cells": "cell_prediction",
        "MeanOfModels": "tta",
        "submission_labels": "submission",
        "write_submission": "submission",
        "write_probabilities": "submission",
        "evaluate_runs": "evaluate",
        "grad_cam": "cam",
        "explain_sample": "cam",
        "write_cam": "cam",
    },
)
