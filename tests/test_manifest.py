"""The record set's manifest (hpa_keras.data.manifest): its fields, defaults, checks and
the questions it answers; written by hand, so no records are made."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from hpa_keras.classes import CHANNELS, HPA2018
from hpa_keras.data.manifest import LEGACY_SOURCE, MANIFEST_FILE, Manifest
from hpa_keras.data.tfrecords import read_manifest
from hpa_keras.errors import InputError


def counts(**positive) -> list[int]:
    """28 class counts, ``c3=2`` meaning two records of class 3."""
    values = [0] * 28
    for key, count in positive.items():
        values[int(key[1:])] = count
    return values


def fold(number, records, class_counts, sources, pixels=100, mean=10.0):
    return {
        "fold": number,
        "num_records": records,
        "shards": [f"train-{number}.tfrecord"],
        "class_counts": class_counts,
        "channel_sum": [mean * pixels] * 4,
        "channel_square_sum": [mean * mean * pixels] * 4,
        "pixels": pixels,
        "sources": sources,
    }


def written() -> dict:
    """A manifest as make-tfrecords writes it: three folds; source b only in fold 2."""
    folds = [
        fold(number, records, found, {name: {"num_records": records, "class_counts": found}})
        for number, name, records, found in (
            (0, "a", 4, counts(c0=3, c5=1)),
            (1, "a", 4, counts(c0=2, c1=2)),
            (2, "b", 2, counts(c0=2, c2=2)),
        )
    ]
    shards = [
        {"file": f"train-{n}.tfrecord", "fold": n, "source": "b" if n == 2 else "a",
         "num_records": entry["num_records"], "bytes": 1000 + n, "sha256": f"{n:064x}"}
        for n, entry in enumerate(folds)
    ]  # fmt: skip
    ignored = {"num_ids": 0, "num_files": 0, "first_ids": [], "reason": "not in the label file"}
    return {
        "format_version": 2,
        "created_by": "hpa-keras 0.3.0",
        "kind": "fields",
        "cells": None,
        "source": {"images": "/data/a", "labels": "/data/a.csv", "labels_sha256": "0" * 64},
        "sources": [
            {
                "name": "a",
                "images": "/data/a",
                "labels": "/data/a.csv",
                "num_records": 8,
                "ignored": ignored,
            },
            {
                "name": "b",
                "images": "/data/b",
                "labels": "/data/b.csv",
                "num_records": 2,
                "ignored": ignored,
            },
        ],  # fmt: skip
        "split": "train",
        "labeled": True,
        "scheme": "hpa2018",
        "class_names": list(HPA2018.class_names),
        "num_classes": 28,
        "image_size": 64,
        "channels": list(CHANNELS),
        "encoding": "raw",
        "bit_depth": 8,
        "sixteen_bit_rule": "full-range",
        "num_folds": 3,
        "fold_method": "grouped stratified",
        "grouping": {"num_groups": 10, "largest_group": 1, "rule": "one group per Id"},
        "seed": 0,
        "num_records": 10,
        "num_skipped": 0,
        "errors_file": None,
        "ignored": {"num_ids": 0, "num_files": 0, "first_ids": []},
        "class_counts": counts(c0=7, c1=2, c2=2, c5=1),
        "channel_mean": [10.0] * 4,
        "channel_std": [0.0] * 4,
        "folds": folds,
        "shards": shards,
    }


def write(folder, data) -> None:
    (folder / MANIFEST_FILE).write_text(json.dumps(data, indent=1) + "\n")


def test_round_trip_and_the_file_written_are_unchanged(tmp_path):
    data = written()
    manifest = Manifest.from_dict(data)
    assert Manifest.from_dict(manifest.to_dict()) == manifest
    assert manifest.to_dict() == data and list(manifest.to_dict()) == list(data)  # key order
    write(tmp_path, data)
    assert read_manifest(tmp_path).to_json() == (tmp_path / MANIFEST_FILE).read_text()


def test_a_manifest_written_before_cell_records_reads_with_the_defaults():
    data = written()
    for key in ("kind", "cells", "ignored"):
        del data[key]
    manifest = Manifest.from_dict(data)
    assert manifest.kind == "fields" and not manifest.is_cells and manifest.cells is None
    assert manifest.ignored == {"num_ids": 0, "num_files": 0, "first_ids": []}
    assert Manifest.from_dict(manifest.to_dict()) == manifest


def test_a_format_1_manifest_reads_as_one_8_bit_source_in_the_2018_scheme():
    data = written()
    for key in ("sources", "scheme", "class_names", "num_classes", "bit_depth", "fold_method"):
        del data[key]
    data["format_version"] = 1
    for entry in data["shards"]:
        del entry["source"]
    for entry in data["folds"]:
        del entry["sources"]
    before = json.dumps(data)
    manifest = Manifest.from_dict(data)
    assert json.dumps(data) == before  # the parsed file is not changed
    assert manifest.scheme == "hpa2018" and manifest.num_classes == 28
    assert manifest.class_names == list(HPA2018.class_names)
    assert manifest.bit_depth == 8 and manifest.fold_method == "stratified"
    assert manifest.source_names == [LEGACY_SOURCE]
    assert manifest.sources[0]["num_records"] == 10
    assert manifest.sources[0]["images"] == "/data/a"
    assert {shard["source"] for shard in manifest.shards} == {LEGACY_SOURCE}
    assert manifest.folds[0]["sources"] == {
        LEGACY_SOURCE: {"num_records": 4, "class_counts": counts(c0=3, c5=1)}
    }


def test_derived_fields_missing_from_the_file_are_computed():
    data = written()
    for key in ("class_counts", "channel_mean", "channel_std"):
        del data[key]
    manifest = Manifest.from_dict(data)
    assert manifest.class_counts == counts(c0=7, c1=2, c2=2, c5=1)
    assert manifest.channel_mean == [10.0] * 4 and manifest.channel_std == [0.0] * 4


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda data: data.pop("image_size"), "not a complete manifest (no image_size)"),
        (lambda data: data.update(image_size="64"), "field 'image_size' is a string (\"64\"), "
         "not an integer"),
        (lambda data: data.update(labeled=1),
         "field 'labeled' is an integer (1), not true or false"),
        (lambda data: data.update(class_names="abc"), "field 'class_names' is a string"),
        (lambda data: data.update(channel_mean=[1.0, "x", 2.0, 3.0]),
         "field 'channel_mean' is a list with a string (\"x\") at [1], not a list of numbers"),
        (lambda data: data.update(cells=[]), "field 'cells' is a list, not an object or null"),
        (lambda data: data["shards"][1].pop("sha256"), "field 'shards[1].sha256' is missing"),
        (lambda data: data["folds"][0].update(fold="0"), "field 'folds[0].fold' is a string"),
        (lambda data: data.update(kind="crops"), "field 'kind' is 'crops'"),
        (lambda data: data.update(scheme="hpa2030"), "field 'scheme': label scheme 'hpa2030'"),
        (lambda data: data.update(format_version=3), "format version 3, this hpa-keras reads 1, 2"),
    ],
)  # fmt: skip
def test_a_bad_manifest_names_the_file_and_the_field(tmp_path, change, message):
    data = written()
    change(data)
    write(tmp_path, data)
    with pytest.raises(InputError, match=re.escape(f"{tmp_path / MANIFEST_FILE}: {message}")):
        read_manifest(tmp_path)


def test_not_a_json_object_is_named(tmp_path):
    (tmp_path / MANIFEST_FILE).write_text('["format_version", 2]')
    with pytest.raises(InputError, match=re.escape("not a manifest (a JSON list, not an object)")):
        read_manifest(tmp_path)
    with pytest.raises(InputError, match=re.escape("here.json: not a manifest (a JSON str")):
        Manifest.from_dict("format_version", "here.json")


def test_what_the_manifest_answers():
    manifest = Manifest.from_dict(written())
    assert manifest.labeled_folds == [0, 1, 2]
    assert manifest.training_folds(0) == [1, 2]
    found, records = manifest.class_counts_of([1, 2])
    assert records == 6 and found.tolist() == counts(c0=4, c1=2, c2=2)
    assert manifest.labels_per_image([1, 2]) == pytest.approx(8 / 6)
    assert manifest.labels_per_image([]) == 0.0
    assert manifest.sources_only_in_fold(2) == [("b", 2)]
    assert manifest.sources_only_in_fold(0) == [] and manifest.sources_only_in_fold(7) == []
    assert manifest.source_names == ["a", "b"]
    assert manifest.fold_entry(1)["num_records"] == 4 and manifest.fold_entry(9) is None
    assert manifest.num_bytes == 1000 + 1001 + 1002
    assert manifest.summarize_folds()["fold_sizes"] == [4, 4, 2]
    mean, std = manifest.channel_statistics(exclude_folds=[0])
    assert mean == [10.0] * 4 and std == [0.0] * 4


def test_training_folds_refuses_what_cannot_train():
    manifest = Manifest.from_dict(written())
    with pytest.raises(InputError, match=re.escape("fold: 5 is not in the data's folds [0, 1, 2]")):
        manifest.training_folds(5)
    unlabeled = written()
    unlabeled["labeled"] = False
    with pytest.raises(InputError, match="have no labels"):
        Manifest.from_dict(unlabeled).training_folds(0)
    one = written()
    one["folds"] = one["folds"][:1]
    with pytest.raises(InputError, match="at least two folds"):
        Manifest.from_dict(one).training_folds(0)
    assert Manifest.from_dict(one).summarize_folds() is None


def test_the_fingerprint_follows_the_shards_digests_and_folds_only():
    data = written()
    first = Manifest.from_dict(data).fingerprint()
    moved = written()
    moved["source"]["images"] = "/elsewhere"
    moved["shards"].reverse()
    assert Manifest.from_dict(moved).fingerprint() == first
    changed = written()
    changed["shards"][0]["sha256"] = "f" * 64
    assert Manifest.from_dict(changed).fingerprint() != first
    assert len(first) == 64 and int(first, 16) >= 0


def test_the_manifest_module_imports_no_tensorflow():
    script = (
        "import sys, hpa_keras.data.manifest; "
        "sys.exit(any(name.split('.')[0] in ('tensorflow', 'keras') for name in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", script], check=False).returncode == 0


def test_class_counts_of_gives_integers():
    found, _ = Manifest.from_dict(written()).class_counts_of([0])
    assert found.dtype == np.int64
