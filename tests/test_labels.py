import numpy as np
import pytest

from hpa_keras.data.labels import (
    read_id_file,
    read_labels,
    read_sample_submission,
    write_labels,
)
from hpa_keras.errors import InputError


def write(tmp_path, text, name="train.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_reads_ids_labels_and_multi_hot(tmp_path):
    path = write(tmp_path, "Id,Target\na,16 0\nb,7 1 2 0\nc,27\n")
    table = read_labels(path)
    assert table.ids == ("a", "b", "c")
    assert table.labels == ((0, 16), (0, 1, 2, 7), (27,))
    matrix = table.multi_hot()
    assert matrix.shape == (3, 28) and matrix.dtype == np.float32
    assert matrix.sum() == 7
    assert table.class_counts()[0] == 2
    assert table.labels_of("c") == (27,)


def test_byte_order_mark_and_crlf_line_ends_are_accepted(tmp_path):
    path = write(tmp_path, "\ufeffId,Target\r\na,0\r\nb,25 0\r\n", encoding="utf-8")
    table = read_labels(path)
    assert table.ids == ("a", "b")
    assert table.labels == ((0,), (0, 25))


def test_extra_columns_and_trailing_blank_lines_are_fine(tmp_path):
    path = write(tmp_path, "Target,Id,Note\n3,a,x\n\n\n")
    assert read_labels(path).labels == ((3,),)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "file is empty"),
        ("\n  \n", "file is empty"),
        ("Id,Classes\na,1\n", "line 1: missing column 'Target'"),
        ("ID,Label\na,8|19\n", r"line 2 \(Id a\): .*class index 19 is out of range 0..18"),
        ("ID,Label\na,8 5\n", r"line 2 \(Id a\): .*separated by '\|'"),
        ("Id,Target\na,8|5\n", r"line 2 \(Id a\): .*'\|' separates 2021 labels"),
        ("Id,Target,Group\na,1,x\nb,2,\n", r"line 3 \(Id b\): empty Group"),
        ("Target\n1\n", "line 1: missing column 'Id'"),
        ("Id,Target\n", "header but no rows"),
        ("Id,Target\na,1\nb,2\na,3\n", "line 4: duplicate Id a \\(first seen on line 2\\)"),
        ("Id,Target\na,1\nb,29\n", "line 3 \\(Id b\\): .*out of range"),
        ("Id,Target\na,\n", "line 2 \\(Id a\\): Target is empty"),
        ("Id,Target\na,1 q\n", "line 2 \\(Id a\\): .*'q' is not an integer"),
        ("Id,Target\na,1,extra\n", "line 2: 3 fields, expected 2"),
        ("Id,Target\n,1\n", "line 2: empty Id"),
    ],
)
def test_errors_name_the_file_row_and_reason(tmp_path, text, reason):
    path = write(tmp_path, text)
    with pytest.raises(InputError, match=reason) as caught:
        read_labels(path)
    assert str(path) in str(caught.value)


def test_missing_file_and_non_utf8(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        read_labels(tmp_path / "nope.csv")
    path = tmp_path / "latin.csv"
    path.write_bytes("Id,Target\n\xe9,1\n".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8"):
        read_labels(path)


def test_sample_submission_gives_ids_in_order_unlabeled(tmp_path):
    path = write(tmp_path, "Id,Predicted\nz,0\ny,0\nx,\n", name="sample_submission.csv")
    table = read_sample_submission(path)
    assert table.ids == ("z", "y", "x")
    assert table.labels == ((), (), ())
    assert not table.labeled
    assert read_id_file(path).ids == table.ids
    with pytest.raises(InputError, match="duplicate Id z"):
        read_sample_submission(write(tmp_path, "Id,Predicted\nz,0\nz,0\n", name="s.csv"))
    with pytest.raises(InputError, match="missing column 'Predicted'"):
        read_sample_submission(write(tmp_path, "Id,Target\nz,0\n", name="s2.csv"))


def test_write_then_read_round_trip(tmp_path):
    path = tmp_path / "out" / "labels.csv"
    write_labels(path, ["a", "b"], [[25, 0], [3]])
    assert path.read_text() == "Id,Target\na,0 25\nb,3\n"
    assert read_id_file(path).labels == ((0, 25), (3,))


def test_reads_the_real_challenge_file(real_train_csv):
    table = read_labels(real_train_csv)
    assert len(table) == 31072
    counts = table.class_counts()
    assert counts[0] == 12885 and counts[27] == 11 and counts[25] == 8228


def test_a_file_with_neither_target_nor_predicted_is_told_so(tmp_path, capsys):
    from hpa_keras.cli import main
    from hpa_keras.data.labels import read_id_file

    path = tmp_path / "labels.csv"
    path.write_text("Id,Classes\na,1|2\n")
    with pytest.raises(InputError, match="no 'Target' column") as raised:
        read_id_file(path)
    assert "'Id,Classes'" in str(raised.value)
    images = tmp_path / "images"
    images.mkdir()
    assert main(["make-tfrecords", "--images", str(images), "--labels", str(path), "--quiet"]) == 2
    error = capsys.readouterr().err
    assert (
        f"{path}: line 1: no 'Target' column" in error and "missing column 'Predicted'" not in error
    )


def test_the_2021_scheme_is_read_from_the_header(tmp_path):
    from hpa_keras.data.labels import write_labels

    path = write(tmp_path, "ID,Label\nx,8|5|0\ny,18\n")
    table = read_labels(path)
    assert table.scheme == "hpa2021" and table.num_classes == 19
    assert table.labels == ((0, 5, 8), (18,))
    assert table.multi_hot().shape == (2, 19) and table.class_counts()[18] == 1
    out = tmp_path / "out.csv"
    write_labels(out, table.ids, table.labels, scheme="hpa2021")
    assert out.read_text() == "ID,Label\nx,0|5|8\ny,18\n"
    assert read_labels(out).labels == table.labels
    submission = write(tmp_path, "ID,ImageWidth,ImageHeight,PredictionString\nz,2048,2048,\n")
    from hpa_keras.data.labels import read_id_file

    unlabeled = read_id_file(submission)
    assert not unlabeled.labeled and unlabeled.scheme == "hpa2021" and unlabeled.ids == ("z",)


def test_a_group_column_is_read_when_present(tmp_path):
    table = read_labels(write(tmp_path, "Id,Target,Group\na,1,ab1\nb,2,ab1\nc,3,ab2\n"))
    assert table.groups == ("ab1", "ab1", "ab2")
    assert read_labels(write(tmp_path, "Id,Target\na,1\n")).groups is None
    renamed = read_labels(write(tmp_path, "Id,Target,Antibody\na,1,7\n"), group_column="Antibody")
    assert renamed.groups == ("7",)


def test_the_real_2021_label_file_and_its_2018_pairs(real_2021_folder):
    """The 2021 train.csv reads as the 2021 scheme; the mapping of the 2018 labels of the
    shared fields agrees with their 2021 labels except where a field was re-annotated."""
    import csv

    from hpa_keras.classes import HPA2021, map_2018_to_2021, parse_target

    table = read_labels(real_2021_folder / "train.csv")
    assert table.scheme == "hpa2021" and len(table) == HPA2021.training_images
    assert tuple(table.class_counts()) == HPA2021.training_counts
    agree = 0
    with open(real_2021_folder / "labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        mapped = map_2018_to_2021(parse_target(row["Target2018"]))
        agree += mapped == parse_target(row["Label"], scheme="hpa2021")
    assert agree == 4  # of 5: one 2018 Aggresome field is Negative in 2021
