"""The demo end to end with the quick plan: every step's files and the printed comparison."""

import json

import numpy as np
import pandas as pd
import pytest

from hpa_keras.cli import main
from hpa_keras.data.labels import read_labels
from hpa_keras.workflows.demo import ENSEMBLE_NAME, SINGLE_NAME


@pytest.mark.slow
def test_quick_demo_writes_every_result(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--workers", "1", "--quiet"]) == 0
    printed = capsys.readouterr().out
    for step in range(1, 8):
        assert f"[{step}/7]" in printed
    for name in (
        "classes.png",
        "train_samples.png",
        "sample.png",
        "cam.png",
        "report/report.html",
        "report/classes.csv",
        "cv/fold-0/model.keras",
        "cv/fold-1/model.keras",
        "cv/thresholds.json",
        "cv/oof.csv",
        "tfrecords/train/manifest.json",
    ):
        assert (out / name).is_file(), name

    truth = read_labels(out / "data" / "test_labels.csv")
    submission = pd.read_csv(out / "submission.csv", keep_default_na=False)
    assert list(submission.columns) == ["Id", "Predicted"]
    assert sorted(submission["Id"]) == sorted(truth.ids)
    assert all(row.split() for row in submission["Predicted"])  # a label in every row

    results = json.loads((out / "results.json").read_text())
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert results["test_images"] == len(truth) == summary["samples"]
    assert np.isclose(results["model"]["macro_f1"], summary["macro_f1"])
    assert [row["baseline"] for row in results["baselines"]] == [
        "predict nothing",
        "most frequent",
        "logistic regression",
        "random forest",
    ]
    assert results["baselines"][0]["macro_f1"] == 0.0
    assert f"On the {len(truth)} held-out test images" in printed
    # Too small to mean anything, and said so beside the figures, in results.json and the report.
    smoke = printed.index("SMOKE TEST: --quick is a smoke test of the mechanics, not a result")
    assert smoke < printed.index(f"On the {len(truth)} held-out test images")
    assert results["smoke_test"].startswith("--quick is a smoke test of the mechanics")
    page = (out / "report" / "report.html").read_text()
    assert "(smoke test of the mechanics, not a result)</h1>" in page
    assert not (out / "cv" / "fold-2").exists()  # the quick plan trains folds 0 and 1
    for name, key in ((ENSEMBLE_NAME, "model"), (SINGLE_NAME, "single_run")):
        # The comparison table's row (step 5 prints the same name with ROC AUC last).
        model_line = next(line for line in printed.splitlines() if f"GAP-Net, {name}" in line)
        macro, at_half, micro = model_line.split()[-3:]
        assert macro == f"{results[key]['macro_f1']:.3f}"
        assert at_half == f"{results[key]['macro_f1_at_0.5']:.3f}"
        assert micro == f"{results[key]['micro_f1']:.3f}"
    # The report is the ensemble's, judged by the out-of-fold thresholds.
    thresholds = json.loads((out / "cv" / "thresholds.json").read_text())["thresholds"]
    table = pd.read_csv(out / "report" / "classes.csv")
    np.testing.assert_allclose(table["threshold"].to_numpy()[:28], thresholds, atol=1e-6)


@pytest.mark.slow
def test_quick_single_cell_demo_scores_every_submission(tmp_path, capsys):
    import json

    from hpa_keras.cells.submission import read_submission

    out = tmp_path / "single"
    status = main(["demo", "--single-cell", "--quick", "--out", str(out), "--workers", "1",
                   "--quiet"])  # fmt: skip
    assert status == 0
    printed = capsys.readouterr().out
    assert "mAP over cells at IoU 0.6" in printed and "[6/6]" in printed
    results = json.loads((out / "single_cell_results.json").read_text())
    names = set(results["test_map"])
    assert {"cell run", "cell run on segmented cells", "baseline: each cell its field's prediction",
            "baseline: random forest on cell features"} <= names  # fmt: skip
    assert all(0.0 <= value <= 1.0 for value in results["test_map"].values())
    assert set(results["validation_map_by_weight"]) == {"0.0", "0.25", "0.5", "0.75", "1.0"}
    assert 0.0 < results["segmentation"]["recall"] <= 1.0
    # the field-prediction baseline is the mix at W = 1: the same submission scores the same
    if results["mix_weight"] == 1.0:
        mixed = [
            value for name, value in results["test_map"].items() if name.startswith("cell run +")
        ]
        assert mixed == [results["test_map"]["baseline: each cell its field's prediction"]]
    submission = read_submission(out / "submission_cells.csv", 19)
    assert len(submission) == 10  # the quick plan's test fields
