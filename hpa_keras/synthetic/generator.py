"""Built-in HPA-like data: synthetic four-channel cell images in the Kaggle layout.

Users get a complete, labeled data set without downloading the 2018
challenge: ``hpa-keras make-demo-data OUT`` writes

    OUT/train.csv                 Id,Target (label sets from the real distribution)
    OUT/train/<Id>_<red|green|blue|yellow>.png
    OUT/test/<Id>_<channel>.png
    OUT/sample_submission.csv     Id,Predicted (the Kaggle template)
    OUT/test_labels.csv           Id,Target of the test split (the truth, known here)
    OUT/generation.json           the arguments, so a folder says how it was made

Each sample is rendered from its own random generator seeded with
``(seed, index)``, so the same seed gives the same bytes whatever the number
of worker processes.
"""

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
from hpa_keras.classes import CHANNELS
from hpa_keras.data.images import encode_png
from hpa_keras.data.labels import write_labels
from hpa_keras.errors import InputError
from hpa_keras.parallel import default_workers, ordered_map
from hpa_keras.settings import setting
from hpa_keras.synthetic.cell_field import make_cell_field, smooth_noise
from hpa_keras.synthetic.label_sampler import sample_label_sets
from hpa_keras.synthetic.protein_patterns import PATTERNS, mitotic_spindle, soften

MITOTIC_SPINDLE = 17
GENERATION_FILE = "generation.json"


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
    labels = sorted(set(int(label) for label in labels))
    if mitotic_cells is None:
        mitotic_cells = 1 if MITOTIC_SPINDLE in labels else int(rng.random() < 0.12)
    cell_field = make_cell_field(rng, image_size, mitotic_cells=mitotic_cells)
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
    for label in labels:
        weight = rng.uniform(0.55, 1.0)
        green = green + weight * PATTERNS[label](rng, cell_field) * _cell_gains(
            rng, cell_field, 0.35, 1.0, silent_fraction=0.1
        )

    channels = {"red": red, "green": green, "blue": blue, "yellow": yellow}
    gains = {"red": (0.55, 1.0), "green": (0.3, 0.9), "blue": (0.6, 1.0), "yellow": (0.8, 1.5)}
    image = np.empty((image_size, image_size, len(CHANNELS)), np.float32)
    focus = rng.uniform(0.4, 1.1) * scale  # one focus for the whole field
    for index, name in enumerate(CHANNELS):
        image[..., index] = _acquire(rng, channels[name], rng.uniform(*gains[name]), focus)
    return image


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
    labels: tuple[int, ...]
    folder: str
    settings: DemoDataSettings


def _write_sample(job: _Job) -> int:
    rng = np.random.default_rng([job.settings.seed, job.index])
    image = quantize(
        render_sample(rng, job.labels, job.settings.image_size), job.settings.bit_depth
    )
    for channel_index, channel in enumerate(CHANNELS):
        path = Path(job.folder) / f"{job.sample_id}_{channel}.png"
        write_bytes_atomic(path, encode_png(image[..., channel_index]))
    return job.index


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
    jobs = [
        _Job(
            index,
            ids[index],
            label_sets[index],
            str(out / ("test" if index in test_indices else "train")),
            settings,
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
        for _ in ordered_map(_write_sample, jobs, workers):
            bar.update()

    train = [job for job in jobs if job.index not in test_indices]
    test = [job for job in jobs if job.index in test_indices]
    write_labels(out / "train.csv", [job.sample_id for job in train], [job.labels for job in train])
    if test:
        test_ids = [job.sample_id for job in test]
        write_labels(out / "test_labels.csv", test_ids, [job.labels for job in test])
        write_text_atomic(
            out / "sample_submission.csv",
            "Id,Predicted\n" + "".join(f"{test_id},0\n" for test_id in test_ids),
        )
    summary = {
        "generator": f"hpa-keras {__version__}",
        "settings": asdict(settings),
        "num_train": len(train),
        "num_test": len(test),
    }
    write_text_atomic(out / GENERATION_FILE, json.dumps(summary, indent=2) + "\n")
    return summary


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
    for folder in ("train", "test"):
        shutil.rmtree(out / folder, ignore_errors=True)
    for name in ("train.csv", "test_labels.csv", "sample_submission.csv"):
        (out / name).unlink(missing_ok=True)
