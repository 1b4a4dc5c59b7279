"""Matplotlib for the package: one backend rule and one way to save a figure.

Files only (no window, no display needed on servers or CI), except inside
Jupyter, where returned figures should show inline, and where the user chose
a backend (``MPLBACKEND``). Every module that draws imports ``plt`` from here.
"""

import os
import sys

import matplotlib

if "ipykernel" not in sys.modules and "MPLBACKEND" not in os.environ:
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from hpa_keras.atomic import atomic_path  # noqa: E402

__all__ = ["plt", "save_figure"]


def save_figure(figure, path: str | os.PathLike, dpi: int = 110) -> None:
    """Save a figure atomically as PNG and release its memory."""
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=dpi)
    plt.close(figure)
