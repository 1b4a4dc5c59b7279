"""Converting full-size real fields to 512 px records, against the bare decode and resize.

    python benchmarks/bench_fields.py [--samples 48] [--size 512]

Data (../shared): the HPA v18 RGB JPEGs (2048 and 1728 px) and the 2021
challenge's 2048 px grayscale PNGs, each repeated under new Ids (hard links)
to ``--samples``. For each, printed in samples per second, measured in one
run:

- the bare loop, one process: decode each sample's four files with OpenCV,
  take the stain (the colour component of a v18 file), area-resize to
  ``--size``; nothing is checked, encoded or written;
- ``make-tfrecords`` (raw, 512 px) with 1 and with 2 workers, for
  ``--samples`` and twice as many: the rate in all, and the steady rate of
  the extra samples (start-up cancels out), with the ratios the targets are
  set on: 2 workers against 1 (target 1.8x) and the converter per worker
  against the bare loop (target 0.85);
- the peak resident memory of the converter (its main process and its
  largest worker) for ``--samples`` and for twice as many: it streams, so
  the peak should not grow with the number of samples.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
STAIN = {"red": [2], "green": [1], "blue": [0], "yellow": [2, 1]}


def repeated_folder(folder: Path, source: Path, extension: str, count: int, rename) -> Path:
    """``count`` samples made of the shared ones, hard-linked under new Ids ``rename(Id, k)``,
    with a label file giving each class 0."""
    ids = sorted({path.name.rsplit("_", 1)[0] for path in source.glob(f"*.{extension}")})
    images = folder / "images"
    images.mkdir(parents=True)
    rows = []
    for index in range(count):
        original = ids[index % len(ids)]
        new_id = rename(original, index)
        for channel in STAIN:
            os.link(
                source / f"{original}_{channel}.{extension}",
                images / f"{new_id}_{channel}.{extension}",
            )
        rows.append(f"{new_id},0")
    (folder / "labels.csv").write_text("Id,Target\n" + "\n".join(rows) + "\n")
    return folder


def v18_folder(folder: Path, count: int) -> Path:
    """The shared HPA v18 RGB JPEGs (2048 and 1728 px) under new Ids."""
    source = SHARED / "hpa-v18-external" / "images"
    return repeated_folder(folder, source, "jpg", count, lambda sample, k: f"{sample}_{k}")


def field_folder(folder: Path, count: int) -> Path:
    """The shared 2021 fields (2048 px grayscale PNGs) under new Ids."""
    source = SHARED / "hpa-2021-single-cell" / "images"
    return repeated_folder(folder, source, "png", count, lambda sample, k: f"field-{k:04d}")


def bare_loop(folder: Path, size: int) -> float:
    """Decode, take the stain, resize: the least a converter must do, in one process."""
    files = sorted((folder / "images").iterdir())
    samples = {}
    for path in files:
        sample_id, channel = path.stem.rsplit("_", 1)
        samples.setdefault(sample_id, {})[channel] = path
    cv2.setNumThreads(1)  # as in the converter's workers
    started = time.perf_counter()
    for channels in samples.values():
        planes = []
        for channel, components in STAIN.items():
            array = cv2.imread(str(channels[channel]), cv2.IMREAD_UNCHANGED)
            if array.ndim == 3 and len(components) == 1:
                array = array[..., components[0]]
            elif array.ndim == 3:
                array = ((array[..., 2].astype(np.uint16) + array[..., 1] + 1) >> 1).astype(
                    np.uint8
                )
            planes.append(array)
        cv2.resize(np.stack(planes, axis=-1), (size, size), interpolation=cv2.INTER_AREA)
    return len(samples) / (time.perf_counter() - started)


def convert(folder: Path, out: Path, size: int, workers: int) -> tuple[float, list[int]]:
    """Seconds and peak memory (MB: main process, largest worker) of a conversion run in a
    fresh process, so that each measurement starts alike (TensorFlow imported before the
    clock starts)."""
    script = f"""
import glob, os, re, threading, time
from hpa_keras.tensorflow_setup import import_tensorflow_quietly
from hpa_keras.data.conversion import ConversionSettings, make_tfrecords

def peak(pid="self"):
    return int(re.search(r"VmHWM:\\s+(\\d+)", open(f"/proc/{{pid}}/status").read())[1]) // 1024

def watch(done, peaks):
    # The workers' own peaks, read while they live: spawned processes start afresh (exec),
    # so their VmHWM is theirs alone.
    while not done.is_set():
        for listing in glob.glob(f"/proc/{{os.getpid()}}/task/*/children"):
            for child in open(listing).read().split():
                try:
                    peaks[child] = max(peaks.get(child, 0), peak(child))
                except (OSError, TypeError):
                    pass
        done.wait(0.2)

if __name__ == "__main__":
    import_tensorflow_quietly()
    done, peaks = threading.Event(), {{}}
    watcher = threading.Thread(target=watch, args=(done, peaks), daemon=True)
    watcher.start()
    started = time.perf_counter()
    manifest = make_tfrecords({str(folder / "images")!r}, {str(out)!r},
        labels={str(folder / "labels.csv")!r},
        settings=ConversionSettings(image_size={size}, num_folds=2, num_shards=4),
        workers={workers}, progress=False)
    seconds = time.perf_counter() - started
    done.set()
    print(seconds, peak(), max(peaks.values(), default=0))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    values = result.stdout.strip().splitlines()[-1].split()
    return float(values[0]), [int(value) for value in values[1:]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=48)
    parser.add_argument("--size", type=int, default=512)
    options = parser.parse_args()
    if not (SHARED / "hpa-v18-external").is_dir():
        raise SystemExit(f"needs the real fields in {SHARED}")
    print(f"{os.cpu_count()} CPU cores; raw records at {options.size} px; samples per second")
    count = options.samples
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        for name, make in (("HPA v18 RGB JPEGs, 2048/1728 px", v18_folder),
                           ("2021 fields, 2048 px grayscale PNGs", field_folder)):  # fmt: skip
            label = re.sub(r"\W+", "-", name)
            folders = {n: make(root / f"{label}-{n}", n) for n in (count, 2 * count)}
            bare = bare_loop(folders[count], options.size)
            seconds, memory, steady = {}, {}, {}
            for workers in (1, 2):
                for n, folder in folders.items():
                    out = root / f"{label}-{n}-{workers}"
                    seconds[workers, n], memory[workers, n] = convert(
                        folder, out, options.size, workers
                    )
                # The extra samples' rate: start-up (worker processes, planning) cancels out.
                steady[workers] = count / (seconds[workers, 2 * count] - seconds[workers, count])
            total = {workers: 2 * count / seconds[workers, 2 * count] for workers in (1, 2)}
            print(f"\n{name}; {2 * count} samples (steady rate: the last {count})")
            print(f"  bare decode + stain + resize, 1 process  {bare:7.1f}")
            for workers in (1, 2):
                ratio = steady[workers] / workers / bare
                print(
                    f"  make-tfrecords, {workers} worker{'s' if workers > 1 else ' '}"
                    f"               {total[workers]:7.1f} in all, {steady[workers]:7.1f} steady "
                    f"({ratio:.2f}x bare per worker)"
                )
            print(
                f"  2 workers against 1: {steady[2] / steady[1]:.2f}x steady, "
                f"{total[2] / total[1]:.2f}x in all"
            )
            print(
                f"  peak memory, MB (main process, largest worker), 2 workers: {count} samples "
                f"{memory[2, count]}, {2 * count} samples {memory[2, 2 * count]}; 1 worker: "
                f"{memory[1, count][0]}, {memory[1, 2 * count][0]}"
            )


if __name__ == "__main__":
    main()
