"""Worker processes for the data commands (generation, TFRecord conversion).

Decoding and encoding PNGs is CPU-bound Python/OpenCV work, so it runs in
processes, one per core. They are started with ``spawn``: forking a process
that has loaded TensorFlow (a notebook, the TFRecord writer) can deadlock.
With one worker everything runs in the calling process, which keeps tests and
debugging simple.
"""

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator

import cv2


def default_workers() -> int:
    """The cores this process may use."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _worker_init() -> None:
    cv2.setNumThreads(1)  # one process per core; OpenCV's own threads would oversubscribe


def ordered_map(function: Callable, tasks: Iterable, workers: int, chunksize: int = 4) -> Iterator:
    """``function(task)`` for each task, in task order, in ``workers`` processes.

    Results are yielded as they complete in order, so a caller can stream them
    to disk; an exception (or KeyboardInterrupt) in the caller terminates the
    workers.
    """
    if workers <= 1:
        yield from map(function, tasks)
        return
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_worker_init) as pool:
        yield from pool.imap(function, tasks, chunksize=chunksize)
