"""The 2021 submission format and its metric: hand-made cases and scikit-learn as reference."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from hpa_keras.cells.average_precision import (
    FieldCells,
    average_precision,
    iou_with_cells,
    mean_average_precision,
    submission_fields,
)
from hpa_keras.cells.submission import (
    decode_binary_mask,
    encode_binary_mask,
    prediction_string,
    read_submission,
    write_submission,
)
from hpa_keras.data.cells import write_mask
from hpa_keras.errors import InputError


def test_mask_encoding_round_trips_and_is_coco_rle():
    import base64
    import zlib

    from pycocotools import mask as coco_mask

    rng = np.random.default_rng(0)
    for shape in ((7, 5), (64, 80), (1, 1)):
        mask = rng.random(shape) < 0.4
        text = encode_binary_mask(mask)
        assert text.isascii()
        np.testing.assert_array_equal(decode_binary_mask(text, *shape), mask)
        counts = zlib.decompress(base64.b64decode(text))
        rle = {"size": list(shape), "counts": counts}
        assert int(coco_mask.area(rle)) == int(mask.sum())  # what the challenge's scorer reads


def _field(iou_rows, true_classes, scores):
    return FieldCells(np.asarray(iou_rows, float), np.asarray(scores, float), true_classes)


def test_hand_made_cases():
    # two true cells of class 0; one detection matches (IoU 0.9), one overlaps too little (0.55)
    field = _field([[0.9, 0.0], [0.0, 0.55]], [{0}, {0}], [[0.9], [0.8]])
    assert mean_average_precision([field], 1).average_precision == [pytest.approx(0.5)]
    # IoU exactly 0.6 matches; at 0.5 as the threshold the 0.55 one does too
    field = _field([[0.6, 0.0], [0.0, 0.55]], [{0}, {0}], [[0.9], [0.8]])
    assert mean_average_precision([field], 1).average_precision == [pytest.approx(0.5)]
    assert mean_average_precision([field], 1, iou_threshold=0.5).mean_average_precision == 1.0
    # a second detection of the same true cell is a false positive
    field = _field([[0.9], [0.8]], [{0}], [[0.7], [0.9]])
    # ranked: 0.9 (the 0.8-IoU one) hits, then 0.7 is the duplicate: P = 1 at R = 1
    assert mean_average_precision([field], 1).mean_average_precision == 1.0
    # a false positive ranked first: precision 1/2 at recall 1
    field = _field([[0.0], [0.9]], [{0}], [[0.9], [0.2]])
    assert mean_average_precision([field], 1).mean_average_precision == pytest.approx(0.5)
    # a class without true cells is left out of the mean; a class without detections scores 0
    field = _field([[0.9]], [{1}], [[0.5, np.nan, 0.3]])
    score = mean_average_precision([field], 3)
    assert np.isnan(score.average_precision[0]) and score.average_precision[1] == 0.0
    assert np.isnan(score.average_precision[2]) and score.mean_average_precision == 0.0


def test_envelope_interpolation_against_a_hand_computed_curve():
    # ranks: TP, FP, TP, FP, TP of 4 true objects (one never detected)
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    flags = np.array([1, 0, 1, 0, 1], bool)
    # precision 1, 1/2, 2/3, 1/2, 3/5 at recall 1/4, 1/4, 2/4, 2/4, 3/4
    plain = 0.25 * 1 + 0.25 * (2 / 3) + 0.25 * (3 / 5)
    assert average_precision(scores, flags, 4, "none") == pytest.approx(plain)
    # envelope: the precision at recall 2/4 stays 2/3, at 3/4 is 3/5 (nothing better later)
    assert average_precision(scores, flags, 4, "envelope") == pytest.approx(plain)
    flags = np.array([0, 1, 1, 0, 1], bool)  # the envelope lifts the first TP's precision
    plain = 0.25 * (1 / 2) + 0.25 * (2 / 3) + 0.25 * (3 / 5)
    lifted = 0.25 * (2 / 3) + 0.25 * (2 / 3) + 0.25 * (3 / 5)
    assert average_precision(scores, flags, 4, "none") == pytest.approx(plain)
    assert average_precision(scores, flags, 4, "envelope") == pytest.approx(lifted)


def test_with_exact_masks_the_plain_ap_is_scikit_learns():
    """Predicted masks equal to the true ones: each cell matches itself, so per class the
    plain (uninterpolated) AP is scikit-learn's average_precision_score over all cells."""
    rng = np.random.default_rng(3)
    fields, all_truth, all_scores = [], [], []
    for _ in range(6):
        cells = 12
        truth = rng.random((cells, 4)) < 0.3
        scores = rng.random((cells, 4))
        fields.append(
            FieldCells(np.eye(cells), scores, [set(np.flatnonzero(row)) for row in truth])
        )
        all_truth.append(truth)
        all_scores.append(scores)
    truth, scores = np.concatenate(all_truth), np.concatenate(all_scores)
    plain = mean_average_precision(fields, 4, interpolation="none")
    envelope = mean_average_precision(fields, 4)
    for label in range(4):
        expected = average_precision_score(truth[:, label], scores[:, label])
        assert plain.average_precision[label] == pytest.approx(expected)
        assert envelope.average_precision[label] >= plain.average_precision[label] - 1e-12
    assert plain.num_true == truth.sum(axis=0).tolist()


def test_iou_with_cells_against_numpy():
    truth = np.zeros((20, 20), np.int32)
    truth[2:8, 2:8], truth[10:18, 10:18] = 3, 5
    predicted = [np.zeros((20, 20), bool) for _ in range(2)]
    predicted[0][3:9, 2:8] = True
    predicted[1][10:14, 10:18] = True
    iou, numbers = iou_with_cells(predicted, truth)
    assert numbers.tolist() == [3, 5]
    for row, mask in enumerate(predicted):
        for column, number in enumerate(numbers):
            cell = truth == number
            assert iou[row, column] == pytest.approx((mask & cell).sum() / (mask | cell).sum())


def _truth(tmp_path):
    cells = np.zeros((24, 30), np.uint16)
    cells[1:10, 1:12], cells[12:22, 4:20], cells[2:9, 18:28] = 1, 2, 3
    write_mask(tmp_path / "f1_cells.png", cells)
    return cells, {"f1": {1: [0], 2: [0, 2], 3: [18]}}


def test_submission_round_trip_scores_like_scikit_learn(tmp_path):
    cells, labels = _truth(tmp_path)
    padding = [0.0] * 16
    probabilities = {1: np.array([0.9, 0.1, 0.2] + padding), 2: np.array([0.4, 0.3, 0.8] + padding),
                     3: np.array([0.6] + [0.0] * 17 + [0.7])}  # fmt: skip
    write_submission(tmp_path / "s.csv", [("f1", 30, 24, prediction_string(cells, probabilities))])
    submission = read_submission(tmp_path / "s.csv")
    assert len(submission["f1"].items) == 3 * 19
    fields = submission_fields(submission, tmp_path, labels, 19)
    score = mean_average_precision(fields, 19, interpolation="none")
    truth = np.zeros((3, 19), bool)
    for number, classes in labels["f1"].items():
        truth[number - 1, classes] = True
    scores = np.stack([probabilities[number] for number in (1, 2, 3)])
    for label in (0, 2, 18):
        assert score.average_precision[label] == pytest.approx(
            average_precision_score(truth[:, label], scores[:, label])
        )
    assert score.mean_average_precision == pytest.approx(
        np.mean([score.average_precision[label] for label in (0, 2, 18)])
    )


def test_submission_bad_inputs_are_named(tmp_path):
    cells, labels = _truth(tmp_path)
    text = prediction_string(cells, {1: np.full(19, 0.5)})
    write_submission(tmp_path / "other.csv", [("f2", 30, 24, text)])
    with pytest.raises(
        InputError,
        match=r"fields differ from the truth's: 1 fields not in the truth \(first: f2\); no row",
    ):
        submission_fields(read_submission(tmp_path / "other.csv"), tmp_path, labels, 19)
    write_submission(tmp_path / "size.csv", [("f1", 24, 30, text)])
    with pytest.raises(InputError, match="run lengths do not fit|24x30, its true mask"):
        submission_fields(read_submission(tmp_path / "size.csv"), tmp_path, labels, 19)
    (tmp_path / "bad.csv").write_text(
        "ID,ImageWidth,ImageHeight,PredictionString\nf1,30,24,0 0.5\n"
    )
    with pytest.raises(InputError, match=r"bad.csv, line 2: 2 values in PredictionString"):
        read_submission(tmp_path / "bad.csv")
    header = "ID,ImageWidth,ImageHeight,PredictionString\n"
    (tmp_path / "class.csv").write_text(
        f"{header}f1,30,24,19 0.5 {encode_binary_mask(cells == 1)}\n"
    )
    with pytest.raises(InputError, match="class 19 outside 0..18"):
        read_submission(tmp_path / "class.csv")


def test_matched_scores_and_field_level_figures():
    from hpa_keras.cells.average_precision import field_level, matched_cell_scores

    # field 1: true cells {0}, {18}; predicted cell 0 matches true 0, nothing matches true 1
    first = FieldCells(np.array([[0.9, 0.1]]), np.array([[0.7, np.nan, 0.2]]), [{0}, {2}])
    # field 2: both true cells Negative (class 2 here), matched exactly
    second = FieldCells(np.eye(2), np.array([[0.1, 0.2, 0.9], [0.3, 0.1, 0.6]]), [{2}, {2}])
    truth, scores = matched_cell_scores([first, second])
    np.testing.assert_array_equal(truth, [[1, 0, 0], [0, 0, 1], [0, 0, 1], [0, 0, 1]])
    np.testing.assert_allclose(scores, [[0.7, 0, 0.2], [0, 0, 0], [0.1, 0.2, 0.9], [0.3, 0.1, 0.6]])
    truth, scores = field_level([first, second], negative_class=2)
    # field 1 has class 0 and a class-2 cell, but Negative needs every cell: not Negative
    np.testing.assert_array_equal(truth, [[1, 0, 0], [0, 0, 1]])
    np.testing.assert_allclose(scores, [[0.7, 0.0, 0.2], [0.3, 0.2, 0.6]])  # Negative: minimum
