"""Uncertainty in predictions (issue 25, point 5): the entropy and disagreement columns of the
probability tables, and ``predict --flag-uncertain``."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from hpa_keras.cli import main
from hpa_keras.errors import InputError
from hpa_keras.inference.predict import predict_runs, predict_runs_by_member
from hpa_keras.scoring.uncertainty import flag_most_uncertain


def _entropy(p):
    """Binary entropy in bits, by hand: -(p log2 p + (1 - p) log2(1 - p)), 0 log 0 = 0."""
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
    return np.nan_to_num(terms, nan=0.0)


def _bald(members):
    """Mutual information of (M, N, C) members: entropy of the mean minus mean entropy."""
    members = np.asarray(members, dtype=np.float64)
    return _entropy(members.mean(axis=0)).mean(axis=-1) - _entropy(members).mean(axis=-1).mean(0)


def _thresholds_file(tmp_path):
    file = tmp_path / "thresholds.json"
    file.write_text(json.dumps({"thresholds": [0.3] * 28}))
    return file


def test_flag_most_uncertain_marks_the_top_share():
    scores = np.array([0.1, 0.9, 0.5, 0.7, 0.3, 0.9, 0.2])
    assert np.flatnonzero(flag_most_uncertain(scores, 30)).tolist() == [1, 3, 5]  # ceil(2.1)
    assert np.flatnonzero(flag_most_uncertain(scores, 1)).tolist() == [1]  # at least one
    assert flag_most_uncertain(scores, 100).all()
    assert flag_most_uncertain(np.linspace(0, 1, 30), 10).sum() == 3  # 3.0 is not 4
    for bad in (0, -5, 100.5, float("nan"), "many"):
        with pytest.raises(InputError, match=r"\(0, 100\]"):
            flag_most_uncertain(scores, bad)


def test_cli_probabilities_carry_entropy_disagreement_and_the_flag(
    runs, training_records, tmp_path, capsys
):
    thresholds = _thresholds_file(tmp_path)
    table_path = tmp_path / "probabilities.csv"
    argv = ["predict", "--run", *map(str, runs), "--data", str(training_records), "--tta", "1"]
    argv += ["--thresholds", str(thresholds), "--out", str(tmp_path / "submission.csv")]
    assert main([*argv, "--probabilities", str(table_path), "--flag-uncertain", "25"]) == 0
    printed = capsys.readouterr().out

    table = pd.read_csv(table_path)
    classes = [str(index) for index in range(28)]
    assert list(table.columns) == ["Id", *classes, "entropy", "disagreement", "uncertain"]
    written = table[classes].to_numpy()
    # The averaged probabilities are the members' mean, as predict_runs gives them.
    ids, members, _ = predict_runs_by_member(runs, data=training_records, tta=1,
                                             thresholds=thresholds)  # fmt: skip
    same_ids, mean, _ = predict_runs(runs, data=training_records, tta=1, thresholds=thresholds)
    assert list(table["Id"]) == ids == same_ids and members.shape == (2, 40, 28)
    np.testing.assert_array_equal(mean, np.mean(members, axis=0))
    np.testing.assert_allclose(written, mean, atol=1e-6)
    for member, run in zip(members, runs, strict=True):
        _, alone, _ = predict_runs([run], data=training_records, tta=1)
        np.testing.assert_allclose(member, alone, atol=1e-6)

    # entropy: the mean over classes of the binary entropy of the written probabilities.
    np.testing.assert_allclose(table["entropy"], _entropy(written).mean(axis=1), atol=1e-5)
    # disagreement: the members' mutual information (BALD).
    bald = _bald(members)
    np.testing.assert_allclose(table["disagreement"], bald, atol=1e-5)
    assert (table["disagreement"] >= 0).all() and (table["disagreement"] > 0).any()
    assert (table["disagreement"] <= table["entropy"] + 1e-6).all()

    # uncertain: exactly the ceil(25 % of 40) = 10 images of highest entropy.
    count = math.ceil(40 * 25 / 100)
    top = set(np.argsort(-_entropy(mean).mean(axis=1))[:count])
    assert table["uncertain"].dtype == bool
    assert set(np.flatnonzero(table["uncertain"])) == top
    cutoff = table["entropy"][table["uncertain"]].min()
    assert (table["entropy"][~table["uncertain"]] <= cutoff).all()
    line = next(line for line in printed.splitlines() if line.startswith("flagged"))
    assert line == (
        f"flagged {count} of 40 images as most uncertain (entropy >= {cutoff:.4f} bits): "
        f"column 'uncertain' in {table_path}"
    )


@pytest.fixture(scope="module")
def cv_folder(training_records, tmp_path_factory):
    """A finished 3-fold cv of tiny one-epoch GAP-Nets on ``training_records``."""
    from hpa_keras.models import TINY_OPTIONS
    from hpa_keras.training.config import resolve_config
    from hpa_keras.workflows.cv import cross_validate

    out = tmp_path_factory.mktemp("cv") / "cv"
    settings = {"data": str(training_records), "epochs": 1, "batch_size": 8, "verbose": 0,
                "model_options": TINY_OPTIONS["gapnet"], "tensorboard": False}  # fmt: skip
    cross_validate(resolve_config(settings), out)
    return out


def test_a_cv_folder_s_folds_are_its_members(cv_folder, training_records, tmp_path):
    table_path = tmp_path / "probabilities.csv"
    argv = ["predict", "--run", str(cv_folder), "--data", str(training_records)]
    argv += ["--out", str(tmp_path / "submission.csv"), "--probabilities", str(table_path)]
    argv += ["--uncalibrated"]  # the members' mean as predicted (a cv stores calibration)
    assert main(argv) == 0
    table = pd.read_csv(table_path)
    assert list(table.columns)[-2:] == ["entropy", "disagreement"]
    folds = [predict_runs([cv_folder / f"fold-{k}"], data=training_records)[1] for k in range(3)]
    _, mean, _ = predict_runs(cv_folder, data=training_records)
    np.testing.assert_allclose(mean, np.mean(folds, axis=0), atol=1e-6)
    np.testing.assert_allclose(table[[str(k) for k in range(28)]], mean, atol=1e-6)
    np.testing.assert_allclose(table["disagreement"], _bald(folds), atol=1e-5)


def test_one_run_has_entropy_but_no_disagreement(runs, training_records, tmp_path, capsys):
    table_path = tmp_path / "probabilities.csv"
    argv = ["predict", "--run", str(runs[0]), "--data", str(training_records), "--tta", "1"]
    argv += ["--out", str(tmp_path / "submission.csv"), "--probabilities", str(table_path)]
    assert main(argv) == 0
    assert "flagged" not in capsys.readouterr().out
    table = pd.read_csv(table_path)
    assert list(table.columns) == ["Id", *map(str, range(28)), "entropy"]
    written = table[[str(index) for index in range(28)]].to_numpy()
    np.testing.assert_allclose(table["entropy"], _entropy(written).mean(axis=1), atol=1e-5)
    assert main([*argv, "--flag-uncertain", "100"]) == 0
    assert pd.read_csv(table_path)["uncertain"].all()
    assert "flagged 40 of 40 images" in capsys.readouterr().out


def test_predict_images_adds_entropy_and_an_ensembles_disagreement(runs, training_records):
    from dataclasses import replace

    import hpa_keras
    from hpa_keras.inference.tta import MeanOfModels

    images = training_records.parent / "data" / "train"
    first, second = (hpa_keras.load_run(run) for run in runs)
    ensemble = replace(
        first, model=MeanOfModels([first.model, second.model]), members=(first, second)
    )
    names = list(first.class_names)
    alone = [hpa_keras.predict_images(run, images, tta=1)[names].to_numpy() for run in runs]
    plain = hpa_keras.predict_images(ensemble, images, tta=1)  # the mean model, as before
    assert list(plain.columns)[-1] == "entropy" and "disagreement" not in plain
    table = hpa_keras.predict_images(ensemble, images, tta=1, disagreement=True)
    assert list(table.columns)[-2:] == ["entropy", "disagreement"]
    probabilities = table[names].to_numpy()
    np.testing.assert_allclose(probabilities, np.mean(alone, axis=0), atol=1e-6)
    np.testing.assert_allclose(probabilities, plain[names].to_numpy(), atol=1e-6)
    np.testing.assert_allclose(table["entropy"], _entropy(probabilities).mean(axis=1), atol=1e-6)
    np.testing.assert_allclose(table["disagreement"], _bald(alone), atol=1e-6)


@pytest.mark.parametrize("value", ["0", "-5", "101", "many", "nan"])
def test_a_bad_flag_uncertain_value_is_refused(runs, training_records, capsys, value):
    argv = ["predict", "--run", str(runs[0]), "--data", str(training_records)]
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--probabilities", "p.csv", f"--flag-uncertain={value}"])
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert "--flag-uncertain" in error and "(0, 100]" in error


def test_flag_uncertain_needs_the_probability_table(runs, training_records, tmp_path, capsys):
    out = tmp_path / "submission.csv"
    argv = ["predict", "--run", str(runs[0]), "--data", str(training_records), "--out", str(out)]
    assert main([*argv, "--flag-uncertain", "5"]) == 2
    error = capsys.readouterr().err
    assert len(error.splitlines()) == 1 and "Traceback" not in error
    assert "--flag-uncertain" in error and "--probabilities FILE" in error
    assert not out.exists()
