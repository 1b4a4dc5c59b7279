"""Folders and files anywhere ``tf.io.gfile`` reaches: ``gs://``, ``s3://`` (with TensorFlow's
filesystem plugins), ``hdfs://``, and TensorFlow's in-memory ``ram://`` (the tests).

Record shards are never copied: ``tf.data.TFRecordDataset`` streams them from
the URL, and the manifest is read through gfile. What the package writes in
ordinary files (run folders, a make-tfrecords output, a submission) is
*staged*: written in a local temporary folder exactly as for a local path,
then uploaded. Object stores have no atomic rename, so each file is uploaded
under a temporary name and renamed onto its own (on GCS a server-side copy
of the finished object): a reader never sees half a file. The files that
make a folder complete (a manifest, a run's thresholds and model) go last.
Run folders are also uploaded after every epoch, so a preempted run resumes
from its URL; files removed locally (an older best epoch) are removed there.

Every access to a URL goes through :func:`reaching`: a scheme this TensorFlow has no file
system for (``s3://``, ``https://``, ``hdfs://`` without plugins) or a URL it cannot reach
(``gs://`` offline or without credentials) is one :class:`InputError` naming the URL and
the reason, never TensorFlow's own error. Image folders are read from local disk only
(:func:`local_folder`).
"""

import contextlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path

from hpa_keras.errors import InputError
from hpa_keras.tensorflow_setup import import_tensorflow_quietly

# Uploaded after everything else: their presence says the folder is whole.
LAST_FILES = ("thresholds.json", "model.keras", "cv_summary.json", "manifest.json")


def is_url(path) -> bool:
    """True for ``scheme://...`` paths (``gs://bucket/x``, ``ram://x``), not local files."""
    return "://" in os.fspath(path) if isinstance(path, (str, os.PathLike)) else False


def join(folder, name: str) -> str:
    """``folder/name`` for a URL or a local path (``Path`` would collapse ``gs://``)."""
    folder = os.fspath(folder)
    return f"{folder.rstrip('/')}/{name}" if is_url(folder) else os.path.join(folder, name)


def _tensorflow():

    return import_tensorflow_quietly()


def _registered_schemes() -> list[str] | None:
    """The URL schemes this TensorFlow has file systems for (``None``: it cannot say)."""
    try:
        from tensorflow.python.lib.io import file_io  # no public API lists them

        return sorted(scheme for scheme in file_io.get_registered_schemes() if scheme)
    except (ImportError, AttributeError):
        return None


def _scheme_problem(url: str, schemes: list[str] | None) -> str:
    scheme = url.split("://", 1)[0]
    readable = f" (it reads local paths and {', '.join(s + '://' for s in schemes or ())})"
    why = (
        "web addresses are not a file system it reads: download the files first"
        if scheme.lower() in ("http", "https")
        else "copy the files to a local folder or to a scheme it reads"
    )
    return f"{url}: this TensorFlow has no file system for {scheme}://" + (
        f"{readable if schemes else ''}; {why}"
    )


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(getattr(error, "message", error)).splitlines()]
    return next((line for line in lines if line), type(error).__name__)


def describe_url_error(url: str, error: Exception) -> str:
    """One line naming ``url`` and why TensorFlow's ``error`` (a ``tf.errors.OpError``) came."""
    errors = _tensorflow().errors
    if isinstance(error, errors.UnimplementedError):
        return _scheme_problem(url, _registered_schemes())
    if isinstance(error, errors.NotFoundError):
        return f"{url}: not found"
    if isinstance(error, (errors.PermissionDeniedError, errors.UnauthenticatedError)):
        return f"{url}: permission denied ({_first_line(error)})"
    if isinstance(error, errors.InvalidArgumentError):
        return f"{url}: not a valid location ({_first_line(error)})"
    return f"{url}: could not be reached ({_first_line(error)})"


@contextlib.contextmanager
def reaching(url):
    """Yield ``tf.io.gfile`` for work on ``url``: a URL whose scheme this TensorFlow has no
    file system for is refused before any access (``gfile.isdir`` would answer False), and
    TensorFlow's errors inside the block (``UnimplementedError``, ``FailedPreconditionError``
    of ``gs://`` offline, ``PermissionDeniedError``, ...) become one InputError naming
    ``url`` and the reason. ``DataLossError`` (a corrupt file) is left to the caller."""
    tf = _tensorflow()
    if is_url(url):
        schemes = _registered_schemes()
        if schemes is not None and os.fspath(url).split("://", 1)[0] not in schemes:
            raise InputError(_scheme_problem(os.fspath(url), schemes))
    try:
        yield tf.io.gfile
    except tf.errors.DataLossError:
        raise
    except tf.errors.OpError as error:
        raise InputError(describe_url_error(os.fspath(url), error)) from error


def local_folder(path, flag: str) -> Path:
    """``path`` as a local ``Path``; InputError for a URL. Image and mask folders are read
    file by file by OpenCV (in worker processes), so they are local: only what the package
    writes and streams (records, runs, label files, outputs) may be URLs. (``Path`` would
    also collapse ``gs://b/x`` into ``gs:/b/x``.)"""
    if is_url(path):
        raise InputError(
            f"{flag} {os.fspath(path)}: image and mask folders are read from local disk, not "
            "from URLs; copy them to a local folder first (records, runs, label files and "
            "outputs may be URLs)"
        )
    return Path(path)


def exists(path) -> bool:
    if not is_url(path):
        return Path(path).exists()
    with reaching(path) as gfile:
        return gfile.exists(os.fspath(path))


def is_file(path) -> bool:
    """True when ``path`` (local or URL) is an existing file, not a folder."""
    if not is_url(path):
        return Path(path).is_file()
    with reaching(path) as gfile:
        return gfile.exists(path) and not gfile.isdir(path)


def read_bytes(path) -> bytes:
    """The bytes of a local file or URL; InputError naming it when it is missing."""
    if not is_url(path):
        return Path(path).read_bytes()
    with reaching(path) as gfile:
        if not gfile.exists(path):
            raise FileNotFoundError(path)
        if gfile.isdir(path):
            raise IsADirectoryError(path)
        with gfile.GFile(path, "rb") as file:
            return file.read()


@contextlib.contextmanager
def open_binary(path):
    """A local file or URL opened for reading bytes (URL errors as in :func:`reaching`)."""
    if not is_url(path):
        with open(path, "rb") as file:
            yield file
        return
    with reaching(path) as gfile, gfile.GFile(os.fspath(path), "rb") as file:
        yield file


def upload_file_atomic(local, url: str) -> None:
    """Copy ``local`` to ``url`` under a temporary name, then rename it onto ``url``."""
    with reaching(url) as gfile:
        parent = url.rsplit("/", 1)[0]
        if not gfile.exists(parent):
            gfile.makedirs(parent)
        temporary = f"{parent}/.{url.rsplit('/', 1)[1]}.{uuid.uuid4().hex}.tmp"
        try:
            gfile.copy(os.fspath(local), temporary, overwrite=True)
            gfile.rename(temporary, url, overwrite=True)
        except BaseException:
            with contextlib.suppress(Exception):
                gfile.remove(temporary)
            raise


def write_bytes_atomic(url: str, data: bytes) -> None:
    """Write ``data`` to ``url`` (never half-visible)."""
    with tempfile.TemporaryDirectory(prefix="hpa-keras-upload-") as folder:
        local = Path(folder) / "data"
        local.write_bytes(data)
        upload_file_atomic(local, url)


def _remote_files(url: str) -> list[str]:
    """Relative names of the files under ``url`` (empty when it does not exist)."""
    with reaching(url) as gfile:
        return _walk(gfile, url)


def _walk(gfile, url: str) -> list[str]:
    if not gfile.exists(url):
        return []
    names = []
    for folder, _, files in gfile.walk(url):
        relative = folder[len(url.rstrip("/")) :].strip("/")
        names += [f"{relative}/{name}" if relative else name for name in files]
    return names


def download_folder(url: str, local) -> Path:
    """Copy the files under ``url`` into ``local`` (created); returns ``local``."""
    local = Path(local)
    local.mkdir(parents=True, exist_ok=True)
    with reaching(url) as gfile:
        if gfile.exists(url) and not gfile.isdir(url):
            raise InputError(f"{url}: a file, expected a folder")
        for name in _walk(gfile, url):
            target = local / name
            target.parent.mkdir(parents=True, exist_ok=True)
            gfile.copy(join(url, name), str(target), overwrite=True)
    return local


def download_file(url: str, local_folder) -> Path:
    """Copy the file ``url`` into ``local_folder``; InputError naming it when missing."""
    with reaching(url) as gfile:
        if not gfile.exists(url):
            raise InputError(f"{url}: file not found")
        target = Path(local_folder) / url.rstrip("/").rsplit("/", 1)[1]
        gfile.copy(url, str(target), overwrite=True)
    return target


class StagedFolder:
    """A local folder mirrored to ``url``: :meth:`upload` sends what changed since the last
    upload (files in their folder order, :data:`LAST_FILES` last) and removes what was
    deleted locally."""

    def __init__(self, url: str, local, download: bool = True):
        self.url = url.rstrip("/")
        self.local = Path(local)
        self._sent: dict[str, tuple[int, int]] = {}
        if download:
            download_folder(self.url, self.local)
            # What came down is what is there: nothing to send back until it changes.
            self._sent = {name: self._stamp(name) for name in self._local_files()}
        else:
            self.local.mkdir(parents=True, exist_ok=True)

    def _local_files(self) -> list[str]:
        names = [
            path.relative_to(self.local).as_posix()
            for path in sorted(self.local.rglob("*"))
            if path.is_file() and not path.name.startswith(".")  # atomic writes' temporaries
        ]
        return sorted(names, key=lambda name: (Path(name).name in LAST_FILES, name))

    def _stamp(self, name: str) -> tuple[int, int]:
        status = (self.local / name).stat()
        return status.st_size, status.st_mtime_ns

    def upload(self) -> None:
        present = self._local_files()
        for name in present:
            stamp = self._stamp(name)
            if self._sent.get(name) != stamp:
                upload_file_atomic(self.local / name, join(self.url, name))
                self._sent[name] = stamp
        # Deletions last: the thresholds naming a new best epoch are up before the old goes.
        with reaching(self.url) as gfile:
            for name in sorted(set(_walk(gfile, self.url)) - set(present)):
                with contextlib.suppress(Exception):
                    gfile.remove(join(self.url, name))
        self._sent = {name: stamp for name, stamp in self._sent.items() if name in present}


@contextlib.contextmanager
def staged_folder(url: str, download: bool = True, upload: bool = True):
    """Yield a :class:`StagedFolder` for ``url`` in a temporary local folder; upload it at
    the end (also after an error: what was finished is kept), then remove the local copy."""
    local = Path(tempfile.mkdtemp(prefix="hpa-keras-staged-"))
    try:
        staged = StagedFolder(url, local / "folder", download=download)
        try:
            yield staged
        finally:
            if upload:
                staged.upload()
    finally:
        shutil.rmtree(local, ignore_errors=True)


def work_at_url(url, work, upload: bool = True):
    """``work(staged)`` for an output folder ``url``: it works in a local copy of the folder
    (a :class:`StagedFolder`; what an interrupted run left there comes down first), uploaded
    at the end, also after an error (``upload=False``: never). Returns what ``work`` returns.

    ``make-tfrecords``, ``fit`` and ``cv`` write a URL this way (the two last also upload
    after every epoch: :func:`hpa_keras.training.fit.train_at_url`).
    """
    with staged_folder(os.fspath(url), upload=upload) as staged:
        return work(staged)
