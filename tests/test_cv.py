"""Cross-validation: every fold, out-of-fold predictions and thresholds, the fold ensemble."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from hpa_keras.errors import InputError
from hpa_keras.scoring.metrics import macro_f1

VIEWS = 2  # not the default, so that every consumer must take the cv's views


def _config(records, **changes):
    from hpa_keras.models import TINY_OPTIONS
    from hpa_keras.training.config import resolve_config

    settings = {
        "data": str(records),
        "epochs": 1,
        "batch_size": 8,
        "model_options": TINY_OPTIONS["gapnet"],
        "tta": VIEWS,
        "verbose": 0,
        "tensorboard": False,
        **changes,
    }
    return resolve_config(settings)


@pytest.fixture(scope="session")
def cv_folder(training_records, tmp_path_factory):
    """A finished 3-fold cv of tiny one-epoch GAP-Nets on ``training_records``."""
    from hpa_keras.workflows.cv import cross_validate

    out = tmp_path_factory.mktemp("cv") / "cv"
    cross_validate(_config(training_records), out)
    return out


def _oof(cv_folder):
    return pd.read_csv(cv_folder / "oof.csv", keep_default_na=False)


def test_oof_covers_every_training_image_once_from_the_model_that_did_not_train_on_it(
    cv_folder, training_records
):
    from hpa_keras.data.pipeline import dataset_ids
    from hpa_keras.inference.predict import predict_ids

    table = _oof(cv_folder)
    assert sorted(table["Id"]) == sorted(dataset_ids(training_records))
    assert table["Id"].is_unique and list(table.columns[2:]) == [str(k) for k in range(28)]
    folds = {
        sample_id: fold for fold in (0, 1, 2) for sample_id in dataset_ids(training_records, [fold])
    }
    assert all(
        folds[sample_id] == fold for sample_id, fold in zip(table["Id"], table["fold"], strict=True)
    )
    for fold in (0, 1, 2):
        rows = table[table["fold"] == fold]
        expected, _ = predict_ids(
            [cv_folder / f"fold-{fold}"], list(rows["Id"]), data=training_records,
            folds=[fold], tta=VIEWS,
        )  # fmt: skip
        np.testing.assert_allclose(rows.iloc[:, 2:].to_numpy(), expected, atol=2e-6)


def test_thresholds_are_tuned_on_all_out_of_fold_predictions(cv_folder, training_records):
    from hpa_keras.data.pipeline import dataset_labels
    from hpa_keras.data.tfrecords import read_manifest
    from hpa_keras.scoring.thresholds import (
        MIN_TUNING_POSITIVES,
        THRESHOLD_STRATEGIES,
        search_thresholds,
    )

    table = _oof(cv_folder)
    ids, labels = dataset_labels(training_records, [0, 1, 2], None)
    scores = table.set_index("Id").loc[ids].iloc[:, 1:].to_numpy()
    document = json.loads((cv_folder / "thresholds.json").read_text())
    assert document["strategy"] == "per_class" and document["views"] == VIEWS
    assert document["num_oof_samples"] == 40 and document["folds"] == [0, 1, 2]
    manifest = read_manifest(training_records)
    frequencies = np.asarray(manifest.class_counts) / manifest.num_records
    assert set(document["by_strategy"]) == set(THRESHOLD_STRATEGIES)
    for strategy, entry in document["by_strategy"].items():
        expected = search_thresholds(strategy, labels, scores, frequencies)
        # oof.csv keeps 6 decimals; a threshold may sit exactly on a rounded score
        np.testing.assert_allclose(entry["thresholds"], expected, atol=1e-5)
        assert entry["oof_macro_f1"] == pytest.approx(
            macro_f1(labels, scores >= np.asarray(entry["thresholds"])), abs=1e-3
        )
    assert document["thresholds"] == document["by_strategy"]["per_class"]["thresholds"]
    # 40 images: classes with fewer than 3 positives keep no threshold of their own, named.
    support = labels.sum(axis=0)
    fallbacks = {entry["index"]: entry for entry in document["fallbacks"]}
    few = {index for index in range(len(support)) if support[index] < MIN_TUNING_POSITIVES}
    assert few and few <= set(fallbacks)
    for index, entry in fallbacks.items():
        assert entry["name"] == document["class_names"][index]
        assert document["thresholds"][index] == entry["threshold"]
        assert entry["cause"] == ("few_positives" if index in few else "marks_every_image")


def test_summary_figures_are_recomputable(cv_folder, training_records):
    from hpa_keras.data.pipeline import dataset_labels

    summary = json.loads((cv_folder / "cv_summary.json").read_text())
    thresholds = np.asarray(json.loads((cv_folder / "thresholds.json").read_text())["thresholds"])
    table = _oof(cv_folder).set_index("Id")
    own_scores = []
    for entry in summary["folds"]:
        fold = entry["fold"]
        ids, labels = dataset_labels(training_records, [fold], None)
        scores = table.loc[ids].iloc[:, 1:].to_numpy()
        run = json.loads((cv_folder / f"fold-{fold}" / "thresholds.json").read_text())
        # The fold's own figure is the one its ThresholdSearch reported: same views, same model.
        assert entry["macro_f1_own_thresholds"] == pytest.approx(run["macro_f1_tuned"], abs=1e-3)
        assert entry["macro_f1_oof_thresholds"] == pytest.approx(
            macro_f1(labels, scores >= thresholds), abs=1e-3
        )
        own_scores.append(entry["macro_f1_own_thresholds"])
    assert summary["fold_macro_f1_mean"] == pytest.approx(np.mean(own_scores))
    assert summary["fold_macro_f1_std"] == pytest.approx(np.std(own_scores, ddof=1))
    assert (cv_folder / "report" / "report.html").is_file()


def test_cross_fitted_score_uses_other_folds_thresholds_only():
    from hpa_keras.scoring.thresholds import best_thresholds
    from hpa_keras.workflows.cv import cross_fitted_macro_f1

    rng = np.random.default_rng(3)
    labels = rng.random((60, 4)) < 0.3
    scores = np.clip(labels * 0.3 + rng.random((60, 4)) * 0.7, 0, 1)
    fold_of = np.repeat([0, 1, 2], 20)
    decided = np.zeros_like(labels)
    for fold in range(3):
        inside = fold_of == fold
        decided[inside] = scores[inside] >= best_thresholds(labels[~inside], scores[~inside])[0]
    value = cross_fitted_macro_f1(labels, scores, fold_of, "per_class", None)
    assert value == pytest.approx(macro_f1(labels, decided))


def test_predict_with_a_cv_folder_is_the_fold_mean_with_its_thresholds(cv_folder, training_records):
    from hpa_keras.inference.predict import predict_runs

    ids, ensemble, thresholds = predict_runs([cv_folder], data=training_records)
    folds = []
    for fold in (0, 1, 2):
        _, scores, _ = predict_runs([cv_folder / f"fold-{fold}"], data=training_records, tta=VIEWS)
        folds.append(scores)
    np.testing.assert_allclose(ensemble, np.mean(folds, axis=0), atol=1e-6)
    document = json.loads((cv_folder / "thresholds.json").read_text())
    np.testing.assert_allclose(thresholds, document["thresholds"])
    _, one_view, _ = predict_runs([cv_folder], data=training_records, tta=1)
    assert not np.allclose(one_view, ensemble)  # the default was the cv's two views


def test_load_run_of_a_cv_folder_is_its_ensemble_with_out_of_fold_thresholds(
    cv_folder, training_records
):
    import hpa_keras
    from hpa_keras.inference.predict import predict_runs

    ensemble = hpa_keras.load_run(cv_folder)
    document = json.loads((cv_folder / "thresholds.json").read_text())
    np.testing.assert_allclose(ensemble.thresholds, document["thresholds"])
    assert ensemble.views == VIEWS and ensemble.folder == cv_folder
    assert [member.folder for member in ensemble.members] == [
        cv_folder / f"fold-{fold}" for fold in (0, 1, 2)
    ]
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 4), dtype=np.uint8)
    members = [member.model.predict(images, verbose=0) for member in ensemble.members]
    np.testing.assert_allclose(
        ensemble.model.predict(images, verbose=0), np.mean(members, axis=0), atol=1e-6
    )
    text = repr(ensemble)
    assert "ensemble of 3 fold runs" in text and "out-of-fold" in text
    assert len(text.splitlines()) <= 6
    # Its table is what predict_runs gives for the cv folder (given as a string, too).
    folder = training_records.parent / "data" / "train"
    ids, probabilities, thresholds = predict_runs(str(cv_folder), images=folder)
    table = hpa_keras.predict_images(ensemble, folder, calibrated=False)
    assert list(table["Id"]) == ids
    np.testing.assert_allclose(
        table[list(ensemble.class_names)].to_numpy(), probabilities, atol=1e-5
    )
    np.testing.assert_allclose(table.attrs["thresholds"], thresholds)
    # By default its columns go through the cv's calibration maps; the labels do not.
    calibrated = hpa_keras.predict_images(ensemble, folder)
    np.testing.assert_allclose(
        calibrated[list(ensemble.class_names)].to_numpy(),
        ensemble.calibration.apply(probabilities),
        atol=1e-5,
    )
    assert list(calibrated["labels"]) == list(table["labels"])


def test_an_unfinished_cv_folder_is_not_loaded(cv_folder, tmp_path):
    import hpa_keras

    copy = tmp_path / "cv"
    shutil.copytree(cv_folder, copy)
    (copy / "thresholds.json").unlink()
    with pytest.raises(InputError, match="an unfinished cv"):
        hpa_keras.load_run(copy)


def test_a_run_validated_with_views_is_evaluated_with_them(cv_folder, training_records):
    from hpa_keras.inference.evaluate import evaluate_runs
    from hpa_keras.runs import read_input_settings

    run = cv_folder / "fold-1"
    assert read_input_settings(run).tta == VIEWS
    evaluation = evaluate_runs([run], data=training_records)  # its validation fold
    assert evaluation.details["tta"] == VIEWS and evaluation.details["folds"] == [1]
    tuned = json.loads((run / "thresholds.json").read_text())["macro_f1_tuned"]
    assert evaluation.summary()["macro_f1"] == pytest.approx(tuned, abs=1e-9)


def test_several_plain_runs_need_thresholds_tuned_for_them(cv_folder, training_records):
    from hpa_keras.inference.predict import predict_runs

    runs = [cv_folder / "fold-0", cv_folder / "fold-1"]
    with pytest.raises(InputError, match="ensemble's thresholds must be tuned"):
        predict_runs(runs, data=training_records)
    file = cv_folder / "thresholds.json"
    _, _, thresholds = predict_runs(runs, data=training_records, thresholds=file)
    np.testing.assert_allclose(thresholds, json.loads(file.read_text())["thresholds"])
    with pytest.raises(InputError, match="give it alone"):
        predict_runs([cv_folder, cv_folder / "fold-0"], data=training_records)


def test_evaluate_a_cv_on_its_records_is_its_out_of_fold_evaluation(cv_folder, training_records):
    from hpa_keras.inference.evaluate import evaluate_runs
    from hpa_keras.scoring.evaluation import summary_line

    evaluation = evaluate_runs([cv_folder], data=training_records)
    table = _oof(cv_folder).set_index("Id")
    np.testing.assert_allclose(
        evaluation.probabilities, table.loc[evaluation.ids].iloc[:, 1:].to_numpy(), atol=1e-6
    )
    summary = json.loads((cv_folder / "cv_summary.json").read_text())
    assert evaluation.summary()["macro_f1"] == pytest.approx(summary["oof_macro_f1"], abs=1e-3)
    assert "out of fold" in summary_line(evaluation)
    # With --fold the ensemble predicts that fold (models that trained on it included).
    chosen = evaluate_runs([cv_folder], data=training_records, folds=[1])
    assert len(chosen.ids) == len(table[table["fold"] == 1])
    assert not np.allclose(chosen.probabilities, table.loc[chosen.ids].iloc[:, 1:].to_numpy())


def test_cam_of_a_cv_folder_averages_its_fold_models(cv_folder, training_records):
    from hpa_keras.inference.cam import explain_sample

    images = training_records.parent / "data" / "train"
    sample_id = _oof(cv_folder)["Id"][0]
    _, classes, maps, probabilities = explain_sample(cv_folder, images, sample_id)
    parts = [
        explain_sample(cv_folder / f"fold-{fold}", images, sample_id, classes=classes)
        for fold in (0, 1, 2)
    ]
    np.testing.assert_allclose(maps, np.mean([part[2] for part in parts], axis=0), atol=1e-5)
    np.testing.assert_allclose(
        probabilities, np.mean([part[3] for part in parts], axis=0), atol=1e-6
    )
    thresholds = np.asarray(json.loads((cv_folder / "thresholds.json").read_text())["thresholds"])
    above = [k for k in range(28) if probabilities[k] >= thresholds[k]]
    assert set(classes) <= set(above or [int(np.argmax(probabilities))])


def test_each_fold_trains_with_its_own_seed_and_fold_0_is_fit_s_run(cv_folder, training_records):
    import yaml

    from hpa_keras.workflows.cv import fold_seed

    base = _config(training_records).seed
    for fold in (0, 1, 2):
        stored = yaml.safe_load((cv_folder / f"fold-{fold}" / "config.yaml").read_text())
        assert stored["seed"] == fold_seed(base, fold) == base + fold
        assert stored["fold"] == fold
    assert yaml.safe_load((cv_folder / "cv.yaml").read_text())["settings"]["seed"] == base


def test_a_restarted_cv_keeps_finished_folds_and_finishes_the_rest(
    cv_folder, training_records, tmp_path
):
    from hpa_keras.workflows.cv import cross_validate

    copy = tmp_path / "cv"
    shutil.copytree(cv_folder, copy)
    kept = {fold: (copy / f"fold-{fold}" / "model.keras").read_bytes() for fold in (0, 1)}
    # A kill during fold 2: its folder exists, the model does not; nothing pooled yet.
    (copy / "fold-2" / "model.keras").unlink()
    (copy / "fold-2" / "oof.npz").unlink()
    for name in ("oof.csv", "thresholds.json", "cv_summary.json"):
        (copy / name).unlink()
    # Fold 2 was started by a version that seeded every fold alike: it resumes with that seed.
    fold_config = copy / "fold-2" / "config.yaml"
    fold_config.write_text(fold_config.read_text().replace("seed: 2", "seed: 0"))
    cross_validate(_config(training_records), copy)
    assert "seed: 0" in fold_config.read_text()
    for fold in (0, 1):
        assert (copy / f"fold-{fold}" / "model.keras").read_bytes() == kept[fold]
    assert (copy / "fold-2" / "model.keras").is_file()
    before, after = _oof(cv_folder), _oof(copy)
    assert sorted(after["Id"]) == sorted(before["Id"])
    np.testing.assert_allclose(
        after[after["fold"] < 2].iloc[:, 2:].to_numpy(),
        before[before["fold"] < 2].iloc[:, 2:].to_numpy(),
    )
    with pytest.raises(InputError, match=r"other settings \(epochs\)"):
        cross_validate(_config(training_records, epochs=2), copy)
    with pytest.raises(InputError, match=r"other settings \(folds\)"):
        cross_validate(_config(training_records), copy, folds="0,1")
    # Started again naming the same records by another path, it continues.
    elsewhere = tmp_path / "moved" / "records"
    shutil.copytree(training_records, elsewhere)
    summary = cross_validate(_config(elsewhere), copy)
    assert summary["samples"] == len(before)


def test_cli_cv_prints_its_summary_and_refuses_bad_folds(training_records, tmp_path, capsys):
    from hpa_keras.cli import main

    out = tmp_path / "cv"
    common = ["cv", "--data", str(training_records), "--out", str(out), "--epochs", "1"]
    common += ["--tiny", "--batch-size", "8", "--no-tensorboard", "--quiet"]
    assert main([*common, "--folds", "0,5"]) == 2
    assert "the data's folds are [0, 1, 2]" in capsys.readouterr().err
    assert main([*common, "--folds", "0,1", "--threshold-strategy", "shrunk"]) == 0
    printed = capsys.readouterr().out
    assert "out-of-fold thresholds" in printed and "with the shrunk thresholds" in printed
    table = _oof(out)
    assert set(table["fold"]) == {0, 1} and not (out / "fold-2").exists()
    document = json.loads((out / "thresholds.json").read_text())
    assert document["strategy"] == "shrunk" and document["views"] == 1
    assert (
        document["by_strategy"]["shrunk"]["shrinkage"]["strength"]
        in (document["by_strategy"]["shrunk"]["shrinkage"]["grid"])
    )
    unfinished = tmp_path / "unfinished"
    shutil.copytree(out, unfinished)
    (unfinished / "thresholds.json").unlink()
    predict = ["predict", "--run", str(unfinished), "--data", str(training_records)]
    assert main([*predict, "--out", str(tmp_path / "s.csv")]) == 2
    assert "an unfinished cv" in capsys.readouterr().err
    assert main(["cv", "--data", str(training_records), "--out", str(tmp_path)]) == 2
    assert "not empty and not a cv folder" in capsys.readouterr().err


def test_a_cv_that_crashes_in_its_first_fold_s_first_epoch_leaves_no_folder(
    training_records, tmp_path
):
    import keras

    from hpa_keras.workflows.cv import cross_validate

    class Crash(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            raise RuntimeError("crashed in the first batch")

    with pytest.raises(RuntimeError, match="first batch"):
        cross_validate(_config(training_records), tmp_path / "cv", callbacks=[Crash()])
    assert not (tmp_path / "cv").exists()


# ------------------------------------------------------------------ calibration and label sets


def test_each_fold_keeps_its_validation_labels_with_its_predictions(cv_folder, training_records):
    from hpa_keras.data.pipeline import dataset_labels
    from hpa_keras.runs.documents import read_fold_predictions

    table = _oof(cv_folder).set_index("Id")
    for fold in (0, 1, 2):
        stored = read_fold_predictions(cv_folder / f"fold-{fold}")
        ids, labels = dataset_labels(training_records, [fold])
        assert stored.ids == ids and stored.views == VIEWS
        assert stored.labels.dtype == np.uint8
        np.testing.assert_array_equal(stored.labels, labels)
        np.testing.assert_allclose(
            stored.probabilities, table.loc[ids].iloc[:, 1:].to_numpy(), atol=1e-6
        )


def test_the_cv_stores_maps_fitted_on_its_out_of_fold_predictions(cv_folder):
    from hpa_keras.inference.label_sets import out_of_fold_predictions
    from hpa_keras.inference.runs import load_run
    from hpa_keras.runs.documents import read_calibration
    from hpa_keras.scoring.calibration import fit_calibration

    stored = read_calibration(cv_folder)
    labels, probabilities, views = out_of_fold_predictions(cv_folder)
    assert views == VIEWS and labels.shape == probabilities.shape == (len(_oof(cv_folder)), 28)
    refitted = fit_calibration(labels, probabilities)
    assert stored.methods == refitted.methods and stored.num_samples == len(labels)
    grid = np.linspace(0, 1, 11)[:, None].repeat(28, axis=1)
    np.testing.assert_allclose(stored.apply(grid), refitted.apply(grid), atol=1e-6)
    run = load_run(cv_folder)
    np.testing.assert_allclose(run.calibration.apply(grid), stored.apply(grid))
    assert load_run(cv_folder / "fold-0").calibration is None  # a fold run stores none


def test_evaluate_scores_the_stored_calibration_on_images_it_was_not_fitted_on(
    cv_folder, training_records
):
    from hpa_keras.inference.evaluate import evaluate_runs
    from hpa_keras.scoring.calibration import expected_calibration_error
    from hpa_keras.scoring.evaluation import summary_line

    # On its own out-of-fold predictions the maps would score their fitting set: left out.
    out_of_fold = evaluate_runs([cv_folder], data=training_records)
    assert out_of_fold.calibration is None and "ece_calibrated" not in out_of_fold.summary()
    chosen = evaluate_runs([cv_folder], data=training_records, folds=[1])
    expected = expected_calibration_error(
        chosen.labels, chosen.calibration.apply(chosen.probabilities)
    ).overall
    assert chosen.summary()["ece_calibrated"] == pytest.approx(expected)
    assert f"({expected:.3f} calibrated)" in summary_line(chosen)


def test_evaluate_measures_the_cv_s_own_label_sets_on_other_images(cv_folder, training_records):
    from hpa_keras.inference.evaluate import evaluate_runs
    from hpa_keras.inference.label_sets import conformal_for
    from hpa_keras.inference.predict import predict_ids_by_member
    from hpa_keras.scoring.evaluation import coverage_line

    chosen = evaluate_runs([cv_folder], data=training_records, folds=[1])
    fitted = conformal_for([cv_folder], 0.9, "image", views=VIEWS)
    members, _ = predict_ids_by_member(
        [cv_folder], chosen.ids, data=training_records, folds=[1], tta=VIEWS
    )
    np.testing.assert_allclose(chosen.probabilities, members.mean(axis=0), atol=1e-6)
    sets = np.any(members >= fitted.thresholds, axis=0)
    covered = np.all(sets | (chosen.labels == 0), axis=1).mean()  # every true label in the set
    measured = chosen.summary()["label_sets"]
    assert measured["rate"] == pytest.approx(covered) and measured["coverage"] == 0.9
    assert measured["mean_set_size"] == pytest.approx(sets.sum(axis=1).mean())
    assert f"the cv's own at 90% (predict --coverage, from {fitted.images} out-of-fold" in (
        coverage_line(chosen)
    )
    # Not on its own out-of-fold predictions (the sets' calibration set), nor other views.
    assert evaluate_runs([cv_folder], data=training_records).label_sets is None
    other_views = evaluate_runs([cv_folder], data=training_records, folds=[1], tta=1)
    assert other_views.label_sets is None and "label_sets" not in other_views.summary()


def test_conformal_thresholds_come_from_the_pooled_out_of_fold_predictions(cv_folder):
    from hpa_keras.inference.label_sets import conformal_for, out_of_fold_predictions
    from hpa_keras.scoring.conformal import conformal_thresholds

    labels, probabilities, _ = out_of_fold_predictions(cv_folder)
    for guarantee in ("image", "class"):
        fitted = conformal_for([cv_folder], 0.8, guarantee, views=VIEWS)
        expected = conformal_thresholds(labels, probabilities, 0.8, guarantee)
        np.testing.assert_array_equal(fitted.thresholds, expected.thresholds)
        assert fitted.images == len(labels)


def test_label_sets_are_refused_without_a_calibration_set(cv_folder, tmp_path):
    from hpa_keras.inference.label_sets import conformal_for

    with pytest.raises(InputError, match="needs a cv folder"):
        conformal_for([cv_folder / "fold-0"], 0.9)
    with pytest.raises(InputError, match=rf"--tta 1: .* {VIEWS} view\(s\); predict with --tta"):
        conformal_for([cv_folder], 0.9, views=1)
    with pytest.raises(InputError, match="coverage"):
        conformal_for([cv_folder], 1.5)
    copy = tmp_path / "cv"
    shutil.copytree(cv_folder, copy)
    (copy / "fold-1" / "oof.npz").unlink()
    missing = r"fold-1/oof.npz: no out-of-fold predictions; run the same"
    with pytest.raises(InputError, match=missing):
        conformal_for([copy], 0.9)


def test_a_cv_made_before_labels_were_stored_gets_them_when_run_again(
    cv_folder, training_records, tmp_path
):
    from hpa_keras.inference.label_sets import conformal_for
    from hpa_keras.runs.documents import (
        FoldPredictions,
        read_fold_predictions,
        write_fold_predictions,
    )
    from hpa_keras.workflows.cv import cross_validate

    copy = tmp_path / "cv"
    shutil.copytree(cv_folder, copy)
    old = read_fold_predictions(copy / "fold-2")
    write_fold_predictions(copy / "fold-2", FoldPredictions(old.ids, old.probabilities, old.views))
    (copy / "calibration.json").unlink()
    with pytest.raises(InputError, match=r"fold-2/oof.npz: no labels in its out-of-fold"):
        conformal_for([copy], 0.9)
    cross_validate(_config(training_records), copy)  # keeps the folds; adds what is missing
    again = read_fold_predictions(copy / "fold-2")
    np.testing.assert_array_equal(again.labels, old.labels)
    np.testing.assert_array_equal(again.probabilities, old.probabilities)
    assert (copy / "calibration.json").is_file()


def test_predict_coverage_writes_the_conformal_sets_and_a_calibrated_table(
    cv_folder, training_records, tmp_path, capsys
):
    from hpa_keras.cli import main
    from hpa_keras.inference.label_sets import conformal_for
    from hpa_keras.inference.predict import predict_runs, predict_runs_by_member
    from hpa_keras.runs.documents import read_calibration

    ids, members, _ = predict_runs_by_member([cv_folder], data=training_records)
    probabilities = np.mean(members, axis=0)
    assert np.allclose(probabilities, predict_runs([cv_folder], data=training_records)[1])
    command = ["predict", "--run", str(cv_folder), "--data", str(training_records)]
    out, table = tmp_path / "sets.csv", tmp_path / "probabilities.csv"
    assert main([*command, "--coverage", "0.8", "--guarantee", "class", "--out", str(out),
                 "--probabilities", str(table)]) == 0  # fmt: skip
    captured = capsys.readouterr()
    printed = captured.out
    # Wide sets are what a coverage asks for: no labels-per-image warning about them.
    assert "labels per image predicted" not in captured.err
    conformal = conformal_for([cv_folder], 0.8, "class", views=VIEWS)
    # A class is in the set when any fold model reaches its threshold (not their mean).
    expected = np.any(members >= conformal.thresholds, axis=0)
    assert not np.array_equal(expected, probabilities >= conformal.thresholds)
    written = pd.read_csv(out, keep_default_na=False).set_index("Id").loc[ids, "Predicted"]
    for row, labels in zip(expected, written, strict=True):
        assert labels == " ".join(str(k) for k in np.flatnonzero(row))
    assert "label sets at coverage 0.8: they hold each true class" in printed
    assert f"{expected.sum(axis=1).mean():.2f} labels per image" in printed
    calibrated = read_calibration(cv_folder).apply(probabilities)
    columns = [str(k) for k in range(28)]
    np.testing.assert_allclose(pd.read_csv(table)[columns].to_numpy(), calibrated, atol=1e-5)
    assert "through the cv's calibration.json" in printed
    assert main([*command, "--out", str(out), "--probabilities", str(table),
                 "--uncalibrated"]) == 0  # fmt: skip
    np.testing.assert_allclose(pd.read_csv(table)[columns].to_numpy(), probabilities, atol=1e-5)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--guarantee", "class"], "--guarantee goes with --coverage RATE"),
        (["--coverage", "0.9", "--thresholds", "{cv}/thresholds.json"], "would be unused"),
        (["--coverage", "0.9", "--tta", "1"], "predict with --tta 2"),
        (["--coverage", "1"], "must be in (0, 1)"),
        (["--coverage", "0.9", "--run", "{cv}/fold-0"], "needs a cv folder"),
    ],
)
def test_predict_coverage_refusals_name_the_reason(
    cv_folder, training_records, tmp_path, capsys, extra, message
):
    from hpa_keras.cli import main

    extra = [part.format(cv=cv_folder) for part in extra]
    run = extra[extra.index("--run") + 1] if "--run" in extra else str(cv_folder)
    extra = [part for part in extra if part not in ("--run", run)]
    out = tmp_path / "s.csv"
    command = ["predict", "--run", run, "--data", str(training_records), "--out", str(out)]
    try:
        code = main([*command, *extra])
    except SystemExit as exit:  # argparse's own refusals
        code = exit.code
    error = capsys.readouterr().err
    assert code == 2 and message in error and "Traceback" not in error
    assert not out.exists()
