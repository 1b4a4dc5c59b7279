"""Drawing styles of the built-in data (make-demo-data --style): the default draws exactly
what the generator drew before styles, widefield the same labels through another microscope."""

import dataclasses
import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from hpa_keras.classes import CHANNELS
from hpa_keras.cli import main
from hpa_keras.errors import InputError
from hpa_keras.synthetic.cell_field import make_cell_field
from hpa_keras.synthetic.generator import (
    DemoDataSettings,
    make_demo_data,
    quantize,
    render_field,
)
from hpa_keras.synthetic.styles import STYLES, get_style

# Computed with the generator before styles existed (commit 00de5d0), from its own code:
# a 64 px field's quantized channels, and a 4-sample set's decoded PNGs and CSVs.
FIELD_HASH = "9283421063ac0a7141db2870f706be3baca87499a88ff5186cd39dcb32d9b65b"
SET_HASH = "601451dd393b2b40a01673161b6dfbfb4786a40177e653af7fae0fbdebc3ef85"


def _set_hash(folder: Path) -> str:
    """The decoded pixels and the CSVs of a set (not the PNG bytes, which depend on the
    encoder's version, nor generation.json, which records the settings)."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.suffix == ".png":
            digest.update(path.relative_to(folder).as_posix().encode())
            digest.update(cv2.imread(str(path), cv2.IMREAD_UNCHANGED).tobytes())
        elif path.suffix == ".csv":
            digest.update(path.relative_to(folder).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _make(folder: Path, style: str, workers: int = 1, num_samples: int = 4) -> Path:
    settings = DemoDataSettings(num_samples=num_samples, image_size=64, seed=3, style=style)
    make_demo_data(folder, settings, workers=workers, progress=False)
    return folder


def _channels(folder: Path) -> dict:
    """``{channel: (N, H, W) float array}`` of the training images, in Id order."""
    ids = sorted({path.name.rsplit("_", 1)[0] for path in (folder / "train").glob("*.png")})
    return {
        channel: np.stack(
            [cv2.imread(str(folder / "train" / f"{sample}_{channel}.png"), -1) for sample in ids]
        ).astype(np.float64)
        for channel in CHANNELS
    }


@pytest.fixture(scope="module")
def both_styles(tmp_path_factory):
    root = tmp_path_factory.mktemp("styles")
    return {style: _make(root / style, style, num_samples=8) for style in STYLES}


def test_default_style_draws_the_same_field_as_before():
    image, _, _ = render_field(np.random.default_rng([7, 3]), [0, 25], 64)
    assert hashlib.sha256(quantize(image, 8).tobytes()).hexdigest() == FIELD_HASH
    styled, _, _ = render_field(np.random.default_rng([7, 3]), [0, 25], 64, style="hpa-like")
    assert np.array_equal(image, styled)


def test_default_style_writes_the_same_set_as_before(tmp_path):
    folder = tmp_path / "set"
    make_demo_data(
        folder, DemoDataSettings(num_samples=4, image_size=64, seed=3), workers=1, progress=False
    )
    assert _set_hash(folder) == SET_HASH
    assert json.loads((folder / "generation.json").read_text())["settings"]["style"] == "hpa-like"


def test_layout_at_magnification_one_is_unchanged():
    plain = make_cell_field(np.random.default_rng(5), 64, mitotic_cells=1)
    explicit = make_cell_field(
        np.random.default_rng(5), 64, mitotic_cells=1, magnification=1.0, density=1.0
    )
    assert np.array_equal(plain.labels, explicit.labels)


def test_widefield_keeps_the_labels_but_not_the_pixels(both_styles):
    hpa, widefield = both_styles["hpa-like"], both_styles["widefield"]
    for name in ("train.csv", "test_labels.csv", "sample_submission.csv"):
        assert (hpa / name).read_bytes() == (widefield / name).read_bytes()
    stored = json.loads((widefield / "generation.json").read_text())
    assert stored["settings"]["style"] == "widefield"
    assert _set_hash(hpa) != _set_hash(widefield)


def test_widefield_has_a_background_offset(both_styles):
    hpa, widefield = _channels(both_styles["hpa-like"]), _channels(both_styles["widefield"])
    for channel in CHANNELS:
        low_hpa = np.mean([np.percentile(image, 5) for image in hpa[channel]])
        low_widefield = np.mean([np.percentile(image, 5) for image in widefield[channel]])
        assert low_hpa <= 1.0  # black-level subtracted
        assert low_widefield >= low_hpa + 8.0, channel


def test_widefield_bleeds_blue_into_green():
    """Cross-talk raises the blue-green correlation over the same style without it (same
    fields, same noise draws: only the bleed differs)."""
    widefield = get_style("widefield")
    no_bleed = dataclasses.replace(widefield, crosstalk=())
    gains = []
    for seed in range(4):
        fields = [
            render_field(np.random.default_rng([seed, 1]), [23], 64, style=style)[0]
            for style in (widefield, no_bleed)
        ]
        blue_green = [np.corrcoef(f[..., 2].ravel(), f[..., 1].ravel())[0, 1] for f in fields]
        gains.append(blue_green[0] - blue_green[1])
    assert np.mean(gains) > 0.05


def test_widefield_cells_are_fewer_and_larger():
    counts = {}
    for name in STYLES:
        style = get_style(name)
        counts[name] = np.mean(
            [
                len(
                    make_cell_field(
                        np.random.default_rng(seed),
                        128,
                        magnification=style.magnification,
                        density=style.density,
                    ).cells
                )
                for seed in range(6)
            ]
        )
    assert counts["widefield"] < 0.75 * counts["hpa-like"]


def test_widefield_is_deterministic_whatever_the_workers(tmp_path):
    one = _make(tmp_path / "one", "widefield", workers=1)
    two = _make(tmp_path / "two", "widefield", workers=2)
    for path in sorted((one / "train").glob("*.png")):
        assert path.read_bytes() == (two / "train" / path.name).read_bytes()


def test_unknown_style_is_refused_naming_the_choices(tmp_path, capsys):
    with pytest.raises(InputError, match="hpa-like, widefield"):
        DemoDataSettings(style="confocal").validate()
    with pytest.raises(InputError, match="widefield"):
        render_field(np.random.default_rng(0), [0], 64, style="confocal")
    with pytest.raises(SystemExit):
        main(["make-demo-data", str(tmp_path / "out"), "--style", "confocal"])
    error = capsys.readouterr().err
    assert "confocal" in error and "hpa-like" in error and "widefield" in error
    assert not (tmp_path / "out").exists()


def test_cli_writes_a_widefield_set(tmp_path):
    out = tmp_path / "out"
    argv = ["make-demo-data", str(out), "--num-samples", "3", "--image-size", "64"]
    assert main([*argv, "--style", "widefield", "--quiet"]) == 0
    assert json.loads((out / "generation.json").read_text())["settings"]["style"] == "widefield"
