"""Workflows that glue several stages: cross-validation and the two demos.

    >>> from hpa_keras.workflows import cross_validate, run_demo

They sit above training and inference and call both; nothing below imports them.
"""

from hpa_keras._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "cross_validate": "cv",
        "run_demo": "demo",
        "run_single_cell_demo": "single_cell_demo",
    },
)
