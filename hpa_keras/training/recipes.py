"""Shipped training recipes: YAML settings files usable by name.

``hpa-keras fit --config recipes/densenet121-512`` (or ``cv``) reads
``hpa_keras/recipes/densenet121-512.yaml`` from the installed package, so a
recipe needs no copy of the repository. A file that exists at the given
path is always read first: a user's own ``recipes/`` folder wins over the
package's. Each recipe file begins with comments that say where it comes
from and what it costs on a GPU, estimated on paper by
``python scripts/estimate_recipe_cost.py`` (the method is in that script).
"""

from importlib import resources
from pathlib import Path

from hpa_keras.errors import InputError

RECIPE_PREFIX = "recipes/"


def _recipe_folder():
    return resources.files("hpa_keras.recipes")


def recipe_names() -> list[str]:
    """The shipped recipes' names, sorted."""
    return sorted(
        entry.name.removesuffix(".yaml")
        for entry in _recipe_folder().iterdir()
        if entry.name.endswith(".yaml")
    )


def recipe_path(name: str):
    """The shipped file of recipe ``name`` (with or without ``.yaml``)."""
    entry = _recipe_folder() / f"{name.removesuffix('.yaml')}.yaml"
    if not entry.is_file():
        raise InputError(
            f"{RECIPE_PREFIX}{name}: no such recipe; shipped recipes: {', '.join(recipe_names())}"
        )
    return entry


def recipe_text(name: str) -> str:
    """The YAML text of a shipped recipe."""
    return recipe_path(name).read_text()


def resolve_config_file(path) -> tuple[str, str]:
    """``(name, YAML text)`` of ``--config``: a file, else ``recipes/NAME`` of the package.

    A path that is neither an existing file nor a recipe's name is an error
    that lists the recipes.
    """
    given = str(path)
    file = Path(given)
    if file.is_file():
        return given, file.read_text()
    if given.startswith(RECIPE_PREFIX):
        return given, recipe_text(given[len(RECIPE_PREFIX) :])
    raise InputError(
        f"{given}: config file not found (shipped recipes are used as recipes/NAME: "
        f"{', '.join(recipe_names())})"
    )
