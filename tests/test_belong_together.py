"""Runs and inputs that do not belong together (issue 23, point 6): refused by one check,
check_runs_and_input, shared by predict (records and images, the Python API) and evaluate,
before any model loads and before anything is written."""

import json
import shutil

import numpy as np
import pytest

from hpa_keras.classes import HPA2021
from hpa_keras.cli import main
from hpa_keras.errors import InputError
from hpa_keras.inference.evaluate import evaluate_runs
from hpa_keras.inference.predict import check_runs_and_input, predict_runs


@pytest.fixture(scope="module")
def mismatched(runs, training_records, tmp_path_factory):
    """2021-scheme records and label file, a 2018 run relabelled as a 2021 run (its
    input.json; the check reads nothing else), thresholds files of other classes."""
    from hpa_keras.data.conversion import ConversionSettings, make_tfrecords
    from hpa_keras.synthetic.generator import DemoDataSettings, make_demo_data

    root = tmp_path_factory.mktemp("mismatched")
    make_demo_data(root / "d", DemoDataSettings(num_samples=8, image_size=32, seed=3,
                   scheme="hpa2021", test_fraction=0.0), workers=1, progress=False)  # fmt: skip
    make_tfrecords(root / "d" / "train", root / "records2021", labels=root / "d" / "train.csv",
                   settings=ConversionSettings(num_folds=2), workers=1,
                   progress=False)  # fmt: skip
    run2021 = root / "run2021"
    shutil.copytree(runs[0], run2021)
    settings = json.loads((run2021 / "input.json").read_text())
    settings.update(scheme="hpa2021", class_names=list(HPA2021.class_names))
    (run2021 / "input.json").write_text(json.dumps(settings))
    (root / "t19.json").write_text(json.dumps({"thresholds": [0.5] * 19}))
    names = [f"class {index}" for index in range(28)]
    (root / "t28.json").write_text(json.dumps({"thresholds": [0.5] * 28, "class_names": names}))
    labels2021 = root / "labels2021.csv"
    ids = sorted(path.name[: -len("_red.png")] for path in
                 (training_records.parent / "data" / "train").glob("*_red.png"))  # fmt: skip
    labels2021.write_text("ID,Label\n" + "".join(f"{sample_id},0\n" for sample_id in ids))
    return {"root": root, "records2021": root / "records2021", "run2021": run2021,
            "labels2021": labels2021}  # fmt: skip


def _cases(runs, training_records, mismatched):
    """(keyword arguments of predict_runs, what the one-line error must say)."""
    images = training_records.parent / "data" / "train"
    root = mismatched["root"]
    return [
        ({"runs": [runs[0]], "data": mismatched["records2021"]},
         r"records2021: records in the hpa2021 scheme \(19 classes\), but .*run0 predicts "
         r"the hpa2018 scheme's 28 classes"),
        ({"runs": [mismatched["run2021"]], "data": training_records},
         r"records: records in the hpa2018 scheme \(28 classes\), but .*run2021 predicts "
         r"the hpa2021 scheme's 19"),
        ({"runs": [runs[0]], "images": images, "ids_file": mismatched["labels2021"]},
         r"labels2021.csv: Ids in the hpa2021 scheme"),
        ({"runs": [runs[0], mismatched["run2021"]], "data": training_records,
          "thresholds": root / "t19.json"},
         r"run2021: predicts the hpa2021 scheme's 19 classes from fields, .*run0 the hpa2018 "
         r"scheme's 28 classes from fields; runs averaged together"),
        ({"runs": [runs[0]], "data": training_records, "thresholds": root / "t19.json"},
         r"t19.json: 19 thresholds, but .*run0 predicts the hpa2018 scheme's 28 classes"),
        ({"runs": [runs[0]], "data": training_records, "thresholds": root / "t28.json"},
         r"t28.json: 28 thresholds of other classes, but .*run0 predicts"),
    ]  # fmt: skip


@pytest.mark.parametrize("case", range(6))
def test_predict_runs_refuses_runs_and_inputs_that_do_not_belong_together(
    runs, training_records, mismatched, case, monkeypatch
):
    import hpa_keras.inference.runs as runs_module

    def no_model(*_):  # the check comes before any model loads
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(runs_module, "load_run", no_model)
    options, message = _cases(runs, training_records, mismatched)[case]
    with pytest.raises(InputError, match=message):
        predict_runs(**options)


def test_evaluate_shares_the_check_for_records_and_label_files(
    runs, training_records, mismatched
):
    with pytest.raises(InputError, match="records in the hpa2021 scheme"):
        evaluate_runs([runs[0]], data=mismatched["records2021"], folds=[0])
    images = training_records.parent / "data" / "train"
    with pytest.raises(InputError, match="labels2021.csv: Ids in the hpa2021 scheme"):
        evaluate_runs([runs[0]], images=images, labels_file=mismatched["labels2021"])


@pytest.mark.parametrize("case", range(6))
def test_cli_predict_refuses_them_in_one_line_and_writes_nothing(
    runs, training_records, mismatched, case, tmp_path, capsys
):
    options, message = _cases(runs, training_records, mismatched)[case]
    argv = ["predict", "--run", *map(str, options["runs"]), "--out", str(tmp_path / "s.csv")]
    for key, flag in (("data", "--data"), ("images", "--images"), ("ids_file", "--ids"),
                      ("thresholds", "--thresholds")):  # fmt: skip
        if key in options:
            argv += [flag, str(options[key])]
    assert main(argv) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("hpa-keras predict: error: ")
    assert __import__("re").search(message, error[0])
    assert list(tmp_path.iterdir()) == []


def test_unlabeled_records_without_an_id_file_say_nothing_of_their_scheme(
    runs, mismatched, tmp_path
):
    manifest = json.loads((mismatched["records2021"] / "manifest.json").read_text())
    unlabeled = tmp_path / "unlabeled"
    shutil.copytree(mismatched["records2021"], unlabeled)
    manifest["labeled"] = False
    for source in manifest["sources"]:
        source["labels"] = None
    (unlabeled / "manifest.json").write_text(json.dumps(manifest))
    assert check_runs_and_input([runs[0]], data=unlabeled)["scheme"] == "hpa2018"
    assert check_runs_and_input([mismatched["run2021"]], data=unlabeled)["kind"] == "fields"
    manifest["labeled"] = True  # the same records, labeled: refused
    (unlabeled / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="records in the hpa2021 scheme"):
        check_runs_and_input([runs[0]], data=unlabeled)


def test_runs_of_one_scheme_pass_and_predict(runs, training_records):
    facts = check_runs_and_input(runs, data=training_records)
    assert facts["scheme"] == "hpa2018" and len(facts["class_names"]) == 28
    ids, probabilities, _ = predict_runs([runs[0]], data=training_records)
    assert probabilities.shape == (len(ids), 28) and np.isfinite(probabilities).all()
