import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

from hpa_keras.classes import CHANNELS, resolve_channels
from hpa_keras.data.conversion import ConversionSettings, make_tfrecords
from hpa_keras.data.pipeline import dataset_ids, load_dataset
from hpa_keras.data.tfrecords import read_manifest, read_shard
from hpa_keras.errors import InputError
from hpa_keras.synthetic.generator import DemoDataSettings, make_demo_data


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """22 synthetic samples at 32 px as raw and png records (3 folds), and 5 unlabeled."""
    root = tmp_path_factory.mktemp("pipeline")
    data = root / "data"
    make_demo_data(
        data,
        DemoDataSettings(num_samples=27, image_size=32, seed=2, test_fraction=0.19),
        workers=1,
        progress=False,
    )
    folders = {}
    for encoding in ("raw", "png"):
        folders[encoding] = root / encoding
        make_tfrecords(
            data / "train",
            folders[encoding],
            labels=data / "train.csv",
            settings=ConversionSettings(encoding=encoding, num_folds=3, num_shards=6),
            workers=1,
            progress=False,
        )
    folders["test"] = root / "test"
    make_tfrecords(
        data / "test",
        folders["test"],
        labels=data / "sample_submission.csv",
        settings=ConversionSettings(num_shards=2),
        workers=1,
        progress=False,
    )
    return folders


def stored_records(folder, folds=None):
    manifest = read_manifest(folder)
    return [
        record
        for shard in manifest.shards
        if folds is None or shard["fold"] in folds
        for record in read_shard(folder / shard["file"])
    ]


def collect(dataset):
    images, targets = [], []
    for batch_images, batch_targets in dataset:
        images.append(batch_images.numpy())
        targets.append(batch_targets.numpy())
    return np.concatenate(images), np.concatenate(targets)


@pytest.mark.parametrize("encoding", ["raw", "png"])
@pytest.mark.parametrize(
    ("channels", "count"), [("rgby", 4), ("rgb", 3), ("g", 1), (["yellow", "red"], 2)]
)
def test_shapes_and_dtypes_per_channel_mode(records, encoding, channels, count):
    dataset = load_dataset(
        records[encoding], training=True, batch_size=4, channels=channels, seed=0
    )
    images, labels = next(iter(dataset))
    assert images.shape == (4, 32, 32, count) and images.dtype == tf.float32
    assert labels.shape == (4, 28) and labels.dtype == tf.float32
    assert set(np.unique(labels.numpy())) <= {0.0, 1.0}
    assert labels.numpy().sum(axis=1).min() >= 1  # every training sample has a label


@pytest.mark.parametrize("encoding", ["raw", "png"])
def test_evaluation_order_holds_every_sample_once_with_exact_pixels(records, encoding):
    folder = records[encoding]
    expected = stored_records(folder, folds=[0, 2])
    dataset = load_dataset(folder, folds=[0, 2], training=False, batch_size=5, normalization="none")
    images, labels = collect(dataset)
    assert len(images) == len(expected)  # the last, partial batch is kept
    assert dataset_ids(folder, folds=[0, 2]) == [record["id"] for record in expected]
    for image, label, record in zip(images, labels, expected, strict=True):
        np.testing.assert_array_equal(image, record["image"].astype(np.float32))
        assert np.flatnonzero(label).tolist() == record["labels"]
    again, _ = collect(
        load_dataset(folder, folds=[0, 2], training=False, batch_size=3, normalization="none")
    )
    np.testing.assert_array_equal(again, images)


def test_channel_selection_picks_the_named_channels(records):
    expected = stored_records(records["png"])
    images, _ = collect(
        load_dataset(
            records["png"],
            training=False,
            batch_size=8,
            channels=["yellow", "green"],
            normalization="none",
        )
    )
    order = [CHANNELS.index("yellow"), CHANNELS.index("green")]
    np.testing.assert_array_equal(images[0], expected[0]["image"][..., order])


def test_normalization_matches_the_manifest(records):
    manifest = read_manifest(records["raw"])
    raw, _ = collect(load_dataset(records["raw"], training=False, normalization="none"))
    assert raw.dtype == np.uint8  # "none": the stored pixels, for on-device standardization
    normalized, _ = collect(load_dataset(records["raw"], training=False))
    assert normalized.dtype == np.float32
    mean, std = np.array(manifest.channel_mean), np.array(manifest.channel_std)
    np.testing.assert_allclose(normalized, (raw - mean) / std, rtol=1e-5, atol=1e-5)
    # The statistics describe these very records: mean 0, std 1 per channel.
    np.testing.assert_allclose(normalized.mean(axis=(0, 1, 2)), 0, atol=1e-3)
    np.testing.assert_allclose(normalized.std(axis=(0, 1, 2)), 1, atol=1e-3)
    unit, _ = collect(load_dataset(records["raw"], training=False, normalization="unit"))
    np.testing.assert_allclose(unit, raw / 255, rtol=1e-6)
    # The same standardization on the device, from the uint8 pixels.
    from hpa_keras.models.layers import ChannelStandardization

    layer = ChannelStandardization.from_manifest(manifest)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer(raw)), normalized, rtol=1e-5, atol=1e-5
    )


def test_resizing_to_another_size(records):
    raw, _ = collect(load_dataset(records["raw"], training=False, normalization="none"))
    small, _ = collect(
        load_dataset(records["raw"], training=False, image_size=16, normalization="none")
    )
    assert small.shape[1:] == (16, 16, 4) and small.dtype == np.uint8
    # The converter's resize (OpenCV area averaging), not TensorFlow's: the same pixels
    # whichever way a model's input is made.
    reference = np.stack(
        [cv2.resize(image, (16, 16), interpolation=cv2.INTER_AREA) for image in raw]
    )
    np.testing.assert_array_equal(small, reference)
    unit, _ = collect(
        load_dataset(records["raw"], training=False, image_size=16, normalization="unit")
    )
    np.testing.assert_allclose(unit, reference / 255, atol=1e-6)


def test_training_batches_are_full_shuffled_and_repeat(records):
    fold_ids = {record["id"] for record in stored_records(records["raw"], folds=[1])}
    dataset = load_dataset(records["raw"], folds=1, training=True, batch_size=3, seed=1)
    batches = list(dataset.take(10))
    assert all(images.shape[0] == 3 for images, _ in batches)  # drop_remainder, repeats
    assert len(fold_ids) < 30  # so the ten full batches above needed a repeat
    once = load_dataset(
        records["raw"],
        folds=1,
        training=True,
        batch_size=1,
        repeat=False,
        shuffle_buffer=64,
        seed=3,
    )
    assert sum(1 for _ in once) == len(fold_ids)


def test_unlabeled_sets_return_ids_in_submission_order(records):
    dataset = load_dataset(records["test"], training=False, batch_size=2)
    ids = [value.decode() for _, batch in dataset for value in batch.numpy()]
    assert ids == dataset_ids(records["test"]) and len(ids) == 5


def test_cache_gives_the_same_data(records):
    plain, labels = collect(load_dataset(records["png"], training=False))
    cached = load_dataset(records["png"], training=False, cache=True)
    for _ in range(2):  # second pass from the cache
        images, cached_labels = collect(cached)
        np.testing.assert_array_equal(images, plain)
        np.testing.assert_array_equal(cached_labels, labels)


def test_cpu_augmentation_keeps_label_alignment(records):
    from hpa_keras.models.augmentation import make_augmentation

    signature_of = {}
    for record in stored_records(records["raw"]):  # dihedral moves pixels, keeps the multiset
        signature_of.setdefault(tuple(record["labels"]), set()).add(
            np.sort(record["image"], axis=None).tobytes()
        )
    augment = make_augmentation(dihedral=True, seed=4)
    dataset = load_dataset(
        records["raw"], training=True, batch_size=4, normalization="none", augment=augment, seed=4
    )
    for images, labels in dataset.take(6):
        for image, label in zip(images.numpy(), labels.numpy(), strict=True):
            signature = np.sort(image.astype(np.uint8), axis=None).tobytes()
            assert signature in signature_of[tuple(np.flatnonzero(label).tolist())]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"channels": "rgbx"}, "channels 'rgbx'"),
        ({"channels": ["red", "red"]}, "distinct"),
        ({"folds": 7}, "fold 7 is not in this data set"),
        ({"normalization": "z"}, "normalization"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_arguments_are_named(records, arguments, message):
    with pytest.raises(InputError, match=message):
        load_dataset(records["raw"], **arguments)


def test_resolve_channels():
    assert resolve_channels("rgb") == ("red", "green", "blue")
    assert resolve_channels("green") == ("green",)
    assert resolve_channels(["blue"]) == ("blue",)


def test_finite_datasets_know_their_length(records):
    manifest = read_manifest(records["raw"])
    count = sum(fold["num_records"] for fold in manifest.folds if fold["fold"] in (0, 1))
    evaluation = load_dataset(records["raw"], folds=[0, 1], training=False, batch_size=4)
    assert int(evaluation.cardinality()) == -(-count // 4) == len(list(evaluation))
    once = load_dataset(records["raw"], folds=[0, 1], training=True, batch_size=4, repeat=False)
    assert int(once.cardinality()) == count // 4 == len(list(once))
    forever = load_dataset(records["raw"], training=True, batch_size=4)
    assert int(forever.cardinality()) == int(tf.data.INFINITE_CARDINALITY)
