"""Callbacks, differential learning rates, settings and ``fit`` on tiny synthetic data."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pandas as pd
import pytest

from hpa_keras.errors import InputError
from hpa_keras.models import TINY_OPTIONS, load_model
from hpa_keras.scoring.metrics import macro_f1
from hpa_keras.scoring.thresholds import apply_thresholds
from hpa_keras.training.callbacks import (
    LRFinder,
    ThresholdSearch,
    find_learning_rate,
    read_thresholds,
)
from hpa_keras.training.fit import resolve_config
from hpa_keras.training.optimizers import DifferentialAdam, DifferentialSGD, backbone_multipliers

RUN_FILES = (
    "config.yaml",
    "model.keras",
    "thresholds.json",
    "history.csv",
    "learning_curves.png",
    "input.json",
    "best-epoch001.weights.h5",
)


def tiny_config(training_records, out, **overrides):
    settings = {
        "data": str(training_records),
        "out": str(out),
        "epochs": 1,
        "batch_size": 8,
        "model_options": TINY_OPTIONS["gapnet"],
        "verbose": 0,
        "tensorboard": False,
        **overrides,
    }
    return resolve_config(settings)


def toy_problem(samples=96, seed=0):
    """Two informative features per class: a small dense model learns it in a few epochs."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((samples, 28)) < 0.25).astype("float32")
    features = np.concatenate([labels, labels], axis=1) + rng.normal(0, 0.8, (samples, 56))
    return features.astype("float32"), labels


def toy_model():
    inputs = keras.Input((56,))
    outputs = keras.layers.Dense(28, activation="sigmoid")(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="binary_crossentropy")
    return model


# ------------------------------------------------------------------ callbacks


def test_threshold_search_writes_thresholds_that_reproduce_its_logged_f1(tmp_path):
    keras.utils.set_random_seed(0)
    features, labels = toy_problem()
    model = toy_model()
    search = ThresholdSearch(
        (features, labels), out=tmp_path / "thresholds.json", print_table=False
    )
    history = model.fit(features, labels, epochs=3, batch_size=32, verbose=0, callbacks=[search])
    logged = history.history["val_macro_f1_tuned"]
    document = json.loads((tmp_path / "thresholds.json").read_text())
    assert document["epoch"] == int(np.argmax(logged)) + 1
    assert document["macro_f1_tuned"] == pytest.approx(max(logged))
    # The best epoch is the last one here (the toy problem keeps improving).
    assert document["epoch"] == 3
    scores = model.predict(features, verbose=0)
    thresholds = read_thresholds(tmp_path / "thresholds.json")
    assert macro_f1(labels, apply_thresholds(scores, thresholds)) == pytest.approx(max(logged))
    assert macro_f1(labels, scores >= 0.5) == pytest.approx(history.history["val_macro_f1"][-1])
    assert max(logged) >= history.history["val_macro_f1"][-1]
    # val_loss is the compiled loss on the same predictions.
    expected = keras.ops.convert_to_numpy(keras.losses.binary_crossentropy(labels, scores)).mean()
    assert history.history["val_loss"][-1] == pytest.approx(expected, rel=1e-5)
    assert [entry["name"] for entry in document["classes"]][27] == "Rods & rings"


def test_threshold_search_on_a_tiny_fold_records_the_fallbacks_and_prints_only_if_asked(
    tmp_path, capsys
):
    from hpa_keras.scoring.thresholds import best_thresholds, global_threshold

    keras.utils.set_random_seed(0)
    features, labels = toy_problem(samples=8)  # 8 validation images: most classes have < 3
    model = toy_model()
    search = ThresholdSearch((features, labels), out=tmp_path / "thresholds.json")
    model.fit(features, labels, epochs=1, verbose=0, callbacks=[search])
    assert capsys.readouterr().out == ""  # the 28-row table only when asked
    document = json.loads((tmp_path / "thresholds.json").read_text())
    support = labels.sum(axis=0)
    few = {index for index in range(28) if support[index] < 3}
    assert document["min_positives"] == 3 and few
    scores = model.predict(features, verbose=0)
    # The fallback: the global threshold of the classes that keep their own.
    own, _ = best_thresholds(labels, scores)
    supported = (support >= 3) & (own > scores.min(axis=0))
    shared, _ = global_threshold(labels[:, supported], scores[:, supported])
    for entry in document["fallbacks"]:
        index = entry["index"]
        assert entry["name"] == document["classes"][index]["name"]
        assert document["classes"][index]["fallback"] == entry["fallback"]
        assert document["thresholds"][index] == entry["threshold"]
        expected = shared if entry["fallback"] == "global" else 0.5
        assert entry["threshold"] == pytest.approx(expected, abs=1e-6)
    causes = {entry["index"]: entry["cause"] for entry in document["fallbacks"]}
    assert {index for index, cause in causes.items() if cause == "few_positives"} == few
    kept = [entry for entry in document["classes"] if entry["fallback"] is None]
    lowest = scores.min(axis=0)
    assert all(entry["threshold"] > lowest[entry["index"]] for entry in kept)
    assert "global" in search.last_table.splitlines()[1 + min(few)]
    loud = ThresholdSearch((features, labels), print_table=True)
    loud.set_model(model)
    loud.on_epoch_end(0, {})
    assert "Epoch 1: validation per class" in capsys.readouterr().out


def test_threshold_search_on_a_dataset_equals_arrays(training_records):
    from hpa_keras.data.pipeline import load_dataset

    dataset = load_dataset(training_records, folds=[0], training=False, batch_size=5)
    images = np.concatenate([batch[0].numpy() for batch in dataset])
    labels = np.concatenate([batch[1].numpy() for batch in dataset])
    inputs = keras.Input(images.shape[1:])
    features = keras.layers.GlobalAveragePooling2D()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(28, activation="sigmoid")(features))
    model.compile(loss="binary_crossentropy")
    from_dataset, from_arrays = ThresholdSearch(dataset), ThresholdSearch((images, labels))
    for search in (from_dataset, from_arrays):
        search.set_model(model)
        search.print_table = False
    logs_dataset, logs_arrays = {}, {}
    from_dataset.on_epoch_end(0, logs_dataset)
    from_arrays.on_epoch_end(0, logs_arrays)
    assert logs_dataset == pytest.approx(logs_arrays)


def test_threshold_search_resume_keeps_the_better_recorded_result(tmp_path):
    path = tmp_path / "thresholds.json"
    path.write_text(json.dumps({"macro_f1_tuned": 0.99, "epoch": 4, "thresholds": [0.3] * 28}))
    search = ThresholdSearch(toy_problem(), out=path, resume=True, print_table=False)
    search.set_model(toy_model())
    search.on_epoch_end(5, {})
    assert json.loads(path.read_text())["epoch"] == 4  # an untrained model does not beat 0.99
    assert search.best_epoch == 4


def test_resuming_removes_the_weights_of_an_epoch_killed_before_its_thresholds(tmp_path):
    path = tmp_path / "thresholds.json"
    document = {"macro_f1_tuned": 0.5, "epoch": 1, "thresholds": [0.3] * 28}
    path.write_text(json.dumps({**document, "weights_file": "best-epoch001.weights.h5"}))
    for name in ("best-epoch001.weights.h5", "best-epoch002.weights.h5", "other.h5"):
        (tmp_path / name).write_bytes(b"")
    ThresholdSearch(toy_problem(), out=path, resume=True, weights_folder=tmp_path)
    assert sorted(item.name for item in tmp_path.glob("*.h5")) == [
        "best-epoch001.weights.h5",
        "other.h5",
    ]


def test_lr_finder_grows_the_rate_exponentially_and_restores_weights(tmp_path):
    keras.utils.set_random_seed(1)
    features, labels = toy_problem(samples=320)
    model = toy_model()
    before = [weight.copy() for weight in model.get_weights()]
    dataset = (features, labels)
    import tensorflow as tf

    repeated = tf.data.Dataset.from_tensor_slices(dataset).repeat().batch(8)
    finder = find_learning_rate(model, repeated, min_lr=1e-4, max_lr=10.0, steps=40)
    rates = np.asarray(finder.learning_rates)
    np.testing.assert_allclose(rates[1:] / rates[:-1], (1e5) ** (1 / 39), rtol=1e-6)
    assert rates[0] == pytest.approx(1e-4)
    assert 1e-5 <= finder.suggestion() <= 1.0
    assert min(finder.losses) < finder.losses[0]  # the loss fell somewhere on the way
    for weight, original in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(weight, original)
    from hpa_keras.reports.figures import save_figure

    save_figure(finder.figure(), tmp_path / "lr.png")
    assert (tmp_path / "lr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_lr_finder_rejects_bad_ranges():
    with pytest.raises(ValueError, match="min_lr < max_lr"):
        LRFinder(min_lr=1.0, max_lr=0.1)
    with pytest.raises(ValueError, match="no learning-rate test"):
        LRFinder().suggestion()


# ------------------------------------------------------------------ optimizers


def test_learning_rate_multipliers_scale_the_sgd_step_exactly():
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(2, use_bias=False, name="slow")(inputs)
    outputs = keras.layers.Dense(1, use_bias=False, name="fast")(hidden)
    model = keras.Model(inputs, outputs)
    optimizer = DifferentialSGD(learning_rate=0.1, momentum=0.0, multipliers={"slow/kernel": 0.25})
    model.compile(optimizer=optimizer, loss="mse")
    x = np.array([[1.0, 2.0, -1.0]], dtype="float32")
    y = np.array([[3.0]], dtype="float32")
    slow, fast = (weight.copy() for weight in model.get_weights())
    # Gradients of (x W1 W2 - y)^2 by hand.
    error = (x @ slow @ fast - y)[0, 0]
    slow_gradient = 2 * error * x.T @ fast.T
    fast_gradient = 2 * error * (x @ slow).T
    model.train_on_batch(x, y)
    new_slow, new_fast = model.get_weights()
    np.testing.assert_allclose(new_slow, slow - 0.1 * 0.25 * slow_gradient, rtol=1e-5)
    np.testing.assert_allclose(new_fast, fast - 0.1 * fast_gradient, rtol=1e-5)


def test_backbone_multipliers_cover_exactly_the_backbone():
    from hpa_keras.models import build_model

    model = build_model("resnet50", input_shape=(32, 32, 4), **TINY_OPTIONS["resnet50"])
    multipliers = backbone_multipliers(model, 0.1)
    backbone = model.get_layer("backbone")
    assert set(multipliers) == {weight.path for weight in backbone.weights}
    assert "head_probabilities/kernel" not in multipliers
    gapnet = build_model("gapnet", input_shape=(32, 32, 4), **TINY_OPTIONS["gapnet"])
    assert backbone_multipliers(gapnet, 0.1) == {}
    optimizer = DifferentialAdam(learning_rate=0.01, multipliers=multipliers)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(restored, DifferentialAdam) and restored.multipliers == multipliers


# ------------------------------------------------------------------ settings


def test_settings_flags_over_yaml_over_defaults(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("data: somewhere\nepochs: 7\nlr: 0.01\nmodel_options:\n  width: 8\n")
    config = resolve_config({"lr": 0.002, "fold": None}, path)
    assert (config.epochs, config.lr, config.fold) == (7, 0.002, 0)
    assert config.model_options == {"width": 8} and config.batch_size == 32


def test_settings_of_another_schedule_are_refused_from_a_yaml_file_too(tmp_path):
    from hpa_keras.training.config import TrainingConfig

    path = tmp_path / "cosine.yaml"
    path.write_text("data: somewhere\nschedule: cosine\nplateau_factor: 0.2\n")
    with pytest.raises(InputError, match=r"cosine.yaml: plateau_factor: applies to --schedule "
                       "plateau only, not to cosine"):  # fmt: skip
        resolve_config({}, path)
    with pytest.raises(InputError, match="sgdr_epochs: applies to --schedule sgdr only"):
        TrainingConfig(data="somewhere", sgdr_epochs=3).validate()
    # a resolved config.yaml lists every setting, the other schedules' at their defaults
    path.write_text(yaml_text(TrainingConfig(data="somewhere", schedule="cosine").to_dict()))
    assert resolve_config({}, path).schedule == "cosine"
    with pytest.raises(InputError, match="plateau_patience: applies to"):  # given: refused
        resolve_config({"plateau_patience": 2}, path)


def yaml_text(values: dict) -> str:
    import yaml

    return yaml.safe_dump(values)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("data: x\nepoch: 3\n", "unknown setting 'epoch'"),
        ("data: x\nloss: hinge\n", "loss: 'hinge' is not one of"),
        ("data: x\nlr: -1\n", "lr: must be positive"),
        ("- a list\n", "expected a mapping"),
        ("data: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_settings_name_the_file_and_key(tmp_path, text, message):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        resolve_config({}, path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lr: 1e-3\n", {"lr": 0.001}),  # PyYAML alone reads this as the string '1e-3'
        ("lr: 1E-4\nmin_lr: 5e-7\n", {"lr": 1e-4, "min_lr": 5e-7}),
        ('lr: "0.001"\n', {"lr": 0.001}),
        ("frozen_lr: 2\n", {"frozen_lr": 2.0}),
        ("epochs: '3'\n", {"epochs": 3}),
        ("epochs: 3.0\n", {"epochs": 3}),
        ('tensorboard: "yes"\n', {"tensorboard": True}),
        ("tensorboard: on\n", {"tensorboard": True}),
        ("tensorboard: 1\n", {"tensorboard": True}),
        ("tensorboard: 'Off'\ncache: 'true'\n", {"tensorboard": False, "cache": True}),
        ("tta: '4'\n", {"tta": 4}),
        ("image_size:\nfocal_alpha: 2.5e-1\n", {"image_size": None, "focal_alpha": 0.25}),
        ("validate_source: 2018\n", {"validate_source": "2018"}),
        ("model_options:\n  dropout: 1e-1\n", {"model_options": {"dropout": 0.1}}),
    ],
)
def test_yaml_values_are_brought_to_their_settings_types(tmp_path, text, expected):
    path = tmp_path / "run.yaml"
    path.write_text("data: records\n" + text)
    config = resolve_config({}, path)
    for key, value in expected.items():
        assert getattr(config, key) == value and type(getattr(config, key)) is type(value), key


# A value that cannot be its setting's type: one InputError naming the file, the key and the
# type expected (the file is named "run.yaml" in these tests).
BAD_VALUES = [
    ("lr: ten\n", "run.yaml: lr: expected a number, got 'ten'"),
    ("lr: [0.1, 0.2]\n", "run.yaml: lr: expected a number, got a list"),
    ("lr: .nan\n", "run.yaml: lr: expected a number, got nan"),
    ("epochs: 2.5\n", "run.yaml: epochs: expected an integer, got 2.5"),
    ("epochs: many\n", "run.yaml: epochs: expected an integer, got 'many'"),
    ("epochs:\n", "run.yaml: epochs: expected an integer, got an empty value"),
    ("epochs: true\n", "run.yaml: epochs: expected an integer, got True"),
    ("epochs: -1\n", "run.yaml: epochs: must be positive, got -1"),
    ("image_size: big\n", "run.yaml: image_size: expected an integer or nothing, got 'big'"),
    ("tensorboard: maybe\n", "run.yaml: tensorboard: expected true or false, got 'maybe'"),
    ("tensorboard: 2\n", "run.yaml: tensorboard: expected true or false, got 2"),
    ("cache:\n", "run.yaml: cache: expected true or false, got an empty value"),
    ("loss: [bce]\n", "run.yaml: loss: expected a string, got a list"),
    ("weights: no\n", "run.yaml: weights: expected a string or nothing, got False (YAML reads"),
    ("tta: 3\n", "run.yaml: tta: 3 is not one of 1, 2, 4, 8"),
    ("model_options: 16\n", "run.yaml: model_options: expected a mapping"),
    ("lr: 0.1\nlr: 0.2\n", "run.yaml: not valid YAML at line 3, column 1: key 'lr' given twice"),
    ("model_options:\n\twidth: 8\n", "run.yaml: not valid YAML at line 3, column 1: found "),
    ("data: [\n", "run.yaml: not valid YAML"),
    ("epoch: 3\n", "run.yaml: unknown setting 'epoch' (did you mean epochs?)"),
]


@pytest.mark.parametrize(("text", "message"), BAD_VALUES)
def test_bad_values_name_the_file_the_key_and_the_type(tmp_path, text, message):
    path = tmp_path / "run.yaml"
    path.write_text("data: records\n" + text)
    with pytest.raises(InputError) as error:
        resolve_config({}, path)
    assert str(error.value).startswith(f"{path}: ")
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(("text", "message"), BAD_VALUES[::3] + BAD_VALUES[7:8] + BAD_VALUES[16:18])
def test_cli_fit_refuses_bad_values_of_its_config_file_in_one_line(tmp_path, capsys, text, message):
    from hpa_keras.cli import main

    path, out = tmp_path / "run.yaml", tmp_path / "run"
    path.write_text(f"data: {tmp_path / 'records'}\n" + text)
    assert main(["fit", "--config", str(path), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"hpa-keras fit: error: {path}: ") and error.count("\n") == 1
    assert message in error
    assert not out.exists()


def test_dict_settings_are_coerced_like_a_file_s_and_a_tab_in_cv_yaml_is_named(tmp_path, capsys):
    from hpa_keras.cli import main
    from hpa_keras.cli.common import model_option
    from hpa_keras.models import build_model
    from hpa_keras.runs import read_cv

    config = resolve_config({"data": "records", "lr": "1e-3", "epochs": "4", "cache": "yes"})
    assert (config.lr, config.epochs, config.cache) == (0.001, 4, True)
    with pytest.raises(InputError, match="settings: batch_size: expected an integer, got 'x'"):
        resolve_config({"data": "records", "batch_size": "x"})
    assert model_option("dropout=1e-3") == ("dropout", 0.001)
    with pytest.raises(SystemExit):  # argparse's one line, not PyYAML's traceback
        main(["fit", "--data", "records", "--model-option", "width=[8"])
    assert "--model-option: width: not valid YAML" in capsys.readouterr().err
    # Builder options take the type of the builder's default.
    options = {**TINY_OPTIONS["gapnet"], "width": 8, "dropout": 0.25}
    as_text = {key: str(value) for key, value in options.items()}  # "8", "0.25", ...
    model = build_model("gapnet", (32, 32, 4), **as_text)
    assert model.count_params() == build_model("gapnet", (32, 32, 4), **options).count_params()
    with pytest.raises(InputError, match="model_options of gapnet: width: expected an integer"):
        build_model("gapnet", (32, 32, 4), width="ten")
    (tmp_path / "cv.yaml").write_text("folds: [0, 1]\nsettings:\n\tlr: 0.1\n")
    with pytest.raises(InputError, match=r"cv.yaml: not valid YAML at line 3.*indent with spaces"):
        read_cv(tmp_path)


# ------------------------------------------------------------------ fit


def test_fit_one_epoch_writes_the_run_folder(training_records, tmp_path):
    from hpa_keras.data.pipeline import load_dataset
    from hpa_keras.training.fit import fit

    out = tmp_path / "run"
    summary = fit(tiny_config(training_records, out, tensorboard=True))
    for name in RUN_FILES:
        assert (out / name).is_file(), name
    assert any((out / "logs").rglob("events.out.tfevents.*"))
    assert not (out / "backup").exists()
    history = pd.read_csv(out / "history.csv")
    assert list(history["epoch"]) == [0]
    assert {"loss", "macro_f1", "val_loss", "val_macro_f1", "val_macro_f1_tuned"} <= set(history)
    assert summary["val_macro_f1_tuned"] == pytest.approx(history["val_macro_f1_tuned"][0])
    # The saved model takes uint8 images and, with the saved thresholds, scores what was logged.
    model = load_model(out / "model.keras")
    assert model.input.dtype == "uint8"
    validation = load_dataset(training_records, folds=[0], training=False, normalization="none")
    labels = np.concatenate([batch[1].numpy() for batch in validation])
    scores = model.predict(validation, verbose=0)
    tuned = macro_f1(labels, apply_thresholds(scores, read_thresholds(out)))
    assert tuned == pytest.approx(summary["val_macro_f1_tuned"], abs=1e-6)
    saved = resolve_config({}, out / "config.yaml")
    assert saved.model_options == TINY_OPTIONS["gapnet"] and saved.epochs == 1


def _settings_of_layers(model) -> list:
    """The configs of the layers before the core, those of a Sequential's one by one (its
    input layer's name is numbered by Keras per process)."""
    configs = []
    for layer in model.layers[:-1]:
        inner = getattr(layer, "layers", [layer])
        configs.extend((layer.name, part.get_config()) for part in inner)
    return configs


class _KeepStartingModel(keras.callbacks.Callback):
    """The model ``fit`` trains, as it starts: its layers and initial weights."""

    def on_train_begin(self, logs=None):
        self.layers = [(layer.name, type(layer).__name__) for layer in self.model.layers]
        self.configs = _settings_of_layers(self.model)
        self.weights = [np.array(value) for value in self.model.get_weights()]


def test_fit_trains_the_model_build_task_model_builds_in_a_notebook(training_records, tmp_path):
    from hpa_keras.data.tfrecords import read_manifest
    from hpa_keras.models import build_task_model, task_model_settings
    from hpa_keras.training.fit import fit

    config = tiny_config(training_records, tmp_path / "run", seed=3, rotation=0.1)
    started = _KeepStartingModel()
    fit(config, [started])
    # A notebook: the same settings, from the config and the records' manifest, or spelled
    # out as keywords, and the same seed.
    settings = task_model_settings(config, read_manifest(training_records))
    assert settings["model"] == "gapnet" and settings["input_size"] == 32  # whole fields
    keras.utils.set_random_seed(config.seed)
    model, core = build_task_model(**settings)
    keras.utils.set_random_seed(config.seed)
    spelled_out, _ = build_task_model(
        "gapnet",
        num_classes=28,
        channel_mean=settings["channel_mean"],
        channel_std=settings["channel_std"],
        input_size=32,
        model_options=TINY_OPTIONS["gapnet"],
        rotation=0.1,
        seed=3,
    )
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 4)).astype("uint8")
    for built in (model, spelled_out):
        assert [(layer.name, type(layer).__name__) for layer in built.layers] == started.layers
        assert _settings_of_layers(built) == started.configs
        for value, expected in zip(built.get_weights(), started.weights, strict=True):
            np.testing.assert_array_equal(value, expected)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(spelled_out(images)),
        keras.ops.convert_to_numpy(model(images)),
        rtol=1e-6,
    )
    assert core is model.layers[-1]


class _StopAfterEpoch(keras.callbacks.Callback):
    """Simulates a kill right after an epoch was backed up."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt


class _RecordEpochs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = []
        self.trainable = []

    def on_train_begin(self, logs=None):
        self.trainable.append(len(self.model.trainable_weights))

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


def test_cosine_schedule_decays_from_lr_to_min_lr_over_the_epochs(training_records, tmp_path):
    import math

    from hpa_keras.training.fit import fit

    config = tiny_config(
        training_records, tmp_path / "run", epochs=3, lr=0.01, min_lr=1e-4, schedule="cosine"
    )
    fit(config)
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    alpha = 1e-4 / 0.01  # the rate after epoch e is the cosine at (e + 1) / 3 of the way
    expected = [
        0.01 * ((1 - alpha) * 0.5 * (1 + math.cos(math.pi * (epoch + 1) / 3)) + alpha)
        for epoch in range(3)
    ]
    np.testing.assert_allclose(history["learning_rate"], expected, rtol=1e-4)
    assert history["learning_rate"].iloc[-1] == pytest.approx(1e-4, rel=1e-4)


def test_an_interrupted_fit_resumes_at_the_next_epoch(training_records, tmp_path):
    from hpa_keras.training.fit import fit

    out = tmp_path / "run"
    config = tiny_config(training_records, out, epochs=3)
    with pytest.raises(KeyboardInterrupt):
        fit(config, callbacks=[_StopAfterEpoch(1)])
    assert (out / "backup").is_dir() and not (out / "model.keras").exists()
    # A kill between an epoch's CSV row and its backup leaves that row twice after resuming.
    with open(out / "history.csv", "a") as history_file:
        history_file.write((out / "history.csv").read_text().splitlines()[-1] + "\n")
    recorder = _RecordEpochs()
    fit(tiny_config(training_records, out, epochs=3), callbacks=[recorder])
    assert recorder.epochs == [2]
    history = pd.read_csv(out / "history.csv")
    assert list(history["epoch"]) == [0, 1, 2]
    assert (out / "model.keras").is_file() and not (out / "backup").exists()
    # A finished run is never overwritten; a changed interrupted run is refused.
    with pytest.raises(InputError, match="holds a finished run"):
        fit(tiny_config(training_records, out, epochs=3))


def test_resuming_with_other_settings_is_refused(training_records, tmp_path):
    from hpa_keras.training.fit import fit

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_config(training_records, out, epochs=2), callbacks=[_StopAfterEpoch(0)])
    with pytest.raises(InputError, match=r"other settings \(lr\)"):
        fit(tiny_config(training_records, out, epochs=2, lr=0.01))
    # The same records by another path (moved, or named from another folder) are the same
    # data; records with other contents are not.
    elsewhere = tmp_path / "moved" / "records"
    shutil.copytree(training_records, elsewhere)
    input_file = out / "input.json"
    trained_on = json.loads(input_file.read_text())
    input_file.write_text(json.dumps({**trained_on, "data_fingerprint": "other records"}))
    with pytest.raises(InputError, match=r"other settings \(data\)"):
        fit(tiny_config(elsewhere, out, epochs=2))
    input_file.write_text(json.dumps(trained_on))
    recorder = _RecordEpochs()
    fit(tiny_config(elsewhere, out, epochs=2), callbacks=[recorder])
    assert recorder.epochs == [1]


def test_two_stage_fine_tuning_freezes_then_unfreezes_the_backbone(training_records, tmp_path):
    from hpa_keras.training.fit import fit

    recorder = _RecordEpochs()
    config = tiny_config(
        training_records,
        tmp_path / "run",
        model="resnet50",
        model_options=TINY_OPTIONS["resnet50"],
        frozen_epochs=1,
        backbone_lr_factor=0.1,
    )
    fit(config, callbacks=[recorder])
    frozen, unfrozen = recorder.trainable
    assert frozen < unfrozen
    assert recorder.epochs == [0, 1]
    assert len(pd.read_csv(tmp_path / "run" / "history.csv")) == 2


def test_two_stage_needs_a_backbone(training_records, tmp_path):
    from hpa_keras.training.fit import fit

    with pytest.raises(InputError, match="backbone"):
        fit(tiny_config(training_records, tmp_path / "run", frozen_epochs=1))


def test_mixed_precision_computes_in_bfloat16_on_cpu_and_restores_the_policy(
    training_records, tmp_path
):
    from hpa_keras.training.fit import fit

    fit(tiny_config(training_records, tmp_path / "run", mixed_precision=True))
    assert keras.config.dtype_policy().name == "float32"
    model = load_model(tmp_path / "run" / "model.keras")
    assert model.get_layer("standardization").dtype_policy.name == "mixed_bfloat16"
    assert model.output.dtype == "float32"


def test_mirrored_strategy_on_two_logical_cpus(training_records, tmp_path):
    script = textwrap.dedent(
        """
        import json, sys
        from hpa_keras.tensorflow_setup import import_tensorflow_quietly
        tf = import_tensorflow_quietly()
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from hpa_keras.models import TINY_OPTIONS
        from hpa_keras.training.fit import fit, resolve_config
        config = resolve_config({"data": sys.argv[1], "out": sys.argv[2], "epochs": 1,
            "batch_size": 6, "strategy": "mirrored", "model_options": TINY_OPTIONS["gapnet"],
            "verbose": 0, "tensorboard": False})
        print(json.dumps(fit(config)))
        """
    )
    out = tmp_path / "run"
    # On JAX, "mirrored" is DataParallel over the local devices: two host devices here.
    environment = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    result = subprocess.run(
        [sys.executable, "-c", script, str(training_records), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env=environment,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["replicas"] == 2
    for name in RUN_FILES:
        assert (out / name).is_file(), name


# ------------------------------------------------------------------ command line


def test_cli_fit_writes_a_run_and_the_lr_finder_plot(training_records, tmp_path, capsys):
    from hpa_keras.cli import main

    out = tmp_path / "run"
    common = ["fit", "--data", str(training_records), "--tiny", "--batch-size", "8", "--quiet"]
    assert main([*common, "--epochs", "1", "--out", str(out), "--no-tensorboard"]) == 0
    printed = capsys.readouterr().out
    assert f"{out}: best epoch 1 of 1, validation macro F1" in printed
    for name in RUN_FILES:
        assert (out / name).is_file(), name
    assert not (out / "logs").exists()
    assert main([*common, "--find-lr", "--out", str(tmp_path / "lr")]) == 0
    assert "suggested --lr" in capsys.readouterr().out
    assert (tmp_path / "lr" / "lr_finder.png").is_file()
    # A schedule's rate cannot be set batch by batch: the range test compiles with a constant one.
    argv = [*common, "--find-lr", "--schedule", "cosine", "--out", str(tmp_path / "lr2")]
    assert main(argv) == 0
    assert (tmp_path / "lr2" / "lr_finder.png").is_file()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--schedule", "sgdr", "--plateau-patience", "3"], "applies to --schedule plateau only"),
        (["--model", "gapnet", "--frozen-epochs", "2"], "no pretrained backbone to freeze"),
        (["--fold", "7"], "fold: 7 is not in the data's folds [0, 1, 2]"),
        (["--model-option", "widthless"], None),
    ],
)
def test_cli_fit_rejects_bad_settings_without_a_traceback(
    training_records, tmp_path, capsys, arguments, message
):
    from hpa_keras.cli import main

    out = tmp_path / "run"
    argv = ["fit", "--data", str(training_records), "--out", str(out), *arguments]
    if message is None:  # argparse's own error for a malformed KEY=VALUE
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        assert "expected KEY=VALUE" in capsys.readouterr().err
        return
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error
    assert not (out / "config.yaml").exists()


def test_cli_tiny_follows_the_model_of_the_yaml_file_and_options_merge(training_records, tmp_path):
    from hpa_keras.cli import main

    out = tmp_path / "run"
    settings = tmp_path / "run.yaml"
    settings.write_text(
        f"data: {training_records}\nout: {out}\nmodel: resnet50\nmodel_options:\n  dropout: 0.2\n"
    )
    argv = ["fit", "--config", str(settings), "--tiny", "--model-option", "fourth_channel=mean"]
    assert main([*argv, "--epochs", "1", "--batch-size", "8", "--quiet", "--no-tensorboard"]) == 0
    saved = resolve_config({}, out / "config.yaml")
    assert saved.model == "resnet50"
    assert saved.model_options == {
        **TINY_OPTIONS["resnet50"],
        "dropout": 0.2,
        "fourth_channel": "mean",
    }


def test_a_kill_between_weights_and_thresholds_keeps_a_matching_pair(
    training_records, tmp_path, monkeypatch
):
    """The best epoch's weights are written before the thresholds that name them; killed in
    between, the previous pair stays whole, and the finished run's model scores exactly
    what its thresholds.json says."""
    from hpa_keras.inference.evaluate import evaluate_runs
    from hpa_keras.runs import documents
    from hpa_keras.training import callbacks
    from hpa_keras.training.fit import fit

    out = tmp_path / "run"
    original = documents.write_text_atomic
    calls = {"count": 0}

    def dies_on_the_second_thresholds_file(path, text):
        if str(path).endswith("thresholds.json"):
            calls["count"] += 1
            if calls["count"] == 2:
                raise KeyboardInterrupt  # after epoch 2's weights, before its thresholds
        return original(path, text)

    monkeypatch.setattr(documents, "write_text_atomic", dies_on_the_second_thresholds_file)
    config = tiny_config(training_records, out, epochs=4, lr=0.01, threshold_strategy="global")
    # Epoch 2 has to be a new best for the kill to happen: a steadily growing constant makes
    # every epoch better than the last (and small, so the resumed run's real ones beat it).
    scores = iter([0.01, 0.02, 0.03, 0.04, 0.05, 0.06])
    monkeypatch.setattr(callbacks, "thresholds_document", _growing(callbacks, scores))
    with pytest.raises(KeyboardInterrupt):
        fit(config)
    document = json.loads((out / "thresholds.json").read_text())
    assert document["epoch"] == 1 and (out / document["weights_file"]).is_file()
    monkeypatch.setattr(documents, "write_text_atomic", original)
    monkeypatch.undo()
    fit(config)  # resumes and finishes
    document = json.loads((out / "thresholds.json").read_text())
    assert (out / document["weights_file"]).is_file()
    assert len(list(out.glob("best-epoch*.weights.h5"))) == 1
    evaluation = evaluate_runs([out], data=training_records)
    assert evaluation.summary()["macro_f1"] == pytest.approx(document["macro_f1_tuned"], abs=1e-9)


def _growing(callbacks, scores):
    original = callbacks.thresholds_document

    def document(*arguments, **options):
        result = original(*arguments, **options)
        if result.epoch is not None:
            result.macro_f1_tuned = next(scores)
        return result

    return document


def test_stochastic_weight_averaging_is_the_mean_and_recomputes_batchnorm(tmp_path):
    """The running mean equals the plain mean of each epoch's weights, survives a restart
    through its state file, and BatchNorm's statistics become those of the data."""
    import tensorflow as tf

    from hpa_keras.training.callbacks import StochasticWeightAveraging

    inputs = keras.Input((3,))
    normalized = keras.layers.BatchNormalization()(keras.layers.Dense(4)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2)(normalized))
    state = tmp_path / "swa.npz"
    swa = StochasticWeightAveraging(start_epoch=1, state_file=state)
    swa.set_model(model)
    snapshots = []
    for epoch in range(4):
        model.set_weights([np.full_like(w, epoch + 1.0) for w in model.get_weights()])
        if epoch >= 1:
            snapshots.append(model.get_weights())
        if epoch == 2:  # a restart: a new callback continues from the state file
            swa = StochasticWeightAveraging(start_epoch=1, state_file=state)
            swa.set_model(model)
            swa.on_epoch_end(1)  # already counted: ignored
        swa.on_epoch_end(epoch)
    assert swa.count == 3
    rng = np.random.default_rng(0)
    data = rng.normal(2.0, 3.0, (64, 3)).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices((data, np.zeros((64, 2), "float32"))).batch(16)
    swa.apply(model, dataset, steps=4)
    expected = [np.mean([snapshot[k] for snapshot in snapshots], axis=0) for k in range(4)]
    dense = model.layers[1].get_weights()
    np.testing.assert_allclose(dense[0], expected[0], rtol=1e-6)  # kernel: the mean, 3.0
    layer = model.layers[2]
    features = data @ dense[0] + dense[1]
    batch_means = features.reshape(4, 16, 4).mean(axis=1)
    np.testing.assert_allclose(np.asarray(layer.moving_mean), batch_means.mean(axis=0), rtol=1e-4)


@pytest.mark.parametrize(
    "overrides",
    [
        {"loss": "lovasz"},
        {"loss": "focal_lovasz", "lovasz_weight": 0.5},
        pytest.param(
            {"ema": True, "epochs": 2},
            marks=pytest.mark.skipif(
                os.environ.get("KERAS_BACKEND") == "jax", reason="ema is refused on JAX"
            ),
        ),
        {"swa_epochs": 2, "epochs": 3},
    ],
    ids=["lovasz", "focal_lovasz", "ema", "swa"],
)
def test_winners_losses_and_averaging_train_and_match_their_thresholds(
    training_records, tmp_path, overrides
):
    from hpa_keras.inference.evaluate import evaluate_runs
    from hpa_keras.training.fit import fit

    out = tmp_path / "run"
    summary = fit(tiny_config(training_records, out, **overrides))
    assert np.isfinite(summary["val_macro_f1_tuned"])
    document = json.loads((out / "thresholds.json").read_text())
    if "swa_epochs" in overrides:
        assert document["weights"] == "mean of epochs 2-3" and document["epoch"] == 3
        assert document["weights_file"].startswith("swa-") and not (out / "swa-state.npz").exists()
    evaluation = evaluate_runs([out], data=training_records)
    assert evaluation.summary()["macro_f1"] == pytest.approx(document["macro_f1_tuned"], abs=1e-9)
    reloaded = load_model(out / "model.keras", compile=True)
    assert type(reloaded.loss).__name__ == {
        "lovasz": "LovaszHingeLoss", "focal_lovasz": "FocalLovaszLoss"
    }.get(overrides.get("loss"), "WeightedBinaryCrossentropy")  # fmt: skip


def test_ema_is_refused_on_jax_with_the_reason(training_records, tmp_path):
    from hpa_keras.distributed import backend
    from hpa_keras.training.fit import fit

    if backend() != "jax":
        pytest.skip("the refusal is JAX's; TensorFlow trains with ema (test above)")
    with pytest.raises(InputError, match="SwapEMAWeights.*JAX.*swa_epochs"):
        fit(tiny_config(training_records, tmp_path / "run", ema=True))
    assert not (tmp_path / "run").exists()


class _CrashAt(keras.callbacks.Callback):
    """A failure no check foresaw, in the first batch or at the end of an epoch."""

    def __init__(self, epoch=None):
        super().__init__()
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch is None:
            raise RuntimeError("crashed in the first batch")

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError(f"crashed after epoch {epoch}")


@pytest.mark.parametrize("existed", [False, True])
def test_a_crash_before_any_epoch_leaves_no_run_folder(training_records, tmp_path, existed):
    from hpa_keras.training.fit import fit

    out = tmp_path / "run"
    if existed:
        out.mkdir()  # an empty folder the user gave stays, empty
    with pytest.raises(RuntimeError, match="first batch"):
        fit(tiny_config(training_records, out), callbacks=[_CrashAt()])
    assert out.exists() == existed
    assert not existed or not any(out.iterdir())
    fit(tiny_config(training_records, out))  # a rerun starts cleanly
    assert (out / "model.keras").is_file()


def test_a_crash_after_an_epoch_keeps_a_resumable_run_and_says_so(training_records, tmp_path):
    from hpa_keras.training.fit import fit

    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="after epoch 0") as raised:
        fit(tiny_config(training_records, out, epochs=2), callbacks=[_CrashAt(epoch=0)])
    assert raised.value.__notes__ == [
        f"{out}: the finished epochs are kept; run the same command again to resume"
    ]
    recorder = _RecordEpochs()
    fit(tiny_config(training_records, out, epochs=2), callbacks=[recorder])
    assert recorder.epochs == [1] and (out / "model.keras").is_file()


def test_tensorboard_missing_is_refused_before_anything_is_written(
    training_records, tmp_path, monkeypatch
):
    """pip install of the package once lacked tensorboard: fit died after an epoch."""
    import importlib.util

    from hpa_keras.training.fit import fit

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *rest: None if name == "tensorboard" else real_find_spec(name, *rest),
    )
    with pytest.raises(InputError, match="tensorboard package .* --no-tensorboard"):
        fit(tiny_config(training_records, tmp_path / "run", tensorboard=True))
    assert not (tmp_path / "run").exists()
