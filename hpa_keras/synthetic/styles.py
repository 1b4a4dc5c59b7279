"""Drawing styles of the built-in data: the same classes seen through another microscope.

A model tuned on one synthetic style may have learnt its camera and its cell
line as much as its classes. ``hpa-keras make-demo-data OUT --style widefield``
draws the same label sets (the same ``train.csv`` for the same seed) with the
same localisation patterns, but through another acquisition and at another
magnification, so a benchmark can train on one style and test on the other.

``hpa-like`` is the generator's own camera (:func:`~hpa_keras.synthetic.generator._acquire`:
black-level subtracted backgrounds, mild shot and read noise); its output is
byte-identical to the generator's before styles existed. ``widefield`` is a
plain widefield microscope in another lab: per-channel gain and a non-zero
background offset, a gamma response curve, stain cross-talk (blue bleeding
into green, red into yellow), Poisson shot noise plus stronger Gaussian read
noise, uneven illumination (vignetting), more defocus, and fewer, larger
cells (a higher magnification, a sparser culture).
"""

from dataclasses import dataclass

import numpy as np

from hpa_keras.classes import CHANNELS
from hpa_keras.errors import InputError
from hpa_keras.synthetic.protein_patterns import soften

DEFAULT_STYLE = "hpa-like"


@dataclass(frozen=True)
class Style:
    """How a style draws a field. Ranges ``(low, high)`` are drawn uniformly per field.

    Attributes:
        name: the ``--style`` value.
        magnification: cells (and every length of the field) are this many times larger;
            a field then holds about ``1 / magnification**2`` as many cells.
        density: multiplies the crowding drawn per field (fewer cells below 1).
        defocus: multiplies the blur drawn per field.
        gains: per channel (red, green, blue, yellow), the detector gain range.
        offsets: per channel, the background level added (the camera's black level left
            in, as in images not black-level subtracted).
        gamma: exponent of the response curve ``x ** gamma`` (below 1 lifts dim signal).
        crosstalk: ``(source, target, (low, high))``: that share of the source stain's
            signal shows in the target channel (emission bleed-through).
        photons: photons at full scale; shot noise is Poisson in photon counts, so fewer
            photons give more noise.
        read_noise: standard deviation of the Gaussian read noise (full scale 1).
        vignetting: how much darker the corners are than the centre of illumination.
    """

    name: str
    magnification: float = 1.0
    density: float = 1.0
    defocus: float = 1.0
    gains: tuple = ((0.55, 1.0), (0.3, 0.9), (0.6, 1.0), (0.8, 1.5))
    offsets: tuple = ((0.0, 0.0),) * 4
    gamma: tuple = (1.0, 1.0)
    crosstalk: tuple = ()
    photons: float = 0.0
    read_noise: tuple = (0.0, 0.0)
    vignetting: tuple = (0.0, 0.0)


STYLES = {
    DEFAULT_STYLE: Style(DEFAULT_STYLE),
    "widefield": Style(
        "widefield",
        magnification=1.35,
        density=0.8,
        defocus=1.35,
        gains=((0.45, 0.8), (0.35, 0.8), (0.5, 0.85), (0.5, 0.9)),
        offsets=((0.05, 0.09), (0.06, 0.10), (0.04, 0.08), (0.05, 0.09)),
        gamma=(0.75, 0.9),
        crosstalk=(("blue", "green", (0.04, 0.08)), ("red", "yellow", (0.05, 0.1))),
        photons=400.0,
        read_noise=(0.01, 0.016),
        vignetting=(0.2, 0.35),
    ),
}


def get_style(name) -> Style:
    """The style called ``name`` (a :class:`Style` is returned as it is); an unknown name
    raises an error naming the choices."""
    if isinstance(name, Style):
        return name
    try:
        return STYLES[name]
    except KeyError:
        raise InputError(f"unknown style {name!r}; choose one of: {', '.join(STYLES)}") from None


def acquire(rng: np.random.Generator, channels: dict, focus: float, style: Style) -> np.ndarray:
    """A float32 ``(H, W, 4)`` image in [0, 1] from the stains' signals, through ``style``'s
    microscope: cross-talk, defocus, gain, vignetting, shot and read noise, offset, gamma.

    ``channels`` maps each channel name to its signal (as :func:`render_field` draws them),
    ``focus`` is the field's blur before the style's ``defocus``.
    """
    signals = {name: np.asarray(channels[name], np.float32) for name in CHANNELS}
    mixed = dict(signals)
    for source, target, share in style.crosstalk:
        mixed[target] = mixed[target] + rng.uniform(*share) * signals[source]
    size = next(iter(signals.values())).shape[0]
    illumination = _illumination(rng, size, rng.uniform(*style.vignetting))
    gamma = rng.uniform(*style.gamma)
    image = np.empty((size, size, len(CHANNELS)), np.float32)
    for index, name in enumerate(CHANNELS):
        signal = soften(mixed[name] * rng.uniform(*style.gains[index]), focus * style.defocus)
        signal = np.clip(signal * illumination, 0.0, None)
        if style.photons > 0:
            signal = rng.poisson(signal * style.photons).astype(np.float32) / style.photons
        read = rng.uniform(*style.read_noise)
        signal = signal + read * rng.standard_normal(signal.shape).astype(np.float32)
        signal = np.clip(signal + rng.uniform(*style.offsets[index]), 0.0, 1.0)
        image[..., index] = signal**gamma
    return image


def _illumination(rng: np.random.Generator, size: int, falloff: float) -> np.ndarray:
    """Uneven illumination: 1 at a centre near the middle, ``1 - falloff`` at the corners."""
    centre = size / 2 + rng.uniform(-0.15, 0.15, 2) * size
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    distance = np.hypot(y - centre[0], x - centre[1]) / (np.sqrt(2) * size / 2)
    return (1.0 - falloff * np.clip(distance, 0.0, 1.0) ** 2).astype(np.float32)
