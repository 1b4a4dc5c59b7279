"""The notebooks run top to bottom on built-in data (executed with nbclient, as a user would)."""

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def test_the_three_notebooks_are_there():
    assert [path.name[:3] for path in NOTEBOOKS] == ["01_", "02_", "03_"]


def _text_outputs(notebook) -> str:
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            parts.append(output.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_runs_top_to_bottom(path, tmp_path):
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:  # narrative notebooks: no library code defined in them
        if cell.cell_type == "code":
            assert not re.search(r"^\s*(def|class|lambda)\b", cell.source, re.M), path.name
    client = NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any error
    outputs = _text_outputs(notebook)
    images = sum(
        "image/png" in output.get("data", {})
        for cell in notebook.cells
        for output in cell.get("outputs", [])
    )
    expected, figures = {
        "01": ("labels per image", 4),
        "02": ("F1 tuned", 2),  # the live per-class table of ThresholdSearch
        "03": ("macro_f1", 3),
    }[path.name[:2]]
    assert images >= figures, f"{path.name}: {images} figures shown"
    assert expected in outputs, f"{path.name}: {expected!r} not in the outputs"
