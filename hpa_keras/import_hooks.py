"""Running code around the first import of a third-party module, without importing it.

``import hpa_keras`` must stay cheap, yet two things have to happen when Keras or
TensorFlow load later, whoever imports them: hpa-keras' Keras objects get registered
(:mod:`hpa_keras.registration`), and TensorFlow's C++ start-up lines are kept out of
a notebook (:mod:`hpa_keras.tensorflow_setup`). :func:`around_first_import` puts a
finder in front of ``sys.meta_path`` that wraps the module's own loader.

The finder stays until the module executes, not merely until it is looked up:
``import tensorflow`` calls ``importlib.util.find_spec("keras")`` to locate
``tf.keras`` without importing it, and a hook that left at the first look-up missed
the import that followed.
"""

import importlib.abc
import sys


class _WrappedLoader(importlib.abc.Loader):
    """The module's own loader, its execution run inside ``around(module)``."""

    def __init__(self, loader, hook):
        self._loader = loader
        self._hook = hook

    def __getattr__(self, name):  # resource readers and the like: the real loader answers
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        _remove(self._hook)
        with self._hook.around(module):
            self._loader.exec_module(module)
            # From here on the module looks exactly as if imported without the hook.
            module.__loader__ = self._loader
            if module.__spec__ is not None:
                module.__spec__.loader = self._loader


class _FirstImportHook(importlib.abc.MetaPathFinder):
    """Finds one module through the other finders and wraps its loader."""

    def __init__(self, name: str, around):
        self.name = name
        self.around = around

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name or fullname in sys.modules:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _WrappedLoader(spec.loader, self)
                return spec
        return None


def _remove(hook) -> None:
    sys.meta_path[:] = [finder for finder in sys.meta_path if finder is not hook]


def around_first_import(name: str, around) -> None:
    """Run the first import of top-level module ``name`` inside ``around(module)``, a
    context manager factory (the code after its ``yield`` sees the executed module).
    Nothing happens if the module is loaded already; one hook per name."""
    if name in sys.modules:
        return
    hooks = [hook for hook in sys.meta_path if isinstance(hook, _FirstImportHook)]
    if not any(hook.name == name for hook in hooks):
        sys.meta_path.insert(0, _FirstImportHook(name, around))
