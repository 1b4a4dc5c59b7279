"""Everything drawn or tabulated for people: sample pictures, training and evaluation
figures, Grad-CAM overlays, text tables and the self-contained HTML report.

Figures are returned (so they show inline in Jupyter) and saved with
:func:`hpa_keras.reports.figures.save_figure` (atomic PNG writes).
"""

from hpa_keras._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "save_figure": "figures",
        "composite": "samples",
        "sample_figure": "samples",
        "gallery_figure": "samples",
        "write_sample_figure": "samples",
        "learning_curve_figure": "training",
        "lr_finder_figure": "training",
        "read_history": "training",
        "f1_frequency_figure": "evaluation",
        "f1_threshold_figure": "evaluation",
        "label_distribution_figure": "evaluation",
        "cam_figure": "cam",
        "format_table": "tables",
        "manifest_summary": "manifest",
        "write_report": "html",
    },
)
