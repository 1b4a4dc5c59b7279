"""Loading TensorFlow without its start-up noise: at the command line and in notebooks."""

import contextlib
import logging
import os
import re
import select
import sys
import threading

from hpa_keras.import_hooks import around_first_import


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
        import tensorflow  # lazy: imports TensorFlow

        _hide_retracing_warnings(tensorflow)
        return tensorflow
    with _native_stderr_silenced():
        import tensorflow  # lazy: imports TensorFlow

        tensorflow.config.list_physical_devices()  # the CUDA probe logs here
    _hide_retracing_warnings(tensorflow)
    return tensorflow


@contextlib.contextmanager
def _native_stderr_silenced():
    """File descriptor 2 on /dev/null for the block (Python exceptions still propagate)."""
    sys.stderr.flush()
    saved = os.dup(2)
    silent = os.open(os.devnull, os.O_WRONLY)
    os.dup2(silent, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(silent)


@contextlib.contextmanager
def _quietly_with_devices(module):
    """TensorFlow executes and probes its devices (where cuInit logs) with stderr silenced."""
    with _native_stderr_silenced():
        yield
        module.config.list_physical_devices()


def quiet_tensorflow_import() -> None:
    """Keep TensorFlow's C++ start-up lines out of a notebook: called by ``import hpa_keras``,
    so a notebook that imports hpa_keras before TensorFlow (directly, or through Keras) gets
    no oneDNN, CUDA-stub or cuInit lines. TensorFlow imported first cannot be helped.
    ``HPA_KERAS_TF_LOGS=1`` keeps the lines."""
    if os.environ.get("HPA_KERAS_TF_LOGS") != "1":
        around_first_import("tensorflow", _quietly_with_devices)


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


# The lines TensorFlow's and XLA's C++ code writes to file descriptor 2 on its own: absl's
# "I0000 00:00:1796608784.614982   13412 cudart_stub.cc:31] ..." format (oneDNN, CUDA
# stubs, cuInit, CPU features), absl's note about logging before InitializeLog, and the
# continuation of the CPU-feature line; and libpng's "libpng error: ..." about a corrupt PNG,
# which the image reader reports as an InputError naming the file (hpa_keras.data.images).
_NATIVE_LOG_LINE = re.compile(
    rb"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w.\-]+:\d+\]"
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb"|To enable the following instructions: "
    rb"|libpng (?:error|warning): )"
)


class NativeLogFilter:
    """Keeps native libraries' log lines off a command's stderr, for the whole command.

    TensorFlow logs from C++ at import, at its first operation and when a backend loads,
    straight to file descriptor 2, so neither Python's ``sys.stderr`` nor
    ``TF_CPP_MIN_LOG_LEVEL`` reaches those lines. Here descriptor 2 becomes a pipe read by a
    thread that drops lines in absl's log format and passes everything else on, while
    Python's own ``sys.stderr`` (errors, warnings, progress bars) writes to the terminal
    directly, unbuffered by the thread, so nothing of the package's is delayed or reordered.
    Worker processes inherit descriptor 2 and are filtered alike.
    """

    def __init__(self):
        self._original = None
        self._thread = None
        self._stopping = threading.Event()

    def start(self) -> None:
        sys.stderr.flush()
        self._original = os.dup(2)
        read, write = os.pipe()
        os.dup2(write, 2)
        os.close(write)
        sys.stderr = open(  # noqa: SIM115 (lives as long as the process)
            os.dup(self._original), "w", buffering=1, errors="backslashreplace"
        )
        self._thread = threading.Thread(target=self._forward, args=(read,), daemon=True)
        self._thread.start()

    def _forward(self, read: int) -> None:
        pending = b""
        while True:
            # Other processes may hold the pipe open after the command is done (the
            # multiprocessing resource tracker inherits descriptor 2 and outlives the
            # workers), so the end is "stopping and quiet for a moment", not end-of-file.
            ready, _, _ = select.select([read], [], [], 0.05)
            chunk = os.read(read, 65536) if ready else b""
            if not chunk and (self._stopping.is_set() or ready):
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            kept = [line + b"\n" for line in lines if not _NATIVE_LOG_LINE.match(line)]
            self._write(b"".join(kept))
        if pending and not _NATIVE_LOG_LINE.match(pending):
            self._write(pending)
        os.close(read)

    def _write(self, data: bytes) -> None:
        with contextlib.suppress(OSError):  # the terminal or pipe reading us went away
            while data:
                data = data[os.write(self._original, data) :]

    def stop(self) -> None:
        """Descriptor 2 back to the terminal; what is still in the pipe is passed on first."""
        if self._thread is None:
            return
        with contextlib.suppress(OSError, ValueError):  # stderr closed by a broken pipe
            sys.stderr.flush()
        os.dup2(self._original, 2)  # this process writes to the terminal again
        self._stopping.set()
        self._thread.join(timeout=5)
        self._thread = None
