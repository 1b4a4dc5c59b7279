"""Evaluation: figures against scikit-learn, the report files, the CLI."""

import json
import re

import cv2
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

from hpa_keras.classes import NUM_CLASSES
from hpa_keras.cli import main
from hpa_keras.data.pipeline import dataset_labels, load_dataset
from hpa_keras.errors import InputError
from hpa_keras.inference.evaluate import evaluate_runs
from hpa_keras.inference.predict import predict_runs
from hpa_keras.reports.html import write_report
from hpa_keras.reports.tables import evaluation_table
from hpa_keras.scoring.calibration import cross_fitted_calibration, expected_calibration_error
from hpa_keras.scoring.conformal import cross_fitted_coverage
from hpa_keras.scoring.evaluation import (
    Evaluation,
    coverage_line,
    f1_threshold_curves,
    micro_f1,
    precision_recall_f1,
    roc_auc_per_class,
    summary_line,
)


def random_case(seed=0, samples=300, classes=NUM_CLASSES):
    """Imbalanced labels with informative, partly tied scores; class 3 absent, class 4 in all."""
    rng = np.random.default_rng(seed)
    rates = np.linspace(0.02, 0.5, classes)
    labels = (rng.random((samples, classes)) < rates).astype(np.float32)
    labels[:, 3] = 0
    labels[:, 4] = 1
    scores = np.clip(0.35 * labels + rng.random((samples, classes)) * 0.7, 0, 1)
    scores = np.round(scores, 2)  # ties, which ROC AUC must average
    thresholds = rng.uniform(0.3, 0.7, classes)
    return labels, scores.astype(np.float32), thresholds


def test_per_class_and_micro_figures_equal_scikit_learn():
    labels, scores, thresholds = random_case()
    predicted = scores >= thresholds
    precision, recall, f1 = precision_recall_f1(labels, predicted)
    options = {"average": None, "zero_division": 0}
    np.testing.assert_allclose(precision, precision_score(labels, predicted, **options))
    np.testing.assert_allclose(recall, recall_score(labels, predicted, **options))
    np.testing.assert_allclose(f1, f1_score(labels, predicted, **options))
    assert micro_f1(labels, predicted) == pytest.approx(
        f1_score(labels, predicted, average="micro", zero_division=0)
    )


def test_roc_auc_equals_scikit_learn_with_ties_and_is_nan_without_both_labels():
    labels, scores, _ = random_case(seed=1)
    areas = roc_auc_per_class(labels, scores)
    assert np.isnan(areas[3]) and np.isnan(areas[4])
    for index in range(NUM_CLASSES):
        if index in (3, 4):
            continue
        assert areas[index] == pytest.approx(roc_auc_score(labels[:, index], scores[:, index]))


def test_evaluation_table_and_summary_equal_scikit_learn():
    labels, scores, thresholds = random_case(seed=2)
    evaluation = Evaluation([f"id{i}" for i in range(len(labels))], labels, scores, thresholds)
    table = evaluation.class_table()
    predicted = scores >= thresholds
    np.testing.assert_array_equal(table["support"], labels.sum(axis=0))
    np.testing.assert_array_equal(table["predicted"], predicted.sum(axis=0))
    np.testing.assert_allclose(
        table["f1"], f1_score(labels, predicted, average=None, zero_division=0)
    )
    summary = evaluation.summary()
    assert summary["macro_f1"] == pytest.approx(
        f1_score(labels, predicted, average="macro", zero_division=0)
    )
    assert summary["macro_f1_at_0.5"] == pytest.approx(
        f1_score(labels, scores >= 0.5, average="macro", zero_division=0)
    )
    present = [k for k in range(NUM_CLASSES) if k not in (3, 4)]
    assert summary["mean_roc_auc"] == pytest.approx(
        roc_auc_score(labels[:, present], scores[:, present], average="macro")
    )
    assert summary["classes_with_auc"] == NUM_CLASSES - 2
    error = expected_calibration_error(labels, scores)
    np.testing.assert_allclose(table["ece"], error.per_class, rtol=1e-6)
    assert summary["ece"] == pytest.approx(error.overall, rel=1e-6)
    assert list(table.columns)[-2:] == ["roc_auc", "ece"]  # the older columns keep their places
    text = evaluation_table(evaluation.class_table(), summary)
    assert f"{summary['macro_f1']:.3f}" in text.splitlines()[-2].split()
    assert text.splitlines()[-1].split()[:2] == ["micro", "F1"]
    assert "n/a" in text.splitlines()[1 + 3]  # class 3 is absent: no ROC AUC
    evaluation.thresholds = np.full(NUM_CLASSES, 0.5)  # a change recomputes the table
    np.testing.assert_allclose(evaluation.class_table()["f1"], table["f1_at_0.5"])


def test_cross_fitted_figures_and_printed_lines_come_from_the_library():
    labels, scores, thresholds = random_case(seed=6, samples=200)
    evaluation = Evaluation([f"id{i}" for i in range(len(labels))], labels, scores, thresholds)
    calibrated = cross_fitted_calibration(labels, scores, folds=5, seed=0)
    np.testing.assert_allclose(evaluation.cross_fitted_probabilities(), calibrated, rtol=1e-6)
    assert evaluation.cross_fitted_ece() == pytest.approx(
        expected_calibration_error(labels, calibrated).overall, rel=1e-6
    )
    measured = cross_fitted_coverage(labels, scores, 0.9, folds=5, seed=0)
    assert evaluation.label_set_coverage().rate == measured.rate
    line = coverage_line(evaluation)
    assert line == (
        f"label sets at 90%: cover {measured.rate:.2f} of images, "
        f"{measured.mean_set_size:.1f} labels on average (cross-fitted on this set)"
    )
    assert summary_line(evaluation).endswith(f"ECE {evaluation.summary()['ece']:.3f}")
    single = Evaluation(["a"], labels[:1], scores[:1], thresholds)
    assert single.cross_fitted_probabilities() is None and np.isnan(single.cross_fitted_ece())
    assert "not measured" in coverage_line(single)


def test_threshold_curves_are_f1_at_each_threshold():
    labels, scores, _ = random_case(seed=3, samples=80)
    grid = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    curves = f1_threshold_curves(labels, scores, grid)
    assert curves.shape == (5, NUM_CLASSES)
    for row, threshold in enumerate(grid):
        np.testing.assert_allclose(
            curves[row], f1_score(labels, scores >= threshold, average=None, zero_division=0)
        )


def test_report_files_and_embedded_plots(tmp_path):
    labels, scores, thresholds = random_case(seed=4)
    evaluation = Evaluation([f"id{i}" for i in range(len(labels))], labels, scores, thresholds)
    history = tmp_path / "history.csv"
    pd.DataFrame(
        {
            "epoch": [0, 1, 2],
            "loss": [0.9, 0.7, 0.6],
            "val_loss": [0.8, 0.75, 0.7],
            "val_macro_f1_tuned": [0.2, 0.3, 0.35],
            "learning_rate": [1e-3, 1e-3, 5e-4],
        }
    ).to_csv(history, index=False)
    written = write_report(evaluation, tmp_path / "report", history=history)
    figures = ("f1_vs_frequency.png", "f1_vs_threshold.png", "reliability.png", "labels.png")
    for name in (*figures, "learning_curves.png"):
        image = cv2.imread(str(written[name]))
        assert image is not None and image.shape[0] > 300 and image.shape[1] > 400, name
    page = written["report.html"].read_text()
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(embedded) == 5
    assert 'src="http' not in page and "<link" not in page  # self-contained
    # The per-class table (a header and a row per class) and the 10 most uncertain images.
    assert page.count("<tr>") == NUM_CLASSES + 1 + 11
    assert "cross-fitted" in page and "stores no calibration" in page
    measured = evaluation.label_set_coverage()
    assert f"cover {measured.rate:.2f} of its images with {measured.mean_set_size:.1f}" in page
    table = pd.read_csv(written["classes.csv"])
    np.testing.assert_allclose(table["f1"], evaluation.class_table()["f1"], atol=1e-6)
    np.testing.assert_allclose(table["ece"], evaluation.class_table()["ece"], atol=1e-6)
    summary = json.loads(written["summary.json"].read_text())
    assert summary["macro_f1"] == pytest.approx(evaluation.summary()["macro_f1"])
    assert summary["ece"] == pytest.approx(evaluation.summary()["ece"])
    cross_fitted = summary["cross_fitted_on_this_set"]
    assert cross_fitted["ece_calibrated"] == pytest.approx(evaluation.cross_fitted_ece())
    assert cross_fitted["label_sets"]["rate"] == evaluation.label_set_coverage().rate
    assert cross_fitted["label_sets"]["promised"] == 0.9
    uncertain = pd.read_csv(written["most_uncertain.csv"], dtype={"labels": str, "predicted": str})
    assert list(uncertain.columns) == ["id", "entropy", "labels", "predicted"]
    assert uncertain["id"].tolist() == evaluation.uncertain_table()["id"].tolist()
    for identifier in uncertain["id"]:
        assert f"<td class='name'>{identifier}</td>" in page
    assert not list((tmp_path / "report").glob("*.tmp*"))


def test_labels_per_image_far_from_training_are_warned_about_in_the_report():
    from hpa_keras.reports.html import report_html

    labels, scores, thresholds = random_case(seed=5)
    plain = Evaluation([f"id{i}" for i in range(len(labels))], labels, scores, thresholds)
    predicted = plain.predicted.sum(axis=1).mean()
    assert plain.summary()["predicted_labels_per_image"] == pytest.approx(predicted)
    assert plain.warnings() == []  # the training data's figure unknown: nothing to compare
    for training, warned in (
        (predicted / 2.2, True),
        (predicted / 1.8, False),
        (predicted * 1.9, False),
        (predicted * 2.1, True),
    ):
        evaluation = Evaluation(
            plain.ids, labels, scores, thresholds,
            details={"training_labels_per_image": training},
        )  # fmt: skip
        page = report_html(evaluation, {}, "report")
        assert (
            f"{predicted:.2f} predicted" in page and f"{training:.2f} in the training data" in page
        )
        if warned:
            (message,) = evaluation.warnings()
            assert message.startswith(f"{predicted:.2f} labels per image predicted, {training:.2f}")
            assert "<b>warning:</b>" in page
        else:
            assert evaluation.warnings() == [] and "warning:" not in page


def test_evaluate_runs_scores_the_validation_fold_by_default(runs, training_records):
    evaluation = evaluate_runs(runs[:1], data=training_records)
    ids, labels = dataset_labels(training_records, [0])
    assert evaluation.ids == ids and evaluation.details["folds"] == [0]
    np.testing.assert_array_equal(evaluation.labels, labels)
    reference = np.concatenate(
        [batch[1].numpy() for batch in load_dataset(training_records, folds=[0], training=False)]
    )
    np.testing.assert_array_equal(evaluation.labels, reference)
    _, probabilities, thresholds = predict_runs(runs[:1], data=training_records, folds=[0])
    np.testing.assert_allclose(evaluation.probabilities, probabilities, atol=1e-6)
    np.testing.assert_allclose(evaluation.thresholds, thresholds)
    everything = evaluate_runs(runs[:1], data=training_records, folds=[0, 1, 2])
    assert len(everything.ids) == 40


def test_evaluate_reads_image_folders_with_a_labels_file(runs, training_records):
    data = training_records.parent / "data"
    from_images = evaluate_runs(runs[:1], images=data / "train", labels_file=data / "train.csv")
    from_records = evaluate_runs(runs[:1], data=training_records, folds=[0, 1, 2])
    order = [from_images.ids.index(sample_id) for sample_id in from_records.ids]
    np.testing.assert_array_equal(from_images.labels[order], from_records.labels)
    np.testing.assert_allclose(
        from_images.probabilities[order], from_records.probabilities, atol=1e-5
    )
    with pytest.raises(InputError, match="--labels"):
        evaluate_runs(runs[:1], images=data / "train")


def test_cli_evaluate_writes_the_report_and_refuses_unlabeled_data(
    runs, training_records, tmp_path, capsys
):
    status = main(
        [
            "evaluate",
            "--run",
            str(runs[0]),
            "--data",
            str(training_records),
            "--out",
            str(tmp_path / "report"),
        ]
    )
    output = capsys.readouterr().out
    assert status == 0
    assert re.search(r"images \(fold 0\): macro F1 \d\.\d{3}.*, ECE \d\.\d{3}\n", output)
    assert re.search(
        r"\nlabel sets at 90%: cover \d\.\d\d of images, \d+\.\d labels on average "
        r"\(cross-fitted on this set\)\n",
        output,
    )
    assert (tmp_path / "report" / "reliability.png").is_file()
    assert (tmp_path / "report" / "most_uncertain.csv").is_file()
    assert (tmp_path / "report" / "report.html").is_file()
    assert (tmp_path / "report" / "learning_curves.png").is_file()
    # Thresholds of 0 mark every class of every image: 28 labels per image, warned on stderr.
    zeros = tmp_path / "zeros.json"
    zeros.write_text(json.dumps({"thresholds": [0.0] * NUM_CLASSES}))
    argv = ["evaluate", "--run", str(runs[0]), "--data", str(training_records)]
    assert main([*argv, "--thresholds", str(zeros), "--out", str(tmp_path / "r0")]) == 0
    printed = capsys.readouterr()
    training = json.loads((runs[0] / "input.json").read_text())["labels_per_image"]
    assert f"warning: 28.00 labels per image predicted, {training:.2f} in the training data" in (
        printed.err
    )
    assert "warning" not in printed.out
    assert "<b>warning:</b> 28.00 labels" in (tmp_path / "r0" / "report.html").read_text()

    from hpa_keras.data.conversion import ConversionSettings, make_tfrecords

    data = training_records.parent / "data"
    unlabeled = tmp_path / "unlabeled"
    make_tfrecords(
        data / "train",
        unlabeled,
        labels=None,
        settings=ConversionSettings(num_shards=1),
        workers=1,
        progress=False,
    )
    status = main(
        ["evaluate", "--run", str(runs[0]), "--data", str(unlabeled), "--out", str(tmp_path / "r2")]
    )
    error = capsys.readouterr().err
    assert status == 2
    assert "unlabeled" in error and "Traceback" not in error


def test_a_run_is_recognised_by_its_records_not_their_path(runs, training_records, tmp_path):
    """Records copied elsewhere are still the run's training data: the default is its
    validation fold, not every fold (which would score training images)."""
    import shutil

    from hpa_keras.data.pipeline import dataset_ids

    copy = tmp_path / "elsewhere"
    shutil.copytree(training_records, copy)
    evaluation = evaluate_runs([runs[0]], data=copy)
    assert evaluation.ids == dataset_ids(copy, folds=[0])
    assert evaluation.summary()["folds"] == [0]
