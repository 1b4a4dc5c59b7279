"""Evaluation figures: which classes fail, how F1 moves with the threshold, the label mix,
how far the probabilities are from calibrated.

Each function takes an :class:`~hpa_keras.scoring.evaluation.Evaluation`
(or labels) and returns a matplotlib figure; :mod:`hpa_keras.reports.html`
saves them and embeds them in the report page.
"""

import numpy as np
from matplotlib.text import Text
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from matplotlib.transforms import Bbox

from hpa_keras.reports.figures import plt
from hpa_keras.scoring.calibration import DEFAULT_BINS, reliability_curve
from hpa_keras.scoring.evaluation import THRESHOLD_GRID, Evaluation


def f1_frequency_figure(evaluation: Evaluation, label_worst: int = 8):
    """Tuned F1 (filled) and F1 at 0.5 (hollow) of each class against its frequency (log axis).

    Each point carries its class index; the ``label_worst`` lowest-scoring
    classes are named beside the plot. Classes absent from the evaluated set
    have no frequency and are listed in the title instead.
    """

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
    worst_classes = set(worst["class"])
    place_point_labels(
        axis,
        np.column_stack([frequency, present["f1"]]),
        [str(index) for index in present["class"]],
        ["tab:red" if index in worst_classes else "0.25" for index in present["class"]],
        obstacles=np.column_stack([frequency, present["f1_at_0.5"]]),
    )
    return figure


LABEL_DISTANCES = (3, 7, 12, 18, 25, 33, 42, 52, 64, 78)  # points from the marker's edge
LABEL_DIRECTIONS = 16
MARKER_RADIUS = 3.5  # points: the scatter markers' radius, which labels keep clear of


def place_point_labels(axis, points, texts, colours, obstacles=(), fontsize=7):
    """Label each point so that no two labels overlap, nor cover a marker.

    Labels are placed in turn (the most crowded points first), each at the
    first spot that is free, trying positions on rings further and further
    from its point; a label placed away from its point gets a thin line to
    it. Positions are computed in display space, so call this after the
    figure's layout is final (after ``tight_layout``). Returns the
    annotations.
    """

    figure = axis.figure
    renderer = figure.canvas.get_renderer()
    scale = figure.dpi / 72.0  # display pixels per point
    points = np.asarray(points, dtype=float).reshape(-1, 2)
    display = axis.transData.transform(points)
    markers = np.concatenate(
        [display, axis.transData.transform(np.asarray(obstacles, dtype=float).reshape(-1, 2))]
    )
    radius = MARKER_RADIUS * scale
    taken = [Bbox.from_extents(x - radius, y - radius, x + radius, y + radius) for x, y in markers]
    frame = axis.get_window_extent(renderer)
    gaps = np.linalg.norm(display[:, None] - display[None], axis=-1)
    crowding = (gaps < 30 * scale).sum(axis=1)
    angles = np.linspace(0, 2 * np.pi, LABEL_DIRECTIONS, endpoint=False)
    annotations = [None] * len(points)
    for index in sorted(range(len(points)), key=lambda k: (-crowding[k], k)):
        style = {"fontsize": fontsize, "color": colours[index], "ha": "center", "va": "center"}
        probe = axis.annotate(
            texts[index], points[index], xytext=(0, 0), textcoords="offset points", **style
        )
        width, height = _text_size(probe, renderer, scale)
        offset, distance = (MARKER_RADIUS + width / 2 + 1, 0.0), 0.0  # if nowhere is free
        for distance in LABEL_DISTANCES:
            free = None
            for angle in angles:
                # The box's centre, far enough out along the direction to clear the marker.
                reach = MARKER_RADIUS + distance + _half_extent(width, height, angle)
                probe.set_position((reach * np.cos(angle), reach * np.sin(angle)))
                box = probe.get_window_extent(renderer).padded(0.5 * scale)
                inside = frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1)
                if inside and not any(box.overlaps(other) for other in taken):
                    free = probe.get_position()
                    break
            if free is not None:
                offset = free
                break
        else:
            distance = 0.0
        probe.remove()
        line = None
        if distance > LABEL_DISTANCES[1]:  # far from its point: a thin line leads to it
            line = {"arrowstyle": "-", "color": colours[index], "linewidth": 0.5, "alpha": 0.6,
                    "shrinkA": 1, "shrinkB": MARKER_RADIUS}  # fmt: skip
        label = axis.annotate(
            texts[index], points[index], xytext=offset, textcoords="offset points",
            arrowprops=line, **style,
        )  # fmt: skip
        label.update_positions(renderer)
        taken.append(Text.get_window_extent(label, renderer).padded(0.5 * scale))  # no line
        annotations[index] = label
    return annotations


def _text_size(label, renderer, scale) -> tuple[float, float]:
    """A label's width and height in points."""
    box = label.get_window_extent(renderer)
    return box.width / scale, box.height / scale


def _half_extent(width: float, height: float, angle: float) -> float:
    """How far a ``width`` x ``height`` box reaches from its centre in direction ``angle``."""
    cosine, sine = abs(np.cos(angle)), abs(np.sin(angle))
    return min(width / 2 / cosine if cosine > 1e-9 else np.inf,
               height / 2 / sine if sine > 1e-9 else np.inf)  # fmt: skip


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
    """Images per class (log scale, rarest at the bottom) and the labels-per-image histogram.

    A class without images gets no bar (a log axis has no zero), only the
    words "0: no images".
    """

    labels = np.asarray(labels)
    counts = labels.sum(axis=0).astype(int)
    per_image = labels.sum(axis=1).astype(int)
    figure, (left, right) = plt.subplots(
        1, 2, figsize=(11, 6.2), gridspec_kw={"width_ratios": [2.2, 1]}
    )
    order = np.argsort(counts, kind="stable")
    positions = np.arange(len(order))
    shown = counts[order] > 0  # a class without images gets no bar (a log axis has no 0)
    left.barh(positions[shown], counts[order][shown], color="tab:green")
    left.set_yticks(positions, [f"{index} {class_names[index]}" for index in order], fontsize=7)
    left.set_xscale("log")
    left.set_xlim(0.8, max(int(counts.max()), 1) * 1.6)
    left.set_ylim(-0.6, len(order) - 0.4)
    left.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    left.set_xlabel("images (log scale)")
    for position, value in zip(positions, counts[order], strict=True):
        if value:
            left.text(value * 1.05, position, str(value), va="center", fontsize=6)
        else:
            left.text(0.85, position, "0: no images", va="center", fontsize=6, color="0.4")
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


def reliability_figure(evaluation: Evaluation, bins: int = DEFAULT_BINS, calibrated: bool = True):
    """Reliability diagram over all label decisions (images x classes), as predicted and,
    with ``calibrated``, after calibration cross-fitted on the evaluated set.

    Top: in each of ``bins`` equal-width bins of predicted probability, the share of
    decisions that are true labels against the bin's mean probability; on the diagonal a
    probability means what it says. Bottom: the decisions in each bin (log scale: most
    decisions of a multi-label set are confident negatives, and a few points of the curve
    rest on a handful of decisions). The calibrated curve is
    :meth:`~hpa_keras.scoring.evaluation.Evaluation.cross_fitted_probabilities`, named as
    such: it shows what calibration could gain on data like this, not a calibration the
    run holds. An evaluation with the run's stored ``calibration`` adds its curve.
    """

    curves = [("as predicted", evaluation.probabilities, "tab:blue", "o")]
    corrected = evaluation.cross_fitted_probabilities() if calibrated else None
    if corrected is not None:
        curves.append(("calibrated (cross-fitted on this set)", corrected, "tab:orange", "s"))
    if calibrated and evaluation.calibration is not None:
        stored = evaluation.calibration.apply(evaluation.probabilities)
        curves.append(("calibrated (the run's calibration.json)", stored, "tab:green", "^"))
    figure, (top, bottom) = plt.subplots(
        2, 1, figsize=(6.4, 7.6), sharex=True, gridspec_kw={"height_ratios": [3, 1.1]}
    )
    top.plot([0, 1], [0, 1], color="0.5", linestyle="--", linewidth=1, label="perfect calibration")
    width = 1.0 / bins / (len(curves) + 0.5)
    errors = []
    for number, (name, probabilities, colour, marker) in enumerate(curves):
        curve = reliability_curve(evaluation.labels, probabilities, bins=bins)
        errors.append(curve.error)
        filled = curve.counts > 0
        top.plot(
            curve.mean_predicted[filled], curve.observed[filled], marker=marker, markersize=5,
            color=colour, linewidth=1.4, label=f"{name}: ECE {curve.error:.3f}",
        )  # fmt: skip
        offset = (number - (len(curves) - 1) / 2) * width
        bottom.bar(
            curve.centers[filled] + offset, curve.counts[filled], width=width, color=colour,
            alpha=0.8, label=name,
        )  # fmt: skip
    top.set_xlim(0, 1)
    top.set_ylim(-0.02, 1.02)
    top.set_ylabel("observed share of true labels")
    top.grid(alpha=0.3)
    top.legend(loc="upper left", fontsize=8)
    bottom.set_yscale("log")
    bottom.set_xlabel(f"mean predicted probability ({bins} equal-width bins)")
    bottom.set_ylabel("label decisions")
    bottom.set_title("label decisions per bin", fontsize=9)
    bottom.grid(alpha=0.3, axis="y", which="major")
    title = f"Reliability over {evaluation.labels.size:,} label decisions\n"
    title += f"ECE {errors[0]:.3f} as predicted"
    if len(errors) > 1:
        title += f", {errors[1]:.3f} calibrated (cross-fitted on this set)"
    top.set_title(title, fontsize=10)
    figure.tight_layout()
    return figure
