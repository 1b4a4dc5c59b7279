"""Prediction through the OpenVINO engine exported from a run (hpa_keras.inference.engine),
against the Keras model it comes from."""

import json
import shutil

import numpy as np
import pytest

from hpa_keras.cli import main
from hpa_keras.errors import InputError
from hpa_keras.inference import engine as engine_module
from hpa_keras.inference.engine import (
    CHECK_IMAGES,
    CHECK_MARGIN,
    MAX_DIFFERENCE,
    EngineRecord,
    _choose_precision,
    default_engine,
    parse_engine,
)
from hpa_keras.inference.predict import predict_runs

openvino_missing = not engine_module.openvino_available()
needs_openvino = pytest.mark.skipif(openvino_missing, reason="OpenVINO is not installed")


@pytest.fixture
def run_copy(runs, tmp_path):
    """A copy of a tiny trained run, so that its engine folder starts absent."""
    folder = tmp_path / "run"
    shutil.copytree(runs[0], folder)
    return folder


@pytest.fixture(scope="module")
def tiled_run(training_records, tmp_path_factory):
    """A tiny run trained on 16 px crops of the 32 px fields, predicting 2x2 tiles."""
    from hpa_keras.models import TINY_OPTIONS
    from hpa_keras.training.fit import fit, resolve_config

    out = tmp_path_factory.mktemp("tiled") / "run"
    fit(resolve_config({
        "data": str(training_records), "out": str(out), "epochs": 1, "batch_size": 8,
        "crop": 16, "tiles": 2, "model_options": TINY_OPTIONS["gapnet"], "verbose": 0,
        "tensorboard": False,
    }))  # fmt: skip
    return out


@needs_openvino
@pytest.mark.parametrize("views", [1, 2, 8])
def test_float32_engine_predicts_what_keras_does_in_every_view_count(
    run_copy, training_records, views
):
    ids, reference, thresholds = predict_runs(
        [run_copy], data=training_records, tta=views, engine="keras"
    )
    same_ids, engine, _ = predict_runs(
        [run_copy], data=training_records, tta=views, engine="openvino:float32"
    )
    assert same_ids == ids and engine.shape == reference.shape and engine.dtype == np.float32
    np.testing.assert_allclose(engine, reference, atol=1e-5)
    assert np.array_equal(engine >= thresholds, reference >= thresholds)
    record = json.loads((run_copy / "engine" / f"views-{views}" / "engine.json").read_text())
    assert record["precision"] == "float32" and record["views"] == views
    assert record["checked_images"] == min(CHECK_IMAGES, len(ids))  # the first ones


@needs_openvino
def test_tiles_are_exported_as_keras_predicts_them(tiled_run, training_records):
    _, reference, _ = predict_runs([tiled_run], data=training_records, tta=2, engine="keras")
    _, engine, _ = predict_runs(
        [tiled_run], data=training_records, tta=2, engine="openvino:float32"
    )
    np.testing.assert_allclose(engine, reference, atol=1e-5)
    assert json.loads((tiled_run / "engine" / "views-2" / "engine.json").read_text())["tiles"] == 2


@needs_openvino
def test_the_default_precision_stays_within_its_bound_on_every_image(run_copy, training_records):
    """Whatever ``auto`` chose (bfloat16 passes its check on the first images or falls back),
    every image's probabilities stay within the bound of the Keras model's."""
    _, reference, _ = predict_runs([run_copy], data=training_records, engine="keras")
    _, engine, _ = predict_runs([run_copy], data=training_records, engine="openvino")
    record = EngineRecord.read(run_copy / "engine" / "views-1" / "engine.json")
    assert record.precision in ("float32", "bfloat16")
    bound = MAX_DIFFERENCE if record.precision == "bfloat16" else 1e-5
    assert np.abs(engine - reference).max() <= bound
    if record.bfloat16_difference is not None:
        chosen = record.bfloat16_difference <= MAX_DIFFERENCE * CHECK_MARGIN
        assert (record.precision == "bfloat16") == chosen


@needs_openvino
def test_the_engine_is_kept_and_rebuilt_when_the_model_changes(runs, run_copy, training_records):
    predict_runs([run_copy], data=training_records, engine="openvino:float32")
    artifact = run_copy / "engine" / "views-1" / "model.xml"
    record = EngineRecord.read(artifact.with_name("engine.json"))
    made = artifact.stat().st_mtime_ns
    predict_runs([run_copy], data=training_records, engine="openvino:float32")
    assert artifact.stat().st_mtime_ns == made  # kept
    shutil.copy(runs[1] / "model.keras", run_copy / "model.keras")  # another model
    _, reference, _ = predict_runs([run_copy], data=training_records, engine="keras")
    _, engine, _ = predict_runs([run_copy], data=training_records, engine="openvino:float32")
    rebuilt = EngineRecord.read(artifact.with_name("engine.json"))
    assert rebuilt.model_sha256 != record.model_sha256
    np.testing.assert_allclose(engine, reference, atol=1e-5)  # the new model's, not the old


@needs_openvino
def test_a_run_folder_that_cannot_be_written_still_predicts_through_the_engine(
    run_copy, training_records
):
    """The engine cannot be kept in the run folder (here a file stands where its folder
    would go; a read-only folder fails the same way): the process uses its own copy."""
    (run_copy / "engine").write_text("in the way")
    _, reference, _ = predict_runs([run_copy], data=training_records, engine="keras")
    _, engine, _ = predict_runs([run_copy], data=training_records, engine="openvino:float32")
    np.testing.assert_allclose(engine, reference, atol=1e-5)
    assert (run_copy / "engine").read_text() == "in the way"
    said = engine_module.engine_description([run_copy], 1, "openvino:float32")
    assert said == "OpenVINO (float32: asked for float32)"


@needs_openvino
def test_cli_predict_through_the_default_engine_writes_keras_submission(
    run_copy, training_records, tmp_path, monkeypatch, capsys
):
    monkeypatch.delenv("HPA_KERAS_ENGINE", raising=False)  # the default a user gets
    base = ["predict", "--run", str(run_copy), "--data", str(training_records)]
    assert main([*base, "--engine", "keras", "--out", str(tmp_path / "keras.csv")]) == 0
    assert "predicted through Keras\n" in capsys.readouterr().out
    assert main([*base, "--precision", "float32", "--out", str(tmp_path / "engine.csv")]) == 0
    assert "predicted through OpenVINO (float32: asked for float32)" in capsys.readouterr().out
    assert (tmp_path / "engine.csv").read_text() == (tmp_path / "keras.csv").read_text()
    assert (run_copy / "engine" / "views-1" / "model.xml").is_file()  # auto chose OpenVINO


def test_precision_is_chosen_by_the_measured_difference():
    assert _choose_precision("auto", {"float32": 1e-7, "bfloat16": 4e-4})[0] == "bfloat16"
    precision, reason = _choose_precision("auto", {"float32": 1e-7, "bfloat16": 7.5e-3})
    assert precision == "float32" and "7.5e-03" in reason
    # Within the bound but not its margin: auto keeps float32, an explicit request gets it.
    assert _choose_precision("auto", {"float32": 1e-7, "bfloat16": 9.5e-4})[0] == "float32"
    assert _choose_precision("bfloat16", {"float32": 1e-7, "bfloat16": 9.5e-4})[0] == "bfloat16"
    assert _choose_precision("auto", {"float32": 1e-7})[0] == "float32"
    assert _choose_precision("float32", {"float32": 1e-7, "bfloat16": 1e-5})[0] == "float32"
    with pytest.raises(InputError, match="differ from the float32 model's by 7.5e-03"):
        _choose_precision("bfloat16", {"float32": 1e-7, "bfloat16": 7.5e-3})
    with pytest.raises(InputError, match="this CPU has no bfloat16"):
        _choose_precision("bfloat16", {"float32": 1e-7})


def test_engine_names_are_checked_and_the_default_comes_from_the_environment(monkeypatch):
    assert parse_engine("auto") == ("auto", "auto")
    assert parse_engine("openvino:float32") == ("openvino", "float32") or openvino_missing
    with pytest.raises(InputError, match="--engine 'onnx'"):
        parse_engine("onnx")
    with pytest.raises(InputError, match="--precision 'half'"):
        parse_engine("keras:half")
    monkeypatch.setenv("HPA_KERAS_ENGINE", "keras")
    assert default_engine() == "keras" and default_engine("auto") == "auto"
    monkeypatch.delenv("HPA_KERAS_ENGINE")
    assert default_engine() == "auto"
    monkeypatch.setenv("HPA_KERAS_ENGINE", "tensorrt")
    with pytest.raises(InputError, match=r"\$HPA_KERAS_ENGINE='tensorrt': --engine 'tensorrt'"):
        default_engine()


def test_without_openvino_auto_predicts_with_keras_and_openvino_is_refused(
    run_copy, training_records, monkeypatch, capsys
):
    monkeypatch.setattr(engine_module, "openvino_available", lambda: False)
    _, reference, _ = predict_runs([run_copy], data=training_records, engine="keras")
    _, automatic, _ = predict_runs([run_copy], data=training_records, engine="auto")
    np.testing.assert_array_equal(automatic, reference)
    assert not (run_copy / "engine").exists()
    with pytest.raises(InputError, match=r"OpenVINO is not installed; pip install"):
        predict_runs([run_copy], data=training_records, engine="openvino")
    status = main(["predict", "--run", str(run_copy), "--data", str(training_records),
                   "--engine", "keras", "--precision", "bfloat16", "--out", "x.csv"])  # fmt: skip
    assert status != 0 and "--engine keras predicts in float32" in capsys.readouterr().err


@needs_openvino
def test_a_failed_export_falls_back_to_keras_under_auto_and_fails_by_name(
    run_copy, training_records, monkeypatch, capsys
):
    def unconvertible(*arguments, **options):
        raise RuntimeError("Cannot convert operation Foo")

    monkeypatch.setattr(engine_module, "_export", unconvertible)
    _, reference, _ = predict_runs([run_copy], data=training_records, engine="keras")
    _, automatic, _ = predict_runs([run_copy], data=training_records, engine="auto")
    np.testing.assert_array_equal(automatic, reference)
    warned = capsys.readouterr().err
    assert f"{run_copy}: exporting the model to OpenVINO failed (RuntimeError: Cannot" in warned
    said = engine_module.engine_description([run_copy], 1, "auto")
    assert said == "Keras (the OpenVINO export failed)"
    with pytest.raises(RuntimeError, match="Cannot convert operation Foo"):
        predict_runs([run_copy], data=training_records, engine="openvino")


@needs_openvino
def test_the_check_images_span_batches_and_every_batch_is_predicted_once(
    run_copy, training_records, monkeypatch
):
    monkeypatch.setattr(engine_module, "CHECK_IMAGES", 12)  # batches of 8: checked after two
    ids, reference, _ = predict_runs(
        [run_copy], data=training_records, batch_size=8, engine="keras"
    )
    same_ids, engine, _ = predict_runs(
        [run_copy], data=training_records, batch_size=8, engine="openvino:float32"
    )
    assert same_ids == ids and engine.shape == reference.shape
    np.testing.assert_allclose(engine, reference, atol=1e-5)
    record = EngineRecord.read(run_copy / "engine" / "views-1" / "engine.json")
    assert record.checked_images == 12
