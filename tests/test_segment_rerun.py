"""Interrupted segmentation (issue 23, point 8): after a kill and a rerun, segmentation.json
describes every field with masks in the folder, as an uninterrupted run's does."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from hpa_keras.cells.segment import SUMMARY_FILE, segment_folder
from hpa_keras.classes import CHANNELS
from hpa_keras.data.cells import read_mask, write_mask

# What differs between any two runs, interrupted or not: this run's own counts and timings.
RUN_ONLY_KEYS = ("segmented", "kept", "seconds")


def _write_fields(folder: Path, count: int, side: int = 128) -> list[str]:
    """``count`` fields of 1-4 round cells each; field f03 is empty (no cells)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    ids = [f"f{index:02d}" for index in range(count)]
    for index, field_id in enumerate(ids):
        blue, red = np.zeros((side, side), np.uint8), np.full((side, side), 4, np.uint8)
        cells = 0 if index == 3 else 1 + index % 4
        for _ in range(cells):
            y, x = (int(value) for value in rng.integers(side // 5, side - side // 5, 2))
            cv2.circle(red, (x, y), side // 7, 150, -1)
            cv2.circle(blue, (x, y), side // 18, 200, -1)
        for channel, plane in zip(CHANNELS, (red, red // 2, blue, red), strict=True):
            cv2.imwrite(str(folder / f"{field_id}_{channel}.png"), plane)
    return ids


def _comparable(summary: dict) -> dict:
    kept = {key: value for key, value in summary.items() if key not in RUN_ONLY_KEYS}
    kept["fields"] = [
        {key: value for key, value in field.items() if key != "seconds"}
        for field in summary["fields"]
    ]
    return kept


def _segment(images: Path, out: Path) -> dict:
    return segment_folder(images, out, workers=1, progress=False)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """``(images, out, summary)`` of one run over every field, never stopped."""
    root = tmp_path_factory.mktemp("segment-rerun")
    ids = _write_fields(root / "images", 8)
    summary = _segment(root / "images", root / "uninterrupted")
    assert len(summary["fields"]) == len(ids) - 1 and summary["no_cells"] == ["f03"]
    assert json.loads((root / "uninterrupted" / SUMMARY_FILE).read_text()) == summary
    return root / "images", root / "uninterrupted", summary


def _copy_masks(source: Path, target: Path, field_ids) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for field_id in field_ids:
        for kind in ("nuclei", "cells"):
            shutil.copy2(source / f"{field_id}_{kind}.png", target / f"{field_id}_{kind}.png")


def _state_killed_before_any_summary(images, done, out):
    _copy_masks(done, out, ["f00", "f01", "f02", "f04"])  # a kill: masks, no summary


def _state_killed_after_an_earlier_shorter_run(images, done, out):
    """A first run over 3 fields finished (its summary), a second over all was killed."""
    first = out.parent / "first-images"
    first.mkdir()
    for path in images.glob("f0[012]_*"):
        shutil.copy(path, first / path.name)
    _segment(first, out)
    _copy_masks(done, out, ["f04", "f05"])


def _state_killed_while_overwriting(images, done, out):
    """A finished run, then ``--overwrite`` with other settings killed after rewriting one
    field's masks: the old summary's count of that field is no longer its mask's."""
    _copy_masks(done, out, ["f00", "f01", "f02", "f04", "f05", "f06", "f07"])
    shutil.copy(done / SUMMARY_FILE, out / SUMMARY_FILE)
    merged = (read_mask(out / "f05_cells.png") > 0).astype(np.uint8)  # its cells made one
    assert read_mask(out / "f05_cells.png").max() > 1
    write_mask(out / "f05_cells.png", merged)
    write_mask(out / "f05_nuclei.png", np.zeros_like(merged))


def _state_with_a_cut_summary(images, done, out):
    _copy_masks(done, out, ["f00", "f02"])
    (out / SUMMARY_FILE).write_text('{"fields": [{"id": "f00", "cel')  # edited by hand, cut


STATES = {
    "killed before any summary": _state_killed_before_any_summary,
    "killed after an earlier, shorter run": _state_killed_after_an_earlier_shorter_run,
    "killed while overwriting": _state_killed_while_overwriting,
    "summary cut short": _state_with_a_cut_summary,
}


@pytest.mark.parametrize("state", STATES)
def test_a_rerun_summarises_every_field_with_masks(uninterrupted, tmp_path, state):
    images, done, expected = uninterrupted
    out = tmp_path / "out"
    STATES[state](images, done, out)
    rerun = _segment(images, out)
    if state == "killed while overwriting":  # the rewritten field is summarised as its mask is
        f05 = next(field for field in expected["fields"] if field["id"] == "f05")
        expected = json.loads(json.dumps(expected))
        expected["cells"] += 1 - f05["cells"]
        expected["cells_per_field"]["f05"] = 1
        next(field for field in expected["fields"] if field["id"] == "f05")["cells"] = 1
    assert _comparable(rerun) == _comparable(expected)
    assert json.loads((out / SUMMARY_FILE).read_text()) == rerun
    assert rerun["kept"] + rerun["segmented"] + len(rerun["no_cells"]) == rerun["num_fields"]


def test_kept_fields_keep_their_seconds_when_their_masks_are_unchanged(uninterrupted, tmp_path):
    images, done, expected = uninterrupted
    out = tmp_path / "out"
    shutil.copytree(done, out)
    rerun = _segment(images, out)
    assert rerun["kept"] == len(expected["fields"]) and rerun["segmented"] == 0
    assert rerun["fields"] == expected["fields"]  # seconds included


_CHILD = """
import sys
from hpa_keras.cells.segment import segment_folder
segment_folder(sys.argv[1], sys.argv[2], workers=1, progress=False)
"""


def test_a_run_killed_with_sigkill_then_rerun_gives_the_uninterrupted_summary(tmp_path):
    ids = _write_fields(tmp_path / "images", 40, side=256)
    expected = _segment(tmp_path / "images", tmp_path / "uninterrupted")
    out = tmp_path / "out"
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(tmp_path / "images"), str(out)])
    deadline = time.monotonic() + 120
    try:
        while not list(out.glob("*_cells.png")) and child.poll() is None:
            assert time.monotonic() < deadline, "the segmenting process wrote no mask"
            time.sleep(0.005)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    finished = len(list(out.glob("*_cells.png")))
    assert 0 < finished < len(ids) - 1, "the kill came after the run had finished"
    assert not (out / SUMMARY_FILE).exists()
    rerun = _segment(tmp_path / "images", out)
    assert rerun["kept"] == finished
    assert _comparable(rerun) == _comparable(expected)
    assert rerun["cells"] == sum(int(read_mask(path).max()) for path in out.glob("*_cells.png"))
