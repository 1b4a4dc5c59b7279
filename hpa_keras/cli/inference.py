"""The commands that predict with finished runs: predict (fields, or cells with a cell run)
and cam; evaluate is :mod:`hpa_keras.cli.evaluate`.

The inference modules are imported inside the commands, after the checks that answer a
typo at once: they load TensorFlow and Keras."""

import argparse

from hpa_keras.cli.common import add_run_input_arguments, engine_spec
from hpa_keras.errors import InputError, warn
from hpa_keras.inference.input_shift import input_shift_warning
from hpa_keras.inference.label_sets import (
    conformal_for,
    coverage_description,
    label_set_rows,
    stored_calibration,
)
from hpa_keras.runs.folders import default_views, expand_runs
from hpa_keras.tensorflow_setup import import_tensorflow_quietly


def add_predict(commands) -> None:
    predict = commands.add_parser(
        "predict",
        help="write a Kaggle submission from one run or an ensemble of runs",
        description="Predict every Id of the input with the run's model and thresholds and "
        "write Id,Predicted (space-separated class indices) in input order. A cv folder "
        "averages its fold models' probabilities and judges them with the thresholds tuned on "
        "its out-of-fold predictions; several run folders need --thresholds.",
    )
    add_run_input_arguments(
        predict, data_help="make-tfrecords folder", images_help="folder of <Id>_<channel> images"
    )
    predict.add_argument(
        "--ids", help="with --images: CSV whose Id column fixes the Ids and their order"
    )
    predict.add_argument(
        "--out", default="submission.csv", help="submission to write (default: submission.csv)"
    )
    predict.add_argument(
        "--probabilities",
        help="also write Id + one probability column a class, then each image's entropy (bits, "
        "mean over classes) and, for an ensemble (cv folder, several runs), its disagreement "
        "(the members' mutual information, BALD)",
    )
    predict.add_argument(
        "--flag-uncertain",
        type=_percent,
        metavar="PERCENT",
        help="mark the PERCENT %% of images (in (0, 100]) with the highest entropy: column "
        "'uncertain' (True/False) of the --probabilities table",
    )
    predict.add_argument(
        "--coverage",
        type=_rate,
        metavar="RATE",
        help="a cv folder: write conformal label sets instead of the thresholds' labels, "
        "holding the true labels at RATE (in (0, 1)) on images like its records, calibrated "
        "on its out-of-fold predictions",
    )
    predict.add_argument(
        "--guarantee",
        choices=("image", "class"),
        help="with --coverage: 'image' (default), all of an image's true labels in its set; "
        "'class', each class found in RATE of the images that have it",
    )
    predict.add_argument(
        "--uncalibrated",
        action="store_true",
        help="write the --probabilities table (a cell run's: the per-cell table) as "
        "predicted, not through the cv folder's calibration.json",
    )
    predict.add_argument(
        "--allow-empty",
        action="store_true",
        help="leave rows with no class over its threshold empty (default: the top class)",
    )
    predict.add_argument(
        "--masks",
        metavar="MASKS",
        help="a cell run on cell records: the masks they were cut from (default: the records' "
        "manifest's); writes the 2021 submission (every cell, every class) to --out and each "
        "cell's classes and probabilities to --cell-table",
    )
    predict.add_argument(
        "--cell-table",
        metavar="CSV",
        help="the per-cell table of a cell run (default: --out's name with _cells.csv)",
    )
    predict.add_argument(
        "--embeddings",
        metavar="NPZ",
        help="a cell run on cell records: also each cell's embedding (the model's pooled "
        "features; SubCell's 1536-d cell embedding) with its Id, in this .npz",
    )
    predict.add_argument(
        "--image-run",
        nargs="+",
        metavar="RUN",
        help="a cell run: also a field run (or cv folder) whose probabilities for each cell's "
        "field are mixed in: (1 - W) * cell + W * field",
    )
    image_input = predict.add_mutually_exclusive_group()
    image_input.add_argument("--image-data", metavar="DIR", help="--image-run's field records")
    image_input.add_argument("--image-images", metavar="DIR", help="--image-run's image folder")
    predict.add_argument(
        "--image-weight",
        type=float,
        default=0.5,
        metavar="W",
        help="the field run's share W in [0, 1] (default: 0.5; choose it on validation cells, "
        "see README)",
    )
    predict.set_defaults(handler=run_predict)


def _percent(text: str) -> float:
    """An argparse type: a number in (0, 100]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 100], got {text!r}") from None
    if not 0 < value <= 100:
        raise argparse.ArgumentTypeError(f"must be in (0, 100], got {text}")
    return value


def _rate(text: str) -> float:
    """An argparse type: a rate in (0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {text}")
    return value


def _label_set_thresholds(arguments):
    """The conformal thresholds of --coverage (None without it), checked before any model
    loads: they need one cv folder's labelled out-of-fold predictions."""
    if arguments.coverage is None:
        if arguments.guarantee is not None:
            raise InputError("--guarantee goes with --coverage RATE")
        return None
    if arguments.thresholds is not None:
        raise InputError("--coverage writes conformal label sets; --thresholds would be unused")
    views = arguments.tta or default_views(arguments.run)
    guarantee = arguments.guarantee or "image"
    return conformal_for(arguments.run, arguments.coverage, guarantee, views=views)


def run_predict(arguments) -> None:
    facts = _check_predict(arguments)
    if facts["kind"] == "cells":
        return _predict_cells(arguments)
    conformal = _label_set_thresholds(arguments)
    import_tensorflow_quietly()
    import numpy as np

    from hpa_keras.inference.predict import predict_runs_by_member
    from hpa_keras.inference.submission import submission_labels, write_submission

    # Every member is predicted alone anyway (a cv folder: each fold); their mean is what
    # predict_runs gives.
    ids, members, thresholds = predict_runs_by_member(
        arguments.run,
        data=arguments.data,
        images=arguments.images,
        ids_file=arguments.ids,
        tta=arguments.tta,
        batch_size=arguments.batch_size,
        thresholds=arguments.thresholds,
        engine=engine_spec(arguments),
    )
    probabilities = np.mean(members, axis=0)
    if conformal is not None:
        labels = label_set_rows(members, conformal)
    else:
        labels = submission_labels(
            probabilities, thresholds, require_label=not arguments.allow_empty
        )
    write_submission(arguments.out, ids, labels, scheme=facts["scheme"] or "hpa2018")
    notes = _write_probability_table(arguments, ids, probabilities, members)
    _report_prediction(arguments, ids, labels, conformal, notes)


def _check_predict(arguments) -> dict:
    """The arguments, the runs and their input checked before TensorFlow and any model load
    (the runs, their input, --ids, --thresholds and a cell run's --image-run belong
    together); the stain check warned. Returns the runs' facts."""
    from hpa_keras.inference.predict import check_runs_and_input  # lazy: imports TensorFlow

    if arguments.flag_uncertain is not None and not arguments.probabilities:
        raise InputError(
            "--flag-uncertain marks images in the probability table; give --probabilities FILE"
        )
    facts = check_runs_and_input(
        arguments.run, data=arguments.data, images=arguments.images, ids_file=arguments.ids,
        thresholds=arguments.thresholds,
    )  # fmt: skip
    shift = input_shift_warning(arguments.run, data=arguments.data, images=arguments.images)
    if shift:
        warn(shift)
    if facts["kind"] == "cells":
        if arguments.flag_uncertain is not None or arguments.coverage is not None:
            raise InputError(
                "--flag-uncertain and --coverage are for a field run's image-level predictions"
            )
    elif arguments.masks:
        raise InputError("--masks is for a cell run predicting cell records (--data)")
    elif arguments.embeddings:
        raise InputError("--embeddings is for a cell run predicting cell records (--data)")
    elif arguments.image_run:
        raise InputError("--image-run mixes a field run into a cell run's predictions")
    return facts


def _write_probability_table(arguments, ids, probabilities, members):
    """``--probabilities``: the table, calibrated where the cv stores maps, with its
    uncertainty columns (and ``--flag-uncertain``'s); returns the lines that say so."""
    from hpa_keras.inference.predict import uncertainty_columns  # lazy: imports TensorFlow
    from hpa_keras.inference.submission import write_probabilities  # lazy: imports TensorFlow
    from hpa_keras.scoring.uncertainty import flag_most_uncertain

    if not arguments.probabilities:
        return []
    # The labels were decided on the probabilities as predicted (the thresholds were tuned
    # on them); the table a user reads is calibrated when the cv stores maps.
    calibration = None if arguments.uncalibrated else stored_calibration(arguments.run)
    table = probabilities if calibration is None else calibration.apply(probabilities)
    extra = uncertainty_columns(table, members)
    flagged = None
    if arguments.flag_uncertain is not None:
        flagged = flag_most_uncertain(extra["entropy"], arguments.flag_uncertain)
        extra["uncertain"] = flagged
    write_probabilities(arguments.probabilities, ids, table, extra)
    notes = []
    if calibration is not None:
        notes.append(
            f"{arguments.probabilities}: probabilities through the cv's calibration.json "
            "(--uncalibrated: as predicted); the labels are decided as predicted"
        )
    if flagged is not None:
        cutoff = extra["entropy"][flagged].min()
        notes.append(
            f"flagged {flagged.sum()} of {len(ids)} images as most uncertain (entropy >= "
            f"{cutoff:.4f} bits): column 'uncertain' in {arguments.probabilities}"
        )
    return notes


def _report_prediction(arguments, ids, labels, conformal, notes) -> None:
    """What was written, the label sets' promise, the probability table's ``notes``, and
    labels per image far from training's."""
    from hpa_keras.inference.engine import engine_description  # lazy: imports TensorFlow
    from hpa_keras.inference.predict import training_labels_per_image  # lazy: TensorFlow
    from hpa_keras.scoring.thresholds import labels_per_image_warning

    folders, _ = expand_runs(arguments.run)
    runs = f"an ensemble of {len(folders)} runs" if len(folders) > 1 else "1 run"
    views = arguments.tta or default_views(arguments.run)
    empty = sum(not row for row in labels)
    print(
        f"wrote {arguments.out}: {len(ids)} Ids, {sum(map(len, labels))} labels "
        f"({len(ids) and sum(map(len, labels)) / len(ids):.2f} per image, {empty} empty), "
        f"{runs}, {views} view{'s' if views > 1 else ''} per image"
    )
    print(f"predicted through {engine_description(folders, views, engine_spec(arguments))}")
    if conformal is not None:
        print(coverage_description(conformal, labels))
    for note in notes:
        print(note)
    if conformal is not None:
        return  # sets wider than the training labels are what a coverage asks for
    per_image = sum(map(len, labels)) / max(len(ids), 1)
    message = labels_per_image_warning(per_image, training_labels_per_image(arguments.run))
    if message:
        warn(message)


def _predict_cells(arguments) -> None:
    from hpa_keras.inference.cell_prediction import check_cell_prediction, predict_cells

    cell_arguments = dict(
        masks=arguments.masks, thresholds=arguments.thresholds, image_runs=arguments.image_run,
        image_data=arguments.image_data, image_images=arguments.image_images,
    )  # fmt: skip
    check_cell_prediction(arguments.run, arguments.data, **cell_arguments)
    import_tensorflow_quietly()
    written = predict_cells(
        arguments.run, arguments.data, arguments.out, table=arguments.cell_table,
        tta=arguments.tta, batch_size=arguments.batch_size,
        image_weight=arguments.image_weight, calibrated=not arguments.uncalibrated,
        engine=engine_spec(arguments), embeddings=arguments.embeddings, **cell_arguments,
    )  # fmt: skip
    print(
        f"wrote {written['out']}: {written['fields']} fields, {written['cells']} cells, every "
        f"class with its probability (the 2021 format); {written['table']}: each cell's "
        f"classes over the run's thresholds ({written['cells_with_a_class']} cells with at "
        "least one)"
        + ("; its probabilities calibrated (--uncalibrated: as predicted)"
           if written["calibrated"] else "")
    )  # fmt: skip


# ------------------------------------------------------------------ cam


def add_cam(commands) -> None:
    cam = commands.add_parser(
        "cam",
        help="draw class activation maps (Grad-CAM) of one image",
        description="Grad-CAM of the predicted classes (or --classes) of one sample, overlaid "
        "on its composite and on each channel at the image's own size.",
    )
    cam.add_argument(
        "--run",
        required=True,
        help="run folder from fit, or a cv folder (maps and probabilities averaged over its "
        "fold models, classes chosen by its out-of-fold thresholds)",
    )
    cam.add_argument("--images", required=True, help="folder of <Id>_<channel> images")
    cam.add_argument("--id", required=True, help="sample Id")
    cam.add_argument(
        "--classes",
        type=int,
        nargs="+",
        default=None,
        help="class indices to explain (default: the predicted classes, at most 4)",
    )
    cam.add_argument("--labels", help="CSV with Id,Target: name the true labels in the title")
    cam.add_argument("--out", default="cam.png", help="PNG to write (default: cam.png)")
    cam.set_defaults(handler=run_cam)


def run_cam(arguments) -> None:
    import_tensorflow_quietly()
    from hpa_keras.inference.cam import write_cam

    true_labels = None
    if arguments.labels:
        from hpa_keras.data.labels import read_labels

        table = read_labels(arguments.labels)
        if arguments.id in set(table.ids):
            true_labels = table.labels_of(arguments.id)
    result = write_cam(
        arguments.run,
        arguments.images,
        arguments.id,
        arguments.out,
        classes=arguments.classes,
        true_labels=true_labels,
    )
    names = result["class_names"]
    described = ", ".join(
        f"{index} {names[index]} (p={result['probabilities'][index]:.2f})"
        for index in result["classes"]
    )
    height, width = result["image"].shape[:2]
    print(f"wrote {arguments.out}: Grad-CAM of {described} over the {width}x{height} image")
