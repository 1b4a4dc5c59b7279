"""Record, run and label locations given as URLs, on TensorFlow's in-memory ram:// filesystem."""

import uuid

import keras
import pandas as pd
import pytest
import tensorflow as tf

from hpa_keras import storage
from hpa_keras.errors import InputError


def ram(name: str) -> str:
    """A fresh ram:// folder (the filesystem lives as long as this process)."""
    return f"ram://hpa-keras-tests/{uuid.uuid4().hex}/{name}"


def remote_files(url: str) -> list[str]:
    return sorted(storage._remote_files(url))


def test_urls_are_told_from_paths_and_joined_without_collapsing_the_scheme(tmp_path):
    assert storage.is_url("gs://bucket/records") and storage.is_url("ram://x")
    assert not storage.is_url(tmp_path) and not storage.is_url("records/manifest.json")
    assert (
        storage.join("gs://bucket/records/", "manifest.json") == "gs://bucket/records/manifest.json"
    )
    assert storage.join(str(tmp_path), "a") == str(tmp_path / "a")


def test_a_staged_folder_mirrors_changes_and_uploads_completing_files_last(tmp_path, monkeypatch):
    url = ram("run")
    local = tmp_path / "local"
    staged = storage.StagedFolder(url, local, download=False)
    (local / "thresholds.json").write_text("{}")
    (local / "best-epoch001.weights.h5").write_bytes(b"1")
    (local / "backup").mkdir()
    (local / "backup" / "latest.weights.h5").write_bytes(b"b")
    order = []
    upload = storage.upload_file_atomic
    monkeypatch.setattr(
        storage,
        "upload_file_atomic",
        lambda path, target: (order.append(target), upload(path, target)),
    )
    staged.upload()
    assert order[-1].endswith("/thresholds.json")  # after the weights it names
    assert remote_files(url) == [
        "backup/latest.weights.h5",
        "best-epoch001.weights.h5",
        "thresholds.json",
    ]
    # A new best epoch replaces the old; the backup goes at the end of the run.
    (local / "best-epoch001.weights.h5").unlink()
    (local / "best-epoch002.weights.h5").write_bytes(b"2")
    (local / "backup" / "latest.weights.h5").unlink()
    order.clear()
    staged.upload()
    assert [target.rsplit("/", 1)[1] for target in order] == ["best-epoch002.weights.h5"]
    assert remote_files(url) == ["best-epoch002.weights.h5", "thresholds.json"]
    # Downloading gives the same files back.
    copy = storage.download_folder(url, tmp_path / "copy")
    assert (copy / "best-epoch002.weights.h5").read_bytes() == b"2"


def test_an_upload_that_fails_leaves_neither_a_half_file_nor_its_temporary(tmp_path, monkeypatch):
    url = ram("folder")
    storage.write_bytes_atomic(f"{url}/model.keras", b"old")
    (tmp_path / "model.keras").write_bytes(b"new")

    def broken_rename(*arguments, **keywords):
        raise tf.errors.UnavailableError(None, None, "connection reset")

    monkeypatch.setattr(tf.io.gfile, "rename", broken_rename)
    with pytest.raises(InputError, match=f"^{url}/model.keras: could not be reached .connection"):
        storage.upload_file_atomic(tmp_path / "model.keras", f"{url}/model.keras")
    assert remote_files(url) == ["model.keras"]
    assert storage.read_bytes(f"{url}/model.keras") == b"old"


def test_records_runs_labels_and_submissions_at_urls_end_to_end(training_records, tmp_path, capsys):
    """make-tfrecords, fit (interrupted, resumed), predict and a label file, all at ram:// URLs."""
    from hpa_keras.cli import main
    from hpa_keras.data.conversion import ConversionSettings, make_tfrecords
    from hpa_keras.data.tfrecords import read_manifest
    from hpa_keras.models import TINY_OPTIONS
    from hpa_keras.training.fit import fit, resolve_config

    data = training_records.parent / "data"
    labels_url = ram("train.csv")
    storage.write_bytes_atomic(labels_url, (data / "train.csv").read_bytes())
    records = ram("records")
    manifest = make_tfrecords(
        data / "train", records, labels=labels_url, progress=False, workers=1,
        settings=ConversionSettings(num_folds=3, num_shards=3),
    )  # fmt: skip
    assert read_manifest(records).num_records == manifest.num_records == 40
    assert "manifest.json" in remote_files(records)
    assert not any(name.endswith(".tmp") for name in remote_files(records))  # no temporaries

    run = ram("run")
    settings = {
        "data": records, "out": run, "epochs": 2, "batch_size": 8, "verbose": 0,
        "model": "gapnet", "model_options": TINY_OPTIONS["gapnet"], "tensorboard": False,
    }  # fmt: skip

    class Preempted(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(resolve_config(settings), callbacks=[Preempted()])
    assert any(name.startswith("backup/") for name in remote_files(run))
    assert "model.keras" not in remote_files(run)
    summary = fit(resolve_config(settings))  # resumes from the URL's backup
    assert summary["run"] == run
    files = remote_files(run)
    assert {"model.keras", "thresholds.json", "history.csv", "config.yaml"} <= set(files)
    assert not any(name.startswith("backup/") for name in files)
    history = pd.read_csv(tf.io.gfile.GFile(f"{run}/history.csv"))
    assert list(history["epoch"]) == [0, 1]

    submission = ram("submission.csv")
    assert main(["predict", "--run", run, "--data", records, "--out", submission]) == 0
    table = pd.read_csv(tf.io.gfile.GFile(submission))
    assert len(table) == 40 and list(table.columns) == ["Id", "Predicted"]
    capsys.readouterr()
    assert main(["predict", "--run", ram("missing"), "--data", records, "--out", submission]) == 2
    assert "missing: not found" in capsys.readouterr().err


def test_a_missing_manifest_or_label_file_at_a_url_is_named(tmp_path):
    from hpa_keras.data.labels import read_labels
    from hpa_keras.data.tfrecords import read_manifest

    folder = ram("nothing")
    with pytest.raises(InputError, match=f"{folder}/manifest.json: not found"):
        read_manifest(folder)
    with pytest.raises(InputError, match="train.csv: file not found"):
        read_labels(ram("train.csv"))


def test_real_fields_converted_to_a_url_are_the_records_of_a_local_folder(
    real_four_channel_folder, tmp_path
):
    """The 80 real 512 px Kaggle samples, labels read from a URL, records written to one:
    the same shards (by digest) as a local conversion, and the same images read back."""
    import numpy as np

    from hpa_keras.data.conversion import ConversionSettings, make_tfrecords
    from hpa_keras.data.pipeline import load_dataset
    from hpa_keras.data.tfrecords import read_manifest

    labels_url = ram("train.csv")
    storage.write_bytes_atomic(labels_url, (real_four_channel_folder / "train.csv").read_bytes())
    settings = ConversionSettings(num_folds=2, num_shards=4, image_size=128)
    images = real_four_channel_folder / "train"
    local = tmp_path / "records"
    make_tfrecords(images, local, labels=real_four_channel_folder / "train.csv",
                   settings=settings, progress=False, workers=1)  # fmt: skip
    remote = ram("records")
    make_tfrecords(images, remote, labels=labels_url, settings=settings, progress=False, workers=1)
    digests = [shard["sha256"] for shard in read_manifest(local).shards]
    assert [shard["sha256"] for shard in read_manifest(remote).shards] == digests
    assert read_manifest(remote).num_records == 80

    def first_batch(folder):
        images, labels = next(iter(load_dataset(folder, training=False, batch_size=8)))
        return np.asarray(images), np.asarray(labels)

    for expected, got in zip(first_batch(local), first_batch(remote), strict=True):
        np.testing.assert_array_equal(got, expected)


# ------------------------------------------------------------------ URLs that cannot be read

# Schemes this TensorFlow has no file system for, and gs:// (no network here: TensorFlow's
# FailedPreconditionError; with a network, an unknown bucket is denied or not found).
UNREADABLE_URLS = [
    "s3://hpa-keras-tests/records",
    "https://example.com/hpa/records",
    "hdfs://namenode:8020/hpa/records",
    "gs://hpa-keras-tests-no-such-bucket/records",
]


def _commands(url, records, data, out):
    """Each command with one location at ``url``: (argv, what must not have been written)."""
    make = ["make-tfrecords", "--images", str(data / "train"), "--quiet", "--workers", "1"]
    return [
        (["fit", "--data", url, "--out", str(out), "--epochs", "1"], out),
        (["fit", "--data", str(records), "--out", url, "--epochs", "1"], None),
        (["predict", "--run", url, "--data", str(records), "--out", str(out)], out),
        (["evaluate", "--run", url, "--data", str(records), "--out", str(out)], out),
        ([*make, "--labels", str(data / "train.csv"), "--out", url], None),
        ([*make, "--labels", f"{url}/train.csv", "--out", str(out)], out),
        (["verify", url, "--quiet"], None),
    ]


@pytest.mark.parametrize("url", UNREADABLE_URLS)
def test_an_unreadable_url_is_one_line_naming_it_in_every_command(
    training_records, tmp_path, capsys, url
):
    from hpa_keras.cli import main

    data = training_records.parent / "data"
    for argv, written in _commands(url, training_records, data, tmp_path / "out"):
        assert main(argv) == 2, argv
        error = capsys.readouterr().err
        assert error.startswith(f"hpa-keras {argv[0]}: error: {url}"), (argv, error)
        assert error.count("\n") == 1 and "Traceback" not in error and "unexpected" not in error
        if not url.startswith("gs://"):
            assert f"no file system for {url.split(':')[0]}://" in error, error
        assert written is None or not written.exists(), argv


@pytest.mark.parametrize("url", [*UNREADABLE_URLS, ram("images")])
def test_image_folders_given_as_urls_are_refused_naming_the_flag(
    training_records, tmp_path, capsys, url
):
    from hpa_keras.cli import main
    from hpa_keras.data.conversion import make_tfrecords

    run = tmp_path / "run"  # what the argument check looks for; the URL is refused first
    run.mkdir()
    (run / "model.keras").touch()
    for argv in (
        ["make-tfrecords", "--images", url, "--out", str(training_records.parent / "x")],
        ["predict", "--run", str(run), "--images", url],
        ["cam", "--run", str(run), "--images", url, "--id", "x"],
    ):
        assert main(argv) == 2, argv
        error = capsys.readouterr().err
        assert f"error: --images {url}: image and mask folders are read from local disk" in error
        assert error.count("\n") == 1
    with pytest.raises(InputError, match=f"--images {url}: image and mask"):  # not gs:/...
        make_tfrecords(url, training_records.parent / "x", progress=False)
    assert not (training_records.parent / "x").exists()


def test_storage_refuses_an_unknown_scheme_before_touching_it():
    """``gfile.isdir`` answers False for a scheme it has no file system for: the refusal
    comes first, so no caller mistakes an s3:// folder for a missing one."""
    for call in (storage.exists, storage.is_file, storage.read_bytes, storage._remote_files):
        with pytest.raises(InputError, match="^s3://b/x: this TensorFlow has no file system"):
            call("s3://b/x")
    with pytest.raises(InputError, match="^https://h/x: .*download the files first"):
        storage.download_folder("https://h/x", "unused")


def test_verify_reads_a_record_set_at_a_url(training_records, capsys):
    from hpa_keras.cli import main
    from hpa_keras.data.tfrecords import read_manifest

    data, records = training_records.parent / "data", ram("records")
    argv = ["make-tfrecords", "--images", str(data / "train"), "--labels", str(data / "train.csv")]
    assert main([*argv, "--out", records, "--folds", "3", "--quiet", "--workers", "1"]) == 0
    capsys.readouterr()
    assert main(["verify", records, "--quiet"]) == 0
    manifest = read_manifest(records)
    assert capsys.readouterr().out.startswith(f"ok: {len(manifest.shards)} shards, 40 records")
    shard = f"{records}/{manifest.shards[0]['file']}"
    data = bytearray(storage.read_bytes(shard))
    data[len(data) // 2] ^= 0xFF
    storage.write_bytes_atomic(shard, bytes(data))
    assert main(["verify", records, "--quiet"]) == 1
    assert f"{shard}: sha256 differs" in capsys.readouterr().err
