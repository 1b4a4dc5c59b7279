"""Quality control of a field before any prediction: blank, saturated, out of focus,
shifted channels and implausible cell counts.

Each measure is taken at the working scale (0.32 um a pixel, :mod:`hpa_keras.data.microscope`)
or, for saturation, on the file's own pixels, so a threshold means the same thing for
every camera. The thresholds were set on the real HPA fields in the maintainers' sample
folder degraded on purpose (``benchmarks/quality_flags.py`` prints the detection table
the manual shows):

* **blank** (per stain): the standard deviation of the stain smoothed over 1 um, against
  the noise of its own pixels (the median absolute difference of neighbours). A stained
  channel has structure far above its pixel noise; a channel the microscope did not
  record (zeros, or the camera's dark noise) has none.
* **saturated** (per stain): the share of the stain's signal pixels (above its log-Otsu
  threshold, the segmenter's) at the file's ceiling: 255, 65535, or 4095 / 16383 for 12-
  and 14-bit cameras writing 16-bit files when the field reaches exactly that value.
* **out of focus** (per field): how much of the image's power lies at fine detail
  (periods of 0.8-1.7 um) against coarse (3.3-10 um), log10, averaged over the reference
  stains (red, blue, yellow; the protein's pattern is the unknown). Defocus is a low-pass
  filter: it takes fine detail first. A power-spectrum measure, as CellProfiler's
  power-log-log slope, in a band of physical frequencies.
* **shifted** (per field): the displacement between stains that show the same cells,
  found by matching the gradient magnitude of one against the other within 4 um: red
  against yellow (both the cytoplasm), and blue against the brighter of them (the nucleus
  against the holes it leaves). Green is not checked: its pattern is the question.
* **cell count**: fewer or more cells per area than HPA fields show.
"""

from dataclasses import asdict, dataclass

import cv2
import numpy as np
from skimage.filters import threshold_otsu

from hpa_keras.data.microscope import WORKING_PIXEL_SIZE
from hpa_keras.errors import InputError
from hpa_keras.settings import setting

REFERENCE_STAINS = ("red", "blue", "yellow")
FINE_BAND = (0.6, 1.2)  # cycles per um: periods of 0.83-1.7 um
COARSE_BAND = (0.1, 0.3)  # cycles per um: periods of 3.3-10 um
SHIFT_SEARCH = 4.0  # um either way
SHIFT_MIN_CORRELATION = 0.1  # stains correlating less than this anywhere: no shift measured
LOG_OFFSET_SHARE = 0.02  # see log_otsu_threshold
FLAGS = ("missing", "blank", "saturated", "out_of_focus", "shifted", "few_cells", "many_cells")


@dataclass(frozen=True)
class QualitySettings:
    """The quality flags' thresholds (docs/own-images.md, "Quality control")."""

    blank_ratio: float = setting(
        0.3,
        "a stain is blank when its structure (std over 1 um) is under this many times its "
        "pixel noise",
        metavar="R",
    )
    saturated_share: float = setting(
        0.08,
        "a stain is saturated when this share of its signal pixels is at the ceiling",
        metavar="F",
    )
    focus_limit: float = setting(
        -2.3,
        "out of focus under this log10 ratio of fine (0.8-1.7 um) to coarse (3.3-10 um) power",
        metavar="L",
    )
    shift_limit: float = setting(
        1.0,
        "a stain is shifted when it lies this many micrometres off the others",
        metavar="UM",
    )
    shift_gain: float = setting(
        0.02,
        "and correlates better there than in place by more than this",
        metavar="G",
    )
    min_cells: float = setting(0.5, "too few cells: under this many per 100 x 100 um", metavar="N")
    max_cells: float = setting(60.0, "too many cells: over this many per 100 x 100 um", metavar="N")

    def validate(self) -> None:
        for name, value in asdict(self).items():
            if not np.isfinite(value) or (value < 0 and name != "focus_limit"):
                raise InputError(f"--{name.replace('_', '-')} must be a finite number of 0 or more")
        if self.min_cells > self.max_cells:
            raise InputError("--min-cells is over --max-cells")


def ceiling(plane: np.ndarray) -> int:
    """The value a saturated pixel of ``plane`` has (see the module's docstring)."""
    if plane.dtype == np.uint8:
        return 255
    top = int(plane.max()) if plane.size else 0
    return top if top in (1023, 4095, 16383) else 65535


def pixel_noise(plane: np.ndarray) -> float:
    """The pixel noise of a full-resolution plane in [0, 1] units: 1.4826 x the median
    absolute deviation of horizontal neighbour differences, over sqrt(2) (every other row
    and column, which is plenty for a median)."""
    top = 255.0 if plane.dtype == np.uint8 else 65535.0
    sample = plane[::2, ::2].astype(np.float32)
    differences = np.diff(sample, axis=1).ravel()
    spread = np.median(np.abs(differences - np.median(differences)))
    return float(1.4826 * spread / np.sqrt(2) / top)


def structure(working: np.ndarray) -> float:
    """The standard deviation of a working-scale plane smoothed over 1 um."""
    sigma = 1.0 / WORKING_PIXEL_SIZE
    return float(cv2.GaussianBlur(working, (0, 0), sigma).std())


def log_otsu_threshold(image: np.ndarray) -> float | None:
    """Otsu's threshold of ``log(image + offset)``, back on the linear scale; None for a
    black or flat image (nothing to separate).

    The offset, which keeps black pixels finite and sets how far into the
    noise floor the log scale reaches, is LOG_OFFSET_SHARE of the image's
    99.9th percentile: so the threshold scales with the image, and a dim
    exposure or 12-bit data in 16-bit files (values up to 4095) is cut where
    a bright 8-bit one is.
    """

    top = float(np.percentile(image, 99.9))
    if top <= 0:
        return None
    offset = LOG_OFFSET_SHARE * top
    logarithm = np.log(image + offset)
    if float(logarithm.max() - logarithm.min()) < 1e-6:
        return None
    return float(np.exp(threshold_otsu(logarithm)) - offset)


def saturated_share(native: np.ndarray, working: np.ndarray) -> float:
    """The share of a stain's signal pixels at its ceiling."""
    threshold = log_otsu_threshold(working)
    top = ceiling(native)
    unit = 255.0 if native.dtype == np.uint8 else 65535.0
    level = (threshold or 0.0) * unit
    signal = int(np.count_nonzero(native > level))
    if signal == 0:
        return 0.0
    return float(np.count_nonzero(native >= top)) / signal


def focus(working: np.ndarray) -> float:
    """log10 of the mean power at fine against coarse physical frequencies (a Hann-windowed
    spectrum of the working-scale plane)."""
    height, width = working.shape
    if min(height, width) < 32:
        return float("nan")
    window = np.outer(np.hanning(height), np.hanning(width)).astype(np.float32)
    power = np.abs(np.fft.rfft2((working - working.mean()) * window)) ** 2
    rows = np.fft.fftfreq(height)[:, None] / WORKING_PIXEL_SIZE
    columns = np.fft.rfftfreq(width)[None, :] / WORKING_PIXEL_SIZE
    frequency = np.hypot(rows, columns)
    fine = power[(frequency >= FINE_BAND[0]) & (frequency < FINE_BAND[1])].mean()
    coarse = power[(frequency >= COARSE_BAND[0]) & (frequency < COARSE_BAND[1])].mean()
    if coarse <= 0 or fine <= 0:
        return float("nan")
    return float(np.log10(fine / coarse))


def _edges(working: np.ndarray) -> np.ndarray:
    smoothed = cv2.GaussianBlur(working, (0, 0), 1.0)
    return np.hypot(cv2.Sobel(smoothed, cv2.CV_32F, 1, 0), cv2.Sobel(smoothed, cv2.CV_32F, 0, 1))


def displacement(reference: np.ndarray, moving: np.ndarray) -> tuple[float, float, float]:
    """How far (um) ``moving`` lies off ``reference``, and how sure that is: the offset,
    within SHIFT_SEARCH, at which their gradient magnitudes correlate best (normalised
    cross-correlation), that best correlation, and its gain over the correlation where
    they lie as recorded. A stain in place peaks at no offset, or beside it on a shallow
    ridge (gain near 0); a moved one peaks where it was moved to, above its place; stains
    that hardly correlate anywhere (best under 0.1) say nothing either way."""
    reach = int(round(SHIFT_SEARCH / WORKING_PIXEL_SIZE))
    if min(reference.shape) <= 4 * reach:
        return float("nan"), float("nan"), float("nan")
    template = _edges(reference)[reach:-reach, reach:-reach]
    scores = cv2.matchTemplate(_edges(moving), template, cv2.TM_CCOEFF_NORMED)
    if not np.isfinite(scores).all() or float(scores.max() - scores.min()) < 1e-6:
        return float("nan"), float("nan"), float("nan")
    _, best, _, (column, row) = cv2.minMaxLoc(scores)
    distance = float(np.hypot(column - reach, row - reach) * WORKING_PIXEL_SIZE)
    return distance, float(best), float(best - scores[reach, reach])


def measure_quality(native: dict, working: dict) -> dict:
    """The quality measures of one field.

    Args:
        native: ``{stain: (H, W) uint8/uint16}`` at the file's resolution.
        working: the same stains at the working scale (float32 in [0, 1]).

    Returns ``{"blank_ratio": {stain: r}, "saturated": {stain: share}, "focus": f,
    "shift": {"red_yellow": um, "blue": um}, "shift_correlation": {pair: best},
    "shift_gain": {pair: best less in place}}`` (NaN where a measure has nothing to
    measure: a missing stain, a field too small).
    """
    blank, saturated = {}, {}
    for stain, plane in native.items():
        noise = pixel_noise(plane)
        spread = structure(working[stain])
        blank[stain] = float("inf") if noise == 0 and spread > 0 else spread / max(noise, 1e-9)
        saturated[stain] = saturated_share(plane, working[stain])
    focuses = [focus(working[stain]) for stain in REFERENCE_STAINS if stain in working]
    focuses = [value for value in focuses if np.isfinite(value)]
    shifts, correlations, gains = {}, {}, {}
    pairs = {}
    if "red" in working and "yellow" in working:
        pairs["red_yellow"] = (working["red"], working["yellow"])
    cytoplasm = [working[stain] for stain in ("red", "yellow") if stain in working]
    if "blue" in working and cytoplasm:
        pairs["blue"] = (np.maximum.reduce(cytoplasm), working["blue"])
    for pair, (reference, moving) in pairs.items():
        shifts[pair], correlations[pair], gains[pair] = displacement(reference, moving)
    return {
        "blank_ratio": blank,
        "saturated": saturated,
        "focus": float(np.mean(focuses)) if focuses else float("nan"),
        "shift": shifts,
        "shift_correlation": correlations,
        "shift_gain": gains,
    }


def cells_per_area(cells: int, shape: tuple[int, int], pixel_size: float) -> float:
    """Cells per 100 x 100 um of a field of ``shape`` pixels."""
    area = shape[0] * shape[1] * pixel_size**2
    return cells / area * 1e4 if area else float("nan")


def quality_flags(
    measures: dict,
    settings: QualitySettings,
    stains_needed=(),
    density: float | None = None,
) -> list[str]:
    """The flags a field's measures raise, as ``flag`` or ``flag:stain`` (``blank:green``).

    ``stains_needed``: stains the prediction reads; one the field lacks is
    ``missing:<stain>``. ``density``: cells per 100 x 100 um, once segmented.
    """
    flags = [f"missing:{stain}" for stain in stains_needed if stain not in measures["blank_ratio"]]
    flags += [
        f"blank:{stain}"
        for stain, ratio in measures["blank_ratio"].items()
        if ratio < settings.blank_ratio
    ]
    blank = {flag.split(":")[1] for flag in flags if flag.startswith("blank:")}
    flags += [
        f"saturated:{stain}"
        for stain, share in measures["saturated"].items()
        if share > settings.saturated_share and stain not in blank
    ]
    if np.isfinite(measures["focus"]) and measures["focus"] < settings.focus_limit:
        flags.append("out_of_focus")
    for pair, distance in measures["shift"].items():
        stains = ("red", "yellow") if pair == "red_yellow" else ("blue",)
        if blank.intersection(stains):
            continue  # a blank stain has no place to be shifted from
        gain = measures.get("shift_gain", {}).get(pair, float("inf"))
        correlation = measures.get("shift_correlation", {}).get(pair, 1.0)
        sure = gain > settings.shift_gain and correlation >= SHIFT_MIN_CORRELATION
        if np.isfinite(distance) and distance > settings.shift_limit and sure:
            flags.append(f"shifted:{pair}")
    if density is not None:
        if density < settings.min_cells:
            flags.append("few_cells")
        elif density > settings.max_cells:
            flags.append("many_cells")
    return flags


def flag_kinds(flags) -> set[str]:
    """The kinds of a field's flags (``blank:green`` is ``blank``)."""
    return {flag.split(":")[0] for flag in flags}
