"""``cross_validate``: every fold, out-of-fold thresholds and one ensemble, as the winners did.

``hpa-keras cv --data DIR --out CV_DIR`` trains one run per fold and leaves::

    CV_DIR/
      cv.yaml          the shared settings and the folds (a restarted cv must match them)
      fold-K/          one fit run folder per fold (each resumable), with oof.npz: its
                       validation fold's labels and probabilities, predicted as predict will
      oof.csv          Id, fold and one probability column per class for every image
      thresholds.json  thresholds tuned on all out-of-fold predictions (the chosen
                       strategy), with every strategy's out-of-fold figures
      calibration.json per-class calibration maps fitted on the out-of-fold predictions
      cv_summary.json  per-fold and pooled figures and their spread
      report/          the evaluation report of the pooled out-of-fold predictions

Killed and started again with the same command, ``cv`` keeps the finished
folds, resumes the interrupted one (``fit``'s own resume) and trains the
rest. ``predict``, ``evaluate`` and ``cam`` take ``--run CV_DIR`` as one
ensemble: the mean of the fold models' probabilities, judged against the
out-of-fold thresholds.

Fold K trains with ``--seed`` + K (:func:`fold_seed`), so that the fold models differ in
more than their data.

The thresholds are tuned on predictions made as ``predict`` will make
them: the same dihedral views (``--tta``) and tiles, one model per image
(the one that did not train on it). An ensemble then averages five models,
whose mean is smoother than any one of them; how well out-of-fold
thresholds serve the ensemble on new images is measured in the manual (docs/results.md).
"""

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from hpa_keras import storage
from hpa_keras.atomic import write_text_atomic
from hpa_keras.data.tfrecords import read_manifest
from hpa_keras.distributed import barrier, process_index
from hpa_keras.errors import InputError, warn
from hpa_keras.inference.predict import predict_ids
from hpa_keras.reports.html import write_report
from hpa_keras.reports.tables import Column, fallback_lines, format_table
from hpa_keras.reports.training import read_history
from hpa_keras.runs.documents import (
    CvDocument,
    CvSummary,
    FoldPredictions,
    ThresholdsDocument,
    read_fold_predictions,
    read_run_config,
    read_thresholds,
    thresholds_document,
    write_calibration,
    write_cv,
    write_cv_summary,
    write_fold_predictions,
    write_thresholds_document,
)
from hpa_keras.runs.files import HISTORY_FILE, MODEL_FILE, OOF_FILE, REPORT_FOLDER
from hpa_keras.runs.folders import claim_cv_folder, fold_folder
from hpa_keras.scoring.calibration import fit_calibration
from hpa_keras.scoring.evaluation import Evaluation
from hpa_keras.scoring.metrics import macro_f1
from hpa_keras.scoring.thresholds import (
    THRESHOLD_STRATEGIES,
    search_thresholds,
    shrunk_thresholds,
    tune_thresholds,
)
from hpa_keras.training.config import DISPLAY_SETTINGS, TrainingConfig
from hpa_keras.training.fit import fit, say, train_at_url
from hpa_keras.training.progress import folds_stopped_short


def parse_folds(text: str | None, available: list[int]) -> list[int]:
    """``"all"`` (or ``None``) or a comma-separated list of folds, checked against the data."""
    if text is None or text == "all":
        return list(available)
    try:
        folds = sorted({int(part) for part in str(text).split(",") if part.strip()})
    except ValueError:
        raise InputError(f"--folds {text!r}: give 'all' or fold numbers such as 0,1,2") from None
    missing = [fold for fold in folds if fold not in available]
    if missing or not folds:
        raise InputError(f"--folds {text!r}: the data's folds are {available}")
    return folds


def _shared_settings(config: TrainingConfig) -> dict:
    settings = dataclasses.asdict(config)
    for key in ("fold", "out", *DISPLAY_SETTINGS):
        settings.pop(key)
    return settings


def _prepare(out: Path, config: TrainingConfig, folds: list[int], fingerprint: str) -> None:
    """Write ``cv.yaml``, or check that a restarted cv has the same settings and folds.

    The records are compared by ``fingerprint`` (their shards' digests), so a restart that
    names the same records by another path (from another folder, records moved) continues.
    """
    document = CvDocument(
        settings=_shared_settings(config), folds=folds, data_fingerprint=fingerprint
    )
    if not claim_cv_folder(out, document):
        out.mkdir(parents=True, exist_ok=True)
        write_cv(out, document)


def fold_predictions(out: Path, config: TrainingConfig, fold: int) -> dict:
    """The validation fold's Ids, labels and probabilities from its own run (cached in the
    run folder), predicted with the cv's views and the run's tiles, as predict will."""
    from hpa_keras.data.pipeline import dataset_labels  # lazy: imports TensorFlow

    run = fold_folder(out, fold)
    ids, labels = dataset_labels(config.data, [fold], config.validate_source)
    stored = read_fold_predictions(run)
    if stored is not None and stored.ids == ids and stored.views == config.tta:
        probabilities = stored.probabilities
    else:
        # The Keras model's float32 probabilities: the reference the thresholds and
        # calibration are fitted on, and every inference engine is checked against.
        probabilities, _ = predict_ids(
            [run], ids, data=config.data, folds=[fold], tta=config.tta,
            sources=config.validate_source, thresholds="own", engine="keras",
        )  # fmt: skip
    if stored is None or stored.labels is None or probabilities is not stored.probabilities:
        # The labels travel with the probabilities: predict --coverage reads them from here.
        write_fold_predictions(run, FoldPredictions(ids, probabilities, config.tta, labels))
    return {"ids": ids, "labels": labels, "probabilities": probabilities}


def tune_all_strategies(labels, probabilities, class_frequencies) -> dict:
    """Every threshold strategy on the pooled out-of-fold predictions: thresholds, the
    macro F1 they give there (optimistic: tuned and scored on the same rows) and the classes
    that fell back (``fallbacks``, as in a run's ``thresholds.json``)."""

    results = {}
    for strategy in THRESHOLD_STRATEGIES:
        thresholds, fallbacks = tune_thresholds(strategy, labels, probabilities, class_frequencies)
        details = shrunk_thresholds(labels, probabilities)[1] if strategy == "shrunk" else None
        results[strategy] = {
            "thresholds": [float(value) for value in thresholds],
            "oof_macro_f1": macro_f1(labels, probabilities >= thresholds),
            "fallbacks": fallbacks,
            **({"shrinkage": details} if details else {}),
        }
    return results


def cross_fitted_macro_f1(labels, probabilities, fold_of, strategy, class_frequencies) -> float:
    """Out-of-fold macro F1 with each fold's thresholds tuned on the other folds only: an
    estimate of what the thresholds give on images they were not tuned on."""

    decided = np.zeros(labels.shape, dtype=bool)
    for fold in np.unique(fold_of):
        inside = fold_of == fold
        thresholds = search_thresholds(
            strategy, labels[~inside], probabilities[~inside], class_frequencies
        )
        decided[inside] = probabilities[inside] >= thresholds
    return macro_f1(labels, decided)


def cross_validate(config: TrainingConfig, out, folds=None, callbacks=(), config_file=None) -> dict:
    """Train every fold of ``config.data`` (or ``folds``) into ``out``; see the module docstring.

    ``config_file``: the ``--config`` file or recipe the settings came from (each fold's
    opening line names it).

    Returns the summary (also ``cv_summary.json``); ``None`` in the processes other than
    0 of a ``distributed`` cv, which train the folds with process 0 and write nothing.
    """

    if storage.is_url(out):  # trained in a local copy, uploaded after every epoch

        def train(local, extra):
            return cross_validate(config, local, folds, extra, config_file)

        return train_at_url(out, callbacks, train)
    config.validate()
    out = Path(out)
    manifest = read_manifest(config.data)
    available = manifest.labeled_folds
    manifest.training_folds(available[0])  # labeled, at least two folds
    chosen = parse_folds(folds, available)
    chief = process_index() == 0
    if not chief:  # in a --distributed cv, process 0 writes and reports; the others train
        config = dataclasses.replace(config, verbose=0)
    _train_folds(out, config, chosen, manifest.fingerprint(), callbacks, config_file)
    if not chief:
        return None
    # Out of every fit's distribution scope, process 0 predicts the folds on its own devices.
    parts = [fold_predictions(out, config, fold) for fold in chosen]
    pooled = _pooled(parts, chosen)
    names = list(manifest.class_names)
    _write_oof_table(out, pooled, names)
    counts = np.asarray(manifest.class_counts, dtype=np.float64)
    frequencies = counts / max(manifest.num_records, 1)
    strategies = tune_all_strategies(pooled["labels"], pooled["probabilities"], frequencies)
    document = _out_of_fold_thresholds(config, chosen, pooled, strategies, names)
    write_thresholds_document(out, document)
    # Maps from the same out-of-fold predictions; predict and evaluate apply them.
    calibration = fit_calibration(pooled["labels"], pooled["probabilities"], class_names=names)
    write_calibration(out, calibration)
    for line in fallback_lines(document.to_dict(), "out-of-fold images"):
        warn(f"out-of-fold thresholds: {line}")
    summary = _summary(out, config, chosen, parts, pooled, strategies, frequencies)
    write_cv_summary(out, summary)
    evaluation = Evaluation(
        pooled["ids"], pooled["labels"], pooled["probabilities"], document.thresholds,
        class_names=names,
        details={
            "runs": [str(out)], "data": str(config.data), "folds": chosen, "tta": config.tta,
            "training_labels_per_image": manifest.labels_per_image(chosen),
        },
    )  # fmt: skip
    write_report(evaluation, out / REPORT_FOLDER, title="hpa-keras cv: out-of-fold predictions")
    return summary.to_dict()


def fold_seed(seed: int, fold: int) -> int:
    """The seed fold ``fold``'s run trains with: ``seed + fold``.

    With one seed every fold model starts from the same weights and draws the same
    augmentations, and differs from the others only by its data; seeded apart, the fold
    models disagree more, which is what an ensemble averages away, and the ensemble
    gains more over its members and over a single run (measured in docs/results.md,
    "Predictions on new images"). Fold 0 keeps
    ``seed``, so it is the run ``fit --fold 0 --seed SEED`` trains. An interrupted fold
    resumes with the seed its folder was started with.
    """
    return int(seed) + int(fold)


def _train_folds(out: Path, config, chosen, fingerprint: str, callbacks, config_file) -> None:
    """Each chosen fold trained into its run folder (a finished one is kept) in ``out``,
    claimed for this cv by process 0."""
    chief = process_index() == 0
    made_folder = chief and not out.exists()
    if chief:
        _prepare(out, config, chosen, fingerprint)
    barrier("hpa-keras cv: folder ready")
    try:
        for fold in chosen:
            run = fold_folder(out, fold)
            if (run / MODEL_FILE).is_file():
                say(config, f"fold {fold}: finished already ({run})")
                continue
            say(config, f"fold {fold} of {chosen}: training into {run}")
            seed = read_run_config(run).get("seed", fold_seed(config.seed, fold))
            fold_config = dataclasses.replace(config, fold=fold, out=str(run), seed=seed)
            fit(fold_config, callbacks, config_file)
            barrier(f"hpa-keras cv: fold {fold} saved")
    except BaseException:
        # fit removed a fold that finished no epoch; a cv folder made here and left with no
        # fold in it holds nothing to continue from: it goes too.
        if made_folder and not any(fold_folder(out, fold).exists() for fold in chosen):
            shutil.rmtree(out, ignore_errors=True)
        raise


def _pooled(parts: list[dict], chosen: list[int]) -> dict:
    """The folds' predictions as one set: ids, labels, probabilities and each row's fold."""
    return {
        "ids": [sample_id for part in parts for sample_id in part["ids"]],
        "labels": np.concatenate([part["labels"] for part in parts]),
        "probabilities": np.concatenate([part["probabilities"] for part in parts]).astype(
            np.float32
        ),
        "fold_of": np.concatenate(
            [np.full(len(part["ids"]), fold) for part, fold in zip(parts, chosen, strict=True)]
        ),
    }


def _write_oof_table(out: Path, pooled: dict, names: list[str]) -> None:
    """``oof.csv``: Id, fold and one probability column per class for every image."""
    columns = [str(index) for index in range(len(names))]
    table = pd.DataFrame(pooled["probabilities"], columns=columns)
    table.insert(0, "fold", pooled["fold_of"])
    table.insert(0, "Id", pooled["ids"])
    write_text_atomic(out / OOF_FILE, table.to_csv(index=False, float_format="%.6f"))


def _out_of_fold_thresholds(config, chosen, pooled, strategies, names) -> ThresholdsDocument:
    """The cv's ``thresholds.json``: the chosen strategy's thresholds, scored on the
    out-of-fold predictions, with every strategy's figures."""
    strategy = config.threshold_strategy
    document = thresholds_document(
        pooled["labels"], pooled["probabilities"], np.asarray(strategies[strategy]["thresholds"]),
        strategy, None, names, strategies[strategy]["fallbacks"],
    )  # fmt: skip
    return dataclasses.replace(
        document,
        views=config.tta,
        tiles=config.tiles,
        folds=list(chosen),
        num_oof_samples=len(pooled["ids"]),
        by_strategy=strategies,
    )


def _summary(out: Path, config, chosen, parts, pooled, strategies, frequencies) -> CvSummary:
    """Per-fold and pooled macro F1 (``cv_summary.json``)."""
    strategy = config.threshold_strategy
    thresholds = np.asarray(strategies[strategy]["thresholds"])
    labels, probabilities = pooled["labels"], pooled["probabilities"]
    per_fold = []
    for part, fold in zip(parts, chosen, strict=True):
        own = read_thresholds(fold_folder(out, fold))
        scores = part["probabilities"]
        per_fold.append(
            {
                "fold": fold,
                "samples": len(part["ids"]),
                "macro_f1_own_thresholds": macro_f1(part["labels"], scores >= own),
                "macro_f1_oof_thresholds": macro_f1(part["labels"], scores >= thresholds),
                "macro_f1_at_0.5": macro_f1(part["labels"], scores >= 0.5),
            }
        )
    own_scores = np.array([entry["macro_f1_own_thresholds"] for entry in per_fold])
    return CvSummary(
        folds=per_fold,
        fold_macro_f1_mean=float(own_scores.mean()),
        fold_macro_f1_std=float(own_scores.std(ddof=1)) if len(own_scores) > 1 else 0.0,
        oof_macro_f1=strategies[strategy]["oof_macro_f1"],
        oof_macro_f1_cross_fitted=cross_fitted_macro_f1(
            labels, probabilities, pooled["fold_of"], strategy, frequencies
        ),
        oof_macro_f1_at_half=macro_f1(labels, probabilities >= 0.5),
        strategy=strategy,
        oof_macro_f1_by_strategy={
            name: entry["oof_macro_f1"] for name, entry in strategies.items()
        },
        samples=len(pooled["ids"]),
        views=config.tta,
        stopped_short=_folds_stopped_short(out, config, chosen),
    )


def _folds_stopped_short(out: Path, config, chosen) -> str | None:
    """The folds whose run stopped while still improving, said on stderr (each fold's fit
    said it of itself) and returned for ``cv_summary.json``; ``None`` when none did."""
    histories = {}
    for fold in chosen:
        path = fold_folder(out, fold) / HISTORY_FILE
        if path.is_file():
            histories[fold] = read_history(path)
    message = folds_stopped_short(histories, config.epochs)
    if message:
        warn(message)
    return message


def format_summary(summary: dict) -> str:
    """The cv's per-fold table and pooled figures, for a terminal."""

    columns = [
        Column("fold", "d"),
        Column("images", "d"),
        Column("own thresholds", ".3f"),
        Column("out-of-fold thresholds", ".3f"),
        Column("at 0.5", ".3f"),
    ]
    rows = [
        (entry["fold"], entry["samples"], entry["macro_f1_own_thresholds"],
         entry["macro_f1_oof_thresholds"], entry["macro_f1_at_0.5"])
        for entry in summary["folds"]
    ]  # fmt: skip
    lines = [
        "macro F1 of each fold's validation images:",
        format_table(columns, rows),
        f"folds: {summary['fold_macro_f1_mean']:.3f} ± {summary['fold_macro_f1_std']:.3f} "
        "(mean ± sd, own thresholds)",
        f"all {summary['samples']} out-of-fold images: {summary['oof_macro_f1']:.3f} with the "
        f"{summary['strategy']} thresholds tuned on them, "
        f"{summary['oof_macro_f1_cross_fitted']:.3f} with thresholds tuned on the other folds, "
        f"{summary['oof_macro_f1_at_0.5']:.3f} at 0.5",
    ]
    if summary.get("stopped_short"):
        lines.append(f"warning: {summary['stopped_short']}")
    return "\n".join(lines)
