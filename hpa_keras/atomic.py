"""Atomic file writes: write to a temporary name beside the target, then rename.

A reader (or a rerun after a crash) sees either the old complete file or the
new complete file, never a half-written one, because ``os.replace`` within one
directory is atomic on POSIX and Windows.
"""

import contextlib
import os
import tempfile
from pathlib import Path


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates files readable by the owner only; finished files get the
# permissions an ordinary open() would have given them.
_FILE_MODE = 0o666 & ~_current_umask()


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


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (a URL too: :mod:`hpa_keras.storage`)."""
    from hpa_keras import storage

    if storage.is_url(path):
        storage.write_bytes_atomic(os.fspath(path), data)
        return
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically, with ``\\n`` line ends."""
    write_bytes_atomic(path, text.encode("utf-8"))
