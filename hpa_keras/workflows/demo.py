"""``hpa-keras demo``: the main job on built-in data, from a fresh install.

Seven steps, each announced as it starts, with progress bars or one line per
training epoch:

1. generate a synthetic HPA-like data set in the Kaggle layout (``data/``);
2. draw it (``classes.png``, ``train_samples.png``, ``sample.png``);
3. convert the training and test splits to verified TFRecords (``tfrecords/``);
4. cross-validate GAP-Net (``cv/``): one run per fold (one cosine decay of
   the learning rate each), each fold's images predicted by the run that did
   not train on them, and per-class thresholds tuned on all of those
   out-of-fold predictions;
5. evaluate the fold ensemble (the mean of the fold models) with the
   out-of-fold thresholds on the held-out test split against
   ``test_labels.csv`` (``report/report.html``, plots, per-class CSV), and
   fold 0's run alone with its own thresholds beside it (what one ``fit``
   gives);
6. write the Kaggle submission for the test split (``submission.csv``) and
   the Grad-CAM of one test image (``cam.png``, averaged over the fold models);
7. score the baselines (trained on the training split, tested on the test
   split) and print the model's macro F1 beside them (``results.json``).

Why cross-validation: thresholds tuned on one validation fold (480 images
here) overfit it, and one model is noisier than the mean of several; the
manual's results page (docs/results.md) has the comparison over three seeds.
Why two folds of 36 epochs rather than five: within the demo's budget of
about 10 minutes on a 2-core CPU, epochs per fold matter more than the
number of folds (measured on the demo's own data in the same training time:
docs/results.md, "Why two folds of 36 epochs"); ``--folds all`` trains all
five. ``quick`` (for tests and
a first look) takes a fraction of a minute with a tiny model and two folds.
"""

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hpa_keras.atomic import write_text_atomic
from hpa_keras.classes import CLASS_NAMES, NUM_CLASSES
from hpa_keras.data.conversion import ConversionSettings, make_tfrecords
from hpa_keras.data.images import find_sample_files, read_sample, to_unit_float
from hpa_keras.data.labels import read_labels
from hpa_keras.data.tfrecords import verify_tfrecords
from hpa_keras.inference.cam import write_cam
from hpa_keras.inference.evaluate import evaluate_runs
from hpa_keras.inference.submission import submission_labels, write_submission
from hpa_keras.reports.figures import save_figure
from hpa_keras.reports.html import write_report
from hpa_keras.reports.samples import gallery_figure, write_sample_figure
from hpa_keras.reports.tables import comparison_table
from hpa_keras.runs.documents import read_cv
from hpa_keras.runs.files import CV_FILE
from hpa_keras.runs.folders import fold_folder
from hpa_keras.scoring.evaluation import summary_line
from hpa_keras.synthetic.generator import DemoDataSettings, make_demo_data, render_sample
from hpa_keras.training.baselines import baselines_on_tfrecords
from hpa_keras.training.fit import resolve_config
from hpa_keras.workflows.cv import cross_validate, format_summary


@dataclass(frozen=True)
class DemoPlan:
    """What the demo generates and how long it trains."""

    data: DemoDataSettings = DemoDataSettings(
        num_samples=3000, image_size=128, seed=0, test_fraction=0.2, label_balance=0.5
    )
    epochs: int = 36
    folds: str = "0,1"
    lr: float = 2e-3
    schedule: str = "cosine"
    batch_size: int = 32
    model_options: dict = field(default_factory=dict)
    trees: int = 100
    picture_size: int = 256
    tta: int = 1
    # Set for plans too small to mean anything: said on the report and beside the results.
    smoke_test: str | None = None


DEMO_PLAN = DemoPlan()
ENSEMBLE_NAME = "fold ensemble, out-of-fold thresholds"
SINGLE_NAME = "fold 0 alone, its own thresholds"
SUMMARY_KEYS = ("macro_f1", "macro_f1_at_0.5", "micro_f1", "mean_roc_auc")
QUICK_PLAN = DemoPlan(
    data=DemoDataSettings(
        num_samples=60, image_size=32, seed=0, test_fraction=0.25, label_balance=0.5
    ),
    epochs=2,
    folds="0,1",
    batch_size=8,
    model_options={"width": 4, "depth": 1, "dense_units": 8},
    trees=10,
    picture_size=64,
    tta=2,
    smoke_test=(
        "--quick is a smoke test of the mechanics, not a result: 60 tiny images and a "
        "4-filter model trained briefly, so its figures (and how it compares with the "
        "baselines) measure nothing; run the demo without --quick for a result"
    ),
)


def class_gallery(path: Path, image_size: int = 256, seed: int = 0) -> None:
    """One synthetic sample per class, each carrying only that label."""
    images = [
        render_sample(np.random.default_rng([seed, 0xC1A55, index]), [index], image_size)
        for index in range(NUM_CLASSES)
    ]
    titles = [f"{index} {name}" for index, name in enumerate(CLASS_NAMES)]
    save_figure(gallery_figure(images, titles), path, dpi=90)


def training_gallery(path: Path, data: Path, count: int = 14) -> None:
    """The first ``count`` training samples as written to disk, titled with their labels."""

    table = read_labels(data / "train.csv")
    images, titles = [], []
    for sample_id, labels in list(zip(table.ids, table.labels, strict=True))[:count]:
        images.append(to_unit_float(read_sample(find_sample_files(data, sample_id))))
        titles.append("\n".join(CLASS_NAMES[index] for index in labels))
    save_figure(gallery_figure(images, titles), path, dpi=90)


def _step(number: int, text: str) -> None:
    print(f"[{number}/7] {text}", flush=True)


def run_demo(
    out: str | Path = "hpa-demo",
    workers: int | None = None,
    progress: bool = True,
    plan: DemoPlan = DEMO_PLAN,
) -> dict:
    """Run the seven steps (see the module docstring) into ``out``; returns the results."""
    started = time.monotonic()
    out = Path(out)
    data = out / "data"
    settings = plan.data
    _step(
        1,
        f"Generating {settings.num_samples} synthetic HPA-like samples "
        f"({settings.image_size}x{settings.image_size}) in {data}",
    )
    summary = make_demo_data(data, settings, workers=workers, overwrite=True, progress=progress)
    table = read_labels(data / "train.csv")
    counts = table.class_counts()
    print(
        f"      {summary['num_train']} training and {summary['num_test']} test samples; "
        f"labels per image: {np.mean([len(labels) for labels in table.labels]):.2f} on average"
    )
    common = np.argsort(-counts)[:3]
    print(
        "      most frequent: "
        + ", ".join(f"{CLASS_NAMES[k]} ({counts[k]})" for k in common)
        + f"; rarest: {CLASS_NAMES[int(np.argmin(counts))]} ({counts.min()})"
    )

    _step(2, f"Drawing pictures in {out}")
    class_gallery(out / "classes.png", image_size=plan.picture_size)
    training_gallery(out / "train_samples.png", data)
    first_id = table.ids[0]
    write_sample_figure(data, first_id, out / "sample.png")
    for name, what in (
        ("classes.png", "one sample per class, only that label"),
        ("train_samples.png", "training samples with their labels"),
        ("sample.png", f"sample {first_id}: composite and the four channels"),
    ):
        print(f"      {out / name}: {what}")

    records = convert_to_tfrecords(data, out, workers, progress)
    cv = train_model(records["train"], out / "cv", plan, progress)
    evaluation, single = evaluate_on_test(cv, records["test"], out / "report", plan.smoke_test)
    submission = write_demo_submission(cv, evaluation, data, out)
    baselines = score_demo_baselines(records, plan)
    results = summarize(out, evaluation, single, baselines, started, submission, plan.smoke_test)
    return {"data": data, "summary": summary, "tfrecords": records, "cv": cv, **results}


def convert_to_tfrecords(data: Path, out: Path, workers, progress) -> dict:
    """Train and test splits to verified TFRecords in ``out/tfrecords/{train,test}``.

    The test split is converted with its true labels (``test_labels.csv``, known
    for built-in data) so that it can be evaluated; prediction ignores them.
    """

    _step(3, f"Converting to TFRecords in {out / 'tfrecords'}")
    folders = {}
    for split, labels in (("train", "train.csv"), ("test", "test_labels.csv")):
        folder = out / "tfrecords" / split
        shutil.rmtree(folder, ignore_errors=True)  # the data were just regenerated
        manifest = make_tfrecords(
            data / split,
            folder,
            labels=data / labels,
            settings=ConversionSettings(num_folds=5 if split == "train" else 2),
            workers=workers,
            progress=progress,
        )
        problems = verify_tfrecords(folder, progress=False)
        if problems:
            raise RuntimeError("TFRecords failed verification: " + "; ".join(problems))
        folders[split] = folder
        shards = len(manifest.shards)
        print(
            f"      {split}: {manifest.num_records} records in {shards} "
            f"shard{'s' if shards > 1 else ''}, verified"
        )
        if split == "train":
            print(f"      5 stratified folds of {manifest.summarize_folds()['fold_sizes']} records")
    return folders


def train_model(records: Path, cv: Path, plan: DemoPlan, progress: bool) -> Path:
    """Cross-validate GAP-Net on the training split's folds into ``cv``.

    One cosine decay from 0.002 per fold rather than ReduceLROnPlateau: GAP-Net's early
    validation loss is noisy (BatchNorm at a high rate), so a plateau rule halves the rate
    too early. The manual's results page (docs/results.md) has the comparisons and their
    spread.
    """

    folds = "all folds" if plan.folds == "all" else f"folds {plan.folds}"
    _step(
        4,
        f"Cross-validating GAP-Net in {cv}: {plan.epochs} epochs on each of {folds} "
        "(validation: loss, macro F1 at 0.5 and with tuned thresholds)",
    )
    if (cv / CV_FILE).is_file():
        shutil.rmtree(cv)  # the demo's own earlier cv: its data were just regenerated
    config = resolve_config(
        {
            "data": str(records),
            "model": "gapnet",
            "epochs": plan.epochs,
            "batch_size": plan.batch_size,
            "cache": True,
            "model_options": dict(plan.model_options),
            "lr": plan.lr,
            "schedule": plan.schedule,
            "tta": plan.tta,
            "verbose": 2 if progress else 0,
            "tensorboard": False,
        }
    )
    summary = cross_validate(config, cv, folds=plan.folds)
    print("      " + format_summary(summary).replace("\n", "\n      "))
    return cv


def evaluate_on_test(cv: Path, test_records: Path, report: Path, smoke_test: str | None = None):
    """Score the fold ensemble on the held-out test split and write the HTML report; score
    fold 0's run alone, with its own thresholds, beside it.

    The views are the cv's (``--tta``), the ones its thresholds were tuned with.
    ``smoke_test``: the plan's note that it is too small to mean anything, put in the
    report's title.
    """

    _step(
        5,
        f"Evaluating the fold ensemble on the held-out test split against test_labels.csv "
        f"in {report}",
    )
    evaluation = evaluate_runs([cv], data=test_records)
    first = fold_folder(cv, read_cv(cv).folds[0])
    written = write_report(
        evaluation,
        report,
        history=first / "history.csv",
        title="hpa-keras demo: the GAP-Net fold ensemble on the held-out test split"
        + (" (smoke test of the mechanics, not a result)" if smoke_test else ""),
    )
    print(f"      {ENSEMBLE_NAME}: {summary_line(evaluation, what='test images')}")
    single = evaluate_runs([first], data=test_records)
    print(f"      {SINGLE_NAME}: {summary_line(single, what='test images')}")
    print(f"      {written['report.html']}: the ensemble's report, plots embedded")
    return evaluation, single


def write_demo_submission(cv: Path, evaluation, data: Path, out: Path) -> dict:
    """The Kaggle submission of the test split, and Grad-CAM of a test image with two labels.

    The submission uses the evaluation's predictions (the same models, views,
    thresholds, images and order as ``hpa-keras predict --run CV --data tfrecords/test``).
    """

    _step(6, f"Writing the submission and a class activation map in {out}")
    ids = evaluation.ids
    labels = submission_labels(evaluation.probabilities, evaluation.thresholds)
    write_submission(out / "submission.csv", ids, labels)
    print(
        f"      {out / 'submission.csv'}: {len(ids)} Ids, "
        f"{sum(map(len, labels)) / len(ids):.2f} labels per image (Kaggle format Id,Predicted)"
    )
    truth = read_labels(data / "test_labels.csv")
    chosen = next(
        (sample for sample, target in zip(truth.ids, truth.labels, strict=True) if len(target) > 1),
        truth.ids[0],
    )
    cam = write_cam(cv, data / "test", chosen, out / "cam.png", true_labels=truth.labels_of(chosen))
    named = ", ".join(CLASS_NAMES[index] for index in cam["classes"])
    actual = ", ".join(CLASS_NAMES[index] for index in truth.labels_of(chosen))
    print(f"      {out / 'cam.png'}: Grad-CAM of test image {chosen} for {named} (true: {actual})")
    return {"submission": out / "submission.csv", "cam": out / "cam.png"}


def score_demo_baselines(records: dict, plan: DemoPlan):

    _step(7, "Scoring the baselines (trained on the training split, tested on the test split)")
    return baselines_on_tfrecords(records["train"], test_data=records["test"], trees=plan.trees)


def summarize(
    out: Path, evaluation, single, baselines, started: float, files: dict, smoke_test=None
) -> dict:
    """Print the ensemble and the single run beside the baselines; write ``results.json``
    (``smoke_test``: the plan's note that they mean nothing, printed above them and kept
    in ``results.json``)."""

    summary, alone = evaluation.summary(), single.summary()
    rows = [
        (
            f"GAP-Net, {ENSEMBLE_NAME}",
            summary["macro_f1"],
            summary["macro_f1_at_0.5"],
            summary["micro_f1"],
        ),
        (f"GAP-Net, {SINGLE_NAME}", alone["macro_f1"], alone["macro_f1_at_0.5"], alone["micro_f1"]),
    ] + [
        (f"baseline: {row['baseline']}", row["macro_f1"], row["macro_f1_at_0.5"], row["micro_f1"])
        for row in baselines.sort_values("macro_f1", ascending=False).to_dict("records")
    ]
    if smoke_test:
        print(f"\nSMOKE TEST: {smoke_test}.")
    print(
        f"\nOn the {summary['samples']} held-out test images (macro F1 with the thresholds "
        "tuned on out-of-fold or validation predictions, at 0.5, and micro F1):"
    )
    print("  " + comparison_table(rows).replace("\n", "\n  "))
    seconds = time.monotonic() - started
    results = {
        "test_images": summary["samples"],
        **({"smoke_test": smoke_test} if smoke_test else {}),
        "model": {key: summary[key] for key in SUMMARY_KEYS},
        "single_run": {key: alone[key] for key in SUMMARY_KEYS},
        "baselines": baselines.to_dict(orient="records"),
        "seconds": round(seconds, 1),
    }
    write_text_atomic(out / "results.json", json.dumps(results, indent=2) + "\n")
    print(
        f"\nDone in {seconds / 60:.1f} min. Open {out / 'report' / 'report.html'}; "
        f"the submission is {files['submission']}."
    )
    return {"results": results, "evaluation": evaluation, "baselines": baselines}
