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


def _pairs_overlapping(boxes):
    return [
        (first, second)
        for first in range(len(boxes))
        for second in range(first + 1, len(boxes))
        if boxes[first].overlaps(boxes[second])
    ]


def _evaluation(labels, probabilities):
    from hpa_keras.scoring.evaluation import Evaluation

    labels = np.asarray(labels, np.float32)
    ids = [str(index) for index in range(len(labels))]
    return Evaluation(ids, labels, probabilities, np.full(labels.shape[1], 0.5))


@pytest.mark.parametrize("case", ["all classes at one point", "a spread"])
def test_f1_frequency_class_numbers_do_not_overlap(case):
    from matplotlib.text import Text

    from hpa_keras.reports.evaluation import f1_frequency_figure
    from hpa_keras.reports.figures import plt

    rng = np.random.default_rng(3)
    if case == "all classes at one point":  # each class once in 40 images, never found
        labels = np.zeros((40, 28))
        labels[np.arange(28), np.arange(28)] = 1
        probabilities = np.zeros((40, 28))
    else:  # 200 images, classes from 1 to 80 images, half of them at the same F1
        labels = (rng.random((200, 28)) < np.geomspace(0.005, 0.4, 28)).astype(float)
        labels[:2] = 1
        probabilities = np.clip(labels * 0.6 + rng.random((200, 28)) * 0.45, 0, 1)
        probabilities[:, ::2] = labels[:, ::2]
    evaluation = _evaluation(labels, probabilities)
    figure = f1_frequency_figure(evaluation)
    figure.canvas.draw()
    axis = figure.axes[0]
    labelled = [text for text in axis.texts if text.get_text().isdigit()]
    table = evaluation.class_table()
    assert sorted(int(text.get_text()) for text in labelled) == list(table["class"])
    frequency = table.set_index("class")["support"] / len(labels) * 100
    for text in labelled:  # each number belongs to its own point
        np.testing.assert_allclose(
            text.xy, (frequency[int(text.get_text())], table["f1"][int(text.get_text())])
        )
    renderer = figure.canvas.get_renderer()
    boxes = [Text.get_window_extent(text, renderer) for text in labelled]  # without leader lines
    assert _pairs_overlapping(boxes) == []
    frame = axis.get_window_extent(renderer)
    assert all(frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1) for box in boxes)
    plt.close(figure)


def test_label_counts_draw_no_bar_for_a_class_without_images():
    from hpa_keras.classes import CLASS_NAMES
    from hpa_keras.reports.evaluation import label_distribution_figure
    from hpa_keras.reports.figures import plt

    labels = np.zeros((30, 28))
    labels[:, 0] = 1
    labels[:12, 5] = 1
    labels[:1, 9] = 1  # 3 classes with images, 25 without
    figure = label_distribution_figure(labels, CLASS_NAMES)
    left = figure.axes[0]
    bars = left.patches
    assert sorted(round(bar.get_width()) for bar in bars) == [1, 12, 30]
    ticks = {label.get_text(): position for label, position in
             zip(left.get_yticklabels(), left.get_yticks(), strict=True)}  # fmt: skip
    drawn_at = {round(bar.get_y() + bar.get_height() / 2) for bar in bars}
    assert drawn_at == {ticks["0 Nucleoplasm"], ticks["5 Nuclear bodies"], ticks["9 Endosomes"]}
    assert sum(text.get_text() == "0: no images" for text in left.texts) == 25
    plt.close(figure)


def test_cam_figure_has_a_colour_bar_and_grey_channels_under_the_map():
    from hpa_keras.reports.cam import cam_figure
    from hpa_keras.reports.figures import plt

    image = np.full((16, 16, 4), 200, np.uint8)  # every stain bright: blue and yellow too
    heat = np.tile(np.linspace(0, 1, 16, dtype=np.float32), (16, 1))
    figure = cam_figure(image, np.stack([heat, heat[::-1]]), [0, 3], np.full(28, 0.5), "t")
    bars = [axis for axis in figure.axes if axis.get_label() == "<colorbar>"]
    assert len(bars) == 1 and bars[0].get_ylim() == (0.0, 1.0)
    panels = [axis for axis in figure.axes if axis not in bars]
    assert len(panels) == 2 * 5
    for row in (0, 1):
        for axis in panels[row * 5 + 1 : row * 5 + 5]:  # red, green, blue, yellow
            background, overlay = axis.get_images()
            assert background.get_array().ndim == 2 and background.get_cmap().name == "gray"
            assert overlay.get_array().shape == (16, 16, 4)  # jet with the map as opacity
    # Rendered: along the map's rise the blue column changes colour, not only brightness.
    figure.canvas.draw()
    pixels = np.asarray(figure.canvas.buffer_rgba())[..., :3].astype(float)
    box = panels[3].get_window_extent()
    top = pixels.shape[0] - int(box.y1) + 3
    row = pixels[top, int(box.x0) + 2 : int(box.x1) - 2]
    assert np.ptp(row[:, 0] - row[:, 2]) > 100  # from grey (R = B) to jet's red (R >> B)
    plt.close(figure)


def test_reliability_figure_draws_both_curves_from_the_library():
    from hpa_keras.reports.evaluation import reliability_figure
    from hpa_keras.reports.figures import plt
    from hpa_keras.scoring.calibration import expected_calibration_error, reliability_curve

    rng = np.random.default_rng(4)
    labels = (rng.random((150, 6)) < np.linspace(0.05, 0.5, 6)).astype(float)
    probabilities = np.clip(labels * 0.5 + rng.random((150, 6)) * 0.5, 0, 1) ** 2
    evaluation = _evaluation(labels, probabilities)
    figure = reliability_figure(evaluation, bins=10)
    top, bottom = figure.axes
    names = [text.get_text() for text in top.get_legend().get_texts()]
    before = expected_calibration_error(labels, probabilities, bins=10).overall
    calibrated = evaluation.cross_fitted_probabilities()
    after = expected_calibration_error(labels, calibrated, bins=10).overall
    assert names == [
        "perfect calibration",
        f"as predicted: ECE {before:.3f}",
        f"calibrated (cross-fitted on this set): ECE {after:.3f}",
    ]
    assert f"ECE {before:.3f} as predicted, {after:.3f} calibrated" in top.get_title()
    for line, values in zip(top.get_lines()[1:], (probabilities, calibrated), strict=True):
        curve = reliability_curve(labels, values, bins=10)
        filled = curve.counts > 0
        np.testing.assert_allclose(line.get_xdata(), curve.mean_predicted[filled])
        np.testing.assert_allclose(line.get_ydata(), curve.observed[filled])
    heights = sorted(bar.get_height() for bar in bottom.patches)
    expected = [reliability_curve(labels, values, bins=10).counts for values in
                (probabilities, calibrated)]  # fmt: skip
    assert heights == sorted(count for counts in expected for count in counts if count)
    assert top.get_ylabel() and bottom.get_xlabel() and bottom.get_ylabel()
    plt.close(figure)
    alone = reliability_figure(evaluation, calibrated=False)
    assert len(alone.axes[0].get_lines()) == 2  # the diagonal and the curve as predicted
    plt.close(alone)


def test_uncertain_table_lists_the_highest_entropy_first():
    from hpa_keras.scoring.uncertainty import predictive_entropy

    rng = np.random.default_rng(5)
    labels = (rng.random((30, 4)) < 0.3).astype(float)
    probabilities = rng.random((30, 4))
    evaluation = _evaluation(labels, probabilities)
    table = evaluation.uncertain_table(count=5)
    assert list(table.columns) == ["id", "entropy", "labels", "predicted"]
    entropy = predictive_entropy(probabilities)
    order = np.argsort(-entropy)[:5]
    assert table["id"].tolist() == [str(index) for index in order]
    np.testing.assert_allclose(table["entropy"], entropy[order])
    first = order[0]
    assert table["labels"][0] == " ".join(map(str, np.flatnonzero(labels[first])))
    assert table["predicted"][0] == " ".join(map(str, np.flatnonzero(probabilities[first] >= 0.5)))
    assert len(evaluation.uncertain_table()) == 10
