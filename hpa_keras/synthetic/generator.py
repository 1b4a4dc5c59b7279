"""Built-in HPA-like data: synthetic four-channel cell images in the Kaggle layout.

Users get a complete, labeled data set without downloading the 2018
challenge: ``hpa-keras make-demo-data OUT`` writes

    OUT/train.csv                 Id,Target (label sets from the real distribution)
    OUT/train/<Id>_<red|green|blue|yellow>.png
    OUT/test/<Id>_<channel>.png
    OUT/sample_submission.csv     Id,Predicted (the Kaggle template)
    OUT/test_labels.csv           Id,Target of the test split (the truth, known here)
    OUT/generation.json           the arguments, so a folder says how it was made

With ``--cells`` also the truth per cell:

    OUT/masks/<Id>_cells.png      each field's cells (0 background, 1..N)
    OUT/masks/<Id>_nuclei.png     their nuclei, numbered as their cells
    OUT/cells.csv                 ID,cell,Label: the classes each training cell shows
    OUT/test_cells.csv            the same for the test fields

Cells of one field differ as in real fields (see :func:`expressing_cells`):
a mitotic spindle is in the dividing cell only, a cytokinetic bridge in the
two cells it joins, a centrosome or MTOC stain in some cells, and any class
may be expressed in only part of the cells. A field's label is the union of
its cells' labels, so an image label is a weak, noisy signal for a cell's.
``--scheme hpa2021`` labels fields and cells in the 2021 challenge's 19
classes: the 2018 classes mapped to their 2021 counterparts (classes without
one are not drawn), and a cell that shows none of the field's classes is
Negative (18); a field is Negative only when all its cells are, as in the
2021 training labels, where Negative never appears beside another class.

Each sample is rendered from its own random generator seeded with
``(seed, index)``, so the same seed gives the same bytes whatever the number
of worker processes.
"""

import csv
import io
import json
import os
import shutil
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from hpa_keras import __version__
from hpa_keras.atomic import write_bytes_atomic, write_text_atomic
from hpa_keras.classes import CHANNELS, HPA2021, format_target, get_scheme, map_2018_to_2021
from hpa_keras.data.cells import mask_png_bytes
from hpa_keras.data.images import encode_png
from hpa_keras.data.labels import write_labels
from hpa_keras.errors import InputError
from hpa_keras.parallel import default_workers, ordered_map
from hpa_keras.settings import setting
from hpa_keras.synthetic.cell_field import make_cell_field, smooth_noise
from hpa_keras.synthetic.label_sampler import sample_label_sets
from hpa_keras.synthetic.protein_patterns import PATTERNS, mitotic_spindle, soften
from hpa_keras.synthetic.styles import DEFAULT_STYLE, STYLES, acquire, get_style

MITOTIC_SPINDLE = 17
CYTOKINETIC_BRIDGE = 16
MICROTUBULE_ORGANIZING_CENTER, CENTROSOME = 18, 19
GENERATION_FILE = "generation.json"
MASKS_FOLDER = "masks"
CELLS_FILE, TEST_CELLS_FILE = "cells.csv", "test_cells.csv"
NEGATIVE_2021 = 18
# A cell shows a class when the class's peak in it reaches this share of the brightest
# cell's (see _cells_showing).
SHOWS_CLASS_SHARE = 0.2
BORDER_CLASSES = (21, 22)  # plasma membrane, cell junctions
# Share of (field, class) pairs where only some cells express the protein.
PARTIAL_EXPRESSION_RATE = 0.25


@dataclass(frozen=True)
class DemoDataSettings:
    """The arguments of :func:`make_demo_data`, stored in ``generation.json``."""

    num_samples: int = setting(1000, "samples to generate (training and test together)")
    image_size: int = setting(256, "side in pixels (the challenge's is 512)", metavar="S")
    seed: int = setting(0, "the same seed gives the same bytes, whatever the workers")
    test_fraction: float = setting(0.2, "share of the samples in the test split")
    bit_depth: int = setting(8, "bits per pixel of the PNGs", choices=(8, 16))
    label_balance: float = setting(
        0.0,
        "share of samples whose label set is drawn class-balanced rather than with the real "
        "frequencies (1 gives every class at least 1/28 of the images)",
    )
    cells: bool = setting(
        False,
        "also write each field's cell and nucleus masks (masks/) and the classes each cell "
        "shows (cells.csv, test_cells.csv)",
    )
    scheme: str = setting(
        "hpa2018",
        "label scheme: hpa2018 (28 classes) or hpa2021 (19 classes, Negative cells)",
        choices=("hpa2018", "hpa2021"),
    )
    style: str = setting(
        DEFAULT_STYLE,
        "how fields are drawn: hpa-like (the built-in camera) or widefield (another "
        "microscope: offset, gamma, cross-talk, more noise, blur and vignetting, fewer and "
        "larger cells; the same labels), to test transfer between styles",
        choices=tuple(STYLES),
    )

    def validate(self) -> None:
        if self.num_samples < 1:
            raise InputError(f"--num-samples must be at least 1, got {self.num_samples}")
        if not 32 <= self.image_size <= 4096:
            raise InputError(f"--image-size must be between 32 and 4096, got {self.image_size}")
        if not 0.0 <= self.test_fraction < 1.0:
            raise InputError(f"--test-fraction must be in [0, 1), got {self.test_fraction}")
        if not 0.0 <= self.label_balance <= 1.0:
            raise InputError(f"--label-balance must be in [0, 1], got {self.label_balance}")
        if self.bit_depth not in (8, 16):
            raise InputError(f"--bit-depth must be 8 or 16, got {self.bit_depth}")
        get_scheme(self.scheme)
        get_style(self.style)
        if self.num_samples - self.num_test < 1:
            raise InputError("--test-fraction leaves no training samples")

    @property
    def num_test(self) -> int:
        return int(round(self.num_samples * self.test_fraction))


def render_sample(
    rng: np.random.Generator, labels, image_size: int, mitotic_cells: int | None = None
) -> np.ndarray:
    """A float32 ``(image_size, image_size, 4)`` image in [0, 1], channels red, green, blue, yellow.

    ``labels`` are class indices; the green channel is the sum of their
    patterns, with cell-to-cell variation in intensity. ``mitotic_cells``
    defaults to one when the labels include Mitotic spindle, and otherwise to
    an occasional dividing cell, as in real fields.
    """
    return render_field(rng, labels, image_size, mitotic_cells)[0]


def render_field(
    rng: np.random.Generator,
    labels,
    image_size: int,
    mitotic_cells: int | None = None,
    expression_rng: np.random.Generator | None = None,
    style: str = DEFAULT_STYLE,
):
    """``(image, cell field, cell labels)``: :func:`render_sample`'s image, its layout, and
    with ``expression_rng`` the 2018 classes each cell shows (``{cell number: [classes]}``).

    Without ``expression_rng`` every cell expresses every class (the image is
    then exactly :func:`render_sample`'s) and cell labels are None. With it,
    which cells express each class is drawn by :func:`expressing_cells` from
    that generator alone, so ``rng``'s draws, the cell layout and the
    stains are the same either way.

    ``style`` (:data:`~hpa_keras.synthetic.styles.STYLES`) sets the cell layout's
    magnification and density and the microscope the stains are seen through; the
    default is the generator's own.
    """
    style = get_style(style)
    labels = sorted(set(int(label) for label in labels))
    if mitotic_cells is None:
        mitotic_cells = 1 if MITOTIC_SPINDLE in labels else int(rng.random() < 0.12)
    cell_field = make_cell_field(
        rng,
        image_size,
        mitotic_cells=mitotic_cells,
        magnification=style.magnification,
        density=style.density,
    )
    scale = cell_field.scale
    cell_mask = cell_field.labels > 0

    chromatin = 0.75 + 0.25 * smooth_noise(rng, image_size, 4 * scale)
    mitotic_plate = np.zeros_like(cell_mask)
    for cell in cell_field.cells:
        if cell.mitotic:
            mitotic_plate |= cell_field.labels == cell.label
    blue = cell_field.nucleus * chromatin * _cell_gains(rng, cell_field, 0.6, 1.0)
    blue = blue * np.where(cell_field.nucleoli, 0.45, 1.0) * np.where(mitotic_plate, 1.4, 1.0)

    spindles = mitotic_spindle(rng, cell_field) if mitotic_cells else 0.0
    red = np.maximum(soften(cell_field.microtubules, 0.5 * scale), spindles)
    red = red * _cell_gains(rng, cell_field, 0.5, 1.0) + 0.07 * cell_mask

    yellow = cell_field.er_network * _cell_gains(rng, cell_field, 0.6, 1.0)

    # Faint autofluorescence everywhere in the cells, so no class is "any signal at all".
    green = 0.04 * cell_field.cytoplasm + 0.02 * cell_field.nucleus
    per_cell = expression_rng is not None
    shown = {} if per_cell else None
    for label in labels:
        weight = rng.uniform(0.55, 1.0)
        pattern = PATTERNS[label](rng, cell_field)
        # Per cell, cells that do not express a class get none of it (not a faint share).
        gains = _cell_gains(rng, cell_field, 0.35, 1.0, silent_fraction=0.0 if per_cell else 0.1)
        if per_cell:
            expressing = expressing_cells(expression_rng, label, len(cell_field.cells))
            gains = gains * np.concatenate([[1.0], expressing])[cell_field.labels]
            signal = weight * pattern * gains
            shown[label] = _cells_showing(signal, cell_field, label)
            green = green + signal
        else:
            green = green + weight * pattern * gains

    channels = {"red": red, "green": green, "blue": blue, "yellow": yellow}
    focus = rng.uniform(0.4, 1.1) * scale  # one focus for the whole field
    if style.name == DEFAULT_STYLE:
        image = np.empty((image_size, image_size, len(CHANNELS)), np.float32)
        for index, name in enumerate(CHANNELS):
            gain = rng.uniform(*style.gains[index])
            image[..., index] = _acquire(rng, channels[name], gain, focus)
    else:
        image = acquire(rng, channels, focus, style)
    cell_labels = None
    if per_cell:
        cell_labels = {
            number: [label for label in labels if shown[label][number - 1]]
            for number in range(1, len(cell_field.cells) + 1)
        }
    return image, cell_field, cell_labels


def expressing_cells(rng: np.random.Generator, label: int, num_cells: int) -> np.ndarray:
    """Which cells of a field express ``label`` (float 0/1 per cell).

    Mitotic spindle and cytokinetic bridge: every cell may, their patterns
    are drawn only in the dividing cell or across the joined pair. MTOC and
    centrosome: a share of 30-80% of the cells (as their stains come and go
    with the cell cycle). Any other class: in a quarter of the (field, class)
    pairs only 30-80% of the cells express it, otherwise all do. At least one
    cell always does.
    """
    if label in (MITOTIC_SPINDLE, CYTOKINETIC_BRIDGE) or num_cells == 0:
        return np.ones(num_cells, np.float32)
    partial = label in (MICROTUBULE_ORGANIZING_CENTER, CENTROSOME)
    partial = partial or rng.random() < PARTIAL_EXPRESSION_RATE
    if not partial:
        return np.ones(num_cells, np.float32)
    count = max(1, int(round(rng.uniform(0.3, 0.8) * num_cells)))
    expressing = np.zeros(num_cells, np.float32)
    expressing[rng.choice(num_cells, size=count, replace=False)] = 1.0
    return expressing


def _cells_showing(signal: np.ndarray, cell_field, label: int) -> np.ndarray:
    """Per cell (1..N), whether it shows ``signal``: its peak inside the cell reaches
    SHOWS_CLASS_SHARE of the field's brightest cell's peak.

    Peaks are taken at least a blur's width inside each cell, so what a
    pattern bleeds across a border into a neighbour that does not express
    it does not count; classes that lie on the border itself (plasma
    membrane, cell junctions) are looked for in the whole cell.
    """
    num_cells = len(cell_field.cells)
    inside = cell_field.labels > 0
    if label not in BORDER_CLASSES:
        inside &= cell_field.cell_depth >= max(1.0, 4.5 * cell_field.scale)
    peaks = np.zeros(num_cells + 1)
    np.maximum.at(peaks, cell_field.labels[inside], signal[inside])
    peaks = peaks[1:]
    top = float(peaks.max()) if peaks.size else 0.0
    if top <= 0:
        return np.zeros(num_cells, bool)
    return peaks >= SHOWS_CLASS_SHARE * top


def _cell_gains(rng, cell_field, low, high, silent_fraction=0.0):
    """A per-pixel map of per-cell intensity factors (cells differ in expression)."""
    gains = rng.uniform(low, high, len(cell_field.cells) + 1).astype(np.float32)
    silent = rng.random(len(gains)) < silent_fraction
    gains[silent] *= 0.15
    gains[0] = 1.0  # background: leave whatever a pattern drew outside cells
    return gains[cell_field.labels]


def _acquire(rng, signal, gain, focus):
    """Camera model: defocus blur, gain, shot and read noise, black-level subtraction.

    As in HPA's images, the black level is set just above the read noise, so
    most of the background is exactly 0 (the real blue channels' median is 0).
    """
    image = soften(np.asarray(signal, np.float32) * gain, focus)
    shot = rng.uniform(0.01, 0.03) * np.sqrt(np.clip(image, 0, None))
    read = rng.uniform(0.002, 0.008)
    noise = rng.standard_normal(image.shape).astype(np.float32)
    image = image + noise * (shot + read) - rng.uniform(1.0, 2.0) * read
    return np.clip(image, 0.0, 1.0)


def quantize(image: np.ndarray, bit_depth: int) -> np.ndarray:
    """Float [0, 1] to ``uint8`` (bit_depth 8) or ``uint16`` (bit_depth 16)."""
    if bit_depth == 8:
        return np.rint(image * 255.0).astype(np.uint8)
    if bit_depth == 16:
        return np.rint(image * 65535.0).astype(np.uint16)
    raise InputError(f"bit depth must be 8 or 16, got {bit_depth}")


def sample_id(seed: int, index: int) -> str:
    """A UUID-style Id like the challenge's, fixed by ``(seed, index)``."""
    generator = np.random.default_rng([seed, index, 0x1D])
    return str(uuid.UUID(bytes=generator.bytes(16), version=4))


@dataclass(frozen=True)
class _Job:
    index: int
    sample_id: str
    labels: tuple[int, ...]  # the 2018 classes drawn in the field
    folder: str
    settings: DemoDataSettings
    masks: str | None = None  # the masks folder, when cells are written

    @property
    def per_cell(self) -> bool:
        return self.settings.cells or self.settings.scheme != "hpa2018"


def _write_sample(job: _Job):
    """Render and write one field; returns ``(index, field labels, [(cell, labels)])`` in the
    settings' scheme (cells empty when truth per cell is not drawn)."""
    rng = np.random.default_rng([job.settings.seed, job.index])
    expression_rng = np.random.default_rng([job.settings.seed, job.index, 0xCE11])
    image, cell_field, shown = render_field(
        rng,
        job.labels,
        job.settings.image_size,
        expression_rng=expression_rng if job.per_cell else None,
        style=job.settings.style,
    )
    image = quantize(image, job.settings.bit_depth)
    for channel_index, channel in enumerate(CHANNELS):
        path = Path(job.folder) / f"{job.sample_id}_{channel}.png"
        write_bytes_atomic(path, encode_png(image[..., channel_index]))
    if not job.per_cell:
        return job.index, job.labels, []
    present = np.unique(cell_field.labels)
    present = present[present > 0]  # a cell may be hidden under its neighbours entirely
    lookup = np.zeros(len(cell_field.cells) + 1, np.int32)
    lookup[present] = np.arange(1, present.size + 1)
    cells = lookup[cell_field.labels]
    rows = []
    for number in present:
        classes = shown[int(number)]
        if job.settings.scheme == HPA2021.name:
            classes = map_2018_to_2021(classes) or [NEGATIVE_2021]
        rows.append((int(lookup[number]), tuple(classes)))
    field_labels = _field_labels([classes for _, classes in rows], job)
    if job.masks is not None:
        write_bytes_atomic(
            Path(job.masks) / f"{job.sample_id}_nuclei.png",
            mask_png_bytes(np.where(cell_field.nucleus, cells, 0)),
        )
        write_bytes_atomic(Path(job.masks) / f"{job.sample_id}_cells.png", mask_png_bytes(cells))
    return job.index, field_labels, rows


def _field_labels(cell_classes: list[tuple[int, ...]], job: _Job) -> tuple[int, ...]:
    """A field's label from its cells': the union of their classes, except that a field is
    Negative only when every cell is (2021 scheme): in the 2021 training labels Negative
    never appears beside another class (34 of 21,806 fields, each alone)."""
    union = {label for classes in cell_classes for label in classes}
    if job.settings.scheme == HPA2021.name:
        union = (union - {NEGATIVE_2021}) or {NEGATIVE_2021}
    if not union:  # no pattern reached any cell (never seen); keep the drawn labels
        return job.labels
    return tuple(sorted(union))


def _drawable(label_set: tuple[int, ...], scheme: str) -> tuple[int, ...]:
    """The classes of a 2018 label set the generator draws: in the 2021 scheme, those with a
    2021 counterpart (a set left empty draws a field that expresses nothing: Negative)."""
    if scheme == "hpa2018":
        return label_set
    return tuple(label for label in label_set if map_2018_to_2021([label]))


def _write_cells(path: Path, jobs, cell_rows: dict, scheme: str) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([get_scheme(scheme).id_column, "cell", "Label"])
    for job in jobs:
        for number, classes in cell_rows[job.index]:
            writer.writerow([job.sample_id, number, format_target(classes, scheme)])
    write_text_atomic(path, buffer.getvalue())


def make_demo_data(
    out: str | os.PathLike,
    settings: DemoDataSettings = DemoDataSettings(),  # noqa: B008 (frozen, so shareable)
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Write a synthetic data set in the Kaggle layout to ``out``; returns a summary.

    Refuses to write into a non-empty folder unless it holds an earlier
    synthetic set and ``overwrite`` is set (then its images and CSVs are
    replaced), so a typo never overwrites a user's real data.
    """
    settings.validate()
    out = Path(out)
    _prepare_output(out, overwrite)
    workers = max(1, workers or default_workers())

    label_rng = np.random.default_rng([settings.seed, 0x1AB])
    label_sets = sample_label_sets(label_rng, settings.num_samples, settings.label_balance)
    test_indices = set(label_rng.permutation(settings.num_samples)[: settings.num_test].tolist())
    ids = [sample_id(settings.seed, index) for index in range(settings.num_samples)]
    masks = str(out / MASKS_FOLDER) if settings.cells else None
    jobs = [
        _Job(
            index,
            ids[index],
            _drawable(label_sets[index], settings.scheme),
            str(out / ("test" if index in test_indices else "train")),
            settings,
            masks,
        )
        for index in range(settings.num_samples)
    ]

    with tqdm(
        total=len(jobs),
        desc="rendering samples",
        unit="sample",
        disable=not progress,
        mininterval=0.5,
    ) as bar:
        field_labels, cell_rows = {}, {}
        for index, labels, rows in ordered_map(_write_sample, jobs, workers):
            field_labels[index], cell_rows[index] = labels, rows
            bar.update()

    scheme = settings.scheme
    train = [job for job in jobs if job.index not in test_indices]
    test = [job for job in jobs if job.index in test_indices]
    write_labels(
        out / "train.csv",
        [job.sample_id for job in train],
        [field_labels[job.index] for job in train],
        scheme=scheme,
    )
    if settings.cells:
        _write_cells(out / CELLS_FILE, train, cell_rows, scheme)
        if test:
            _write_cells(out / TEST_CELLS_FILE, test, cell_rows, scheme)
    if test:
        test_ids = [job.sample_id for job in test]
        write_labels(
            out / "test_labels.csv",
            test_ids,
            [field_labels[job.index] for job in test],
            scheme=scheme,
        )
        write_text_atomic(out / "sample_submission.csv", _sample_submission(test_ids, settings))
    summary = {
        "generator": f"hpa-keras {__version__}",
        "settings": asdict(settings),
        "num_train": len(train),
        "num_test": len(test),
    }
    write_text_atomic(out / GENERATION_FILE, json.dumps(summary, indent=2) + "\n")
    return summary


def _sample_submission(test_ids, settings: DemoDataSettings) -> str:
    """The challenge's template for the test fields: 2018 ``Id,Predicted``; 2021
    ``ID,ImageWidth,ImageHeight,PredictionString``."""
    if settings.scheme == "hpa2018":
        return "Id,Predicted\n" + "".join(f"{test_id},0\n" for test_id in test_ids)
    side = settings.image_size
    return "ID,ImageWidth,ImageHeight,PredictionString\n" + "".join(
        f"{test_id},{side},{side},\n" for test_id in test_ids
    )


def _prepare_output(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    if not out.exists() or not any(out.iterdir()):
        out.mkdir(parents=True, exist_ok=True)
        return
    if not (out / GENERATION_FILE).exists():
        raise InputError(
            f"{out}: folder is not empty and was not made by make-demo-data; "
            "choose an empty or new folder"
        )
    if not overwrite:
        raise InputError(
            f"{out}: already holds a synthetic data set; pass --overwrite to replace it"
        )
    (out / GENERATION_FILE).unlink()  # first, so an interrupted rewrite is never taken as whole
    for folder in ("train", "test", MASKS_FOLDER):
        shutil.rmtree(out / folder, ignore_errors=True)
    for name in (
        "train.csv",
        "test_labels.csv",
        "sample_submission.csv",
        CELLS_FILE,
        TEST_CELLS_FILE,
    ):
        (out / name).unlink(missing_ok=True)
