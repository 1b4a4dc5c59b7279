"""The ``hpa-keras`` command line: parse arguments, call the library, print results.

Each subcommand is one ``add_<command>`` function (its parser) and one
``run_<command>`` function (what it does), in a module per command group:
:mod:`~hpa_keras.cli.demo` (demo), :mod:`~hpa_keras.cli.data` (make-demo-data, show,
segment, make-tfrecords, verify), :mod:`~hpa_keras.cli.training` (models, fit, cv,
data-service, baseline), :mod:`~hpa_keras.cli.inference` (predict, cam),
:mod:`~hpa_keras.cli.evaluate` and :mod:`~hpa_keras.cli.annotate` (annotate,
merge-annotations).
Commands whose options are a settings dataclass (``fit``:
:class:`~hpa_keras.training.config.TrainingConfig`; ``make-tfrecords``:
:class:`~hpa_keras.data.tfrecords.ConversionSettings`; ``make-demo-data``:
:class:`~hpa_keras.synthetic.generator.DemoDataSettings`) get one flag per setting,
generated from the dataclass, so every setting is reachable and ``--help`` names each
default. This module builds the parser and runs a command with the shared error
handling; :mod:`~hpa_keras.cli.checks` checks the input and output paths first.

Every command reports bad input as one line naming the file or field and the
reason, and exits with status 2, without a traceback. Heavy modules
(TensorFlow above all) are imported inside the commands that need them, so
``hpa-keras --help`` and the data commands start quickly: the one deliberate kind of
import inside functions in this package.
"""

import argparse
import contextlib
import logging
import os
import re
import sys
import tempfile
import traceback
from pathlib import Path

from hpa_keras import __version__
from hpa_keras.cli.annotate import add_annotate, add_merge_annotations
from hpa_keras.cli.checks import _check_input_paths, _download_run_urls
from hpa_keras.cli.checks import _check_output_paths as _check_output_paths  # re-exported
from hpa_keras.cli.common import EXIT_FAILURE, EXIT_INPUT_ERROR, EXIT_INTERRUPTED
from hpa_keras.cli.data import (
    add_make_demo_data,
    add_make_tfrecords,
    add_segment,
    add_show,
    add_verify,
)
from hpa_keras.cli.demo import add_demo
from hpa_keras.cli.evaluate import add_evaluate
from hpa_keras.cli.import_model import add_import_model
from hpa_keras.cli.inference import add_cam, add_predict
from hpa_keras.cli.training import add_baseline, add_cv, add_data_service, add_fit, add_models
from hpa_keras.errors import InputError
from hpa_keras.tensorflow_setup import NativeLogFilter

__all__ = ["COMMANDS", "build_parser", "console_main", "main"]

# ------------------------------------------------------------------ the parser

COMMANDS = (
    add_demo,
    add_make_demo_data,
    add_segment,
    add_make_tfrecords,
    add_verify,
    add_models,
    add_import_model,
    add_fit,
    add_cv,
    add_data_service,
    add_predict,
    add_evaluate,
    add_baseline,
    add_cam,
    add_show,
    add_annotate,
    add_merge_annotations,
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
