"""The run folder and the cv folder: their file names, typed documents and folder checks.

``hpa-keras fit`` writes a run folder and ``hpa-keras cv`` a cv folder; prediction,
evaluation and the reports read them. This package owns both formats, so writer and
readers share one schema per file:

    >>> from hpa_keras.runs import read_thresholds_document, read_input_settings
    >>> document = read_thresholds_document("runs/gapnet-fold0")    # thresholds.json
    >>> document.thresholds, document.class_names, document.macro_f1_tuned
    >>> read_input_settings("runs/gapnet-fold0").image_size        # input.json

- :mod:`hpa_keras.runs.files`: the file names.
- :mod:`hpa_keras.runs.documents`: ``thresholds.json``, ``input.json``, ``config.yaml``,
  ``cv.yaml``, ``cv_summary.json`` and ``calibration.json``: read (checked: a bad file is
  an InputError naming the file and the field) and written (atomically).
- :mod:`hpa_keras.runs.folders`: what a folder is (a finished run, a cv folder and its
  folds) and the check before ``fit`` or ``cv`` writes into one.

It imports no TensorFlow; loading a run's model is :func:`hpa_keras.load_run`.
"""

from hpa_keras._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "ThresholdsDocument": "documents",
        "thresholds_document": "documents",
        "read_thresholds_document": "documents",
        "read_thresholds": "documents",
        "write_thresholds_document": "documents",
        "InputSettings": "documents",
        "read_input_settings": "documents",
        "write_input_settings": "documents",
        "read_run_config": "documents",
        "write_run_config": "documents",
        "CvDocument": "documents",
        "read_cv": "documents",
        "write_cv": "documents",
        "CvSummary": "documents",
        "read_cv_summary": "documents",
        "write_cv_summary": "documents",
        "read_calibration": "documents",
        "write_calibration": "documents",
        "is_cv_folder": "folders",
        "fold_folder": "folders",
        "check_finished_run": "folders",
        "run_paths": "folders",
        "expand_runs": "folders",
        "default_views": "folders",
        "class_names_of": "folders",
        "claim_run_folder": "folders",
        "claim_cv_folder": "folders",
    },
)
