"""Plain-text tables for terminals and report files: one formatter for every table.

The per-class tables of ``ThresholdSearch`` and ``hpa-keras evaluate``, the
baseline comparison and the demo's results are all :func:`format_table`
with their own columns, so they align and read alike.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    """One column: its heading, how values are formatted (a format spec such as
    ``".3f"``), and alignment (``">"`` right, ``"<"`` left)."""

    title: str
    format: str = ""
    align: str = ">"


def _cell(value, column: Column) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    return format(value, column.format)


def format_table(columns: Sequence[Column], rows: Sequence[Sequence], gap: int = 2) -> str:
    """Rows under their headings, each column as wide as its widest cell.

    ``None`` cells stay empty (a summary row may leave columns out); NaN
    reads ``n/a`` (for example the ROC AUC of a class the set lacks).
    """
    cells = [
        [_cell(value, column) for value, column in zip(row, columns, strict=True)] for row in rows
    ]
    widths = [
        max([len(column.title)] + [len(row[index]) for row in cells])
        for index, column in enumerate(columns)
    ]
    separator = " " * gap

    def line(values) -> str:
        return separator.join(
            f"{value:{column.align}{width}}"
            for value, column, width in zip(values, columns, widths, strict=True)
        ).rstrip()

    return "\n".join([line([column.title for column in columns])] + [line(row) for row in cells])


FALLBACK_NAMES = {"global": "global", "default": "0.5"}


def threshold_table(document: dict) -> str:
    """The per-class table of a ``thresholds.json`` document (support, F1 at 0.5, threshold,
    tuned F1, and the fallback of a class whose tuned threshold was not kept) with the macro
    row."""
    columns = [
        Column("", "d"),
        Column("class", align="<"),
        Column("support", "d"),
        Column("F1@0.5", ".3f"),
        Column("threshold", ".3f"),
        Column("F1 tuned", ".3f"),
        Column("fallback", align="<"),
    ]
    rows = [
        (
            entry["index"],
            entry["name"],
            entry["support"],
            entry["f1_at_0.5"],
            entry["threshold"],
            entry["f1_tuned"],
            FALLBACK_NAMES.get(entry.get("fallback"), ""),
        )
        for entry in document["classes"]
    ]
    rows.append(
        (None, "macro", None, document["macro_f1_at_0.5"], None, document["macro_f1_tuned"], None)
    )
    return format_table(columns, rows)


def fallback_lines(document: dict, samples: str = "tuning images") -> list[str]:
    """One line per cause for the classes of a ``thresholds.json`` document whose tuned
    threshold was not kept (its ``fallbacks``), naming them and what they got instead;
    none when every class kept its own."""
    lines = []
    for cause, why in (
        ("few_positives", f"fewer than {document.get('min_positives')} positives in the"),
        ("marks_every_image", "a threshold that would mark every one of the"),
    ):
        entries = [entry for entry in document.get("fallbacks") or () if entry["cause"] == cause]
        if not entries:
            continue
        shared = [entry for entry in entries if entry["fallback"] == "global"]
        default = len(entries) - len(shared)
        instead = " or ".join(
            ([f"the global threshold {shared[0]['threshold']:.3f}"] if shared else [])
            + ([f"0.5 ({default} where the global one marks every image)"] if default else [])
        )
        listed = ", ".join(
            f"{entry['index']} {entry['name']}"
            + (f" ({entry['positives']})" if cause == "few_positives" else "")
            for entry in entries
        )
        count = document.get("num_validation_samples", document.get("num_oof_samples", "?"))
        lines.append(
            f"{len(entries)} class{'es' if len(entries) != 1 else ''} with {why} {count} "
            f"{samples} use {instead} instead of their own: {listed}"
        )
    return lines


def evaluation_table(class_table, summary: dict) -> str:
    """The per-class evaluation table (an ``Evaluation.class_table()``) with the macro and
    micro rows from its ``summary()``."""
    columns = [
        Column("", "d"),
        Column("class", align="<"),
        Column("support", "d"),
        Column("predicted", "d"),
        Column("precision", ".3f"),
        Column("recall", ".3f"),
        Column("F1", ".3f"),
        Column("F1@0.5", ".3f"),
        Column("threshold", ".3f"),
        Column("ROC AUC", ".3f"),
    ]
    rows = [
        (
            int(row["class"]),
            row["name"],
            int(row["support"]),
            int(row["predicted"]),
            float(row["precision"]),
            float(row["recall"]),
            float(row["f1"]),
            float(row["f1_at_0.5"]),
            float(row["threshold"]),
            float(row["roc_auc"]),
        )
        for row in class_table.to_dict("records")
    ]
    rows.append(
        (
            None,
            "macro",
            None,
            None,
            summary["macro_precision"],
            summary["macro_recall"],
            summary["macro_f1"],
            summary["macro_f1_at_0.5"],
            None,
            summary["mean_roc_auc"],
        )
    )
    rows.append(
        (
            None,
            "micro F1",
            None,
            None,
            None,
            None,
            summary["micro_f1"],
            summary["micro_f1_at_0.5"],
            None,
            None,
        )
    )
    return format_table(columns, rows)


def comparison_table(rows: Sequence[tuple], first_column: str = "") -> str:
    """``(name, macro F1, macro F1 at 0.5, micro F1)`` rows, for baselines beside models."""
    columns = [
        Column(first_column, align="<"),
        Column("macro F1", ".3f"),
        Column("at 0.5", ".3f"),
        Column("micro F1", ".3f"),
    ]
    return format_table(columns, rows)
