"""The label schemes: the two HPA challenges' and SubCell's; classes, names, counts, mappings.

- ``hpa2018`` (:data:`HPA2018`): the 28 classes of the 2018 image-level
  challenge; ``train.csv`` has ``Id,Target`` with space-separated indices,
  for example ``"0 25"`` (Nucleoplasm and Cytosol).
- ``hpa2021`` (:data:`HPA2021`): the 19 classes of the 2021 single-cell
  challenge (0-17 locations, 18 Negative); ``train.csv`` has ``ID,Label``
  with ``|``-separated indices, for example ``"8|5|0"``.
- ``subcell`` (:data:`SUBCELL`): the 31 classes of the HPA's SubCell models
  (CellProfiling/SubCellPortable's ``CLASS2NAME``: 30 locations, 30 Negative),
  what an imported SubCell run predicts; written like the 2021 scheme.

The module-level names without a scheme (:data:`CLASS_NAMES`,
:func:`parse_target`...) are the 2018 scheme's, the package's default.
Strings, lists of indices and multi-hot vectors convert into each other, and
anything that is not a valid label set is rejected with a message saying
what is wrong.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

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

CLASS_NAMES_2021: tuple[str, ...] = (
    *CLASS_NAMES[:8],  # 0-7: Nucleoplasm ... Golgi apparatus, as in 2018
    "Intermediate filaments",  # 8
    "Actin filaments",  # 9
    "Microtubules",  # 10
    "Mitotic spindle",  # 11
    "Centrosome",  # 12 (with centriolar satellites)
    "Plasma membrane",  # 13 (with cell junctions)
    "Mitochondria",  # 14
    "Aggresome",  # 15
    "Cytosol",  # 16
    "Vesicles and punctate cytosolic patterns",  # 17
    "Negative",  # 18: no staining, or staining without a pattern
)

# SubCell's classes, in the order of its classifiers' outputs (SubCellPortable's
# inference.py, CLASS2NAME), spelled as there.
CLASS_NAMES_SUBCELL: tuple[str, ...] = (
    "Actin filaments", "Aggresome", "Cell Junctions", "Centriolar satellite", "Centrosome",
    "Cytokinetic bridge", "Cytoplasmic bodies", "Cytosol", "Endoplasmic reticulum",
    "Endosomes", "Focal adhesion sites", "Golgi apparatus", "Intermediate filaments",
    "Lipid droplets", "Lysosomes", "Microtubules", "Midbody", "Mitochondria",
    "Mitotic chromosome", "Mitotic spindle", "Nuclear bodies", "Nuclear membrane",
    "Nuclear speckles", "Nucleoli", "Nucleoli fibrillar center", "Nucleoli rim",
    "Nucleoplasm", "Peroxisomes", "Plasma membrane", "Vesicles", "Negative",
)  # fmt: skip


@dataclass(frozen=True)
class LabelScheme:
    """One challenge's classes and label-file format.

    Attributes:
        name: ``"hpa2018"``, ``"hpa2021"`` or ``"subcell"``.
        class_names: the classes, by index.
        id_column: the label file's Id column.
        label_column: its label column.
        separator: between the indices of a label set (``" "`` or ``"|"``).
        negative: the index of the "no pattern" class, or ``None``.
        training_counts: images with each class in the challenge's own
            training labels (``scripts/derive_label_statistics.py`` counted
            them from the challenge's label files); for frequency-aware
            threshold rules and for comparison. Empty where unpublished (SubCell).
        training_images: the number of images those counts come from (0: unpublished).
        collapses_repeats: a class repeated in one label set counts once
            (2021: 146 rows of the challenge's own train.csv repeat a class,
            such as ``13|13``, where two 2018 classes were merged into one);
            otherwise a repeat is an error (no 2018 file has one).
    """

    name: str
    class_names: tuple[str, ...]
    id_column: str
    label_column: str
    separator: str
    negative: int | None
    training_counts: tuple[int, ...]
    training_images: int
    collapses_repeats: bool = False

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


# fmt: off
HPA2018 = LabelScheme(
    name="hpa2018",
    class_names=CLASS_NAMES,
    id_column="Id",
    label_column="Target",
    separator=" ",
    negative=None,
    training_counts=(
        12885, 1254, 3621, 1561, 1858, 2513, 1008, 2822, 53, 45, 28, 1093, 688, 537,
        1066, 21, 530, 210, 902, 1482, 172, 3777, 802, 2965, 322, 8228, 328, 11,
    ),
    training_images=31072,
)
HPA2021 = LabelScheme(
    name="hpa2021",
    class_names=CLASS_NAMES_2021,
    id_column="ID",
    label_column="Label",
    separator="|",
    negative=18,
    training_counts=(
        8797, 1095, 2451, 1262, 1425, 1792, 775, 1846, 964, 998, 818, 78, 1734, 3111,
        2013, 252, 5685, 593, 34,
    ),
    training_images=21806,
    collapses_repeats=True,
)
# fmt: on
# SubCell publishes no label counts of its training cells: none are given here.
SUBCELL = LabelScheme(
    name="subcell",
    class_names=CLASS_NAMES_SUBCELL,
    id_column="ID",
    label_column="Label",
    separator="|",
    negative=30,
    training_counts=(),
    training_images=0,
)
SCHEMES: dict[str, LabelScheme] = {
    scheme.name: scheme for scheme in (HPA2018, HPA2021, SUBCELL)
}

# The 2018 classes as the 2021 challenge merged them (its class descriptions: Centrosome
# includes centriolar satellites, Plasma membrane includes cell junctions, Vesicles and
# punctate cytosolic patterns includes peroxisomes, endosomes, lysosomes, lipid droplets
# and cytoplasmic bodies; the HPA's own 34-to-19 mapping puts focal adhesion sites with
# actin filaments). Microtubule ends, Cytokinetic bridge and Rods & rings have no 2021
# class (None). A mapped label set is what the classes correspond to, not a re-annotation:
# the 2021 labels of a field can differ (a real 2018 Aggresome field is labelled
# Negative in 2021).
CLASSES_2018_TO_2021: dict[int, int | None] = {
    0: 0, 1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 7,
    8: 17, 9: 17, 10: 17,  # peroxisomes, endosomes, lysosomes: vesicles
    11: 8, 12: 9, 13: 9,  # intermediate filaments; actin filaments; focal adhesion sites
    14: 10, 15: None, 16: None, 17: 11,  # microtubules, ends, cytokinetic bridge, spindle
    18: 12, 19: 12,  # microtubule organizing center, centrosome: centrosome
    20: 17, 21: 13, 22: 13, 23: 14, 24: 15, 25: 16, 26: 17, 27: None,
}  # fmt: skip


# SubCell's classes in the two challenges' schemes (None: no class there). Renamed classes
# are the same class: the HPA's "Microtubule organizing center" (2018) became "Centriolar
# satellite" in version 19. A finer class maps to the class it is part of: Nucleoli rim to
# Nucleoli (as subcell-embed's own location grouping has it), and in 2021 as
# CLASSES_2018_TO_2021 merges. Midbody, Mitotic chromosome, and Vesicles and Negative in
# 2018, have no counterpart.
SUBCELL_TO_2018: dict[int, int | None] = {
    0: 12, 1: 24, 2: 22, 3: 18, 4: 19, 5: 16, 6: 26, 7: 25, 8: 6, 9: 9, 10: 13, 11: 7,
    12: 11, 13: 20, 14: 10, 15: 14, 16: None, 17: 23, 18: None, 19: 17, 20: 5, 21: 1,
    22: 4, 23: 2, 24: 3, 25: 2, 26: 0, 27: 8, 28: 21, 29: None, 30: None,
}  # fmt: skip
SUBCELL_TO_2021: dict[int, int | None] = {
    index: (CLASSES_2018_TO_2021[target] if target is not None else None)
    for index, target in SUBCELL_TO_2018.items()
} | {29: 17, 30: 18}


def map_subcell(indices: Iterable[int], scheme: "str | LabelScheme") -> list[int]:
    """The ``hpa2018`` or ``hpa2021`` classes of a SubCell label set (sorted, once each;
    classes with no counterpart dropped)."""
    mapping = _subcell_mapping(scheme)
    mapped = {mapping[_checked_index(index, SUBCELL.num_classes)] for index in indices}
    return sorted(index for index in mapped if index is not None)


def map_subcell_probabilities(probabilities, scheme: "str | LabelScheme") -> np.ndarray:
    """SubCell probabilities ``(N, 31)`` as ``(N, K)`` of ``hpa2018`` or ``hpa2021``: each
    class the largest of the SubCell classes that map to it (a merged class is present where
    any of its parts is), NaN where none does (that class cannot be read from SubCell)."""
    mapping = _subcell_mapping(scheme)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[1] != SUBCELL.num_classes:
        raise InputError(
            f"SubCell probabilities have shape {probabilities.shape}, expected (N, 31)"
        )
    target = get_scheme(scheme)
    mapped = np.full((len(probabilities), target.num_classes), np.nan)
    for source, destination in mapping.items():
        if destination is not None:
            mapped[:, destination] = np.fmax(mapped[:, destination], probabilities[:, source])
    return mapped


def _subcell_mapping(scheme) -> dict[int, int | None]:
    name = get_scheme(scheme).name
    if name == "subcell":
        raise InputError("map SubCell classes to hpa2018 or hpa2021, not to subcell")
    return SUBCELL_TO_2018 if name == "hpa2018" else SUBCELL_TO_2021


def get_scheme(scheme: "str | LabelScheme") -> LabelScheme:
    """The scheme named ``scheme`` (or ``scheme`` itself); InputError for other names."""
    if isinstance(scheme, LabelScheme):
        return scheme
    if scheme not in SCHEMES:
        raise InputError(f"label scheme {scheme!r}: use one of {', '.join(SCHEMES)}")
    return SCHEMES[scheme]


def map_2018_to_2021(indices: Iterable[int]) -> list[int]:
    """The 2021 classes of a 2018 label set (sorted, merged classes once; classes with no
    2021 counterpart dropped, so the result can be empty)."""
    mapped = {CLASSES_2018_TO_2021[_checked_index(index)] for index in indices}
    return sorted(index for index in mapped if index is not None)


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


def parse_target(target: str, allow_empty: bool = False, scheme="hpa2018") -> list[int]:
    """Parse a label string such as ``"7 1 2 0"`` (2018) or ``"8|5|0"`` (2021) into sorted
    unique indices.

    Args:
        target: class indices separated as the scheme's label files separate them.
        allow_empty: accept an empty string as "no labels" (unlabeled or
            predict-nothing rows); by default a training label set must not be empty.
        scheme: ``"hpa2018"`` (space-separated, 0-27) or ``"hpa2021"``
            (``|``-separated, 0-18).

    Raises:
        InputError: a token is not an integer, an index is out of range, an
            index repeats, or the string is empty where labels are required.
    """
    scheme = get_scheme(scheme)
    column, last = scheme.label_column, scheme.num_classes - 1
    if not isinstance(target, str):
        raise InputError(f"{column} {target!r} is not a string of class indices")
    tokens = target.split(scheme.separator) if scheme.separator.strip() else target.split()
    tokens = [token.strip() for token in tokens]
    if not any(tokens):
        if allow_empty:
            return []
        raise InputError(f"{column} is empty; at least one class index (0-{last}) is required")
    indices = []
    for token in tokens:
        try:
            index = int(token)
        except ValueError:
            hint = ""
            if scheme.separator == "|" and " " in token:
                hint = " (2021 labels are separated by '|')"
            elif scheme.separator == " " and "|" in token:
                hint = " ('|' separates 2021 labels; this file has 2018 columns)"
            raise InputError(
                f"{column} {target!r}: {token!r} is not an integer class index{hint}"
            ) from None
        if not 0 <= index <= last:
            raise InputError(
                f"{column} {target!r}: class index {index} is out of range 0..{last} "
                f"({scheme.name}, {scheme.num_classes} classes)"
            )
        if index in indices:
            if scheme.collapses_repeats:
                continue
            raise InputError(f"{column} {target!r}: class index {index} appears twice")
        indices.append(index)
    return sorted(indices)


def format_target(indices: Iterable[int], scheme="hpa2018") -> str:
    """The label string of a label set: sorted indices with the scheme's separator."""
    scheme = get_scheme(scheme)
    checked = sorted({_checked_index(index, scheme.num_classes) for index in indices})
    return scheme.separator.join(str(index) for index in checked)


def indices_to_multi_hot(indices: Iterable[int], num_classes: int = NUM_CLASSES) -> np.ndarray:
    """A float32 vector of length ``num_classes`` (28) with ones at ``indices``."""
    vector = np.zeros(num_classes, dtype=np.float32)
    for index in indices:
        vector[_checked_index(index, num_classes)] = 1.0
    return vector


def multi_hot_to_indices(
    vector: Sequence[float] | np.ndarray, num_classes: int = NUM_CLASSES
) -> list[int]:
    """The indices of the non-zero entries of a multi-hot vector of ``num_classes``."""
    array = np.asarray(vector)
    if array.shape != (num_classes,):
        raise InputError(f"multi-hot vector has shape {array.shape}, expected ({num_classes},)")
    if not np.all((array == 0) | (array == 1)):
        raise InputError("multi-hot vector has values other than 0 and 1")
    return [int(index) for index in np.flatnonzero(array)]


def target_to_multi_hot(target: str, allow_empty: bool = False, scheme="hpa2018") -> np.ndarray:
    """Parse a label string straight into a multi-hot vector."""
    scheme = get_scheme(scheme)
    indices = parse_target(target, allow_empty=allow_empty, scheme=scheme)
    return indices_to_multi_hot(indices, scheme.num_classes)


def multi_hot_to_target(vector: Sequence[float] | np.ndarray, scheme="hpa2018") -> str:
    """The label string of a multi-hot vector."""
    scheme = get_scheme(scheme)
    return format_target(multi_hot_to_indices(vector, scheme.num_classes), scheme)


def _checked_index(index, num_classes: int = NUM_CLASSES) -> int:
    if isinstance(index, bool) or not isinstance(index, int | np.integer):
        raise InputError(f"class index {index!r} is not an integer")
    if not 0 <= index < num_classes:
        raise InputError(f"class index {index} is out of range 0..{num_classes - 1}")
    return int(index)


# SubCell's channel sets name the stains in its encoders' input order (red, yellow, blue,
# green: SubCellPortable stacks them so).
CHANNEL_MODES = {
    "rgby": CHANNELS,
    "rgb": ("red", "green", "blue"),
    "g": ("green",),
    "rybg": ("red", "yellow", "blue", "green"),
    "rbg": ("red", "blue", "green"),
    "ybg": ("yellow", "blue", "green"),
    "bg": ("blue", "green"),
}


def resolve_channels(channels: str | Sequence[str]) -> tuple[str, ...]:
    """``"rgby"``, ``"rgb"``, ``"g"``, a list of channel names or a comma-separated string of
    them (``"green,blue"``), as a tuple of channel names."""
    if isinstance(channels, str):
        if channels in CHANNEL_MODES:
            return CHANNEL_MODES[channels]
        names = tuple(name.strip() for name in channels.split(","))
    else:
        names = tuple(channels)
    unknown = [name for name in names if name not in CHANNELS]
    if not names or unknown or len(set(names)) != len(names):
        raise InputError(
            f"channels {channels!r}: use 'rgby', 'rgb', 'g' or distinct names from {CHANNELS}"
        )
    return names
