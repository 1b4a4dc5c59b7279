"""Finding and reading the channel images of one sample.

The Kaggle release stores each sample as four 8-bit grayscale PNGs named
``<Id>_<red|green|blue|yellow>.png``; other HPA releases use TIFF or JPEG,
16-bit depth and fields of 2048x2048 pixels or more. :func:`read_channel`
returns the stored array unchanged (uint8 or uint16); :func:`read_sample`
checks and stacks a sample's four channels into one uint8 ``(H, W, 4)``
array at the requested size.

16-bit to 8-bit rule (``sixteen_bit_rule``):

- ``"full-range"`` (default): ``round(value * 255 / 65535)``, the same linear
  map for every image, so intensities stay comparable between images, as the
  Kaggle 8-bit PNGs are.
- ``"per-image"``: each channel divided by its own 99.99th percentile, then
  scaled to 255. For 12-bit data stored in 16-bit files (values up to 4095),
  which the full-range rule would leave nearly black; it loses absolute
  intensity between images.
"""

import os
import re
from pathlib import Path

import cv2
import numpy as np

from hpa_keras.classes import CHANNELS
from hpa_keras.errors import InputError

IMAGE_EXTENSIONS = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
SAMPLE_SUBFOLDERS = ("", "train", "test")  # where a data set root keeps its images
SIXTEEN_BIT_RULES = ("full-range", "per-image")
# The largest HPA fields are a few thousand pixels a side; anything far beyond
# is a mistake (a stitched slide, a wrong file) and would exhaust memory.
MAX_IMAGE_SIDE = 16384
_CHANNEL_FILE = re.compile(
    r"^(?P<id>.+)_(?P<channel>red|green|blue|yellow)(?P<extension>\.(?:png|tiff?|jpe?g))$",
    re.IGNORECASE,
)


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


def index_image_folder(folder: str | os.PathLike) -> dict[str, dict[str, Path]]:
    """``{Id: {channel: path}}`` for every ``<Id>_<channel>.<ext>`` file in ``folder``.

    One directory listing instead of a dozen ``stat`` calls per sample. Other
    files (notes, hidden files) are ignored. Two files for the same channel
    of an Id (``a_red.png`` and ``a_red.tif``) are an error: which is meant?
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder")
    index: dict[str, dict[str, Path]] = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            match = _CHANNEL_FILE.match(entry.name)
            if not match or not entry.is_file():
                continue
            channels = index.setdefault(match["id"], {})
            channel = match["channel"].lower()
            if channel in channels:
                raise InputError(
                    f"{folder / entry.name}: a second {channel} file for Id {match['id']} "
                    f"(also {channels[channel].name})"
                )
            channels[channel] = folder / entry.name
    return index


def image_dimensions(path: str | os.PathLike) -> tuple[int, int]:
    """``(height, width)`` from the file header, without decoding the pixels."""
    from PIL import Image  # Pillow reads headers lazily; it comes with matplotlib

    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, SyntaxError, ValueError) as error:
        raise InputError(f"{path}: cannot be read as an image ({error})") from None
    except Image.DecompressionBombError:
        raise InputError(
            f"{path}: too large to be a real HPA image (Pillow's decompression-bomb limit)"
        ) from None
    return height, width


def read_sample(
    channel_paths: dict[str, Path | None],
    image_size: int | None = None,
    sixteen_bit_rule: str = "full-range",
) -> np.ndarray:
    """One sample's four channels as uint8 ``(H, W, 4)`` (red, green, blue, yellow).

    Every problem raises InputError naming the file: a missing channel, a file
    too large to be real, a corrupt or colour image, channels of different
    sizes. Fields larger than ``image_size`` are shrunk with area
    interpolation (the average of the pixels each output pixel covers, which
    keeps small bright structures instead of aliasing them); smaller ones are
    enlarged bilinearly.
    """
    if sixteen_bit_rule not in SIXTEEN_BIT_RULES:
        raise InputError(f"16-bit rule {sixteen_bit_rule!r}; expected one of {SIXTEEN_BIT_RULES}")
    planes, first = [], None
    for channel in CHANNELS:
        path = channel_paths.get(channel)
        if path is None:
            raise InputError(f"{_missing_name(channel_paths, channel)}: missing channel file")
        height, width = image_dimensions(path)
        if max(height, width) > MAX_IMAGE_SIDE:
            raise InputError(
                f"{path}: {width}x{height} pixels is too large to be a real HPA image "
                f"(limit {MAX_IMAGE_SIDE} a side)"
            )
        plane = read_channel(path)
        if first is None:
            first = (path, plane.shape)
        elif plane.shape != first[1]:
            raise InputError(
                f"{path}: {plane.shape[1]}x{plane.shape[0]} pixels, but {first[0].name} is "
                f"{first[1][1]}x{first[1][0]}; a sample's channels must have the same size"
            )
        planes.append(to_uint8(plane, sixteen_bit_rule))
    image = np.stack(planes, axis=-1)
    if image_size is not None:
        image = resize_square(image, image_size)
    return image


def resize_square(image: np.ndarray, image_size: int) -> np.ndarray:
    """Resize ``(H, W, C)`` to ``(image_size, image_size, C)``: area when shrinking."""
    if image.shape[:2] == (image_size, image_size):
        return image
    shrinking = image.shape[0] > image_size or image.shape[1] > image_size
    return cv2.resize(
        image,
        (image_size, image_size),
        interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR,
    )


PNG_COMPRESSION = 3  # zlib level: a good size/speed balance for 8- and 16-bit PNGs


def encode_png(channel: np.ndarray) -> bytes:
    """Deterministic PNG bytes of one grayscale channel (8- or 16-bit)."""
    if channel.ndim != 2:
        raise ValueError(f"expected one (H, W) channel, got shape {channel.shape}")
    ok, encoded = cv2.imencode(".png", channel, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    if not ok:
        raise RuntimeError("OpenCV failed to encode a PNG")
    return encoded.tobytes()


def decode_png(data: bytes) -> np.ndarray:
    """The inverse of :func:`encode_png`: a 2-D uint8 or uint16 array."""
    channel = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if channel is None or channel.ndim != 2:
        raise ValueError("not a decodable grayscale PNG")
    return channel


def to_uint8(channel: np.ndarray, sixteen_bit_rule: str = "full-range") -> np.ndarray:
    """8-bit pixels unchanged; 16-bit by the rule in this module's docstring."""
    if channel.dtype == np.uint8:
        return channel
    values = channel.astype(np.float32)
    if sixteen_bit_rule == "per-image":
        top = float(np.percentile(values, 99.99))
        scaled = values * (255.0 / top) if top > 0 else values * 0
    else:
        scaled = values * (255.0 / 65535.0)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _missing_name(channel_paths, channel):
    """The file a missing channel should have had, by analogy with a present one."""
    for present in channel_paths.values():
        if present is not None:
            match = _CHANNEL_FILE.match(present.name)
            if match:
                return present.with_name(f"{match['id']}_{channel}{match['extension']}")
    return f"<Id>_{channel}.png"


def read_channel(path: str | os.PathLike) -> np.ndarray:
    """One grayscale channel as stored: a 2-D uint8 or uint16 array.

    Raises InputError naming the file when it is missing, cannot be decoded
    (truncated or corrupt), or holds colour or another pixel type.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    # OpenCV reads PNG, JPEG and TIFF (uncompressed, LZW, deflate, PackBits; 8 and 16 bit)
    # as stored; tifffile would need the imagecodecs package for compressed TIFFs.
    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise InputError(f"{path}: cannot be decoded as an image (truncated or corrupt?)")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
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
