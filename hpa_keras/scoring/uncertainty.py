"""How unsure a prediction is: predictive entropy, ensemble disagreement, the most uncertain images.

A probability table says what the model thinks, not how much to trust it. Two
measures, per image or per cell (any array whose last axis is the classes):

* :func:`predictive_entropy`: how close the probabilities are to 0.5. It is
  high where the model sits on the fence, whether because the image is
  ambiguous or because the model never learned that kind of image.
* :func:`ensemble_disagreement`: how much the members of an ensemble (the
  folds of ``hpa-keras cv``) differ. Members that were trained apart agree
  where the data pins the answer down and differ where it does not, so
  disagreement points at images unlike the training ones (what more labels
  would fix) rather than at images that are ambiguous in themselves. Its mutual
  information is the BALD score: entropy of the mean prediction minus the mean
  of the members' entropies, the part of the uncertainty that comes from the
  members disagreeing.

Every class is a yes/no question (several labels per image), so entropies are
binary entropies of each class's probability, **averaged** over classes and in
**bits**: 0 when every probability is 0 or 1, 1 when every one is 0.5, whatever
the number of classes, so a value reads the same for 28 classes or for a
subset. Mutual information uses the same units and the same average, so it is at
most the entropy of the mean.

numpy only, as the rest of ``hpa_keras.scoring``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hpa_keras.errors import InputError


@dataclass(frozen=True)
class Disagreement:
    """How far an ensemble's members differ, per image (or cell).

    Attributes:
        spread: the mean over classes of the standard deviation of the members'
            probabilities (population form: 0 when the members agree).
        mutual_information: entropy of the mean prediction minus the mean of the
            members' entropies, in bits averaged over classes (the BALD score).
        entropy: the predictive entropy of the mean prediction, the total of
            which ``mutual_information`` is the part owed to disagreement.
    """

    spread: np.ndarray
    mutual_information: np.ndarray
    entropy: np.ndarray


def binary_entropy(probabilities) -> np.ndarray:
    """Elementwise entropy in bits of a yes/no outcome with probability ``p`` (0 at 0 and 1)."""
    p = _check_probabilities(probabilities, "probabilities", min_ndim=0)
    return _binary_entropy(p)


def predictive_entropy(probabilities) -> np.ndarray:
    """Mean over classes of each class's binary entropy, in bits (see the module docstring).

    Args:
        probabilities: ``(..., C)`` probabilities in ``[0, 1]``, e.g. ``(N, C)`` for N images
            or cells.

    Returns:
        ``(...)``: one value in ``[0, 1]`` per image.
    """
    p = _check_probabilities(probabilities, "probabilities", min_ndim=1)
    return _binary_entropy(p).mean(axis=-1)


def ensemble_disagreement(member_probabilities) -> Disagreement:
    """Disagreement of an ensemble's members, per image (or cell).

    Args:
        member_probabilities: ``(M, ..., C)``: the probabilities of each of the M members,
            e.g. ``(M, N, C)``. One member gives zero disagreement.

    Returns:
        :class:`Disagreement` with arrays of shape ``(...)``, e.g. ``(N,)``.
    """
    p = _check_probabilities(member_probabilities, "member_probabilities", min_ndim=2)
    if p.shape[0] == 0:
        raise InputError("member_probabilities: no members (first axis is empty)")
    # Averages taken as offsets from the first member, so members that agree give exactly
    # their own values and exactly zero disagreement (a plain mean of three equal numbers
    # need not equal them).
    mean = p[0] + (p - p[0]).mean(axis=0)
    total = _binary_entropy(mean).mean(axis=-1)
    member_entropy = _binary_entropy(p).mean(axis=-1)
    return Disagreement(
        spread=np.sqrt(((p - mean) ** 2).mean(axis=0)).mean(axis=-1),
        # >= 0 by concavity of the entropy; rounding could leave -1e-17.
        mutual_information=np.maximum((total - member_entropy).mean(axis=0), 0.0),
        entropy=total,
    )


def most_uncertain(scores, count: int) -> np.ndarray:
    """Indices of the ``count`` highest scores, highest first (ties: lower index first).

    Args:
        scores: ``(N,)`` uncertainty scores, e.g. :func:`predictive_entropy` or
            :attr:`Disagreement.mutual_information`.
        count: how many; more than N gives all N.
    """
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1:
        raise InputError(f"scores must be 1-D (one per image), got shape {values.shape}")
    if np.isnan(values).any():
        raise InputError("scores contain NaN")
    if isinstance(count, bool) or not isinstance(count, int | np.integer) or count < 0:
        raise InputError(f"count must be a whole number >= 0, got {count!r}")
    return np.argsort(-values, kind="stable")[: int(count)]


def flag_most_uncertain(scores, percent: float) -> np.ndarray:
    """Boolean ``(N,)``: True for the ``percent`` % of images with the highest scores.

    That is the first ``ceil(N * percent / 100)`` of :func:`most_uncertain` (so at least
    one image for any ``percent`` > 0; ties: lower index first). ``percent`` in (0, 100].
    """
    values = np.asarray(scores, dtype=np.float64)
    try:
        share = float(percent)
    except (TypeError, ValueError):
        raise InputError(f"percent must be a number in (0, 100], got {percent!r}") from None
    if not 0 < share <= 100:
        raise InputError(f"percent must be a number in (0, 100], got {percent!r}")
    count = math.ceil(round(values.size * share / 100, 9))
    flagged = np.zeros(values.shape, dtype=bool)
    flagged[most_uncertain(values, count)] = True
    return flagged


def _binary_entropy(p: np.ndarray) -> np.ndarray:
    # 0 * log 0 = 0: the log is taken of 1 where the probability is 0 (or 1).
    q = 1.0 - p
    return -(p * np.log2(np.where(p > 0, p, 1.0)) + q * np.log2(np.where(q > 0, q, 1.0)))


def _check_probabilities(probabilities, name: str, min_ndim: int) -> np.ndarray:
    try:
        p = np.asarray(probabilities, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InputError(f"{name} must be a numeric array: {error}") from None
    if p.ndim < min_ndim:
        raise InputError(f"{name} must have at least {min_ndim} axes, got shape {p.shape}")
    if np.isnan(p).any():
        raise InputError(f"{name} contain NaN")
    if p.size and (p.min() < 0 or p.max() > 1):
        raise InputError(f"{name} must lie in [0, 1], got values from {p.min():g} to {p.max():g}")
    return p
