"""Several sources in one record set, grouped folds, crops and tiles, 16-bit, the 2021 scheme.

Built on the synthetic generator (no ../shared needed); the real folders are
exercised in test_real_data.py.
"""

import json
import shutil

import cv2
import numpy as np
import pytest

from hpa_keras.classes import CHANNELS, map_2018_to_2021
from hpa_keras.cli import main
from hpa_keras.data.conversion import ConversionSettings, Source, make_tfrecords
from hpa_keras.data.labels import read_labels, write_labels
from hpa_keras.data.pipeline import dataset_ids, load_dataset
from hpa_keras.data.splits import groups_across_folds
from hpa_keras.data.tfrecords import read_shard, verify_tfrecords
from hpa_keras.errors import InputError
from hpa_keras.models import TINY_OPTIONS
from hpa_keras.synthetic.generator import DemoDataSettings, make_demo_data


def synthetic(folder, count, size, seed, bit_depth=8):
    make_demo_data(
        folder,
        DemoDataSettings(
            num_samples=count,
            image_size=size,
            seed=seed,
            test_fraction=0.0,
            label_balance=0.5,
            bit_depth=bit_depth,
        ),
        workers=1,
        progress=False,
    )
    return folder


def as_v18(folder, destination, fields_per_antibody=3):
    """The synthetic training images renamed to HPA v18 Ids, three fields per antibody."""
    table = read_labels(folder / "train.csv")
    images = destination / "images"
    images.mkdir(parents=True)
    ids = []
    for position, sample_id in enumerate(table.ids):
        antibody, field = 1000 + position // fields_per_antibody, position % fields_per_antibody
        new_id = f"{antibody}_1610_C1_{field + 1}"
        for channel in CHANNELS:
            shutil.copy(
                folder / "train" / f"{sample_id}_{channel}.png", images / f"{new_id}_{channel}.png"
            )
        ids.append(new_id)
    write_labels(destination / "labels.csv", ids, table.labels)
    return images, destination / "labels.csv"


@pytest.fixture(scope="module")
def two_sources(tmp_path_factory):
    """A 'kaggle-like' folder of 24 samples at 64 px and a v18-named one of 18 at 96 px."""
    root = tmp_path_factory.mktemp("sources")
    first = synthetic(root / "first", 24, 64, seed=1)
    second = synthetic(root / "second", 18, 96, seed=2)
    images, labels = as_v18(second, root / "v18")
    return {
        "first": (first / "train", first / "train.csv"),
        "v18": (images, labels),
        "root": root,
    }


def convert_two(two_sources, out, **settings):
    sources = [
        Source(*two_sources["first"], name="kaggle"),
        Source(*two_sources["v18"]),
    ]
    return make_tfrecords(
        out=out,
        sources=sources,
        settings=ConversionSettings(image_size=64, num_folds=3, **settings),
        workers=1,
        progress=False,
    )


def test_two_sources_make_one_record_set_with_grouped_folds(two_sources, tmp_path):
    manifest = convert_two(two_sources, tmp_path / "out")
    assert [source["name"] for source in manifest.sources] == ["kaggle", "hpa-v18"]
    assert manifest.num_records == 42 and manifest.fold_method.startswith("grouped")
    assert manifest.sources[1]["original_sizes"] == {"96x96": 18}
    assert manifest.sources[0]["original_sizes"] == {"64x64": 24}
    assert manifest.grouping["largest_group"] == 3
    records = [
        record
        for shard in manifest.shards
        for record in read_shard(tmp_path / "out" / shard["file"])
    ]
    by_id = {record["id"]: record for record in records}
    v18_ids = read_labels(two_sources["v18"][1]).ids
    for sample_id in v18_ids:
        record = by_id[sample_id]
        assert record["source"] == "hpa-v18" and record["original_size"] == (96, 96)
    antibodies = [sample_id.split("_")[0] for sample_id in v18_ids]
    folds = [by_id[sample_id]["fold"] for sample_id in v18_ids]
    assert groups_across_folds(antibodies, folds) == 0
    # Shards never mix sources or folds; a source of a fold reads alone.
    assert all(shard["source"] in shard["file"] for shard in manifest.shards)
    only_v18 = dataset_ids(tmp_path / "out", folds=[0], sources="hpa-v18")
    assert only_v18 and all(sample_id in v18_ids for sample_id in only_v18)
    assert verify_tfrecords(tmp_path / "out", progress=False) == []
    # The v18 pixels were area-resized from 96 to 64, as the converter resizes.
    from hpa_keras.data.images import index_image_folder, read_sample

    index = index_image_folder(two_sources["v18"][0])
    np.testing.assert_array_equal(by_id[v18_ids[0]]["image"], read_sample(index[v18_ids[0]], 64))


def test_a_group_column_overrides_the_rule(two_sources, tmp_path):
    table = read_labels(two_sources["first"][1])
    labels = tmp_path / "grouped.csv"
    lines = ["Id,Target,Group"] + [
        f"{sample_id},{' '.join(map(str, target))},lab{row % 4}"
        for row, (sample_id, target) in enumerate(zip(table.ids, table.labels, strict=True))
    ]
    labels.write_text("\n".join(lines) + "\n")
    manifest = make_tfrecords(
        two_sources["first"][0], tmp_path / "out", labels=labels,
        settings=ConversionSettings(num_folds=3), workers=1, progress=False,
    )  # fmt: skip
    assert (
        manifest.grouping["num_groups"] == 4 and "'Group' column" in manifest.grouping["rule"]
    )
    records = {
        r["id"]: r["fold"]
        for s in manifest.shards
        for r in read_shard(tmp_path / "out" / s["file"])
    }
    assert (
        groups_across_folds(
            [f"lab{row % 4}" for row in range(len(table))], [records[i] for i in table.ids]
        )
        == 0
    )


def test_cli_sources_and_their_errors(two_sources, tmp_path, capsys):
    (first_images, first_labels), (v18_images, v18_labels) = (
        two_sources["first"],
        two_sources["v18"],
    )
    out = tmp_path / "cli"
    argv = ["make-tfrecords", "--images", str(first_images), "--labels", str(first_labels),
            "--images", str(v18_images), "--labels", str(v18_labels), "--out", str(out),
            "--image-size", "64", "--folds", "3", "--workers", "1", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "hpa-v18: 18 records (grayscale; 18 at 96x96)" in printed
    assert "grouped multilabel stratified folds" in printed
    assert main(argv[:5] + ["--images", str(v18_images), "--out", str(tmp_path / "x")]) == 2
    assert "2 --images but 1 --labels" in capsys.readouterr().err
    same = ["make-tfrecords", "--images", str(first_images), "--labels", str(first_labels),
            "--images", str(first_images), "--labels", str(first_labels),
            "--out", str(tmp_path / "y"), "--quiet"]  # fmt: skip
    assert main(same) == 2
    error = capsys.readouterr().err
    assert "both named" in error or "is in" in error
    assert not (tmp_path / "y" / "manifest.json").exists()


def fit_settings(data, out, **extra):
    return {
        "data": str(data),
        "out": str(out),
        "epochs": 1,
        "batch_size": 4,
        "model_options": TINY_OPTIONS["gapnet"],
        "verbose": 0,
        "tensorboard": False,
        **extra,
    }


def test_validation_on_one_source(two_sources, tmp_path):
    from hpa_keras.inference.evaluate import evaluate_runs
    from hpa_keras.scoring.evaluation import summary_line
    from hpa_keras.training.config import resolve_config
    from hpa_keras.training.fit import fit

    records = tmp_path / "records"
    convert_two(two_sources, records)
    with pytest.raises(InputError, match="'nowhere' is not a source"):
        fit(resolve_config(fit_settings(records, tmp_path / "bad", validate_source="nowhere")))
    run = tmp_path / "run"
    fit(resolve_config(fit_settings(records, run, validate_source="kaggle")))
    document = json.loads((run / "thresholds.json").read_text())
    kaggle_fold0 = dataset_ids(records, folds=[0], sources="kaggle")
    assert document["num_validation_samples"] == len(kaggle_fold0)
    evaluation = evaluate_runs([run], data=records)  # the run's fold and source by default
    assert evaluation.ids == kaggle_fold0
    assert evaluation.summary()["macro_f1"] == pytest.approx(document["macro_f1_tuned"], abs=1e-9)
    # The fold named: still the source fit scored, so fold 0 has one figure, not two.
    named = evaluate_runs([run], data=records, folds=[0])
    assert named.ids == kaggle_fold0 and len(dataset_ids(records, folds=[0])) > len(kaggle_fold0)
    assert named.summary()["macro_f1"] == pytest.approx(document["macro_f1_tuned"], abs=1e-9)
    assert f"{len(kaggle_fold0)} images (fold 0; kaggle only)" in summary_line(named)
    every_source = evaluate_runs([run], data=records, folds=[0], sources=["kaggle", "hpa-v18"])
    assert every_source.ids == dataset_ids(records, folds=[0])
    # At the command line: --source all (or names) overrides the run's validation source.
    from hpa_keras.cli import main

    for choice, count in ((["all"], len(dataset_ids(records, folds=[0]))), (["kaggle"], None)):
        out = tmp_path / f"report-{choice[0]}"
        argv = ["evaluate", "--run", str(run), "--data", str(records), "--out", str(out)]
        assert main([*argv, "--source", *choice]) == 0
        summary = json.loads((out / "summary.json").read_text())
        assert summary["samples"] == (count or len(kaggle_fold0)), summary


def test_fit_says_what_it_trains_and_reports_a_source_left_to_validation(
    two_sources, tmp_path, capsys
):
    from hpa_keras.training.config import resolve_config
    from hpa_keras.training.fit import fit

    one_antibody = as_v18(two_sources["root"] / "second", tmp_path / "v18", fields_per_antibody=18)
    sources = [Source(*two_sources["first"], name="kaggle"), Source(*one_antibody)]
    records = tmp_path / "records"
    manifest = make_tfrecords(
        out=records, sources=sources, workers=1, progress=False,
        settings=ConversionSettings(image_size=64, num_folds=3),
    )  # fmt: skip
    fold = next(entry for entry in manifest.folds if "hpa-v18" in entry["sources"])
    assert fold["sources"]["hpa-v18"]["num_records"] == 18  # grouped: one antibody, one fold
    assert manifest.sources_only_in_fold(fold["fold"]) == [("hpa-v18", 18)]
    others = [entry["fold"] for entry in manifest.folds if entry is not fold]
    assert all(manifest.sources_only_in_fold(other) == [] for other in others)
    run = tmp_path / "run"
    settings = fit_settings(records, run, fold=fold["fold"], validate_source="kaggle", verbose=2)
    capsys.readouterr()
    fit(resolve_config(settings), config_file="my-settings.yaml")
    printed = capsys.readouterr()
    training = sum(entry["num_records"] for entry in manifest.folds if entry is not fold)
    validation = fold["sources"]["kaggle"]["num_records"]
    assert printed.out.splitlines()[0] == (
        f"fit: gapnet at 64 px; {training} training images (folds {others[0]}, {others[1]}), "
        f"{validation} validation images (fold {fold['fold']}, kaggle only); settings from "
        f"my-settings.yaml; into {run}"
    )
    assert (
        f"warning: all 18 hpa-v18 records are in fold {fold['fold']}, the validation fold: "
        "training sees none of that source, and validation leaves them out "
        "(--validate-source kaggle)"
    ) in printed.err
    assert json.loads((run / "input.json").read_text())["labels_per_image"] == pytest.approx(
        sum(sum(entry["class_counts"]) for entry in manifest.folds if entry is not fold)
        / training
    )


@pytest.fixture(scope="module")
def large_fields(tmp_path_factory):
    """30 samples at 64 px, stored at 64; the runs below train on 32 px crops."""
    root = tmp_path_factory.mktemp("crops")
    data = synthetic(root / "data", 30, 64, seed=3)
    make_tfrecords(
        data / "train", root / "records", labels=data / "train.csv",
        settings=ConversionSettings(num_folds=3), workers=1, progress=False,
    )  # fmt: skip
    return data, root / "records"


@pytest.mark.parametrize("tiles", [0, 2])
def test_crops_train_and_fields_or_tiles_predict(large_fields, tmp_path, tiles):
    """A run trained on 32 px crops of 64 px fields sees whole fields (tiles 0) or 2x2 tiles;
    its thresholds were tuned on exactly what evaluate and predict then compute."""
    import hpa_keras
    from hpa_keras.inference.evaluate import evaluate_runs
    from hpa_keras.inference.predict import predict_runs
    from hpa_keras.training.config import resolve_config
    from hpa_keras.training.fit import fit

    data, records = large_fields
    run = tmp_path / f"run{tiles}"
    fit(resolve_config(fit_settings(records, run, crop=32, tiles=tiles)))
    loaded = hpa_keras.load_run(run)
    assert tuple(loaded.model.input.shape[1:3]) == (None, None)
    assert (loaded.image_size, loaded.crop, loaded.tiles) == (64, 32, tiles)
    document = json.loads((run / "thresholds.json").read_text())
    evaluation = evaluate_runs([run], data=records)
    assert evaluation.summary()["macro_f1"] == pytest.approx(document["macro_f1_tuned"], abs=1e-9)
    ids, from_records, _ = predict_runs([run], data=records, tta=2)
    order = tmp_path / "ids.csv"
    order.write_text("Id,Predicted\n" + "".join(f"{sample_id},0\n" for sample_id in ids))
    _, from_images, _ = predict_runs([run], images=data / "train", ids_file=order, tta=2)
    np.testing.assert_allclose(from_images, from_records, atol=1e-5)


def test_tiles_average_the_model_over_the_grid():
    import keras

    from hpa_keras.inference.tta import DihedralTTA, tile_offsets

    assert tile_offsets(64, 32, 2) == [0, 32] and tile_offsets(64, 32, 3) == [0, 16, 32]
    assert tile_offsets(64, 32, 1) == [16]
    inputs = keras.Input((None, None, 2))
    pooled = keras.layers.GlobalMaxPooling2D()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="sigmoid")(pooled))
    images = np.random.default_rng(0).random((2, 64, 64, 2)).astype("float32")
    expected = np.mean(
        [
            model.predict(images[:, top : top + 32, left : left + 32], verbose=0)
            for top in (0, 16, 32)
            for left in (0, 16, 32)
        ],
        axis=0,
    )
    got = DihedralTTA(model, views=1, tiles=3, tile_size=32).predict(images, verbose=0)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_a_model_of_another_size_than_the_records(large_fields, tmp_path):
    """Records at 64 px, a model at 48: the pipeline resizes as the converter and
    predict --images do, so both inputs give the same predictions."""
    from hpa_keras.inference.predict import predict_runs
    from hpa_keras.training.config import resolve_config
    from hpa_keras.training.fit import fit

    data, records = large_fields
    run = tmp_path / "run48"
    fit(resolve_config(fit_settings(records, run, image_size=48)))
    ids, from_records, _ = predict_runs([run], data=records)
    order = tmp_path / "ids.csv"
    order.write_text("Id,Predicted\n" + "".join(f"{sample_id},0\n" for sample_id in ids))
    _, from_images, _ = predict_runs([run], images=data / "train", ids_file=order)
    np.testing.assert_allclose(from_images, from_records, atol=1e-5)


def test_sixteen_bit_records_train_and_predict(tmp_path):
    from hpa_keras.inference.predict import predict_runs
    from hpa_keras.models.layers import ChannelStandardization
    from hpa_keras.training.config import resolve_config
    from hpa_keras.training.fit import fit

    data = synthetic(tmp_path / "data", 18, 32, seed=4, bit_depth=16)
    records = tmp_path / "records16"
    manifest = make_tfrecords(
        data / "train", records, labels=data / "train.csv",
        settings=ConversionSettings(num_folds=3, bit_depth=16), workers=1, progress=False,
    )  # fmt: skip
    assert manifest.bit_depth == 16 and max(manifest.channel_mean) > 255
    images, _ = next(iter(load_dataset(records, training=False, normalization="none")))
    assert images.dtype == "uint16"
    stored = cv2.imread(str(next((data / "train").glob("*_green.png"))), cv2.IMREAD_UNCHANGED)
    assert stored.dtype == np.uint16
    unit, _ = next(iter(load_dataset(records, training=False, normalization="unit")))
    assert float(np.min(unit)) >= 0 and float(np.max(unit)) <= 1
    run = tmp_path / "run16"
    fit(resolve_config(fit_settings(records, run)))
    ids, from_records, _ = predict_runs([run], data=records)
    order = tmp_path / "ids.csv"
    order.write_text("Id,Predicted\n" + "".join(f"{sample_id},0\n" for sample_id in ids))
    _, from_images, _ = predict_runs([run], images=data / "train", ids_file=order)
    np.testing.assert_allclose(from_images, from_records, atol=1e-5)
    standardization = ChannelStandardization([30000.0] * 4, [1000.0] * 4)
    out = standardization(np.full((1, 2, 2, 4), 31000, np.uint16))
    np.testing.assert_allclose(np.asarray(out), 1.0)
    # 8-bit records for this 16-bit run are refused, naming both
    eight = tmp_path / "records8"
    make_tfrecords(
        data / "train", eight, labels=data / "train.csv",
        settings=ConversionSettings(num_folds=3), workers=1, progress=False,
    )  # fmt: skip
    with pytest.raises(InputError, match="8-bit records, but .* was trained on 16-bit ones"):
        predict_runs([run], data=eight)


def test_bit_depth_mistakes_are_named(tmp_path):
    data = synthetic(tmp_path / "data", 6, 32, seed=5)
    with pytest.raises(InputError, match="an 8-bit image, but --bit-depth 16 keeps 16 bits"):
        make_tfrecords(
            data / "train", tmp_path / "a", labels=data / "train.csv",
            settings=ConversionSettings(num_folds=2, bit_depth=16), workers=1, progress=False,
        )  # fmt: skip
    assert not (tmp_path / "a" / "manifest.json").exists()
    sample = read_labels(data / "train.csv").ids[0]
    green = data / "train" / f"{sample}_green.png"
    cv2.imwrite(str(green), (cv2.imread(str(green), cv2.IMREAD_UNCHANGED).astype(np.uint16) * 257))
    with pytest.raises(InputError, match=f"{green.name}: 16-bit, but .*_red.png is 8-bit"):
        make_tfrecords(
            data / "train", tmp_path / "b", labels=data / "train.csv",
            settings=ConversionSettings(num_folds=2), workers=1, progress=False,
        )  # fmt: skip


def test_a_truncated_jpeg_is_named(tmp_path, capsys):
    data = synthetic(tmp_path / "data", 6, 32, seed=6)
    sample = read_labels(data / "train.csv").ids[2]
    png = data / "train" / f"{sample}_yellow.png"
    jpeg = png.with_suffix(".jpg")
    cv2.imwrite(str(jpeg), cv2.imread(str(png), cv2.IMREAD_UNCHANGED))
    png.unlink()
    jpeg.write_bytes(jpeg.read_bytes()[: len(jpeg.read_bytes()) // 3])
    status = main(["make-tfrecords", "--images", str(data / "train"), "--labels",
                   str(data / "train.csv"), "--out", str(tmp_path / "out"), "--folds", "2",
                   "--workers", "1", "--quiet"])  # fmt: skip
    error = capsys.readouterr().err
    assert status == 2 and str(jpeg) in error and "Traceback" not in error


def test_the_2021_scheme_end_to_end(tmp_path):
    """2021 labels (19 classes) give 19-class records, a 19-output model, 19 thresholds,
    2021 class names in the evaluation, and ID,Label predictions."""
    from hpa_keras.inference.evaluate import evaluate_runs
    from hpa_keras.training.config import resolve_config
    from hpa_keras.training.fit import fit

    data = synthetic(tmp_path / "data", 24, 32, seed=7)
    table = read_labels(data / "train.csv")
    mapped = [map_2018_to_2021(labels) or [18] for labels in table.labels]  # none: Negative
    labels = tmp_path / "train2021.csv"
    write_labels(labels, table.ids, mapped, scheme="hpa2021")
    records = tmp_path / "records"
    manifest = make_tfrecords(
        data / "train", records, labels=labels,
        settings=ConversionSettings(num_folds=3), workers=1, progress=False,
    )  # fmt: skip
    assert manifest.scheme == "hpa2021" and manifest.num_classes == 19
    assert manifest.class_names[18] == "Negative" and len(manifest.class_counts) == 19
    _, targets = next(iter(load_dataset(records, training=False)))
    assert targets.shape[1] == 19
    run = tmp_path / "run"
    fit(resolve_config(fit_settings(records, run)))
    document = json.loads((run / "thresholds.json").read_text())
    assert (
        len(document["thresholds"]) == 19 and document["class_names"][8] == "Intermediate filaments"
    )
    evaluation = evaluate_runs([run], data=records)
    assert list(evaluation.class_table()["name"])[17] == "Vesicles and punctate cytosolic patterns"
    out = tmp_path / "predicted.csv"
    assert main(["predict", "--run", str(run), "--data", str(records), "--out", str(out)]) == 0
    assert out.read_text().startswith("ID,Label\n")
    assert read_labels(out).scheme == "hpa2021"
