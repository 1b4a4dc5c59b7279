"""``hpa-keras evaluate``: score runs on labeled fields (a report folder), or with
``--cells`` a 2021 cell submission against true masks and cell labels.

The inference and report modules are imported inside the command, after the checks that
answer a typo at once: they load TensorFlow and Keras."""

from pathlib import Path

from hpa_keras.cli.common import add_run_input_arguments, engine_spec
from hpa_keras.errors import InputError, warn
from hpa_keras.runs.files import HISTORY_FILE
from hpa_keras.runs.folders import expand_runs
from hpa_keras.tensorflow_setup import import_tensorflow_quietly


def add_evaluate(commands) -> None:
    evaluate = commands.add_parser(
        "evaluate",
        help="score a run on labeled data: per-class table, plots, HTML report",
        description="Predict labeled data with one run (or a cv folder) and its thresholds and "
        "write per-class precision, recall, F1, support, threshold and ROC AUC (classes.csv, "
        "report.txt), macro and micro F1 and expected calibration error (summary.json), plots "
        "(a reliability diagram among them), the most uncertain images and one self-contained "
        "report.html; print the coverage of 90% conformal label sets cross-fitted on the "
        "set. Without --fold, a run evaluated on the TFRecords it was trained on is "
        "scored on its validation fold, and a cv folder on its out-of-fold predictions.",
    )
    add_run_input_arguments(
        evaluate,
        data_help="labeled make-tfrecords folder",
        images_help="folder of <Id>_<channel> images (needs --labels)",
        required=False,
    )
    evaluate.add_argument("--labels", help="with --images: CSV with Id,Target")
    evaluate.add_argument(
        "--fold",
        type=int,
        nargs="+",
        default=None,
        help="with --data: fold(s) to evaluate (default: the runs' validation fold if they "
        "trained on --data, else all)",
    )
    evaluate.add_argument(
        "--source",
        nargs="+",
        metavar="NAME",
        default=None,
        help="with --data: the source(s) to score, or all (default: the source the runs were "
        "validated on with --validate-source, else all)",
    )
    evaluate.add_argument("--out", default="report", help="report folder (default: report)")
    cells = evaluate.add_argument_group(
        "per-cell scoring (--cells): a 2021 submission against true masks and cell labels, "
        "mAP over classes with cells matched at IoU >= 0.6, as the 2021 challenge scored"
    )
    cells.add_argument("--cells", action="store_true", help="score cells, not a run's fields")
    cells.add_argument(
        "--submission", metavar="CSV", help="ID,ImageWidth,ImageHeight,PredictionString"
    )
    cells.add_argument("--masks", metavar="MASKS", help="the true cell masks (<Id>_cells.png)")
    cells.add_argument(
        "--cell-labels", metavar="CSV", help="ID,cell,Label of the true cells (cells.csv)"
    )
    cells.add_argument(
        "--iou", type=float, default=0.6, help="IoU a predicted cell needs (default: 0.6)"
    )
    evaluate.set_defaults(handler=run_evaluate)


def run_evaluate(arguments) -> None:
    if arguments.cells:
        return run_evaluate_cells(arguments)
    if not arguments.run or not (arguments.data or arguments.images):
        raise InputError("give --run and one of --data, --images (or --cells to score cells)")
    import_tensorflow_quietly()

    from hpa_keras.inference.evaluate import evaluate_runs
    from hpa_keras.inference.input_shift import input_shift_warning
    from hpa_keras.reports.html import write_report
    from hpa_keras.reports.tables import evaluation_table
    from hpa_keras.scoring.evaluation import coverage_line, summary_line

    evaluation = evaluate_runs(
        arguments.run,
        data=arguments.data,
        folds=arguments.fold,
        sources=_chosen_sources(arguments),
        images=arguments.images,
        labels_file=arguments.labels,
        tta=arguments.tta,
        batch_size=arguments.batch_size,
        thresholds=arguments.thresholds,
        engine=engine_spec(arguments),
    )
    print(evaluation_table(evaluation.class_table(), evaluation.summary()))
    history = expand_runs(arguments.run)[0][0] / HISTORY_FILE
    written = write_report(evaluation, arguments.out, history=history)
    print(summary_line(evaluation))
    print(coverage_line(evaluation))
    print(f"wrote {written['report.html']} and {len(written) - 1} more files in {arguments.out}")
    shift = input_shift_warning(arguments.run, data=arguments.data, images=arguments.images)
    for message in [*evaluation.warnings(), *([shift] if shift else [])]:
        warn(message)


def _chosen_sources(arguments):
    """evaluate's --source: None (the runs' default), or the names, ``all`` being every one."""
    if arguments.source is None:
        return None
    if not arguments.data:
        raise InputError("--source chooses among the sources of --data's records")
    if arguments.source == ["all"]:
        from hpa_keras.data.tfrecords import read_manifest

        return read_manifest(arguments.data).source_names
    return arguments.source


def run_evaluate_cells(arguments) -> None:
    from hpa_keras.cells.scoring import SUMMARY_FILE, format_cell_score, score_cell_submission

    missing = [
        flag
        for flag, value in (
            ("--submission", arguments.submission),
            ("--masks", arguments.masks),
            ("--cell-labels", arguments.cell_labels),
        )
        if not value
    ]
    if missing:
        raise InputError(f"--cells needs {', '.join(missing)}")
    if arguments.run:
        raise InputError("--cells scores a submission; predict it first (--run is for fields)")
    summary = score_cell_submission(
        arguments.submission, arguments.masks, arguments.cell_labels, arguments.out,
        iou=arguments.iou,
    )  # fmt: skip
    print(format_cell_score(summary))
    print(f"wrote {Path(arguments.out) / SUMMARY_FILE}")
