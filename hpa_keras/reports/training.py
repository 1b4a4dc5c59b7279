"""Training plots: learning curves and the learning-rate range test.

Figures are returned (for notebooks) and saved with
:func:`hpa_keras.reports.figures.save_figure` (atomic PNG writes).
"""

import os

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from hpa_keras.reports.figures import plt


def lr_finder_figure(learning_rates, losses, suggestion=None, title="Learning-rate range test"):
    """Smoothed loss against the learning rate on a log axis."""
    figure, axis = plt.subplots(figsize=(6.4, 4.2))
    axis.plot(learning_rates, losses, color="tab:blue", label="loss (smoothed)")
    axis.set_xscale("log")
    axis.set_xlabel("learning rate")
    axis.set_ylabel("training loss")
    finite = np.asarray(losses)[np.isfinite(losses)]
    if len(finite):
        # Keep the explosion at the end from flattening the interesting part.
        low, high = finite.min(), min(finite.max(), finite[0] * 1.5, finite.min() * 4)
        axis.set_ylim(low - 0.05 * (high - low), high + 0.05 * (high - low) + 1e-12)
    if suggestion is not None:
        axis.axvline(
            suggestion, color="tab:red", linestyle="--", label=f"suggested {suggestion:.2g}"
        )
    axis.legend()
    axis.grid(alpha=0.3, which="both")
    axis.set_title(title)
    figure.tight_layout()
    return figure


def read_history(path: str | os.PathLike) -> pd.DataFrame:
    """A ``history.csv`` written by ``keras.callbacks.CSVLogger``, one row per epoch.

    Rows repeated by a resumed run (the same epoch written twice) keep their
    last version.
    """
    history = pd.read_csv(path)
    if "epoch" in history:
        history = history.drop_duplicates("epoch", keep="last").sort_values("epoch")
    return history.reset_index(drop=True)


def learning_curve_figure(history: pd.DataFrame, title: str = "Learning curves"):
    """Loss, macro F1 (training at 0.5, validation at 0.5 and tuned) and learning rate by epoch."""
    epochs = (
        history["epoch"].to_numpy() + 1 if "epoch" in history else np.arange(1, len(history) + 1)
    )
    panels = [
        ("loss", [("loss", "training"), ("val_loss", "validation")]),
        (
            "macro F1",
            [
                ("macro_f1", "training, at 0.5"),
                ("val_macro_f1", "validation, at 0.5"),
                ("val_macro_f1_tuned", "validation, tuned thresholds"),
            ],
        ),
        ("learning rate", [("learning_rate", "learning rate")]),
    ]
    panels = [(label, [line for line in lines if line[0] in history]) for label, lines in panels]
    panels = [panel for panel in panels if panel[1]]
    figure, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.8), squeeze=False)
    for axis, (label, lines) in zip(axes[0], panels, strict=True):
        for column, legend in lines:
            axis.plot(epochs, history[column], marker="o", markersize=3, label=legend)
        if label == "learning rate":
            axis.set_yscale("log")
        if label == "macro F1" and "val_macro_f1_tuned" in history:
            best = int(history["val_macro_f1_tuned"].idxmax())
            value = history["val_macro_f1_tuned"][best]
            axis.plot(
                epochs[best],
                value,
                marker="*",
                markersize=13,
                color="tab:red",
                linestyle="none",
                label=f"best: {value:.3f} (epoch {epochs[best]})",
            )
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_xlabel("epoch")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        if len(lines) > 1:
            axis.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    return figure
