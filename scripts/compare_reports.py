"""Mean and spread of evaluation reports, grouped by name: one setting over several seeds.

    python scripts/compare_reports.py reports/*        # folders written by hpa-keras evaluate

Each folder's ``summary.json`` is read; folders are grouped by their name
without a trailing ``-seedN`` (``weighted_bce-seed0`` and
``weighted_bce-seed1`` are one group). Prints, per group, the number of
seeds and the mean and standard deviation (over seeds, ``ddof=1``) of macro
F1 (tuned thresholds and 0.5), micro F1 and mean ROC AUC, so a difference
between two settings can be read against the run-to-run spread.
"""

import json
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

FIGURES = (
    ("macro_f1", "macro F1"),
    ("macro_f1_at_0.5", "at 0.5"),
    ("micro_f1", "micro F1"),
    ("mean_roc_auc", "ROC AUC"),
)


def group_name(folder: Path) -> str:
    return re.sub(r"-seed\d+$", "", folder.name)


def main(folders: list[str]) -> int:
    groups: dict[str, list[dict]] = defaultdict(list)
    for name in folders:
        path = Path(name) / "summary.json"
        if not path.is_file():
            print(f"{path}: missing (not an hpa-keras evaluate folder)", file=sys.stderr)
            return 2
        groups[group_name(Path(name))].append(json.loads(path.read_text()))
    width = max(len(name) for name in groups)
    header = "".join(f"  {title:>15}" for _, title in FIGURES)
    print(f"{'setting':<{width}}  seeds{header}   (mean ± sd over seeds)")
    for name, summaries in groups.items():
        cells = []
        for key, _ in FIGURES:
            values = np.array([summary[key] for summary in summaries], dtype=float)
            spread = values.std(ddof=1) if len(values) > 1 else float("nan")
            cells.append(f"  {values.mean():7.3f} ± {spread:5.3f}")
        print(f"{name:<{width}}  {len(summaries):>5}{''.join(cells)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
