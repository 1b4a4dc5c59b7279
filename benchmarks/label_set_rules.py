"""Which conformal label-set rule keeps its promise for a cv's fold ensemble, side by side.

The thresholds are fitted on a cv's out-of-fold predictions (single fold models); this
prints, on a labelled test record set, the coverage (all true labels of an image in its
set) and labels per set of each way to apply them to the M fold models: a class in the set
when at least k of them reach its threshold (k = 1 is the union ``predict --coverage``
writes), and the members' mean against the thresholds.

    python benchmarks/label_set_rules.py --cv hpa-demo/cv --test hpa-demo/tfrecords/test
"""

import argparse

from hpa_keras.data.pipeline import dataset_labels
from hpa_keras.inference.label_sets import out_of_fold_predictions
from hpa_keras.inference.predict import predict_ids_by_member
from hpa_keras.scoring.conformal import conformal_thresholds, empirical_coverage


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cv", required=True, nargs="+", help="cv folders")
    parser.add_argument("--test", required=True, nargs="+", help="their labelled test records")
    parser.add_argument("--coverage", type=float, nargs="+", default=[0.8, 0.9, 0.95])
    arguments = parser.parse_args(argv)
    if len(arguments.cv) != len(arguments.test):
        parser.error("give one --test record folder per --cv folder")
    for cv, test in zip(arguments.cv, arguments.test, strict=True):
        oof_labels, oof_probabilities, views = out_of_fold_predictions(cv)
        ids, labels = dataset_labels(test)
        members, _ = predict_ids_by_member([cv], ids, data=test, tta=views)
        print(f"{cv}: {len(members)} fold models, {len(ids)} test images of {test}")
        for coverage in arguments.coverage:
            fitted = conformal_thresholds(oof_labels, oof_probabilities, coverage, "image")
            votes = (members >= fitted.thresholds).sum(axis=0)
            rules = [(f"at least {k} of {len(members)}", votes >= k)
                     for k in range(1, len(members) + 1)]  # fmt: skip
            rules.append(("members' mean", members.mean(axis=0) >= fitted.thresholds))
            cells = []
            for name, sets in rules:
                measured = empirical_coverage(labels, sets)
                cells.append(f"{name}: {measured.rate:.3f} ({measured.mean_set_size:.1f})")
            print(f"  at {coverage:g}: " + "; ".join(cells))


if __name__ == "__main__":
    main()
