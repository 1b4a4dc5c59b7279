"""Prediction from run folders: submissions, ensembles, image folders, TTA, CLI."""

import json

import numpy as np
import pandas as pd
import pytest

from hpa_keras.data.pipeline import dataset_ids
from hpa_keras.errors import InputError
from hpa_keras.inference.predict import predict_runs
from hpa_keras.inference.submission import (
    submission_labels,
    write_probabilities,
    write_submission,
)


def test_submission_rows_follow_thresholds_and_the_empty_row_rule(tmp_path):
    probabilities = np.array([[0.9, 0.2, 0.6], [0.1, 0.3, 0.2], [0.4, 0.5, 0.1]])
    thresholds = np.array([0.5, 0.4, 0.5])
    assert submission_labels(probabilities, thresholds) == [[0, 2], [1], [1]]
    assert submission_labels(probabilities, thresholds, require_label=False) == [[0, 2], [], [1]]
    path = tmp_path / "submission.csv"
    write_submission(path, ["a", "b", "c"], [[0, 2], [], [1]])
    assert path.read_text() == "Id,Predicted\na,0 2\nb,\nc,1\n"


def test_submission_covers_every_id_once_in_order(runs, training_records, tmp_path):
    ids, probabilities, thresholds = predict_runs([runs[0]], data=training_records)
    assert ids == dataset_ids(training_records) and len(set(ids)) == len(ids) == 40
    assert probabilities.shape == (40, 28) and probabilities.dtype == np.float32
    path = tmp_path / "submission.csv"
    write_submission(path, ids, submission_labels(probabilities, thresholds))
    table = pd.read_csv(path, keep_default_na=False)
    assert list(table["Id"]) == ids
    for row in table["Predicted"]:
        indices = [int(value) for value in row.split()]
        assert indices and all(0 <= index < 28 for index in indices)
        assert indices == sorted(set(indices))
    write_probabilities(tmp_path / "probs.csv", ids, probabilities)
    stored = pd.read_csv(tmp_path / "probs.csv")
    np.testing.assert_allclose(stored.iloc[:, 1:].to_numpy(), probabilities, atol=1e-6)


def test_an_ensemble_is_the_mean_of_its_runs_judged_by_the_thresholds_given(
    runs, training_records, tmp_path
):
    import json

    _, first, first_thresholds = predict_runs([runs[0]], data=training_records)
    _, second, _ = predict_runs([runs[1]], data=training_records)
    file = tmp_path / "thresholds.json"
    file.write_text(json.dumps({"thresholds": [0.3] * 28}))
    _, both, both_thresholds = predict_runs(runs, data=training_records, thresholds=file)
    assert not np.allclose(first, second)  # different seeds, different models
    np.testing.assert_allclose(both, (first + second) / 2, rtol=1e-6)
    np.testing.assert_allclose(both_thresholds, [0.3] * 28)
    # The mean of the runs' own thresholds is not offered: it was tuned for neither mean.
    with pytest.raises(InputError, match="ensemble's thresholds must be tuned"):
        predict_runs(runs, data=training_records)
    # One run with a thresholds file takes the file's.
    _, _, given = predict_runs([runs[0]], data=training_records, thresholds=file)
    assert not np.allclose(first_thresholds, given) and np.allclose(given, 0.3)


def test_an_image_folder_predicts_as_its_tfrecords(runs, training_records, tmp_path):
    images = training_records.parent / "data" / "train"
    ids, from_records, _ = predict_runs([runs[0]], data=training_records, tta=2)
    order = tmp_path / "ids.csv"
    order.write_text("Id,Predicted\n" + "".join(f"{sample_id},0\n" for sample_id in ids))
    folder_ids, from_folder, _ = predict_runs([runs[0]], images=images, ids_file=order, tta=2)
    assert folder_ids == ids
    np.testing.assert_allclose(from_folder, from_records, atol=1e-5)
    sorted_ids, _, _ = predict_runs([runs[0]], images=images)
    assert sorted_ids == sorted(ids)


def test_a_corrupt_image_in_a_folder_is_named(runs, training_records, tmp_path):
    import shutil

    source = training_records.parent / "data" / "train"
    images = tmp_path / "images"
    shutil.copytree(source, images)
    victim = sorted(images.glob("*_green.png"))[3]
    victim.write_bytes(victim.read_bytes()[:100])  # truncated
    with pytest.raises(InputError, match=f"{victim.name}: cannot be decoded"):
        predict_runs([runs[0]], images=images)


def test_bad_prediction_inputs_are_clear(runs, training_records, tmp_path):
    with pytest.raises(InputError, match="not a finished run folder"):
        predict_runs([tmp_path], data=training_records)
    with pytest.raises(InputError, match="exactly one of --data"):
        predict_runs([runs[0]])
    with pytest.raises(InputError, match="--tta must be"):
        predict_runs([runs[0]], data=training_records, tta=3)
    order = tmp_path / "ids.csv"
    order.write_text("Id,Predicted\nnot-there,0\n")
    images = training_records.parent / "data" / "train"
    with pytest.raises(InputError, match="Id not-there has no image files"):
        predict_runs([runs[0]], images=images, ids_file=order)


def test_cli_predict_writes_the_submission(runs, training_records, tmp_path, capsys):
    from hpa_keras.cli import main

    out = tmp_path / "submission.csv"
    argv = ["predict", "--run", *map(str, runs), "--data", str(training_records)]
    assert main([*argv, "--out", str(out)]) == 2
    assert "--thresholds FILE" in capsys.readouterr().err and not out.exists()
    argv += ["--thresholds", str(runs[0] / "thresholds.json")]
    assert main([*argv, "--out", str(out), "--tta", "4", "--allow-empty"]) == 0
    printed = capsys.readouterr().out
    assert "40 Ids" in printed and "an ensemble of 2 runs" in printed and "4 views" in printed
    assert len(pd.read_csv(out)) == 40
    assert main(["predict", "--run", str(tmp_path), "--data", str(training_records)]) == 2
    assert "neither a finished run (model.keras) nor a cv folder" in capsys.readouterr().err


def test_cli_predict_warns_when_labels_per_image_are_far_from_training(
    runs, training_records, tmp_path, capsys
):
    from hpa_keras.cli import main

    training = json.loads((runs[0] / "input.json").read_text())["labels_per_image"]
    assert 1 <= training <= 2  # the synthetic data's figure: one label per image stays within 2x
    argv = ["predict", "--run", str(runs[0]), "--data", str(training_records)]
    for value, per_image in ((0.0, 28.0), (1.0, 1.0)):  # every class; only the top class
        thresholds = tmp_path / f"thresholds{value}.json"
        thresholds.write_text(json.dumps({"thresholds": [value] * 28}))
        out = tmp_path / f"submission{value}.csv"
        assert main([*argv, "--thresholds", str(thresholds), "--out", str(out)]) == 0
        printed = capsys.readouterr()
        assert f"({per_image:.2f} per image, 0 empty)" in printed.out
        warning = f"warning: {per_image:.2f} labels per image predicted, {training:.2f} in the"
        assert (warning in printed.err) == (per_image == 28.0), printed.err


def test_one_run_given_as_a_string_is_that_run(runs, training_records):
    images = training_records.parent / "data" / "train"
    ids, as_string, thresholds = predict_runs(str(runs[0]), images=images)
    list_ids, as_list, list_thresholds = predict_runs([runs[0]], images=images)
    assert ids == list_ids and len(ids) == 40
    np.testing.assert_array_equal(as_string, as_list)
    np.testing.assert_array_equal(thresholds, list_thresholds)
    _, from_path, _ = predict_runs(runs[0], data=training_records)  # a Path alone too
    assert from_path.shape == (40, 28)


def test_predict_images_is_a_table_of_predict_runs_probabilities(runs, training_records):
    import hpa_keras
    from hpa_keras.classes import CLASS_NAMES

    images = training_records.parent / "data" / "train"
    ids, probabilities, thresholds = predict_runs([runs[0]], images=images, tta=2)
    run = hpa_keras.load_run(runs[0])
    table = hpa_keras.predict_images(run, images, tta=2)
    assert list(table.columns) == ["Id", "labels", "label_names", *CLASS_NAMES, "entropy"]
    assert list(table["Id"]) == ids  # a folder: its Ids sorted, as predict_runs
    np.testing.assert_allclose(table[list(CLASS_NAMES)].to_numpy(), probabilities, atol=1e-6)
    assert list(table["labels"]) == submission_labels(probabilities, thresholds)
    assert list(table["label_names"][0]) == [CLASS_NAMES[k] for k in table["labels"][0]]
    np.testing.assert_array_equal(table.attrs["thresholds"], thresholds)
    # A list: channel files and bare Ids, in the order given, each Id once; a folder path
    # works as well as a loaded run.
    chosen = [images / f"{ids[5]}_green.png", images / ids[2], images / f"{ids[5]}_red.png"]
    picked = hpa_keras.predict_images(str(runs[0]), chosen, tta=2)
    assert list(picked["Id"]) == [ids[5], ids[2]]
    np.testing.assert_allclose(
        picked[list(CLASS_NAMES)].to_numpy(), probabilities[[5, 2]], atol=1e-6
    )
    empty = hpa_keras.predict_images(run, images, tta=2, allow_empty=True)
    assert list(empty["labels"]) == submission_labels(probabilities, thresholds, False)


def test_predict_images_names_what_it_cannot_use(runs, training_records, tmp_path):
    import shutil

    from hpa_keras.inference.predict import predict_images

    source = training_records.parent / "data" / "train"
    sample_id = sorted(path.name[: -len("_red.png")] for path in source.glob("*_red.png"))[0]
    for channel in ("red", "green", "blue"):
        shutil.copy(source / f"{sample_id}_{channel}.png", tmp_path)
    with pytest.raises(InputError, match=f"{sample_id}_yellow.png: missing channel file"):
        predict_images(runs[0], [tmp_path / f"{sample_id}_red.png"])
    with pytest.raises(InputError, match="neither a folder, an image file"):
        predict_images(runs[0], [tmp_path / "nothing-here"])
    with pytest.raises(InputError, match="--tta must be"):
        predict_images(runs[0], source, tta=3)


def test_predict_images_reads_real_kaggle_files(runs, real_four_channel_folder):
    import hpa_keras

    folder = real_four_channel_folder / "train"
    ids = sorted(path.name[: -len("_green.png")] for path in folder.glob("*_green.png"))[:3]
    table = hpa_keras.predict_images(runs[0], [folder / f"{name}_blue.png" for name in ids])
    assert list(table["Id"]) == ids
    everything_ids, probabilities, _ = predict_runs(runs[0], images=folder)
    rows = [everything_ids.index(name) for name in ids]
    names = list(hpa_keras.load_run(runs[0]).class_names)
    np.testing.assert_allclose(table[names].to_numpy(), probabilities[rows], atol=1e-6)
    assert all(len(labels) >= 1 for labels in table["labels"])
