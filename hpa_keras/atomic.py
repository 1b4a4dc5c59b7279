"""Atomic file writes: write to a temporary name beside the target, then rename.

A reader (or a rerun after a crash) sees either the old complete file or the
new complete file, never a half-written one, because ``os.replace`` within one
directory is atomic on POSIX and Windows.
"""

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from hpa_keras import storage
from hpa_keras.errors import InputError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates files readable by the owner only; finished files get the
# permissions an ordinary open() would have given them.
_FILE_MODE = 0o666 & ~_current_umask()
_FOLDER_MODE = 0o777 & ~_current_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp"):
    """Yield a temporary path in the target's folder; rename it to ``path`` on success.

    On an exception the temporary file is removed and ``path`` is untouched.
    ``suffix`` ends the temporary name, for writers that insist on an
    extension (Keras saves only to names ending in ``.keras``).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=suffix, dir=target.parent
    )
    os.close(descriptor)
    try:
        yield Path(temporary)
        os.chmod(temporary, _FILE_MODE)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike):
    """Yield a temporary folder beside ``path`` (which must not exist, or be empty) and
    rename it to ``path`` when the block succeeds: a reader sees the whole folder or none.
    On an exception the temporary folder is removed and ``path`` is untouched."""
    target = Path(path).resolve()  # "." has no parent to write beside
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield temporary
        os.chmod(temporary, _FOLDER_MODE)  # mkdtemp's folders are the owner's only
        if target.is_dir():
            target.rmdir()  # empty, or this fails: nothing of the user's is replaced
        os.replace(temporary, target)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (a URL too: :mod:`hpa_keras.storage`)."""

    if storage.is_url(path):
        storage.write_bytes_atomic(os.fspath(path), data)
        return
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically, with ``\\n`` line ends."""
    write_bytes_atomic(path, text.encode("utf-8"))


@contextlib.contextmanager
def removed_on_bad_input(folder: str | os.PathLike):
    """Undo what a command wrote into its output ``folder`` when it stops on bad input.

    On an InputError, a folder this call created (and any missing parents of it) is removed
    with everything in it, and in a folder that already existed the files and folders added
    since are removed, so a typo leaves no half-made output behind and a user's folder as it
    was (files replaced in place, as ``--overwrite`` asks, stay replaced). Any other
    exception (Ctrl-C, a crash) keeps what was written, so that a rerun resumes.
    """
    folder = Path(folder)
    created = None  # the topmost folder this call creates
    path = folder.absolute()
    while not path.exists() and path != path.parent:
        created, path = path, path.parent
    before = set() if created is not None else _paths_under(folder)
    try:
        yield folder
    except InputError:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        else:
            for added in sorted(_paths_under(folder) - before, reverse=True):  # files first
                with contextlib.suppress(OSError):
                    if added.is_dir() and not added.is_symlink():
                        added.rmdir()
                    else:
                        added.unlink()
        raise


def _paths_under(folder: Path) -> set[Path]:
    """Every file and folder under ``folder`` (empty when it is not a folder)."""
    paths = set()
    for parent, folders, files in os.walk(folder):
        paths.update(Path(parent, name) for name in folders + files)
    return paths


def check_output_path(path: str | os.PathLike, kind: str, name: str = "--out") -> None:
    """InputError naming ``name`` and ``path`` unless a ``kind`` ("file" or "folder") can be
    written there: checked before any work starts, so a command never computes for minutes
    and then dies on ``FileExistsError`` or ``IsADirectoryError``. Missing parent folders
    are fine (writers create them) as long as none of them is a file.
    """
    given = os.fspath(path)  # Path() would drop a trailing slash: "sub/" names a folder
    path = Path(path)
    if kind == "file" and (path.is_dir() or given.endswith(("/", os.sep))):
        raise InputError(f"{name} {given}: a folder; give a file name")
    if kind == "folder" and path.exists() and not path.is_dir():
        raise InputError(f"{name} {path}: a file, not a folder")
    existing = path if kind == "folder" and path.exists() else path.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{name} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK) or (
        path.exists() and not os.access(path, os.W_OK)
    ):
        raise InputError(f"{name} {path}: no permission to write in {existing}")
