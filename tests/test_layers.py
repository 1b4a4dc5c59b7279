import keras
import numpy as np
import pytest

from hpa_keras.models.layers import ChannelStandardization


def test_channel_standardization_matches_numpy_and_survives_saving(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (3, 5, 5, 2), dtype=np.uint8)
    layer = ChannelStandardization([10.0, 20.0], [2.0, 4.0])
    expected = (images.astype(np.float32) - [10.0, 20.0]) / [2.0, 4.0]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(images)), expected, rtol=1e-6)

    inputs = keras.Input((5, 5, 2), dtype="uint8")
    model = keras.Model(inputs, ChannelStandardization([10.0, 20.0], [2.0, 4.0])(inputs))
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(reloaded.predict(images, verbose=0), expected, rtol=1e-6)


def test_channel_standardization_from_a_manifest_picks_channels():
    manifest = {"channel_mean": [1.0, 2.0, 3.0, 4.0], "channel_std": [5.0, 6.0, 7.0, 0.0]}
    layer = ChannelStandardization.from_manifest(manifest, ["green", "yellow"])
    assert layer.mean == [2.0, 4.0] and layer.std == [6.0, 1e-3]
    with pytest.raises(ValueError, match="positive"):
        ChannelStandardization([0.0], [0.0])
