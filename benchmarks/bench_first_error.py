"""Seconds from a typed command to its first error line, for the typos users make.

Each command runs in a fresh interpreter (``python -m hpa_keras ...``), as a user
runs it, and is timed to its exit (the error line is its last act). With
``--compare FOLDER`` (another checkout of hpa-keras, e.g. ``git worktree add
/tmp/old COMMIT``) the same commands run from that checkout too, side by side,
and the ratio is printed.

    python benchmarks/bench_first_error.py --repeats 3 --compare /tmp/old
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TYPOS = (
    ("a records folder that does not exist", ["fit", "--data", "nosuch", "--out", "run"]),
    ("a run folder that does not exist", ["predict", "--run", "nosuch", "--data", "nosuch"]),
    ("a misspelt model", ["fit", "--data", "nosuch", "--model", "densnet121"]),
    ("a misspelt recipe", ["fit", "--data", "nosuch", "--config", "recipes/gapnett"]),
    ("a label file that does not exist", ["make-tfrecords", "--images", ".", "--labels", "x.csv"]),
)


def seconds(checkout: Path, argv: list[str], folder: str) -> tuple[float, int]:
    environment = dict(os.environ, PYTHONPATH=str(checkout))
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "hpa_keras", *argv],
        cwd=folder,
        env=environment,
        capture_output=True,
        text=True,
    )
    return time.perf_counter() - started, result.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compare", type=Path, help="another checkout of hpa-keras")
    arguments = parser.parse_args()
    here = Path(__file__).resolve().parents[1]
    checkouts = {"this checkout": here}
    if arguments.compare:
        checkouts["--compare"] = arguments.compare.resolve()
    print(f"{'typo':40} " + " ".join(f"{name:>15}" for name in checkouts) + "   ratio")
    with tempfile.TemporaryDirectory() as folder:
        for what, argv in TYPOS:
            medians = []
            for checkout in checkouts.values():
                times = []
                for _ in range(arguments.repeats):
                    elapsed, _ = seconds(checkout, argv, folder)
                    times.append(elapsed)
                medians.append(statistics.median(times))
            ratio = f"{medians[1] / medians[0]:6.1f}x" if len(medians) == 2 else ""
            print(f"{what:40} " + " ".join(f"{value:14.2f}s" for value in medians) + f"  {ratio}")


if __name__ == "__main__":
    main()
