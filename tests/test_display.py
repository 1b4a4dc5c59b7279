import numpy as np
import pytest

from hpa_keras.reports.samples import COMPOSITE_WEIGHTS, STAIN_COLORS, composite, stretch


def test_stretch_maps_both_bit_depths_to_unit_range():
    eight = np.array([[0, 100, 200]], np.uint8)
    sixteen = eight.astype(np.uint16) * 257
    np.testing.assert_allclose(stretch(eight, 100), [[0, 0.5, 1.0]])
    np.testing.assert_allclose(stretch(sixteen, 100), [[0, 0.5, 1.0]], atol=1e-6)
    assert stretch(np.zeros((2, 2), np.uint8)).max() == 0


def test_composite_is_the_weighted_sum_of_stain_colours():
    ones = np.full((4, 4), 255, np.uint8)
    green_only = composite({"red": None, "green": ones, "blue": None, "yellow": None})
    np.testing.assert_allclose(green_only[0, 0], STAIN_COLORS["green"])
    blue_and_red = composite({"red": ones, "blue": ones})
    expected = COMPOSITE_WEIGHTS["red"] * np.array(STAIN_COLORS["red"]) + COMPOSITE_WEIGHTS[
        "blue"
    ] * np.array(STAIN_COLORS["blue"])
    np.testing.assert_allclose(blue_and_red[0, 0], np.clip(expected, 0, 1), rtol=1e-6)
    with pytest.raises(ValueError, match="no channel"):
        composite({"red": None})
