"""Loading TensorFlow for the command line without its start-up noise."""

import logging
import os
import sys


def import_tensorflow_quietly():
    """Import TensorFlow with its C++ start-up lines silenced.

    TF 2.21 prints oneDNN, CUDA-stub and cuInit lines to the process's stderr
    before its logging is set up, so TF_CPP_MIN_LOG_LEVEL does not hide them;
    at a command line they read like errors. File descriptor 2 is pointed at
    /dev/null while TensorFlow loads and probes devices, then restored.
    Python exceptions still propagate. Set HPA_KERAS_TF_LOGS=1 to see the lines.
    """
    # After start-up the variable works: hide INFO lines (warnings and errors still show).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    if "tensorflow" in sys.modules or os.environ.get("HPA_KERAS_TF_LOGS") == "1":
        import tensorflow

        _hide_retracing_warnings(tensorflow)
        return tensorflow
    sys.stderr.flush()
    saved = os.dup(2)
    silent = os.open(os.devnull, os.O_WRONLY)
    os.dup2(silent, 2)
    try:
        import tensorflow

        tensorflow.config.list_physical_devices()  # the CUDA probe logs here
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(silent)
    _hide_retracing_warnings(tensorflow)
    return tensorflow


class _RetracingFilter(logging.Filter):
    """Drops tf.function's "triggered tf.function retracing" warning.

    An ensemble (a cv folder's fold models, several --run folders) builds
    one predict function per model, and TensorFlow counts each as a retrace
    of "the same" function: the warning is expected there and says nothing
    a user can act on. Other TensorFlow warnings still show.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


def _hide_retracing_warnings(tensorflow) -> None:
    logger = tensorflow.get_logger()
    if not any(isinstance(existing, _RetracingFilter) for existing in logger.filters):
        logger.addFilter(_RetracingFilter())
