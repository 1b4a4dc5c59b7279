"""The 28 subcellular localization classes of the 2018 HPA Kaggle challenge.

A sample's ``Target`` in ``train.csv`` is a space-separated list of class
indices, for example ``"0 25"`` (Nucleoplasm and Cytosol). This module converts
between that string form, lists of indices and multi-hot vectors, and rejects
anything that is not a valid label set with a message saying what is wrong.
"""

from collections.abc import Iterable, Sequence

import numpy as np

from hpa_keras.errors import InputError

CLASS_NAMES: tuple[str, ...] = (
    "Nucleoplasm",  # 0
    "Nuclear membrane",  # 1
    "Nucleoli",  # 2
    "Nucleoli fibrillar center",  # 3
    "Nuclear speckles",  # 4
    "Nuclear bodies",  # 5
    "Endoplasmic reticulum",  # 6
    "Golgi apparatus",  # 7
    "Peroxisomes",  # 8
    "Endosomes",  # 9
    "Lysosomes",  # 10
    "Intermediate filaments",  # 11
    "Actin filaments",  # 12
    "Focal adhesion sites",  # 13
    "Microtubules",  # 14
    "Microtubule ends",  # 15
    "Cytokinetic bridge",  # 16
    "Mitotic spindle",  # 17
    "Microtubule organizing center",  # 18
    "Centrosome",  # 19
    "Lipid droplets",  # 20
    "Plasma membrane",  # 21
    "Cell junctions",  # 22
    "Mitochondria",  # 23
    "Aggresome",  # 24
    "Cytosol",  # 25
    "Cytoplasmic bodies",  # 26
    "Rods & rings",  # 27
)
NUM_CLASSES = len(CLASS_NAMES)
CLASS_INDEX: dict[str, int] = {name: index for index, name in enumerate(CLASS_NAMES)}

# The four stains of an HPA sample, in the order hpa-keras stacks them.
CHANNELS: tuple[str, ...] = ("red", "green", "blue", "yellow")
CHANNEL_STAINS: dict[str, str] = {
    "red": "microtubules",
    "green": "protein of interest",
    "blue": "nucleus",
    "yellow": "endoplasmic reticulum",
}


def class_name(index: int) -> str:
    """The name of class ``index``, with a clear error when it does not exist."""
    if isinstance(index, bool) or not isinstance(index, int | np.integer):
        raise InputError(f"class index {index!r} is not an integer")
    if not 0 <= index < NUM_CLASSES:
        raise InputError(f"class index {index} is out of range 0..{NUM_CLASSES - 1}")
    return CLASS_NAMES[index]


def parse_target(target: str, allow_empty: bool = False) -> list[int]:
    """Parse a ``Target`` string such as ``"7 1 2 0"`` into sorted unique indices.

    Args:
        target: space-separated class indices, as in the challenge's ``train.csv``.
        allow_empty: accept an empty string as "no labels" (unlabeled or
            predict-nothing rows); by default a training label set must not be empty.

    Raises:
        InputError: a token is not an integer, an index is outside 0..27, an
            index repeats, or the string is empty where labels are required.
    """
    if not isinstance(target, str):
        raise InputError(f"Target {target!r} is not a string of class indices")
    tokens = target.split()
    if not tokens:
        if allow_empty:
            return []
        raise InputError("Target is empty; at least one class index (0-27) is required")
    indices = []
    for token in tokens:
        try:
            index = int(token)
        except ValueError:
            raise InputError(
                f"Target {target!r}: {token!r} is not an integer class index"
            ) from None
        if not 0 <= index < NUM_CLASSES:
            raise InputError(
                f"Target {target!r}: class index {index} is out of range 0..{NUM_CLASSES - 1}"
            )
        if index in indices:
            raise InputError(f"Target {target!r}: class index {index} appears twice")
        indices.append(index)
    return sorted(indices)


def format_target(indices: Iterable[int]) -> str:
    """The ``Target`` string of a label set: sorted, space-separated indices."""
    checked = sorted({_checked_index(index) for index in indices})
    return " ".join(str(index) for index in checked)


def indices_to_multi_hot(indices: Iterable[int]) -> np.ndarray:
    """A float32 vector of length 28 with ones at ``indices``."""
    vector = np.zeros(NUM_CLASSES, dtype=np.float32)
    for index in indices:
        vector[_checked_index(index)] = 1.0
    return vector


def multi_hot_to_indices(vector: Sequence[float] | np.ndarray) -> list[int]:
    """The indices of the non-zero entries of a length-28 multi-hot vector."""
    array = np.asarray(vector)
    if array.shape != (NUM_CLASSES,):
        raise InputError(f"multi-hot vector has shape {array.shape}, expected ({NUM_CLASSES},)")
    if not np.all((array == 0) | (array == 1)):
        raise InputError("multi-hot vector has values other than 0 and 1")
    return [int(index) for index in np.flatnonzero(array)]


def target_to_multi_hot(target: str, allow_empty: bool = False) -> np.ndarray:
    """Parse a ``Target`` string straight into a multi-hot vector."""
    return indices_to_multi_hot(parse_target(target, allow_empty=allow_empty))


def multi_hot_to_target(vector: Sequence[float] | np.ndarray) -> str:
    """The ``Target`` string of a multi-hot vector."""
    return format_target(multi_hot_to_indices(vector))


def _checked_index(index) -> int:
    class_name(index)  # raises on anything that is not a valid index
    return int(index)
