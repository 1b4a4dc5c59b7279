"""Grad-CAM: a hand-checkable model, nested backbones, image sizes, the CLI."""

import cv2
import keras
import numpy as np
import pytest

from hpa_keras.cli import main
from hpa_keras.inference.cam import explain_sample, find_feature_layer, grad_cam, write_cam
from hpa_keras.models import TINY_OPTIONS, build_model


def identity_feature_model():
    """Input -> 1x1 conv with weight 1 (the feature map is the image) -> mean -> 2 scores.

    Class 0's score grows with the features (Grad-CAM = the image scaled to a
    maximum of 1), class 1's shrinks (Grad-CAM all zero).
    """
    inputs = keras.Input((8, 8, 1))
    features = keras.layers.Conv2D(1, 1, use_bias=False, name="features")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    outputs = keras.layers.Dense(2, activation="sigmoid", name="scores")(pooled)
    model = keras.Model(inputs, outputs)
    model.get_layer("features").set_weights([np.ones((1, 1, 1, 1), np.float32)])
    model.get_layer("scores").set_weights(
        [np.array([[2.0, -2.0]], np.float32), np.zeros(2, np.float32)]
    )
    return model


def test_grad_cam_of_an_identity_feature_map_is_the_image():
    model = identity_feature_model()
    image = np.random.default_rng(0).random((8, 8, 1)).astype(np.float32)
    assert find_feature_layer(model).name == "features"
    maps = grad_cam(model, image, [0, 1])
    assert maps.shape == (2, 8, 8) and maps.dtype == np.float32
    np.testing.assert_allclose(maps[0], image[..., 0] / image.max(), atol=1e-5)
    np.testing.assert_array_equal(maps[1], 0.0)
    enlarged = grad_cam(model, image, [0], output_size=(20, 12))
    assert enlarged.shape == (1, 20, 12)
    # The layer's own call is back in place afterwards.
    assert "call" not in vars(model.get_layer("features"))


def test_feature_layer_is_found_inside_a_nested_backbone():
    core = build_model("densenet121", input_shape=(32, 32, 4), **TINY_OPTIONS["densenet121"])
    inputs = keras.Input((32, 32, 4))
    outer = keras.Model(inputs, core(inputs))
    layer = find_feature_layer(outer)
    assert layer is not None and len(layer.output.shape) == 4
    assert layer in core.get_layer("backbone").layers
    image = np.random.default_rng(1).random((32, 32, 4)).astype(np.float32)
    maps = grad_cam(outer, image, [0, 5])
    assert maps.shape == (2, 32, 32)
    assert np.all((maps >= 0) & (maps <= 1))


@pytest.fixture
def larger_images(training_records, tmp_path):
    """The first training sample's channels enlarged to 48x40, unlike the 32 px model input."""
    source = training_records.parent / "data" / "train"
    sample_id = sorted(path.name.rsplit("_", 1)[0] for path in source.glob("*_green.png"))[0]
    for channel in ("red", "green", "blue", "yellow"):
        plane = cv2.imread(str(source / f"{sample_id}_{channel}.png"), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(tmp_path / f"{sample_id}_{channel}.png"), cv2.resize(plane, (40, 48)))
    return tmp_path, sample_id


def test_maps_have_the_size_of_the_image(runs, larger_images, tmp_path):
    folder, sample_id = larger_images
    image, classes, maps, probabilities = explain_sample(runs[0], folder, sample_id)
    assert image.shape == (48, 40, 4)
    assert maps.shape == (len(classes), 48, 40)
    assert 1 <= len(classes) <= 4 and probabilities.shape == (28,)
    result = write_cam(runs[0], folder, sample_id, tmp_path / "cam.png", classes=[0, 25])
    assert result["maps"].shape == (2, 48, 40)
    assert cv2.imread(str(tmp_path / "cam.png")) is not None


def test_cli_cam(runs, larger_images, tmp_path, capsys):
    folder, sample_id = larger_images
    out = tmp_path / "out.png"
    status = main(
        [
            "cam",
            "--run",
            str(runs[0]),
            "--images",
            str(folder),
            "--id",
            sample_id,
            "--out",
            str(out),
        ]
    )
    assert status == 0 and out.is_file()
    assert "over the 40x48 image" in capsys.readouterr().out
    labels = tmp_path / "labels.csv"
    labels.write_text(f"Id,Target\n{sample_id},0 25\n")
    status = main(
        [
            "cam",
            "--run",
            str(runs[0]),
            "--images",
            str(folder),
            "--id",
            sample_id,
            "--labels",
            str(labels),
            "--out",
            str(out),
        ]
    )
    assert status == 0 and out.is_file()
    status = main(
        ["cam", "--run", str(runs[0]), "--images", str(folder), "--id", "nope", "--out", str(out)]
    )
    error = capsys.readouterr().err
    assert status == 2 and "nope" in error and "Traceback" not in error
    status = main(
        [
            "cam",
            "--run",
            str(runs[0]),
            "--images",
            str(folder),
            "--id",
            sample_id,
            "--classes",
            "30",
        ]
    )
    assert status == 2 and "out of range" in capsys.readouterr().err
