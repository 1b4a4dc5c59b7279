"""Evaluation figures: which classes fail, how F1 moves with the threshold, the label mix.

Each function takes an :class:`~hpa_keras.inference.evaluate.Evaluation`
(or labels) and returns a matplotlib figure; :mod:`hpa_keras.reports.html`
saves them and embeds them in the report page.
"""

import numpy as np

from hpa_keras.inference.evaluate import THRESHOLD_GRID, Evaluation
from hpa_keras.reports.figures import plt


def f1_frequency_figure(evaluation: Evaluation, label_worst: int = 8):
    """Tuned F1 (filled) and F1 at 0.5 (hollow) of each class against its frequency (log axis).

    Each point carries its class index; the ``label_worst`` lowest-scoring
    classes are named beside the plot. Classes absent from the evaluated set
    have no frequency and are listed in the title instead.
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    table = evaluation.class_table()
    count = max(len(evaluation.labels), 1)
    present = table[table["support"] > 0]
    frequency = present["support"] / count * 100
    figure, axis = plt.subplots(figsize=(10.5, 5.2))
    axis.scatter(
        frequency,
        present["f1_at_0.5"],
        facecolors="none",
        edgecolors="0.55",
        s=36,
        label="threshold 0.5",
    )
    axis.scatter(
        frequency, present["f1"], color="tab:blue", s=40, label="tuned thresholds", zorder=3
    )
    worst = present.nsmallest(label_worst, "f1")
    for row, x in zip(present.itertuples(index=False), frequency, strict=True):
        colour = "tab:red" if row[0] in set(worst["class"]) else "0.25"
        axis.annotate(
            str(row[0]),
            (x, row.f1),
            xytext=(4, 3),
            textcoords="offset points",
            fontsize=7,
            color=colour,
        )
    axis.set_xscale("log")
    axis.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}%"))
    axis.xaxis.set_minor_formatter(NullFormatter())
    axis.set_ylim(-0.03, 1.05)
    axis.set_xlabel("images with the class (share of the evaluated set, log scale)")
    axis.set_ylabel("F1")
    summary = evaluation.summary()
    axis.axhline(
        summary["macro_f1"],
        color="tab:blue",
        linestyle="--",
        linewidth=1,
        label=f"macro F1 {summary['macro_f1']:.3f}",
    )
    axis.grid(alpha=0.3, which="both")
    axis.legend(loc="lower right", fontsize=8)
    listing = "\n".join(
        f"{row[0]:>2} {row[1][:30]}: {row.f1:.2f}" for row in worst.itertuples(index=False)
    )
    axis.text(
        1.02,
        1.0,
        f"lowest F1\n{listing}",
        transform=axis.transAxes,
        va="top",
        ha="left",
        fontsize=8,
        color="tab:red",
        family="monospace",
    )
    absent = table[table["support"] == 0]
    title = "Which classes fail: F1 by class frequency"
    if len(absent):
        listed = ", ".join(map(str, absent["class"]))
        title += f"\n(absent from this set, F1 undefined, counted as 0: {listed})"
    axis.set_title(title, fontsize=10)
    figure.tight_layout()
    return figure


def f1_threshold_figure(evaluation: Evaluation, grid=THRESHOLD_GRID, columns: int = 7):
    """A panel per class: F1 as the threshold moves, the chosen threshold (red) and 0.5 (grey)."""
    curves = evaluation.threshold_curves(grid)
    table = evaluation.class_table()
    rows = int(np.ceil(len(table) / columns))
    figure, axes = plt.subplots(
        rows, columns, figsize=(2.2 * columns, 1.75 * rows), sharex=True, sharey=True, squeeze=False
    )
    for axis in axes.ravel()[len(table) :]:
        axis.set_axis_off()
    for axis, row in zip(axes.ravel(), table.itertuples(index=False), strict=False):
        axis.plot(grid, curves[:, row[0]], color="tab:blue", linewidth=1.2)
        axis.axvline(0.5, color="0.6", linestyle=":", linewidth=1)
        axis.axvline(row.threshold, color="tab:red", linewidth=1)
        axis.set_title(f"{row[0]} {row[1][:20]} (n={row.support})", fontsize=7)
        axis.text(
            0.97,
            0.93,
            f"F1 {row.f1:.2f}",
            transform=axis.transAxes,
            ha="right",
            va="top",
            fontsize=7,
            color="tab:red",
        )
        axis.tick_params(labelsize=6)
        axis.set_ylim(0, 1.02)
        axis.grid(alpha=0.3)
    for axis in axes[-1]:
        axis.set_xlabel("threshold", fontsize=7)
    for axis in axes[:, 0]:
        axis.set_ylabel("F1", fontsize=7)
    figure.suptitle(
        "F1 against the decision threshold (red: chosen threshold, dotted: 0.5)", fontsize=10
    )
    figure.tight_layout()
    return figure


def label_distribution_figure(labels, class_names, title="Labels of the evaluated images"):
    """Images per class (log scale, rarest at the bottom) and the labels-per-image histogram."""
    labels = np.asarray(labels)
    counts = labels.sum(axis=0).astype(int)
    per_image = labels.sum(axis=1).astype(int)
    figure, (left, right) = plt.subplots(
        1, 2, figsize=(11, 6.2), gridspec_kw={"width_ratios": [2.2, 1]}
    )
    order = np.argsort(counts)
    positions = np.arange(len(order))
    left.barh(positions, np.maximum(counts[order], 0.8), color="tab:green")
    left.set_yticks(positions, [f"{index} {class_names[index]}" for index in order], fontsize=7)
    left.set_xscale("log")
    left.set_xlabel("images (log scale)")
    for position, value in zip(positions, counts[order], strict=True):
        left.text(max(value, 0.8) * 1.05, position, str(value), va="center", fontsize=6)
    left.set_title("Images per class")
    left.grid(alpha=0.3, axis="x", which="both")
    values, frequencies = np.unique(per_image, return_counts=True)
    right.bar(values, frequencies, color="tab:purple")
    right.set_xticks(values)
    right.set_xlabel("labels per image")
    right.set_ylabel("images")
    right.set_title(f"Labels per image (mean {per_image.mean():.2f})" if len(per_image) else "")
    right.grid(alpha=0.3, axis="y")
    figure.suptitle(title)
    figure.tight_layout()
    return figure
