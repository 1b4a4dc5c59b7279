"""The geometry of a synthetic field of cells, shared by all four channels.

An HPA image shows a dozen or so adherent cells, often touching. A
:class:`CellField` holds that layout once, so that the nucleus stain (blue),
the microtubule stain (red), the ER stain (yellow) and the protein (green)
all agree on where each cell, nucleus and nucleolus is, the way the four
stains of one real field do.

Lengths are given in pixels of a 512x512 image (the 2018 challenge's size) and
multiplied by ``scale = size / 512``, so a 128 px field shows the same cells at
a quarter of the resolution.
"""

from dataclasses import dataclass, field

import cv2
import numpy as np

REFERENCE_SIZE = 512


@dataclass
class Cell:
    """One cell: positions are ``(y, x)`` float pixel coordinates."""

    label: int  # value of this cell in CellField.labels (1-based)
    center: np.ndarray
    radius: float  # mean radius of the cell body
    angle: float  # direction of elongation, radians
    nucleus_center: np.ndarray
    nucleus_axes: tuple[float, float]  # semi-axes (along, across) the elongation
    mtoc: np.ndarray  # microtubule organizing center, beside the nucleus
    mitotic: bool = False
    bounding_box: tuple[int, int, int, int] = (0, 0, 0, 0)  # y0, y1, x0, x1 (clipped)


@dataclass
class CellField:
    """Masks and distance maps of one field; built by :func:`make_cell_field`."""

    size: int
    scale: float
    cells: list[Cell]
    labels: np.ndarray  # int32 (H, W): 0 background, k = cells[k - 1]
    nucleus: np.ndarray  # bool (H, W)
    nucleoli: np.ndarray  # bool (H, W)
    cytoplasm: np.ndarray  # bool (H, W): cell and not nucleus
    nucleus_depth: np.ndarray  # float32: distance to the nucleus border, inside it
    cell_depth: np.ndarray  # float32: distance to the cell border, inside the cell
    perinuclear_distance: np.ndarray  # float32: distance from the nearest nucleus
    contacts: np.ndarray  # bool: borders where two cells touch
    microtubules: np.ndarray = field(default=None)  # float32 filament image
    microtubule_tips: list = field(default_factory=list)  # (y, x) filament ends
    er_network: np.ndarray = field(default=None)  # float32 reticular network

    @property
    def cell_mask(self) -> np.ndarray:
        return self.labels > 0

    @property
    def mean_radius(self) -> float:
        return float(np.mean([cell.radius for cell in self.cells])) if self.cells else 1.0


def make_cell_field(
    rng: np.random.Generator,
    size: int,
    mitotic_cells: int = 0,
    magnification: float = 1.0,
    density: float = 1.0,
) -> CellField:
    """A random field of cells of ``size`` x ``size`` pixels.

    Cell count, size, elongation and crowding vary from field to field, as
    between HPA cell lines (compact A-431 colonies to spread-out U-2 OS cells).
    ``mitotic_cells`` cells are drawn in metaphase: round, with condensed
    chromatin in a plate and two spindle poles instead of one MTOC.
    ``magnification`` multiplies every length (larger, so fewer, cells) and
    ``density`` the crowding (see :mod:`hpa_keras.synthetic.styles`); at 1
    the field is exactly as without them.
    """
    scale = size / REFERENCE_SIZE * magnification
    cells = _place_cells(rng, size, scale, mitotic_cells, density)
    labels = np.zeros((size, size), np.int32)
    nucleus = np.zeros((size, size), bool)
    nearest = np.full((size, size), np.inf, np.float32)
    for cell in cells:
        _paint_cell_body(rng, cell, labels, nearest)
    for cell in cells:
        _paint_nucleus(rng, cell, labels, nucleus)
    nucleoli = _draw_nucleoli(rng, cells, size, scale) & nucleus

    cell_mask = labels > 0
    contacts = _cell_contacts(labels)
    interior = cell_mask & ~_cell_borders(labels)
    cell_depth = cv2.distanceTransform(interior.astype(np.uint8), cv2.DIST_L2, 3)
    nucleus_depth = cv2.distanceTransform(nucleus.astype(np.uint8), cv2.DIST_L2, 3)
    perinuclear = cv2.distanceTransform((~nucleus).astype(np.uint8), cv2.DIST_L2, 3)
    cell_field = CellField(
        size=size,
        scale=scale,
        cells=cells,
        labels=labels,
        nucleus=nucleus,
        nucleoli=nucleoli,
        cytoplasm=cell_mask & ~nucleus,
        nucleus_depth=nucleus_depth,
        cell_depth=cell_depth,
        perinuclear_distance=perinuclear,
        contacts=contacts,
    )
    cell_field.microtubules, cell_field.microtubule_tips = _draw_microtubules(rng, cell_field)
    cell_field.er_network = _draw_er_network(rng, cell_field)
    return cell_field


def smooth_noise(rng: np.random.Generator, size: int, feature_size: float) -> np.ndarray:
    """Zero-mean, unit-variance noise with blobs about ``feature_size`` pixels wide.

    Coarse Gaussian noise upsampled with bicubic interpolation: a cheap stand-in
    for Perlin noise, enough for chromatin, cytoplasm and ER textures.
    """
    step = max(feature_size, 1.0)
    coarse = int(np.ceil(size / step)) + 3
    low = rng.standard_normal((coarse, coarse)).astype(np.float32)
    full = int(round(coarse * step))
    noise = cv2.resize(low, (full, full), interpolation=cv2.INTER_CUBIC)
    offset = int(step)
    noise = noise[offset : offset + size, offset : offset + size]
    return (noise - noise.mean()) / (noise.std() + 1e-6)


def random_walks(
    rng: np.random.Generator,
    starts: np.ndarray,
    headings: np.ndarray,
    lengths: np.ndarray,
    step: float,
    wiggle: float,
) -> list[np.ndarray]:
    """Curved paths like filaments: one ``(k, 2)`` array of ``(y, x)`` points per start.

    All walks are drawn at once (one random matrix), which matters: a field
    has hundreds of filaments and per-path Python overhead dominated before.
    """
    starts = np.asarray(starts, np.float64).reshape(-1, 2)
    if len(starts) == 0:
        return []
    lengths = np.broadcast_to(np.asarray(lengths, np.float64), (len(starts),))
    steps = max(int(np.ceil(lengths.max() / step)), 1)
    angles = np.asarray(headings, np.float64)[:, None] + np.cumsum(
        rng.normal(0.0, wiggle, (len(starts), steps)), axis=1
    )
    moves = step * np.stack([np.sin(angles), np.cos(angles)], axis=-1)
    points = np.concatenate([starts[:, None], starts[:, None] + np.cumsum(moves, axis=1)], axis=1)
    counts = np.clip((lengths / step).astype(int) + 1, 2, steps + 1)
    return [path[:count] for path, count in zip(points, counts, strict=True)]


def clip_paths_to_cell(paths, labels: np.ndarray, label: int) -> list[np.ndarray]:
    """The leading part of each path that stays inside cell ``label``.

    One label lookup for all points of all paths, then each path's first
    point outside by ``minimum.reduceat``: per-path numpy calls were the
    generator's largest cost.
    """
    if not paths:
        return []
    lengths = np.array([len(path) for path in paths])
    points = np.concatenate(paths)
    rounded = np.rint(points).astype(np.intp)
    inside = ((rounded >= 0) & (rounded < labels.shape[0])).all(axis=1)
    inside[inside] = labels[rounded[inside, 0], rounded[inside, 1]] == label
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    position = np.arange(len(points)) - np.repeat(starts, lengths)
    first_outside = np.minimum.reduceat(np.where(inside, len(points), position), starts)
    return [path[:end] for path, end in zip(paths, first_outside, strict=True)]


def draw_paths(canvas: np.ndarray, paths, values, thickness: int = 1) -> None:
    """Draw ``(y, x)`` polylines on a float canvas; where they cross the brighter shows.

    Values are rounded to sixteenths and each level is drawn in one OpenCV
    call, dimmest first, so brighter paths overwrite dimmer ones.
    """
    kept = [index for index, path in enumerate(paths) if len(path) >= 2]
    if not kept:
        return
    levels = np.round(np.asarray(values, np.float64)[kept] * 16) / 16
    # (x, y) with 4 fractional bits, as OpenCV wants, converted in one operation.
    lengths = [len(paths[index]) for index in kept]
    fixed = np.rint(np.concatenate([paths[index] for index in kept])[:, ::-1] * 16)
    pieces = np.split(fixed.astype(np.int32), np.cumsum(lengths)[:-1])
    groups: dict[float, list[np.ndarray]] = {}
    for position in np.argsort(levels, kind="stable"):
        groups.setdefault(float(levels[position]), []).append(pieces[position])
    for level, group in groups.items():
        cv2.polylines(canvas, group, False, level, int(thickness), cv2.LINE_8, shift=4)


def draw_disks(canvas: np.ndarray, centers, radii, values) -> None:
    """Filled disks at ``(y, x)`` centers; where disks overlap the brighter one shows.

    Drawn dimmest first, so overwriting leaves the brighter value on top.
    """
    for index in np.argsort(np.asarray(values, dtype=float), kind="stable"):
        (y, x), radius, value = centers[index], radii[index], values[index]
        center = (int(round(x * 16)), int(round(y * 16)))  # 4 fractional bits
        cv2.circle(
            canvas, center, max(int(round(radius * 16)), 8), float(value), -1, cv2.LINE_8, shift=4
        )


def _place_cells(rng, size, scale, mitotic_cells, density=1.0):
    mean_radius = rng.uniform(42, 72) * scale
    crowding = rng.uniform(0.55, 1.25) * density
    target = max(2, int(round(crowding * size * size / (np.pi * mean_radius**2))))
    minimum_distance = 1.45 * mean_radius
    margin = 0.35 * mean_radius
    centers = []
    for _ in range(target * 40):
        if len(centers) == target:
            break
        candidate = rng.uniform(-margin, size + margin, 2)
        if not centers or np.hypot(*(np.asarray(centers) - candidate).T).min() >= minimum_distance:
            centers.append(candidate)
    mitotic = (
        set(rng.choice(len(centers), size=min(mitotic_cells, len(centers)), replace=False).tolist())
        if mitotic_cells
        else set()
    )
    # Mitotic cells must be seen: move them towards the middle of the field.
    cells = []
    for index, center in enumerate(centers):
        is_mitotic = index in mitotic
        if is_mitotic:
            center = np.clip(center, mean_radius, size - mean_radius)
        radius = mean_radius * rng.uniform(0.8, 1.2) * (0.8 if is_mitotic else 1.0)
        angle = rng.uniform(0, np.pi)
        nucleus_along = radius * rng.uniform(0.36, 0.5)
        nucleus_across = nucleus_along * rng.uniform(0.7, 0.98)
        if is_mitotic:  # the metaphase plate: a bar across the spindle axis
            nucleus_along, nucleus_across = radius * 0.45, radius * 0.12
        offset = 0.0 if is_mitotic else radius * rng.uniform(0.0, 0.18)
        offset_angle = rng.uniform(0, 2 * np.pi)
        nucleus_center = center + offset * np.array([np.sin(offset_angle), np.cos(offset_angle)])
        # The MTOC sits beside the nucleus, on the side with more cytoplasm.
        toward = center - nucleus_center
        direction = np.arctan2(toward[0], toward[1]) if offset > 1 else rng.uniform(0, 2 * np.pi)
        gap = nucleus_along * 1.05 + 3 * scale
        mtoc = nucleus_center + gap * np.array([np.sin(direction), np.cos(direction)])
        extent = int(np.ceil(radius * 1.7)) + 2
        bounding_box = (
            max(int(center[0]) - extent, 0),
            min(int(center[0]) + extent, size),
            max(int(center[1]) - extent, 0),
            min(int(center[1]) + extent, size),
        )
        cells.append(
            Cell(
                label=index + 1,
                center=center,
                radius=radius,
                angle=angle,
                nucleus_center=nucleus_center,
                nucleus_axes=(nucleus_along, nucleus_across),
                mtoc=mtoc,
                mitotic=is_mitotic,
                bounding_box=bounding_box,
            )
        )
    return cells


def _local_grid(box, center):
    y0, y1, x0, x1 = box
    dy = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(center[0])
    dx = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(center[1])
    return dy, dx


def _paint_cell_body(rng, cell, labels, nearest):
    """Assign pixels to the cell whose (irregular) outline is relatively closest."""
    y0, y1, x0, x1 = cell.bounding_box
    if y1 <= y0 or x1 <= x0:
        return
    dy, dx = _local_grid(cell.bounding_box, cell.center)
    theta = np.arctan2(dy, dx)
    elongation = 0.0 if cell.mitotic else rng.uniform(0.05, 0.5)
    outline = 1.0 + elongation * np.cos(2 * (theta - cell.angle))
    for harmonic in (3, 4, 5):
        outline += rng.uniform(0.0, 0.05) * np.cos(harmonic * theta + rng.uniform(0, 2 * np.pi))
    relative = np.hypot(dy, dx) / (cell.radius * outline)
    local_nearest = nearest[y0:y1, x0:x1]
    take = (relative < 1.0) & (relative < local_nearest)
    local_nearest[take] = relative[take]
    labels[y0:y1, x0:x1][take] = cell.label


def _paint_nucleus(rng, cell, labels, nucleus):
    extent = int(np.ceil(cell.nucleus_axes[0] * 1.15)) + 1
    size = labels.shape[0]
    y, x = int(cell.nucleus_center[0]), int(cell.nucleus_center[1])
    box = (max(y - extent, 0), min(y + extent, size), max(x - extent, 0), min(x + extent, size))
    y0, y1, x0, x1 = box
    if y1 <= y0 or x1 <= x0:
        return
    dy, dx = _local_grid(box, cell.nucleus_center)
    angle = cell.angle + (np.pi / 2 if cell.mitotic else 0.0)
    along = (dx * np.cos(angle) + dy * np.sin(angle)) / cell.nucleus_axes[0]
    across = (-dx * np.sin(angle) + dy * np.cos(angle)) / cell.nucleus_axes[1]
    theta = np.arctan2(across, along)
    roughness = 0.1 if cell.mitotic else 0.04
    outline = 1.0 + roughness * np.cos(3 * theta + rng.uniform(0, 2 * np.pi))
    inside = np.hypot(along, across) < outline
    nucleus[y0:y1, x0:x1] |= inside & (labels[y0:y1, x0:x1] == cell.label)


def _draw_nucleoli(rng, cells, size, scale):
    canvas = np.zeros((size, size), np.uint8)
    for cell in cells:
        if cell.mitotic:
            continue  # nucleoli disassemble in mitosis
        along, across = cell.nucleus_axes
        for _ in range(rng.integers(1, 5)):
            radius_fraction, angle = np.sqrt(rng.uniform(0, 0.35)), rng.uniform(0, 2 * np.pi)
            center = cell.nucleus_center + radius_fraction * np.array(
                [across * np.sin(angle), along * np.cos(angle)]
            )
            radius = across * rng.uniform(0.1, 0.2)
            for _lobe in range(rng.integers(1, 3)):
                lobe = center + rng.normal(0, radius * 0.5, 2)
                draw_disks(canvas, [lobe], [max(radius, 0.6)], [1])
    return canvas > 0


def _cell_borders(labels):
    """Pixels whose right or lower neighbour belongs to another cell or the background."""
    borders = np.zeros(labels.shape, bool)
    vertical = labels[1:, :] != labels[:-1, :]
    horizontal = labels[:, 1:] != labels[:, :-1]
    borders[:-1, :] |= vertical
    borders[1:, :] |= vertical
    borders[:, :-1] |= horizontal
    borders[:, 1:] |= horizontal
    return borders


def _cell_contacts(labels):
    """Borders between two different cells (not between a cell and the background)."""
    contacts = np.zeros(labels.shape, bool)
    up, down = labels[:-1, :], labels[1:, :]
    vertical = (up != down) & (up > 0) & (down > 0)
    left, right = labels[:, :-1], labels[:, 1:]
    horizontal = (left != right) & (left > 0) & (right > 0)
    contacts[:-1, :] |= vertical
    contacts[1:, :] |= vertical
    contacts[:, :-1] |= horizontal
    contacts[:, 1:] |= horizontal
    return contacts


def _draw_microtubules(rng, cell_field):
    """A mesh of filaments from around each nucleus and its MTOC out to the cell edge."""
    canvas = np.zeros((cell_field.size, cell_field.size), np.float32)
    tips = []
    scale = cell_field.scale
    for cell in cell_field.cells:
        if cell.mitotic:
            continue  # mitotic microtubules are the spindle, drawn by its pattern
        count = rng.integers(45, 80)
        # Half grow from the MTOC, half from around the nuclear envelope.
        around = rng.uniform(0, 2 * np.pi, count)
        ring = cell.nucleus_center + cell.nucleus_axes[0] * 1.1 * np.stack(
            [np.sin(around), np.cos(around)], axis=1
        )
        from_mtoc = rng.random(count) < 0.5
        starts = np.where(
            from_mtoc[:, None], cell.mtoc + rng.normal(0, 2 * scale, (count, 2)), ring
        )
        headings = np.where(
            from_mtoc, rng.uniform(0, 2 * np.pi, count), around + rng.normal(0, 0.6, count)
        )
        paths = random_walks(
            rng,
            starts,
            headings,
            cell.radius * rng.uniform(0.9, 2.0, count),
            step=max(3 * scale, 1.0),
            wiggle=0.16,
        )
        clipped = clip_paths_to_cell(paths, cell_field.labels, cell.label)
        draw_paths(canvas, clipped, rng.uniform(0.35, 1.0, count))
        tips.extend(path[-1] for path in clipped if len(path) >= 2)
    return canvas, tips


def _draw_er_network(rng, cell_field):
    """A reticular network: the zero-crossings of smooth noise, dense near the nucleus."""
    scale = cell_field.scale
    noise = smooth_noise(rng, cell_field.size, 9 * scale)
    ridges = np.exp(-((noise / 0.28) ** 2))
    fine = 0.75 + 0.25 * smooth_noise(rng, cell_field.size, 3 * scale)
    gradient = np.exp(-cell_field.perinuclear_distance / (0.35 * cell_field.mean_radius))
    envelope = np.exp(-((cell_field.perinuclear_distance / max(2.0 * scale, 0.8)) ** 2))
    network = (0.75 * ridges * fine + 0.25) * (0.15 + 0.85 * gradient)
    network = network * cell_field.cytoplasm + 0.6 * envelope * cell_field.cytoplasm
    return np.clip(network, 0, None).astype(np.float32)
