"""Pictures of samples for people: the colour composite and a channel panel.

HPA's own convention: the protein of interest in green over the nucleus in
blue, microtubules in red and the ER in yellow. Each channel is shown with an
automatic contrast stretch (to its 99.9th percentile), because raw HPA green
channels are often too dim to see and 16-bit files would look black.
"""

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
from skimage.segmentation import find_boundaries

from hpa_keras.classes import CHANNEL_STAINS, CHANNELS, CLASS_NAMES, get_scheme
from hpa_keras.data.cells import cell_geometry
from hpa_keras.data.images import find_sample_files, read_channel, stain_plane, to_unit_float
from hpa_keras.data.labels import read_labels
from hpa_keras.errors import InputError
from hpa_keras.reports.figures import plt, save_figure

# RGB colour of each stain in the composite and the single-channel panels.
STAIN_COLORS: dict[str, tuple[float, float, float]] = {
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.35, 1.0),
    "yellow": (1.0, 0.85, 0.0),
}
# Protein first: the reference stains are dimmed so the green stays readable.
COMPOSITE_WEIGHTS: dict[str, float] = {"red": 0.6, "green": 1.0, "blue": 0.8, "yellow": 0.4}


def stretch(channel: np.ndarray, percentile: float = 99.9) -> np.ndarray:
    """A channel (uint8, uint16 or float) as float32 in [0, 1], contrast-stretched."""
    values = to_unit_float(channel) if channel.dtype.kind == "u" else channel.astype(np.float32)
    top = float(np.percentile(values, percentile))
    if top <= 0:
        return np.zeros_like(values, dtype=np.float32)
    return np.clip(values / top, 0.0, 1.0)


def colorize(channel: np.ndarray, name: str) -> np.ndarray:
    """One stretched channel painted in its stain colour: ``(H, W, 3)`` float32."""
    return stretch(channel)[..., None] * np.asarray(STAIN_COLORS[name], np.float32)


def composite(channels: Mapping[str, np.ndarray | None]) -> np.ndarray:
    """The four-stain colour image, ``(H, W, 3)`` float32 in [0, 1]; missing channels skipped."""
    present = {name: array for name, array in channels.items() if array is not None}
    if not present:
        raise ValueError("no channel to compose")
    shape = next(iter(present.values())).shape
    image = np.zeros((*shape, 3), np.float32)
    for name, array in present.items():
        image += COMPOSITE_WEIGHTS[name] * colorize(array, name)
    return np.clip(image, 0.0, 1.0)


def _draw_cells(axis, picture: np.ndarray, cells: np.ndarray, cell_classes=None) -> None:
    """The composite with white cell outlines and each cell's number at its deepest point;
    with ``cell_classes`` (``{number: [classes]}``) the classes under the number."""
    picture_side = 900
    height, width = picture.shape[:2]
    factor = picture_side / max(height, width)  # small fields enlarged: outlines stay thin
    if factor != 1:
        import cv2  # lazy: imports TensorFlow

        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        smooth = cv2.INTER_AREA if factor < 1 else cv2.INTER_NEAREST
        picture = cv2.resize(picture, size, interpolation=smooth)
    axis.imshow(mask_outlines(picture, cells))
    count = int(np.unique(cells[cells > 0]).size)
    font = float(np.clip(160 / np.sqrt(max(count, 1)), 5, 11))
    scale_y, scale_x = picture.shape[0] / height, picture.shape[1] / width
    for number, (row, column) in cell_centres(cells).items():
        text = str(number)
        if cell_classes is not None:
            text += "\n" + (",".join(map(str, cell_classes.get(number, []))) or "-")
        axis.text(
            column * scale_x,
            row * scale_y,
            text,
            color="white",
            fontsize=font,
            ha="center",
            va="center",
            bbox={"facecolor": "black", "alpha": 0.45, "pad": 0.8, "linewidth": 0},
        )
    axis.set_title(f"composite, {count} cells")


def mask_outlines(
    image: np.ndarray, labels: np.ndarray, colour=(1.0, 1.0, 1.0), width: int | None = None
) -> np.ndarray:
    """``image`` (``(H, W, 3)`` float) with the borders of each cell of ``labels`` drawn in
    ``colour``. A mask of another size is resized to the image's (nearest neighbour), so a
    2048 px field's mask outlines its 512 px picture. Borders are ``width`` pixels (default:
    one per 400 pixels of picture, at least 1)."""

    height, width_pixels = image.shape[:2]
    if labels.shape != (height, width_pixels):
        labels = cv2.resize(
            labels.astype(np.int32), (width_pixels, height), interpolation=cv2.INTER_NEAREST
        )
    border = find_boundaries(labels, mode="inner")
    width = width or max(1, round(max(height, width_pixels) / 400))
    if width > 1:
        kernel = np.ones((width, width), np.uint8)
        border = cv2.dilate(border.astype(np.uint8), kernel) > 0
    outlined = image.copy()
    outlined[border] = colour
    return outlined


def cell_centres(labels: np.ndarray) -> dict[int, tuple[float, float]]:
    """``{cell number: (row, column)}``: the point of each cell deepest inside it, where its
    number can be written without landing on a neighbour (a centroid can fall outside a
    curved cell)."""

    centres = {}
    for cell in cell_geometry(labels):  # boxes from one pass, then each cell in its box
        y0, x0, y1, x1 = cell.box
        inside = np.pad((labels[y0:y1, x0:x1] == cell.number).astype(np.uint8), 1)
        depth = cv2.distanceTransform(inside, cv2.DIST_L2, 3)
        row, column = np.unravel_index(int(np.argmax(depth)), depth.shape)
        centres[cell.number] = (float(y0 + row - 1), float(x0 + column - 1))
    return centres


def sample_figure(
    channels: Mapping[str, np.ndarray | None],
    title: str,
    labels: Sequence[int] | None = None,
    class_names: Sequence[str] = CLASS_NAMES,
    cells: np.ndarray | None = None,
    cell_classes: dict | None = None,
):
    """A figure: the composite, then each channel in its colour (or marked missing).

    With ``cells`` (the field's cell mask), the composite is drawn larger with
    each cell's outline and number, the number a cell has in the mask and in
    ``cells.csv`` or cell records.
    """
    if cells is None:
        figure, axes = plt.subplots(1, 1 + len(CHANNELS), figsize=(3.2 * (1 + len(CHANNELS)), 3.9))
        axes[0].imshow(composite(channels))
        axes[0].set_title("composite")
    else:
        figure = plt.figure(figsize=(3.2 * 4, 3.2 * 2 + 1.2))
        grid = figure.add_gridspec(2, 4)
        axes = [figure.add_subplot(grid[:, :2])] + [
            figure.add_subplot(grid[row, column]) for row in range(2) for column in (2, 3)
        ]
        _draw_cells(axes[0], composite(channels), cells, cell_classes)
    for axis, name in zip(axes[1:], CHANNELS, strict=True):
        array = channels.get(name)
        if array is None:
            axis.set_facecolor("0.85")
            axis.text(0.5, 0.5, "missing", ha="center", va="center", transform=axis.transAxes)
        else:
            axis.imshow(colorize(array, name))
        axis.set_title(f"{name}: {CHANNEL_STAINS[name]}", fontsize=9)
    for axis in axes:
        axis.set_xticks([])
        axis.set_yticks([])
    if labels is not None:
        names = ", ".join(f"{index} {class_names[index]}" for index in labels) or "no labels"
        title = f"{title}\n{names}"
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def gallery_figure(images: Sequence[np.ndarray], titles: Sequence[str], columns: int = 7):
    """A grid of composites of ``(H, W, 4)`` float images (channels red, green, blue, yellow)."""
    rows = int(np.ceil(len(images) / columns))
    title_lines = max((title.count("\n") + 1 for title in titles), default=1)
    row_height = 2.2 + 0.16 * title_lines  # room for the longest title above each image
    figure, axes = plt.subplots(
        rows, columns, figsize=(2.3 * columns, row_height * rows), squeeze=False
    )
    for axis in axes.ravel():
        axis.set_axis_off()
    for axis, image, title in zip(axes.ravel(), images, titles, strict=False):
        axis.imshow(composite({name: image[..., index] for index, name in enumerate(CHANNELS)}))
        axis.set_title(title, fontsize=8)
    figure.tight_layout()
    return figure


def write_sample_figure(
    root: str | os.PathLike,
    sample_id: str,
    out: str | os.PathLike,
    labels_csv: str | os.PathLike | None = None,
    masks: str | os.PathLike | None = None,
    cell_labels: str | os.PathLike | None = None,
) -> dict:
    """Read one sample's channels under ``root`` and save its panel figure to ``out``.

    Works with the Kaggle layout (``root/train.csv``, ``root/train/...``), a
    bare image folder, 8- or 16-bit, PNG, TIFF or JPEG, grayscale or HPA v18
    colour files. Missing channels are
    drawn as "missing" (the real files in shared/ have one channel per Id).
    Labels come from ``labels_csv``, else from ``train.csv`` or
    ``test_labels.csv`` in ``root`` when they list the Id. With ``masks`` (a
    folder of cell masks) the field's cells are outlined and numbered; with
    ``cell_labels`` too (an ``ID,cell,Label`` file: a cells.csv or predict's
    per-cell table) each cell's classes are written under its number.
    Returns what was found.
    """
    files = find_sample_files(root, sample_id)
    channels = {
        name: stain_plane(read_channel(path, allow_colour=True), name, path)[0] if path else None
        for name, path in files.items()
    }
    shapes = {array.shape for array in channels.values() if array is not None}
    if len(shapes) > 1:
        raise InputError(f"{root}: channels of Id {sample_id} differ in size: {sorted(shapes)}")
    candidates = (
        [Path(labels_csv)]
        if labels_csv
        else [Path(root) / "train.csv", Path(root) / "test_labels.csv"]
    )
    labels, scheme = None, "hpa2018"
    for candidate in candidates:
        if candidate.is_file():
            table = read_labels(candidate)
            try:
                labels, scheme = table.labels_of(sample_id), table.scheme
                break
            except KeyError:
                continue
    cells, cell_classes = None, None
    if masks is not None:
        from hpa_keras.data.cells import read_field_masks  # lazy: imports TensorFlow

        cells, _ = read_field_masks(masks, sample_id, next(iter(shapes)))
    if cell_labels is not None:
        if cells is None:
            raise InputError("cell labels are drawn on cells: give the masks too")
        # lazy: imports TensorFlow
        from hpa_keras.data.cell_records import cell_label_scheme, read_cell_labels

        cell_scheme = cell_label_scheme(cell_labels)
        # truth=False: a predicted table (predict's _cells.csv) is drawn too
        cell_classes = read_cell_labels(cell_labels, cell_scheme, truth=False).get(sample_id, {})
        scheme = cell_scheme if labels is None else scheme
    names = get_scheme(scheme).class_names
    figure = sample_figure(channels, sample_id, labels, names, cells=cells,
                           cell_classes=cell_classes)  # fmt: skip
    if cell_classes:
        shown = sorted({label for classes in cell_classes.values() for label in classes})
        legend = "; ".join(f"{label} {names[label]}" for label in shown)
        figure.text(0.02, 0.01, f"cell classes: {legend}", fontsize=8, wrap=True)
    save_figure(figure, out)
    found = {"files": files, "labels": labels, "scheme": scheme}
    found["num_cells"] = None if cells is None else int(np.unique(cells[cells > 0]).size)
    return found
