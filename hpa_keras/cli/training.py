"""The training commands: models, fit, cv, data-service and baseline.

The model registry, training and data-service modules are imported inside the commands:
most load TensorFlow or Keras (seconds: docs/results.md), which ``--help`` and the checks
before training skip."""

import dataclasses

from hpa_keras.atomic import write_text_atomic
from hpa_keras.cli.common import model_option
from hpa_keras.errors import InputError
from hpa_keras.settings import add_setting_arguments, given_settings, positive_int
from hpa_keras.storage import is_url
from hpa_keras.tensorflow_setup import import_tensorflow_quietly


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


def add_training_arguments(parser, skip=()) -> None:
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
        type=model_option,
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


def training_config(arguments):
    """The resolved TrainingConfig of fit's or cv's arguments: flags over --config over
    defaults (checked by TrainingConfig.validate, which also refuses a setting of another
    schedule); model options merged (tiny variant, then the file's, then --model-option)."""
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
    return config


def _check_records_before_tensorflow(data) -> None:
    """The records folder of fit or cv exists (settings may name it in a YAML file, so the
    argument check cannot); a URL waits for TensorFlow's file system."""
    from hpa_keras.data.tfrecords import read_manifest

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
    add_training_arguments(fit)
    fit.add_argument(
        "--find-lr",
        action="store_true",
        help="run the learning-rate range test, write RUN_DIR/lr_finder.png and stop",
    )
    fit.set_defaults(handler=run_fit)


def run_fit(arguments) -> None:
    config = training_config(arguments)
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
    add_training_arguments(cv, skip=("fold", "out"))
    cv.set_defaults(handler=run_cv)


def run_cv(arguments) -> None:
    config = training_config(arguments)
    _check_records_before_tensorflow(config.data)
    import_tensorflow_quietly()
    from hpa_keras.workflows.cv import cross_validate, format_summary

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
        write_text_atomic(arguments.out, table.to_csv(index=False, float_format="%.6f"))
        print(f"wrote {arguments.out}")


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
