"""Run folders: load_run, and the clear errors of every command that reads a run."""

import json
import shutil

import keras
import numpy as np
import pytest

import hpa_keras
from hpa_keras.classes import CHANNELS, CLASS_NAMES
from hpa_keras.cli import main
from hpa_keras.errors import InputError


def test_load_run_returns_the_model_with_its_settings(runs):
    run = hpa_keras.load_run(runs[0])
    assert run.image_size == 32 and run.channels == CHANNELS
    assert run.class_names == CLASS_NAMES and run.num_classes == 28
    document = json.loads((runs[0] / "thresholds.json").read_text())
    np.testing.assert_array_equal(run.thresholds, document["thresholds"])
    assert run.config["model"] == "gapnet" and run.config["fold"] == 0
    images = np.zeros((2, 32, 32, 4), np.uint8)
    probabilities = run.model.predict(images, verbose=0)
    assert probabilities.shape == (2, 28) and np.all((probabilities >= 0) & (probabilities <= 1))


def test_a_run_prints_in_a_few_lines(runs):
    run = hpa_keras.load_run(runs[0])
    text = repr(run)
    assert 2 <= len(text.splitlines()) <= 6
    assert str(runs[0]) in text and "28 hpa2018 classes" in text and "32 px" in text
    assert "array(" not in text and "Functional" not in text  # no model or array dumps


def test_help_of_load_run_documents_it_in_full():
    import pydoc

    text = pydoc.render_doc(hpa_keras.load_run, renderer=pydoc.plaintext)
    for part in ("Args:", "Returns:", "Raises:", "Example:", "cv folder", "out-of-fold",
                 "members", "predict_images"):  # fmt: skip
        assert part in text, part


def copy_run(run, destination):
    shutil.copytree(run, destination)
    return destination


def lambda_model():
    """A model safe mode refuses: a Python lambda inside."""
    inputs = keras.Input((32, 32, 4), dtype="uint8")
    scaled = keras.layers.Lambda(lambda images: keras.ops.cast(images, "float32") / 255)(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(scaled)
    return keras.Model(inputs, keras.layers.Dense(28, activation="sigmoid")(pooled))


def damage(run, how):
    """Break a copied run folder; returns the file the error must name and its reason."""
    model_file = run / "model.keras"
    if how == "lambda":
        model_file.unlink()
        lambda_model().save(model_file)
        return model_file, "Lambda layer"
    if how == "truncated model":
        model_file.write_bytes(model_file.read_bytes()[:2000])
        return model_file, "not a .keras archive"
    if how == "not a model":
        model_file.write_text("hello")
        return model_file, "not a .keras archive"
    if how == "thresholds missing":
        (run / "thresholds.json").unlink()
        return run / "thresholds.json", "no thresholds file"
    if how == "thresholds malformed":
        (run / "thresholds.json").write_text(json.dumps({"thresholds": [1.5] * 28}))
        return run / "thresholds.json", "thresholds must be a list of numbers between 0 and 1"
    if how == "thresholds not json":
        (run / "thresholds.json").write_text('{"thresholds": ')
        return run / "thresholds.json", "not a thresholds file"
    if how == "threshold count":
        (run / "thresholds.json").write_text(json.dumps({"thresholds": [0.5] * 5}))
        return run / "thresholds.json", "5 thresholds for a model with 28 outputs"
    if how == "config":
        (run / "config.yaml").write_text("channels: [unclosed")
        return run / "config.yaml", "not valid YAML"
    raise ValueError(how)


DAMAGES = [
    "lambda",
    "truncated model",
    "not a model",
    "thresholds missing",
    "thresholds malformed",
    "thresholds not json",
    "threshold count",
    "config",
]


@pytest.mark.parametrize("how", DAMAGES)
def test_load_run_names_the_file_and_reason(runs, tmp_path, how):
    run = copy_run(runs[0], tmp_path / "run")
    named, reason = damage(run, how)
    with pytest.raises(InputError) as raised:
        hpa_keras.load_run(run)
    assert str(named) in str(raised.value) and reason in str(raised.value)


@pytest.mark.parametrize("command", ["predict", "evaluate", "cam"])
@pytest.mark.parametrize("how", ["lambda", "truncated model"])
def test_every_command_reading_a_run_refuses_a_bad_model_cleanly(
    runs, training_records, tmp_path, capsys, command, how
):
    run = copy_run(runs[0], tmp_path / "run")
    named, reason = damage(run, how)
    images = training_records.parent / "data" / "train"
    sample = sorted(images.glob("*_red.png"))[0].name.removesuffix("_red.png")
    argv = {
        "predict": [
            "predict",
            "--run",
            str(run),
            "--data",
            str(training_records),
            "--out",
            str(tmp_path / "s.csv"),
        ],
        "evaluate": [
            "evaluate",
            "--run",
            str(run),
            "--data",
            str(training_records),
            "--out",
            str(tmp_path / "report"),
        ],
        "cam": [
            "cam",
            "--run",
            str(run),
            "--images",
            str(images),
            "--id",
            sample,
            "--out",
            str(tmp_path / "cam.png"),
        ],
    }[command]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"hpa-keras {command}: error: {named}: ")
    assert reason in error and "Traceback" not in error
    assert not (tmp_path / "s.csv").exists() and not (tmp_path / "cam.png").exists()


def test_a_model_of_another_package_is_named(runs, tmp_path):
    @keras.saving.register_keras_serializable(package="elsewhere")
    class Doubling(keras.layers.Layer):
        def call(self, images):
            return images * 2

    inputs = keras.Input((4,))
    path = tmp_path / "other.keras"
    keras.Model(inputs, Doubling()(inputs)).save(path)
    registry = keras.saving.get_custom_objects()
    registry.pop("elsewhere>Doubling")
    from hpa_keras.models import load_model

    with pytest.raises(
        InputError, match="custom class 'elsewhere>Doubling'|custom class 'Doubling'"
    ):
        load_model(path)


# ------------------------------------------------------------------ the documents (hpa_keras.runs)


def _thresholds_document():
    from hpa_keras.runs import thresholds_document

    labels = np.array([[1, 0, 1], [0, 1, 1], [1, 1, 0], [0, 0, 1]])
    scores = np.array([[0.9, 0.2, 0.6], [0.1, 0.7, 0.8], [0.6, 0.4, 0.3], [0.2, 0.1, 0.9]])
    fallbacks = [{"index": 1, "cause": "few_positives", "fallback": "global"}]
    return thresholds_document(
        labels, scores, [0.5, 0.3, 0.5], "per_class", 3, ("a", "b", "c"), fallbacks
    )


def _assert_same(first, second):
    """Two documents field by field (arrays compared as arrays)."""
    import dataclasses

    assert type(first) is type(second)
    for spec in dataclasses.fields(first):
        left, right = getattr(first, spec.name), getattr(second, spec.name)
        if isinstance(left, np.ndarray):
            np.testing.assert_array_equal(left, right)
        else:
            assert left == right, spec.name


def test_every_run_document_reads_back_as_written(tmp_path):
    import dataclasses

    from hpa_keras.runs import documents

    document = dataclasses.replace(_thresholds_document(), weights_file="best-epoch003.weights.h5")
    documents.write_thresholds_document(tmp_path, document)
    _assert_same(documents.read_thresholds_document(tmp_path), document)
    written = json.loads((tmp_path / "thresholds.json").read_text())
    assert list(written)[:6] == [  # the order fit has always written
        "strategy", "epoch", "num_validation_samples", "macro_f1_at_0.5", "macro_f1_tuned",
        "thresholds",
    ]  # fmt: skip
    assert "views" not in written and written["fallbacks"][0]["name"] == "b"
    settings = documents.InputSettings(
        data_fingerprint="abc", image_size=64, tta=2, channels=("red", "green"), bit_depth=16,
        class_names=("a", "b"), labels_per_image=1.5,
    )  # fmt: skip
    documents.write_input_settings(tmp_path, settings)
    _assert_same(documents.read_input_settings(tmp_path), settings)
    config = {"model": "gapnet", "lr": 0.001, "channels": ["red", "green"], "fold": 0}
    documents.write_run_config(tmp_path, config)
    assert documents.read_run_config(tmp_path) == config
    cv = documents.CvDocument(settings={"lr": 0.01}, folds=[0, 2], data_fingerprint="abc")
    documents.write_cv(tmp_path, cv)
    _assert_same(documents.read_cv(tmp_path), cv)
    summary = documents.CvSummary(
        folds=[{"fold": 0, "samples": 4}], fold_macro_f1_mean=0.5, oof_macro_f1=0.6,
        oof_macro_f1_at_half=0.4, strategy="per_class", samples=4, views=1,
    )  # fmt: skip
    documents.write_cv_summary(tmp_path, summary)
    _assert_same(documents.read_cv_summary(tmp_path), summary)
    assert "oof_macro_f1_at_0.5" in json.loads((tmp_path / "cv_summary.json").read_text())


def test_a_run_folder_without_input_json_reads_as_the_defaults(tmp_path):
    from hpa_keras.runs import read_input_settings, read_run_config

    settings = read_input_settings(tmp_path)
    assert (settings.kind, settings.tta, settings.tiles, settings.class_names) == (
        "fields", 1, 0, None
    )  # fmt: skip
    assert read_run_config(tmp_path) == {}


@pytest.mark.parametrize(
    ("file", "text", "named"),
    [
        ("thresholds.json", {"strategy": "per_class"}, "no thresholds"),
        ("thresholds.json", {"thresholds": [0.5], "epoch": "3"}, "epoch: expected an integer"),
        ("thresholds.json", {"thresholds": [0.5], "class_names": "a"}, "class_names: expected"),
        ("thresholds.json", {"thresholds": ["x"]}, "thresholds must be a list of numbers"),
        ("thresholds.json", [0.5], "expected a mapping"),
        ("input.json", {"image_size": "64"}, "image_size: expected an integer"),
        ("input.json", {"channels": [1, 2]}, "channels: expected a list of strings"),
        ("cv.yaml", {"settings": {}}, "no folds"),
        ("cv.yaml", {"folds": "0,1"}, "folds: expected a list of integers"),
        ("cv_summary.json", {"folds": [], "samples": 1.5}, "samples: expected an integer"),
    ],
)
def test_a_bad_run_document_names_its_file_and_field(tmp_path, file, text, named):
    from hpa_keras.runs import (
        read_cv,
        read_cv_summary,
        read_input_settings,
        read_thresholds_document,
    )

    (tmp_path / file).write_text(json.dumps(text))  # JSON is YAML too
    reader = {
        "thresholds.json": read_thresholds_document,
        "input.json": read_input_settings,
        "cv.yaml": read_cv,
        "cv_summary.json": read_cv_summary,
    }[file]
    with pytest.raises(InputError) as raised:
        reader(tmp_path)
    assert str(tmp_path / file) in str(raised.value) and named in str(raised.value)


def test_an_old_cv_thresholds_file_still_reads(tmp_path):
    """The cv's thresholds.json of earlier versions: its own schema, written by hand."""
    from hpa_keras.runs import default_views, read_thresholds_document

    old = {
        "strategy": "per_class", "thresholds": [0.4, 0.6], "class_names": ["a", "b"],
        "views": 2, "tiles": 0, "folds": [0, 1], "num_oof_samples": 40, "macro_f1_tuned": 0.5,
        "min_positives": 3, "fallbacks": [],
        "by_strategy": {"per_class": {"thresholds": [0.4, 0.6], "oof_macro_f1": 0.5}},
    }  # fmt: skip
    (tmp_path / "thresholds.json").write_text(json.dumps(old, indent=1))
    (tmp_path / "cv.yaml").write_text("settings: {}\nfolds: [0, 1]\n")
    document = read_thresholds_document(tmp_path)
    np.testing.assert_array_equal(document.thresholds, [0.4, 0.6])
    assert (document.views, document.folds, document.num_oof_samples) == (2, [0, 1], 40)
    assert document.epoch is None and document.by_strategy["per_class"]["oof_macro_f1"] == 0.5
    assert default_views(tmp_path) == 2


def test_an_output_folder_is_claimed_by_one_check(tmp_path):
    from hpa_keras.runs import CvDocument, claim_cv_folder, claim_run_folder, write_cv
    from hpa_keras.runs.documents import write_run_config

    run = tmp_path / "run"
    assert claim_run_folder(run, {"lr": 0.1}, "abc") is False  # free
    run.mkdir()
    assert claim_run_folder(run, {"lr": 0.1}, "abc") is False  # free: empty
    write_run_config(run, {"lr": 0.1, "out": "elsewhere"})
    assert claim_run_folder(run, {"lr": 0.1, "out": "here"}, "abc", ignore=("out",)) is True
    with pytest.raises(InputError, match=r"an interrupted run with other settings \(lr\)"):
        claim_run_folder(run, {"lr": 0.2}, "abc")
    (run / "model.keras").write_text("")
    with pytest.raises(InputError, match=r"holds a finished run \(model.keras\)"):
        claim_run_folder(run, {"lr": 0.1}, "abc")
    cv = tmp_path / "cv"
    document = CvDocument(settings={"lr": 0.1}, folds=[0, 1], data_fingerprint="abc")
    assert claim_cv_folder(cv, document) is False
    cv.mkdir()
    write_cv(cv, document)
    assert claim_cv_folder(cv, document) is True
    with pytest.raises(InputError, match=r"a cv with other settings \(folds\); continue it"):
        claim_cv_folder(cv, CvDocument(settings={"lr": 0.1}, folds=[0], data_fingerprint="abc"))
    with pytest.raises(InputError, match="not empty and not a cv folder"):
        claim_cv_folder(run, document)


def test_fold_predictions_read_back_and_a_bad_file_is_named(tmp_path):
    from hpa_keras.runs.documents import (
        FoldPredictions,
        read_fold_predictions,
        write_fold_predictions,
    )

    assert read_fold_predictions(tmp_path) is None
    probabilities = np.random.default_rng(0).random((3, 28)).astype(np.float32)
    labels = (probabilities > 0.7).astype(np.uint8)
    write_fold_predictions(tmp_path, FoldPredictions(["a", "b", "c"], probabilities, 2, labels))
    back = read_fold_predictions(tmp_path)
    assert back.ids == ["a", "b", "c"] and back.views == 2
    np.testing.assert_array_equal(back.probabilities, probabilities)
    np.testing.assert_array_equal(back.labels, labels)
    assert not any(path.name.startswith(".") for path in tmp_path.iterdir())  # no temp left
    write_fold_predictions(tmp_path, FoldPredictions(["a", "b"], probabilities, 2))
    with pytest.raises(InputError, match=r"oof.npz: \(3, 28\) probabilities for 2 Ids"):
        read_fold_predictions(tmp_path)
    (tmp_path / "oof.npz").write_text("not an npz")
    with pytest.raises(InputError, match="oof.npz: cannot read the fold's predictions"):
        read_fold_predictions(tmp_path)
