"""One .keras file, two backends: models saved on JAX load on TensorFlow and the reverse."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HELPER = Path(__file__).parent / "helpers" / "backend_round_trip.py"
needs_jax = pytest.mark.skipif(
    importlib.util.find_spec("jax") is None, reason="jax is not installed (pip install -e .[test])"
)


def run_helper(backend: str, action: str, folder: Path) -> str:
    environment = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, str(HELPER), action, str(folder)],
        env=environment, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@needs_jax
@pytest.mark.slow
@pytest.mark.parametrize("saved_on, loaded_on", [("jax", "tensorflow"), ("tensorflow", "jax")])
def test_every_model_family_reloads_on_the_other_backend_with_the_same_predictions(
    tmp_path, saved_on, loaded_on
):
    run_helper(saved_on, "save", tmp_path)
    assert (tmp_path / "backend.txt").read_text() == saved_on
    differences = json.loads(run_helper(loaded_on, "load", tmp_path).strip().splitlines()[-1])
    assert len(differences) == 8
    for name, difference in differences.items():
        assert difference < 1e-4, f"{name}: {saved_on} -> {loaded_on} differs by {difference}"
