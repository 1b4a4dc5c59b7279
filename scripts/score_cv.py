"""Score cv folders on held-out labeled records: single runs against the fold ensemble.

    python scripts/score_cv.py --test demo-test cvs/seed0 cvs/seed1 cvs/seed2

For every cv folder (one per seed), each fold model predicts the test
records once (with the views the cv tuned its thresholds with; cached in
``CV_DIR/test-<name>.npz``), and the probabilities are judged several ways:

- one fold model on its own, with the thresholds tuned on its validation
  fold (what ``hpa-keras fit`` gives), with the out-of-fold thresholds, and
  at 0.5; "fold 0" is the single run that ``fit``'s defaults would train;
- the ensemble (mean of the fold models' probabilities) with the cv's
  out-of-fold thresholds (what ``predict --run CV_DIR`` does), with the
  mean of the folds' own thresholds (what ensembles did before), at 0.5,
  and with each threshold strategy tuned on the out-of-fold predictions;
- "test-tuned": per-class thresholds searched on the test labels
  themselves, an optimistic ceiling no real submission can reach.

Prints one table per cv folder and, over several folders, the mean and
standard deviation (``ddof=1``) of each row and the paired gain of the
ensemble with out-of-fold thresholds over the fold-0 single run.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def test_probabilities(cv_folder: Path, test: Path) -> dict:
    """Each fold model's test probabilities (cached), the labels and the thresholds."""
    from hpa_keras.data.pipeline import dataset_labels
    from hpa_keras.data.tfrecords import read_manifest
    from hpa_keras.inference.predict import predict_ids
    from hpa_keras.runs.folders import default_views, expand_runs

    folders, document = expand_runs([cv_folder])
    views = default_views([cv_folder])
    ids, labels = dataset_labels(test, None, None)
    fingerprint = read_manifest(test).fingerprint()
    cache = cv_folder / f"test-{test.name}.npz"
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as stored:
            if str(stored["fingerprint"]) == fingerprint and int(stored["views"]) == views:
                return {
                    "labels": labels,
                    "probabilities": stored["probabilities"],
                    "own": stored["own"],
                    "oof": document.thresholds,
                    "by_strategy": document.by_strategy,
                    "views": views,
                }
    probabilities, own = [], []
    for folder in folders:
        scores, thresholds = predict_ids([folder], ids, data=test, tta=views)
        probabilities.append(scores)
        own.append(thresholds)
    np.savez(
        cache,
        probabilities=np.stack(probabilities),
        own=np.stack(own),
        fingerprint=fingerprint,
        views=views,
    )
    return {
        "labels": labels,
        "probabilities": np.stack(probabilities),
        "own": np.stack(own),
        "oof": document.thresholds,
        "by_strategy": document.by_strategy,
        "views": views,
    }


def score_rows(found: dict) -> dict[str, float]:
    """Test macro F1 of every way of judging (see the module docstring)."""
    from hpa_keras.scoring.metrics import macro_f1
    from hpa_keras.scoring.thresholds import best_thresholds

    labels, probabilities, own, oof = (
        found["labels"],
        found["probabilities"],
        found["own"],
        found["oof"],
    )
    singles = {
        "own": [macro_f1(labels, p >= t) for p, t in zip(probabilities, own, strict=True)],
        "oof": [macro_f1(labels, p >= oof) for p in probabilities],
        "0.5": [macro_f1(labels, p >= 0.5) for p in probabilities],
    }
    ensemble = probabilities.mean(axis=0)
    rows = {
        "fold 0 alone, its own thresholds (fit)": singles["own"][0],
        "fold 0 alone, out-of-fold thresholds": singles["oof"][0],
        "fold 0 alone, at 0.5": singles["0.5"][0],
        "mean of the fold models alone, own thresholds": float(np.mean(singles["own"])),
        "mean of the fold models alone, at 0.5": float(np.mean(singles["0.5"])),
        "ensemble, out-of-fold thresholds (predict --run CV_DIR)": macro_f1(
            labels, ensemble >= oof
        ),
        "ensemble, mean of the folds' own thresholds": macro_f1(labels, ensemble >= own.mean(0)),
        "ensemble, at 0.5": macro_f1(labels, ensemble >= 0.5),
    }
    for strategy, entry in found["by_strategy"].items():
        rows[f"ensemble, out-of-fold {strategy}"] = macro_f1(
            labels, ensemble >= np.asarray(entry["thresholds"])
        )
    rows["ensemble, test-tuned per class (ceiling)"] = macro_f1(
        labels, ensemble >= best_thresholds(labels, ensemble)[0]
    )
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cv", nargs="+", help="cv folders (one per seed)")
    parser.add_argument("--test", required=True, help="labeled make-tfrecords folder")
    parser.add_argument("--out", help="also write every figure as JSON here")
    arguments = parser.parse_args(argv)
    from hpa_keras.tensorflow_setup import import_tensorflow_quietly

    import_tensorflow_quietly()
    results = {}
    for name in arguments.cv:
        found = test_probabilities(Path(name), Path(arguments.test))
        results[name] = score_rows(found)
        folds = found["probabilities"].shape[0]
        print(
            f"{name}: {folds} fold models, {len(found['labels'])} test images, "
            f"{found['views']} view(s)"
        )
        for row, value in results[name].items():
            print(f"  {row:<60s} {value:.3f}")
    if len(results) > 1:
        rows = list(next(iter(results.values())))
        print(f"over {len(results)} cv folders (mean ± sd):")
        for row in rows:
            values = np.array([result[row] for result in results.values()])
            print(f"  {row:<60s} {values.mean():.3f} ± {values.std(ddof=1):.3f}")
        gains = np.array(
            [
                result["ensemble, out-of-fold thresholds (predict --run CV_DIR)"]
                - result["fold 0 alone, its own thresholds (fit)"]
                for result in results.values()
            ]
        )
        print(
            "  ensemble with out-of-fold thresholds minus fold 0 alone, paired: "
            + ", ".join(f"{gain:+.3f}" for gain in gains)
            + f" (mean {gains.mean():+.3f})"
        )
    if arguments.out:
        Path(arguments.out).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
