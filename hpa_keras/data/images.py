"""Finding and reading the channel images of one sample.

The Kaggle release stores each sample as four 8-bit grayscale PNGs named
``<Id>_<red|green|blue|yellow>.png``; other HPA releases use TIFF or JPEG and
16-bit depth. :func:`read_channel` returns the stored array unchanged (uint8
or uint16); :func:`to_unit_float` maps either depth onto [0, 1].
"""

import os
from pathlib import Path

import cv2
import numpy as np

from hpa_keras.classes import CHANNELS
from hpa_keras.errors import InputError

IMAGE_EXTENSIONS = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
SAMPLE_SUBFOLDERS = ("", "train", "test")  # where a data set root keeps its images


def channel_path(folder: str | os.PathLike, sample_id: str, channel: str) -> Path | None:
    """The file of one channel of ``sample_id`` in ``folder``, any supported extension."""
    for extension in IMAGE_EXTENSIONS:
        for candidate in (extension, extension.upper()):
            path = Path(folder) / f"{sample_id}_{channel}{candidate}"
            if path.is_file():
                return path
    return None


def find_sample_files(root: str | os.PathLike, sample_id: str) -> dict[str, Path | None]:
    """The channel files of ``sample_id`` under a data set root or an image folder.

    Looks in ``root`` itself and in its ``train/`` and ``test/`` subfolders, and
    returns ``{channel: path or None}`` for red, green, blue and yellow.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: not a folder")
    for subfolder in SAMPLE_SUBFOLDERS:
        folder = root / subfolder if subfolder else root
        found = {channel: channel_path(folder, sample_id, channel) for channel in CHANNELS}
        if any(found.values()):
            return found
    raise InputError(
        f"{root}: no image files for Id {sample_id} "
        f"(looked for {sample_id}_<red|green|blue|yellow>.png/.tif/.jpg here and in train/, test/)"
    )


def read_channel(path: str | os.PathLike) -> np.ndarray:
    """One grayscale channel as stored: a 2-D uint8 or uint16 array.

    Raises InputError naming the file when it is missing, cannot be decoded
    (truncated or corrupt), or holds colour or another pixel type.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    if path.suffix.lower() in (".tif", ".tiff"):
        array = _read_tiff(path)
    else:
        array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if array is None:
            raise InputError(f"{path}: cannot be decoded as an image (truncated or corrupt?)")
    if array.ndim == 3:
        raise InputError(
            f"{path}: has {array.shape[2]} colour channels; expected one grayscale channel"
        )
    if array.dtype not in (np.uint8, np.uint16):
        raise InputError(f"{path}: pixel type {array.dtype}; expected 8- or 16-bit integers")
    return array


def to_unit_float(channel: np.ndarray) -> np.ndarray:
    """uint8 or uint16 pixels as float32 in [0, 1] (full-range scaling)."""
    if channel.dtype == np.uint8:
        return channel.astype(np.float32) / 255.0
    if channel.dtype == np.uint16:
        return channel.astype(np.float32) / 65535.0
    raise InputError(f"pixel type {channel.dtype}; expected uint8 or uint16")


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile  # imported here: only TIFF users pay for it

    try:
        array = tifffile.imread(path)
    except Exception as error:  # tifffile raises many types for a bad file
        raise InputError(f"{path}: cannot be decoded as a TIFF image ({error})") from None
    return np.squeeze(array)
