"""The ``hpa-keras`` command line: parse arguments, call the library, print results.

Every command reports bad input as one line naming the file or field and the
reason, and exits with status 2, without a traceback. Heavy modules
(TensorFlow above all) are imported inside the commands that need them, so
``hpa-keras --help`` and the data commands start quickly.
"""

import argparse
import sys

from hpa_keras import __version__
from hpa_keras.errors import InputError
from hpa_keras.tensorflow_setup import import_tensorflow_quietly

EXIT_VERIFY_FAILED = 1
EXIT_INPUT_ERROR = 2
EXIT_INTERRUPTED = 130


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _command_demo(arguments) -> None:
    import_tensorflow_quietly()
    import dataclasses

    from hpa_keras.demo import DEMO_PLAN, QUICK_PLAN, run_demo

    plan = QUICK_PLAN if arguments.quick else DEMO_PLAN
    if arguments.epochs is not None:
        plan = dataclasses.replace(plan, epochs=arguments.epochs)
    run_demo(arguments.out, workers=arguments.workers, progress=not arguments.quiet, plan=plan)


def _command_make_demo_data(arguments) -> None:
    from hpa_keras.data.synthetic import DemoDataSettings, make_demo_data

    settings = DemoDataSettings(
        num_samples=arguments.num_samples,
        image_size=arguments.image_size,
        seed=arguments.seed,
        test_fraction=arguments.test_fraction,
        bit_depth=arguments.bit_depth,
        label_balance=arguments.label_balance,
    )
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


def _command_show(arguments) -> None:
    from hpa_keras.classes import class_name
    from hpa_keras.display import write_sample_figure

    found = write_sample_figure(arguments.dir, arguments.id, arguments.out, arguments.labels)
    missing = [name for name, path in found["files"].items() if path is None]
    if missing:
        print(
            f"note: no {', '.join(missing)} channel for Id {arguments.id}; shown as missing",
            file=sys.stderr,
        )
    labels = found["labels"]
    described = ", ".join(class_name(index) for index in labels) if labels else "no labels found"
    print(f"wrote {arguments.out} ({described})")


def _command_make_tfrecords(arguments) -> None:
    import_tensorflow_quietly()
    from hpa_keras.classes import CLASS_NAMES
    from hpa_keras.data.tfrecords import ConversionSettings, make_tfrecords, summarize_folds

    settings = ConversionSettings(
        image_size=arguments.image_size,
        encoding=arguments.encoding,
        shard_size_mb=arguments.shard_size_mb,
        num_shards=arguments.num_shards,
        num_folds=arguments.folds,
        seed=arguments.seed,
        on_error=arguments.on_error,
        sixteen_bit_rule=arguments.sixteen_bit,
    )
    manifest = make_tfrecords(
        arguments.images,
        arguments.out,
        labels=arguments.labels,
        settings=settings,
        workers=arguments.workers,
        progress=not arguments.quiet,
    )
    size = manifest["image_size"]
    megabytes = sum(shard["bytes"] for shard in manifest["shards"]) / 2**20
    print(
        f"wrote {manifest['num_records']} {manifest['split']} records ({size}x{size}, "
        f"{manifest['encoding']}) in {len(manifest['shards'])} shards, {megabytes:.1f} MB, "
        f"to {arguments.out}"
    )
    if manifest["num_skipped"]:
        print(
            f"skipped {manifest['num_skipped']} bad inputs; see "
            f"{arguments.out}/{manifest['errors_file']}"
        )
    balance = summarize_folds(manifest)
    if balance:
        print(
            f"{len(balance['fold_sizes'])} stratified folds of {balance['fold_sizes']} records; "
            f"largest per-class deviation from the overall frequency: "
            f"{balance['max_abs_deviation_points']:.2f} points "
            f"({100 * balance['max_relative_deviation']:.0f}% relative, "
            f"{CLASS_NAMES[balance['worst_class']]})"
        )


def _command_verify(arguments) -> int:
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


def _command_models(arguments) -> None:
    import_tensorflow_quietly()
    from hpa_keras.models import DESCRIPTIONS, MODELS, TINY_OPTIONS, build_model

    size = arguments.image_size
    print(f"{'model':22s} {'parameters':>12s}  (input {size}x{size}x4, 28 classes)")
    for name in MODELS:
        options = TINY_OPTIONS[name] if arguments.tiny else {}
        model = build_model(name, input_shape=(size, size, 4), **options)
        print(f"{name:22s} {model.count_params():12,d}  {DESCRIPTIONS[name]}")


def _model_option(text: str) -> tuple[str, object]:
    import yaml

    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.replace("-", "_"), yaml.safe_load(value)


def _command_fit(arguments) -> None:
    import dataclasses

    import_tensorflow_quietly()  # before the settings check imports Keras
    from hpa_keras.train import TrainingConfig, resolve_config

    # Flags named like settings pass through; None means "not given".
    settings = {field.name for field in dataclasses.fields(TrainingConfig)}
    overrides = {name: value for name, value in vars(arguments).items() if name in settings}
    if arguments.quiet:
        overrides["verbose"] = 0
    config = resolve_config(overrides, arguments.config)
    # Model options merge: the tiny variant's, then the YAML file's, then --model-option's.
    # The model may come from the YAML file, so this waits for the resolved settings.
    tiny = {}
    if arguments.tiny:
        from hpa_keras.models import TINY_OPTIONS

        tiny = TINY_OPTIONS[config.model]
    options = {**tiny, **config.model_options, **dict(arguments.model_option or [])}
    config = dataclasses.replace(config, model_options=options)
    if config.schedule != "plateau" and arguments.plateau_patience is not None:
        raise InputError(
            f"--plateau-patience applies to --schedule plateau only: ReduceLROnPlateau cannot "
            f"change the rate of the {config.schedule} schedule"
        )
    if arguments.find_lr:
        from hpa_keras.train import find_learning_rate_for

        result = find_learning_rate_for(config)
        print(
            f"learning-rate range test over {result['steps']} batches: suggested --lr "
            f"{result['suggested_lr']:.2g}; plot: {result['plot']}"
        )
        return
    from hpa_keras.train import fit

    summary = fit(config)
    print(
        f"{summary['run']}: best epoch {summary['best_epoch']} of {summary['epochs']}, "
        f"validation macro F1 {summary['val_macro_f1_at_0.5']:.3f} at 0.5, "
        f"{summary['val_macro_f1_tuned']:.3f} with tuned thresholds ({summary['seconds']:.0f} s)"
    )


def _command_predict(arguments) -> None:
    import_tensorflow_quietly()
    from hpa_keras.predict import (
        predict_runs,
        submission_labels,
        write_probabilities,
        write_submission,
    )

    ids, probabilities, thresholds = predict_runs(
        arguments.run,
        data=arguments.data,
        images=arguments.images,
        ids_file=arguments.ids,
        tta=arguments.tta,
        batch_size=arguments.batch_size,
    )
    labels = submission_labels(probabilities, thresholds, require_label=not arguments.allow_empty)
    write_submission(arguments.out, ids, labels)
    if arguments.probabilities:
        write_probabilities(arguments.probabilities, ids, probabilities)
    runs = f"an ensemble of {len(arguments.run)} runs" if len(arguments.run) > 1 else "1 run"
    empty = sum(not row for row in labels)
    print(
        f"wrote {arguments.out}: {len(ids)} Ids, {sum(map(len, labels))} labels "
        f"({len(ids) and sum(map(len, labels)) / len(ids):.2f} per image, {empty} empty), "
        f"{runs}, {arguments.tta} view{'s' if arguments.tta > 1 else ''} per image"
    )


def _add_run_input_arguments(parser, data_help: str, images_help: str) -> None:
    """What predict and evaluate share: the run folders, the input, views and batch size."""
    parser.add_argument("--run", nargs="+", required=True, help="run folder(s) from fit")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help=data_help)
    source.add_argument("--images", help=images_help)
    parser.add_argument(
        "--tta", type=int, choices=(1, 2, 4, 8), default=1, help="dihedral views per image"
    )
    parser.add_argument("--batch-size", type=_positive_int, default=16)


def _add_predict_parser(commands) -> None:
    predict = commands.add_parser(
        "predict",
        help="write a Kaggle submission from one run or an ensemble of runs",
        description="Predict every Id of the input with the run's model and thresholds and "
        "write Id,Predicted (space-separated class indices) in input order. Several --run "
        "folders average their probabilities and thresholds.",
    )
    _add_run_input_arguments(
        predict, data_help="make-tfrecords folder", images_help="folder of <Id>_<channel> images"
    )
    predict.add_argument(
        "--ids", help="with --images: CSV whose Id column fixes the Ids and their order"
    )
    predict.add_argument("--out", default="submission.csv", help="default: submission.csv")
    predict.add_argument("--probabilities", help="also write Id + 28 probability columns here")
    predict.add_argument(
        "--allow-empty",
        action="store_true",
        help="leave rows with no class over its threshold empty (default: the top class)",
    )
    predict.set_defaults(handler=_command_predict)


def _command_evaluate(arguments) -> None:
    import_tensorflow_quietly()
    from pathlib import Path

    from hpa_keras.evaluate import evaluate_runs, format_evaluation_table, summary_line
    from hpa_keras.report import write_report

    evaluation = evaluate_runs(
        arguments.run,
        data=arguments.data,
        folds=arguments.fold,
        images=arguments.images,
        labels_file=arguments.labels,
        tta=arguments.tta,
        batch_size=arguments.batch_size,
    )
    print(format_evaluation_table(evaluation))
    history = Path(arguments.run[0]) / "history.csv"
    written = write_report(evaluation, arguments.out, history=history)
    print(summary_line(evaluation))
    print(f"wrote {written['report.html']} and {len(written) - 1} more files in {arguments.out}")


def _add_evaluate_parser(commands) -> None:
    evaluate = commands.add_parser(
        "evaluate",
        help="score a run on labeled data: per-class table, plots, HTML report",
        description="Predict labeled data with one run (or an ensemble) and its thresholds and "
        "write per-class precision, recall, F1, support, threshold and ROC AUC (classes.csv, "
        "report.txt), macro and micro F1 (summary.json), plots and one self-contained "
        "report.html. Without --fold, a run evaluated on the TFRecords it was trained on is "
        "scored on its validation fold.",
    )
    _add_run_input_arguments(
        evaluate,
        data_help="labeled make-tfrecords folder",
        images_help="folder of <Id>_<channel> images (needs --labels)",
    )
    evaluate.add_argument("--labels", help="with --images: CSV with Id,Target")
    evaluate.add_argument(
        "--fold", type=int, nargs="+", default=None, help="with --data: fold(s) to evaluate"
    )
    evaluate.add_argument("--out", default="report", help="report folder (default: report)")
    evaluate.set_defaults(handler=_command_evaluate)


def _command_baseline(arguments) -> None:
    import_tensorflow_quietly()
    from hpa_keras.baselines import baselines_on_tfrecords, format_baselines

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


def _add_baseline_parser(commands) -> None:
    baseline = commands.add_parser(
        "baseline",
        help="score the simple baselines every model must beat",
        description="Predict-nothing, predict-the-most-frequent-class, and one-vs-all logistic "
        "regression and a random forest on per-channel image features, scored with the same "
        "macro F1. Trained on the folds other than --fold and tested on --fold, or trained on "
        "all of --data and tested on --test-data.",
    )
    baseline.add_argument("--data", required=True, help="labeled make-tfrecords folder")
    baseline.add_argument("--fold", type=int, default=0, help="test fold (default 0)")
    baseline.add_argument("--test-data", help="labeled TFRecords to test on instead of a fold")
    baseline.add_argument("--trees", type=_positive_int, default=100, help="random forest size")
    baseline.add_argument("--seed", type=int, default=0)
    baseline.add_argument("--out", help="also write the table as CSV here")
    baseline.set_defaults(handler=_command_baseline)


def _command_cam(arguments) -> None:
    import_tensorflow_quietly()
    from hpa_keras.cam import write_cam
    from hpa_keras.classes import class_name

    true_labels = None
    if arguments.labels:
        from hpa_keras.labels import read_labels

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
    described = ", ".join(
        f"{index} {class_name(index)} (p={result['probabilities'][index]:.2f})"
        for index in result["classes"]
    )
    height, width = result["image"].shape[:2]
    print(f"wrote {arguments.out}: Grad-CAM of {described} over the {width}x{height} image")


def _add_cam_parser(commands) -> None:
    cam = commands.add_parser(
        "cam",
        help="draw class activation maps (Grad-CAM) of one image",
        description="Grad-CAM of the predicted classes (or --classes) of one sample, overlaid "
        "on its composite and on each channel at the image's own size.",
    )
    cam.add_argument("--run", required=True, help="run folder from fit")
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
    cam.set_defaults(handler=_command_cam)


def _add_fit_parser(commands) -> None:
    fit = commands.add_parser(
        "fit",
        help="train a model on TFRecords, with threshold search, into a run folder",
        description="Train on every fold but --fold, validate on --fold, search per-class "
        "thresholds each epoch and keep the best epoch. Settings: flags over --config YAML over "
        "defaults; the resolved ones are saved as RUN_DIR/config.yaml. Killed and started again "
        "with the same command, a run resumes after its last finished epoch.",
    )
    fit.add_argument("--data", help="make-tfrecords output folder to train on")
    fit.add_argument("--model", help="model name (see `hpa-keras models`; default gapnet)")
    fit.add_argument("--config", help="YAML file of settings (keys as in RUN_DIR/config.yaml)")
    fit.add_argument("--out", help="run folder (default: runs/MODEL-foldK)")
    fit.add_argument("--fold", type=int, help="validation fold (default 0)")
    fit.add_argument("--epochs", type=_positive_int, help="epochs (default 10)")
    fit.add_argument("--image-size", type=_positive_int, help="train at SxS (default: as stored)")
    fit.add_argument("--channels", help="rgby (default), rgb, g or a comma-separated list")
    fit.add_argument("--batch-size", type=_positive_int, help="global batch size (default 32)")
    fit.add_argument(
        "--loss",
        help="bce, weighted_bce (default), focal, soft_f1 or margin",
    )
    fit.add_argument(
        "--pos-weight",
        help="weighted_bce's positive weights: none, ratio (N_neg/N_pos), log (default), sqrt",
    )
    fit.add_argument(
        "--class-weight",
        action="store_const",
        const=True,
        help="also weight classes by 1/log(N_i)",
    )
    fit.add_argument("--lr", type=float, help="learning rate (default 0.001)")
    fit.add_argument("--optimizer", help="adam (default), adamw or sgd")
    fit.add_argument(
        "--schedule",
        help="plateau (default: ReduceLROnPlateau on val_loss), cosine (one cosine decay from "
        "--lr to min_lr, 1e-6, over the epochs), sgdr (cosine decay with warm restarts) or "
        "constant; plateau excludes the others, since a schedule's rate cannot be reduced on a "
        "plateau",
    )
    fit.add_argument("--plateau-patience", type=int, help="epochs without improvement (2)")
    fit.add_argument("--sgdr-epochs", type=_positive_int, help="first SGDR cycle, epochs (4)")
    fit.add_argument(
        "--early-stopping-patience", type=int, help="stop after N epochs without a better tuned F1"
    )
    fit.add_argument("--weights", help="imagenet or a weights file (default: none)")
    fit.add_argument(
        "--frozen-epochs",
        type=int,
        help="first train N epochs with the pretrained backbone frozen (two-stage fine-tuning)",
    )
    fit.add_argument("--frozen-lr", type=float, help="learning rate of the frozen stage")
    fit.add_argument(
        "--backbone-lr-factor",
        type=float,
        help="the backbone learns at this fraction of --lr (differential learning rates)",
    )
    fit.add_argument(
        "--threshold-strategy", help="per_class (default), global, buckets, rate or fixed"
    )
    fit.add_argument("--steps-per-epoch", type=_positive_int, help="default: one pass")
    fit.add_argument(
        "--model-option",
        type=_model_option,
        action="append",
        metavar="KEY=VALUE",
        help="builder option, repeatable (for example width=16)",
    )
    fit.add_argument("--tiny", action="store_true", help="the model's tiny test variant")
    fit.add_argument("--seed", type=int, help="seed of weights, shuffles and augmentation (0)")
    fit.add_argument(
        "--cache", action="store_const", const=True, help="keep decoded images in memory"
    )
    fit.add_argument(
        "--mixed-precision",
        action="store_const",
        const=True,
        help="mixed_float16 on GPU, mixed_bfloat16 on CPU",
    )
    fit.add_argument("--strategy", help="default, or mirrored (all visible GPUs)")
    fit.add_argument("--no-tensorboard", dest="tensorboard", action="store_const", const=False)
    fit.add_argument(
        "--print-table",
        action="store_const",
        const=True,
        help="print the per-class table after every epoch",
    )
    fit.add_argument(
        "--find-lr",
        action="store_true",
        help="run the learning-rate range test, write RUN_DIR/lr_finder.png and stop",
    )
    fit.add_argument("--quiet", action="store_true", help="no progress output")
    fit.set_defaults(handler=_command_fit)


def _add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    """``--workers`` and ``--quiet``, shared by the commands that run worker processes."""
    parser.add_argument(
        "--workers", type=_positive_int, default=None, help="worker processes (default: all cores)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpa-keras",
        description="Protein localization in Human Protein Atlas images with Keras 3.",
    )
    parser.add_argument("--version", action="version", version=f"hpa-keras {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="run the main job on built-in synthetic data (about 8 minutes)",
        description="Generate built-in HPA-like data, draw it, convert it to TFRecords, train "
        "GAP-Net with per-class threshold search, evaluate it on the held-out test split "
        "(HTML report), write the Kaggle submission and a Grad-CAM picture, and print the "
        "macro F1 beside the baselines. About 8 minutes on a 2-core CPU.",
    )
    demo.add_argument("--out", default="hpa-demo", help="output folder (default: hpa-demo)")
    demo.add_argument(
        "--epochs", type=_positive_int, default=None, help="training epochs (default 40)"
    )
    demo.add_argument(
        "--quick",
        action="store_true",
        help="60 tiny images and a tiny model: every step in well under a minute",
    )
    _add_worker_arguments(demo)
    demo.set_defaults(handler=_command_demo)

    make = commands.add_parser(
        "make-demo-data",
        help="write a synthetic HPA-like data set in the Kaggle layout",
        description="Write OUT/train.csv, OUT/train/<Id>_<channel>.png, OUT/test/, "
        "OUT/sample_submission.csv and OUT/test_labels.csv. The same seed gives the same bytes.",
    )
    make.add_argument(
        "out", help="output folder (new or empty, or an earlier synthetic set with --overwrite)"
    )
    make.add_argument("--num-samples", type=_positive_int, default=1000)
    make.add_argument(
        "--image-size",
        type=_positive_int,
        default=256,
        help="side in pixels (the challenge's is 512)",
    )
    make.add_argument("--seed", type=int, default=0)
    make.add_argument("--test-fraction", type=float, default=0.2)
    make.add_argument("--bit-depth", type=int, choices=(8, 16), default=8)
    make.add_argument(
        "--label-balance",
        type=float,
        default=0.0,
        help="fraction of samples whose label set is drawn class-balanced rather than with the "
        "real frequencies (default 0: as real; 1 gives every class at least 1/28 of the images)",
    )
    make.add_argument(
        "--overwrite", action="store_true", help="replace an earlier synthetic data set in OUT"
    )
    _add_worker_arguments(make)
    make.set_defaults(handler=_command_make_demo_data)

    records = commands.add_parser(
        "make-tfrecords",
        help="convert channel images + train.csv into sharded TFRecords with folds",
        description="Convert a folder of <Id>_<channel> images (PNG, TIFF or JPEG; 8- or "
        "16-bit) and its labels into sharded TFRecords with multilabel-stratified folds and a "
        "manifest. Interrupted, run it again with the same arguments to finish.",
    )
    records.add_argument("--images", required=True, help="folder of <Id>_<channel> images")
    records.add_argument(
        "--labels",
        default=None,
        help="train.csv (labeled, with folds) or sample_submission.csv / none (unlabeled)",
    )
    records.add_argument("--out", default="tfrecords", help="output folder (default: tfrecords)")
    records.add_argument(
        "--image-size",
        type=_positive_int,
        default=None,
        help="resize fields to SxS (area interpolation); default: keep",
    )
    records.add_argument(
        "--encoding",
        choices=("png", "raw"),
        default="raw",
        help="raw (default): uint8 pixels, nothing to decode, the fastest to train from; "
        "png: the channel PNGs, lossless and 2.3x smaller, decoded while training",
    )
    sharding = records.add_mutually_exclusive_group()
    sharding.add_argument(
        "--shard-size-mb", type=float, default=None, help="target shard size (default: 150)"
    )
    sharding.add_argument(
        "--num-shards", type=_positive_int, default=None, help="number of shards instead of a size"
    )
    records.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    records.add_argument("--seed", type=int, default=0, help="fixes folds and shard order")
    records.add_argument(
        "--on-error",
        choices=("fail", "skip"),
        default="fail",
        help="stop at a bad sample (default) or skip it and list it in errors.csv",
    )
    records.add_argument(
        "--sixteen-bit",
        choices=("full-range", "per-image"),
        default="full-range",
        help="how 16-bit images become 8-bit (see README)",
    )
    _add_worker_arguments(records)
    records.set_defaults(handler=_command_make_tfrecords)

    verify = commands.add_parser(
        "verify",
        help="re-read every TFRecord shard against its manifest",
        description="Check every shard's sha256 and record count, that every record parses "
        "and decodes, Ids are unique and folds are as in the manifest. Exit status 1 on any "
        "mismatch, naming the shard.",
    )
    verify.add_argument("dir", help="make-tfrecords output folder")
    verify.add_argument("--quiet", action="store_true", help="no progress bar")
    verify.set_defaults(handler=_command_verify)

    models = commands.add_parser(
        "models",
        help="list the model builders with their parameter counts",
        description="Build each registered model (weights=None) and print its parameter count.",
    )
    models.add_argument(
        "--image-size",
        type=_positive_int,
        default=512,
        help="input side (default 512; only capsnet's count depends on it)",
    )
    models.add_argument("--tiny", action="store_true", help="the tiny test variants instead")
    models.set_defaults(handler=_command_models)

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
    show.set_defaults(handler=_command_show)
    _add_fit_parser(commands)
    _add_predict_parser(commands)
    _add_evaluate_parser(commands)
    _add_baseline_parser(commands)
    _add_cam_parser(commands)
    return parser


def main(argv=None) -> int:
    """Run the command line; returns the exit status."""
    arguments = build_parser().parse_args(argv)
    try:
        status = arguments.handler(arguments)
    except InputError as error:
        print(f"hpa-keras {arguments.command}: error: {error}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except KeyboardInterrupt:
        print(f"hpa-keras {arguments.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
