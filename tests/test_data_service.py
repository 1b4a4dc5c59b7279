"""Training input on a tf.data service: a local dispatcher and two workers."""

import hashlib

import numpy as np
import pytest

from hpa_keras.errors import InputError


@pytest.fixture(scope="module")
def service():
    from hpa_keras.data.service import LocalService

    return LocalService(workers=2)


def image_digests(dataset) -> list[str]:
    return sorted(
        hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()
        for images, _ in dataset
        for image in np.asarray(images)
    )


def test_an_epoch_through_the_service_holds_each_training_record_once(training_records, service):
    from hpa_keras.data.pipeline import load_dataset

    common = {
        "folds": [1, 2], "training": True, "repeat": False, "batch_size": 1, "seed": 0,
        "normalization": "none",
    }  # fmt: skip
    local = image_digests(load_dataset(training_records, **common))
    remote = image_digests(load_dataset(training_records, data_service=service.address, **common))
    assert len(local) == 26 and remote == local  # the workers split the files, not copy them


def test_fit_trains_on_the_service(training_records, service, tmp_path):
    from hpa_keras.models import TINY_OPTIONS
    from hpa_keras.training.fit import fit, resolve_config

    config = resolve_config({
        "data": str(training_records), "out": str(tmp_path / "run"), "epochs": 1,
        "batch_size": 8, "model_options": TINY_OPTIONS["gapnet"], "verbose": 0,
        "tensorboard": False, "data_service": service.address,
    })  # fmt: skip
    summary = fit(config)
    assert (tmp_path / "run" / "model.keras").is_file() and summary["epochs"] == 1


def test_a_malformed_service_address_is_named():
    from hpa_keras.data.service import distribute_over

    with pytest.raises(InputError, match="give grpc://HOST:PORT"):
        distribute_over(None, "http://dispatcher:5050")
