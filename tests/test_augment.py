import keras
import numpy as np
import pytest

from hpa_keras.inference.tta import (
    DihedralTTA,
    dihedral_view,
    dihedral_views,
    inverse_dihedral_view,
    predict_with_tta,
)
from hpa_keras.models.augmentation import (
    RandomChannelIntensity,
    RandomDihedral,
    make_augmentation,
)


def asymmetric_images(count=1, size=6, channels=2):
    """Images with no symmetry, so the eight dihedral views all differ."""
    base = np.arange(size * size * channels, dtype=np.float32).reshape(size, size, channels)
    return np.stack([base + 1000 * index for index in range(count)])


def test_dihedral_views_are_eight_distinct_transforms_that_invert():
    images = asymmetric_images(count=2)
    views = [keras.ops.convert_to_numpy(view) for view in dihedral_views(images)]
    assert len(views) == 8
    assert len({view.tobytes() for view in views}) == 8
    expected = [np.rot90(images, k, axes=(1, 2)) for k in range(4)]
    np.testing.assert_array_equal(views[0], images)
    np.testing.assert_array_equal(views[2], expected[1])
    np.testing.assert_array_equal(views[5], expected[2][:, :, ::-1])
    for index, view in enumerate(views):
        back = keras.ops.convert_to_numpy(inverse_dihedral_view(view, index))
        np.testing.assert_array_equal(back, images)
    with pytest.raises(ValueError, match="1, 2, 4 or 8"):
        dihedral_views(images, 3)


def test_random_dihedral_draws_all_eight_and_only_those():
    image = asymmetric_images()
    batch = np.repeat(image, 400, axis=0)
    augmented = keras.ops.convert_to_numpy(RandomDihedral(seed=1)(batch, training=True))
    allowed = {
        keras.ops.convert_to_numpy(dihedral_view(image, index))[0].tobytes(): index
        for index in range(8)
    }
    seen = [allowed[sample.tobytes()] for sample in augmented]  # KeyError if not dihedral
    counts = np.bincount(seen, minlength=8)
    assert counts.min() > 20  # each of the eight, roughly 50 times in 400


def test_augmentation_is_off_outside_training():
    images = asymmetric_images(count=3)
    augmentation = make_augmentation(rotation=0.1, zoom=0.2, brightness=0.3, contrast=0.3, seed=0)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(augmentation(images, training=False)), images
    )
    changed = keras.ops.convert_to_numpy(augmentation(images, training=True))
    assert changed.shape == images.shape and not np.array_equal(changed, images)


def test_channel_intensity_is_an_affine_change_per_image_and_channel():
    ones = np.ones((64, 5, 5, 4), np.float32)
    layer = RandomChannelIntensity(brightness=0.2, contrast=0.1, seed=3)
    out = keras.ops.convert_to_numpy(layer(ones, training=True))
    # Constant within a channel of an image, within the bounds, varying between channels.
    np.testing.assert_allclose(out, out[:, :1, :1, :] * np.ones_like(out), rtol=1e-6)
    assert out.min() >= 1 - 0.1 - 0.2 - 1e-6 and out.max() <= 1 + 0.1 + 0.2 + 1e-6
    assert np.std(out[:, 0, 0, :], axis=1).mean() > 0.01
    with pytest.raises(ValueError):
        RandomChannelIntensity(contrast=1.5)


def tiny_model(augmentation=None):
    inputs = keras.Input((6, 6, 2))
    features = augmentation(inputs) if augmentation is not None else inputs
    features = keras.layers.Conv2D(3, 3, padding="same")(features)
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    outputs = keras.layers.Dense(4, activation="sigmoid")(pooled)
    return keras.Model(inputs, outputs)


def test_model_with_augmentation_saves_and_reloads_in_safe_mode(tmp_path):
    model = tiny_model(
        make_augmentation(rotation=0.05, zoom=0.1, brightness=0.1, contrast=0.1, seed=5)
    )
    images = asymmetric_images(count=3) / 100
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(
        reloaded.predict(images, verbose=0), model.predict(images, verbose=0), rtol=1e-6
    )
    names = [layer.__class__.__name__ for layer in reloaded.get_layer("augmentation").layers]
    assert names == ["RandomDihedral", "RandomRotation", "RandomZoom", "RandomChannelIntensity"]
    model.compile(optimizer="adam", loss="binary_crossentropy")
    history = model.fit(images, np.ones((3, 4)), epochs=1, verbose=0)  # augmentation on
    assert np.isfinite(history.history["loss"][0])


def test_tta_mean_and_max_against_a_manual_loop():
    model = tiny_model()
    images = asymmetric_images(count=4) / 100
    per_view = np.stack(
        [
            model.predict(keras.ops.convert_to_numpy(view), verbose=0)
            for view in dihedral_views(images)
        ]
    )
    np.testing.assert_allclose(predict_with_tta(model, images), per_view.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(
        predict_with_tta(model, images, views=4, reduce="max"), per_view[:4].max(axis=0), rtol=1e-6
    )
    np.testing.assert_allclose(
        predict_with_tta(model, images, views=1), model.predict(images, verbose=0), rtol=1e-6
    )
    import tensorflow as tf

    batches = tf.data.Dataset.from_tensor_slices(images.astype("float32")).batch(3)
    np.testing.assert_allclose(
        predict_with_tta(model, batches), per_view.mean(axis=0), rtol=1e-5, atol=1e-7
    )


def test_tta_of_a_uint8_model_equals_numpy_rotations_of_the_pixels():
    """The wrapper takes float views of uint8 images; the model must see the same pixels
    as numpy's own rotations and mirrors of the uint8 array."""
    inputs = keras.Input((6, 6, 2), dtype="uint8")
    scaled = keras.layers.Rescaling(1 / 255)(inputs)
    outputs = keras.layers.Dense(3, activation="sigmoid")(keras.layers.Flatten()(scaled))
    model = keras.Model(inputs, outputs)
    images = np.random.default_rng(1).integers(0, 256, (5, 6, 6, 2), dtype=np.uint8)
    views = []
    for index in range(8):
        view = np.rot90(images, k=index // 2, axes=(1, 2))
        views.append(np.ascontiguousarray(view[:, :, ::-1] if index % 2 else view))
    expected = np.mean([model.predict(view, verbose=0) for view in views], axis=0)
    got = DihedralTTA(model, views=8).predict(images, verbose=0)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="views must be 1, 2, 4 or 8"):
        DihedralTTA(model, views=3)
