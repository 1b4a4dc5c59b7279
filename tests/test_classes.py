import numpy as np
import pytest

from hpa_keras.classes import (
    CLASS_INDEX,
    CLASS_NAMES,
    NUM_CLASSES,
    class_name,
    format_target,
    indices_to_multi_hot,
    multi_hot_to_indices,
    multi_hot_to_target,
    parse_target,
    target_to_multi_hot,
)
from hpa_keras.errors import InputError


def test_class_table_matches_the_2018_challenge():
    assert NUM_CLASSES == 28
    assert CLASS_NAMES[0] == "Nucleoplasm"
    assert CLASS_NAMES[1] == "Nuclear membrane"
    assert CLASS_NAMES[14] == "Microtubules"
    assert CLASS_NAMES[19] == "Centrosome"
    assert CLASS_NAMES[25] == "Cytosol"
    assert CLASS_NAMES[27] == "Rods & rings"
    assert len(set(CLASS_NAMES)) == 28
    assert all(CLASS_INDEX[name] == index for index, name in enumerate(CLASS_NAMES))


def test_parse_target_sorts_and_accepts_extra_spaces():
    assert parse_target("7 1 2 0") == [0, 1, 2, 7]
    assert parse_target("  25   0 ") == [0, 25]
    assert parse_target("", allow_empty=True) == []


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("28", "out of range 0..27"),
        ("-1", "out of range 0..27"),
        ("3 x", "'x' is not an integer"),
        ("1.5", "'1.5' is not an integer"),
        ("", "Target is empty"),
        ("   ", "Target is empty"),
        ("4 4", "appears twice"),
    ],
)
def test_parse_target_rejects_bad_values_with_the_reason(target, reason):
    with pytest.raises(InputError, match=reason):
        parse_target(target)


def test_multi_hot_round_trip():
    vector = target_to_multi_hot("27 0 13")
    assert vector.dtype == np.float32
    assert vector.shape == (28,)
    assert np.flatnonzero(vector).tolist() == [0, 13, 27]
    assert multi_hot_to_target(vector) == "0 13 27"
    assert multi_hot_to_indices(indices_to_multi_hot([5])) == [5]
    assert format_target([3, 1, 3]) == "1 3"


@pytest.mark.parametrize(
    ("bad", "reason"),
    [(np.zeros(27), r"shape \(27,\)"), (np.full(28, 0.5), "other than 0 and 1")],
)
def test_multi_hot_rejects_wrong_vectors(bad, reason):
    with pytest.raises(InputError, match=reason):
        multi_hot_to_indices(bad)


@pytest.mark.parametrize(
    ("index", "reason"),
    [
        (28, "out of range"),
        ("3", "not an integer"),
        (True, "not an integer"),
        (2.0, "not an integer"),
    ],
)
def test_class_name_rejects_bad_indices(index, reason):
    with pytest.raises(InputError, match=reason):
        class_name(index)
    with pytest.raises(InputError, match=reason):
        indices_to_multi_hot([index])
