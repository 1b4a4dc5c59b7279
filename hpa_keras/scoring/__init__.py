"""Scoring: F1 counts, threshold search and :class:`Evaluation`, shared by training and inference.

    >>> from hpa_keras.scoring import macro_f1, tune_thresholds, Evaluation

Training tunes thresholds with these functions and inference scores
predictions with them; this package imports neither (numpy, pandas and
scikit-learn only; ``macro_f1_metric`` imports Keras when called).
"""

from hpa_keras._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "f1_per_class": "metrics",
        "macro_f1": "metrics",
        "macro_f1_metric": "metrics",
        "search_thresholds": "thresholds",
        "tune_thresholds": "thresholds",
        "best_thresholds": "thresholds",
        "apply_thresholds": "thresholds",
        "Evaluation": "evaluation",
        "summary_line": "evaluation",
        "Calibration": "calibration",
        "fit_calibration": "calibration",
        "expected_calibration_error": "calibration",
        "reliability_curve": "calibration",
        "cross_fitted_calibration": "calibration",
        "ConformalThresholds": "conformal",
        "EmpiricalCoverage": "conformal",
        "conformal_thresholds": "conformal",
        "label_sets": "conformal",
        "empirical_coverage": "conformal",
        "cross_fitted_coverage": "conformal",
        "Disagreement": "uncertainty",
        "binary_entropy": "uncertainty",
        "predictive_entropy": "uncertainty",
        "ensemble_disagreement": "uncertainty",
        "most_uncertain": "uncertainty",
        "flag_most_uncertain": "uncertainty",
    },
)
