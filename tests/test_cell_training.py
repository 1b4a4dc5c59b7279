"""Multiple-instance training on cells: bag pooling, bags of cell records, fit on bags."""

import json

import numpy as np
import pytest

from hpa_keras.errors import InputError


def _pool(mode, probabilities, mask, negative=None, sharpness=5.0):
    from hpa_keras.models.layers import BagPooling

    cells = mask.shape[1]
    layer = BagPooling(cells, mode, sharpness, negative)
    merged = probabilities.reshape(-1, probabilities.shape[-1]).astype("float32")
    return np.asarray(layer([merged, mask.astype("float32")]))


def test_bag_pooling_against_numpy():
    rng = np.random.default_rng(0)
    probabilities = rng.random((3, 5, 4))
    mask = np.array([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]])
    pooled = _pool("max", probabilities, mask)
    for bag in range(3):
        cells = probabilities[bag][mask[bag] == 1]
        np.testing.assert_allclose(pooled[bag], cells.max(axis=0), rtol=1e-6)
        r = 5.0
        lse = np.log(np.mean(np.exp(r * cells), axis=0)) / r
        np.testing.assert_allclose(_pool("lse", probabilities, mask)[bag], lse, rtol=1e-5)
        assert np.all(lse <= cells.max(axis=0) + 1e-6) and np.all(lse >= cells.mean(axis=0) - 1e-6)
    # Negative (class 3 here) is a field's only when all its cells are: the minimum
    pooled = _pool("max", probabilities, mask, negative=3)
    for bag in range(3):
        cells = probabilities[bag][mask[bag] == 1]
        np.testing.assert_allclose(pooled[bag, 3], cells[:, 3].min(), atol=1e-6)  # 1 - (1 - p)
        np.testing.assert_allclose(pooled[bag, :3], cells[:, :3].max(axis=0), rtol=1e-6)


def test_bag_model_saves_and_the_cell_model_inside_shares_its_weights(tmp_path):
    import keras

    import hpa_keras  # noqa: F401 (registers the layers)
    from hpa_keras.models.layers import bag_model

    inputs = keras.Input((8, 8, 4))
    outputs = keras.layers.Dense(3, activation="sigmoid")(keras.layers.Flatten()(inputs))
    cell_model = keras.Model(inputs, outputs)
    bags = bag_model(cell_model, cells=5, mode="lse", sharpness=4.0)
    images = np.random.default_rng(1).random((2, 5, 8, 8, 4)).astype("float32")
    mask = np.ones((2, 5), "float32")
    expected = cell_model.predict(images.reshape(10, 8, 8, 4), verbose=0).reshape(2, 5, 3)
    lse = np.log(np.mean(np.exp(4.0 * expected), axis=1)) / 4.0
    np.testing.assert_allclose(bags.predict([images, mask], verbose=0), lse, rtol=1e-5)
    bags.save(tmp_path / "bags.keras")
    reloaded = keras.saving.load_model(tmp_path / "bags.keras")  # safe mode
    np.testing.assert_allclose(reloaded.predict([images, mask], verbose=0), lse, rtol=1e-5)


def test_bags_are_the_fields_cells_in_order_padded_and_masked(cell_records):
    from hpa_keras.data.bags import load_cell_bags
    from hpa_keras.data.tfrecords import read_manifest, read_shard

    records = cell_records / "records"
    manifest = read_manifest(records)
    expected = []  # (field labels, crops) per field, in evaluation order of fold 0
    for shard in manifest.shards:
        if shard["fold"] != 0:
            continue
        for record in read_shard(records / shard["file"]):
            if not expected or expected[-1][0] != record["cell"]["field_id"]:
                expected.append((record["cell"]["field_id"], record["labels"], []))
            expected[-1][2].append(record["image"])
    bag_size = 8
    found = []
    for (images, mask), labels in load_cell_bags(
        records, folds=[0], training=False, bags_per_batch=3, bag_size=bag_size
    ).as_numpy_iterator():
        for bag_images, bag_mask, bag_labels in zip(images, mask, labels, strict=True):
            count = int(bag_mask.sum())
            assert np.all(bag_mask[:count] == 1) and not bag_mask[count:].any()
            # padding repeats the bag's own cells (BatchNorm sees no black crops)
            order = np.arange(bag_size) % count
            np.testing.assert_array_equal(bag_images, bag_images[:count][order])
            found.append((bag_images[:count], bag_labels))
    position = 0
    for _, labels, crops in expected:
        for start in range(0, len(crops), bag_size):  # large fields: several bags
            bag_images, bag_labels = found[position]
            np.testing.assert_array_equal(bag_images, np.stack(crops[start : start + bag_size]))
            assert np.flatnonzero(bag_labels).tolist() == sorted(labels)
            position += 1
    assert position == len(found)


def test_fit_with_cell_pooling_trains_on_bags_and_saves_the_cell_model(cell_records, tmp_path):
    import keras

    from hpa_keras.training.config import resolve_config
    from hpa_keras.training.fit import fit

    config = resolve_config({
        "data": str(cell_records / "records"), "out": str(tmp_path / "run"), "model": "gapnet",
        "model_options": {"width": 4, "depth": 1, "dense_units": 8}, "epochs": 1,
        "cell_pooling": "max", "bag_size": 16, "bags_per_batch": 2, "verbose": 0,
        "tensorboard": False,
    })  # fmt: skip
    summary = fit(config)
    thresholds = json.loads((tmp_path / "run" / "thresholds.json").read_text())
    assert summary["epochs"] == 1 and len(thresholds["thresholds"]) == 19
    model = keras.saving.load_model(tmp_path / "run" / "model.keras")
    assert model.input_shape == (None, 16, 16, 4) and model.output_shape == (None, 19)
    settings = json.loads((tmp_path / "run" / "input.json").read_text())
    assert settings["kind"] == "cells" and settings["cell_pooling"] == "max"


def test_cell_pooling_refuses_field_records_and_crops(training_records, tmp_path):
    from hpa_keras.training.config import resolve_config
    from hpa_keras.training.fit import fit

    with pytest.raises(InputError, match="multiple-instance training .* needs cell records"):
        fit(resolve_config({"data": str(training_records), "out": str(tmp_path / "r"),
                            "cell_pooling": "lse", "verbose": 0}))  # fmt: skip
    with pytest.raises(InputError, match="cell_pooling max: not with crop"):
        resolve_config({"data": str(training_records), "cell_pooling": "max", "crop": 16})
