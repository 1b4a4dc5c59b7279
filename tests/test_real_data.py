"""The real HPA folders of ../shared in every form: converted, checked pixel for pixel, trained on.

Each test skips where ../shared is absent (a clone of the project alone).
"""

import cv2
import numpy as np
import pytest

from hpa_keras.cli import main
from hpa_keras.data.conversion import ConversionSettings, Source, make_tfrecords
from hpa_keras.data.images import index_image_folder, read_sample
from hpa_keras.data.labels import read_labels
from hpa_keras.data.splits import groups_across_folds
from hpa_keras.data.tfrecords import read_manifest, read_shard, verify_tfrecords
from hpa_keras.models import TINY_OPTIONS


def records_of(folder, manifest):
    return {
        record["id"]: record
        for shard in manifest.shards
        for record in read_shard(folder / shard["file"])
    }


def v18_stains_by_hand(folder, sample_id, size):
    """The v18 files read without the package: OpenCV's BGR, the stain's component(s)."""
    planes = []
    for channel, components in (("red", [2]), ("green", [1]), ("blue", [0]), ("yellow", [2, 1])):
        colour = cv2.imread(str(folder / f"{sample_id}_{channel}.jpg"), cv2.IMREAD_COLOR)
        if len(components) == 1:
            planes.append(colour[..., components[0]])
        else:
            summed = colour[..., 2].astype(np.uint32) + colour[..., 1] + 1
            planes.append((summed // 2).astype(np.uint8))
    return cv2.resize(np.stack(planes, axis=-1), (size, size), interpolation=cv2.INTER_AREA)


def test_real_v18_colour_jpegs_convert_to_their_stains(real_v18_folder, tmp_path, capsys):
    images, labels = real_v18_folder / "images", real_v18_folder / "HPAv18RBGY_wodpl.csv"
    out = tmp_path / "v18"
    argv = ["make-tfrecords", "--images", str(images), "--labels", str(labels), "--out", str(out),
            "--image-size", "512", "--folds", "2", "--workers", "2", "--quiet"]  # fmt: skip
    assert main(argv) == 2  # the list names 74,606 Ids; 7 of them are here
    error = capsys.readouterr().err
    assert "has no image files" in error and "pass --missing ignore" in error
    assert main([*argv, "--missing", "ignore"]) == 0
    printed = capsys.readouterr().out
    manifest = read_manifest(out)
    source = manifest.sources[0]
    assert source["name"] == "hpa-v18" and manifest.num_records == 7
    assert source["formats"] == {"rgb, stain in its display colour": 7}
    assert source["original_sizes"] == {"1728x1728": 1, "2048x2048": 6}  # both occur in v18
    assert source["ignored"] == {
        "num_ids": 1, "num_files": 4, "first_ids": ["800_A6_1"], "reason": "not in the label file"
    }  # fmt: skip
    assert "ignored 4 image files of 1 Ids" in printed
    assert "74599 Ids of" in printed and source["missing"]["num_ids"] == 74599
    assert manifest.grouping["num_groups"] == 2 and manifest.grouping["largest_group"] == 6
    records = records_of(out, manifest)
    antibodies = [sample_id.split("_")[0] for sample_id in records]
    assert groups_across_folds(antibodies, [r["fold"] for r in records.values()]) == 0
    for sample_id, side in (("10580_1610_C1_1", 2048), ("10814_50_A1_1", 1728)):
        np.testing.assert_array_equal(
            records[sample_id]["image"], v18_stains_by_hand(images, sample_id, 512)
        )
        assert records[sample_id]["original_size"] == (side, side)
    assert verify_tfrecords(out, progress=False) == []


def test_real_kaggle_and_v18_images_in_one_record_set(
    real_four_channel_folder, real_v18_folder, tmp_path
):
    sources = [
        Source(real_four_channel_folder / "train", real_four_channel_folder / "train.csv"),
        Source(real_v18_folder / "images", real_v18_folder / "HPAv18RBGY_wodpl.csv"),
    ]
    out = tmp_path / "both"
    manifest = make_tfrecords(
        out=out,
        sources=sources,
        settings=ConversionSettings(image_size=128, num_folds=5, missing="ignore"),
        workers=2,
        progress=False,
    )
    names = {source["name"]: source for source in manifest.sources}
    assert set(names) == {"kaggle", "hpa-v18"}
    assert names["kaggle"]["num_records"] == 80 and names["hpa-v18"]["num_records"] == 7
    assert names["kaggle"]["original_sizes"] == {"512x512": 80}
    assert names["kaggle"]["formats"] == {"grayscale": 80}
    records = records_of(out, manifest)
    v18 = [sample_id for sample_id in records if records[sample_id]["source"] == "hpa-v18"]
    assert len(v18) == 7
    assert (
        len({records[sample_id]["fold"] for sample_id in v18 if sample_id.startswith("10580")}) == 1
    )
    kaggle_index = index_image_folder(real_four_channel_folder / "train")
    first = read_labels(real_four_channel_folder / "train.csv").ids[0]
    np.testing.assert_array_equal(records[first]["image"], read_sample(kaggle_index[first], 128))
    assert records[first]["source"] == "kaggle"


def test_real_2021_fields_read_as_the_2021_scheme(real_2021_folder, tmp_path):
    out = tmp_path / "fields"
    manifest = make_tfrecords(
        real_2021_folder / "images",
        out,
        labels=real_2021_folder / "labels.csv",
        settings=ConversionSettings(image_size=256, num_folds=2),
        workers=2,
        progress=False,
    )
    assert manifest.scheme == "hpa2021" and manifest.num_classes == 19
    assert manifest.sources[0]["original_sizes"] == {"2048x2048": 5}
    records = records_of(out, manifest)
    assert records["a34d8680-bb99-11e8-b2b9-ac1f6b6435d0"]["labels"] == [18]  # Negative
    index = index_image_folder(real_2021_folder / "images")
    field = "000a6c98-bb9b-11e8-b2b9-ac1f6b6435d0"
    planes = [
        cv2.imread(str(real_2021_folder / "images" / f"{field}_{c}.png"), cv2.IMREAD_UNCHANGED)
        for c in ("red", "green", "blue", "yellow")
    ]
    by_hand = cv2.resize(np.stack(planes, axis=-1), (256, 256), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(records[field]["image"], by_hand)
    np.testing.assert_array_equal(by_hand, read_sample(index[field], 256))


@pytest.mark.parametrize("folds", [5])
def test_one_short_training_step_and_prediction_on_real_samples(
    real_four_channel_folder, real_v18_folder, tmp_path, folds
):
    from hpa_keras.inference.input_shift import input_shift_warning
    from hpa_keras.inference.predict import predict_runs
    from hpa_keras.training.config import resolve_config
    from hpa_keras.training.fit import fit

    records = tmp_path / "records"
    make_tfrecords(
        real_four_channel_folder / "train",
        records,
        labels=real_four_channel_folder / "train.csv",
        settings=ConversionSettings(image_size=128, num_folds=folds),
        workers=2,
        progress=False,
    )
    run = tmp_path / "run"
    settings = {
        "data": str(records), "out": str(run), "epochs": 1, "batch_size": 8,
        "steps_per_epoch": 2, "crop": 96, "model_options": TINY_OPTIONS["gapnet"],
        "verbose": 0, "tensorboard": False,
    }  # fmt: skip
    summary = fit(resolve_config(settings))
    assert summary["epochs"] == 1
    ids, probabilities, thresholds = predict_runs([run], data=records, folds=[0])
    assert probabilities.shape == (len(ids), 28) and np.all(np.isfinite(probabilities))
    order = tmp_path / "ids.csv"
    order.write_text("Id,Predicted\n" + "".join(f"{sample_id},0\n" for sample_id in ids))
    _, from_files, _ = predict_runs(
        [run], images=real_four_channel_folder / "train", ids_file=order
    )
    np.testing.assert_allclose(from_files, probabilities, atol=1e-5)
    # The stain check: the run's own images and the HPA's v18 release pass it.
    assert input_shift_warning([run], images=real_four_channel_folder / "train") is None
    assert input_shift_warning([run], images=real_v18_folder / "images") is None


def test_cv_of_real_samples_predicts_every_image_out_of_fold(real_four_channel_folder, tmp_path):
    """``cv`` on the 80 real 512 px samples (resized to 64 px, trained on 48 px crops): every
    labeled image gets out-of-fold probabilities once, and evaluating the cv on its own records
    reproduces them."""
    import pandas as pd

    from hpa_keras.inference.evaluate import evaluate_runs
    from hpa_keras.training.config import resolve_config
    from hpa_keras.workflows.cv import cross_validate

    records = tmp_path / "records"
    make_tfrecords(
        real_four_channel_folder / "train",
        records,
        labels=real_four_channel_folder / "train.csv",
        settings=ConversionSettings(image_size=64, num_folds=2),
        workers=2,
        progress=False,
    )
    settings = {
        "data": str(records), "epochs": 1, "batch_size": 8, "steps_per_epoch": 2, "crop": 48,
        "model_options": TINY_OPTIONS["gapnet"], "verbose": 0, "tensorboard": False,
    }  # fmt: skip
    cv = tmp_path / "cv"
    summary = cross_validate(resolve_config(settings), cv)
    truth = read_labels(real_four_channel_folder / "train.csv")
    oof = pd.read_csv(cv / "oof.csv", keep_default_na=False)
    assert sorted(oof["Id"]) == sorted(truth.ids) and summary["samples"] == len(truth)
    assert sorted(set(oof["fold"])) == [0, 1]
    evaluation = evaluate_runs([cv], data=records)
    by_id = oof.set_index("Id").loc[list(evaluation.ids)]
    np.testing.assert_allclose(
        evaluation.probabilities, by_id[[str(k) for k in range(28)]].to_numpy(), atol=1e-5
    )
    # Its calibration and label sets come from the real out-of-fold predictions too.
    from hpa_keras.inference.label_sets import conformal_for, out_of_fold_predictions
    from hpa_keras.runs.documents import read_calibration

    calibration = read_calibration(cv)
    labels, probabilities, _ = out_of_fold_predictions(cv)
    np.testing.assert_array_equal(
        labels, truth.multi_hot()[[truth.ids.index(i) for i in oof["Id"]]]
    )
    assert calibration.num_samples == len(truth) == len(labels)
    calibrated = calibration.apply(probabilities)
    assert calibrated.shape == probabilities.shape and np.all((calibrated >= 0) & (calibrated <= 1))
    sets = conformal_for([cv], 0.9)
    assert sets.images == len(truth) and 0 <= sets.thresholds.min() <= sets.thresholds.max() <= 1
    chosen = evaluate_runs([cv], data=records, folds=[0])
    assert 0 <= chosen.summary()["ece_calibrated"] <= 1
    assert chosen.summary()["label_sets"]["coverage"] == 0.9
