"""Registering hpa-keras' custom Keras objects as soon as Keras is imported.

Keras 3 deserializes a custom layer, loss or optimizer only if the module
that defines it has been imported (its ``register_keras_serializable``
decorator ran). A run's ``model.keras`` holds ``ChannelStandardization``,
``RandomDihedral``, the training loss and a ``DifferentialAdam``; without
registration, ``keras.saving.load_model`` fails on the first of them.

Importing those modules imports Keras, and with it TensorFlow (several
seconds), which ``hpa-keras --help`` and the data commands must not pay.
So ``import hpa_keras`` calls :func:`register_when_keras_loads`: if Keras is
already imported, everything is registered at once; otherwise an import
hook (:mod:`hpa_keras.import_hooks`) waits for the first ``import keras`` (by the user, by
TensorFlow's ``tf.keras``, or by hpa-keras itself) and registers everything
right after Keras has finished loading. Either way, after ``import
hpa_keras`` a plain ``keras.saving.load_model(path)`` works.

The defining modules import only Keras, numpy and the light modules of this
package, so importing them from inside the hook cannot loop back into a
half-imported hpa-keras module.
"""

import contextlib
import importlib
import sys

from hpa_keras.import_hooks import around_first_import

# Every module with a @keras.saving.register_keras_serializable object (a test checks
# this list against the source tree).
REGISTERING_MODULES = (
    "hpa_keras.models.layers",
    "hpa_keras.models.augmentation",
    "hpa_keras.models.capsnet",
    "hpa_keras.models.vision_transformer",
    "hpa_keras.training.losses",
    "hpa_keras.training.optimizers",
)


_deferred = False


def _initializing(name: str) -> bool:
    """Whether module ``name`` is being imported right now (its body has not finished)."""
    module = sys.modules.get(name)
    spec = getattr(module, "__spec__", None)
    return module is not None and bool(getattr(spec, "_initializing", False))


def register_keras_objects(caller: str | None = None) -> None:
    """Import every module that registers custom Keras objects (cheap once Keras is loaded).

    When Keras is first imported by one of those modules itself (``from
    hpa_keras.models.layers import ...`` in a fresh interpreter), that module
    is half-executed: importing the others now would import from it names it
    has not defined yet. Registration then waits, and the module calls
    :func:`finish_registration` as its last statement.
    """
    global _deferred
    if any(_initializing(name) for name in REGISTERING_MODULES if name != caller):
        _deferred = True
        return
    _deferred = False
    for name in REGISTERING_MODULES:
        importlib.import_module(name)


def finish_registration(caller: str) -> None:
    """Registration deferred while ``caller`` was being imported: do it now (its last line)."""
    if _deferred:
        register_keras_objects(caller)


@contextlib.contextmanager
def _registering_after(module):
    """Keras executes, then hpa-keras' objects are registered."""
    yield
    register_keras_objects()


def register_when_keras_loads() -> None:
    """Register now if Keras is loaded, else as soon as it is (see the module docstring)."""
    if "keras" in sys.modules:
        register_keras_objects()
    else:
        around_first_import("keras", _registering_after)
