"""Public names of a package, imported from their modules on first use (PEP 562).

``from hpa_keras.data import load_dataset`` should work, but importing
``hpa_keras.data`` (for its label reader, say) must not import TensorFlow,
which ``load_dataset``'s module needs. A package lists where each public
name lives; the module is imported the first time the name is looked up.
"""

import importlib
import sys


def lazy_exports(package: str, exports: dict[str, str]):
    """``(__getattr__, __dir__, __all__)`` for a package whose names live in submodules.

    Args:
        package: the package's ``__name__``.
        exports: public name -> submodule (relative to the package) defining it.
    """

    def get_attribute(name: str):
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)  # later lookups find it directly
        return value

    def list_attributes() -> list[str]:
        return sorted(set(exports) | set(vars(sys.modules[package])))

    return get_attribute, list_attributes, sorted(exports)
