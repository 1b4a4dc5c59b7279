"""Worker processes for the data commands (generation, TFRecord conversion).

Decoding and encoding PNGs is CPU-bound Python/OpenCV work, so it runs in
processes, one per core. They are started with ``spawn``: forking a process
that has loaded TensorFlow (a notebook, the TFRecord writer) can deadlock.
With one worker everything runs in the calling process, which keeps tests and
debugging simple.
"""

import collections
import itertools
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


def ordered_map(
    function: Callable, tasks: Iterable, workers: int, max_pending: int | None = None
) -> Iterator:
    """``function(task)`` for each task, in task order, in ``workers`` processes.

    At most ``max_pending`` tasks (default ``8 * workers``) are submitted and
    not yet consumed, so when the caller is the slower side (writing large
    results) finished results do not pile up in memory: ``Pool.imap`` would
    take every task at once and queue every result. Tasks are pulled from the
    iterable lazily. An exception (or KeyboardInterrupt) in the caller
    terminates the workers.
    """
    if workers <= 1:
        yield from map(function, tasks)
        return
    window = max_pending or 8 * workers
    iterator = iter(tasks)
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_worker_init) as pool:
        pending = collections.deque(
            pool.apply_async(function, (task,)) for task in itertools.islice(iterator, window)
        )
        while pending:
            result = pending.popleft().get()
            for task in itertools.islice(iterator, 1):
                pending.append(pool.apply_async(function, (task,)))
            yield result
