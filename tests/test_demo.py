"""The demo end to end with the quick plan: every step's files and the printed comparison."""

import json

import numpy as np
import pandas as pd

from hpa_keras.cli import main
from hpa_keras.data.labels import read_labels


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
        "run/model.keras",
        "run/thresholds.json",
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
    model_line = next(line for line in printed.splitlines() if line.strip().startswith("GAP-Net"))
    macro, at_half, micro = model_line.split()[-3:]
    assert macro == f"{results['model']['macro_f1']:.3f}"
    assert at_half == f"{results['model']['macro_f1_at_0.5']:.3f}"
    assert micro == f"{results['model']['micro_f1']:.3f}"
