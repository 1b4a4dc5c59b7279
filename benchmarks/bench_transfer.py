"""Do the predictions hold on new images? One run against the fold ensemble, over seeds.

For each seed: built-in data (``--samples`` fields at ``--image-size`` px, real label
sets) is generated in the training style, with a test split in that style and a second
labelled test set drawn in ``--test-style`` (another drawing style, when the generator
has one: images the models never saw the like of); then GAP-Net is trained

- once on folds 1-4, validated on fold 0, with ``--deterministic`` (the single run), and
- as a cv of ``--folds`` folds, ``--deterministic`` too (the fold ensemble with
  out-of-fold thresholds and the cv's calibration maps and conformal label sets),

each with ``--epochs`` epochs, the same recipe as the demo (cosine from 0.002, weighted
BCE). Both are evaluated on each test set, and one table prints, per seed and as mean
and spread over seeds: macro F1 with the tuned thresholds and at 0.5 (and their
difference: do tuned thresholds transfer?), the ensemble's gain over the single run,
ECE as predicted and through the cv's calibration, and the coverage of the cv's 90%
label sets (promised: 0.90 of images hold all their true labels).

    python benchmarks/bench_transfer.py --out bench-transfer            # 3 seeds
    python benchmarks/bench_transfer.py --out /tmp/t --quick            # the mechanics

The issue-25 setting is ``--samples 3000 --image-size 128 --epochs 40 --folds all``;
on 2 CPU cores a seed of it takes about half an hour. Every run is kept under ``--out``
(a second call with the same ``--out`` retrains nothing already finished).
"""

import argparse
import json
from pathlib import Path

import numpy as np

from hpa_keras.data.conversion import ConversionSettings, make_tfrecords
from hpa_keras.inference.evaluate import evaluate_runs
from hpa_keras.synthetic.generator import DemoDataSettings, make_demo_data
from hpa_keras.training.fit import fit, resolve_config
from hpa_keras.workflows.cv import cross_validate

try:  # a second drawing style, where the generator has one
    from hpa_keras.synthetic.styles import STYLES
except ImportError:
    STYLES = {}


def _records(out: Path, style: str, seed: int, arguments) -> dict[str, Path]:
    """Generate one data set and convert its train and test splits (once)."""
    data = out / "data"
    options = {"style": style} if STYLES else {}
    if not (data / "generation.json").is_file():
        settings = DemoDataSettings(
            num_samples=arguments.samples, image_size=arguments.image_size, seed=seed,
            test_fraction=arguments.test_fraction, **options,
        )  # fmt: skip
        make_demo_data(data, settings, overwrite=True, progress=False)
    folders = {}
    for split, labels in (("train", "train.csv"), ("test", "test_labels.csv")):
        folder = out / "tfrecords" / split
        if not (folder / "manifest.json").is_file():
            make_tfrecords(
                data / split, folder, labels=data / labels,
                settings=ConversionSettings(num_folds=5 if split == "train" else 2),
                progress=False,
            )  # fmt: skip
        folders[split] = folder
    return folders


def _config(records: Path, seed: int, arguments, **changes):
    settings = {
        "data": str(records), "model": "gapnet", "epochs": arguments.epochs,
        "batch_size": arguments.batch_size, "cache": True, "lr": 2e-3, "schedule": "cosine",
        "seed": seed, "verbose": 0, "tensorboard": False,
        **({"model_options": {"width": 4, "depth": 1, "dense_units": 8}} if arguments.quick
           else {}),
        **changes,
    }  # fmt: skip
    return resolve_config(settings)


def _scores(evaluation) -> dict:
    summary = evaluation.summary()
    row = {
        "macro_f1": summary["macro_f1"],
        "at_0.5": summary["macro_f1_at_0.5"],
        "ece": summary["ece"],
        "ece_calibrated": summary.get("ece_calibrated"),
    }
    sets = summary.get("label_sets")
    if sets:
        row["coverage"] = sets["rate"]
        row["set_size"] = sets["mean_set_size"]
    return row


def run_seed(seed: int, arguments) -> dict:
    """Train the single run and the cv of one seed; their scores on every test set."""
    out = Path(arguments.out) / f"seed-{seed}"
    train = _records(out / arguments.train_style, arguments.train_style, seed, arguments)
    tests = {f"{arguments.train_style} test split": train["test"]}
    if arguments.test_style != arguments.train_style:
        other = _records(out / arguments.test_style, arguments.test_style, seed + 1000, arguments)
        tests[f"{arguments.test_style} (other style)"] = other["test"]
    single = out / "single"
    if not (single / "model.keras").is_file():
        fit(_config(train["train"], seed, arguments, out=str(single), fold=0, deterministic=True))
    cv = out / "cv"
    if not (cv / "cv_summary.json").is_file():
        config = _config(train["train"], seed, arguments, deterministic=True)
        cross_validate(config, cv, folds=arguments.folds)
    results = {}
    for name, records in tests.items():
        results[name] = {
            "single": _scores(evaluate_runs([single], data=records)),
            "ensemble": _scores(evaluate_runs([cv], data=records)),
        }
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    return results


def _cell(values: list[float]) -> str:
    values = [value for value in values if value is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f}±{np.std(values, ddof=1):.3f}"


def print_table(by_seed: dict[int, dict]) -> None:
    """Per test set: each model's figures per seed, then the mean and spread over seeds."""
    seeds = sorted(by_seed)
    for test in by_seed[seeds[0]]:
        print(f"\n{test}: macro F1 (tuned, at 0.5, tuned - 0.5), ECE (as predicted, calibrated),")
        print("coverage of the cv's 90% label sets (labels per set)")
        header = (
            f"  {'model':9} {'seed':>5} {'tuned':>7} {'at 0.5':>7} {'gain':>7} {'ECE':>7} "
            f"{'ECE cal':>7} {'cover':>6} {'size':>5}"
        )
        print(header)
        for model in ("single", "ensemble"):
            for seed in seeds:
                row = by_seed[seed][test][model]
                calibrated = row.get("ece_calibrated")
                print(
                    f"  {model:9} {seed:>5} {row['macro_f1']:7.3f} {row['at_0.5']:7.3f} "
                    f"{row['macro_f1'] - row['at_0.5']:+7.3f} {row['ece']:7.3f} "
                    + (f"{calibrated:7.3f}" if calibrated is not None else f"{'-':>7}")
                    + (
                        f" {row['coverage']:6.3f} {row['set_size']:5.1f}"
                        if "coverage" in row
                        else f" {'-':>6} {'-':>5}"
                    )
                )
        for model in ("single", "ensemble"):
            rows = [by_seed[seed][test][model] for seed in seeds]
            print(
                f"  {model:9} {'mean':>5} tuned {_cell([r['macro_f1'] for r in rows])}, "
                f"at 0.5 {_cell([r['at_0.5'] for r in rows])}, "
                f"gain {_cell([r['macro_f1'] - r['at_0.5'] for r in rows])}, "
                f"ECE {_cell([r['ece'] for r in rows])} -> "
                f"{_cell([r.get('ece_calibrated') for r in rows])}, "
                f"coverage {_cell([r.get('coverage') for r in rows])}"
            )
        gains = [
            by_seed[seed][test]["ensemble"]["macro_f1"] - by_seed[seed][test]["single"]["macro_f1"]
            for seed in seeds
        ]
        print(f"  ensemble - single (tuned macro F1): {_cell(gains)} over {len(seeds)} seed(s)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder for the data and runs")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated (default: 0,1,2)")
    parser.add_argument("--samples", type=int, default=3000)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--folds", default="all", help="the cv's folds (default: all 5)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--train-style", default="hpa-like")
    parser.add_argument(
        "--test-style",
        default="widefield" if "widefield" in STYLES else "hpa-like",
        help="the second test set's drawing style (default: widefield where the generator has it)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="60 tiny images, a tiny model: the mechanics only"
    )
    arguments = parser.parse_args(argv)
    if arguments.quick:
        arguments.samples, arguments.image_size, arguments.epochs = 80, 32, 2
        arguments.batch_size = 8
    for style in {arguments.train_style, arguments.test_style} - {"hpa-like"}:
        if style not in STYLES:
            parser.error(f"style {style!r}: the generator has {sorted(STYLES) or ['hpa-like']}")
    seeds = [int(seed) for seed in arguments.seeds.split(",")]
    by_seed = {seed: run_seed(seed, arguments) for seed in seeds}
    print(
        f"{arguments.samples} fields of {arguments.image_size} px per style, {arguments.epochs} "
        f"epochs per model, cv folds {arguments.folds}"
        + (" (--quick: mechanics, not a result)" if arguments.quick else "")
    )
    print_table(by_seed)


if __name__ == "__main__":
    main()
