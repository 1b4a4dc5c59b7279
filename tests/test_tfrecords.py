import re
import shutil
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

from hpa_keras.classes import CHANNELS
from hpa_keras.cli import main
from hpa_keras.data import tfrecords
from hpa_keras.data.conversion import ConversionSettings, make_tfrecords, shards
from hpa_keras.data.images import index_image_folder, read_sample
from hpa_keras.data.labels import read_labels
from hpa_keras.data.splits import fold_balance, random_folds, stratified_folds
from hpa_keras.data.tfrecords import read_manifest, read_shard, verify_tfrecords
from hpa_keras.errors import InputError
from hpa_keras.synthetic.generator import DemoDataSettings, make_demo_data


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """24 synthetic samples at 64 px: 20 train, 4 test."""
    folder = tmp_path_factory.mktemp("data")
    make_demo_data(
        folder,
        DemoDataSettings(num_samples=24, image_size=64, seed=5, test_fraction=0.17),
        workers=1,
        progress=False,
    )
    return folder


def copy_dataset(dataset, destination):
    shutil.copytree(dataset, destination)
    return destination


def convert(dataset, out, workers=1, **settings):
    settings.setdefault("num_folds", 3)
    settings.setdefault("num_shards", 6)
    return make_tfrecords(
        dataset / "train",
        out,
        labels=dataset / "train.csv",
        settings=ConversionSettings(**settings),
        workers=workers,
        progress=False,
    )


def convert_with_cli(dataset, out):
    """The same conversion as :func:`convert`, through the command line; the exit status."""
    return main(
        [
            "make-tfrecords",
            "--images",
            str(dataset / "train"),
            "--labels",
            str(dataset / "train.csv"),
            "--out",
            str(out),
            "--folds",
            "3",
            "--num-shards",
            "6",
            "--workers",
            "1",
            "--quiet",
        ]
    )


def all_records(out):
    manifest = read_manifest(out)
    return {
        record["id"]: (record, shard)
        for shard in manifest.shards
        for record in read_shard(out / shard["file"])
    }


@pytest.mark.parametrize("encoding", ["png", "raw"])
def test_round_trip_ids_labels_and_pixels_exactly(dataset, tmp_path, encoding):
    manifest = convert(dataset, tmp_path, encoding=encoding)
    table = read_labels(dataset / "train.csv")
    records = all_records(tmp_path)
    assert sorted(records) == sorted(table.ids)
    index = index_image_folder(dataset / "train")
    for sample_id, (record, shard) in records.items():
        assert record["labels"] == list(table.labels_of(sample_id))
        assert record["format"] == encoding and record["shape"] == (64, 64, 4)
        assert record["fold"] == shard["fold"]
        expected = np.stack(
            [
                cv2.imread(str(index[sample_id][channel]), cv2.IMREAD_UNCHANGED)
                for channel in CHANNELS
            ],
            axis=-1,
        )
        np.testing.assert_array_equal(record["image"], expected)
    assert manifest.encoding == encoding and manifest.num_records == 20
    assert manifest.image_size == 64


def test_png_records_hold_the_source_files_and_decode_with_tensorflow(dataset, tmp_path):
    import tensorflow as tf

    convert(dataset, tmp_path, encoding="png")
    manifest = read_manifest(tmp_path)
    serialized = next(iter(tf.data.TFRecordDataset(str(tmp_path / manifest.shards[0]["file"]))))
    features = tf.io.parse_single_example(
        serialized,
        {
            "id": tf.io.FixedLenFeature([], tf.string),
            "image": tf.io.FixedLenFeature([4], tf.string),
            "labels": tf.io.VarLenFeature(tf.int64),
        },
    )
    sample_id = features["id"].numpy().decode()
    index = index_image_folder(dataset / "train")
    for position, channel in enumerate(CHANNELS):
        # Kaggle-layout channel files at the stored size are kept byte for byte.
        assert features["image"][position].numpy() == index[sample_id][channel].read_bytes()
        decoded = tf.io.decode_png(features["image"][position], channels=1).numpy()[..., 0]
        stored = cv2.imread(str(index[sample_id][channel]), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(decoded, stored)


def test_manifest_statistics_match_numpy(dataset, tmp_path):
    manifest = convert(dataset, tmp_path)
    records = all_records(tmp_path)
    pixels = np.stack([record["image"] for record, _ in records.values()]).reshape(-1, 4)
    np.testing.assert_allclose(manifest.channel_mean, pixels.mean(axis=0), atol=1e-3)
    np.testing.assert_allclose(manifest.channel_std, pixels.std(axis=0), atol=1e-3)
    table = read_labels(dataset / "train.csv")
    assert manifest.class_counts == table.class_counts().tolist()
    for fold in manifest.folds:
        members = [record for record, _ in records.values() if record["fold"] == fold["fold"]]
        assert fold["num_records"] == len(members)
        counts = np.zeros(28, int)
        for record in members:
            counts[record["labels"]] += 1
        assert fold["class_counts"] == counts.tolist()
    for shard in manifest.shards:
        assert shard["sha256"] == tfrecords.sha256_of(tmp_path / shard["file"])
        assert shard["file"].startswith(f"train-fold{shard['fold']}-")
        assert shard["file"].endswith(f"-of-{len(manifest.shards):05d}.tfrecord")


def test_folds_are_disjoint_cover_everything_and_follow_the_seed(dataset, tmp_path):
    convert(dataset, tmp_path / "a", seed=1)
    convert(dataset, tmp_path / "b", seed=1, workers=2)
    convert(dataset, tmp_path / "c", seed=2)
    first = {
        sample_id: record["fold"] for sample_id, (record, _) in all_records(tmp_path / "a").items()
    }
    assert sorted(set(first.values())) == [0, 1, 2]
    again = read_manifest(tmp_path / "b")
    assert [shard["sha256"] for shard in again.shards] == [
        shard["sha256"] for shard in read_manifest(tmp_path / "a").shards
    ]
    other = {
        sample_id: record["fold"] for sample_id, (record, _) in all_records(tmp_path / "c").items()
    }
    assert other != first


def test_stratified_folds_beat_random_folds_on_the_real_labels(real_train_csv):
    matrix = read_labels(real_train_csv).multi_hot()
    stratified = fold_balance(matrix, stratified_folds(matrix, 5, 0), 5)
    plain = fold_balance(matrix, random_folds(len(matrix), 5, 0), 5)
    assert stratified["max_relative_deviation"] < 0.5 * plain["max_relative_deviation"]
    assert stratified["max_abs_deviation_points"] < plain["max_abs_deviation_points"]
    assert stratified["empty_fold_class_cells"] == 0


def test_stratified_folds_on_a_toy_case():
    labels = np.zeros((12, 3))
    labels[:6, 0] = 1  # class 0 on half the samples
    labels[::4, 1] = 1  # class 1 on three samples
    labels[:, 2] = 1
    folds = stratified_folds(labels, 3, seed=0)
    assert np.bincount(folds).tolist() == [4, 4, 4]
    assert all(labels[folds == fold, 0].sum() == 2 for fold in range(3))
    assert all(labels[folds == fold, 1].sum() == 1 for fold in range(3))
    with pytest.raises(InputError, match="more than the 12 labeled samples"):
        stratified_folds(labels, 13, 0)


def test_interrupted_run_resumes_to_identical_shards(dataset, tmp_path, monkeypatch):
    reference = convert(dataset, tmp_path / "reference")
    original = shards.serialize_example  # the shard writer's name for it
    calls = {"count": 0}

    def interrupted(*arguments, **options):
        calls["count"] += 1
        if calls["count"] == 9:  # in the middle of the third shard
            raise KeyboardInterrupt
        return original(*arguments, **options)

    monkeypatch.setattr(shards, "serialize_example", interrupted)
    with pytest.raises(KeyboardInterrupt):
        convert(dataset, tmp_path / "run")
    out = tmp_path / "run"
    assert not (out / "manifest.json").exists()
    assert not list(out.glob(".*.tmp"))  # the half-written shard was removed
    finished = sorted(path.name for path in out.glob("*.tfrecord"))
    assert 1 <= len(finished) < 6

    monkeypatch.setattr(shards, "serialize_example", original)
    resumed = convert(dataset, out)
    assert resumed.shards == reference.shards  # same names, counts, sha256
    assert verify_tfrecords(out, progress=False) == []


def test_killed_process_resumes_without_loss_or_duplicates(dataset, tmp_path):
    reference = convert(dataset, tmp_path / "reference")
    out = tmp_path / "killed"
    # A real SIGKILL in the middle of a shard: nothing gets to clean up.
    script = textwrap.dedent(f"""
        import os, signal
        from hpa_keras.data import conversion
        from hpa_keras.data.conversion import shards
        original = shards.serialize_example
        count = [0]
        def dying(*arguments, **options):
            count[0] += 1
            if count[0] == 11:
                os.kill(os.getpid(), signal.SIGKILL)
            return original(*arguments, **options)
        shards.serialize_example = dying
        conversion.make_tfrecords(
            {str(dataset / "train")!r}, {str(out)!r}, labels={str(dataset / "train.csv")!r},
            settings=conversion.ConversionSettings(num_folds=3, num_shards=6),
            workers=1, progress=False)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, check=False)
    assert result.returncode == -9
    assert list(out.glob(".*.tmp"))  # a partial shard was left behind
    assert not (out / "manifest.json").exists()

    assert convert_with_cli(dataset, out) == 0
    assert read_manifest(out).shards == reference.shards
    assert not list(out.glob(".*.tmp"))
    ids = [
        record["id"] for shard in reference.shards for record in read_shard(out / shard["file"])
    ]
    assert len(ids) == len(set(ids)) == 20


def test_other_arguments_on_the_same_folder_are_refused(dataset, tmp_path):
    convert(dataset, tmp_path)
    with pytest.raises(InputError, match="differs in: encoding"):
        convert(dataset, tmp_path, encoding="png")
    before = {path.name: path.stat().st_mtime_ns for path in tmp_path.glob("*.tfrecord")}
    convert(dataset, tmp_path)  # same arguments: complete already, nothing rewritten
    assert before == {path.name: path.stat().st_mtime_ns for path in tmp_path.glob("*.tfrecord")}


def test_unlabeled_test_set_keeps_the_submission_order(dataset, tmp_path):
    manifest = make_tfrecords(
        dataset / "test",
        tmp_path,
        labels=dataset / "sample_submission.csv",
        settings=ConversionSettings(num_shards=2),
        workers=1,
        progress=False,
    )
    assert manifest.split == "test" and not manifest.labeled
    order = [
        record["id"]
        for shard in manifest.shards
        for record in read_shard(tmp_path / shard["file"])
    ]
    assert order == list(read_labels(dataset / "test_labels.csv").ids)
    records = read_shard(tmp_path / manifest.shards[0]["file"])
    assert all(record["fold"] == -1 and record["labels"] == [] for record in records)
    assert manifest.shards[0]["file"] == "test-00000-of-00002.tfrecord"

    bare = make_tfrecords(
        dataset / "test",
        tmp_path / "bare",
        settings=ConversionSettings(),
        workers=1,
        progress=False,
    )
    assert bare.num_records == 4


def test_shard_size_is_respected(dataset, tmp_path):
    manifest = convert(dataset, tmp_path, num_shards=None, shard_size_mb=0.05, encoding="raw")
    # raw 64x64x4 = 16 KiB a record: at most 3 per 0.05 MiB shard, folds kept apart.
    assert all(shard["num_records"] <= 3 for shard in manifest.shards)
    assert len(manifest.shards) >= 7


# ------------------------------------------------------------------ bad input


def break_sample(folder, how):
    """Damage one training sample of a copied data set; returns (Id, the file to be named)."""
    table = read_labels(folder / "train.csv")
    sample_id = table.ids[3]
    green = folder / "train" / f"{sample_id}_green.png"
    if how == "missing channel":
        green.unlink()
        return sample_id, green, "missing channel file"
    if how == "truncated":
        green.write_bytes(green.read_bytes()[:100])
        return sample_id, green, "cannot be decoded"
    if how == "corrupt":
        green.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 50)
        return sample_id, green, "cannot be read as an image"
    if how == "different sizes":
        cv2.imwrite(str(green), np.zeros((32, 32), np.uint8))
        return sample_id, green, "a sample's channels must have the same size"
    if how == "colour of another stain":
        red_image = np.zeros((64, 64, 3), np.uint8)
        red_image[..., 2] = np.random.default_rng(0).integers(0, 200, (64, 64))  # BGR: R
        cv2.imwrite(str(green), red_image)
        return sample_id, green, "not in the green stain's display colour (G)"
    if how == "grayscale saved as colour":
        plane = np.random.default_rng(1).integers(0, 200, (64, 64), dtype=np.uint8)
        cv2.imwrite(str(green), np.stack([plane] * 3, axis=-1))
        return sample_id, green, "a grayscale image saved as colour"
    if how == "too large":
        for channel in CHANNELS:
            cv2.imwrite(
                str(folder / "train" / f"{sample_id}_{channel}.png"), np.zeros((2, 17000), np.uint8)
            )
        return sample_id, folder / "train" / f"{sample_id}_red.png", "too large to be a real"
    if how == "id without files":
        for path in (folder / "train").glob(f"{sample_id}_*"):
            path.unlink()
        return sample_id, folder / "train.csv", f"Id {sample_id} in"
    raise ValueError(how)


BAD_INPUTS = [
    "missing channel",
    "truncated",
    "corrupt",
    "different sizes",
    "colour of another stain",
    "grayscale saved as colour",
    "too large",
    "id without files",
]


@pytest.mark.parametrize("how", BAD_INPUTS)
def test_bad_sample_stops_the_run_naming_file_and_reason(dataset, tmp_path, how, capsys):
    data = copy_dataset(dataset, tmp_path / "data")
    sample_id, named, reason = break_sample(data, how)
    out = tmp_path / "out"
    status = convert_with_cli(data, out)
    error = capsys.readouterr().err
    assert status == 2, error
    assert str(named) in error and reason in error and "Traceback" not in error
    assert not out.exists()  # no empty or half-made folder left behind


def test_a_failed_conversion_leaves_a_given_folder_as_it_was(dataset, tmp_path, capsys):
    data = copy_dataset(dataset, tmp_path / "data")
    break_sample(data, "corrupt")
    out = tmp_path / "out"
    (out / "notes").mkdir(parents=True)
    (out / "notes" / "read-me.txt").write_text("mine")
    (out / "other.txt").write_text("also mine")
    before = sorted(path.relative_to(out) for path in out.rglob("*"))
    assert convert_with_cli(data, out) == 2
    assert "cannot be read as an image" in capsys.readouterr().err
    assert sorted(path.relative_to(out) for path in out.rglob("*")) == before
    assert (out / "notes" / "read-me.txt").read_text() == "mine"
    # A failure before anything is written (a typo in --labels) creates no folder either.
    new = tmp_path / "new" / "records"
    argv = ["make-tfrecords", "--images", str(data / "train"), "--out", str(new), "--quiet"]
    assert main([*argv, "--labels", str(data / "train.cvs")]) == 2
    assert not (tmp_path / "new").exists()


def test_a_data_set_root_given_as_images_names_its_image_folder(dataset, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["make-tfrecords", "--images", str(dataset), "--out", str(out), "--quiet"]
    assert main([*argv, "--labels", str(dataset / "train.csv")]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and f"pass --images {dataset / 'train'}" in error[0]
    assert "--missing ignore" not in error[0]
    assert main(argv) == 2  # unlabeled: both image folders of the root are named
    error = capsys.readouterr().err
    assert f"pass --images {dataset / 'train'} (or {dataset / 'test'})" in error
    assert not out.exists()


@pytest.mark.parametrize("how", BAD_INPUTS)
def test_bad_sample_is_skipped_and_listed(dataset, tmp_path, how):
    data = copy_dataset(dataset, tmp_path / "data")
    sample_id, named, reason = break_sample(data, how)
    out = tmp_path / "out"
    manifest = convert(data, out, on_error="skip")
    assert manifest.num_skipped >= 1
    errors = (out / manifest.errors_file).read_text()
    assert sample_id in errors and reason in errors
    ids = set(all_records(out))
    assert sample_id not in ids
    assert manifest.num_records == len(ids) == 19
    assert verify_tfrecords(out, progress=False) == []


# ------------------------------------------------------------------ verify


def test_verify_catches_a_flipped_byte(dataset, tmp_path, capsys):
    convert(dataset, tmp_path)
    assert main(["verify", str(tmp_path), "--quiet"]) == 0
    shard = tmp_path / read_manifest(tmp_path).shards[2]["file"]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    assert main(["verify", str(tmp_path), "--quiet"]) == 1
    error = capsys.readouterr().err
    assert f"{shard}: sha256 differs" in error
    assert f"{shard}: unreadable" in error or "records, the manifest says" in error


def test_verify_catches_a_missing_shard_and_a_wrong_count(dataset, tmp_path):
    convert(dataset, tmp_path)
    manifest = read_manifest(tmp_path)
    (tmp_path / manifest.shards[0]["file"]).unlink()
    manifest.shards[1]["num_records"] += 1
    (tmp_path / "manifest.json").write_text(manifest.to_json())
    problems = verify_tfrecords(tmp_path, progress=False)
    assert any("shard missing" in problem for problem in problems)
    assert any("the manifest says" in problem for problem in problems)


def test_verify_without_manifest_is_an_input_error(tmp_path, capsys):
    assert main(["verify", str(tmp_path)]) == 2
    assert "manifest.json: not found" in capsys.readouterr().err


def test_files_of_ids_the_labels_do_not_list_are_ignored_and_counted(dataset, tmp_path, capsys):
    """A download folder or a subset CSV: convert the listed Ids, say what was left out."""
    data = copy_dataset(dataset, tmp_path / "data")
    table = read_labels(data / "train.csv")
    subset = tmp_path / "subset.csv"
    subset.write_text(
        "Id,Target\n"
        + "".join(
            f"{sample_id},{' '.join(map(str, labels))}\n"
            for sample_id, labels in zip(table.ids[:12], table.labels[:12], strict=True)
        )
    )
    stray = data / "train" / "stray-sample_blue.png"
    cv2.imwrite(str(stray), np.zeros((64, 64), np.uint8))
    out = tmp_path / "out"
    status = main(
        [
            "make-tfrecords",
            "--images",
            str(data / "train"),
            "--labels",
            str(subset),
            "--out",
            str(out),
            "--folds",
            "2",
            "--workers",
            "1",
            "--quiet",
        ]
    )
    printed = capsys.readouterr()
    assert status == 0, printed.err
    manifest = read_manifest(out)
    assert manifest.num_records == 12 and set(all_records(out)) == set(table.ids[:12])
    ignored = manifest.ignored
    assert ignored["num_ids"] == 9 and ignored["num_files"] == 8 * 4 + 1
    assert set(ignored["first_ids"]) <= set(table.ids[12:]) | {"stray-sample"}
    assert "ignored 33 image files of 9 Ids" in printed.out and str(subset) in printed.out
    assert manifest.num_skipped == 0 and not (out / "errors.csv").exists()


# ------------------------------------------------------------------ other formats


def write_tiff(path, plane, compression):
    """A compressed TIFF written by Pillow (libtiff), independent of the OpenCV reader."""
    from PIL import Image

    Image.fromarray(plane).save(path, compression=compression)


@pytest.mark.parametrize("compression", ["tiff_lzw", "tiff_adobe_deflate"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_compressed_tiffs_read_exactly(tmp_path, compression, dtype):
    from hpa_keras.data.images import read_channel

    plane = np.random.default_rng(1).integers(0, np.iinfo(dtype).max, (70, 90), dtype=dtype)
    path = tmp_path / "s_red.tif"
    write_tiff(path, plane, compression)
    read = read_channel(path)
    assert read.dtype == dtype
    np.testing.assert_array_equal(read, plane)


def test_sixteen_bit_tiff_jpeg_and_large_fields(tmp_path):
    """s1: 16-bit PNGs and an LZW TIFF; s2: 8-bit PNGs and a JPEG; both 300 px, stored at 100."""
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    planes = {channel: rng.integers(0, 65535, (300, 300), dtype=np.uint16) for channel in CHANNELS}
    for channel in ("red", "green", "yellow"):
        cv2.imwrite(str(images / f"s1_{channel}.png"), planes[channel])  # 16-bit PNG
    write_tiff(images / "s1_blue.tif", planes["blue"], "tiff_lzw")
    eight_bit = {
        channel: np.rint(planes[channel].astype(np.float32) * 255 / 65535).astype(np.uint8)
        for channel in CHANNELS
    }
    expected = {"s1": np.stack([eight_bit[channel] for channel in CHANNELS], axis=-1)}
    for channel in ("red", "green", "blue"):
        cv2.imwrite(str(images / f"s2_{channel}.png"), eight_bit[channel])
    cv2.imwrite(str(images / "s2_yellow.jpg"), eight_bit["yellow"])
    jpeg = cv2.imread(str(images / "s2_yellow.jpg"), cv2.IMREAD_UNCHANGED)
    expected["s2"] = np.stack([eight_bit[c] for c in ("red", "green", "blue")] + [jpeg], axis=-1)
    labels = tmp_path / "train.csv"
    labels.write_text("Id,Target\ns1,3\ns2,3 5\n")
    manifest = make_tfrecords(
        images,
        tmp_path / "out",
        labels=labels,
        settings=ConversionSettings(image_size=100, num_folds=2),
        workers=1,
        progress=False,
    )
    assert manifest.num_records == 2 and manifest.image_size == 100
    assert manifest.sources[0]["original_sizes"] == {"300x300": 2}
    assert manifest.sources[0]["file_bit_depths"] == {"16": 1, "8": 1}
    records = all_records(tmp_path / "out")
    for sample_id, image in expected.items():
        area = cv2.resize(image, (100, 100), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(records[sample_id][0]["image"], area)
        assert records[sample_id][0]["original_size"] == (300, 300)


def test_mixed_sizes_need_image_size(tmp_path, dataset):
    data = copy_dataset(dataset, tmp_path / "data")
    sample_id = read_labels(data / "train.csv").ids[5]
    for channel in CHANNELS:
        path = data / "train" / f"{sample_id}_{channel}.png"
        cv2.imwrite(str(path), cv2.resize(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), (80, 80)))
    with pytest.raises(InputError, match="80x80 pixels, but the data set's samples are 64x64"):
        convert(data, tmp_path / "out")
    manifest = convert(data, tmp_path / "resized", image_size=64)
    assert manifest.num_records == 20


def test_sixteen_bit_rules_and_area_resize(tmp_path):
    rng = np.random.default_rng(0)
    planes = {channel: rng.integers(0, 4096, (300, 300), dtype=np.uint16) for channel in CHANNELS}
    paths = {}
    for channel, plane in planes.items():
        paths[channel] = tmp_path / f"s_{channel}.tif"
        write_tiff(paths[channel], plane, "tiff_adobe_deflate")
    full = read_sample(paths, 100, "full-range")
    expected_red = cv2.resize(
        np.rint(planes["red"].astype(np.float32) * 255 / 65535).astype(np.uint8),
        (100, 100),
        interpolation=cv2.INTER_AREA,
    )
    np.testing.assert_array_equal(full[..., 0], expected_red)
    assert full.max() <= 16  # 12-bit data stays dark under the full-range rule
    per_image = read_sample(paths, None, "per-image")
    assert per_image.shape == (300, 300, 4) and per_image.max() == 255


@pytest.mark.parametrize(
    "text, message",
    [
        ("[]", "not a manifest (a JSON list, not an object)"),
        ('{"format_version": 2}', "not a complete manifest (no num_records"),
        (b"\xff\xfe{}", "not valid JSON"),
        ("{", "not valid JSON"),
    ],
)
def test_a_manifest_that_is_not_one_is_named(tmp_path, text, message):
    from hpa_keras.data.tfrecords import read_manifest

    path = tmp_path / "manifest.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(InputError, match=re.escape(message)):
        read_manifest(tmp_path)
