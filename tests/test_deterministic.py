"""``fit --deterministic`` (issue 25): the same seed repeats a run exactly, another seed
does not.

Without the switch two runs of one seed differ on this CPU: the training files are
interleaved and decoded in parallel in the order they finish, and the random crops are
drawn in the order the parallel calls happen to run.
"""

import numpy as np
import pandas as pd
import pytest

from hpa_keras.errors import InputError
from hpa_keras.models import TINY_OPTIONS, load_model
from hpa_keras.training.fit import fit, resolve_config


def deterministic_config(training_records, out, seed, **overrides):
    """A tiny GAP-Net run of two epochs on random crops, augmented, with the switch on."""
    settings = {
        "data": str(training_records),
        "out": str(out),
        "epochs": 2,
        "batch_size": 8,
        "crop": 24,
        "seed": seed,
        "deterministic": True,
        "model_options": TINY_OPTIONS["gapnet"],
        "verbose": 0,
        "tensorboard": False,
        **overrides,
    }
    return resolve_config(settings)


@pytest.fixture(scope="module")
def three_runs(training_records, tmp_path_factory):
    """Run folders of seeds 0, 0 and 1."""
    root = tmp_path_factory.mktemp("deterministic")
    folders = []
    for index, seed in enumerate((0, 0, 1)):
        out = root / f"run{index}-seed{seed}"
        fit(deterministic_config(training_records, out, seed))
        folders.append(out)
    return folders


def history(folder):
    return pd.read_csv(folder / "history.csv")


def weights(folder):
    return load_model(folder / "model.keras").get_weights()


def test_the_same_seed_repeats_the_history_and_every_weight(three_runs):
    first, again, _ = three_runs
    pd.testing.assert_frame_equal(history(first), history(again), check_exact=True)
    assert len(history(first)) == 2
    a, b = weights(first), weights(again)
    assert len(a) == len(b)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert (first / "thresholds.json").read_text() == (again / "thresholds.json").read_text()


def test_another_seed_gives_another_run(three_runs):
    first, _, other = three_runs
    assert not np.array_equal(history(first)["loss"], history(other)["loss"])
    assert not all(
        np.array_equal(x, y) for x, y in zip(weights(first), weights(other), strict=True)
    )


def test_the_switch_is_recorded_and_op_determinism_is_put_back(three_runs):
    from tensorflow.python.framework import config as tf_config

    assert "deterministic: true" in (three_runs[0] / "config.yaml").read_text()
    assert not tf_config.is_op_determinism_enabled()


def test_the_opening_line_says_the_run_is_deterministic(training_records, tmp_path):
    from hpa_keras.data.tfrecords import read_manifest
    from hpa_keras.training.fit import opening_line

    manifest = read_manifest(training_records)
    config = deterministic_config(training_records, tmp_path / "run", 3)
    assert "deterministic (seed 3; slower data)" in opening_line(config, manifest)
    config.deterministic = False
    assert "deterministic" not in opening_line(config, manifest)


def test_training_batches_repeat_with_the_seed(training_records):
    """The pipeline alone: two datasets of one seed give the same crops in the same order
    (under op determinism, which fit turns on: the crops draw from a stateful op)."""
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config

    from hpa_keras.data.pipeline import load_dataset

    def batches(seed):
        tf.random.set_seed(seed)
        dataset = load_dataset(
            training_records, folds=[1, 2], batch_size=4, crop=24, seed=seed,
            normalization="none", deterministic=True,
        )  # fmt: skip
        assert dataset.options().deterministic
        return [images for images, _ in dataset.take(6).as_numpy_iterator()]

    tf.config.experimental.enable_op_determinism()
    try:
        first, again, other = batches(0), batches(0), batches(1)
    finally:
        tf_config.disable_op_determinism()
    assert all(np.array_equal(x, y) for x, y in zip(first, again, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(first, other, strict=True))


def test_deterministic_is_refused_with_a_data_service(training_records, tmp_path):
    with pytest.raises(InputError, match="deterministic: not with data_service"):
        deterministic_config(training_records, tmp_path / "run", 0, data_service="grpc://x:1")
