import os

import pytest

from hpa_keras.atomic import atomic_path, removed_on_bad_input, write_text_atomic
from hpa_keras.errors import InputError


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "labels.csv"
    write_text_atomic(target, "old\n")
    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old\n"
    assert [path.name for path in tmp_path.iterdir()] == ["labels.csv"]


def test_finished_file_has_ordinary_permissions(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    write_text_atomic(target, "x")
    assert target.read_text() == "x"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() would, not mkstemp's 0600


def test_bad_input_removes_what_a_command_added_and_nothing_else(tmp_path):
    new = tmp_path / "a" / "b" / "out"
    with pytest.raises(InputError), removed_on_bad_input(new):
        new.mkdir(parents=True)
        (new / "part.tfrecord").write_text("half")
        raise InputError("bad sample")
    assert list(tmp_path.iterdir()) == []  # the parents it made went too
    given = tmp_path / "given"
    (given / "old").mkdir(parents=True)
    (given / "old" / "kept.txt").write_text("mine")
    with pytest.raises(InputError), removed_on_bad_input(given):
        (given / "old" / "added.json").write_text("{}")
        (given / "progress").mkdir()
        (given / "progress" / "shard.json").write_text("{}")
        raise InputError("bad sample")
    assert sorted(path.relative_to(given).as_posix() for path in given.rglob("*")) == [
        "old",
        "old/kept.txt",
    ]
    with pytest.raises(KeyboardInterrupt), removed_on_bad_input(new):  # resumable: kept
        new.mkdir(parents=True)
        raise KeyboardInterrupt
    assert new.is_dir()


def test_atomic_folder_appears_whole_or_not_at_all(tmp_path):
    import stat

    from hpa_keras.atomic import atomic_folder

    target = tmp_path / "run"
    with pytest.raises(InputError), atomic_folder(target) as folder:
        (folder / "model.keras").write_text("half")
        raise InputError("a parameter does not fit")
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its temporary twin
    target.mkdir()  # an empty folder given as --out is replaced
    with atomic_folder(target) as folder:
        (folder / "model.keras").write_text("whole")
    assert (target / "model.keras").read_text() == "whole"
    assert [path.name for path in tmp_path.iterdir()] == ["run"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o777 & ~umask  # not mkdtemp's 0700
