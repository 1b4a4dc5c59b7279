"""Shared fixtures: the real HPA files beside the checkout, when they are there."""

import os
from pathlib import Path

import pytest

# The suite predicts with the Keras model, the reference every engine is checked against
# (tests/test_engine.py tests OpenVINO and the default); HPA_KERAS_ENGINE=auto runs the
# whole suite through the default engine instead.
os.environ.setdefault("HPA_KERAS_ENGINE", "keras")

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SHARED_DATA = SHARED / "hpa-kaggle-2018"


@pytest.fixture
def real_train_csv() -> Path:
    """The challenge's full train.csv; tests that need it skip where shared/ is absent."""
    path = SHARED_DATA / "train.csv"
    if not path.is_file():
        pytest.skip("../shared/data/hpa-kaggle-2018/train.csv is not available")
    return path


@pytest.fixture
def real_channel_folder() -> Path:
    """200 real single-channel HPA PNGs with files.csv."""
    path = SHARED_DATA / "channel-samples"
    if not (path / "files.csv").is_file():
        pytest.skip("../shared/data/hpa-kaggle-2018/channel-samples is not available")
    return path


def _shared(relative: str, required: str) -> Path:
    path = SHARED / relative
    if not (path / required).exists():
        pytest.skip(f"../shared/data/{relative} is not available")
    return path


@pytest.fixture
def real_four_channel_folder() -> Path:
    """80 complete real 512 px Kaggle samples: train/ and train.csv."""
    return _shared("hpa-kaggle-2018/four-channel", "train.csv")


@pytest.fixture
def real_v18_folder() -> Path:
    """8 full-size HPA v18 RGB-JPEG samples (images/) and the 74,606-row v18 label list."""
    return _shared("hpa-v18-external", "HPAv18RBGY_wodpl.csv")


@pytest.fixture
def real_2021_folder() -> Path:
    """5 real 2048 px fields of the 2021 challenge, their HPA cell masks, the 2021 labels."""
    return _shared("hpa-2021-single-cell", "train.csv")


def make_training_records(
    root: Path, num_samples: int = 40, num_shards: int = 3, label_balance: float = 0.5
) -> Path:
    """Labeled synthetic samples at 32 px as raw TFRecords in 3 folds, under ``root``.

    The images stay beside them in ``root / "data" / "train"``.
    """
    from hpa_keras.data.conversion import ConversionSettings, make_tfrecords
    from hpa_keras.synthetic.generator import DemoDataSettings, make_demo_data

    make_demo_data(
        root / "data",
        DemoDataSettings(
            num_samples=num_samples, image_size=32, seed=5, test_fraction=0.0,
            label_balance=label_balance,
        ),
        workers=1,
        progress=False,
    )  # fmt: skip
    make_tfrecords(
        root / "data" / "train",
        root / "records",
        labels=root / "data" / "train.csv",
        settings=ConversionSettings(num_folds=3, num_shards=num_shards),
        workers=1,
        progress=False,
    )
    return root / "records"


@pytest.fixture(scope="session")
def training_records(tmp_path_factory) -> Path:
    """40 labeled synthetic samples at 32 px as raw TFRecords in 3 folds (half class-balanced),
    one shard a fold. The images stay beside them in ``records.parent / "data" / "train"``.
    """
    return make_training_records(tmp_path_factory.mktemp("training"))


@pytest.fixture(scope="session")
def runs(training_records, tmp_path_factory):
    """Two tiny one-epoch GAP-Net runs (seeds 0 and 1) on ``training_records``, fold 0."""
    from hpa_keras.models import TINY_OPTIONS
    from hpa_keras.training.fit import fit, resolve_config

    root = tmp_path_factory.mktemp("runs")
    folders = []
    for seed in (0, 1):
        out = root / f"run{seed}"
        settings = {
            "data": str(training_records),
            "out": str(out),
            "epochs": 1,
            "batch_size": 8,
            "seed": seed,
            "model_options": TINY_OPTIONS["gapnet"],
            "verbose": 0,
            "tensorboard": False,
        }
        fit(resolve_config(settings))
        folders.append(out)
    return folders


@pytest.fixture(scope="session")
def cell_records(tmp_path_factory):
    """Cell records (16 px cells, 2 folds) of 20 generated 2021 fields, under
    ``root / "records"``, their fields and masks under ``root / "demo"``."""
    from hpa_keras.data.conversion import ConversionSettings, make_tfrecords
    from hpa_keras.synthetic.generator import DemoDataSettings, make_demo_data

    root = tmp_path_factory.mktemp("bags")
    make_demo_data(
        root / "demo",
        DemoDataSettings(
            num_samples=20, image_size=64, seed=4, cells=True, scheme="hpa2021", test_fraction=0.0
        ),  # fmt: skip
        workers=1,
        progress=False,
    )
    make_tfrecords(
        root / "demo" / "train",
        root / "records",
        labels=root / "demo" / "train.csv",
        settings=ConversionSettings(
            masks=str(root / "demo" / "masks"), cell_size=16, num_folds=2, num_shards=2
        ),  # fmt: skip
        workers=1,
        progress=False,
    )
    return root
