"""A run that stopped while still improving is said to have stopped short (issue 25, point 2)."""

import json
import math

import pandas as pd
import pytest

from hpa_keras.runs.documents import CvSummary, read_cv_summary, write_cv_summary
from hpa_keras.training.progress import folds_stopped_short, stopped_short
from hpa_keras.workflows.cv import format_summary

RISING = [0.10, 0.20, 0.28, 0.35, 0.41, 0.46, 0.50, 0.54, 0.57, 0.60]
BEST_EARLY = [0.10, 0.30, 0.50, 0.62, 0.60, 0.58, 0.59, 0.57, 0.58, 0.56]
# Up to a plateau at 0.62, then noise of a few thousandths that happens to peak at the end.
PLATEAU = [0.10, 0.35, 0.55, 0.61, 0.620, 0.618, 0.622, 0.619, 0.621, 0.623]


def test_a_run_rising_to_its_last_epoch_stopped_short_and_doubles_the_epochs():
    message = stopped_short({"val_macro_f1_tuned": RISING})
    assert message is not None
    assert "val_macro_f1_tuned" in message and "0.6" in message
    assert "last of 10 epochs" in message and "still rising" in message
    assert message.endswith("train longer: --epochs 20")
    # Told the --epochs asked for (a frozen stage adds rows to the history), it doubles those.
    assert stopped_short(pd.DataFrame({"val_macro_f1_tuned": RISING}), epochs=8).endswith(
        "--epochs 16"
    )


def test_a_run_whose_best_epoch_came_early_or_that_levelled_off_says_nothing():
    assert stopped_short({"val_macro_f1_tuned": BEST_EARLY}) is None
    assert stopped_short({"val_macro_f1_tuned": PLATEAU}) is None
    assert stopped_short({"val_macro_f1_tuned": [0.5] * 10}) is None  # flat


def test_a_tie_at_the_end_still_counts_as_the_best_epoch_being_the_last():
    assert stopped_short({"val_macro_f1_tuned": [*RISING, RISING[-1]]}) is not None


def test_a_loss_is_judged_falling_in_min_mode():
    loss = [1.0 - value for value in RISING]
    message = stopped_short({"val_loss": loss}, monitor="val_loss", mode="min")
    assert message is not None and "val_loss was still falling" in message
    assert stopped_short({"val_loss": loss}, monitor="val_loss", mode="max") is None
    assert stopped_short({"val_loss": RISING}, monitor="val_loss", mode="min") is None


def test_too_few_epochs_or_no_such_column_say_nothing():
    assert stopped_short({"val_macro_f1_tuned": [0.1, 0.5]}) is None
    assert stopped_short({"val_macro_f1_tuned": []}) is None
    assert stopped_short({"val_loss": RISING}) is None
    with pytest.raises(ValueError, match="mode"):
        stopped_short({"val_loss": RISING}, mode="up")


def test_epochs_without_a_value_are_left_out_but_still_count():
    gaps = [0.1, math.nan, 0.3, 0.4, math.nan, 0.5, 0.6, 0.7]
    message = stopped_short({"val_macro_f1_tuned": gaps})
    assert message is not None and "last of 8 epochs" in message
    # A last epoch without a value (diverged) is not a best epoch.
    assert stopped_short({"val_macro_f1_tuned": [*RISING, math.nan]}) is None
    # Two finite values are too few, whatever the rows.
    assert stopped_short({"val_macro_f1_tuned": [math.nan, 0.1, math.nan, 0.5]}) is None


def test_the_folds_message_names_the_folds_that_stopped_short():
    histories = {
        0: {"val_macro_f1_tuned": RISING},
        1: {"val_macro_f1_tuned": BEST_EARLY},
        2: {"val_macro_f1_tuned": RISING},
    }
    message = folds_stopped_short(histories, epochs=10)
    assert message.startswith("folds 0, 2 of 3 stopped short: the best epoch was the last")
    assert message.endswith("train longer: --epochs 20")
    assert folds_stopped_short({1: histories[1]}, epochs=10) is None
    assert folds_stopped_short({0: histories[0], 1: histories[1]}, 10).startswith("fold 0 of 2")


def _summary(**extra) -> CvSummary:
    fold = {"fold": 0, "samples": 5, "macro_f1_own_thresholds": 0.5,
            "macro_f1_oof_thresholds": 0.5, "macro_f1_at_0.5": 0.4}  # fmt: skip
    return CvSummary(
        folds=[fold], fold_macro_f1_mean=0.5, fold_macro_f1_std=0.0, oof_macro_f1=0.5,
        oof_macro_f1_cross_fitted=0.45, oof_macro_f1_at_half=0.4, strategy="per_class",
        samples=5, views=1, **extra,
    )  # fmt: skip


def test_cv_summary_keeps_the_message_and_an_older_summary_without_it_reads(tmp_path):
    message = "fold 0 of 1 stopped short: ...; train longer: --epochs 20"
    write_cv_summary(tmp_path, _summary(stopped_short=message))
    assert read_cv_summary(tmp_path).stopped_short == message
    assert f"warning: {message}" in format_summary(read_cv_summary(tmp_path).to_dict())

    write_cv_summary(tmp_path, _summary())
    document = json.loads((tmp_path / "cv_summary.json").read_text())
    assert "stopped_short" not in document  # written only when there is one, as before
    assert read_cv_summary(tmp_path).stopped_short is None
    assert "warning" not in format_summary(document)


def test_a_tiny_fit_reports_whether_it_stopped_short(training_records, tmp_path):
    from hpa_keras.models import TINY_OPTIONS
    from hpa_keras.training.fit import fit, resolve_config

    settings = {
        "data": str(training_records), "out": str(tmp_path / "run"), "epochs": 3,
        "batch_size": 8, "model_options": TINY_OPTIONS["gapnet"], "verbose": 0,
        "tensorboard": False,
    }  # fmt: skip
    summary = fit(resolve_config(settings))
    assert "stopped_short" in summary
    assert summary["stopped_short"] is None or "--epochs 6" in summary["stopped_short"]


def test_cv_reads_each_fold_s_history_and_warns_once(tmp_path, capsys):
    from hpa_keras.runs.folders import fold_folder
    from hpa_keras.training.config import TrainingConfig
    from hpa_keras.workflows.cv import _folds_stopped_short

    for fold, values in enumerate([RISING, BEST_EARLY, RISING]):
        folder = fold_folder(tmp_path, fold)
        folder.mkdir(parents=True)
        table = pd.DataFrame({"epoch": range(len(values)), "val_macro_f1_tuned": values})
        (folder / "history.csv").write_text(table.to_csv(index=False))
    config = TrainingConfig(epochs=10)
    message = _folds_stopped_short(tmp_path, config, [0, 1, 2, 3])  # fold 3: no history
    assert message.startswith("folds 0, 2 of 3 stopped short")
    assert capsys.readouterr().err == f"warning: {message}\n"
    assert _folds_stopped_short(tmp_path, config, [1]) is None
    assert capsys.readouterr().err == ""
