"""What the protein channel (green) looks like for each of the 28 classes.

Each function draws one localization pattern over a :class:`CellField` and
returns a float32 image with its brightest structures near 1. A sample's green
channel is the sum of its labels' patterns, as a protein found in two
compartments shows both. The patterns follow the HPA's own descriptions of
each class (proteinatlas.org, "Subcellular section", dictionary of locations):
nuclear patterns respect the nucleoli, cytoplasmic ones stay out of the
nucleus, vesicles cluster around the nucleus, and so on. They are simplified
drawings, not simulations, but each is visibly distinct in shape, size, count
or place, which is what a classifier of the real images has to learn.
"""

from collections.abc import Callable

import cv2
import numpy as np

from hpa_keras.synthetic.cell_field import (
    Cell,
    CellField,
    draw_disks,
    draw_paths,
    random_walks,
    smooth_noise,
)


def soften(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur, as an optical point-spread function; no-op for tiny sigma."""
    if sigma < 0.3:
        return image
    return cv2.GaussianBlur(image, (0, 0), sigmaX=float(sigma), borderType=cv2.BORDER_REFLECT)


def _normalized(image: np.ndarray) -> np.ndarray:
    peak = float(image.max())
    return (image / peak).astype(np.float32) if peak > 0 else image.astype(np.float32)


def _cell_pixels(cell_field: CellField, cell: Cell, region: np.ndarray) -> np.ndarray:
    """``(n, 2)`` float ``(y, x)`` coordinates of ``region`` pixels inside ``cell``."""
    y0, y1, x0, x1 = cell.bounding_box
    own = (cell_field.labels[y0:y1, x0:x1] == cell.label) & region[y0:y1, x0:x1]
    ys, xs = np.nonzero(own)
    return np.stack([ys + y0, xs + x0], axis=1).astype(np.float32)


def _sample_points(rng, pixels, count, weights=None):
    """``count`` points among ``pixels``, jittered within their pixel."""
    if len(pixels) == 0 or count <= 0:
        return np.zeros((0, 2), np.float32)
    probabilities = None
    if weights is not None:
        probabilities = weights / weights.sum()
    chosen = rng.choice(len(pixels), size=count, p=probabilities)
    return pixels[chosen] + rng.uniform(-0.5, 0.5, (count, 2))


def _perinuclear_weights(cell_field, pixels, length):
    """Weights that fall off with distance from the nucleus over ``length`` pixels."""
    rows, columns = pixels[:, 0].astype(int), pixels[:, 1].astype(int)
    return np.exp(-cell_field.perinuclear_distance[rows, columns] / max(length, 1e-3)) + 1e-6


def _dots(
    rng,
    cell_field,
    region,
    count_per_cell,
    radius,
    perinuclear=None,
    per_area=False,
):
    """Round dots in ``region`` of each cell.

    ``count_per_cell`` and ``radius`` are ``(low, high)`` ranges (radius in
    512-px pixels). ``perinuclear`` (a fraction of the cell radius) makes dots
    crowd around the nucleus; ``per_area`` scales the count with the region's
    area relative to an average cell, for patterns whose density is fixed.
    """
    canvas = np.zeros((cell_field.size, cell_field.size), np.float32)
    scale = cell_field.scale
    for cell in cell_field.cells:
        pixels = _cell_pixels(cell_field, cell, region)
        if len(pixels) == 0:
            continue
        count = rng.integers(count_per_cell[0], count_per_cell[1] + 1)
        if per_area:
            count = int(round(count * len(pixels) / (np.pi * (0.8 * cell.radius) ** 2)))
        weights = None
        if perinuclear is not None:
            weights = _perinuclear_weights(cell_field, pixels, perinuclear * cell.radius)
        centers = _sample_points(rng, pixels, count, weights)
        radii = rng.uniform(radius[0], radius[1], len(centers)) * scale
        draw_disks(canvas, centers, radii, rng.uniform(0.55, 1.0, len(centers)))
    return canvas


def _paths_in_cells(rng, cell_field, make_paths, thickness=1):
    """Draw the paths ``make_paths(cell)`` returns, masked to that cell's own pixels."""
    canvas = np.zeros((cell_field.size, cell_field.size), np.float32)
    for cell in cell_field.cells:
        y0, y1, x0, x1 = cell.bounding_box
        paths = make_paths(cell) if y1 > y0 and x1 > x0 else []
        if not len(paths):
            continue
        local = np.zeros((y1 - y0, x1 - x0), np.float32)
        offset = np.array([y0, x0], np.float32)
        draw_paths(
            local, [path - offset for path in paths], rng.uniform(0.5, 1.0, len(paths)), thickness
        )
        own = cell_field.labels[y0:y1, x0:x1] == cell.label
        window = canvas[y0:y1, x0:x1]
        np.maximum(window, local * own, out=window)
    return canvas


def _direction(angle):
    """The unit vector ``(y, x)`` at ``angle``."""
    return np.array([np.sin(angle), np.cos(angle)])


def _directions(angles):
    """Unit vectors ``(n, 2)`` in ``(y, x)`` at each of ``angles``."""
    return np.stack([np.sin(angles), np.cos(angles)], axis=1)


# ---------------------------------------------------------------- nucleus


def nucleoplasm(rng, cell_field):
    """Fills the nucleus evenly, sparing the nucleoli (which show as dark holes)."""
    texture = 0.8 + 0.2 * smooth_noise(rng, cell_field.size, 5 * cell_field.scale)
    spared = cv2.dilate(cell_field.nucleoli.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    image = texture * (cell_field.nucleus & ~spared)
    return soften(image.astype(np.float32), 0.8 * cell_field.scale)


def nuclear_membrane(rng, cell_field):
    """A thin, even rim at the nuclear envelope."""
    width = max(2.0 * cell_field.scale, 0.7)
    depth = cell_field.nucleus_depth
    ring = np.exp(-(((depth - width) / width) ** 2)) * cell_field.nucleus
    return soften(ring.astype(np.float32), 0.5 * cell_field.scale)


def nucleoli(rng, cell_field):
    """The nucleoli themselves: a few bright, irregular blobs inside each nucleus."""
    return soften(cell_field.nucleoli.astype(np.float32), 1.0 * cell_field.scale)


def nucleoli_fibrillar_center(rng, cell_field):
    """Several tiny bright dots clustered inside each nucleolus."""
    return soften(
        _dots(rng, cell_field, cell_field.nucleoli, (4, 10), (1.2, 2.0)),
        0.6 * cell_field.scale,
    )


def nuclear_speckles(rng, cell_field):
    """Many irregular, medium spots in the nucleoplasm, sparing the nucleoli."""
    region = cell_field.nucleus & ~cell_field.nucleoli
    spots = _dots(rng, cell_field, region, (15, 30), (2.5, 5.0))
    speckles = soften(spots, 1.5 * cell_field.scale)
    return _normalized(speckles + 0.1 * soften(region.astype(np.float32), 2 * cell_field.scale))


def nuclear_bodies(rng, cell_field):
    """One to six small, round, bright bodies per nucleus on a dark nucleoplasm."""
    region = cell_field.nucleus & ~cell_field.nucleoli
    return soften(_dots(rng, cell_field, region, (1, 6), (2.5, 4.0)), 0.8 * cell_field.scale)


# ------------------------------------------------------ secretory pathway


def endoplasmic_reticulum(rng, cell_field):
    """The ER network, as the yellow reference stain shows it."""
    return _normalized(cell_field.er_network)


def golgi_apparatus(rng, cell_field):
    """A compact perinuclear ribbon on one side of the nucleus, at the MTOC."""
    scale = cell_field.scale

    def ribbons(cell):
        if cell.mitotic:
            return []  # the Golgi fragments in mitosis
        outward = cell.mtoc - cell.nucleus_center
        count = rng.integers(5, 10)
        spread = rng.uniform(0.5, 1.1)
        angles = np.arctan2(outward[0], outward[1]) + rng.uniform(-spread, spread, count)
        distances = np.hypot(*outward) * rng.uniform(0.95, 1.25, count)
        starts = cell.nucleus_center + distances[:, None] * _directions(angles)
        return random_walks(
            rng,
            starts,
            angles + np.pi / 2,
            rng.uniform(6, 16, count) * scale,
            max(2 * scale, 0.7),
            0.3,
        )

    thickness = max(int(round(3 * scale)), 1)
    return soften(_paths_in_cells(rng, cell_field, ribbons, thickness), 1.2 * scale)


# ------------------------------------------------------------- vesicles


def peroxisomes(rng, cell_field):
    """Many tiny, uniform dots spread evenly through the cytoplasm."""
    dots = _dots(rng, cell_field, cell_field.cytoplasm, (40, 70), (1.2, 1.8), per_area=True)
    return soften(dots, 0.6 * cell_field.scale)


def endosomes(rng, cell_field):
    """Dots of mixed size in the cytoplasm, somewhat denser near the nucleus."""
    dots = _dots(rng, cell_field, cell_field.cytoplasm, (15, 35), (1.5, 4.0), perinuclear=0.6)
    return soften(dots, 0.8 * cell_field.scale)


def lysosomes(rng, cell_field):
    """Fewer, larger, bright dots packed tightly around the nucleus."""
    dots = _dots(rng, cell_field, cell_field.cytoplasm, (10, 25), (2.5, 4.5), perinuclear=0.2)
    return soften(dots, 0.8 * cell_field.scale)


def lipid_droplets(rng, cell_field):
    """Hollow rings: the protein coats the droplet's surface, not its core."""
    filled = _dots(rng, cell_field, cell_field.cytoplasm, (3, 12), (4.0, 7.0))
    cores = cv2.erode((filled > 0).astype(np.uint8), np.ones((3, 3), np.uint8))
    rings = filled * (1 - cores) if cell_field.scale >= 0.4 else filled
    return soften(rings.astype(np.float32), 0.5 * cell_field.scale)


def cytoplasmic_bodies(rng, cell_field):
    """One to four bright, medium-sized bodies per cell in the cytoplasm."""
    dots = _dots(rng, cell_field, cell_field.cytoplasm, (1, 4), (3.5, 6.0))
    return soften(dots, 1.0 * cell_field.scale)


def aggresome(rng, cell_field):
    """One large bright inclusion beside the nucleus, at the MTOC, in most cells."""
    canvas = np.zeros((cell_field.size, cell_field.size), np.float32)
    for cell in cell_field.cells:
        if rng.random() < 0.75:
            radius = cell.radius * rng.uniform(0.12, 0.2)
            center = cell.mtoc + rng.normal(0, 0.1 * radius, 2)
            draw_disks(canvas, [center], [radius], [rng.uniform(0.7, 1.0)])
    inside = canvas * (cell_field.labels > 0)
    return soften(inside, 1.5 * cell_field.scale)


def rods_and_rings(rng, cell_field):
    """A few rods (short thick bars) and small rings, in cytoplasm or nucleus."""
    canvas = np.zeros((cell_field.size, cell_field.size), np.float32)
    scale = cell_field.scale
    thickness = max(int(round(2.5 * scale)), 1)
    for cell in cell_field.cells:
        pixels = _cell_pixels(cell_field, cell, cell_field.labels > 0)
        for center in _sample_points(rng, pixels, rng.integers(1, 4)):
            if rng.random() < 0.6:
                half = rng.uniform(6, 12) * scale * _direction(rng.uniform(0, np.pi))
                draw_paths(canvas, [np.stack([center - half, center + half])], [1.0], thickness)
            else:
                ring = np.zeros_like(canvas)
                draw_disks(ring, [center], [5 * scale], [1.0])
                inner = cv2.erode((ring > 0).astype(np.uint8), np.ones((3, 3), np.uint8))
                np.maximum(canvas, ring * (1 - inner), out=canvas)
    return soften(canvas * (cell_field.labels > 0), 0.6 * scale)


def mitochondria(rng, cell_field):
    """Short worm-like tubules throughout the cytoplasm, densest near the nucleus."""
    scale = cell_field.scale

    def worms(cell):
        pixels = _cell_pixels(cell_field, cell, cell_field.cytoplasm)
        weights = _perinuclear_weights(cell_field, pixels, 0.7 * cell.radius)
        starts = _sample_points(rng, pixels, rng.integers(30, 60), weights)
        return random_walks(
            rng,
            starts,
            rng.uniform(0, 2 * np.pi, len(starts)),
            rng.uniform(5, 14, len(starts)) * scale,
            max(1.5 * scale, 0.6),
            0.35,
        )

    thickness = max(int(round(2 * scale)), 1)
    return soften(_paths_in_cells(rng, cell_field, worms, thickness), 0.7 * scale)


# --------------------------------------------------------- cytoskeleton


def intermediate_filaments(rng, cell_field):
    """Long, wavy filaments that wrap around the nucleus as a cage."""
    scale = cell_field.scale

    def cage(cell):
        pixels = _cell_pixels(cell_field, cell, cell_field.cytoplasm)
        weights = _perinuclear_weights(cell_field, pixels, 0.3 * cell.radius)
        starts = _sample_points(rng, pixels, rng.integers(10, 18), weights)
        radial = starts - cell.nucleus_center
        tangents = np.arctan2(radial[:, 0], radial[:, 1]) + np.pi / 2 * rng.choice(
            [-1, 1], len(starts)
        )
        return random_walks(
            rng,
            starts,
            tangents,
            cell.radius * rng.uniform(0.8, 1.6, len(starts)),
            max(3 * scale, 1.0),
            0.2,
        )

    thickness = max(int(round(2 * scale)), 1)
    return soften(_paths_in_cells(rng, cell_field, cage, thickness), 0.8 * scale)


def actin_filaments(rng, cell_field):
    """Straight, parallel stress fibres along the cell's axis, and a cortical rim."""
    scale = cell_field.scale

    def fibres(cell):
        angle = cell.angle + rng.normal(0, 0.1)
        along, across = _direction(angle), _direction(angle + np.pi / 2)
        offsets = rng.uniform(-0.9, 0.9, rng.integers(6, 14)) * cell.radius
        middles = cell.center + offsets[:, None] * across
        half = 1.7 * cell.radius * along
        return list(np.stack([middles - half, middles + half], axis=1))

    canvas = _paths_in_cells(rng, cell_field, fibres)
    cortex = np.exp(-((cell_field.cell_depth / max(2 * scale, 0.7)) ** 2)) * (cell_field.labels > 0)
    return soften(np.maximum(canvas, 0.5 * cortex).astype(np.float32), 0.6 * scale)


def focal_adhesion_sites(rng, cell_field):
    """Short dashes at the cell periphery, pointing outwards, where stress fibres end."""
    scale = cell_field.scale

    def dashes(cell):
        rim = (cell_field.cell_depth > 1) & (cell_field.cell_depth < 0.15 * cell.radius)
        starts = _sample_points(rng, _cell_pixels(cell_field, cell, rim), rng.integers(8, 20))
        outward = starts - cell.center
        inward = -_directions(np.arctan2(outward[:, 0], outward[:, 1]))
        lengths = rng.uniform(4, 9, len(starts))[:, None] * scale
        return list(np.stack([starts, starts + lengths * inward], axis=1))

    thickness = max(int(round(2 * scale)), 1)
    return soften(_paths_in_cells(rng, cell_field, dashes, thickness), 0.6 * scale)


def microtubules(rng, cell_field):
    """The microtubule network, as the red reference stain shows it."""
    return _normalized(soften(cell_field.microtubules, 0.6 * cell_field.scale))


def microtubule_ends(rng, cell_field):
    """Comet-like dots at the growing (plus) ends of microtubules, near the cell edge."""
    tips = cell_field.microtubule_tips
    canvas = np.zeros((cell_field.size, cell_field.size), np.float32)
    if tips:
        keep = rng.random(len(tips)) < 0.7
        chosen = [tip for tip, kept in zip(tips, keep, strict=True) if kept]
        radii = rng.uniform(1.5, 2.5, len(chosen)) * cell_field.scale
        draw_disks(canvas, chosen, radii, rng.uniform(0.6, 1.0, len(chosen)))
    return soften(canvas, 0.7 * cell_field.scale)


def cytokinetic_bridge(rng, cell_field):
    """A bright bar across the contact of two daughter cells, with a midbody dot."""
    canvas = np.zeros((cell_field.size, cell_field.size), np.float32)
    pairs = _neighbour_pairs(cell_field)
    if not pairs:
        return canvas
    scale = cell_field.scale
    for first, second in pairs[: rng.integers(1, 3)]:
        span = second.nucleus_center - first.nucleus_center
        start = first.nucleus_center + span * rng.uniform(0.3, 0.38)
        end = first.nucleus_center + span * rng.uniform(0.62, 0.7)
        draw_paths(canvas, [np.stack([start, end])], [0.8], max(int(round(3 * scale)), 1))
        draw_disks(canvas, [(start + end) / 2], [4 * scale], [1.0])
    return soften(canvas, 0.8 * scale)


def mitotic_spindle(rng, cell_field):
    """A bipolar spindle in each mitotic cell: fibres from two poles to the chromosomes."""
    canvas = np.zeros((cell_field.size, cell_field.size), np.float32)
    scale = cell_field.scale
    for cell in cell_field.cells:
        if not cell.mitotic:
            continue
        axis = _direction(cell.angle)
        plate = _direction(cell.angle + np.pi / 2)
        targets = cell.center + (np.linspace(-0.4, 0.4, 9) * cell.radius)[:, None] * plate
        for pole_side in (-1, 1):
            pole = cell.center + pole_side * 0.5 * cell.radius * axis
            fibres = [np.stack([pole, target]) for target in targets]
            draw_paths(
                canvas, fibres, rng.uniform(0.6, 1.0, len(fibres)), max(int(round(1.5 * scale)), 1)
            )
            draw_disks(canvas, [pole], [3 * scale], [1.0])
    return soften(canvas, 0.8 * scale)


def microtubule_organizing_center(rng, cell_field):
    """A bright focus beside the nucleus with a short radiating aster around it."""
    canvas = np.zeros((cell_field.size, cell_field.size), np.float32)
    scale = cell_field.scale
    for cell in cell_field.cells:
        ends = cell.mtoc + cell.radius * 0.25 * _directions(rng.uniform(0, 2 * np.pi, 10))
        draw_paths(canvas, [np.stack([cell.mtoc, end]) for end in ends], [0.35] * len(ends))
        draw_disks(canvas, [cell.mtoc], [3.5 * scale], [1.0])
    return soften(canvas, 1.2 * scale)


def centrosome(rng, cell_field):
    """One or two tight dots (the centriole pair) beside the nucleus, nothing else."""
    canvas = np.zeros((cell_field.size, cell_field.size), np.float32)
    scale = cell_field.scale
    for cell in cell_field.cells:
        centers = [cell.mtoc]
        if rng.random() < 0.6:
            centers.append(cell.mtoc + 4.5 * scale * _direction(rng.uniform(0, 2 * np.pi)))
        draw_disks(canvas, centers, [2.0 * scale] * len(centers), [1.0] * len(centers))
    return soften(canvas, 0.7 * scale)


# ---------------------------------------------------- membranes and fill


def plasma_membrane(rng, cell_field):
    """A thin rim at every cell's outline, free edges and contacts alike."""
    width = max(1.8 * cell_field.scale, 0.7)
    rim = np.exp(-((cell_field.cell_depth / width) ** 2)) * (cell_field.labels > 0)
    return soften(rim.astype(np.float32), 0.5 * cell_field.scale)


def cell_junctions(rng, cell_field):
    """Bright only where two cells touch; free cell edges stay dark."""
    contacts = cell_field.contacts.astype(np.float32)
    return _normalized(soften(contacts, 0.8 * cell_field.scale))


def cytosol(rng, cell_field):
    """A diffuse, even fill of the cytoplasm, excluded from the nucleus."""
    texture = 0.85 + 0.15 * smooth_noise(rng, cell_field.size, 12 * cell_field.scale)
    return soften((texture * cell_field.cytoplasm).astype(np.float32), 1.5 * cell_field.scale)


def _neighbour_pairs(cell_field):
    """Pairs of non-mitotic touching cells, closest first."""
    cells = [cell for cell in cell_field.cells if not cell.mitotic]
    pairs = []
    for index, first in enumerate(cells):
        for second in cells[index + 1 :]:
            distance = np.hypot(*(first.center - second.center))
            if distance < 2.2 * max(first.radius, second.radius):
                pairs.append((distance, first, second))
    pairs.sort(key=lambda item: item[0])
    return [(first, second) for _, first, second in pairs]


PatternFunction = Callable[[np.random.Generator, CellField], np.ndarray]

# Indexed by class: PATTERNS[k] draws class k of hpa_keras.classes.CLASS_NAMES.
PATTERNS: tuple[PatternFunction, ...] = (
    nucleoplasm,
    nuclear_membrane,
    nucleoli,
    nucleoli_fibrillar_center,
    nuclear_speckles,
    nuclear_bodies,
    endoplasmic_reticulum,
    golgi_apparatus,
    peroxisomes,
    endosomes,
    lysosomes,
    intermediate_filaments,
    actin_filaments,
    focal_adhesion_sites,
    microtubules,
    microtubule_ends,
    cytokinetic_bridge,
    mitotic_spindle,
    microtubule_organizing_center,
    centrosome,
    lipid_droplets,
    plasma_membrane,
    cell_junctions,
    mitochondria,
    aggresome,
    cytosol,
    cytoplasmic_bodies,
    rods_and_rings,
)
