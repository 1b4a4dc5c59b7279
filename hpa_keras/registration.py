"""Registering hpa-keras' custom Keras objects as soon as Keras is imported.

Keras 3 deserializes a custom layer, loss or optimizer only if the module
that defines it has been imported (its ``register_keras_serializable``
decorator ran). A run's ``model.keras`` holds ``ChannelStandardization``,
``RandomDihedral``, the training loss and a ``DifferentialAdam``; without
registration, ``keras.saving.load_model`` fails on the first of them.

Importing those modules imports Keras, and with it TensorFlow (several
seconds), which ``hpa-keras --help`` and the data commands must not pay.
So ``import hpa_keras`` calls :func:`register_when_keras_loads`: if Keras is
already imported, everything is registered at once; otherwise a one-shot
import hook waits for the first ``import keras`` (by the user, by
TensorFlow's ``tf.keras``, or by hpa-keras itself) and registers everything
right after Keras has finished loading. Either way, after ``import
hpa_keras`` a plain ``keras.saving.load_model(path)`` works.

The defining modules import only Keras, numpy and the light modules of this
package, so importing them from inside the hook cannot loop back into a
half-imported hpa-keras module.
"""

import importlib
import importlib.abc
import importlib.util
import sys

# Every module with a @keras.saving.register_keras_serializable object (a test checks
# this list against the source tree).
REGISTERING_MODULES = (
    "hpa_keras.models.layers",
    "hpa_keras.models.augmentation",
    "hpa_keras.models.capsnet",
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


class _RegisteringLoader(importlib.abc.Loader):
    """Keras' own loader, registering hpa-keras' objects once Keras has executed."""

    def __init__(self, loader):
        self._loader = loader

    def __getattr__(self, name):  # resource readers and the like: Keras' loader answers
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        _remove_hook()
        self._loader.exec_module(module)
        # From here on the module looks exactly as if imported without the hook.
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        register_keras_objects()


class _KerasImportHook(importlib.abc.MetaPathFinder):
    """Finds ``keras`` through the other finders and wraps its loader.

    It stays in place until Keras is executed, not merely looked up: TensorFlow's
    ``import tensorflow`` calls ``importlib.util.find_spec("keras")`` to locate
    ``tf.keras`` without importing it, and a hook that left at the first look-up
    missed the import that followed.
    """

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras" or fullname in sys.modules:
            return None
        others = [finder for finder in sys.meta_path if not isinstance(finder, _KerasImportHook)]
        spec = _find_with(others, fullname, path, target)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _RegisteringLoader(spec.loader)
        return spec


def _find_with(finders, fullname, path, target):
    """The spec the first of ``finders`` that knows ``fullname`` gives (None if none does)."""
    for finder in finders:
        find_spec = getattr(finder, "find_spec", None)
        spec = find_spec(fullname, path, target) if find_spec is not None else None
        if spec is not None:
            return spec
    return None


def _remove_hook() -> None:
    sys.meta_path[:] = [
        finder for finder in sys.meta_path if not isinstance(finder, _KerasImportHook)
    ]


def register_when_keras_loads() -> None:
    """Register now if Keras is loaded, else as soon as it is (see the module docstring)."""
    if "keras" in sys.modules:
        register_keras_objects()
    elif not any(isinstance(finder, _KerasImportHook) for finder in sys.meta_path):
        sys.meta_path.insert(0, _KerasImportHook())
