"""Judgements on a finished run's progress, from its history: did it stop while still improving?

A run whose best epoch is its last and whose monitored figure was still climbing when it
stopped was cut short: more epochs would likely have given a better model. ``fit`` and
``cv`` say so (:func:`stopped_short`, :func:`folds_stopped_short`) and recommend more epochs.

The rule, for ``n`` epochs of the monitored figure (``val_macro_f1_tuned``, higher is
better, unless told otherwise):

1. at least :data:`MIN_EPOCHS` (3) epochs have a value, and the last epoch has one;
2. the last epoch is the best (a tie with an earlier epoch counts: the run ended at its best);
3. the last epoch beats the best of the epochs before the final quarter of the run (the
   final ``ceil(n / 4)`` epochs, at least one) by at least :data:`MIN_SHARE` (a tenth) of
   the run's whole range (best minus worst value).

Point 3 is what tells a run still climbing from a plateau whose noise happened to peak at
the end: a run improving at a steady rate gains about a quarter of its range in its final
quarter, one levelling off gains a few per cent, and a flat noisy run's last-epoch gain is
tiny beside the rise that came before it. Measured against the run's own range, the rule
needs no scale: it reads a loss and a macro F1 alike. Epochs with no value (NaN: a
diverged epoch, a row missing the column) are left out of the comparisons but still count
as epochs.

The recommendation is :data:`GROWTH` (2) times the epochs asked for: one rerun that either
reaches the plateau (its best epoch then falls before the end) or shows it still rising.
"""

import math

import numpy as np
import pandas as pd

#: The figure fit keeps its best epoch by (ThresholdSearch), and the direction of better.
MONITOR = "val_macro_f1_tuned"
MODE = "max"
#: Fewer epochs say nothing about a trend.
MIN_EPOCHS = 3
#: The final share of the run whose gain is judged.
TAIL_FRACTION = 0.25
#: The least gain over the final quarter, as a share of the run's range, that counts.
MIN_SHARE = 0.1
#: The recommended epochs, as a multiple of those asked for.
GROWTH = 2


def _gain(history, monitor: str, mode: str) -> tuple[float, float, int, int] | None:
    """``(last value, gain over the final quarter, epochs, final-quarter epochs)`` of a run
    that stopped short by the module's rule, else ``None``."""
    if mode not in ("max", "min"):
        raise ValueError(f"mode: 'max' or 'min', not {mode!r}")
    if monitor not in history:
        return None
    values = np.asarray(pd.to_numeric(pd.Series(list(history[monitor])), errors="coerce"))
    values = values.astype(np.float64)
    count = len(values)
    finite = np.isfinite(values)
    if finite.sum() < MIN_EPOCHS or not finite[-1]:
        return None
    signed = values if mode == "max" else -values  # higher is better from here on
    best, worst = signed[finite].max(), signed[finite].min()
    if signed[-1] < best or best <= worst:
        return None
    tail = max(1, math.ceil(count * TAIL_FRACTION))
    before = signed[: count - tail][finite[: count - tail]]
    if before.size == 0:
        return None
    gain = signed[-1] - before.max()
    if gain < MIN_SHARE * (best - worst) or gain <= 0:
        return None
    return float(values[-1]), float(gain), count, tail


def recommended_epochs(epochs: int) -> int:
    """The ``--epochs`` to recommend after a run of ``epochs`` stopped short."""
    return GROWTH * int(epochs)


def stopped_short(
    history: dict[str, list[float]] | pd.DataFrame,
    monitor: str = MONITOR,
    mode: str = MODE,
    epochs: int | None = None,
) -> str | None:
    """A message when the run of ``history`` stopped while ``monitor`` was still improving
    (the module's rule), else ``None``.

    Args:
        history: one value a row per epoch (``history.csv`` as read, or a dict of lists).
        monitor: the column judged; ``mode``: ``"max"`` when higher is better, ``"min"``
            for a loss.
        epochs: the ``--epochs`` the run was given (the recommendation doubles it);
            by default the history's length.
    """
    found = _gain(history, monitor, mode)
    if found is None:
        return None
    last, gain, count, tail = found
    asked = count if epochs is None else epochs
    direction = "rising" if mode == "max" else "falling"
    return (
        f"stopped short: {monitor} was still {direction}; its best, {last:.4g}, came at the "
        f"last of {count} epochs, {gain:.3g} better than before the final {tail}; "
        f"train longer: --epochs {recommended_epochs(asked)}"
    )


def folds_stopped_short(
    histories: dict[int, dict | pd.DataFrame],
    epochs: int,
    monitor: str = MONITOR,
    mode: str = MODE,
) -> str | None:
    """One message naming the folds (of ``histories``, fold -> history) that stopped short
    by :func:`stopped_short`'s rule, else ``None``. ``epochs``: the ``--epochs`` of the cv."""
    short = [fold for fold, history in histories.items() if _gain(history, monitor, mode)]
    if not short:
        return None
    direction = "rising" if mode == "max" else "falling"
    names = ", ".join(str(fold) for fold in sorted(short))
    which = f"fold {names}" if len(short) == 1 else f"folds {names}"
    return (
        f"{which} of {len(histories)} stopped short: the best epoch was the last, "
        f"{monitor} still {direction}; train longer: --epochs {recommended_epochs(epochs)}"
    )
