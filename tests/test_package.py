"""The package as users meet it: cheap import, registration, public names, no private Keras."""

import ast
import concurrent.futures
import importlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import hpa_keras
from hpa_keras.registration import REGISTERING_MODULES

PACKAGE = Path(hpa_keras.__file__).parent
SUBPACKAGES = (
    "data", "synthetic", "models", "scoring", "runs", "training", "inference", "reports", "cells",
    "workflows",
)


def python(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (nothing of this test process is loaded there)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
    )


def test_import_and_help_do_not_load_tensorflow():
    result = python(
        """
        import sys
        import hpa_keras
        from hpa_keras.cli import build_parser
        from hpa_keras.data import read_labels
        build_parser()
        print(sorted(name for name in ("tensorflow", "keras") if name in sys.modules))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# Notebook first lines, each in a fresh interpreter, before a plain keras.saving.load_model:
# hpa_keras before or after tensorflow and keras, and a first `from hpa_keras.X import name`
# of the public names whose modules import Keras or TensorFlow themselves.
IMPORT_ORDERS = (
    "import hpa_keras\nimport keras",
    "import keras\nimport hpa_keras",
    "import hpa_keras\nimport tensorflow as tf\nimport keras",
    "import tensorflow as tf\nimport hpa_keras\nimport keras",
    "import hpa_keras\nfrom hpa_keras.data import load_dataset\nimport keras",
    "from hpa_keras.data import load_dataset\nimport keras",
    "from hpa_keras.models.layers import ChannelStandardization\nimport keras",
    "from hpa_keras.training.losses import WeightedBinaryCrossentropy\nimport keras",
    "from hpa_keras.models import build_model\nimport keras",
    "from hpa_keras.training import ThresholdSearch\nimport keras",
    "from hpa_keras.inference import predict_runs\nimport keras",
    "from hpa_keras.reports import cam_figure\nimport keras",
    "import tensorflow as tf\nimport keras\nfrom hpa_keras.data import read_labels",
)


LOAD_AFTER = """
import keras
model = keras.saving.load_model({path!r})

def layers(layer):
    yield layer
    for inner in getattr(layer, "layers", []):
        yield from layers(inner)

names = {{type(layer).__name__ for layer in layers(model)}}
print(sorted(names & {{"ChannelStandardization", "RandomDihedral", "RandomChannelIntensity"}}))
print(type(model.optimizer).__name__, type(model.loss).__name__)
"""


@pytest.fixture(scope="module")
def loaded_after_each_import_order(runs):
    """Every import order in its own fresh interpreter, all started at once (each spends its
    time importing TensorFlow, so they share the cores instead of queueing)."""
    load = LOAD_AFTER.format(path=str(runs[0] / "model.keras"))
    code = {lines: lines + load for lines in IMPORT_ORDERS}
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(code)) as pool:
        results = dict(zip(code, pool.map(python, code.values()), strict=True))
    return results


@pytest.mark.parametrize("first_lines", IMPORT_ORDERS, ids=lambda lines: lines.replace("\n", "; "))
def test_a_run_loads_with_plain_keras_after_any_import_order(
    loaded_after_each_import_order, first_lines
):
    """The notebook case: registration holds whatever came first (TensorFlow looks Keras up
    with importlib.util.find_spec before importing it, which once used up the import hook)."""
    result = loaded_after_each_import_order[first_lines]
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "['ChannelStandardization', 'RandomChannelIntensity', 'RandomDihedral']"
    assert lines[1] == "DifferentialAdam WeightedBinaryCrossentropy"


def test_every_registering_module_is_listed():
    """A module that registers Keras objects but is not imported on registration would make
    its objects unloadable again."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        if "register_keras_serializable" in path.read_text() and path.name != "registration.py":
            module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
            found.add(module)
    assert found == set(REGISTERING_MODULES)


def _module_level_imports(path: Path) -> tuple[set[str], set[str]]:
    """The package modules and the third-party top-level names ``path`` imports at module
    level."""
    own, third = set(), set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "hpa_keras":  # from hpa_keras import storage
                own.update(f"hpa_keras.{alias.name}" for alias in node.names)
            elif node.module.startswith("hpa_keras"):
                own.add(node.module)
            else:
                third.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                (own if alias.name.startswith("hpa_keras") else third).add(alias.name.split(".")[0])
    return own, third


def test_registering_modules_import_no_module_that_imports_tensorflow():
    """Registration may run while TensorFlow is being imported by a module of this package
    (``from hpa_keras.data import load_dataset``): a registering module that imported such a
    module would find it half-made, and runs would not load."""
    def path_of(module: str) -> Path:
        parts = module.split(".")[1:]
        file = PACKAGE.joinpath(*parts[:-1], f"{parts[-1]}.py") if parts else PACKAGE / "x"
        return file if file.exists() else PACKAGE.joinpath(*parts, "__init__.py")

    for registering in REGISTERING_MODULES:
        seen, todo = set(), [registering]
        while todo:
            module = todo.pop()
            if module in seen or not path_of(module).exists():
                continue
            seen.add(module)
            own, third = _module_level_imports(path_of(module))
            if module != registering:
                assert "tensorflow" not in third, f"{registering} imports {module}: TensorFlow"
            todo.extend(own)


@pytest.mark.parametrize("package", SUBPACKAGES)
def test_every_public_name_resolves(package):
    module = importlib.import_module(f"hpa_keras.{package}")
    assert module.__all__, package
    for name in module.__all__:
        assert getattr(module, name) is not None, f"hpa_keras.{package}.{name}"
        assert name in dir(module)
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        module.no_such_name  # noqa: B018


def test_the_names_users_import_exist():
    from hpa_keras.data import load_dataset, make_tfrecords, read_labels  # noqa: F401
    from hpa_keras.inference import evaluate_runs, load_run, predict_runs  # noqa: F401
    from hpa_keras.models import build_model, load_model  # noqa: F401
    from hpa_keras.training import ThresholdSearch, fit  # noqa: F401

    assert hpa_keras.load_run is load_run


def test_no_private_keras_modules_are_imported():
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("keras.src"), f"{path}: {node.module}"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("keras.src"), f"{path}: {alias.name}"


def test_one_module_draws_figures_and_one_formats_tables():
    """matplotlib is set up in reports.figures only; tables come from reports.tables."""
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        relative = path.relative_to(PACKAGE).as_posix()
        if relative != "reports/figures.py":
            assert "import matplotlib.pyplot" not in text, relative
            assert "matplotlib.use(" not in text, relative
        if not relative.startswith("reports/"):
            assert "plt.subplots" not in text, relative


def test_import_hpa_keras_first_keeps_tensorflow_s_start_up_lines_out_of_a_notebook():
    """TensorFlow writes its oneDNN / CUDA-stub / cuInit lines from C++ to descriptor 2, where
    a notebook shows them as red text; imported after hpa_keras, it is silenced while it loads.
    """
    from hpa_keras.tensorflow_setup import _NATIVE_LOG_LINE

    environment = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home())}  # no TF_CPP_MIN_LOG_LEVEL
    code = "{}import tensorflow as tf\nprint(int(tf.constant(2) + 1))"
    quiet, noisy = (
        subprocess.run(
            [sys.executable, "-c", code.format(first)],
            capture_output=True,
            text=True,
            timeout=300,
            env=environment,
        )
        for first in ("import hpa_keras\n", "")
    )
    assert quiet.returncode == 0 and quiet.stdout.strip() == "3", quiet.stderr
    assert not [line for line in quiet.stderr.splitlines() if _NATIVE_LOG_LINE.match(line.encode())]
    # The check can fail: without hpa_keras first, this TensorFlow does print such lines.
    assert [line for line in noisy.stderr.splitlines() if _NATIVE_LOG_LINE.match(line.encode())]
