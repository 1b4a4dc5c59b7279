"""Do the images to predict look like the ones the run trained on? A check before predicting.

A model, its thresholds and its calibration hold on images drawn like its training
images. On images of another microscope or staining they can fail without a sign: the
built-in generator's runs collapse on its widefield style with probabilities no less
confident (docs/results.md, "Predictions on new images"). Nothing in the probabilities
says so; the pixels do.

The check compares each reference stain's pixel mean (microtubules, nucleus, endoplasmic
reticulum: stains every HPA image carries alike, unlike the protein channel, whose
brightness is the protein's own) with the training images', in units of the training
pixels' standard deviation. :data:`MAX_MEAN_SHIFT` lies between what the HPA's own
releases differ by and what the widefield style does (``python
benchmarks/input_shift.py``; the figures: docs/results.md): a shift over it is warned
about. A warning, not an error: the images may be right
and the run still useful, but the user should know before trusting the result.

The training statistics are the run's ``input.json`` (``pixel_mean``, ``pixel_std``: the
training folds' per-stain figures from the records' manifest); runs made before it kept
them are not checked. The input's: the manifest of records, or a sample of at most
:data:`SAMPLED_IMAGES` images of a folder read as prediction reads them.
"""

import os
from dataclasses import dataclass

import numpy as np

from hpa_keras.classes import CHANNELS
from hpa_keras.data.images import index_images, read_sample
from hpa_keras.errors import InputError
from hpa_keras.runs.documents import InputSettings, read_input_settings
from hpa_keras.runs.folders import expand_runs

# Stains whose brightness says how the images were taken rather than what the protein does.
REFERENCE_STAINS = ("red", "blue", "yellow")
# A stain's mean more than this many training standard deviations away is warned about.
MAX_MEAN_SHIFT = 0.4
# Images of a folder read for the check (evenly spaced over its Ids).
SAMPLED_IMAGES = 32
# Fewer images than this are not checked: one field's stains differ from the next by more
# than a microscope's do (a test run's three images, drawn like its training images, read
# as far from them as the limit), so a handful says nothing of the setup.
MIN_IMAGES = 8


@dataclass(frozen=True)
class StainShift:
    """One stain's pixel mean in the input against the training images'."""

    stain: str
    training_mean: float
    training_std: float
    input_mean: float

    @property
    def shift(self) -> float:
        """``|input mean - training mean|`` in training standard deviations."""
        return abs(self.input_mean - self.training_mean) / max(self.training_std, 1e-6)


def training_statistics(runs) -> InputSettings | None:
    """The first run's input settings when they hold training pixel statistics, else None
    (a run made before they were kept)."""
    folders, _ = expand_runs(runs)
    settings = read_input_settings(folders[0])
    if settings.pixel_mean is None or settings.pixel_std is None:
        return None
    return settings


def sampled_pixel_means(images, settings: InputSettings, limit: int = SAMPLED_IMAGES) -> dict:
    """``{stain: mean}`` over at most ``limit`` images of ``images`` (a folder or paths, as
    :func:`~hpa_keras.data.images.index_images` takes), read as prediction reads them (the
    run's size, bit depth and 16-bit rule); ``{}`` for fewer than :data:`MIN_IMAGES`.
    Unreadable images are left out: prediction names them."""
    ids, index = index_images(images)
    chosen = [ids[int(k)] for k in np.unique(np.linspace(0, len(ids) - 1, min(limit, len(ids))))]
    if len(chosen) < MIN_IMAGES:
        return {}
    sums, count = np.zeros(len(CHANNELS)), 0
    for sample_id in chosen:
        try:
            pixels = read_sample(
                index[sample_id],
                image_size=settings.image_size,
                sixteen_bit_rule=settings.sixteen_bit_rule,
                bit_depth=settings.bit_depth or 8,
            )
        except InputError:
            continue
        sums += pixels.reshape(-1, len(CHANNELS)).mean(axis=0)
        count += 1
    return {stain: sums[k] / count for k, stain in enumerate(CHANNELS)} if count else {}


def record_pixel_means(data) -> dict:
    """``{stain: mean}`` of a record folder, from its manifest (every record, no reading)."""
    from hpa_keras.data.tfrecords import read_manifest  # lazy: imports TensorFlow

    manifest = read_manifest(data)
    if manifest.channel_mean is None:
        return {}
    return dict(zip(CHANNELS, manifest.channel_mean, strict=True))


def stain_shifts(settings: InputSettings, input_means: dict) -> list[StainShift]:
    """The reference stains the run reads, each with its shift."""
    return [
        StainShift(stain, settings.pixel_mean[stain], settings.pixel_std[stain], input_means[stain])
        for stain in REFERENCE_STAINS
        if stain in (settings.channels or CHANNELS) and stain in input_means
    ]


def input_shift_warning(runs, data=None, images=None, limit: int = SAMPLED_IMAGES) -> str | None:
    """A sentence when the input's reference stains are far from the run's training images'
    (``data``: records; ``images``: a folder or paths), else None; None too for a run
    without training statistics."""
    settings = training_statistics(runs)
    if settings is None:
        return None
    if data is not None:
        means, what = record_pixel_means(data), f"{data}: the records'"
    else:
        means = sampled_pixel_means(images, settings, limit)
        what = f"{images}: the images'" if isinstance(images, str | os.PathLike) else "the images'"
    return shift_warning(settings, means, what)


def means_warning(runs, means: dict, what: str) -> str | None:
    """:func:`input_shift_warning` for pixel means measured elsewhere (``annotate``'s, over
    the crops it classified, as the run reads them); ``what`` names them."""
    settings = training_statistics(runs)
    return None if settings is None else shift_warning(settings, means, what)


def shift_warning(settings: InputSettings, means: dict, what: str) -> str | None:
    """The sentence for ``means`` against a run's training statistics, or None."""
    far = [entry for entry in stain_shifts(settings, means) if entry.shift > MAX_MEAN_SHIFT]
    if not far:
        return None
    described = ", ".join(
        f"{entry.stain} {entry.input_mean:.1f} against {entry.training_mean:.1f} "
        f"({entry.shift:.2f} standard deviations)"
        for entry in far
    )
    return (
        f"{what} stains are unlike the run's training images ({described}; the HPA's own "
        f"releases differ by at most 0.2): the model, its thresholds and its calibration "
        "may not hold on them; check a few predictions by eye, or train on images like these"
    )
