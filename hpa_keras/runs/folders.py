"""Run folders and cv folders as folders: which is which, their parts, and claiming one to write.

- :func:`is_cv_folder`, :func:`fold_folder`, :func:`check_finished_run`: what a folder is.
- :func:`expand_runs`: the run folders a list of ``--run`` folders stands for (a cv folder:
  its fold runs, with the ensemble's thresholds), :func:`default_views`,
  :func:`class_names_of`: a run's settings without loading its model.
- :func:`claim_run_folder`, :func:`claim_cv_folder`: the one check before ``fit`` or
  ``cv`` writes into ``--out``: free (start), holding an interrupted job of the same
  settings (continue it), or anything else (refused, nothing written).
"""

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from hpa_keras.atomic import check_output_path
from hpa_keras.classes import SCHEMES
from hpa_keras.errors import InputError
from hpa_keras.runs.documents import (
    CvDocument,
    ThresholdsDocument,
    as_run_config,
    read_cv,
    read_input_settings,
    read_run_config,
    read_thresholds_document,
)
from hpa_keras.runs.files import (
    BACKUP_FOLDER,
    CONFIG_FILE,
    CV_FILE,
    FOLD_FOLDER,
    MODEL_FILE,
    THRESHOLDS_FILE,
)

# ------------------------------------------------------------------ what a folder is


def is_cv_folder(path) -> bool:
    """Whether ``path`` is a ``cv`` output folder."""
    return (Path(path) / CV_FILE).is_file()


def fold_folder(path, fold: int) -> Path:
    """The run folder of ``fold`` in the cv folder ``path``."""
    return Path(path) / FOLD_FOLDER.format(fold=fold)


def check_finished_run(folder: str | os.PathLike) -> None:
    """InputError unless ``folder`` is a run folder that finished (it has its model)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such run folder")
    if not (folder / MODEL_FILE).is_file():
        hint = " (still training, or interrupted?)" if (folder / BACKUP_FOLDER).exists() else ""
        raise InputError(f"{folder}: no {MODEL_FILE}; not a finished run folder{hint}")


def run_paths(runs) -> list[Path]:
    """Run folders as a list: one folder, as a string or path, is a list of one."""
    if isinstance(runs, (str, os.PathLike)):
        return [Path(runs)]
    return [Path(run) for run in runs]


def expand_runs(paths) -> tuple[list[Path], ThresholdsDocument | None]:
    """Run folders, and the ensemble's thresholds document when ``paths`` is one cv folder.

    A cv folder stands for its fold runs, judged together against the
    thresholds tuned on their out-of-fold predictions. It cannot be mixed
    with other runs (their thresholds would no longer fit the mean).
    ``paths`` is a list of folders or one folder.
    """
    paths = run_paths(paths)
    cv_folders = [path for path in paths if is_cv_folder(path)]
    if not cv_folders:
        return paths, None
    if len(paths) > 1:
        raise InputError(
            f"{cv_folders[0]}: a cv folder is one ensemble with its own thresholds; give it "
            "alone as --run"
        )
    folder = cv_folders[0]
    if not (folder / THRESHOLDS_FILE).is_file():
        raise InputError(f"{folder}: an unfinished cv (no {THRESHOLDS_FILE}); run it again")
    runs = [fold_folder(folder, fold) for fold in read_cv(folder).folds]
    return runs, read_thresholds_document(folder / THRESHOLDS_FILE)


def default_views(paths) -> int:
    """The dihedral views the runs' thresholds were tuned with (1 for older runs)."""
    first = run_paths(paths)[0]
    if is_cv_folder(first):
        return int(read_thresholds_document(first / THRESHOLDS_FILE).views or 1)
    return int(read_input_settings(first).tta or 1)


def class_names_of(folder: str | os.PathLike) -> tuple[str, ...]:
    """A run's class names without loading its model (``input.json``, else ``thresholds.json``)."""
    names = read_input_settings(folder).class_names
    if names:
        return tuple(names)
    document = read_thresholds_document(folder)
    if document.class_names:
        return document.class_names
    count = len(document.thresholds)
    known = next((scheme for scheme in SCHEMES.values() if scheme.num_classes == count), None)
    return known.class_names if known else tuple(str(index) for index in range(count))


# ------------------------------------------------------------------ claiming an output folder


def changed_settings(
    saved: dict, current: dict, same_records: Callable[[], bool], ignore: Iterable[str] = ()
) -> list[str]:
    """The settings of ``current`` that ``saved`` gives another value (a setting ``saved``
    lacks is taken as unchanged). ``data`` differs only where ``same_records()`` says the
    saved job read other records: the same records by another path continue."""
    ignore = set(ignore)
    changed = sorted(
        key
        for key, value in current.items()
        if key not in ignore and saved.get(key, value) != value
    )
    if "data" in changed and same_records():
        changed.remove("data")
    return changed


def _claim(folder: Path, marker: str, changed, *, job: str, verb: str, other: str, finished=None):
    """Whether ``folder`` holds an interrupted ``job`` (its ``marker`` file) of the same
    settings (True: continue it) or is free for a new one (False); InputError naming the
    changed settings (``changed()``) or the reason otherwise. Reads only."""
    check_output_path(folder, "folder", "out")
    if finished is not None and (folder / finished).exists():
        raise InputError(f"{folder}: holds a finished run ({finished}); choose another --out")
    if (folder / marker).is_file():
        differences = changed()
        if differences:
            raise InputError(
                f"{folder}: {job} with other settings ({', '.join(differences)}); "
                f"{verb} it with the same settings or choose another --out"
            )
        return True
    if folder.exists() and any(folder.iterdir()):
        raise InputError(f"{folder}: not empty and not {other}; choose another --out")
    return False


def claim_run_folder(
    folder: Path, settings: dict, fingerprint: str, ignore: Iterable[str] = ()
) -> bool:
    """Whether ``folder`` holds an interrupted run of these settings (True: resume it) or
    is free for a new one (False); InputError otherwise. Reads only.

    ``settings``: the run's ``config.yaml`` to be; ``ignore``: settings that may change
    on a resume (the folder is the run: a run moved elsewhere resumes there).
    ``fingerprint`` identifies the records being trained on: a restart that names the
    same records by another path (started from another folder, the records moved) resumes.
    """
    folder = Path(folder)

    def changed():
        return changed_settings(
            read_run_config(folder),
            as_run_config(settings),
            lambda: _same_records(folder, fingerprint),
            ignore,
        )

    return _claim(
        folder, CONFIG_FILE, changed, job="an interrupted run", verb="resume",
        other="an interrupted run", finished=MODEL_FILE,
    )  # fmt: skip


def claim_cv_folder(folder: Path, document: CvDocument) -> bool:
    """Whether ``folder`` holds a cv of ``document``'s settings and folds (True: continue
    it) or is free for a new one (False); InputError otherwise. Reads only.

    The records are compared by ``document.data_fingerprint`` (their shards' digests), so a
    restart that names the same records by another path (from another folder, records
    moved) continues.
    """
    folder = Path(folder)

    def changed():
        previous = read_cv(folder)
        differences = changed_settings(
            previous.settings,
            document.settings,
            lambda: previous.data_fingerprint == document.data_fingerprint,
        )
        return differences + (["folds"] if previous.folds != list(document.folds) else [])

    return _claim(folder, CV_FILE, changed, job="a cv", verb="continue", other="a cv folder")


def _same_records(folder: Path, fingerprint: str) -> bool:
    """True when the interrupted run in ``folder`` trained on records with this fingerprint
    (its ``input.json``): the same records reached by another path or from another folder."""
    try:
        return read_input_settings(folder).data_fingerprint == fingerprint
    except (OSError, InputError):
        return False
