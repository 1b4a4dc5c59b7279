"""Bad image and mask files (issue 23, point 1): one reader per kind, one line naming the file.

Every image the package opens goes through ``hpa_keras.data.images.read_image_file`` and
every mask through ``hpa_keras.data.cells.read_mask``; each bad file below must come back
as an InputError naming the file and the reason, from the public functions and from the
commands that read them (``segment``, ``show``, ``show --masks``, ``make-tfrecords --masks``),
which exit 2 with that line and no traceback.
"""

import os
import shutil
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from hpa_keras.classes import CHANNELS
from hpa_keras.cli import main
from hpa_keras.data.cells import read_mask, write_mask
from hpa_keras.data.images import read_channel, read_image_file
from hpa_keras.errors import InputError

SIDE = 64


def _picture(dtype=np.uint8) -> np.ndarray:
    """A noisy microscope-like image (never 255 in 8 bits)."""
    top = 250 if dtype == np.uint8 else 60000
    return np.random.default_rng(0).integers(1, top, (SIDE, SIDE)).astype(dtype)


def _mask() -> np.ndarray:
    labels = np.zeros((SIDE, SIDE), np.uint8)
    labels[4:30, 4:30], labels[34:60, 34:60] = 1, 2
    return labels


def _encoded(extension: str, array: np.ndarray) -> bytes:
    ok, data = cv2.imencode(extension, array)
    assert ok
    return data.tobytes()


def _png_header_claiming(width: int, height: int) -> bytes:
    """A well-formed little PNG whose header claims ``width`` x ``height`` pixels."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))  # fmt: skip


def _corrupt_png_data() -> bytes:
    data = bytearray(_encoded(".png", _picture()))
    data[60:80] = bytes(20)  # inside the compressed pixels; the end marker stays
    return bytes(data)


def _tiff_cut_in_its_pixels() -> bytes:
    from io import BytesIO

    from PIL import Image

    stream = BytesIO()
    Image.fromarray(_picture()).save(stream, format="TIFF")  # Pillow: directory first
    return stream.getvalue()[: len(stream.getvalue()) // 2]


# name: (extension, bytes of the file, the reason the error must give)
IMAGE_CASES = {
    "empty file": (".png", lambda: b"", "an empty file"),
    "text file named .png": (".png", lambda: b"notes, not pixels\n", "cannot be read as an image"),
    "truncated PNG": (
        ".png", lambda: _encoded(".png", _picture())[:400], "truncated or damaged PNG"
    ),
    "PNG with corrupt pixel data": (".png", _corrupt_png_data, "cannot be decoded"),
    "truncated JPEG": (
        ".jpg", lambda: _encoded(".jpg", _picture())[:600], "truncated or damaged JPEG"
    ),
    "TIFF cut before its directory": (
        ".tif", lambda: _encoded(".tif", _picture())[:2000], "cannot be read as an image"
    ),
    "TIFF cut in its pixels": (".tif", _tiff_cut_in_its_pixels, "cannot be decoded"),
    "header claiming 100000x100000 (over OpenCV's limit)": (
        ".png", lambda: _png_header_claiming(100_000, 100_000), "too large to be a real HPA"
    ),
    "header claiming 20000x64": (
        ".png", lambda: _png_header_claiming(20_000, 64), "too large to be a real HPA"
    ),
}  # fmt: skip

MASK_CASES = {
    "colour picture of a mask": (
        ".png", lambda: _encoded(".png", np.stack([_mask() * 100] * 3, -1)), "one plane of cell"
    ),
    "float TIFF": (".tif", lambda: _encoded(".tif", _mask().astype(np.float32)), "pixel type"),
    "16-bit microscope image": (
        ".png", lambda: _encoded(".png", _picture(np.uint16)), "a microscope image instead"
    ),
    "8-bit microscope image": (
        ".png", lambda: _encoded(".png", _picture()), "a microscope image instead"
    ),
    ".npy of floats": (".npy", lambda: _npy(_mask().astype(np.float64)), "pixel type float64"),
    ".npy of three planes": (".npy", lambda: _npy(np.stack([_mask()] * 3)), "one plane of cell"),
    ".npy of Python objects": (
        ".npy", lambda: _npy(np.array([{"cell": 1}], dtype=object)), "Python objects"
    ),
    "empty .npy": (".npy", lambda: b"", "an empty file"),
    "truncated .npy": (".npy", lambda: _npy(_mask())[:-200], "a truncated array"),
    "text file named .npy": (".npy", lambda: b"1,2,3\n", "cannot be read as a mask array"),
    ".npz of no arrays": (".npz", lambda: _npz(), "holds 0 arrays"),
    ".npz of two arrays": (".npz", lambda: _npz(_mask(), _mask()), "holds 2 arrays"),
    "corrupt .npz": (".npz", lambda: b"PK\x03\x04" + b"\x00\x17" * 40, "cannot be read as a mask"),
    "truncated .npz": (".npz", lambda: _npz(_mask())[:150], "cannot be read as a mask array"),
}  # fmt: skip


def _npy(array: np.ndarray) -> bytes:
    from io import BytesIO

    stream = BytesIO()
    np.save(stream, array, allow_pickle=True)
    return stream.getvalue()


def _npz(*arrays: np.ndarray) -> bytes:
    from io import BytesIO

    stream = BytesIO()
    np.savez_compressed(stream, *arrays)
    return stream.getvalue()


def _write_case(folder: Path, stem: str, case: tuple) -> Path:
    extension, make, _ = case
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}{extension}"
    path.write_bytes(make())
    return path


def _assert_one_line_naming(error: str, path: Path, reason: str) -> None:
    assert "Traceback" not in error, error
    lines = [line for line in error.splitlines() if line.strip()]
    assert len(lines) == 1, error
    assert str(path) in lines[0] and reason in lines[0], error


# ------------------------------------------------------------------ the public readers


@pytest.mark.parametrize("name", IMAGE_CASES)
def test_read_channel_names_a_bad_image_file(tmp_path, name):
    path = _write_case(tmp_path, "x_red", IMAGE_CASES[name])
    with pytest.raises(InputError) as error:
        read_channel(path)
    assert str(error.value).startswith(f"{path}: ")
    assert IMAGE_CASES[name][2] in str(error.value)


@pytest.mark.parametrize("name", [*IMAGE_CASES, *MASK_CASES])
def test_read_mask_names_a_bad_mask_file(tmp_path, name):
    case = {**IMAGE_CASES, **MASK_CASES}[name]
    path = _write_case(tmp_path, "x_cells", case)
    with pytest.raises(InputError) as error:
        read_mask(path)
    assert str(error.value).startswith(f"{path}: ")
    assert case[2] in str(error.value)


@pytest.mark.parametrize("reader", [read_channel, read_mask, read_image_file])
def test_a_folder_named_like_an_image_is_named(tmp_path, reader):
    folder = tmp_path / "x_cells.png"
    folder.mkdir()
    with pytest.raises(InputError, match=r"x_cells.png: a folder, not"):
        reader(folder)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
@pytest.mark.parametrize("extension", [".png", ".npy"])
def test_an_unreadable_file_is_named(tmp_path, extension):
    path = tmp_path / f"x_cells{extension}"
    write_mask(tmp_path / "x_cells.png", _mask())
    if extension == ".npy":
        np.save(path, _mask())
    path.chmod(0)
    with pytest.raises(InputError, match=rf"x_cells{extension}: permission denied"):
        read_mask(path)


def _fortran_npy() -> bytes:
    return _npy(np.asfortranarray(_mask().astype(np.int32)))


@pytest.mark.parametrize(
    ("extension", "make"),
    [
        (".png", lambda: _encoded(".png", _mask())),
        (".png", lambda: _encoded(".png", _mask().astype(np.uint16) * 300)),  # 16-bit numbers
        (".tif", lambda: _encoded(".tif", _mask().astype(np.uint16))),
        (".npy", lambda: _npy(_mask()[..., None])),  # (H, W, 1)
        (".npy", _fortran_npy),
        (".npy", lambda: _npy(_mask().astype(">u2"))),  # big-endian
        (".npz", lambda: _npz(_mask().astype(np.int64))),
    ],
)
def test_good_masks_of_every_kind_still_read(tmp_path, extension, make):
    path = tmp_path / f"x_cells{extension}"
    path.write_bytes(make())
    labels = read_mask(path)
    assert labels.shape == (SIDE, SIDE)
    np.testing.assert_array_equal(labels > 0, _mask() > 0)
    assert sorted(np.unique(labels))[0] == 0 and len(np.unique(labels)) == 3


def test_real_masks_read_and_real_channels_are_no_masks(real_2021_folder, tmp_path):
    mask = sorted((real_2021_folder / "masks").glob("*_predictedmask.png"))[0]
    assert read_mask(mask).max() > 1
    channel = sorted((real_2021_folder / "images").glob("*_blue.png"))[0]
    shutil.copy(channel, tmp_path / "x_cells.png")
    with pytest.raises(InputError, match="x_cells.png: neighbouring pixels differ in"):
        read_mask(tmp_path / "x_cells.png")


# ------------------------------------------------------------------ through the commands


def _discs(field_id: str, folder: Path) -> None:
    """A field of two cells: nuclei in blue, cytoplasm in red and yellow, 8-bit PNGs."""
    folder.mkdir(parents=True, exist_ok=True)
    blue, red = np.zeros((SIDE, SIDE), np.uint8), np.full((SIDE, SIDE), 5, np.uint8)
    for centre in ((18, 18), (46, 44)):
        cv2.circle(red, centre[::-1], 14, 150, -1)
        cv2.circle(blue, centre[::-1], 6, 200, -1)
    for channel, plane in zip(CHANNELS, (red, red // 2, blue, red), strict=True):
        cv2.imwrite(str(folder / f"{field_id}_{channel}.png"), plane)


def _replace(folder: Path, stem: str, case: tuple) -> Path:
    for old in folder.glob(f"{stem}.*"):
        old.unlink()
    return _write_case(folder, stem, case)


@pytest.mark.parametrize("name", IMAGE_CASES)
def test_segment_names_a_bad_channel_file(tmp_path, capsys, name):
    images = tmp_path / "images"
    _discs("f0", images)
    _discs("f1", images)
    bad = _replace(images, "f1_red", IMAGE_CASES[name])
    out = tmp_path / "masks"
    status = main(["segment", "--images", str(images), "--out", str(out), "--workers", "1",
                   "--quiet"])  # fmt: skip
    assert status == 2
    _assert_one_line_naming(capsys.readouterr().err, bad, IMAGE_CASES[name][2])
    assert not out.exists()


@pytest.mark.parametrize("name", IMAGE_CASES)
def test_show_names_a_bad_channel_file(tmp_path, capsys, name):
    images = tmp_path / "images"
    _discs("f1", images)
    bad = _replace(images, "f1_green", IMAGE_CASES[name])
    status = main(["show", str(images), "--id", "f1", "--out", str(tmp_path / "f1.png")])
    assert status == 2
    _assert_one_line_naming(capsys.readouterr().err, bad, IMAGE_CASES[name][2])
    assert not (tmp_path / "f1.png").exists()


MASK_FILE_CASES = {  # those under the names find_mask_files looks for (not .jpg)
    name: case for name, case in {**IMAGE_CASES, **MASK_CASES}.items() if case[0] != ".jpg"
}


@pytest.mark.parametrize("name", MASK_FILE_CASES)
def test_show_masks_names_a_bad_mask_file(tmp_path, capsys, name):
    images, masks = tmp_path / "images", tmp_path / "masks"
    _discs("f1", images)
    bad = _write_case(masks, "f1_cells", MASK_FILE_CASES[name])
    status = main(["show", str(images), "--id", "f1", "--masks", str(masks),
                   "--out", str(tmp_path / "f1.png")])  # fmt: skip
    assert status == 2
    _assert_one_line_naming(capsys.readouterr().err, bad, MASK_FILE_CASES[name][2])


@pytest.fixture(scope="module")
def cell_fields(tmp_path_factory):
    from hpa_keras.synthetic.generator import DemoDataSettings, make_demo_data

    root = tmp_path_factory.mktemp("cell-fields") / "demo"
    settings = DemoDataSettings(num_samples=6, image_size=96, seed=2, cells=True)
    make_demo_data(root, settings, workers=1, progress=False)
    return root


@pytest.mark.parametrize(
    "name", ["empty file", "header claiming 100000x100000 (over OpenCV's limit)",
             "truncated .npy", "corrupt .npz", ".npy of Python objects"],
)  # fmt: skip
def test_make_tfrecords_masks_names_a_bad_mask_file(cell_fields, tmp_path, capsys, name):
    masks = tmp_path / "masks"
    shutil.copytree(cell_fields / "masks", masks)
    field_id = sorted(masks.glob("*_cells.png"))[0].name.removesuffix("_cells.png")
    (masks / f"{field_id}_cells.png").unlink()
    bad = _write_case(masks, f"{field_id}_cells", MASK_FILE_CASES[name])
    out = tmp_path / "records"
    status = main(["make-tfrecords", "--images", str(cell_fields / "train"), "--labels",
                   str(cell_fields / "train.csv"), "--masks", str(masks), "--out", str(out),
                   "--folds", "2", "--workers", "1", "--quiet"])  # fmt: skip
    assert status == 2
    _assert_one_line_naming(capsys.readouterr().err, bad, MASK_FILE_CASES[name][2])
    assert not out.exists()
