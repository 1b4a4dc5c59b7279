"""How should a cv's fold models be combined and thresholded on new images? Candidates side by side.

A cv's thresholds are tuned on out-of-fold predictions, each made by one fold model; on
new images they are applied to the mean of all fold models, whose probabilities are
smoother than any one model's. This prints, on labelled test records, the macro F1 of each
way to combine the members and choose the thresholds (issue 25's candidates), all from one
prediction of the test images by each fold model:

- ``mean, cv thresholds``: what ``predict`` does (the mean probability, the cv's
  thresholds.json);
- ``mean, 0.5``: the mean against 0.5;
- ``one fold model``: each member alone with the cv's thresholds (their mean F1): what
  the ensemble must beat;
- ``logit mean``: the members' logits averaged (a geometric pooling that keeps one
  confident member's vote), the cv's thresholds;
- ``calibrated members``: each member's probabilities through the cv's calibration maps
  before averaging, thresholds tuned on the calibrated out-of-fold predictions;
- ``shrunk`` and ``global``: the mean with thresholds of fewer free parameters (per
  class shrunk toward one shared value, or one shared value), tuned on the out-of-fold
  predictions;
- ``rate matched``: thresholds under which each class is predicted on the test images
  as often as it was labelled in the out-of-fold set (uses the test images' scores, not
  their labels).

    python benchmarks/ensemble_rules.py --cv bench-transfer/seed-*/cv \\
        --test bench-transfer/seed-*/hpa-like/tfrecords/test

With ``--single RUN ...`` (one per cv), each cv's single run is scored on the same images.
"""

import argparse

import numpy as np

from hpa_keras.data.pipeline import dataset_labels
from hpa_keras.inference.label_sets import out_of_fold_predictions
from hpa_keras.inference.predict import predict_ids_by_member
from hpa_keras.runs.documents import read_calibration
from hpa_keras.scoring.metrics import macro_f1
from hpa_keras.scoring.thresholds import tune_thresholds


def _logit(probabilities: np.ndarray) -> np.ndarray:
    clipped = np.clip(probabilities.astype(np.float64), 1e-6, 1 - 1e-6)
    return np.log(clipped) - np.log1p(-clipped)


def rule_scores(oof_labels, oof_probabilities, members, labels, thresholds, calibration):
    """``{rule: test macro F1}`` of every candidate (see the module docstring)."""
    labels = np.asarray(labels).astype(bool)
    mean = members.mean(axis=0)
    scores = {
        "mean, cv thresholds": macro_f1(labels, mean >= thresholds),
        "mean, 0.5": macro_f1(labels, mean >= 0.5),
        "one fold model": float(
            np.mean([macro_f1(labels, member >= thresholds) for member in members])
        ),
        "logit mean": macro_f1(
            labels, 1 / (1 + np.exp(-_logit(members).mean(axis=0))) >= thresholds
        ),
    }
    if calibration is not None:
        calibrated_oof = calibration.apply(oof_probabilities)
        tuned, _ = tune_thresholds("per_class", oof_labels, calibrated_oof)
        calibrated = np.mean([calibration.apply(member) for member in members], axis=0)
        scores["calibrated members"] = macro_f1(labels, calibrated >= tuned)
    for strategy in ("shrunk", "global"):
        tuned, _ = tune_thresholds(strategy, oof_labels, oof_probabilities)
        scores[strategy] = macro_f1(labels, mean >= tuned)
    frequencies = np.asarray(oof_labels).mean(axis=0)
    tuned, _ = tune_thresholds("rate", oof_labels, mean, class_frequencies=frequencies)
    scores["rate matched"] = macro_f1(labels, mean >= tuned)
    return scores


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cv", required=True, nargs="+", help="cv folders")
    parser.add_argument("--test", required=True, nargs="+", help="their labelled test records")
    parser.add_argument("--single", nargs="+", help="a single run per cv, scored beside them")
    arguments = parser.parse_args(argv)
    if len(arguments.cv) != len(arguments.test):
        parser.error("give one --test record folder per --cv folder")
    if arguments.single and len(arguments.single) != len(arguments.cv):
        parser.error("give one --single run per --cv folder")
    table = []
    for position, (cv, test) in enumerate(zip(arguments.cv, arguments.test, strict=True)):
        oof_labels, oof_probabilities, views = out_of_fold_predictions(cv)
        ids, labels = dataset_labels(test)
        members, thresholds = predict_ids_by_member([cv], ids, data=test, tta=views)
        scores = rule_scores(
            oof_labels, oof_probabilities, members, labels, thresholds, read_calibration(cv)
        )
        if arguments.single:
            single, own = predict_ids_by_member([arguments.single[position]], ids, data=test)
            scores["single run"] = macro_f1(np.asarray(labels).astype(bool), single[0] >= own)
        table.append(scores)
        print(f"{cv}: {len(members)} fold models, {len(ids)} test images of {test}")
        for rule, value in scores.items():
            print(f"  {rule:22} {value:.3f}")
    if len(table) > 1:
        print(f"\nover {len(table)} cv folders: mean ± standard deviation, and minus the mean rule")
        base = np.array([row["mean, cv thresholds"] for row in table])
        for rule in table[0]:
            values = np.array([row[rule] for row in table])
            print(
                f"  {rule:22} {values.mean():.3f}±{values.std(ddof=1):.3f}  "
                f"{(values - base).mean():+.3f} ({', '.join(f'{v:+.3f}' for v in values - base)})"
            )


if __name__ == "__main__":
    main()
