"""Loading saved ``.keras`` models in Keras' safe mode, with errors a user can act on.

Keras reports a truncated or corrupt ``.keras`` file as "File not found" and
a refused Lambda layer with a paragraph about ``safe_mode``; a model made by
another package fails with "Could not locate class". :func:`load_model`
checks the archive first and turns each failure into an
:class:`~hpa_keras.errors.InputError` naming the file and the reason, which
the command line prints without a traceback.
"""

import os
import re
import zipfile
from pathlib import Path

from hpa_keras.errors import InputError
from hpa_keras.registration import register_keras_objects

_UNKNOWN_CLASS = re.compile(r"Could not locate (?:class|function) '([^']+)'")


def check_keras_archive(path: str | os.PathLike) -> Path:
    """``path`` if it is a complete ``.keras`` archive; InputError naming what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no saved model there")
    if not zipfile.is_zipfile(path):
        raise InputError(
            f"{path}: not a .keras archive (truncated, corrupt, or another format; a .keras "
            "file is a zip archive holding config.json and the weights)"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError) as error:
        raise InputError(f"{path}: damaged .keras archive ({error})") from None
    if damaged is not None:
        raise InputError(f"{path}: damaged .keras archive ({damaged} fails its checksum)")
    if "config.json" not in names:
        raise InputError(f"{path}: a zip archive without config.json; not a saved Keras model")
    return path


def load_model(path: str | os.PathLike, compile: bool = False):
    """Load a saved model (such as a run's ``model.keras``) in Keras' safe mode.

    Every hpa-keras layer, loss and optimizer is registered when
    :mod:`hpa_keras` is imported, so no ``custom_objects`` are needed. With
    ``compile=False`` (the default, enough for prediction) the training loss
    and optimizer are not rebuilt.

    Raises InputError for a missing, truncated or corrupt file, a model with
    a Lambda layer (arbitrary code, which safe mode refuses), or one that
    uses a custom class this package does not define.
    """
    import keras  # lazy: imports TensorFlow


    register_keras_objects()
    path = check_keras_archive(path)
    try:
        return keras.saving.load_model(path, compile=compile, safe_mode=True)
    except Exception as error:  # Keras raises ValueError, TypeError, KeyError... for bad files
        raise InputError(f"{path}: {_reason(error)}") from None


def _reason(error: Exception) -> str:
    text = str(error)
    if "Lambda" in text and "safe_mode" in text:
        return (
            "holds a Lambda layer, which Keras' safe mode refuses to load (it would run "
            "arbitrary Python code); rebuild the model from registered layers, or load it "
            "yourself with keras.saving.load_model(path, safe_mode=False) if you trust its source"
        )
    unknown = _UNKNOWN_CLASS.search(text)
    if unknown:
        return (
            f"uses the custom class {unknown.group(1)!r}, which neither Keras nor hpa-keras "
            "defines; import the package that registered it before loading"
        )
    first_line = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return f"cannot be loaded as a Keras model ({type(error).__name__}: {first_line[:300]})"
