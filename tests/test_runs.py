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
