"""The evaluation report: per-class CSV and text, plots, and one self-contained HTML page.

``write_report(evaluation, out)`` writes into ``out``:

    report.html            everything below in one file (plots embedded as PNG data)
    classes.csv            per class: support, predicted, precision, recall, F1, F1 at 0.5,
                           threshold, ROC AUC, expected calibration error (ECE)
    summary.json           macro and micro F1, mean ROC AUC, ECE, what was evaluated; ECE
                           after calibration and the coverage of 90% label sets, both
                           cross-fitted on the evaluated set
    report.txt             the per-class table as printed by ``hpa-keras evaluate``
    most_uncertain.csv     the images with the highest predictive entropy
    f1_vs_frequency.png    which classes fail: F1 against how common the class is
    f1_vs_threshold.png    one small panel per class: F1 as its threshold moves
    reliability.png        reliability diagram, as predicted and calibrated (cross-fitted)
    labels.png             label distribution and labels per image of the evaluated set
    learning_curves.png    the run's learning curves (when it has a history.csv)

Every file is written atomically; the figure functions return matplotlib
figures for notebooks.
"""

import base64
import html
import json
import os
from datetime import datetime
from pathlib import Path

import numpy as np

from hpa_keras.atomic import write_text_atomic
from hpa_keras.reports.evaluation import (
    f1_frequency_figure,
    f1_threshold_figure,
    label_distribution_figure,
    reliability_figure,
)
from hpa_keras.reports.figures import save_figure
from hpa_keras.reports.tables import evaluation_table
from hpa_keras.reports.training import learning_curve_figure, read_history
from hpa_keras.scoring.evaluation import (
    CROSS_FIT_FOLDS,
    LABEL_SET_COVERAGE,
    Evaluation,
)

FIGURES = {
    "f1_vs_frequency.png": "F1 against class frequency",
    "f1_vs_threshold.png": "F1 against threshold, per class",
    "reliability.png": (
        "Reliability: the share of label decisions (images x classes) that are true labels "
        "against the mean predicted probability, per probability bin, with the decisions in "
        "each bin below; on the diagonal a probability means what it says. 'Calibrated' maps "
        f"each image's probabilities with per-class maps fitted on the other {CROSS_FIT_FOLDS - 1} "
        f"of {CROSS_FIT_FOLDS} folds of this same set: what calibration could gain on data "
        "like this. The run stores no calibration; its predictions are as predicted."
    ),
    "labels.png": "Labels of the evaluated images",
    "learning_curves.png": "Learning curves",
}


def _figure_html(path: Path, caption: str) -> str:
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{encoded}" alt="{html.escape(caption)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _f1_colour(value: float) -> str:
    """A red-to-green background for a score in [0, 1]."""
    if not np.isfinite(value):
        return "#eeeeee"
    hue = 120 * float(np.clip(value, 0, 1))
    return f"hsl({hue:.0f}, 70%, 85%)"


def _class_rows(evaluation: Evaluation) -> str:
    rows = []
    for row in evaluation.class_table().itertuples(index=False):
        auc = "n/a" if not np.isfinite(row.roc_auc) else f"{row.roc_auc:.3f}"
        rows.append(
            "<tr>"
            f"<td>{row[0]}</td><td class='name'>{html.escape(row[1])}</td>"
            f"<td>{row.support}</td><td>{row.predicted}</td>"
            f"<td>{row.precision:.3f}</td><td>{row.recall:.3f}</td>"
            f"<td style='background:{_f1_colour(row.f1)}'><b>{row.f1:.3f}</b></td>"
            f"<td style='background:{_f1_colour(row[7])}'>{row[7]:.3f}</td>"
            f"<td>{row.threshold:.3f}</td>"
            # AUC 0.5 is chance: colour the range 0.5-1 from red to green.
            f"<td style='background:{_f1_colour(2 * row.roc_auc - 1)}'>{auc}</td>"
            f"<td>{row.ece:.3f}</td>"
            "</tr>"
        )
    return "\n".join(rows)


_STYLE = """
body { font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1150px; color: #222; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } .meta { color: #666; margin-top: 0; }
.cards { display: flex; flex-wrap: wrap; gap: 0.8em; margin: 1.2em 0; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 0.6em 1em; min-width: 9em; }
.card .value { font-size: 1.6em; font-weight: 600; }
.card .label { color: #666; font-size: 0.85em; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { padding: 3px 8px; border-bottom: 1px solid #eee; text-align: right; }
td.name, th.name { text-align: left; } th { background: #f5f5f5; position: sticky; top: 0; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #666; font-size: 0.9em; }
.warning { background: #fff3cd; border: 1px solid #e0b000; border-radius: 6px;
           padding: 0.5em 1em; }
"""


def _labels_html(numbers: str, names) -> str:
    if not numbers:
        return "<i>none</i>"
    return ", ".join(html.escape(f"{index} {names[int(index)]}") for index in numbers.split())


def _uncertain_html(evaluation: Evaluation) -> str:
    """The most uncertain images as a table: id, entropy, true and predicted labels."""
    rows = "\n".join(
        f"<tr><td class='name'>{html.escape(row.id)}</td><td>{row.entropy:.3f}</td>"
        f"<td class='name'>{_labels_html(row.labels, evaluation.class_names)}</td>"
        f"<td class='name'>{_labels_html(row.predicted, evaluation.class_names)}</td></tr>"
        for row in evaluation.uncertain_table().itertuples(index=False)
    )
    return (
        "<table class='uncertain'><thead><tr><th class=name>id</th><th>entropy</th>"
        "<th class=name>labels</th><th class=name>predicted</th></tr></thead>"
        f"<tbody>\n{rows}\n</tbody></table>"
    )


def _coverage_html(evaluation: Evaluation) -> str:
    """A sentence on the cross-fitted coverage of conformal label sets."""
    measured = evaluation.label_set_coverage(LABEL_SET_COVERAGE)
    promise = (
        f"Conformal label sets that promise all of an image's true labels for "
        f"{LABEL_SET_COVERAGE:.0%} of images"
    )
    if measured is None:
        return f"{promise} need at least two images to be measured here."
    sentence = (
        f"{promise}, with thresholds fitted on the other folds of this set, cover "
        f"{measured.rate:.2f} of its images with {measured.mean_set_size:.1f} labels on average."
    )
    stored = evaluation.stored_label_set_coverage()
    if stored is not None:
        sentence += (
            f" The cv's own sets (<code>predict --coverage "
            f"{evaluation.label_sets.coverage:g}</code>, fitted on "
            f"{evaluation.label_sets.images} out-of-fold images) cover {stored.rate:.2f} of "
            f"them with {stored.mean_set_size:.1f} labels on average."
        )
    return sentence


def _cards_html(summary: dict) -> str:
    """The headline numbers, one card each."""
    cards = [
        ("macro F1", summary["macro_f1"], "with the run's thresholds"),
        ("macro F1 at 0.5", summary["macro_f1_at_0.5"], "one threshold for all"),
        ("micro F1", summary["micro_f1"], "all decisions pooled"),
        ("mean ROC AUC", summary["mean_roc_auc"], f"over {summary['classes_with_auc']} classes"),
        ("ECE", summary["ece"], "calibration error, as predicted"),
    ]
    return "".join(
        f"<div class='card'><div class='value'>{value:.3f}</div>"
        f"<div class='label'>{html.escape(name)}<br>{html.escape(note)}</div></div>"
        for name, value, note in cards
    )


def _described(summary: dict) -> list[str]:
    """What was evaluated: the data, the runs, the views, when."""
    folds = summary.get("folds")
    return [
        f"{summary['samples']} images from {html.escape(str(summary.get('data', '?')))}"
        + (f" (fold {', '.join(map(str, folds))})" if folds else ""),
        "run: " + ", ".join(html.escape(str(run)) for run in summary.get("runs", [])),
        f"test-time augmentation: {summary.get('tta', 1)} view(s)",
        f"written {datetime.now().strftime('%Y-%m-%d %H:%M')}",
    ]


def _calibration_html(evaluation: Evaluation, summary: dict) -> str:
    """The calibration paragraph: ECE as predicted, what cross-fitted maps would give, coverage."""
    calibrated = evaluation.cross_fitted_ece()
    stored = evaluation.calibrated_ece()
    if stored is None:
        after = (
            f"{calibrated:.3f}; the run stores no calibration, so this shows what one could "
            "gain on data like this, not what the run's predictions are. "
        )
    else:
        after = (
            f"{calibrated:.3f}. With the calibration stored with the run (fitted on its "
            f"out-of-fold predictions), it is {stored:.3f}: the probabilities "
            "<code>predict</code> writes. "
        )
    return (
        f"Expected calibration error (ECE, {summary['ece']:.3f} as predicted): the gap "
        "between predicted probability and observed share of true labels, averaged over "
        "all label decisions. Calibrated by maps cross-fitted on this set, it would be "
        + after
        + _coverage_html(evaluation)
    )


def report_html(evaluation: Evaluation, figures: dict[Path, str], title: str) -> str:
    """The report page: summary cards, the per-class table, the embedded figures."""
    summary = evaluation.summary()
    card_html = _cards_html(summary)
    described = _described(summary)
    headers = "".join(
        f"<th{' class=name' if name == 'name' else ''}>{name}</th>"
        for name in (
            "class",
            "name",
            "support",
            "predicted",
            "precision",
            "recall",
            "F1",
            "F1 at 0.5",
            "threshold",
            "ROC AUC",
            "ECE",
        )
    )
    figure_html = "\n".join(_figure_html(path, caption) for path, caption in figures.items())
    warning_html = "".join(
        f"<p class='warning'><b>warning:</b> {html.escape(message)}</p>"
        for message in evaluation.warnings()
    )
    training = summary.get("training_labels_per_image")
    per_image = (
        f"Labels per image: {summary['predicted_labels_per_image']:.2f} predicted, "
        f"{summary['labels_per_image']:.2f} true"
        + (f", {training:.2f} in the training data." if training is not None else ".")
    )
    zero = summary["classes_f1_zero"]
    calibration = _calibration_html(evaluation, summary)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_STYLE}</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="meta">{" &middot; ".join(described)}</p>
<div class="cards">{card_html}</div>
{warning_html}
<p>{per_image}</p>
<p>{summary["classes_present"]} of {len(evaluation.thresholds)} classes occur in this set;
{zero} class{"es score" if zero != 1 else " scores"} F1 = 0 with the run's thresholds
(a class absent from the set and never predicted scores 0, as in the challenge).</p>
<p>{calibration}</p>
<h2>Per class</h2>
<table><thead><tr>{headers}</tr></thead><tbody>
{_class_rows(evaluation)}
</tbody></table>
<h2>Most uncertain images</h2>
<p>The images with the highest predictive entropy (binary entropy of each class's
probability, in bits, averaged over classes): where the model is least sure.</p>
{_uncertain_html(evaluation)}
<h2>Plots</h2>
{figure_html}
</body></html>
"""


def write_report(
    evaluation: Evaluation,
    out: str | os.PathLike,
    history=None,
    title: str = "hpa-keras evaluation",
) -> dict[str, Path]:
    """Write the report files into ``out`` (see the module docstring); returns their paths.

    ``history``: a run's ``history.csv`` for the learning-curve plot (skipped if ``None``
    or missing).
    """

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = evaluation.class_table()
    write_text_atomic(out / "classes.csv", table.to_csv(index=False, float_format="%.6f"))
    write_text_atomic(out / "summary.json", json.dumps(_summary(evaluation), indent=2) + "\n")
    text = evaluation_table(evaluation.class_table(), evaluation.summary())
    write_text_atomic(out / "report.txt", text + "\n")
    uncertain = evaluation.uncertain_table()
    write_text_atomic(
        out / "most_uncertain.csv", uncertain.to_csv(index=False, float_format="%.6f")
    )
    save_figure(f1_frequency_figure(evaluation), out / "f1_vs_frequency.png")
    save_figure(f1_threshold_figure(evaluation), out / "f1_vs_threshold.png", dpi=100)
    save_figure(reliability_figure(evaluation), out / "reliability.png", dpi=100)
    save_figure(
        label_distribution_figure(evaluation.labels, evaluation.class_names),
        out / "labels.png",
        dpi=100,
    )
    names = ["f1_vs_frequency.png", "f1_vs_threshold.png", "reliability.png", "labels.png"]
    if history is not None and Path(history).is_file():
        save_figure(
            learning_curve_figure(read_history(history), title="Learning curves"),
            out / "learning_curves.png",
        )
        names.append("learning_curves.png")
    figures = {out / name: FIGURES[name] for name in names}
    write_text_atomic(out / "report.html", report_html(evaluation, figures, title))
    tables = ("report.html", "classes.csv", "summary.json", "report.txt", "most_uncertain.csv")
    written = {name: out / name for name in tables}
    written.update({name: out / name for name in names})
    return written


def _summary(evaluation: Evaluation) -> dict:
    """``summary()`` with what was cross-fitted on the evaluated set, named as such."""
    measured = evaluation.label_set_coverage(LABEL_SET_COVERAGE)
    cross_fitted = {"folds": CROSS_FIT_FOLDS, "ece_calibrated": evaluation.cross_fitted_ece()}
    if measured is not None:
        cross_fitted["label_sets"] = {"promised": LABEL_SET_COVERAGE, **measured.to_dict()}
    return {**evaluation.summary(), "cross_fitted_on_this_set": cross_fitted}
