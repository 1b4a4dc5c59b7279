"""Cell and nucleus masks: file names, reading with checks, writing, and cutting cell crops.

A mask is a label image the size of its field: 0 background, ``k > 0`` the
pixels of cell ``k``. A field's nuclei mask, where there is one, numbers
each nucleus as its cell. :func:`hpa_keras.cells.segment.segment_field`
writes ``<Id>_cells.png`` and ``<Id>_nuclei.png``; masks made elsewhere are
read too, under the names their tools give them (the HPA's
HPA-Cell-Segmentation output as kept in the 2021 challenge's notebooks,
``<Id>_predictedmask.png``; Cellpose's ``<Id>_cp_masks.png``), as PNG, TIFF
or a NumPy ``.npy``/``.npz`` array.

Rules a mask is held to (each broken rule is an :class:`InputError` naming
the file):

- one integer plane, of the field's height and width;
- at least one cell;
- an 8-bit file may not use the number 255: an 8-bit PNG holds numbers up
  to 255, so a mask of more cells saved as 8-bit wraps its numbers around
  (cell 256 becomes 0, 257 becomes 1) and the file cannot say so. A
  writer must switch to 16 bits at 255 cells; :func:`write_mask` does;
- every number of the nuclei mask is a cell of the cell mask.
"""

import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from hpa_keras.atomic import atomic_path
from hpa_keras.data.images import MAX_IMAGE_SIDE, check_input_file, read_image_file
from hpa_keras.errors import InputError

CELL_MASK_SUFFIXES = ("_cells", "_predictedmask", "_cell_mask", "_cellmask", "_cp_masks")
NUCLEUS_MASK_SUFFIXES = ("_nuclei", "_nuclei_mask", "_nucleimask")
MASK_EXTENSIONS = (".png", ".tif", ".tiff", ".npy", ".npz")
# The largest number an 8-bit mask may hold: with 255 cells or more, masks are 16-bit.
MAX_8BIT_CELLS = 254
MAX_CELLS = 65535
# A cell smaller than this share of its field's median cell is flagged "small": a
# fragment, debris or a cell cut by the field edge, whichever the masks came from.
SMALL_CELL_SHARE = 0.1


def find_mask_files(folder: str | os.PathLike, field_id: str) -> tuple[Path | None, Path | None]:
    """``(cell mask, nuclei mask)`` files of a field in ``folder``; None where absent.

    Two files that could both be the field's cell mask (``a_cells.png`` and
    ``a_predictedmask.png``) are an error: which one is meant?
    """
    folder = Path(folder)
    found = []
    for suffixes in (CELL_MASK_SUFFIXES, NUCLEUS_MASK_SUFFIXES):
        candidates = [
            folder / f"{field_id}{suffix}{extension}"
            for suffix in suffixes
            for extension in MASK_EXTENSIONS
            if (folder / f"{field_id}{suffix}{extension}").is_file()
        ]
        if len(candidates) > 1:
            raise InputError(
                f"{candidates[0]}: field {field_id} has several masks of one kind "
                f"({', '.join(path.name for path in candidates)}); keep one"
            )
        found.append(candidates[0] if candidates else None)
    return found[0], found[1]


def mask_ids(folder: str | os.PathLike) -> list[str]:
    """The field Ids that have a cell mask file in ``folder`` (a folder named like a mask,
    ``x_cells.png/``, is none)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: mask folder not found")
    ids = set()
    for path in folder.iterdir():
        if path.suffix.lower() not in MASK_EXTENSIONS or not path.is_file():
            continue
        stem = path.name[: -len(path.suffix)]
        for suffix in CELL_MASK_SUFFIXES:
            if stem.endswith(suffix) and len(stem) > len(suffix):
                ids.add(stem[: -len(suffix)])
    return sorted(ids)


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """One mask file as a 2-D label array (uint8, uint16 or int32 as stored).

    PNG and TIFF masks are read by :func:`hpa_keras.data.images.read_image_file`, the
    package's one image reader, with its checks (header first, size limit, empty,
    truncated or corrupt files); ``.npy``/``.npz`` arrays by :func:`_read_mask_array`,
    alike. Then the pixel type, the 8-bit rule of this module's docstring and that the
    file is a mask at all (not a microscope picture); the field-dependent checks are
    :func:`check_masks`'.
    """
    path = Path(path)
    if path.suffix.lower() in (".npy", ".npz"):
        array = _read_mask_array(path)
    else:
        array = read_image_file(path, "a mask")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise InputError(
            f"{path}: a mask is one plane of cell numbers; this has shape {array.shape} "
            "(a colour picture of the mask instead of the mask?)"
        )
    if not np.issubdtype(array.dtype, np.integer):
        raise InputError(f"{path}: pixel type {array.dtype}; a mask holds integer cell numbers")
    if array.dtype.kind == "i" and array.size and array.min() < 0:
        raise InputError(f"{path}: holds negative numbers; a mask holds 0 and cell numbers")
    if array.size and int(array.max()) > MAX_CELLS:
        raise InputError(f"{path}: cell numbers up to {int(array.max())}; at most {MAX_CELLS}")
    if array.dtype == np.uint8 and array.size and int(array.max()) == 255:
        raise InputError(
            f"{path}: an 8-bit mask that uses the number 255: a mask of more than 255 cells "
            "saved as 8-bit wraps its numbers around, so this one may have lost cells; save "
            "masks of 255 cells or more as 16-bit PNG (hpa-keras segment does)"
        )
    share = _neighbours_differing(array)
    if share is not None and share > MAX_DIFFERING_NEIGHBOURS:
        raise InputError(
            f"{path}: neighbouring pixels differ in {share:.0%} of places; a mask's cells are "
            "areas of one number each (a microscope image instead of a mask?)"
        )
    return array


# In a mask, side-by-side pixels differ only along cell borders (a few percent of them); in
# a microscope image, noise makes most of them differ.
MAX_DIFFERING_NEIGHBOURS = 0.5
_MIN_NEIGHBOUR_PAIRS = 2000  # fewer (a tiny test mask): too few to judge


def _neighbours_differing(array: np.ndarray) -> float | None:
    """The share of side-by-side pixel pairs, not both 0, that differ; at most about 256
    rows are looked at. None where there are too few pairs to judge."""
    rows = array[:: max(1, array.shape[0] // 256)]
    left, right = rows[:, :-1], rows[:, 1:]
    pairs = np.count_nonzero((left != 0) | (right != 0))
    if pairs < _MIN_NEIGHBOUR_PAIRS:
        return None
    return np.count_nonzero(left != right) / pairs


def _read_mask_array(path: Path) -> np.ndarray:
    """A ``.npy`` mask, or a ``.npz`` of exactly one array, read with the checks an image
    file gets: the file exists and is not empty, and the array's header (shape, type) is
    checked before its data is read: one plane of integers, at most MAX_IMAGE_SIDE a side,
    no Python objects (nothing is unpickled). Empty, truncated or corrupt files (which
    ``np.load`` lets through as EOFError or BadZipFile) are an InputError naming the file.
    """
    check_input_file(path, "a mask")
    try:
        if path.suffix.lower() == ".npz":
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
                if len(names) != 1:
                    raise InputError(
                        f"{path}: holds {len(names)} arrays"
                        f"{' (' + ', '.join(names) + ')' if names else ''}; a mask file holds one"
                    )
                with archive.open(names[0]) as stream:
                    return _read_npy(stream, path)
        with open(path, "rb") as stream:
            return _read_npy(stream, path)
    except InputError:
        raise
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        reason = str(error) or type(error).__name__
        raise InputError(f"{path}: cannot be read as a mask array ({reason})") from None


def _read_npy(stream, path: Path) -> np.ndarray:
    """One ``.npy`` array from an open stream, its header checked before the data is read."""
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(stream)
    else:
        raise InputError(f"{path}: .npy format version {version}; masks are version 1 or 2")
    if dtype.hasobject:
        raise InputError(f"{path}: holds Python objects, not cell numbers (not unpickled)")
    if len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] != 1):
        raise InputError(
            f"{path}: a mask is one plane of cell numbers; this has shape {tuple(shape)}"
        )
    if dtype.kind not in "iu":
        raise InputError(f"{path}: pixel type {dtype}; a mask holds integer cell numbers")
    if max(shape) > MAX_IMAGE_SIDE:
        raise InputError(
            f"{path}: {shape[1]}x{shape[0]} pixels is too large to be a real HPA mask "
            f"(limit {MAX_IMAGE_SIDE} a side)"
        )
    size = int(np.prod(shape)) * dtype.itemsize
    data = stream.read(size)
    if len(data) < size:
        raise InputError(f"{path}: a truncated array ({len(data)} of its {size} bytes of data)")
    array = np.frombuffer(data, dtype).reshape(shape, order="F" if fortran_order else "C")
    return array.copy()


def check_masks(
    cells: np.ndarray,
    nuclei: np.ndarray | None,
    field_shape: tuple[int, int],
    cell_path,
    nucleus_path=None,
) -> None:
    """The field-dependent rules: sizes, at least one cell, nuclei numbered as cells."""
    if tuple(cells.shape) != tuple(field_shape):
        raise InputError(
            f"{cell_path}: mask of {cells.shape[1]}x{cells.shape[0]} pixels, but its field is "
            f"{field_shape[1]}x{field_shape[0]}; masks must be made at the field's own size"
        )
    if not cells.any():
        raise InputError(f"{cell_path}: the mask has no cells (every pixel is 0)")
    if nuclei is None:
        return
    if tuple(nuclei.shape) != tuple(field_shape):
        raise InputError(
            f"{nucleus_path}: mask of {nuclei.shape[1]}x{nuclei.shape[0]} pixels, but its "
            f"field is {field_shape[1]}x{field_shape[0]}"
        )
    orphans = np.setdiff1d(np.unique(nuclei), np.unique(cells))
    orphans = orphans[orphans > 0]
    if orphans.size:
        shown = ", ".join(str(int(number)) for number in orphans[:5])
        raise InputError(
            f"{nucleus_path}: nucleus number{'s' if orphans.size > 1 else ''} {shown}"
            f"{' ...' if orphans.size > 5 else ''} not in the cell mask {Path(cell_path).name}; "
            "a nucleus carries its cell's number"
        )


def read_field_masks(
    folder: str | os.PathLike, field_id: str, field_shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray | None]:
    """A field's cell mask and (if present) nuclei mask, read and checked."""
    cell_path, nucleus_path = find_mask_files(folder, field_id)
    if cell_path is None:
        raise InputError(
            f"{Path(folder) / (field_id + '_cells.png')}: no cell mask for field {field_id} "
            f"(looked for {field_id}{{{','.join(CELL_MASK_SUFFIXES)}}}.png/.tif/.npy)"
        )
    cells = read_mask(cell_path)
    nuclei = read_mask(nucleus_path) if nucleus_path is not None else None
    check_masks(cells, nuclei, field_shape, cell_path, nucleus_path)
    return cells, nuclei


def mask_png_bytes(labels: np.ndarray) -> bytes:
    """A label image as PNG: 8-bit up to 254 cells, 16-bit from 255 on (see the module rules)."""
    top = int(labels.max()) if labels.size else 0
    if top > MAX_CELLS:
        raise ValueError(f"{top} cells; a 16-bit mask holds at most {MAX_CELLS}")
    dtype = np.uint8 if top <= MAX_8BIT_CELLS else np.uint16
    ok, encoded = cv2.imencode(".png", labels.astype(dtype))
    if not ok:
        raise ValueError("PNG encoding failed")
    return encoded.tobytes()


def write_mask(path: str | os.PathLike, labels: np.ndarray) -> None:
    """Write a label image atomically as PNG (8 or 16 bits by its largest number)."""
    data = mask_png_bytes(labels)
    with atomic_path(path, suffix=".png") as temporary:
        Path(temporary).write_bytes(data)


# ------------------------------------------------------------------ cells of a field


@dataclass(frozen=True)
class CellGeometry:
    """Where one cell of a field lies, in the field's pixels."""

    number: int
    box: tuple[int, int, int, int]  # y0, x0, y1, x1 (end exclusive)
    area: int
    edge: bool  # touches the field's border: part of the cell is outside the picture
    small: bool  # under SMALL_CELL_SHARE of the field's median cell area


def cell_geometry(cells: np.ndarray) -> list[CellGeometry]:
    """Box, area and flags of every cell of a mask, in cell-number order.

    One pass of OpenCV's connected components would split a cell drawn in
    two pieces; boxes come from the numbers instead, via ``np.unique`` on
    the nonzero pixels' coordinates, so a cell is whatever its number covers.
    """
    numbers = cells.ravel()
    foreground = np.flatnonzero(numbers)
    values = numbers[foreground]
    order = np.argsort(values, kind="stable")
    values, foreground = values[order], foreground[order]
    unique, starts, areas = np.unique(values, return_index=True, return_counts=True)
    rows, columns = np.divmod(foreground, cells.shape[1])
    median = float(np.median(areas)) if areas.size else 0.0
    height, width = cells.shape
    geometry = []
    for number, start, area in zip(unique, starts, areas, strict=True):
        cell_rows = rows[start : start + area]
        cell_columns = columns[start : start + area]
        y0, y1 = int(cell_rows.min()), int(cell_rows.max()) + 1
        x0, x1 = int(cell_columns.min()), int(cell_columns.max()) + 1
        geometry.append(
            CellGeometry(
                number=int(number),
                box=(y0, x0, y1, x1),
                area=int(area),
                edge=y0 == 0 or x0 == 0 or y1 == height or x1 == width,
                small=bool(area < SMALL_CELL_SHARE * median),
            )
        )
    return geometry


def crop_window(box, margin: float) -> tuple[int, int, int]:
    """``(top, left, side)`` of the square window centred on ``box``: its longer side plus
    ``margin`` of it on each side. The window may reach beyond the field."""
    y0, x0, y1, x1 = box
    side = int(np.ceil(max(y1 - y0, x1 - x0) * (1 + 2 * margin)))
    side = max(side, 1)
    top = (y0 + y1 - side) // 2
    left = (x0 + x1 - side) // 2
    return top, left, side


def cut_window(image: np.ndarray, top: int, left: int, side: int) -> np.ndarray:
    """``image[top:top+side, left:left+side]``, zero beyond the field's border."""
    height, width = image.shape[:2]
    window = np.zeros((side, side, *image.shape[2:]), image.dtype)
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + side, height), min(left + side, width)
    if y1 > y0 and x1 > x0:
        window[y0 - top : y1 - top, x0 - left : x1 - left] = image[y0:y1, x0:x1]
    return window


def resize_window(window: np.ndarray, size: int, nearest: bool = False) -> np.ndarray:
    """A square window to ``size`` x ``size``: area interpolation when shrinking (no
    aliasing), linear when enlarging, nearest for masks."""
    if window.shape[0] == size:
        return window
    if nearest:
        interpolation = cv2.INTER_NEAREST
    else:
        interpolation = cv2.INTER_AREA if window.shape[0] > size else cv2.INTER_LINEAR
    resized = cv2.resize(window, (size, size), interpolation=interpolation)
    return resized.reshape(size, size, *window.shape[2:])
