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


# ---- issue 23, point 7: submissions and per-cell truth as evaluate reads them

HEADER = "ID,ImageWidth,ImageHeight,PredictionString\n"


def _text(raw: bytes) -> str:
    import base64
    import zlib

    return base64.b64encode(zlib.compress(raw)).decode("ascii")


def _masks_that_cannot_be_right():
    """(encoded mask, declared (height, width), what the error must say)."""
    cell = np.zeros((8, 8), bool)
    cell[2:4, 2:5] = True
    encoded = encode_binary_mask(cell)
    return [
        (encoded, (16, 16), r"run lengths cover 64 pixels, not the field's 16x16 = 256"),
        (encoded, (8, 9), r"run lengths cover 64 pixels, not the field's 9x8 = 72"),
        (encoded, (4, 4), r"run lengths cover 64 pixels, not the field's 4x4"),
        (_text(b"5:7"), (8, 8), r"run lengths cover 22 pixels, not the field's 8x8 = 64"),
        (_text(b"0~~"), (8, 8), r"holds '~', not COCO RLE text"),
        (_text(b"1P"), (8, 8), r"ends in the middle of a run length"),
        (_text(b"A"), (8, 8), r"negative run length \(-15\)"),
        ("@@not base64@@", (8, 8), r"not base64 zlib-compressed COCO RLE"),
        ("aGVsbG8=", (8, 8), r"not base64 zlib-compressed COCO RLE"),  # base64, not zlib
    ]


@pytest.mark.parametrize("case", range(9))
def test_masks_whose_runs_do_not_fill_the_field_are_refused(case):
    encoded, shape, message = _masks_that_cannot_be_right()[case]
    with pytest.raises(InputError, match=message):
        decode_binary_mask(encoded, *shape)


def test_run_lengths_parse_as_pycocotools_writes_them():
    from pycocotools import mask as coco_mask

    from hpa_keras.cells.submission import rle_counts

    rng = np.random.default_rng(0)
    for shape, share in (((8, 8), 0.0), ((37, 53), 0.02), ((64, 48), 0.5), ((30, 20), 1.0)):
        mask = rng.random(shape) < share
        encoded = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
        counts = rle_counts(encoded["counts"])
        assert sum(counts) == mask.size
        flat, start = mask.ravel(order="F"), 0
        for index, count in enumerate(counts):  # runs alternate 0, 1, 0, ... from 0
            assert (flat[start : start + count] == bool(index % 2)).all()
            start += count


def _bad_rows(cells):
    encoded = encode_binary_mask(cells == 1)
    return [
        (f"f1,30,24,0 nan {encoded}", r"triple 1: confidence nan of class 0"),
        (f"f1,30,24,0 0.5 {encoded} 1 -0.1 {encoded}", r"triple 2: confidence -0.1 of class 1"),
        (f"f1,30,24,2 1.5 {encoded}", r"confidence 1.5 of class 2; confidences are prob"),
        (f"f1,30,24,0 inf {encoded}", r"confidence inf"),
        (f"f1,0,24,0 0.5 {encoded}", r"a field of 0x24 pixels"),
        (f"f1,30,24,0 0.5 {encoded} 1", r"4 values in PredictionString"),
        (f"f1,30,24,19 0.5 {encoded}", r"class 19 outside 0..18"),
        (f"f1,30,24,x 0.5 {encoded}", r"does not start with a class number"),
        (f"f1,30,x,0 0.5 {encoded}", r"ImageWidth/ImageHeight are not integers"),
        (f"f1,40,24,0 0.5 {encoded}", r"run lengths cover 720 pixels, not the field's 40x24"),
        (f"f1,30,24,0 0.5 {_text(b'hello world')}", r"a mask whose"),
        (f"f1,30,24,0 0.5 {encoded}\nf1,30,24,", r"field f1 appears twice"),
    ]


@pytest.mark.parametrize("case", range(12))
def test_submission_rows_that_cannot_be_scored_are_refused(tmp_path, case):
    cells, _ = _truth(tmp_path)
    row, message = _bad_rows(cells)[case]
    (tmp_path / "s.csv").write_text(HEADER + row + "\n")
    with pytest.raises(InputError, match=r"s.csv, line \d: .*" + message):
        read_submission(tmp_path / "s.csv")


def _cell_label_files():
    """(scheme, cells.csv text, what the error must say)."""
    return [
        ("hpa2021", "ID,cell,Label\nf1,1,0\nf1,2,\n",
         r"line 3: cell 2 of f1 has an empty Label; .* Negative: write 18"),
        ("hpa2021", "ID,cell,Label\nf1,1,0\nf1,1,2\n", r"line 3: cell 1 of f1 is listed twice"),
        ("hpa2021", "ID,cell,Label\nf1,1.5,0\n", r"line 2: cell '1.5' is not a cell number"),
        ("hpa2021", "ID,cell,Label\nf1,x,0\n", r"line 2: cell 'x' is not a cell number"),
        ("hpa2021", "ID,cell,Label\nf1,0,0\n", r"line 2: cell 0; cells are numbered from 1"),
        ("hpa2021", "ID,cell,Label\nf1,1,19\n", r"line 2: .*class index 19 is out of range"),
        ("hpa2021", "ID,cell,Label\n,1,0\n", r"line 2: no field ID"),
        ("hpa2018", "Id,cell,Label\nf1,1,28\n", r"line 2: .*class index 28 is out of range"),
    ]  # fmt: skip


@pytest.mark.parametrize("case", range(8))
def test_cell_label_rows_that_cannot_be_truth_are_refused(tmp_path, case):
    from hpa_keras.data.cell_records import read_cell_labels

    scheme, text, message = _cell_label_files()[case]
    (tmp_path / "cells.csv").write_text(text)
    with pytest.raises(InputError, match=r"cells.csv, " + message):
        read_cell_labels(tmp_path / "cells.csv", scheme)


def test_an_empty_label_is_no_class_in_2018_and_a_prediction_table_may_have_it(tmp_path):
    from hpa_keras.data.cell_records import read_cell_labels

    (tmp_path / "a.csv").write_text("Id,cell,Label\nf1,1,\nf1,2,3 4\n")
    assert read_cell_labels(tmp_path / "a.csv", "hpa2018") == {"f1": {1: [], 2: [3, 4]}}
    (tmp_path / "b.csv").write_text("ID,cell,Label\nf1,1,\nf1,2,18\n")
    table = read_cell_labels(tmp_path / "b.csv", "hpa2021", truth=False)
    assert table == {"f1": {1: [], 2: [18]}}


@pytest.mark.parametrize(
    "rows, message",
    [
        ({1: [0], 2: [0, 2], 3: [18], 999: [1]}, r"f1: cell label rows for cell 999 of field f1, "
         r"which its mask does not have \(3 cells, numbers 1-3\)"),
        ({1: [0], 3: [18]}, r"f1: cell 2 of field f1 has no cell label row \(1 cells without"),
        ({}, r"cell 1 of field f1 has no cell label row \(3 cells without one\)"),
    ],
)  # fmt: skip
def test_truth_rows_must_be_the_masks_cells(tmp_path, rows, message):
    cells, _ = _truth(tmp_path)
    text = prediction_string(cells, {number: np.full(19, 0.5) for number in (1, 2, 3)})
    write_submission(tmp_path / "s.csv", [("f1", 30, 24, text)])
    with pytest.raises(InputError, match=message):
        submission_fields(read_submission(tmp_path / "s.csv"), tmp_path, {"f1": rows}, 19)


def _cli_cases(tmp_path, cells):
    """(submission text, cells.csv text, what stderr must name)."""
    good = prediction_string(cells, {number: np.full(19, 0.5) for number in (1, 2, 3)})
    truth = "ID,cell,Label\nf1,1,0\nf1,2,0|2\nf1,3,18\n"
    return [
        (f"f1,30,24,0 nan {encode_binary_mask(cells == 1)}", truth, "s.csv, line 2: triple 1"),
        (f"f1,60,24,0 0.5 {encode_binary_mask(cells == 1)}", truth, "s.csv, line 2: a mask"),
        (f"f1,30,24,{good}", truth + "f1,4,1\n", "cell label rows for cell 4 of field f1"),
        (f"f1,30,24,{good}", "ID,cell,Label\nf1,1,0\nf1,2,\nf1,3,18\n", "cells.csv, line 3"),
        (f"f1,30,24,{good}", "ID,cell,Label\nf1,1,0\nf1,3,18\n", "cell 2 of field f1 has no"),
        (f"f1,30,24,{good}\nf2,30,24,", truth, "1 fields not in the truth"),
    ]  # fmt: skip


@pytest.mark.parametrize("case", range(6))
def test_cli_evaluate_cells_refuses_in_one_line_and_writes_nothing(tmp_path, capsys, case):
    from hpa_keras.cli import main

    cells, _ = _truth(tmp_path)
    submission, truth, message = _cli_cases(tmp_path, cells)[case]
    (tmp_path / "s.csv").write_text(HEADER + submission + "\n")
    (tmp_path / "cells.csv").write_text(truth)
    argv = ["evaluate", "--cells", "--submission", str(tmp_path / "s.csv"), "--masks",
            str(tmp_path), "--cell-labels", str(tmp_path / "cells.csv"), "--out",
            str(tmp_path / "report")]  # fmt: skip
    assert main(argv) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("hpa-keras evaluate: error: ")
    assert message in error[0]
    assert not (tmp_path / "report").exists()
    good = prediction_string(cells, {number: np.full(19, 0.5) for number in (1, 2, 3)})
    write_submission(tmp_path / "s.csv", [("f1", 30, 24, good)])
    (tmp_path / "cells.csv").write_text("ID,cell,Label\nf1,1,0\nf1,2,0|2\nf1,3,18\n")
    assert main(argv) == 0  # the same files, corrected, are scored


@pytest.mark.parametrize("data", [b"ID,cell,Label\nab\xff,1,0\n", b"ID,cell,Label\nab\x00,1,0\n"])
def test_cell_tables_that_are_not_utf8_text_are_named(tmp_path, data):
    from hpa_keras.cells.submission import read_submission
    from hpa_keras.data.cell_records import cell_label_scheme, read_cell_labels

    path = tmp_path / "cells.csv"
    path.write_bytes(data)
    for read in (
        lambda: read_cell_labels(path, "hpa2021"),
        lambda: cell_label_scheme(path),
        lambda: read_submission(path, 19),
    ):
        with pytest.raises(InputError, match=rf"{path}: not (UTF-8|a CSV) text"):
            read()
