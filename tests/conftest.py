"""Shared fixtures: the real HPA files beside the checkout, when they are there."""

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "hpa-kaggle-2018"


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
