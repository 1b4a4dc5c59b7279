import json
import re
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from hpa_keras.cli import main
from hpa_keras.data.labels import read_labels
from hpa_keras.errors import InputError


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo") / "data"
    status = main(
        [
            "make-demo-data",
            str(folder),
            "--num-samples",
            "5",
            "--image-size",
            "64",
            "--test-fraction",
            "0.2",
            "--workers",
            "1",
            "--quiet",
        ]
    )
    assert status == 0
    return folder


def test_make_demo_data_writes_the_layout(demo_folder, capsys):
    assert len(read_labels(demo_folder / "train.csv")) == 4
    assert len(read_labels(demo_folder / "test_labels.csv")) == 1


def test_show_writes_a_png_titled_with_the_classes(demo_folder, tmp_path, capsys):
    table = read_labels(demo_folder / "train.csv")
    out = tmp_path / "sample.png"
    assert main(["show", str(demo_folder), "--id", table.ids[0], "--out", str(out)]) == 0
    image = cv2.imread(str(out))
    assert image is not None and image.shape[1] > image.shape[0] * 3  # five panels in a row
    printed = capsys.readouterr().out
    from hpa_keras.classes import class_name

    assert all(class_name(index) in printed for index in table.labels[0])


def test_show_on_a_real_hpa_channel(real_channel_folder, tmp_path, capsys):
    sample_id = "0fa556f8-bbab-11e8-b2ba-ac1f6b6435d0"  # green only, labels 2 and 25
    out = tmp_path / "real.png"
    status = main(
        [
            "show",
            str(real_channel_folder),
            "--id",
            sample_id,
            "--out",
            str(out),
            "--labels",
            str(real_channel_folder / "files.csv"),
        ]
    )
    assert status == 0 and cv2.imread(str(out)) is not None
    captured = capsys.readouterr()
    assert "Nucleoli, Cytosol" in captured.out
    assert "no red, blue, yellow channel" in captured.err


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["show", "{folder}", "--id", "no-such-id"], "no image files for Id no-such-id"),
        (["show", "{folder}/missing", "--id", "x"], "DIR {folder}/missing: no such folder"),
        (["make-demo-data", "{folder}"], "already holds a synthetic data set"),
        (["make-demo-data", "{tmp}/new", "--image-size", "8"], "--image-size must be between"),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(demo_folder, tmp_path, capsys, arguments, message):
    filled = [value.format(folder=demo_folder, tmp=tmp_path) for value in arguments]
    assert main(filled) == 2
    error = capsys.readouterr().err
    assert message.format(folder=demo_folder) in error and "Traceback" not in error
    assert error.startswith(f"hpa-keras {arguments[0]}: error: ")


def test_corrupt_image_is_named(demo_folder, tmp_path, capsys):
    sample_id = read_labels(demo_folder / "train.csv").ids[1]
    for path in (demo_folder / "train").glob(f"{sample_id}_*.png"):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    broken = tmp_path / f"{sample_id}_green.png"
    broken.write_bytes(broken.read_bytes()[:60])  # truncated
    assert main(["show", str(tmp_path), "--id", sample_id, "--out", str(tmp_path / "o.png")]) == 2
    error = capsys.readouterr().err
    assert f"{broken}: cannot be decoded" in error


def test_a_colour_file_must_hold_its_own_stain(tmp_path, capsys):
    """A v18-style colour file is read as its stain; any other colour image is refused."""
    rng = np.random.default_rng(0)
    colour = np.zeros((8, 8, 3), np.uint8)
    colour[..., 1] = rng.integers(50, 200, (8, 8))  # BGR: signal in G
    images = tmp_path / "images"  # the figure outside: a file there would be an input's
    images.mkdir()
    cv2.imwrite(str(images / "s_green.png"), colour)
    assert main(["show", str(images), "--id", "s", "--out", str(tmp_path / "o.png")]) == 0
    capsys.readouterr()
    cv2.imwrite(str(images / "s_red.png"), colour)  # green signal in a red file
    assert main(["show", str(images), "--id", "s", "--out", str(tmp_path / "o.png")]) == 2
    error = capsys.readouterr().err
    assert "s_red.png: a colour image whose signal is not in the red stain's" in error


def test_console_entry_points_run_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "hpa_keras", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and "make-demo-data" in result.stdout
    result = subprocess.run(
        [sys.executable, "-m", "hpa_keras", "show", str(tmp_path), "--id", "none"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "no image files for Id none" in result.stderr and "Traceback" not in result.stderr


# ------------------------------------------------------------------ flags from settings

SETTINGS_COMMANDS = [
    ("fit", "hpa_keras.training.config", "TrainingConfig"),
    ("make-tfrecords", "hpa_keras.data.conversion", "ConversionSettings"),
    ("make-demo-data", "hpa_keras.synthetic.generator", "DemoDataSettings"),
]


def _subparser(command):
    from hpa_keras.cli import build_parser

    parser = build_parser()
    action = next(action for action in parser._actions if action.dest == "command")
    return action.choices[command]


def _example_value(field):
    """A valid value unlike the default, as a command-line word."""
    from hpa_keras.settings import _base_type

    choices = field.metadata.get("choices")
    if choices:
        return next(choice for choice in choices if choice != field.default)
    kind = _base_type(field.type)
    return {int: 3, float: 0.375, str: "something"}[kind]


@pytest.mark.parametrize(("command", "module", "name"), SETTINGS_COMMANDS)
def test_every_setting_has_a_flag_that_names_its_default(command, module, name):
    import dataclasses
    import importlib

    from hpa_keras.settings import describe_default, flag_of, given_settings

    settings_class = getattr(importlib.import_module(module), name)
    parser = _subparser(command)
    flags = {option: action for action in parser._actions for option in action.option_strings}
    required = ["out"] if command == "make-demo-data" else []
    if command == "make-tfrecords":
        required = ["--images", "images"]
    for field in dataclasses.fields(settings_class):
        flag = flag_of(field)
        if flag is None:
            continue
        assert flag in flags, f"{command}: no flag for {field.name}"
        assert f"(default: {describe_default(field)})" in flags[flag].help, flag
        if _base_type_is_bool(field):
            given = vars(parser.parse_args([*required, flag]))
            assert given[field.name] is True
            assert vars(parser.parse_args([*required, "--no-" + flag[2:]]))[field.name] is False
            continue
        value = _example_value(field)
        arguments = parser.parse_args([*required, flag, str(value)])
        assert given_settings(arguments, settings_class) == {field.name: value}, flag
    untouched = parser.parse_args(required)
    assert given_settings(untouched, settings_class) == {}  # nothing given, nothing overridden


def _base_type_is_bool(field):
    from hpa_keras.settings import _base_type

    return _base_type(field.type) is bool


def test_fit_refuses_settings_of_another_schedule(tmp_path, capsys):
    for argv, message in (
        (["--schedule", "cosine", "--plateau-factor", "0.2"], "plateau_factor: applies to"),
        (["--sgdr-epochs", "3"], "sgdr_epochs: applies to --schedule sgdr only, not to plateau"),
        # given, even at its default: the flag is still a mistake
        (["--schedule", "cosine", "--plateau-factor", "0.5"], "plateau_factor: applies to"),
    ):
        assert main(["fit", "--data", str(tmp_path), *argv]) == 2
        assert message in capsys.readouterr().err


def test_an_unexpected_error_is_one_line_exit_1_and_a_pointer_to_debug(monkeypatch, capsys):
    import hpa_keras.cli as cli
    import hpa_keras.cli.training as training_commands

    def broken(arguments):
        error = RuntimeError("nothing checked for this\n  and pages of TensorFlow context")
        error.add_note("run: the finished epochs are kept; run the same command again to resume")
        raise error

    monkeypatch.setattr(training_commands, "run_models", broken)
    monkeypatch.setenv("HPA_KERAS_TF_LOGS", "0")
    assert cli.main(["models"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "hpa-keras models: error: RuntimeError: nothing checked for this "
        "(unexpected; rerun with --debug for the traceback)",
        "hpa-keras models: run: the finished epochs are kept; run the same command again to resume",
    ]
    for argv in (["models", "--debug"], ["--debug", "models"]):
        with pytest.raises(RuntimeError, match="nothing checked"):
            cli.main(argv)


# Typos answered before TensorFlow loads: (arguments, the error line's pattern). {tmp} is an
# empty folder, {run} a folder that looks like a finished run.
TYPOS = (
    (["fit", "--data", "{tmp}/nosuch", "--out", "{tmp}/run"], r"nosuch/manifest.json: not found"),
    (["fit", "--data", "{tmp}/nosuch", "--model", "GAPnt"], r"did you mean gapnet"),
    (["cv", "--config", "{tmp}/nosuch.yaml", "--out", "{tmp}/cv"], r"--config \S+: no such file"),
    (["fit", "--config", "recipes/gapnett"], r"no such recipe; shipped recipes: .*gapnet"),
    (["fit", "--config", "/dev/null"], r"--config /dev/null: not a regular file"),
    (["predict", "--run", "{tmp}/nosuch", "--data", "{tmp}"], r"--run \S+nosuch: no such run"),
    (["predict", "--run", "{tmp}", "--data", "{tmp}"], r"neither a finished run"),
    (["evaluate", "--run", "{run}", "--data", "{tmp}"], r"manifest.json: not found"),
    (["cam", "--run", "{run}", "--images", "{tmp}/nosuch", "--id", "x"], r"no such folder"),
    (["predict", "--run", "{run}", "--images", "{tmp}", "--ids", "{tmp}/ids.csv"], r"--ids"),
    (["predict", "--run", "{run}", "--images", "{tmp}", "--thresholds", "{tmp}"], r"a folder"),
    (["make-tfrecords", "--images", "{tmp}", "--labels", "{tmp}/t.csv"], r"--labels \S+: no such"),
    (["segment", "--images", "{run}/model.keras", "--out", "{tmp}/m"], r"a file, not a folder"),
)


def test_typos_are_answered_before_tensorflow_loads(tmp_path):
    """A wrong path, recipe or model name costs well under a second, not TensorFlow's 6-8 s:
    every case runs in one fresh interpreter, which must never import TensorFlow."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.keras").write_bytes(b"")
    cases = [
        ([part.format(tmp=tmp_path, run=run) for part in argv], pattern) for argv, pattern in TYPOS
    ]
    code = textwrap.dedent(
        f"""
        import contextlib, io, json, sys, time
        from hpa_keras.cli import main
        results = []
        for argv, _ in {cases!r}:
            error = io.StringIO()
            started = time.perf_counter()
            with contextlib.redirect_stderr(error):
                status = main(argv)
            results.append((status, error.getvalue(), time.perf_counter() - started))
        print(json.dumps([results, "tensorflow" in sys.modules, "keras" in sys.modules]))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    results, tensorflow_loaded, keras_loaded = json.loads(result.stdout.splitlines()[-1])
    for (argv, pattern), (status, error, _) in zip(cases, results, strict=True):
        assert status == 2, (argv, error)
        assert len(error.splitlines()) == 1 and re.search(pattern, error), (argv, error)
    assert not tensorflow_loaded and not keras_loaded
    assert max(seconds for _, _, seconds in results) < 2


def test_the_command_keeps_native_log_lines_off_stderr_and_passes_the_rest():
    """The console command filters descriptor 2 for its whole run (TensorFlow also logs after
    import: CPU features at the first operation, cuInit when a backend loads)."""
    code = textwrap.dedent(
        """
        import os, sys
        from hpa_keras.tensorflow_setup import NativeLogFilter
        log_filter = NativeLogFilter()
        log_filter.start()
        os.write(2, b"I0000 00:00:1796608784.614982   13412 cudart_stub.cc:31] no cuda\\n"
                    b"a native line of another kind\\n"
                    b"WARNING: All log messages before absl::InitializeLog() is called\\n"
                    b"E0000 00:00:1796608918.013422   14980 cuda_platform.cc:52] cuInit\\n"
                    b"To enable the following instructions: AVX2 FMA, in other operations\\n"
                    b"W1207 02:03:04.123456 1 cpu_feature_guard.cc:1] x\\n"
                    b"no newline at the end")
        print("python's own stderr", file=sys.stderr)
        log_filter.stop()
        print("after stop", file=sys.stderr)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert result.returncode == 0
    assert sorted(result.stderr.decode().splitlines()) == sorted(
        [
            "python's own stderr",
            "a native line of another kind",
            "no newline at the endafter stop",
        ]
    )


def test_a_training_command_prints_no_tensorflow_start_up_lines(training_records, tmp_path):
    from hpa_keras.tensorflow_setup import _NATIVE_LOG_LINE

    argv = ["fit", "--data", str(training_records), "--out", str(tmp_path / "run"), "--tiny"]
    argv += ["--epochs", "1", "--batch-size", "8", "--quiet", "--no-tensorboard"]
    result = subprocess.run(
        [sys.executable, "-m", "hpa_keras", *argv], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    assert "best epoch 1 of 1" in result.stdout
    native = [line for line in result.stderr.splitlines() if _NATIVE_LOG_LINE.match(line.encode())]
    assert native == []


# Outputs that cannot be written, refused before any work: (arguments, the error's pattern).
# {file} is an existing file, {run} a finished run, {records} labelled records whose images
# are {images}.
BAD_OUTPUTS = (
    (["segment", "--images", "{images}", "--out", "{file}"], r"--out \S+: a file, not a folder"),
    (["make-tfrecords", "--images", "{images}", "--out", "{file}"], r"a file, not a folder"),
    (["evaluate", "--run", "{run}", "--data", "{records}", "--out", "{file}"], r"not a folder"),
    (["fit", "--data", "{records}", "--out", "{file}", "--tiny"], r"--out \S+: a file, not a"),
    (["cv", "--data", "{records}", "--out", "{file}/cv", "--tiny"], r"\S+ is a file, not a"),
    (["make-demo-data", "{file}"], r"OUT \S+: a file, not a folder"),
    (["predict", "--run", "{run}", "--data", "{records}", "--out", "{tmp}"], r"a folder; give"),
    (["predict", "--run", "{run}", "--data", "{records}", "--probabilities", "{tmp}"], r"--prob"),
    (["predict", "--run", "{run}", "--data", "{records}", "--out", "{file}/s.csv"], r"is a file"),
    (["cam", "--run", "{run}", "--images", "{images}", "--id", "x", "--out", "{tmp}"], r"folder"),
    (["show", "{images}", "--id", "x", "--out", "{file}/x.png"], r"\S+ is a file, not a folder"),
    (["evaluate", "--run", "{run}", "--data", "{records}", "--out", "{records}"], r"--data inp"),
    (["predict", "--run", "{run}", "--data", "{records}", "--out", "{run}"], r"a folder"),
    (["predict", "--run", "{run}", "--images", "{images}", "--ids", "{file}", "--out", "{file}"],
     r"also the --ids input"),
    (["predict", "--run", "{run}", "--data", "{records}", "--probabilities", "submission.csv"],
     r"also given as --out"),
)  # fmt: skip


@pytest.mark.parametrize(
    "argv, pattern", BAD_OUTPUTS, ids=[" ".join(argv)[:60] for argv, _ in BAD_OUTPUTS]
)
def test_an_output_that_cannot_be_written_is_refused_before_any_work(
    runs, training_records, tmp_path, monkeypatch, capsys, argv, pattern
):
    monkeypatch.chdir(tmp_path)
    file = tmp_path / "a-file"
    file.write_text("keep me\n")
    before = sorted(path.name for path in tmp_path.iterdir())
    names = {
        "file": file,
        "run": runs[0],
        "records": training_records,
        "images": training_records.parent / "data" / "train",
        "tmp": tmp_path,
    }
    assert main([part.format(**names) for part in argv]) == 2
    error = capsys.readouterr().err
    assert len(error.splitlines()) == 1 and re.search(pattern, error), error
    assert sorted(path.name for path in tmp_path.iterdir()) == before  # nothing written
    assert file.read_text() == "keep me\n"


def _training_images(training_records):
    return training_records.parent / "data" / "train"


def test_a_damaged_image_inside_the_pipeline_is_one_line_without_tracebacks(
    runs, training_records, tmp_path
):
    """The header is sound, the data cut short: read inside tf.data, where TensorFlow used to
    log the error's whole traceback, twice, before the clear line."""
    import shutil

    images = tmp_path / "images"
    shutil.copytree(_training_images(training_records), images)
    damaged = sorted(images.glob("*_green.png"))[3]
    damaged.write_bytes(damaged.read_bytes()[:-40])
    argv = ["predict", "--run", str(runs[0]), "--images", str(images), "--out", "s.csv"]
    result = subprocess.run(
        [sys.executable, "-m", "hpa_keras", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"hpa-keras predict: error: {damaged}: cannot be decoded as an image: a truncated or "
        "damaged PNG (no end marker)"
    ]
    assert not (tmp_path / "s.csv").exists()


@pytest.mark.parametrize(
    "damage, pattern",
    [
        (lambda path: path.write_bytes(b""), r"an empty file"),
        (lambda path: path.write_text("not an image"), r"cannot be read as an image"),
        (lambda path: path.unlink() or path.mkdir(), r"a folder, not an image file"),
    ],
)
def test_files_are_checked_before_the_pipeline_starts(training_records, tmp_path, damage, pattern):
    import shutil

    from hpa_keras.data.images import index_image_folder
    from hpa_keras.data.pipeline import check_image_headers

    images = tmp_path / "images"
    shutil.copytree(_training_images(training_records), images)
    index = index_image_folder(images)
    ids = sorted(index)
    check_image_headers(index, ids)  # sound files pass
    damaged = index[ids[2]]["yellow"]
    damage(damaged)
    with pytest.raises(InputError, match=pattern) as raised:
        check_image_headers(index, ids)
    assert str(damaged) in str(raised.value)


def test_a_shard_cut_short_is_named_before_reading_and_a_corrupt_one_points_to_verify(
    runs, training_records, tmp_path, capsys
):
    import shutil

    from hpa_keras.data.pipeline import load_dataset

    records = tmp_path / "records"
    shutil.copytree(training_records, records)
    shard = sorted(records.glob("*.tfrecord"))[0]
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=rf"{shard}: {len(data) // 2} bytes, the manifest says"):
        load_dataset(records, training=False)
    shard.unlink()
    with pytest.raises(InputError, match=rf"{shard}: shard missing"):
        load_dataset(records, training=False)
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF  # same size: only reading finds it
    shard.write_bytes(bytes(flipped))
    argv = ["predict", "--run", str(runs[0]), "--data", str(records), "--out", str(tmp_path / "s")]
    assert main(argv) == 1
    error = capsys.readouterr().err.splitlines()
    assert len(error) == 1 and re.fullmatch(
        r"hpa-keras predict: error: DataLossError: corrupted record at \d+ "
        r"\(a corrupt record; hpa-keras verify names the shard\)",
        error[0],
    ), error


# Outputs that are fine, and must stay accepted: an earlier submission, report or records
# folder, a run folder to resume, a new nested folder.
GOOD_OUTPUTS = (
    ["predict", "--run", "{run}", "--data", "{records}", "--out", "{file}"],
    ["evaluate", "--run", "{run}", "--data", "{records}", "--out", "{tmp}/report"],
    ["fit", "--data", "{records}", "--out", "{tmp}/new/deeper/run"],
    ["make-tfrecords", "--images", "{images}", "--out", "{tmp}/report"],
    ["cam", "--run", "{run}", "--images", "{images}", "--id", "x", "--out", "{tmp}/c.png"],
)


@pytest.mark.parametrize("argv", GOOD_OUTPUTS, ids=[" ".join(argv)[:60] for argv in GOOD_OUTPUTS])
def test_outputs_that_can_be_written_pass_the_check(runs, training_records, tmp_path, argv):
    from hpa_keras.cli import _check_output_paths, build_parser

    file = tmp_path / "submission.csv"
    file.write_text("Id,Predicted\n")
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "report.html").write_text("an earlier report")
    names = {
        "file": file,
        "run": runs[0],
        "records": training_records,
        "images": _training_images(training_records),
        "tmp": tmp_path,
    }
    _check_output_paths(build_parser().parse_args([part.format(**names) for part in argv]))


def test_a_file_name_with_a_trailing_slash_is_a_folder(tmp_path):
    from hpa_keras.atomic import check_output_path

    with pytest.raises(InputError, match=f"{tmp_path}/sub/: a folder; give a file name"):
        check_output_path(f"{tmp_path}/sub/", "file")
    check_output_path(f"{tmp_path}/sub", "file")


def test_show_refuses_to_write_over_a_file_of_its_image_folder(training_records, capsys):
    images = _training_images(training_records)
    channel = sorted(images.glob("*_red.png"))[0]
    before = channel.read_bytes()
    assert main(["show", str(images), "--id", "x", "--out", str(channel)]) == 2
    assert "a file of the DIR input folder" in capsys.readouterr().err
    assert channel.read_bytes() == before


def test_piped_into_head_the_command_exits_0_and_quietly(tmp_path):
    """head closes the pipe after one line: not an error (it once exited 1 with a traceback)."""
    result = subprocess.run(
        f"set -o pipefail; {sys.executable} -m hpa_keras models --tiny | head -1",
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("model") and result.stderr == ""


def test_the_log_filter_does_not_wait_for_processes_that_outlive_the_command():
    """A spawned pool starts multiprocessing's resource tracker, which inherits descriptor 2
    and outlives the command: stopping the filter must not wait for it to close."""
    code = textwrap.dedent(
        """
        import multiprocessing, time
        from hpa_keras.tensorflow_setup import NativeLogFilter
        if __name__ == "__main__":
            log_filter = NativeLogFilter()
            log_filter.start()
            with multiprocessing.get_context("spawn").Pool(1) as pool:
                pool.map(abs, [-1])
            started = time.perf_counter()
            log_filter.stop()
            print(round(time.perf_counter() - started, 2))
        """
    )
    script = Path(tempfile.mkdtemp()) / "filter_pool.py"
    script.write_text(code)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert float(result.stdout) < 1.0
