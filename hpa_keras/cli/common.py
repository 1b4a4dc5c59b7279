"""What several command groups share: exit statuses, worker and run-input arguments, and
``--model-option KEY=VALUE``."""

import argparse

from hpa_keras.errors import InputError
from hpa_keras.settings import positive_int, read_yaml

EXIT_VERIFY_FAILED = 1
EXIT_FAILURE = 1
EXIT_INPUT_ERROR = 2
EXIT_INTERRUPTED = 130


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    """``--workers`` and ``--quiet``, shared by the commands that run worker processes."""
    parser.add_argument(
        "--workers", type=positive_int, default=None, help="worker processes (default: all cores)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def add_run_input_arguments(parser, data_help: str, images_help: str, required=True) -> None:
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
    parser.add_argument(
        "--engine",
        choices=("auto", "openvino", "keras"),
        default=None,
        help="what runs the model: 'openvino' (the model exported by Keras, cached in the run "
        "folder; pip install 'hpa-keras[openvino]'), 'keras', or 'auto' (default, or "
        "$HPA_KERAS_ENGINE): OpenVINO where it is installed",
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "float32", "bfloat16"),
        default="auto",
        help="the engine's arithmetic: 'auto' (default) bfloat16 where the CPU has it and the "
        "probabilities stay within 0.5e-3 of float32 Keras on the first 64 images, else "
        "float32; 'bfloat16' within 1e-3",
    )


def engine_spec(arguments) -> str | None:
    """``--engine`` and ``--precision`` as the inference functions take them (None: the
    default engine)."""
    if arguments.precision == "auto":
        return arguments.engine
    if arguments.engine == "keras":
        raise InputError("--precision is the engine's; --engine keras predicts in float32")
    return f"{arguments.engine or 'auto'}:{arguments.precision}"


def model_option(text: str) -> tuple[str, object]:
    """``KEY=VALUE``, the value read as YAML by the settings files' reader (``1e-3`` a number)."""
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.replace("-", "_"), read_yaml(value, key)
    except InputError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
