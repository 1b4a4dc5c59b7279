"""Finding and reading the channel images of one sample.

The Kaggle release stores each sample as four 8-bit grayscale PNGs named
``<Id>_<red|green|blue|yellow>.png``; other HPA releases use TIFF or JPEG,
16-bit depth and fields of 2048x2048 pixels or more. :func:`read_channel`
returns the stored array unchanged (uint8 or uint16); :func:`read_sample`
checks and stacks a sample's four channels into one uint8 ``(H, W, 4)``
array at the requested size. Every image file the package opens (channels here, mask
pictures in :func:`hpa_keras.data.cells.read_mask`) is decoded by :func:`read_image_file`,
after the checks of its header (:func:`image_dimensions`).

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
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

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
    folder = sample_folder(root, sample_id)
    if folder is None:
        raise InputError(
            f"{root}: no image files for Id {sample_id} (looked for "
            f"{sample_id}_<red|green|blue|yellow>.png/.tif/.jpg here and in train/, test/)"
        )
    return {channel: channel_path(folder, sample_id, channel) for channel in CHANNELS}


def sample_folder(root: str | os.PathLike, sample_id: str) -> Path | None:
    """The folder with files of ``sample_id``: ``root`` itself or its ``train/`` or
    ``test/`` (a data set root, as make-demo-data and the Kaggle download lay it out);
    ``None`` when none has any."""
    root = Path(root)
    for subfolder in SAMPLE_SUBFOLDERS:
        folder = root / subfolder if subfolder else root
        if any(channel_path(folder, sample_id, channel) for channel in CHANNELS):
            return folder
    return None


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


def index_images(images) -> tuple[list[str], dict[str, dict[str, Path]]]:
    """``(ids, {Id: {channel: path}})`` of an image folder or a list of images.

    Args:
        images: a folder of ``<Id>_<channel>`` files (every Id in it, sorted),
            or a list of paths, each a channel file (``a/x_green.png``: the
            sample ``x``, with its other channels beside it), a sample's path
            without the channel suffix (``a/x``), or a folder; Ids in the
            order first given, each once.

    Raises InputError for a path that is none of these, an Id whose four
    channel files are not all there, or one Id in two folders.
    """
    if isinstance(images, (str, os.PathLike)):
        images = [images]
    index: dict[str, dict[str, Path]] = {}
    for item in images:
        path = Path(item)
        if path.is_dir():
            found = index_image_folder(path)
            if not found:
                raise InputError(f"{path}: no <Id>_<channel> image files")
            samples = {sample_id: found[sample_id] for sample_id in sorted(found)}
        else:
            match = _CHANNEL_FILE.match(path.name)
            sample_id = match["id"] if match and path.is_file() else path.name
            files = {channel: channel_path(path.parent, sample_id, channel) for channel in CHANNELS}
            if not any(files.values()):
                raise InputError(
                    f"{path}: neither a folder, an image file <Id>_<channel>.<ext>, nor an Id "
                    "with such files beside it"
                )
            samples = {sample_id: files}
        for sample_id, files in samples.items():
            missing = [channel for channel in CHANNELS if files.get(channel) is None]
            if missing:
                raise InputError(
                    f"{_missing_name(files, missing[0])}: missing channel file of Id {sample_id}"
                )
            if index.setdefault(sample_id, files) != files:
                folders = {str(index[sample_id]["red"].parent), str(files["red"].parent)}
                raise InputError(f"Id {sample_id} is in two folders: {' and '.join(folders)}")
    if not index:
        raise InputError("no images given")
    return list(index), index


def image_dimensions(path: str | os.PathLike) -> tuple[int, int]:
    """``(height, width)`` from the file header, without decoding the pixels.

    The checks every image file gets before it is decoded (:func:`read_image_file`):
    an existing, readable, non-empty file whose header an image format recognises,
    at most MAX_IMAGE_SIDE pixels a side.
    """
    height, width, _ = _image_header(Path(path))
    return height, width


def _image_header(path: Path, what: str = "an image") -> tuple[int, int, str]:
    """``(height, width, format)`` of an image file, from its header; InputError naming the
    file for anything that is not a readable image of a sane size."""
    # Pillow reads headers lazily (it comes with matplotlib); OpenCV decodes the whole file.

    check_input_file(path, what)
    try:
        with warnings.catch_warnings():  # Pillow's warnings (bomb size, odd EXIF) on stderr
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                (width, height), image_format = image.size, image.format or "?"
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except Image.DecompressionBombError as error:
        claimed = re.search(r"\((\d+) pixels\)", str(error))
        raise InputError(
            f"{path}: too large to be a real HPA image (its header claims "
            f"{claimed[1] if claimed else 'over 178 million'} pixels; limit {MAX_IMAGE_SIDE} "
            "a side)"
        ) from None
    except UnidentifiedImageError:
        raise InputError(
            f"{path}: cannot be read as an image (not PNG, TIFF or JPEG data)"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise InputError(f"{path}: cannot be read as an image ({error})") from None
    if max(height, width) > MAX_IMAGE_SIDE:
        raise InputError(
            f"{path}: {width}x{height} pixels is too large to be a real HPA image "
            f"(limit {MAX_IMAGE_SIDE} a side)"
        )
    if min(height, width) < 1:
        raise InputError(f"{path}: {width}x{height} pixels, an image with no pixels")
    return height, width, image_format


def check_input_file(path: Path, what: str = "an image") -> None:
    """An InputError naming ``path`` unless it is an existing, non-empty regular file
    (``what`` names the kind of file expected, for the message)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except OSError as error:
        raise InputError(f"{path}: cannot be read ({error.strerror or error})") from None
    if path.is_dir():
        raise InputError(f"{path}: a folder, not {what} file")
    if not path.is_file():
        raise InputError(f"{path}: not a regular file (expected {what} file)")
    if size == 0:
        raise InputError(f"{path}: an empty file (0 bytes); expected {what} file")


def read_image_file(path: str | os.PathLike, what: str = "an image") -> np.ndarray:
    """The one reader of image files (channels and mask pictures alike): the array as stored.

    Before any pixel is decoded, the file is checked as :func:`image_dimensions` does (it
    exists, is a file, is not empty, has an image header, is at most MAX_IMAGE_SIDE a side);
    a PNG or JPEG must reach its end marker (OpenCV decodes a truncated JPEG without
    failing, filling the rest with grey). The pixels are decoded by OpenCV, which reads
    PNG, JPEG and TIFF (uncompressed, LZW, deflate, PackBits; 8, 16 bit and float) as
    stored; tifffile would need the imagecodecs package for compressed TIFFs. OpenCV's own
    failures (None, or ``cv2.error`` for what it refuses) become an InputError naming the
    file, and its log lines about the file are kept off stderr. A single-channel
    ``(H, W, 1)`` array comes back as ``(H, W)``; what the pixels must be is the caller's
    to check (:func:`read_channel`, :func:`hpa_keras.data.cells.read_mask`); ``what``
    names the kind of file expected, for messages.
    """
    path = Path(path)
    height, width, image_format = _image_header(path, what)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InputError(f"{path}: cannot be read ({error.strerror or error})") from None
    end_marker = _END_MARKERS.get(image_format)
    if end_marker is not None and end_marker not in data[-_END_MARKER_REACH:]:
        raise InputError(
            f"{path}: cannot be decoded as an image: a truncated or damaged {image_format} "
            "(no end marker)"
        )
    array = _opencv_decode(data)
    if array is None:
        raise InputError(f"{path}: cannot be decoded as an image (truncated or corrupt?)")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.shape[:2] != (height, width):
        raise InputError(
            f"{path}: cannot be decoded as an image: its header says {width}x{height} pixels, "
            f"its data {array.shape[1]}x{array.shape[0]}"
        )
    return array


# The bytes a complete PNG (IEND chunk) or JPEG (end-of-image) ends with, and how far from
# the end of the file they may lie (writers may pad).
_END_MARKERS = {"PNG": b"IEND", "JPEG": b"\xff\xd9"}
_END_MARKER_REACH = 64


def _opencv_decode(data: bytes) -> np.ndarray | None:
    """``cv2.imdecode(data, IMREAD_UNCHANGED)``, None where it fails: OpenCV 5 returns None
    for some bad data and raises ``cv2.error`` for other (an empty buffer, an image over its
    pixel limit). Its warning lines are silenced meanwhile (the caller names the file)."""
    logging = cv2.utils.logging
    level = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_SILENT)
    try:
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        return None
    finally:
        logging.setLogLevel(level)


BIT_DEPTHS = (8, 16)
GRAYSCALE, DISPLAY_COLOUR = "grayscale", "rgb, stain in its display colour"
# Where each stain's signal lies in an HPA v18 colour file, as OpenCV orders colours (BGR).
DISPLAY_COMPONENTS = {"red": (2,), "green": (1,), "blue": (0,), "yellow": (2, 1)}
_COMPONENT_NAMES = ("B", "G", "R")
# A colour file is a display-colour stain if its other components stay this small: on the
# real v18 files they are at most 0.2 of the stain's own mean (JPEG colour bleeding).
_OFF_COMPONENT_SHARE = 0.35
_OFF_COMPONENT_SLACK = 0.5  # grey levels: near-black files are noise in every component


def read_sample(
    channel_paths: dict[str, Path | None],
    image_size: int | None = None,
    sixteen_bit_rule: str = "full-range",
    bit_depth: int = 8,
    details: dict | None = None,
) -> np.ndarray:
    """One sample's four channels as ``(H, W, 4)`` (red, green, blue, yellow).

    Each channel file is grayscale (8 or 16 bits) or, as in the HPA's v18
    release, an RGB image with the stain in its display colour (the red
    file's signal in R, yellow in R and G): the stain's component is read
    (for yellow the mean of R and G), detected from the file itself.

    Args:
        channel_paths: ``{channel: path}`` of the four stains.
        image_size: resize to this side; fields larger are shrunk with area
            interpolation (the average of the pixels each output pixel
            covers, which keeps small bright structures instead of aliasing
            them); smaller ones enlarged bilinearly (:func:`resize_square`).
        sixteen_bit_rule: how 16-bit files become 8-bit when ``bit_depth`` is 8.
        bit_depth: 8 (uint8 out, the default) or 16 (uint16 out; every file
            must then be 16-bit).
        details: a dict to fill with what was found: ``original_size``
            ``(height, width)``, ``format`` (grayscale or display colour) and
            ``bit_depth`` of the files.

    Every problem raises InputError naming the file: a missing channel, a file
    too large to be real, a corrupt file, a colour file whose colour is not
    its stain's, channels of different sizes or bit depths, an 8-bit file
    where 16 bits are kept.
    """
    if sixteen_bit_rule not in SIXTEEN_BIT_RULES:
        raise InputError(f"16-bit rule {sixteen_bit_rule!r}; expected one of {SIXTEEN_BIT_RULES}")
    if bit_depth not in BIT_DEPTHS:
        raise InputError(f"bit depth {bit_depth}; expected 8 or 16")
    planes, first, formats = [], None, set()
    for channel in CHANNELS:
        path = channel_paths.get(channel)
        if path is None:
            raise InputError(f"{_missing_name(channel_paths, channel)}: missing channel file")
        plane, kind = stain_plane(read_channel(path, allow_colour=True), channel, path)
        formats.add(kind)
        if first is None:
            first = (path, plane.shape, plane.dtype)
        elif plane.shape != first[1]:
            raise InputError(
                f"{path}: {plane.shape[1]}x{plane.shape[0]} pixels, but {first[0].name} is "
                f"{first[1][1]}x{first[1][0]}; a sample's channels must have the same size"
            )
        elif plane.dtype != first[2]:
            raise InputError(
                f"{path}: {_bits(plane)}-bit, but {first[0].name} is {_bits(first[2])}-bit; a "
                "sample's channels must have the same bit depth"
            )
        if bit_depth == 16 and plane.dtype != np.uint16:
            raise InputError(
                f"{path}: an 8-bit image, but --bit-depth 16 keeps 16 bits; convert 8-bit data "
                "with --bit-depth 8 (the default)"
            )
        planes.append(plane if bit_depth == 16 else to_uint8(plane, sixteen_bit_rule))
    image = np.stack(planes, axis=-1)
    if details is not None:
        details.update(
            original_size=tuple(int(side) for side in image.shape[:2]),
            format=" + ".join(sorted(formats)),
            bit_depth=_bits(first[2]),
        )
    if image_size is not None:
        image = resize_square(image, image_size)
    return image


def _bits(array_or_dtype) -> int:
    dtype = getattr(array_or_dtype, "dtype", array_or_dtype)
    return 16 if dtype == np.uint16 else 8


def stain_plane(array: np.ndarray, channel: str, path) -> tuple[np.ndarray, str]:
    """One channel file's pixels as a 2-D plane, and how the file held them.

    A grayscale array is returned as it is. A colour array (OpenCV's BGR
    order; an opaque alpha channel is ignored) must hold its stain in the
    stain's display colour, as the HPA's v18 files do: the stain's
    component is returned (yellow: the rounded mean of R and G). A colour
    file whose signal lies elsewhere (a green image named ``_red``, a
    grayscale image saved as RGB) is an InputError naming the file.
    """
    if array.ndim == 2:
        return array, GRAYSCALE
    if array.shape[2] == 4:
        if array.dtype == np.uint8 and int(array[..., 3].min()) < 255:
            raise InputError(f"{path}: has a transparent alpha channel; expected a stain image")
        array = array[..., :3]
    # Every 8th row and column: the means decide which component holds the stain, and a
    # 64th of a 2048 px field gives them to well under a grey level, at a 64th of the cost.
    means = array[::8, ::8].reshape(-1, 3).mean(axis=0, dtype=np.float64)
    stain = DISPLAY_COMPONENTS[channel]
    others = [index for index in range(3) if index not in stain]
    on, off = float(means[list(stain)].mean()), float(means[others].max())
    scale = 255.0 if array.dtype == np.uint8 else 65535.0
    balanced = len(stain) == 1 or means[list(stain)].min() >= 0.5 * means[list(stain)].max()
    if off > _OFF_COMPONENT_SHARE * on + _OFF_COMPONENT_SLACK * scale / 255 or not balanced:
        found = ", ".join(f"{_COMPONENT_NAMES[index]} {means[index]:.1f}" for index in (2, 1, 0))
        expected = "+".join(_COMPONENT_NAMES[index] for index in stain)
        hint = "; a grayscale image saved as colour" if np.ptp(means) < 0.05 * max(on, 1) else ""
        raise InputError(
            f"{path}: a colour image whose signal is not in the {channel} stain's display "
            f"colour ({expected}); component means {found}{hint}. Expected a grayscale image "
            "or an HPA v18 colour file of this stain"
        )
    if len(stain) == 1:
        return array[..., stain[0]], DISPLAY_COLOUR  # a view: read_sample's stack copies it
    wide = np.uint16 if array.dtype == np.uint8 else np.uint32  # room for the sum
    mixed = (array[..., stain[0]].astype(wide) + array[..., stain[1]] + 1) >> 1
    return mixed.astype(array.dtype), DISPLAY_COLOUR


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
    channel = _opencv_decode(data)
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


def read_channel(path: str | os.PathLike, allow_colour: bool = False) -> np.ndarray:
    """One channel file as stored: a 2-D uint8 or uint16 array (with ``allow_colour``, a
    colour file comes back as ``(H, W, 3 or 4)``, OpenCV's BGR order; see
    :func:`stain_plane`).

    Raises InputError naming the file for whatever :func:`read_image_file` refuses (a
    missing, empty, truncated, corrupt or oversized file), colour (unless allowed) or
    another pixel type.
    """
    array = read_image_file(path)
    if array.ndim == 3 and not allow_colour:
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
