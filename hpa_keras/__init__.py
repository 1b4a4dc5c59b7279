"""hpa-keras: protein localization in Human Protein Atlas images with Keras 3.

``import hpa_keras`` is cheap (no TensorFlow) and makes every custom Keras
object of the package loadable: after it, ``keras.saving.load_model`` reads a
run's ``model.keras`` in safe mode (see :mod:`hpa_keras.registration`).

    >>> import hpa_keras
    >>> run = hpa_keras.load_run("runs/gapnet-fold0")
    >>> run.model, run.thresholds, run.class_names, run.image_size, run.channels
    >>> table = hpa_keras.predict_images(run, "test/")   # a DataFrame, one row per image

The package follows the flow of the work: :mod:`hpa_keras.data` (label
files, images, TFRecords, the tf.data loader), :mod:`hpa_keras.synthetic`
(the built-in HPA-like data), :mod:`hpa_keras.models` (builders, layers,
augmentation), :mod:`hpa_keras.training` (losses, metrics, thresholds,
callbacks, ``fit``), :mod:`hpa_keras.inference` (runs, prediction, TTA,
evaluation, Grad-CAM) and :mod:`hpa_keras.reports` (figures, tables, HTML).
"""

from importlib import metadata

from hpa_keras._lazy import lazy_exports
from hpa_keras.registration import register_when_keras_loads
from hpa_keras.tensorflow_setup import quiet_tensorflow_import

try:  # the version lives in pyproject.toml alone; an installed package knows it
    __version__ = metadata.version("hpa-keras")
except metadata.PackageNotFoundError:  # a source tree on sys.path, not installed
    __version__ = "0+unknown"

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "load_run": "inference.runs",
        "Run": "inference.runs",
        "predict_images": "inference.predict",
    },
)

register_when_keras_loads()
quiet_tensorflow_import()
