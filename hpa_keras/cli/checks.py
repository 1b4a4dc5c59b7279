"""The paths a command names, checked before any work: inputs exist (run folders, records,
image folders, files, a ``--config``), outputs can be written and replace no input, and
run folders given as URLs are copied here first."""

from pathlib import Path

from hpa_keras import storage
from hpa_keras.atomic import check_output_path
from hpa_keras.errors import InputError
from hpa_keras.runs.files import CV_FILE, MODEL_FILE
from hpa_keras.training.recipes import RECIPE_PREFIX, recipe_path

# The record, run and cv modules are imported inside the checks that read them: they load
# OpenCV and pandas (most of a second), which hpa-keras --help and typo answers skip.

# Inputs named by the arguments, checked before TensorFlow loads (seconds: docs/results.md)
# so that a typo is answered at once. URLs are left to the commands (reaching them needs
# TensorFlow's file system). Outputs: _OUTPUTS, below.
_INPUT_FILES = ("labels", "cell_labels", "submission", "ids", "thresholds")
_RUN_ARGUMENTS = ("run", "image_run")
_INPUT_FOLDERS = ("images", "masks")


def _input_folders(arguments) -> tuple[str, ...]:
    """Image and mask folders: show's positional DIR is one too (verify's DIR is records,
    which may be a URL, and verify reads them itself); annotate's --images may be one OME
    file, which it checks itself."""
    if arguments.command == "show":
        return (*_INPUT_FOLDERS, "dir")
    if arguments.command == "annotate":
        return ("masks",)
    return _INPUT_FOLDERS


_RECORD_FOLDERS = ("data",)


def _check_input_paths(arguments) -> None:
    from hpa_keras.data.tfrecords import read_manifest

    def given(name):
        value = getattr(arguments, name, None)
        values = value if isinstance(value, list) else [value]
        return [item for item in values if item is not None and not storage.is_url(str(item))]

    for name in _RUN_ARGUMENTS:
        for path in map(Path, given(name)):
            _check_run_folder(_flag_name(name), path)
    for path in given("config"):
        _check_config_file(path)
    training = hasattr(arguments, "model_option")  # fit and cv check records after settings
    for name in () if training else _RECORD_FOLDERS:
        for path in given(name):
            read_manifest(path)  # names the folder and what is missing
    for name in _input_folders(arguments):
        value = getattr(arguments, name, None)
        for item in value if isinstance(value, list) else [value]:
            if item is not None:  # image folders are local: a URL is refused, naming the flag
                storage.local_folder(item, _flag_name(name))
        for path in map(Path, given(name)):
            if not path.is_dir():
                reason = "a file, not a folder" if path.is_file() else "no such folder"
                raise InputError(f"{_flag_name(name)} {path}: {reason}")
    for name in _INPUT_FILES:
        for path in map(Path, given(name)):
            if not path.is_file():
                reason = "a folder, not a file" if path.is_dir() else "no such file"
                raise InputError(f"{_flag_name(name)} {path}: {reason}")


# What each command writes: command -> {argument: "file" or "folder"}. Checked with the
# inputs, before any work; an output that is one of the command's inputs is refused too
# (predict --out train.csv would replace the labels).
_OUTPUTS = {
    "demo": {"out": "folder"},
    "make-demo-data": {"out": "folder"},
    "show": {"out": "file"},
    "segment": {"out": "folder"},
    "make-tfrecords": {"out": "folder"},
    "fit": {"out": "folder"},
    "cv": {"out": "folder"},
    "predict": {"out": "file", "probabilities": "file", "cell_table": "file"},
    "evaluate": {"out": "folder"},
    "baseline": {"out": "file"},
    "cam": {"out": "file"},
    "annotate": {"out": "folder"},
    "merge-annotations": {"out": "folder"},
}
_INPUTS = (*_INPUT_FILES, *_RECORD_FOLDERS, *_RUN_ARGUMENTS, "config")


# Name endings of the files an image or mask folder is read for: a channel or a mask.
_INPUT_FILE_ENDINGS = ("_red", "_green", "_blue", "_yellow", "_cells", "_nuclei")


def _an_input_file(path: Path) -> bool:
    """An existing file that an image or mask folder holds as input (not an earlier output
    written beside them, which may be replaced)."""
    return path.is_file() and path.stem.lower().endswith(_INPUT_FILE_ENDINGS)


def _check_output_paths(arguments) -> None:
    inputs = {}
    for name in (*_INPUTS, *_input_folders(arguments)):
        value = getattr(arguments, name, None)
        for item in value if isinstance(value, list) else [value]:
            if item is not None and not storage.is_url(str(item)):
                inputs[Path(item).resolve()] = name
    written = {}
    for name, kind in _OUTPUTS.get(arguments.command, {}).items():
        value = getattr(arguments, name, None)
        if value is None or storage.is_url(str(value)):
            continue
        flag = "--" + name.replace("_", "-") if name != "out" or kind == "file" else "--out"
        if arguments.command == "make-demo-data":
            flag = "OUT"
        check_output_path(value, kind, flag)
        resolved = Path(value).resolve()
        if resolved in inputs:
            raise InputError(
                f"{flag} {value}: also the {_flag_name(inputs[resolved])} input; give the "
                f"output a {kind} of its own"
            )
        if kind == "file" and resolved.parent in inputs and _an_input_file(resolved):
            raise InputError(
                f"{flag} {value}: a file of the {_flag_name(inputs[resolved.parent])} input "
                "folder; writing there would replace it"
            )
        if resolved in written:
            raise InputError(f"{flag} {value}: also given as {written[resolved]}")
        written[resolved] = flag


def _flag_name(name: str) -> str:
    """How the command line names an argument: ``--cell-labels``; ``DIR``, the positional
    folder of show and verify (``--dir`` is no flag of theirs)."""
    return "DIR" if name == "dir" else "--" + name.replace("_", "-")


def _check_run_folder(flag: str, path: Path) -> None:
    if not path.is_dir():
        raise InputError(f"{flag} {path}: no such run folder")
    if not (path / MODEL_FILE).is_file() and not (path / CV_FILE).is_file():
        raise InputError(
            f"{flag} {path}: neither a finished run ({MODEL_FILE}) nor a cv folder ({CV_FILE}); "
            "an interrupted fit or cv finishes when its command is run again"
        )


def _check_config_file(path: str) -> None:
    if Path(path).is_file():
        return
    if path.startswith(RECIPE_PREFIX):
        recipe_path(path.removeprefix(RECIPE_PREFIX))  # names the shipped recipes
        return
    if Path(path).exists():
        raise InputError(f"--config {path}: not a regular file; expected a YAML settings file")
    raise InputError(f"--config {path}: no such file (or a shipped recipe: {RECIPE_PREFIX}NAME)")


# Run or cv folders to read (_RUN_ARGUMENTS, above) given as URLs are copied into a local
# folder first (a run is a few files; records, which may be terabytes, stream from their URL).


def _download_run_urls(arguments, staging: Path) -> None:
    for name in _RUN_ARGUMENTS:
        value = getattr(arguments, name, None)
        values = value if isinstance(value, list) else [value]
        if not any(item is not None and storage.is_url(item) for item in values):
            continue
        local = []
        for index, item in enumerate(values):
            if item is not None and storage.is_url(item):
                if not storage.exists(item):
                    raise InputError(f"{item}: not found")
                item = str(storage.download_folder(item, staging / f"{name}{index}"))
            local.append(item)
        setattr(arguments, name, local if isinstance(value, list) else local[0])
