"""The ``hpa-keras`` command line: parse arguments, call the library, print results.

Each subcommand is one ``add_<command>`` function (its parser) and one
``run_<command>`` function (what it does). Commands whose options are a
settings dataclass (``fit``: :class:`~hpa_keras.training.config.TrainingConfig`;
``make-tfrecords``: :class:`~hpa_keras.data.tfrecords.ConversionSettings`;
``make-demo-data``: :class:`~hpa_keras.synthetic.generator.DemoDataSettings`)
get one flag per setting, generated from the dataclass, so every setting is
reachable and ``--help`` names each default.

Every command reports bad input as one line naming the file or field and the
reason, and exits with status 2, without a traceback. Heavy modules
(TensorFlow above all) are imported inside the commands that need them, so
``hpa-keras --help`` and the data commands start quickly.
"""

import argparse
import contextlib
import dataclasses
import logging
import os
import re
import sys
import tempfile
import traceback
from pathlib import Path

from hpa_keras import __version__
from hpa_keras.errors import InputError, warn
from hpa_keras.settings import add_setting_arguments, given_settings, positive_int, read_yaml
from hpa_keras.tensorflow_setup import NativeLogFilter, import_tensorflow_quietly

EXIT_VERIFY_FAILED = 1
EXIT_FAILURE = 1
EXIT_INPUT_ERROR = 2
EXIT_INTERRUPTED = 130


# ------------------------------------------------------------------ shared arguments


def _add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    """``--workers`` and ``--quiet``, shared by the commands that run worker processes."""
    parser.add_argument(
        "--workers", type=positive_int, default=None, help="worker processes (default: all cores)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_run_input_arguments(parser, data_help: str, images_help: str, required=True) -> None:
    """What predict and evaluate share: the run folders, the input, views and batch size
    (``required=False``: the command checks them itself, having a mode without a run)."""
    parser.add_argument(
        "--run",
        nargs="+",
        required=required,
        help="a run folder from fit, a cv folder (one ensemble with its out-of-fold "
        "thresholds), or several run folders with --thresholds",
    )
    source = parser.add_mutually_exclusive_group(required=required)
    source.add_argument("--data", help=data_help)
    source.add_argument("--images", help=images_help)
    parser.add_argument(
        "--tta",
        type=int,
        choices=(1, 2, 4, 8),
        default=None,
        help="dihedral views averaged per image (default: the views the thresholds were "
        "tuned with: the run's or cv's --tta)",
    )
    parser.add_argument(
        "--thresholds",
        metavar="FILE",
        help="a thresholds.json to judge the probabilities with (default: the cv folder's or "
        "the run's own; needed for several run folders)",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=16, help="images per batch (default: 16)"
    )


def _model_option(text: str) -> tuple[str, object]:
    """``KEY=VALUE``, the value read as YAML by the settings files' reader (``1e-3`` a number)."""
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.replace("-", "_"), read_yaml(value, key)
    except InputError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


# ------------------------------------------------------------------ demo


def add_demo(commands) -> None:
    demo = commands.add_parser(
        "demo",
        help="run the main job on built-in synthetic data (about 10 minutes on 2 cores)",
        description="Generate built-in HPA-like data, draw it, convert it to TFRecords, "
        "cross-validate GAP-Net (2 of the 5 folds, thresholds tuned on the out-of-fold "
        "predictions), "
        "evaluate the fold ensemble on the held-out test split (HTML report) beside a single "
        "run, write the Kaggle submission and a Grad-CAM picture, and print the macro F1 "
        "beside the baselines. About 10 minutes on a 2-core CPU.",
    )
    demo.add_argument("--out", default="hpa-demo", help="output folder (default: hpa-demo)")
    demo.add_argument(
        "--epochs", type=positive_int, default=None, help="training epochs per fold (default: 36)"
    )
    demo.add_argument(
        "--folds",
        default=None,
        help="folds to train, comma-separated, or all (default: 0,1; all trains the 5)",
    )
    demo.add_argument(
        "--quick",
        action="store_true",
        help="60 tiny images, a tiny model and 2 folds: every step in well under a minute",
    )
    single = demo.add_argument_group(
        "single cell (--single-cell): labels for every cell; 600 fields with per-cell truth in "
        "the 2021 scheme, segmented and cut into cells, a cell run and a field run, the 2021 "
        "submission and its mAP beside two baselines (3-6 minutes on 2 cores)"
    )
    single.add_argument("--single-cell", action="store_true", help="run the single-cell demo")
    single.add_argument(
        "--cell-pooling",
        choices=("none", "max", "lse"),
        default="none",
        help="the cell run: none (field labels on every cell) or multiple instances",
    )
    single.add_argument("--seed", type=int, default=0, help="single cell: the data's seed")
    _add_worker_arguments(demo)
    demo.set_defaults(handler=run_demo)


def run_demo(arguments) -> None:
    import_tensorflow_quietly()
    from hpa_keras.demo import DEMO_PLAN, QUICK_PLAN
    from hpa_keras.demo import run_demo as demo

    if arguments.single_cell:
        return _run_single_cell_demo(arguments)
    plan = QUICK_PLAN if arguments.quick else DEMO_PLAN
    if arguments.epochs is not None:
        plan = dataclasses.replace(plan, epochs=arguments.epochs)
    if arguments.folds is not None:
        plan = dataclasses.replace(plan, folds=arguments.folds)
    demo(arguments.out, workers=arguments.workers, progress=not arguments.quiet, plan=plan)


def _run_single_cell_demo(arguments) -> None:
    from hpa_keras.single_cell_demo import (
        QUICK_SINGLE_CELL_PLAN,
        SINGLE_CELL_PLAN,
        run_single_cell_demo,
    )

    if arguments.folds is not None:
        raise InputError("--folds is for the field demo; the single-cell demo trains fold 0")
    plan = QUICK_SINGLE_CELL_PLAN if arguments.quick else SINGLE_CELL_PLAN
    plan = dataclasses.replace(
        plan,
        data=dataclasses.replace(plan.data, seed=arguments.seed),
        cell_pooling=arguments.cell_pooling,
    )
    if arguments.epochs is not None:
        plan = dataclasses.replace(plan, epochs=arguments.epochs, field_epochs=arguments.epochs)
    out = arguments.out if arguments.out != "hpa-demo" else "hpa-single-cell"
    run_single_cell_demo(out, plan, workers=arguments.workers, progress=not arguments.quiet)


# ------------------------------------------------------------------ make-demo-data


def add_make_demo_data(commands) -> None:
    from hpa_keras.synthetic.generator import DemoDataSettings

    make = commands.add_parser(
        "make-demo-data",
        help="write a synthetic HPA-like data set in the Kaggle layout",
        description="Write OUT/train.csv, OUT/train/<Id>_<channel>.png, OUT/test/, "
        "OUT/sample_submission.csv and OUT/test_labels.csv. The same seed gives the same bytes.",
    )
    make.add_argument(
        "out", help="output folder (new or empty, or an earlier synthetic set with --overwrite)"
    )
    add_setting_arguments(make, DemoDataSettings, positive=("num_samples", "image_size"))
    make.add_argument(
        "--overwrite", action="store_true", help="replace an earlier synthetic data set in OUT"
    )
    _add_worker_arguments(make)
    make.set_defaults(handler=run_make_demo_data)


def run_make_demo_data(arguments) -> None:
    from hpa_keras.synthetic.generator import DemoDataSettings, make_demo_data

    settings = DemoDataSettings(**given_settings(arguments, DemoDataSettings))
    summary = make_demo_data(
        arguments.out,
        settings,
        workers=arguments.workers,
        overwrite=arguments.overwrite,
        progress=not arguments.quiet,
    )
    size = f"{settings.image_size}x{settings.image_size}, {settings.bit_depth}-bit"
    print(
        f"wrote {summary['num_train']} training and {summary['num_test']} test samples "
        f"({size}) to {arguments.out}"
    )


# ------------------------------------------------------------------ show


def add_show(commands) -> None:
    show = commands.add_parser(
        "show",
        help="draw one sample: composite and its four channels",
        description="Draw a sample's colour composite beside its four channels, titled with "
        "its classes. DIR is a data set root (with train/ and test/) or a folder of images.",
    )
    show.add_argument("dir", help="data set root or image folder")
    show.add_argument("--id", required=True, help="sample Id")
    show.add_argument("--out", default="sample.png", help="PNG to write (default: sample.png)")
    show.add_argument(
        "--labels",
        default=None,
        help="CSV with Id,Target (default: DIR/train.csv or DIR/test_labels.csv)",
    )
    show.add_argument(
        "--masks",
        default=None,
        metavar="MASKS",
        help="folder of cell masks (hpa-keras segment's, the HPA's, Cellpose's): outline and "
        "number the field's cells",
    )
    show.add_argument(
        "--cell-labels",
        default=None,
        metavar="CSV",
        help="with --masks: ID,cell,Label (a cells.csv, or predict's per-cell table) to write "
        "each cell's classes under its number",
    )
    show.set_defaults(handler=run_show)


def run_show(arguments) -> None:
    from hpa_keras.classes import get_scheme
    from hpa_keras.reports.samples import write_sample_figure

    found = write_sample_figure(
        arguments.dir,
        arguments.id,
        arguments.out,
        arguments.labels,
        arguments.masks,
        arguments.cell_labels,
    )
    missing = [name for name, path in found["files"].items() if path is None]
    if missing:
        print(
            f"note: no {', '.join(missing)} channel for Id {arguments.id}; shown as missing",
            file=sys.stderr,
        )
    labels, names = found["labels"], get_scheme(found["scheme"]).class_names
    described = ", ".join(names[index] for index in labels) if labels else "no labels found"
    if found.get("num_cells") is not None:
        described += f"; {found['num_cells']} cells outlined"
    print(f"wrote {arguments.out} ({described})")


# ------------------------------------------------------------------ segment


def add_segment(commands) -> None:
    from hpa_keras.cells.segment import SegmentationSettings

    segment = commands.add_parser(
        "segment",
        help="cell and nucleus masks of every field of an image folder",
        description="Segment every field of a folder of <Id>_<channel> images into "
        "<Id>_cells.png and <Id>_nuclei.png in MASKS (0 background, 1..N one cell each, a "
        "nucleus numbered as its cell; 16-bit from 255 cells on): nuclei from the blue "
        "channel, cells grown from them over the red and yellow channels by a seeded "
        "watershed. Fields that already have masks in MASKS are kept, so a rerun finishes an "
        "interrupted run. Lengths are in pixels of a field shrunk to 512 px.",
    )
    segment.add_argument("--images", required=True, metavar="DIR", help="folder of fields")
    segment.add_argument("--out", required=True, metavar="MASKS", help="folder for the masks")
    segment.add_argument(
        "--overwrite", action="store_true", help="segment again fields that have masks"
    )
    segment.add_argument(
        "--on-error",
        choices=("fail", "skip"),
        default="fail",
        help="fail: stop at an unreadable field; skip: list it in segmentation.json and go on "
        "(default: fail)",
    )
    add_setting_arguments(segment, SegmentationSettings, positive=("working_size",))
    _add_worker_arguments(segment)
    segment.set_defaults(handler=run_segment)


def run_segment(arguments) -> None:
    from hpa_keras.cells.segment import SUMMARY_FILE, SegmentationSettings, segment_folder

    settings = SegmentationSettings(**given_settings(arguments, SegmentationSettings))
    summary = segment_folder(
        arguments.images,
        arguments.out,
        settings,
        workers=arguments.workers,
        overwrite=arguments.overwrite,
        on_error=arguments.on_error,
        progress=not arguments.quiet,
    )
    counts = [field["cells"] for field in summary["fields"]]
    spread = f", {min(counts)}-{max(counts)} a field" if counts else ""
    kept = f" ({summary['kept']} had masks and were kept)" if summary["kept"] else ""
    print(
        f"segmented {summary['segmented']} of {summary['num_fields']} fields in "
        f"{summary['seconds']:.1f} s{kept}; {arguments.out} holds masks of {len(counts)} "
        f"fields, {sum(counts)} cells{spread} ({SUMMARY_FILE})"
    )
    if summary["no_cells"]:
        print(
            f"no cells found in {len(summary['no_cells'])} fields (no mask written; first: "
            f"{summary['no_cells'][0]})"
        )
    if summary["errors"]:
        print(
            f"skipped {len(summary['errors'])} unreadable fields; first: "
            f"{summary['errors'][0]['error']}"
        )


# ------------------------------------------------------------------ make-tfrecords


def add_make_tfrecords(commands) -> None:
    from hpa_keras.data.conversion import ConversionSettings

    records = commands.add_parser(
        "make-tfrecords",
        help="convert channel images + train.csv into sharded TFRecords with folds",
        description="Convert folders of <Id>_<channel> images (PNG, TIFF or JPEG; 8- or "
        "16-bit grayscale, or HPA v18 colour files) and their labels into sharded TFRecords "
        "with multilabel-stratified folds that keep each antibody's fields together, and a "
        "manifest. Repeat --images and --labels in pairs to put several sources (the Kaggle "
        "training set and the v18 images) into one record set. Images of Ids a label file "
        "does not list are ignored (and counted). Interrupted, run it again with the same "
        "arguments to finish.",
    )
    records.add_argument(
        "--images",
        required=True,
        action="append",
        metavar="DIR",
        help="folder of <Id>_<channel> images; repeat for several sources",
    )
    records.add_argument(
        "--labels",
        action="append",
        metavar="CSV",
        help="the folder's train.csv (2018 Id,Target or 2021 ID,Label; labeled, with folds) "
        "or sample_submission.csv (unlabeled); one per --images, in the same order; "
        "default: unlabeled, every Id of the folder",
    )
    records.add_argument(
        "--source-name",
        action="append",
        metavar="NAME",
        help="name of each source, in --images order (default: kaggle for Kaggle Ids, "
        "hpa-v18 for v18 Ids, else the folder's name)",
    )
    records.add_argument("--out", default="tfrecords", help="output folder (default: tfrecords)")
    add_setting_arguments(records, ConversionSettings, positive=("image_size", "num_shards"))
    _add_worker_arguments(records)
    records.set_defaults(handler=run_make_tfrecords)


def _sources(arguments) -> list:
    """The --images/--labels/--source-name pairs as conversion sources."""
    from hpa_keras.data.conversion import Source

    images, labels, names = arguments.images, arguments.labels, arguments.source_name
    if labels is not None and len(labels) != len(images):
        raise InputError(
            f"{len(images)} --images but {len(labels)} --labels: give one label file per image "
            "folder, in the same order (or none, for unlabeled folders)"
        )
    if names is not None and len(names) != len(images):
        raise InputError(f"{len(images)} --images but {len(names)} --source-name")
    return [
        Source(folder, labels[position] if labels else None, names[position] if names else None)
        for position, folder in enumerate(images)
    ]


def run_make_tfrecords(arguments) -> None:
    # TensorFlow is imported by the writing phase, after the labels and files are checked.
    from hpa_keras.data.conversion import ConversionSettings, make_tfrecords
    from hpa_keras.data.tfrecords import summarize_folds

    settings = ConversionSettings(**given_settings(arguments, ConversionSettings))
    manifest = make_tfrecords(
        out=arguments.out,
        settings=settings,
        workers=arguments.workers,
        progress=not arguments.quiet,
        sources=_sources(arguments),
    )
    size = manifest["image_size"]
    megabytes = sum(shard["bytes"] for shard in manifest["shards"]) / 2**20
    print(
        f"wrote {manifest['num_records']} {manifest['split']} records ({size}x{size}, "
        f"{manifest['bit_depth']}-bit, {manifest['encoding']}, {manifest['scheme']} labels) in "
        f"{len(manifest['shards'])} shards, {megabytes:.1f} MB, to {arguments.out}"
    )
    cells = manifest.get("cells")
    if cells:
        print(
            f"  one record per cell: {cells['num_cells']} cells of {cells['num_fields']} fields "
            f"({cells['num_edge']} cut by the field's edge, {cells['num_small']} small: flagged, "
            f"kept; {cells['num_with_cell_labels']} with their own labels); folds are drawn per "
            "field, so a field's cells share a fold"
        )
    for source in manifest["sources"]:
        fields = ", ".join(f"{count} at {size}" for size, count in source["original_sizes"].items())
        formats = ", ".join(source["formats"]) or "none"
        print(f"  {source['name']}: {source['num_records']} records ({formats}; {fields})")
        if source.get("labels_with_repeated_classes"):
            print(
                f"    {source['labels_with_repeated_classes']} label sets in {source['labels']} "
                "name a class twice (merged 2018 classes); each class is counted once"
            )
        missing = source.get("missing") or {}
        if missing.get("num_ids"):
            print(
                f"    {missing['num_ids']} Ids of {source['labels']} have no image files and were "
                f"left out (--missing ignore; first: {missing['first_ids'][0]})"
            )
        ignored = source["ignored"]
        if ignored.get("num_files"):
            print(
                f"    ignored {ignored['num_files']} image files of {ignored['num_ids']} Ids that "
                f"{source['labels']} does not list (first: {ignored['first_ids'][0]})"
            )
    if manifest["num_skipped"]:
        print(
            f"skipped {manifest['num_skipped']} bad inputs; see "
            f"{arguments.out}/{manifest['errors_file']}"
        )
    balance = summarize_folds(manifest)
    if balance:
        grouping = manifest["grouping"]
        names = manifest["class_names"]
        print(
            f"{len(balance['fold_sizes'])} {manifest['fold_method']} folds of "
            f"{balance['fold_sizes']} records ({grouping['num_groups']} groups, the largest of "
            f"{grouping['largest_group']}); largest per-class deviation from the overall "
            f"frequency: {balance['max_abs_deviation_points']:.2f} points "
            f"({100 * balance['max_relative_deviation']:.0f}% relative, "
            f"{names[balance['worst_class']]})"
        )


# ------------------------------------------------------------------ verify


def add_verify(commands) -> None:
    verify = commands.add_parser(
        "verify",
        help="re-read every TFRecord shard against its manifest",
        description="Check every shard's sha256 and record count, that every record parses "
        "and decodes, Ids are unique and folds are as in the manifest. Exit status 1 on any "
        "mismatch, naming the shard.",
    )
    verify.add_argument("dir", help="make-tfrecords output folder")
    verify.add_argument("--quiet", action="store_true", help="no progress bar")
    verify.set_defaults(handler=run_verify)


def run_verify(arguments) -> int:
    import_tensorflow_quietly()
    from hpa_keras.data.tfrecords import read_manifest, verify_tfrecords

    problems = verify_tfrecords(arguments.dir, progress=not arguments.quiet)
    if problems:
        for problem in problems:
            print(f"hpa-keras verify: {problem}", file=sys.stderr)
        print(f"hpa-keras verify: {len(problems)} problems in {arguments.dir}", file=sys.stderr)
        return EXIT_VERIFY_FAILED
    manifest = read_manifest(arguments.dir)
    print(
        f"ok: {len(manifest['shards'])} shards, {manifest['num_records']} records, "
        "checksums, counts, Ids, folds and images all as in the manifest"
    )
    return 0


# ------------------------------------------------------------------ models


def add_models(commands) -> None:
    models = commands.add_parser(
        "models",
        help="list the model builders with their parameter counts",
        description="List the registered models (names are case-insensitive) with their "
        "parameter counts at 512x512x4 and 28 classes, from the registry's table: nothing is "
        "built. --tiny or another --image-size builds each model (weights=None) to count it, "
        "which takes about a minute.",
    )
    models.add_argument(
        "--image-size",
        type=positive_int,
        default=None,
        help="count at this input side, building each model (default: 512, from the table; "
        "only capsnet's count depends on it)",
    )
    models.add_argument(
        "--tiny", action="store_true", help="count the tiny test variants (builds each model)"
    )
    models.set_defaults(handler=run_models)


def run_models(arguments) -> None:
    from hpa_keras.models.registry import (
        DESCRIPTIONS,
        MODELS,
        PARAMETER_COUNTS,
        PARAMETER_COUNTS_AT,
        TINY_OPTIONS,
    )

    default_size = PARAMETER_COUNTS_AT["input_shape"][0]
    size = arguments.image_size or default_size
    build = arguments.tiny or size != default_size  # else the table answers, without Keras
    if build:
        import_tensorflow_quietly()
        from hpa_keras.models.registry import build_model
    variant = ", tiny variants" if arguments.tiny else ""
    print(f"{'model':22s} {'parameters':>12s}  (input {size}x{size}x4, 28 classes{variant})")
    for name in MODELS:
        if build:
            options = TINY_OPTIONS[name] if arguments.tiny else {}
            count = build_model(name, input_shape=(size, size, 4), **options).count_params()
        else:
            count = PARAMETER_COUNTS[name]
        print(f"{name:22s} {count:12,d}  {DESCRIPTIONS[name]}")


# ------------------------------------------------------------------ fit

# Settings that only one schedule reads: giving them with another schedule is a mistake.
_SCHEDULE_SETTINGS = {
    "plateau_patience": "plateau",
    "plateau_factor": "plateau",
    "sgdr_epochs": "sgdr",
    "sgdr_t_mul": "sgdr",
}


def _add_training_arguments(parser, skip=()) -> None:
    """What fit and cv share: --config (a YAML file or a shipped recipe), one flag per
    training setting (but ``skip``), --model-option and --tiny."""
    from hpa_keras.training.config import TrainingConfig
    from hpa_keras.training.recipes import recipe_names

    parser.add_argument(
        "--config",
        help="YAML file of settings (keys as in RUN_DIR/config.yaml), or a shipped recipe: "
        f"recipes/NAME with NAME one of {', '.join(recipe_names())}",
    )
    add_setting_arguments(
        parser,
        TrainingConfig,
        skip=skip,
        positive=("epochs", "image_size", "batch_size", "sgdr_epochs", "steps_per_epoch"),
    )
    parser.add_argument(
        "--model-option",
        type=_model_option,
        action="append",
        metavar="KEY=VALUE",
        help="builder option, repeatable, for example width=16 (default: the builder's)",
    )
    parser.add_argument("--tiny", action="store_true", help="the model's tiny test variant")
    parser.add_argument("--quiet", action="store_true", help="no progress output (verbose 0)")
    group = parser.add_argument_group(
        "processes of a --distributed run (default: KERAS_DISTRIBUTION_JOB_ADDRESSES, "
        "KERAS_DISTRIBUTION_NUM_PROCESSES, KERAS_DISTRIBUTION_PROCESS_ID, or what JAX detects "
        "under Slurm, Open MPI, Kubernetes and Cloud TPU)"
    )
    group.add_argument(
        "--coordinator", metavar="HOST:PORT", help="process 0's address and a free port"
    )
    group.add_argument("--num-processes", type=int, metavar="N", help="processes in the run")
    group.add_argument("--process-id", type=int, metavar="K", help="this process, 0..N-1")


def _training_config(arguments):
    """The resolved TrainingConfig of fit's or cv's arguments: flags over --config over
    defaults; model options merged (tiny variant, then the file's, then --model-option)."""
    from hpa_keras.training.config import TrainingConfig, resolve_config

    overrides = given_settings(arguments, TrainingConfig)
    if arguments.quiet:
        overrides["verbose"] = 0
    config = resolve_config(overrides, arguments.config)
    process_flags = (arguments.coordinator, arguments.num_processes, arguments.process_id)
    if config.distributed:
        from hpa_keras.distributed import initialize_processes

        initialize_processes(*process_flags)
    elif any(value is not None for value in process_flags):
        raise InputError("--coordinator, --num-processes and --process-id need --distributed")
    # The model may come from the YAML file, so the tiny options wait for the resolved settings.
    tiny = {}
    if arguments.tiny:
        from hpa_keras.models import TINY_OPTIONS

        tiny = TINY_OPTIONS[config.model]
    options = {**tiny, **config.model_options, **dict(arguments.model_option or [])}
    config = dataclasses.replace(config, model_options=options)
    for name, schedule in _SCHEDULE_SETTINGS.items():
        if name in overrides and config.schedule != schedule:
            flag = "--" + name.replace("_", "-")
            raise InputError(
                f"{flag} applies to --schedule {schedule} only, not to {config.schedule}"
                + (
                    ": ReduceLROnPlateau cannot change the rate of a schedule"
                    if schedule == "plateau"
                    else ""
                )
            )
    return config


def _check_records_before_tensorflow(data) -> None:
    """The records folder of fit or cv exists (settings may name it in a YAML file, so the
    argument check cannot); a URL waits for TensorFlow's file system."""
    from hpa_keras.data.tfrecords import read_manifest
    from hpa_keras.storage import is_url

    if data and not is_url(data):
        read_manifest(data)


def add_fit(commands) -> None:
    fit = commands.add_parser(
        "fit",
        help="train a model on TFRecords, with threshold search, into a run folder",
        description="Train on every fold but --fold, validate on --fold, search per-class "
        "thresholds each epoch and keep the best epoch. Settings: flags over --config YAML over "
        "defaults; the resolved ones are saved as RUN_DIR/config.yaml (same names, with "
        "underscores). Killed and started again with the same command, a run resumes after "
        "its last finished epoch.",
    )
    _add_training_arguments(fit)
    fit.add_argument(
        "--find-lr",
        action="store_true",
        help="run the learning-rate range test, write RUN_DIR/lr_finder.png and stop",
    )
    fit.set_defaults(handler=run_fit)


def run_fit(arguments) -> None:
    config = _training_config(arguments)
    _check_records_before_tensorflow(config.data)
    import_tensorflow_quietly()
    if arguments.find_lr:
        from hpa_keras.training.fit import find_learning_rate_for

        result = find_learning_rate_for(config)
        print(
            f"learning-rate range test over {result['steps']} batches: suggested --lr "
            f"{result['suggested_lr']:.2g}; plot: {result['plot']}"
        )
        return
    from hpa_keras.training.fit import fit

    summary = fit(config, config_file=arguments.config)
    if summary.get("process_index", 0):
        return  # process 0 reports
    print(
        f"{summary['run']}: best epoch {summary['best_epoch']} of {summary['epochs']}, "
        f"validation macro F1 {summary['val_macro_f1_at_0.5']:.3f} at 0.5, "
        f"{summary['val_macro_f1_tuned']:.3f} with tuned thresholds ({summary['seconds']:.0f} s)"
    )


# ------------------------------------------------------------------ cv


def add_cv(commands) -> None:
    cv = commands.add_parser(
        "cv",
        help="train every fold, tune thresholds on the out-of-fold predictions: one ensemble",
        description="Train one run per fold into CV_DIR/fold-K (each as fit would, with "
        "every fit setting), predict each fold's validation images with the run that did not "
        "train on them (CV_DIR/oof.csv), tune thresholds on all of those predictions with "
        "every strategy (CV_DIR/thresholds.json: the chosen --threshold-strategy, the others' "
        "figures beside it), and write the per-fold and pooled figures (cv_summary.json, "
        "report/). Killed and started again with the same command, cv keeps the finished "
        "folds and resumes the interrupted one. predict, evaluate and cam take --run CV_DIR "
        "as one ensemble of the fold models with these thresholds.",
    )
    cv.add_argument("--out", required=True, help="cv folder (new, or one to continue)")
    cv.add_argument(
        "--folds",
        default="all",
        help="folds to train and validate, comma-separated, or all (default: all)",
    )
    _add_training_arguments(cv, skip=("fold", "out"))
    cv.set_defaults(handler=run_cv)


def run_cv(arguments) -> None:
    config = _training_config(arguments)
    _check_records_before_tensorflow(config.data)
    import_tensorflow_quietly()
    from hpa_keras.training.cv import cross_validate, format_summary

    summary = cross_validate(
        config, arguments.out, folds=arguments.folds, config_file=arguments.config
    )
    if summary is None:
        return  # a process other than 0 of a --distributed cv: process 0 reports
    print(format_summary(summary))
    print(
        f"wrote {arguments.out}/thresholds.json ({summary['strategy']}), oof.csv and "
        f"report/report.html; predict with --run {arguments.out}"
    )


# ------------------------------------------------------------------ predict


def add_predict(commands) -> None:
    predict = commands.add_parser(
        "predict",
        help="write a Kaggle submission from one run or an ensemble of runs",
        description="Predict every Id of the input with the run's model and thresholds and "
        "write Id,Predicted (space-separated class indices) in input order. A cv folder "
        "averages its fold models' probabilities and judges them with the thresholds tuned on "
        "its out-of-fold predictions; several run folders need --thresholds.",
    )
    _add_run_input_arguments(
        predict, data_help="make-tfrecords folder", images_help="folder of <Id>_<channel> images"
    )
    predict.add_argument(
        "--ids", help="with --images: CSV whose Id column fixes the Ids and their order"
    )
    predict.add_argument(
        "--out", default="submission.csv", help="submission to write (default: submission.csv)"
    )
    predict.add_argument("--probabilities", help="also write Id + one probability column a class")
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


def run_predict(arguments) -> None:
    import_tensorflow_quietly()
    from hpa_keras.inference.predict import predict_runs, training_labels_per_image
    from hpa_keras.inference.runs import default_views, expand_runs, read_input_settings
    from hpa_keras.inference.submission import (
        submission_labels,
        write_probabilities,
        write_submission,
    )
    from hpa_keras.training.thresholds import labels_per_image_warning

    folders, _ = expand_runs(arguments.run)
    run_input = read_input_settings(folders[0])
    cell_run = _check_cell_input(arguments, run_input)
    ids, probabilities, thresholds = predict_runs(
        arguments.run,
        data=arguments.data,
        images=arguments.images,
        ids_file=arguments.ids,
        tta=arguments.tta,
        batch_size=arguments.batch_size,
        thresholds=arguments.thresholds,
    )
    views = arguments.tta or default_views(arguments.run)
    scheme = run_input.get("scheme", "hpa2018")
    if cell_run:
        if arguments.image_run:
            probabilities = _mixed_with_fields(arguments, ids, probabilities)
        return _write_cell_predictions(arguments, ids, probabilities, thresholds, run_input)
    labels = submission_labels(probabilities, thresholds, require_label=not arguments.allow_empty)
    write_submission(arguments.out, ids, labels, scheme=scheme)
    if arguments.probabilities:
        write_probabilities(arguments.probabilities, ids, probabilities)
    runs = f"an ensemble of {len(folders)} runs" if len(folders) > 1 else "1 run"
    empty = sum(not row for row in labels)
    print(
        f"wrote {arguments.out}: {len(ids)} Ids, {sum(map(len, labels))} labels "
        f"({len(ids) and sum(map(len, labels)) / len(ids):.2f} per image, {empty} empty), "
        f"{runs}, {views} view{'s' if views > 1 else ''} per image"
    )
    per_image = sum(map(len, labels)) / max(len(ids), 1)
    message = labels_per_image_warning(per_image, training_labels_per_image(arguments.run))
    if message:
        warn(message)


def _check_cell_input(arguments, run_input: dict) -> bool:
    """Whether this is a cell run predicting cell records (then --masks is set). Before any
    model loads, the runs, their input, --ids, --thresholds and --image-run are checked to
    belong together (check_runs_and_input: one label scheme, cell runs with cell records);
    errors for --masks or --image-run with a field run."""
    from hpa_keras.inference.predict import check_runs_and_input

    facts = check_runs_and_input(
        arguments.run, data=arguments.data, images=arguments.images, ids_file=arguments.ids,
        thresholds=arguments.thresholds,
    )  # fmt: skip
    if facts["kind"] != "cells":
        if arguments.masks:
            raise InputError("--masks is for a cell run predicting cell records (--data)")
        if arguments.image_run:
            raise InputError("--image-run mixes a field run into a cell run's predictions")
        return False
    if arguments.image_run:
        if not (arguments.image_data or arguments.image_images):
            raise InputError(
                "--image-run needs the fields to predict: --image-data or --image-images"
            )
        image_facts = check_runs_and_input(
            arguments.image_run, data=arguments.image_data, images=arguments.image_images,
            scheme=facts["scheme"],
        )  # fmt: skip
        if image_facts["kind"] != "fields":
            raise InputError(f"{arguments.image_run[0]}: --image-run takes a run trained on "
                             "whole fields")  # fmt: skip
    from hpa_keras.data.tfrecords import read_manifest

    manifest = read_manifest(arguments.data)
    arguments.masks = arguments.masks or (manifest.get("cells") or {}).get("masks")
    return True


def _mixed_with_fields(arguments, ids, probabilities):
    from hpa_keras.inference.cells import mix_with_fields
    from hpa_keras.inference.predict import predict_runs

    # --image-run, its input and its scheme were checked by _check_cell_input
    field_ids, field_probabilities, _ = predict_runs(
        arguments.image_run,
        data=arguments.image_data,
        images=arguments.image_images,
        batch_size=arguments.batch_size,
    )
    return mix_with_fields(
        ids, probabilities, field_ids, field_probabilities, arguments.image_weight
    )


def _write_cell_predictions(arguments, ids, probabilities, thresholds, run_input) -> None:
    from hpa_keras.inference.cells import write_cell_predictions

    out = Path(arguments.out)
    table = Path(arguments.cell_table or out.with_name(out.stem + "_cells.csv"))
    written = write_cell_predictions(
        ids,
        probabilities,
        thresholds,
        arguments.masks,
        out,
        table,
        run_input["class_names"],
        run_input.get("scheme", "hpa2018"),
        records=arguments.data,
    )
    print(
        f"wrote {out}: {written['fields']} fields, {written['cells']} cells, every class with "
        f"its probability (the 2021 format); {table}: each cell's classes over the run's "
        f"thresholds ({written['cells_with_a_class']} cells with at least one)"
    )


# ------------------------------------------------------------------ evaluate


def add_evaluate(commands) -> None:
    evaluate = commands.add_parser(
        "evaluate",
        help="score a run on labeled data: per-class table, plots, HTML report",
        description="Predict labeled data with one run (or a cv folder) and its thresholds and "
        "write per-class precision, recall, F1, support, threshold and ROC AUC (classes.csv, "
        "report.txt), macro and micro F1 (summary.json), plots and one self-contained "
        "report.html. Without --fold, a run evaluated on the TFRecords it was trained on is "
        "scored on its validation fold, and a cv folder on its out-of-fold predictions.",
    )
    _add_run_input_arguments(
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

    from hpa_keras.inference.evaluate import evaluate_runs, summary_line
    from hpa_keras.reports.html import write_report
    from hpa_keras.reports.tables import evaluation_table

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
    )
    print(evaluation_table(evaluation.class_table(), evaluation.summary()))
    from hpa_keras.inference.runs import expand_runs

    history = expand_runs(arguments.run)[0][0] / "history.csv"
    written = write_report(evaluation, arguments.out, history=history)
    print(summary_line(evaluation))
    print(f"wrote {written['report.html']} and {len(written) - 1} more files in {arguments.out}")
    for message in evaluation.warnings():
        warn(message)


def _chosen_sources(arguments):
    """evaluate's --source: None (the runs' default), or the names, ``all`` being every one."""
    if arguments.source is None:
        return None
    if not arguments.data:
        raise InputError("--source chooses among the sources of --data's records")
    if arguments.source == ["all"]:
        from hpa_keras.data.tfrecords import read_manifest, source_names

        return source_names(read_manifest(arguments.data))
    return arguments.source


# ------------------------------------------------------------------ baseline


def add_baseline(commands) -> None:
    baseline = commands.add_parser(
        "baseline",
        help="score the baselines (predict nothing, most frequent, logistic regression, "
        "random forest on image features)",
        description="Train the baselines on the folds of --data other than --fold and test "
        "them on --fold, or train them on all of --data and test them on --test-data.",
    )
    baseline.add_argument("--data", required=True, help="labeled make-tfrecords folder")
    baseline.add_argument("--fold", type=int, default=0, help="test fold (default: 0)")
    baseline.add_argument("--test-data", help="labeled TFRecords to test on instead of a fold")
    baseline.add_argument(
        "--trees", type=positive_int, default=100, help="random forest size (default: 100)"
    )
    baseline.add_argument("--seed", type=int, default=0, help="seed of the learners (default: 0)")
    baseline.add_argument("--out", help="also write the table as CSV here")
    baseline.set_defaults(handler=run_baseline)


def run_baseline(arguments) -> None:
    import_tensorflow_quietly()
    from hpa_keras.training.baselines import baselines_on_tfrecords, format_baselines

    table = baselines_on_tfrecords(
        arguments.data,
        fold=arguments.fold,
        test_data=arguments.test_data,
        seed=arguments.seed,
        trees=arguments.trees,
    )
    tested = arguments.test_data or f"fold {arguments.fold} of {arguments.data}"
    print(
        f"trained on {table.attrs['train_samples']} images, "
        f"tested on {table.attrs['test_samples']} ({tested})"
    )
    print(format_baselines(table))
    if arguments.out:
        from hpa_keras.atomic import write_text_atomic

        write_text_atomic(arguments.out, table.to_csv(index=False, float_format="%.6f"))
        print(f"wrote {arguments.out}")


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


def run_evaluate_cells(arguments) -> None:
    import json

    from hpa_keras.atomic import write_text_atomic
    from hpa_keras.cells.average_precision import (
        cell_f1_figures,
        mean_average_precision,
        submission_fields,
    )
    from hpa_keras.cells.submission import read_submission
    from hpa_keras.classes import get_scheme
    from hpa_keras.data.cell_records import cell_label_scheme, read_cell_labels

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
    if not 0.5 <= arguments.iou <= 1.0:
        raise InputError(f"--iou must be in [0.5, 1], got {arguments.iou}")
    scheme = get_scheme(cell_label_scheme(arguments.cell_labels))
    truth = read_cell_labels(arguments.cell_labels, scheme.name)
    submission = read_submission(arguments.submission, scheme.num_classes)
    fields = submission_fields(submission, arguments.masks, truth, scheme.num_classes)
    score = mean_average_precision(fields, scheme.num_classes, arguments.iou)
    names = scheme.class_names
    print(f"{'class':40} {'true cells':>10} {'AP':>6}")
    for index, (value, count) in enumerate(
        zip(score.average_precision, score.num_true, strict=True)
    ):
        shown = "-" if count == 0 else f"{value:.3f}"
        print(f"{index:2d} {names[index]:37} {count:10d} {shown:>6}")
    scored = sum(1 for count in score.num_true if count)
    print(
        f"mAP {score.mean_average_precision:.4f} over the {scored} classes with true cells "
        f"({len(fields)} fields, cells matched at IoU >= {arguments.iou})"
    )
    f1 = cell_f1_figures(fields, arguments.iou, scheme)
    print(
        f"per cell: macro F1 {f1['cells_at_0.5']:.4f} at 0.5, {f1['cells_tuned']:.4f} with "
        f"thresholds tuned on these same cells (optimistic); per field (the cells' maximum): "
        f"{f1['fields_at_0.5']:.4f} at 0.5, {f1['fields_tuned']:.4f} tuned"
    )
    out = Path(arguments.out)
    summary = {
        "mAP": score.mean_average_precision,
        "average_precision": {
            names[index]: (None if count == 0 else value)
            for index, (value, count) in enumerate(
                zip(score.average_precision, score.num_true, strict=True)
            )
        },
        "true_cells": dict(zip(names, score.num_true, strict=True)),
        "iou_threshold": arguments.iou,
        "interpolation": score.interpolation,
        "scheme": scheme.name,
        "submission": str(Path(arguments.submission).resolve()),
        "num_fields": len(fields),
        "macro_f1": f1,
    }
    write_text_atomic(out / "cells_summary.json", json.dumps(summary, indent=1) + "\n")
    print(f"wrote {out / 'cells_summary.json'}")


def add_data_service(commands) -> None:
    service = commands.add_parser(
        "data-service",
        help="serve training input: a tf.data service dispatcher and workers",
        description="Start a tf.data service so that fit --data-service grpc://HOST:PORT "
        "decodes and augments its training data on these workers instead of the trainer's "
        "CPUs. Without --dispatcher: a dispatcher on --port and --workers workers here; with "
        "--dispatcher HOST:PORT: only workers, joining that dispatcher (start one per machine). "
        "Workers must reach the record files at the paths (or URLs) fit names. Runs until "
        "interrupted.",
    )
    service.add_argument("--port", type=int, default=5050, help="the dispatcher's port")
    service.add_argument("--workers", type=int, default=1, help="workers to start here")
    service.add_argument("--dispatcher", metavar="HOST:PORT", help="join this dispatcher")
    service.set_defaults(handler=run_data_service)


def run_data_service(arguments) -> None:
    import_tensorflow_quietly()
    from hpa_keras.data.service import LocalService

    service = LocalService(arguments.workers, arguments.port, arguments.dispatcher)
    role = "workers" if arguments.dispatcher else "dispatcher and workers"
    print(f"tf.data service {role} running: fit --data-service {service.address}", flush=True)
    service.join()


# ------------------------------------------------------------------ the parser

COMMANDS = (
    add_demo,
    add_make_demo_data,
    add_segment,
    add_make_tfrecords,
    add_verify,
    add_models,
    add_fit,
    add_cv,
    add_data_service,
    add_predict,
    add_evaluate,
    add_baseline,
    add_cam,
    add_show,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpa-keras",
        description="Protein localization in Human Protein Atlas images with Keras 3.",
    )
    parser.add_argument("--version", action="version", version=f"hpa-keras {__version__}")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(commands)
    for command in commands.choices.values():  # before or after the command's name
        command.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP
        )
    return parser


DEBUG_HELP = "show the Python traceback of an unexpected error (and TensorFlow's start-up log)"


def console_main() -> int:
    """The ``hpa-keras`` command: :func:`main` with native libraries' start-up log lines
    (TensorFlow's oneDNN, CUDA and CPU-feature notes) kept off stderr; ``--debug`` or
    ``HPA_KERAS_TF_LOGS=1`` shows them."""
    arguments = sys.argv[1:]
    log_filter = NativeLogFilter()
    if "--debug" not in arguments and os.environ.get("HPA_KERAS_TF_LOGS") != "1":
        # Native warnings off too: a failed tf.data op logs the error's whole Python
        # traceback as a warning, and OpenCV warns of the damaged file the error names.
        if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0") in ("0", "1"):
            os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
        os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
        log_filter.start()
    try:
        status = main(arguments)
    except SystemExit as exit_:  # argparse's usage errors, --help, --version
        status = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 2)
    except BaseException:  # --debug's traceback
        traceback.print_exc()
        status = EXIT_FAILURE
    finally:
        log_filter.stop()
    if "tensorflow" in sys.modules:
        # After a failed tf.data op (a damaged file read inside the pipeline), TensorFlow's
        # threads can abort (std::terminate) or hang while the interpreter shuts down. All
        # that the command writes is written by now: flush and leave without that shutdown.
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):  # a reader that went away
                stream.flush()
        os._exit(status)
    return status


def main(argv=None) -> int:
    """Run the command line; returns the exit status."""
    arguments = build_parser().parse_args(argv)
    if arguments.debug:
        os.environ.setdefault("HPA_KERAS_TF_LOGS", "1")
    staging = tempfile.TemporaryDirectory(prefix="hpa-keras-runs-")
    try:
        _check_input_paths(arguments)
        _check_output_paths(arguments)
        _download_run_urls(arguments, Path(staging.name))
        status = arguments.handler(arguments)
    except InputError as error:
        _print_error(arguments.command, str(error), error)
        return EXIT_INPUT_ERROR
    except KeyboardInterrupt as error:
        _print_error(arguments.command, "interrupted", error)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # output piped into head or a closed pager: not an error
        # Python's recipe: the unwritable rest of stdout goes to /dev/null at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as error:  # a bug, or a failure no check foresaw: one line, not a traceback
        if arguments.debug:
            raise
        hint = (
            "a corrupt record; hpa-keras verify names the shard"
            if type(error).__name__ == "DataLossError"  # tf.errors, without importing TensorFlow
            else "unexpected; rerun with --debug for the traceback"
        )
        _print_error(arguments.command, f"{_first_line(error)} ({hint})", error)
        return EXIT_FAILURE
    finally:
        staging.cleanup()
    return status or 0


def _first_line(error: Exception, limit: int = 300) -> str:
    """``Type: the first line of its message``, cut to ``limit`` characters (TensorFlow's
    errors run to pages of graph context)."""
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*|\s*\[Op:\w+\].*", "", str(error))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _print_error(command: str, message: str, error: BaseException) -> None:
    print(f"hpa-keras {command}: error: {message}", file=sys.stderr)
    for note in getattr(error, "__notes__", ()):  # what the failure left behind, and what to do
        print(f"hpa-keras {command}: {note}", file=sys.stderr)


# Inputs named by the arguments, checked before TensorFlow loads (6-8 s) so that a typo is
# answered at once. URLs are left to the commands (reaching them needs TensorFlow's file
# system). Outputs: _OUTPUTS, below.
_INPUT_FILES = ("labels", "cell_labels", "submission", "ids", "thresholds")
_RUN_ARGUMENTS = ("run", "image_run")
_INPUT_FOLDERS = ("images", "masks", "dir")  # dir: show's positional image folder
_RECORD_FOLDERS = ("data",)


def _check_input_paths(arguments) -> None:
    from hpa_keras import storage
    from hpa_keras.data.tfrecords import read_manifest

    def given(name):
        value = getattr(arguments, name, None)
        values = value if isinstance(value, list) else [value]
        return [item for item in values if item is not None and not storage.is_url(str(item))]

    def flag(name):
        return "--" + name.replace("_", "-")

    for name in _RUN_ARGUMENTS:
        for path in map(Path, given(name)):
            _check_run_folder(flag(name), path)
    for path in given("config"):
        _check_config_file(path)
    training = hasattr(arguments, "model_option")  # fit and cv check records after settings
    for name in () if training else _RECORD_FOLDERS:
        for path in given(name):
            read_manifest(path)  # names the folder and what is missing
    for name in _INPUT_FOLDERS:
        value = getattr(arguments, name, None)
        for item in value if isinstance(value, list) else [value]:
            if item is not None:  # image folders are local: a URL is refused, naming the flag
                storage.local_folder(item, flag(name))
        for path in map(Path, given(name)):
            if not path.is_dir():
                reason = "a file, not a folder" if path.is_file() else "no such folder"
                raise InputError(f"{flag(name)} {path}: {reason}")
    for name in _INPUT_FILES:
        for path in map(Path, given(name)):
            if not path.is_file():
                reason = "a folder, not a file" if path.is_dir() else "no such file"
                raise InputError(f"{flag(name)} {path}: {reason}")


# What each command writes: command -> {argument: "file" or "folder"}. Checked with the
# inputs, before any work; an output that is one of the command's inputs is refused too
# (predict --out train.csv would replace the labels).
_OUTPUTS = {
    "demo": {"out": "folder"},
    "make-demo-data": {"out": "folder"},
    "show": {"out": "file"},
    "segment": {"out": "folder"},
    "make-tfrecords": {"out": "folder"},
    "fit": {"out": "folder"},
    "cv": {"out": "folder"},
    "predict": {"out": "file", "probabilities": "file", "cell_table": "file"},
    "evaluate": {"out": "folder"},
    "baseline": {"out": "file"},
    "cam": {"out": "file"},
}
_INPUTS = (*_INPUT_FILES, *_INPUT_FOLDERS, *_RECORD_FOLDERS, *_RUN_ARGUMENTS, "config")


def _check_output_paths(arguments) -> None:
    from hpa_keras import storage
    from hpa_keras.atomic import check_output_path

    inputs = {}
    for name in _INPUTS:
        value = getattr(arguments, name, None)
        for item in value if isinstance(value, list) else [value]:
            if item is not None and not storage.is_url(str(item)):
                inputs[Path(item).resolve()] = name
    written = {}
    for name, kind in _OUTPUTS.get(arguments.command, {}).items():
        value = getattr(arguments, name, None)
        if value is None or storage.is_url(str(value)):
            continue
        flag = "--" + name.replace("_", "-") if name != "out" or kind == "file" else "--out"
        if arguments.command == "make-demo-data":
            flag = "OUT"
        check_output_path(value, kind, flag)
        resolved = Path(value).resolve()
        if resolved in inputs:
            raise InputError(
                f"{flag} {value}: also the {_flag_name(inputs[resolved])} input; give the "
                f"output a {kind} of its own"
            )
        if kind == "file" and resolved.exists() and resolved.parent in inputs:
            raise InputError(
                f"{flag} {value}: a file of the {_flag_name(inputs[resolved.parent])} input "
                "folder; writing there would replace it"
            )
        if resolved in written:
            raise InputError(f"{flag} {value}: also given as {written[resolved]}")
        written[resolved] = flag


def _flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def _check_run_folder(flag: str, path: Path) -> None:
    from hpa_keras.inference.runs import MODEL_FILE
    from hpa_keras.training.cv import CV_FILE

    if not path.is_dir():
        raise InputError(f"{flag} {path}: no such run folder")
    if not (path / MODEL_FILE).is_file() and not (path / CV_FILE).is_file():
        raise InputError(
            f"{flag} {path}: neither a finished run ({MODEL_FILE}) nor a cv folder ({CV_FILE}); "
            "an interrupted fit or cv finishes when its command is run again"
        )


def _check_config_file(path: str) -> None:
    from hpa_keras.training.recipes import RECIPE_PREFIX, recipe_path

    if Path(path).is_file():
        return
    if path.startswith(RECIPE_PREFIX):
        recipe_path(path.removeprefix(RECIPE_PREFIX))  # names the shipped recipes
        return
    raise InputError(f"--config {path}: no such file (or a shipped recipe: {RECIPE_PREFIX}NAME)")


# Run or cv folders to read (_RUN_ARGUMENTS, above) given as URLs are copied into a local
# folder first (a run is a few files; records, which may be terabytes, stream from their URL).


def _download_run_urls(arguments, staging: Path) -> None:
    from hpa_keras import storage

    for name in _RUN_ARGUMENTS:
        value = getattr(arguments, name, None)
        values = value if isinstance(value, list) else [value]
        if not any(item is not None and storage.is_url(item) for item in values):
            continue
        local = []
        for index, item in enumerate(values):
            if item is not None and storage.is_url(item):
                if not storage.exists(item):
                    raise InputError(f"{item}: not found")
                item = str(storage.download_folder(item, staging / f"{name}{index}"))
            local.append(item)
        setattr(arguments, name, local if isinstance(value, list) else local[0])


if __name__ == "__main__":
    sys.exit(console_main())
