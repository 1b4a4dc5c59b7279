"""Cells: masks (rules, files), segmentation, matching, per-cell demo truth, cell records."""

import csv
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from hpa_keras.cells.matching import iou_matrix, match_cells
from hpa_keras.cells.segment import SegmentationSettings, segment_field, segment_folder
from hpa_keras.cli import main
from hpa_keras.data.cells import (
    cell_geometry,
    check_masks,
    crop_window,
    find_mask_files,
    read_field_masks,
    read_mask,
    write_mask,
)
from hpa_keras.errors import InputError

# ------------------------------------------------------------------ masks


def _labels(count: int, side: int = 64) -> np.ndarray:
    """A label image with cells 1..count, one pixel each (at least), row by row."""
    labels = np.zeros((side, side), np.int32)
    labels.ravel()[:count] = np.arange(1, count + 1)
    return labels


@pytest.mark.parametrize(("count", "dtype"), [(1, np.uint8), (254, np.uint8), (255, np.uint16)])
def test_write_mask_switches_to_16_bit_at_255_cells_and_reads_back(tmp_path, count, dtype):
    labels = _labels(count)
    write_mask(tmp_path / "a_cells.png", labels)
    stored = cv2.imread(str(tmp_path / "a_cells.png"), cv2.IMREAD_UNCHANGED)
    assert stored.dtype == dtype
    np.testing.assert_array_equal(read_mask(tmp_path / "a_cells.png"), labels)


def test_an_8_bit_mask_using_255_is_refused_as_possibly_wrapped(tmp_path):
    cv2.imwrite(str(tmp_path / "a_cells.png"), _labels(255).astype(np.uint8))
    with pytest.raises(InputError, match=r"a_cells.png: an 8-bit mask that uses the number 255"):
        read_mask(tmp_path / "a_cells.png")


def test_masks_as_npy_npz_and_tiff_read_alike(tmp_path):
    labels = _labels(300).astype(np.uint16)
    np.save(tmp_path / "a_cells.npy", labels)
    np.savez_compressed(tmp_path / "b_cells.npz", labels)
    cv2.imwrite(str(tmp_path / "c_cells.tif"), labels)
    for name in ("a_cells.npy", "b_cells.npz", "c_cells.tif"):
        np.testing.assert_array_equal(read_mask(tmp_path / name), labels)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((8, 8, 3), np.uint8), "one plane of cell numbers"),
        (np.full((8, 8), 0.5, np.float32), "pixel type float32"),
        (np.full((8, 8), -1, np.int32), "negative numbers"),
    ],
)
def test_bad_mask_arrays_are_named(tmp_path, array, message):
    np.save(tmp_path / "a_cells.npy", array)
    with pytest.raises(InputError, match=message) as error:
        read_mask(tmp_path / "a_cells.npy")
    assert "a_cells.npy" in str(error.value)


def test_field_rules_size_no_cells_and_orphan_nuclei():
    cells = np.zeros((10, 12), np.uint16)
    cells[2:5, 2:5], cells[6:9, 6:9] = 1, 2
    nuclei = np.zeros_like(cells)
    nuclei[3, 3] = 1
    check_masks(cells, nuclei, (10, 12), "c.png", "n.png")  # fine
    with pytest.raises(InputError, match=r"c.png: mask of 12x10 pixels, but its field is 14x10"):
        check_masks(cells, None, (10, 14), "c.png")
    with pytest.raises(InputError, match=r"c.png: the mask has no cells"):
        check_masks(np.zeros_like(cells), None, (10, 12), "c.png")
    nuclei[7, 7] = 3
    with pytest.raises(InputError, match=r"n.png: nucleus number 3 not in the cell mask c.png"):
        check_masks(cells, nuclei, (10, 12), "c.png", "n.png")


def test_mask_files_are_found_under_the_tools_names_and_ambiguity_is_an_error(tmp_path):
    write_mask(tmp_path / "a_predictedmask.png", _labels(3))
    write_mask(tmp_path / "b_cells.png", _labels(3))
    write_mask(tmp_path / "b_nuclei.png", _labels(3))
    assert find_mask_files(tmp_path, "a") == (tmp_path / "a_predictedmask.png", None)
    assert find_mask_files(tmp_path, "b") == (tmp_path / "b_cells.png", tmp_path / "b_nuclei.png")
    write_mask(tmp_path / "a_cp_masks.png", _labels(3))
    with pytest.raises(InputError, match="several masks of one kind"):
        find_mask_files(tmp_path, "a")
    with pytest.raises(InputError, match=r"no cell mask for field c"):
        read_field_masks(tmp_path, "c", (64, 64))


def test_cell_geometry_boxes_areas_and_flags_against_numpy():
    cells = np.zeros((40, 50), np.int32)
    cells[0:10, 5:20] = 3  # touches the top edge
    cells[15:30, 15:35] = 7
    cells[32:34, 40:42] = 9  # 4 px, under a tenth of the median
    cells[20:22, 40:44] = 7  # a second piece of cell 7
    geometry = {cell.number: cell for cell in cell_geometry(cells)}
    assert sorted(geometry) == [3, 7, 9]
    for number, cell in geometry.items():
        rows, columns = np.nonzero(cells == number)
        assert cell.box == (rows.min(), columns.min(), rows.max() + 1, columns.max() + 1)
        assert cell.area == rows.size
    assert geometry[3].edge and not geometry[7].edge
    assert geometry[9].small and not geometry[3].small


def test_crop_window_is_centred_square_with_margin():
    top, left, side = crop_window((10, 20, 30, 60), 0.1)  # 20 x 40 box
    assert side == 48
    assert (top + side / 2, left + side / 2) == (20, 40)


# ------------------------------------------------------------------ matching


def test_match_cells_against_brute_force_iou():
    rng = np.random.default_rng(1)
    reference = np.zeros((60, 60), np.int32)
    predicted = np.zeros((60, 60), np.int32)
    for number in range(1, 6):
        y, x = 5 + 10 * (number - 1), int(rng.integers(5, 40))
        reference[y : y + 8, x : x + 12] = number
        shift = int(rng.integers(0, 8))
        predicted[y : y + 8, x + shift : x + shift + 12] = 10 + number
    iou, predicted_numbers, reference_numbers = iou_matrix(predicted, reference)
    for i, p in enumerate(predicted_numbers):
        for j, r in enumerate(reference_numbers):
            a, b = predicted == p, reference == r
            assert iou[i, j] == pytest.approx((a & b).sum() / (a | b).sum())
    result = match_cells(predicted, reference, 0.5)
    expected = {(int(p), int(r)) for (i, p) in enumerate(predicted_numbers)
                for (j, r) in enumerate(reference_numbers) if iou[i, j] >= 0.5}  # fmt: skip
    assert {(p, r) for p, r, _ in result.matches} == expected
    assert result.precision == len(expected) / 5 and result.recall == len(expected) / 5


# ------------------------------------------------------------------ segmentation


def _two_touching_cells(side=256):
    """Two round cells that touch, each with a nucleus, and one lone cell: (blue, red, truth)."""
    yy, xx = np.mgrid[:side, :side]
    truth = np.zeros((side, side), np.int32)
    blue = np.zeros((side, side), np.float32)
    red = np.zeros((side, side), np.float32)
    centres = [(80, 70), (80, 160), (190, 120)]
    distance = np.full((side, side), np.inf)
    for number, (y, x) in enumerate(centres, start=1):
        here = np.hypot(yy - y, xx - x)
        inside = (here < 48) & (here < distance)
        truth[inside] = number
        distance = np.minimum(distance, here)
        blue[here < 18] = 0.8
    red[truth > 0] = 0.5
    # a dim valley where the two cells meet, as real cell borders are
    border = cv2.dilate(
        (cv2.Laplacian(truth.astype(np.float32), cv2.CV_32F) != 0).astype(np.uint8),
        np.ones((3, 3), np.uint8),
    )
    red[(border > 0) & (truth > 0)] = 0.15
    return blue, red, truth


def test_segment_field_finds_touching_cells_and_numbers_nuclei_as_cells():
    blue, red, truth = _two_touching_cells()
    cells, nuclei = segment_field(blue, red, SegmentationSettings(working_size=256))
    assert cells.shape == truth.shape and cells.dtype == np.int32
    result = match_cells(cells, truth, 0.5)
    assert result.num_predicted == 3 and len(result.matches) == 3
    assert result.mean_iou > 0.85
    assert set(np.unique(nuclei)) <= set(np.unique(cells))
    for number in range(1, 4):  # each nucleus lies in the cell of its number
        assert np.all(cells[nuclei == number] == number)


def test_segment_field_works_at_a_fixed_scale_whatever_the_field_size():
    blue, red, truth = _two_touching_cells(256)
    large_blue = cv2.resize(blue, (1024, 1024), interpolation=cv2.INTER_LINEAR)
    large_red = cv2.resize(red, (1024, 1024), interpolation=cv2.INTER_LINEAR)
    cells, _ = segment_field(large_blue, large_red, SegmentationSettings(working_size=256))
    assert cells.shape == (1024, 1024)
    large_truth = cv2.resize(truth, (1024, 1024), interpolation=cv2.INTER_NEAREST)
    assert len(match_cells(cells, large_truth, 0.5).matches) == 3


def test_segmentation_does_not_depend_on_exposure_or_bit_depth():
    """A dim exposure, or 12-bit data in 16-bit files, is cut where a bright 8-bit field is."""
    blue, red, _ = _two_touching_cells()
    settings = SegmentationSettings(working_size=256)
    bright, _ = segment_field(np.rint(blue * 255).astype(np.uint8),
                              np.rint(red * 255).astype(np.uint8), settings)  # fmt: skip
    dim, _ = segment_field(np.rint(blue * 4095).astype(np.uint16),
                           np.rint(red * 4095).astype(np.uint16), settings)  # fmt: skip
    assert bright.max() == 3
    np.testing.assert_array_equal(bright, dim)


def test_an_empty_field_has_no_cells():
    cells, nuclei = segment_field(np.zeros((64, 64), np.uint8), np.zeros((64, 64), np.uint8))
    assert not cells.any() and not nuclei.any()


def _write_field(folder: Path, field_id: str, blue, red):
    folder.mkdir(parents=True, exist_ok=True)
    for name, channel in (("blue", blue), ("red", red), ("yellow", red), ("green", red * 0)):
        cv2.imwrite(str(folder / f"{field_id}_{name}.png"), np.rint(channel * 255).astype(np.uint8))


def test_segment_folder_writes_masks_keeps_them_on_rerun_and_skips_empty_fields(tmp_path):
    blue, red, _ = _two_touching_cells()
    _write_field(tmp_path / "images", "f1", blue, red)
    _write_field(tmp_path / "images", "f2", blue * 0, red * 0)
    summary = segment_folder(tmp_path / "images", tmp_path / "masks", workers=1, progress=False)
    assert summary["segmented"] == 1 and summary["no_cells"] == ["f2"]
    cells, nuclei = read_field_masks(tmp_path / "masks", "f1", (256, 256))
    assert cells.max() == 3 and nuclei is not None
    assert not (tmp_path / "masks" / "f2_cells.png").exists()
    before = (tmp_path / "masks" / "f1_cells.png").stat().st_mtime_ns
    again = segment_folder(tmp_path / "images", tmp_path / "masks", workers=1, progress=False)
    assert again["kept"] == 1 and again["segmented"] == 0
    assert [field["id"] for field in again["fields"]] == ["f1"]
    assert (tmp_path / "masks" / "f1_cells.png").stat().st_mtime_ns == before


def test_segment_cli_names_a_field_without_blue(tmp_path, capsys):
    blue, red, _ = _two_touching_cells(64)
    _write_field(tmp_path / "images", "f0", blue, red)  # segmented before f1 stops the run
    _write_field(tmp_path / "images", "f1", blue, red)
    (tmp_path / "images" / "f1_blue.png").unlink()
    status = main(["segment", "--images", str(tmp_path / "images"), "--out", str(tmp_path / "m"),
                   "--workers", "1", "--quiet"])  # fmt: skip
    assert status == 2
    error = capsys.readouterr().err
    assert "f1_" in error and "no blue (nucleus) channel" in error
    assert "Traceback" not in error
    assert not (tmp_path / "m").exists()  # f0's masks went with the folder the run made


# ------------------------------------------------------------------ synthetic cells


def test_render_field_without_expression_is_render_sample_and_stains_do_not_depend_on_it():
    from hpa_keras.synthetic.generator import render_field, render_sample

    labels = (0, 19, 25)
    plain = render_sample(np.random.default_rng(3), labels, 96)
    same, _, none = render_field(np.random.default_rng(3), labels, 96)
    np.testing.assert_array_equal(plain, same)
    assert none is None
    per_cell, field, shown = render_field(
        np.random.default_rng(3), labels, 96, expression_rng=np.random.default_rng(4)
    )
    for channel in (0, 2, 3):  # red, blue, yellow: the same cells and stains
        np.testing.assert_array_equal(per_cell[..., channel], plain[..., channel])
    assert set(shown) == set(range(1, len(field.cells) + 1))


@pytest.fixture(scope="module")
def cell_demo(tmp_path_factory):
    from hpa_keras.synthetic.generator import DemoDataSettings, make_demo_data

    root = tmp_path_factory.mktemp("cells") / "demo"
    make_demo_data(
        root,
        DemoDataSettings(num_samples=24, image_size=96, seed=2, cells=True, label_balance=1.0),
        workers=1,
        progress=False,
    )
    return root


def _cell_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_demo_cells_masks_and_cells_csv_agree_and_field_labels_are_the_union(cell_demo):
    from hpa_keras.data.labels import read_labels

    table = read_labels(cell_demo / "train.csv")
    rows = _cell_rows(cell_demo / "cells.csv")
    by_field = {}
    for row in rows:
        by_field.setdefault(row["Id"], {})[int(row["cell"])] = {
            int(label) for label in row["Label"].split()
        }
    assert set(by_field) == set(table.ids)
    partial = 0
    for field_id, labels in zip(table.ids, table.labels, strict=True):
        cells, nuclei = read_field_masks(cell_demo / "masks", field_id, (96, 96))
        numbers = set(np.unique(cells)) - {0}
        assert numbers == set(by_field[field_id]) == set(range(1, len(numbers) + 1))
        assert set(np.unique(nuclei)) - {0} <= numbers
        assert set(labels) == set().union(*by_field[field_id].values())
        partial += any(
            label not in shown for label in labels for shown in by_field[field_id].values()
        )
    assert partial > 0  # some fields have a class in only part of their cells
    assert (cell_demo / "test_cells.csv").is_file()


def test_demo_cells_in_the_2021_scheme_have_negative_cells(tmp_path):
    from hpa_keras.data.labels import read_labels
    from hpa_keras.synthetic.generator import DemoDataSettings, make_demo_data

    make_demo_data(
        tmp_path / "d",
        DemoDataSettings(
            num_samples=12, image_size=64, seed=1, cells=True, scheme="hpa2021", test_fraction=0.25
        ),  # fmt: skip
        workers=1,
        progress=False,
    )
    assert (tmp_path / "d" / "train.csv").read_text().startswith("ID,Label\n")
    assert (
        (tmp_path / "d" / "sample_submission.csv")
        .read_text()
        .startswith("ID,ImageWidth,ImageHeight,PredictionString\n")
    )
    rows = _cell_rows(tmp_path / "d" / "cells.csv")
    labels = [set(map(int, row["Label"].split("|"))) for row in rows]
    assert all(labels) and all(max(cell) <= 18 for cell in labels)
    assert any(18 in cell for cell in labels)
    table = read_labels(tmp_path / "d" / "train.csv")
    assert table.scheme == "hpa2021"
    by_field = {}
    for row, cell in zip(rows, labels, strict=True):
        by_field.setdefault(row["ID"], set()).update(cell)
    for field_id, field_labels in zip(table.ids, table.labels, strict=True):
        # Negative only alone, and only when every cell is Negative, as in the 2021 labels
        assert set(field_labels) == ((by_field[field_id] - {18}) or {18})
    # the unlabeled test fields, cut into cells: a 2021 sample submission means 2021 classes
    from hpa_keras.data.conversion import ConversionSettings, make_tfrecords
    from hpa_keras.data.tfrecords import read_shard, verify_tfrecords

    settings = ConversionSettings(
        masks=str(tmp_path / "d" / "masks"), cell_labels=str(tmp_path / "d" / "test_cells.csv")
    )
    submission = tmp_path / "d" / "sample_submission.csv"
    manifest = make_tfrecords(
        tmp_path / "d" / "test", tmp_path / "test-cells", labels=submission,
        settings=settings, workers=1, progress=False,
    )  # fmt: skip
    assert manifest.scheme == "hpa2021" and manifest.split == "test"
    records = read_shard(tmp_path / "test-cells" / manifest.shards[0]["file"])
    assert all(record["fold"] == -1 and record["labels"] == [] for record in records)
    assert all(record["cell"]["has_cell_labels"] for record in records)
    assert verify_tfrecords(tmp_path / "test-cells", progress=False) == []


# ------------------------------------------------------------------ cell records


def _make_cell_records(demo: Path, out: Path, **options):
    from hpa_keras.data.conversion import ConversionSettings, make_tfrecords

    settings = ConversionSettings(masks=str(demo / "masks"), num_folds=3, num_shards=3, **options)
    return make_tfrecords(
        demo / "train", out, labels=demo / "train.csv", settings=settings, workers=1,
        progress=False,
    )  # fmt: skip


def test_cell_records_one_per_cell_with_mask_box_labels_and_whole_fields_in_a_fold(
    cell_demo, tmp_path
):
    from hpa_keras.data.images import index_image_folder, read_sample
    from hpa_keras.data.labels import read_labels
    from hpa_keras.data.tfrecords import read_shard

    manifest = _make_cell_records(
        cell_demo, tmp_path / "records", cell_size=24, cell_labels=str(cell_demo / "cells.csv")
    )
    rows = _cell_rows(cell_demo / "cells.csv")
    assert manifest.kind == "cells" and manifest.num_records == len(rows)
    assert manifest.image_size == 24 and manifest.cells["num_with_cell_labels"] == len(rows)
    own = {(row["Id"], int(row["cell"])): sorted(map(int, row["Label"].split())) for row in rows}
    table = read_labels(cell_demo / "train.csv")
    index = index_image_folder(cell_demo / "train")
    fold_of_field, seen = {}, 0
    for shard in manifest.shards:
        for record in read_shard(tmp_path / "records" / shard["file"]):
            cell = record["cell"]
            field_id, number = cell["field_id"], cell["cell"]
            assert record["id"] == f"{field_id}_{number}"
            assert fold_of_field.setdefault(field_id, record["fold"]) == record["fold"]
            assert record["image"].shape == (24, 24, 4) and cell["mask"].shape == (24, 24)
            assert record["labels"] == list(table.labels_of(field_id))
            assert cell["cell_labels"] == own[(field_id, number)] and cell["has_cell_labels"]
            masks, _ = read_field_masks(cell_demo / "masks", field_id, (96, 96))
            rows_, columns = np.nonzero(masks == number)
            box = (rows_.min(), columns.min(), rows_.max() + 1, columns.max() + 1)
            assert cell["box"] == box and cell["area"] == rows_.size
            if seen == 0:  # one crop checked pixel for pixel against a direct cut
                from hpa_keras.data.cells import crop_window, cut_window, resize_window

                field = read_sample(index[field_id])
                top, left, side = crop_window(box, 0.1)
                expected = resize_window(cut_window(field, top, left, side), 24)
                np.testing.assert_array_equal(record["image"], expected)
            seen += 1
    assert seen == len(rows)


def test_cell_records_zero_context_blanks_pixels_outside_the_cell(cell_demo, tmp_path):
    from hpa_keras.data.tfrecords import read_shard

    manifest = _make_cell_records(cell_demo, tmp_path / "r", cell_size=32, cell_context="zero")
    record = read_shard(tmp_path / "r" / manifest.shards[0]["file"])[0]
    outside = record["cell"]["mask"] == 0
    assert outside.any() and not record["image"][outside].any()
    assert not record["cell"]["has_cell_labels"]


def test_cell_record_bad_inputs_are_named(cell_demo, tmp_path):
    import shutil

    masks = tmp_path / "masks"
    shutil.copytree(cell_demo / "masks", masks)
    demo_ids = sorted(path.name.rsplit("_", 1)[0] for path in masks.glob("*_cells.png"))
    first = demo_ids[0]

    from hpa_keras.data.conversion import ConversionSettings, make_tfrecords

    def convert(out, **options):
        settings = ConversionSettings(masks=str(masks), num_folds=2, **options)
        return make_tfrecords(cell_demo / "train", tmp_path / out, labels=cell_demo / "train.csv",
                              settings=settings, workers=1, progress=False)  # fmt: skip

    with pytest.raises(InputError, match="--image-size resizes fields"):
        convert("a", image_size=32)
    labels = tmp_path / "cells.csv"
    labels.write_text(f"ID,cell,Label\n{first},999,0\n")
    with pytest.raises(InputError, match=rf"cell label rows for cell 999 of field {first}"):
        convert("b", cell_labels=str(labels))
    write_mask(masks / f"{first}_cells.png", np.ones((50, 50), np.uint8))
    with pytest.raises(
        InputError, match=rf"{first}_cells.png: mask of 50x50 pixels, but its field is 96x96"
    ):
        convert("c")
    # nothing half-written: no manifest, no temporary files (finished shards stay, for a rerun)
    assert not (tmp_path / "c" / "manifest.json").exists()
    assert not list((tmp_path / "c").glob(".*.tmp"))
    (masks / f"{first}_cells.png").unlink()
    (masks / f"{first}_nuclei.png").unlink()
    with pytest.raises(InputError, match=rf"no cell mask for field {first}"):
        convert("d")


def test_show_outlines_and_numbers_cells(cell_demo, tmp_path, capsys):
    field_id = _cell_rows(cell_demo / "cells.csv")[0]["Id"]
    out = tmp_path / "cells.png"
    assert main(["show", str(cell_demo), "--id", field_id, "--masks", str(cell_demo / "masks"),
                 "--out", str(out)]) == 0  # fmt: skip
    assert "cells outlined" in capsys.readouterr().out
    assert cv2.imread(str(out)) is not None
    labelled = tmp_path / "labelled.png"
    masks, truth = str(cell_demo / "masks"), str(cell_demo / "cells.csv")
    assert main(["show", str(cell_demo), "--id", field_id, "--masks", masks,
                 "--cell-labels", truth, "--out", str(labelled)]) == 0  # fmt: skip
    assert cv2.imread(str(labelled)) is not None
    assert main(["show", str(cell_demo), "--id", field_id, "--cell-labels",
                 str(cell_demo / "cells.csv"), "--out", str(labelled)]) == 2  # fmt: skip
    assert "give the masks too" in capsys.readouterr().err


# ------------------------------------------------------------------ real fields


def test_segmentation_meets_the_target_against_the_hpa_masks(real_2021_folder):
    """Precision and recall at IoU 0.5 of at least 0.8 against HPA-Cell-Segmentation's masks on
    the five real 2048 px fields (README, "Cells")."""
    from hpa_keras.cells.segment import read_segmentation_channels
    from hpa_keras.data.images import index_image_folder

    index = index_image_folder(real_2021_folder / "images")
    matched = predicted = reference_count = 0
    for field_id, paths in sorted(index.items()):
        reference = read_mask(real_2021_folder / "masks" / f"{field_id}_predictedmask.png")
        cells, _ = segment_field(*read_segmentation_channels(paths))
        result = match_cells(cells, reference, 0.5)
        matched += len(result.matches)
        predicted += result.num_predicted
        reference_count += result.num_reference
    assert matched / predicted >= 0.8 and matched / reference_count >= 0.8


def test_hpa_masks_make_cell_records_of_the_real_fields(real_2021_folder, tmp_path):
    from hpa_keras.data.conversion import ConversionSettings, make_tfrecords

    manifest = make_tfrecords(
        real_2021_folder / "images",
        tmp_path / "records",
        labels=real_2021_folder / "labels.csv",
        settings=ConversionSettings(
            masks=str(real_2021_folder / "masks"), num_folds=2, cell_size=64
        ),  # fmt: skip
        workers=1,
        progress=False,
    )
    assert manifest.scheme == "hpa2021"
    assert manifest.num_records == 19 + 8 + 18 + 10 + 46  # the HPA masks' cells
    assert manifest.cells["num_edge"] > 0


@pytest.fixture(scope="module")
def cell_run(cell_demo, tmp_path_factory):
    """A tiny GAP-Net trained for one epoch on the demo's cell records."""
    root = tmp_path_factory.mktemp("cell-run")
    _make_cell_records(cell_demo, root / "records", cell_size=24)
    records, run = str(root / "records"), str(root / "run")
    status = main(["fit", "--data", records, "--model", "gapnet", "--tiny", "--epochs", "1",
                   "--batch-size", "16", "--out", run])  # fmt: skip
    assert status == 0
    return root


def test_fit_trains_on_cell_records_and_remembers_it(cell_run):
    import json

    assert (cell_run / "run" / "model.keras").is_file()
    assert json.loads((cell_run / "run" / "input.json").read_text())["kind"] == "cells"


def test_predict_labels_every_cell_and_evaluate_scores_the_submission(cell_run, cell_demo, capsys):
    import json

    from hpa_keras.cells.submission import read_submission

    out = cell_run / "submission.csv"
    records = str(cell_run / "records")
    assert main(["predict", "--run", str(cell_run / "run"), "--data", records,
                 "--out", str(out)]) == 0  # fmt: skip
    submission = read_submission(out, 28)
    rows = _cell_rows(cell_demo / "cells.csv")
    assert set(submission) == {row["Id"] for row in rows}
    for field_id, prediction in submission.items():
        cells, _ = read_field_masks(cell_demo / "masks", field_id, (96, 96))
        masks = {id(mask): mask for _, _, mask in prediction.items}
        assert len(prediction.items) == 28 * len(masks) == 28 * int(cells.max())
        for mask in masks.values():  # each decoded mask is exactly one cell of the mask
            numbers = np.unique(cells[mask])
            assert numbers.size == 1 and np.array_equal(cells == numbers[0], mask)
    table = _cell_rows(cell_run / "submission_cells.csv")
    assert len(table) == len(rows) and list(table[0])[:3] == ["Id", "cell", "Label"]
    assert list(table[0])[-1] == "entropy"
    for row in table[:5]:  # each cell's predictive entropy, recomputed in bits
        p = np.clip([float(value) for value in list(row.values())[3:-1]], 1e-12, 1 - 1e-12)
        assert len(p) == 28
        bits = -(p * np.log2(p) + (1 - p) * np.log2(1 - p)).mean()
        assert float(row["entropy"]) == pytest.approx(bits, abs=2e-4)
    capsys.readouterr()
    assert main(["evaluate", "--cells", "--submission", str(out), "--masks",
                 str(cell_demo / "masks"), "--cell-labels", str(cell_demo / "cells.csv"),
                 "--out", str(cell_run / "report")]) == 0  # fmt: skip
    assert "mAP" in capsys.readouterr().out
    summary = json.loads((cell_run / "report" / "cells_summary.json").read_text())
    assert 0.0 <= summary["mAP"] <= 1.0 and summary["scheme"] == "hpa2018"


def test_a_calibrated_cell_run_shows_calibrated_probabilities_and_keeps_its_labels(
    cell_run, tmp_path, capsys
):
    """The per-cell table's probabilities go through the folder's calibration maps (here a
    temperature of 3 for every class); the classes and the submission stay as predicted."""
    import shutil

    from hpa_keras.classes import CLASS_NAMES
    from hpa_keras.runs.documents import write_calibration
    from hpa_keras.scoring.calibration import TEMPERATURE, Calibration, ClassCalibration

    run = tmp_path / "calibrated"
    shutil.copytree(cell_run / "run", run)
    maps = Calibration(
        classes=tuple(ClassCalibration(name, TEMPERATURE, temperature=3.0) for name in CLASS_NAMES)
    )
    write_calibration(run, maps)
    records = str(cell_run / "records")
    outputs = {}
    for name, extra in (("calibrated", []), ("as-predicted", ["--uncalibrated"])):
        out = tmp_path / f"{name}.csv"
        assert main(["predict", "--run", str(run), "--data", records, "--out", str(out),
                     *extra]) == 0  # fmt: skip
        said = capsys.readouterr().out
        assert ("probabilities calibrated" in said) == (name == "calibrated")
        outputs[name] = (out.read_text(), _cell_rows(tmp_path / f"{name}_cells.csv"))
    (calibrated_submission, calibrated), (submission, predicted) = outputs.values()
    assert calibrated_submission == submission
    assert [row["Label"] for row in calibrated] == [row["Label"] for row in predicted]
    as_predicted = np.array([[float(v) for v in list(row.values())[3:-1]] for row in predicted])
    shown = np.array([[float(v) for v in list(row.values())[3:-1]] for row in calibrated])
    np.testing.assert_allclose(shown, maps.apply(as_predicted), atol=2e-4)
    assert np.abs(shown - as_predicted).max() > 0.01  # the map moved them


def test_cells_are_predicted_through_the_openvino_engine_as_through_keras(cell_run, tmp_path):
    from hpa_keras.inference.engine import openvino_available

    if not openvino_available():
        pytest.skip("OpenVINO is not installed")
    run = tmp_path / "run"
    shutil.copytree(cell_run / "run", run)
    records, tables = str(cell_run / "records"), {}
    for engine in ("keras", "openvino"):
        out = tmp_path / f"{engine}.csv"
        precision = ["--precision", "float32"] if engine == "openvino" else []
        assert main(["predict", "--run", str(run), "--data", records, "--out", str(out),
                     "--engine", engine, *precision]) == 0  # fmt: skip
        tables[engine] = _cell_rows(tmp_path / f"{engine}_cells.csv")
    assert (run / "engine" / "views-1" / "model.xml").is_file()
    assert [row["Label"] for row in tables["keras"]] == [row["Label"] for row in tables["openvino"]]
    values = {
        engine: np.array([[float(v) for v in list(row.values())[3:-1]] for row in rows])
        for engine, rows in tables.items()
    }
    np.testing.assert_allclose(values["openvino"], values["keras"], atol=2e-4)


def test_cell_runs_and_field_records_do_not_mix(cell_run, cell_demo, training_records, capsys):
    run = str(cell_run / "run")
    assert main(["predict", "--run", run, "--data", str(training_records)]) == 2
    assert "field records, but the run was trained on cells" in capsys.readouterr().err
    assert main(["predict", "--run", run, "--images", str(cell_demo / "test")]) == 2
    assert "the run was trained on cells" in capsys.readouterr().err


def test_a_field_run_refuses_cell_records():
    from hpa_keras.inference.cells import check_run_and_records

    check_run_and_records("fields", "fields", "d")
    check_run_and_records("cells", "cells", "d")
    with pytest.raises(
        InputError, match="d: cell records, but the run was trained on whole fields"
    ):
        check_run_and_records("fields", "cells", "d")


def test_mix_with_fields_is_the_stated_formula():
    from hpa_keras.inference.cells import mix_with_fields

    cells = np.array([[0.2, 0.8], [0.6, 0.0], [1.0, 1.0]])
    fields = np.array([[0.5, 0.5], [0.0, 1.0]])
    mixed = mix_with_fields(["a_1", "a_2", "b_1"], cells, ["a", "b"], fields, 0.25)
    expected = 0.75 * cells + 0.25 * fields[[0, 0, 1]]
    np.testing.assert_allclose(mixed, expected)
    with pytest.raises(InputError, match="field c has cells but the field run did not predict it"):
        mix_with_fields(["c_1"], cells[:1], ["a"], fields[:1], 0.5)
    with pytest.raises(InputError, match="predicts 3 classes, the cell run 2"):
        mix_with_fields(["a_1"], cells[:1], ["a"], np.ones((1, 3)), 0.5)
    with pytest.raises(InputError, match="--image-weight must be in"):
        mix_with_fields(["a_1"], cells[:1], ["a"], fields[:1], 1.5)


def test_real_fields_segmented_trained_on_and_labelled_cell_by_cell(real_2021_folder, tmp_path):
    """The whole per-cell path on the real 2048 px fields: segment, cut cell records, train a
    tiny multiple-instance run on their 2021 field labels (bags of real cells), predict, and
    read the 2021 submission back: each decoded mask is one segmented cell."""
    from hpa_keras.cells.submission import read_submission
    from hpa_keras.data.conversion import ConversionSettings, make_tfrecords
    from hpa_keras.data.tfrecords import read_manifest

    summary = segment_folder(real_2021_folder / "images", tmp_path / "masks", workers=1,
                             progress=False)  # fmt: skip
    assert summary["segmented"] == 5
    make_tfrecords(
        real_2021_folder / "images", tmp_path / "records", labels=real_2021_folder / "labels.csv",
        settings=ConversionSettings(masks=str(tmp_path / "masks"), cell_size=16, num_folds=2),
        workers=1, progress=False,
    )  # fmt: skip
    manifest = read_manifest(tmp_path / "records")
    per_field = [count for shard in manifest.shards for count in shard["cells_per_field"]]
    assert sorted(per_field) == sorted(summary["cells_per_field"].values())
    run, out = str(tmp_path / "run"), tmp_path / "submission.csv"
    assert main(["fit", "--data", str(tmp_path / "records"), "--model", "gapnet", "--tiny",
                 "--epochs", "1", "--cell-pooling", "lse", "--bag-size", "40",
                 "--bags-per-batch", "1", "--out", run]) == 0  # fmt: skip
    assert main(["predict", "--run", run, "--data", str(tmp_path / "records"),
                 "--out", str(out)]) == 0  # fmt: skip
    submission = read_submission(out, 19)
    assert set(submission) == set(summary["cells_per_field"])
    for field_id, prediction in submission.items():
        cells = read_mask(tmp_path / "masks" / f"{field_id}_cells.png")
        assert (prediction.height, prediction.width) == cells.shape == (2048, 2048)
        masks = {id(mask): mask for _, _, mask in prediction.items}
        assert len(masks) == summary["cells_per_field"][field_id]
        for mask in masks.values():
            numbers = np.unique(cells[mask])
            assert numbers.size == 1 and np.array_equal(cells == numbers[0], mask)


# ---- issue 23, point 6: a cell run's masks and mixed runs must belong to its records


def _other_masks(cell_demo, out, change):
    import shutil

    shutil.copytree(cell_demo / "masks", out)
    for path in sorted(out.glob("*_cells.png")):
        write_mask(path, change(read_mask(path)))
    return out


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda cells: np.kron(cells, np.ones((2, 2), cells.dtype)),
         r"is 192x192, but its cells were cut from a 96x96 field"),
        (lambda cells: cells[:90, :90], r"is 90x90, but its cells were cut from a 96x96 field"),
        (lambda cells: np.roll(cells, 3, axis=1), r"cell \d+ lies at .* but at .* in the records"),
    ],
)  # fmt: skip
def test_predict_refuses_masks_the_cell_records_were_not_cut_from(
    cell_run, cell_demo, tmp_path, capsys, change, message
):
    masks = _other_masks(cell_demo, tmp_path / "masks", change)
    out = tmp_path / "submission.csv"
    assert main(["predict", "--run", str(cell_run / "run"), "--data", str(cell_run / "records"),
                 "--masks", str(masks), "--out", str(out)]) == 2  # fmt: skip
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("hpa-keras predict: error: field ")
    assert __import__("re").search(message, error[0])
    assert not out.exists() and not (tmp_path / "submission_cells.csv").exists()


def test_the_python_api_refuses_a_cell_run_on_images_or_field_records(
    cell_run, cell_demo, training_records
):
    from hpa_keras.inference.predict import predict_images, predict_runs

    with pytest.raises(InputError, match="an image folder, but the run was trained on cells"):
        predict_images(cell_run / "run", cell_demo / "test")
    with pytest.raises(InputError, match="an image folder, but the run was trained on cells"):
        predict_runs([cell_run / "run"], images=cell_demo / "test")
    with pytest.raises(InputError, match="field records, but the run was trained on cells"):
        predict_runs([cell_run / "run"], data=training_records)


def test_image_run_of_another_scheme_is_refused_before_predicting(
    cell_run, runs, training_records, tmp_path, capsys
):
    import json
    import shutil

    from hpa_keras.classes import HPA2021

    field_run = tmp_path / "run2021"
    shutil.copytree(runs[0], field_run)
    settings = json.loads((field_run / "input.json").read_text())
    settings.update(scheme="hpa2021", class_names=list(HPA2021.class_names))
    (field_run / "input.json").write_text(json.dumps(settings))
    argv = ["predict", "--run", str(cell_run / "run"), "--data", str(cell_run / "records"),
            "--out", str(tmp_path / "s.csv"), "--image-data", str(training_records)]  # fmt: skip
    assert main([*argv, "--image-run", str(field_run)]) == 2
    assert "run2021: predicts the hpa2021 scheme's 19 classes, the run it is mixed with the " \
           "hpa2018 scheme's" in capsys.readouterr().err  # fmt: skip
    assert main([*argv, "--image-run", str(cell_run / "run")]) == 2
    assert "field records, but the run was trained on cells" in capsys.readouterr().err
    assert not (tmp_path / "s.csv").exists()


def test_make_tfrecords_and_evaluate_read_an_empty_2021_cell_label_alike(tmp_path):
    from hpa_keras.data.conversion import ConversionSettings, make_tfrecords
    from hpa_keras.synthetic.generator import DemoDataSettings, make_demo_data

    make_demo_data(tmp_path / "d", DemoDataSettings(num_samples=6, image_size=64, seed=1,
                   cells=True, scheme="hpa2021", test_fraction=0.0), workers=1,
                   progress=False)  # fmt: skip
    rows = (tmp_path / "d" / "cells.csv").read_text().splitlines()
    field_id, number, _ = rows[1].split(",")
    rows[1] = f"{field_id},{number},"  # a cell without a pattern written as no class
    (tmp_path / "cells.csv").write_text("\n".join(rows) + "\n")
    expected = rf"cells.csv, line 2: cell {number} of {field_id} has an empty Label; .* write 18"
    settings = ConversionSettings(masks=str(tmp_path / "d" / "masks"), num_folds=2,
                                  cell_labels=str(tmp_path / "cells.csv"))  # fmt: skip
    with pytest.raises(InputError, match=expected):
        make_tfrecords(tmp_path / "d" / "train", tmp_path / "records",
                       labels=tmp_path / "d" / "train.csv", settings=settings, workers=1,
                       progress=False)  # fmt: skip
    assert not (tmp_path / "records" / "manifest.json").exists()
    from hpa_keras.data.cell_records import read_cell_labels

    with pytest.raises(InputError, match=expected):
        read_cell_labels(tmp_path / "cells.csv", "hpa2021")  # what evaluate --cells reads
