"""annotate's speed on real 2048 px HPA fields, by stage, and its peak memory over 100 and
1,000 generated fields, each measured in a fresh ``hpa-keras annotate`` process.

Speed: the five real 2021 fields of the maintainers' sample folder, each listed
``--repeat`` times under other Ids (so the per-field figures are means over many fields
and the first field's model tracing is spread thin), annotated with a GAP-Net cell run
(128 px cells; trained for one epoch on generated cells here, since speed does not depend
on the weights) with one worker and with two. Per stage: the mean seconds each field's
record holds (read, quality, segment, pictures, classify, write); end to end: the
command's wall time over the fields, start-up and the outputs (table, AnnData, UMAP,
viewer) included, and without the start-up.

Memory: ``make-demo-data --cells`` fields (``--memory-side`` px), annotated in one process
(one worker) by the same run, 100 and then 1,000 of them: the peak resident memory of the
annotate process (ru_maxrss of the child).

    python benchmarks/bench_annotate.py [--repeat 6] [--memory 100,1000] [--out bench-annotate]
"""

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("read", "quality", "segment", "pictures", "classify", "write")


WRAPPER = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
    "stdout=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def hpa_keras(*arguments) -> tuple[float, int]:
    """Run ``hpa-keras ARGUMENTS`` in a fresh process: (wall seconds, its peak resident
    memory in MiB, read by a wrapper process whose only child it is)."""
    start = time.perf_counter()
    command = [sys.executable, "-m", "hpa_keras", *map(str, arguments)]
    printed = subprocess.run(
        [sys.executable, "-c", WRAPPER, *command], check=True, cwd=ROOT, capture_output=True,
        text=True,
    ).stdout  # fmt: skip
    return time.perf_counter() - start, int(printed.split()[-1]) // 1024


def make_cell_run(out: Path) -> Path:
    """A GAP-Net (registry defaults) trained for one epoch on generated 128 px cells."""
    run = out / "cell-run"
    if (run / "model.keras").is_file():
        return run
    hpa_keras("make-demo-data", out / "train-data", "--num-samples", 24, "--image-size", 256,
              "--cells", "--scheme", "hpa2021", "--test-fraction", 0, "--workers", 1)  # fmt: skip
    hpa_keras("make-tfrecords", "--images", out / "train-data" / "train", "--labels",
              out / "train-data" / "train.csv", "--masks", out / "train-data" / "masks",
              "--cell-size", 128, "--out", out / "cell-records", "--folds", 2, "--workers", 1,
              "--quiet")  # fmt: skip
    hpa_keras("fit", "--data", out / "cell-records", "--out", run, "--model", "gapnet",
              "--epochs", 1, "--batch-size", 32, "--quiet")  # fmt: skip
    return run


def real_plate(images: Path, out: Path, repeat: int) -> tuple[Path, int]:
    """The real fields, each linked ``repeat`` times under new Ids."""
    plate = out / "real-plate"
    shutil.rmtree(plate, ignore_errors=True)
    plate.mkdir(parents=True)
    fields = sorted({path.name.rsplit("_", 1)[0] for path in images.glob("*_blue.png")})
    for copy in range(repeat):
        for field_id in fields:
            for stain in ("red", "green", "blue", "yellow"):
                target = plate / f"{field_id[:8]}-{copy}_{stain}.png"
                os.symlink(images / f"{field_id}_{stain}.png", target)
    return plate, len(fields) * repeat


def speed(run: Path, images: Path, out: Path, repeat: int) -> None:
    plate, count = real_plate(images, out, repeat)
    hpa_keras("models")  # warm the file cache and Python's bytecode
    start_up, _ = hpa_keras("annotate", "--help")
    print(f"\n## Speed: {count} real 2048 px fields (5 fields x {repeat}), GAP-Net cell run\n")
    print(f"process start-up (hpa-keras annotate --help): {start_up:.1f} s\n")
    rows = {}
    for workers in (1, 2):
        target = out / f"annotation-{workers}"
        shutil.rmtree(target, ignore_errors=True)
        wall, peak = hpa_keras("annotate", "--images", plate, "--run", run, "--out", target,
                               "--workers", workers, "--quiet")  # fmt: skip
        with open(target / "fields.csv") as handle:
            fields = list(csv.DictReader(handle))
        stages = {
            stage: sum(float(row[f"seconds_{stage}"]) for row in fields) / len(fields)
            for stage in STAGES
        }
        cells = sum(int(row["cells"]) for row in fields) / len(fields)
        summary = json.loads((target / "summary.json").read_text())
        rows[workers] = (stages, wall, peak, cells, summary)
    print("| stage (mean s a field) | 1 worker | 2 workers |")
    print("|---|---|---|")
    for stage in STAGES:
        print(f"| {stage} | {rows[1][0][stage]:.3f} | {rows[2][0][stage]:.3f} |")
    for workers in (1, 2):
        stages, wall, peak, cells, summary = rows[workers]
        rest = wall - summary["seconds"] - summary["seconds_outputs"]
        print(
            f"\n{workers} worker{'s' * (workers > 1)}: {wall:.1f} s for {count} fields "
            f"({cells:.0f} cells a field): {wall / count:.2f} s a field end to end, "
            f"{(wall - start_up) / count:.2f} s without the start-up; sum of stages "
            f"{sum(stages.values()):.2f} s; peak memory {peak} MiB; of the wall time, the "
            f"fields' loop {summary['seconds']:.1f} s ({summary['seconds'] / count:.2f} s a "
            f"field), the outputs {summary['seconds_outputs']:.1f} s, the rest (loading "
            f"TensorFlow and the run) {rest:.1f} s"
        )


def memory(run: Path, out: Path, counts: list[int], side: int) -> None:
    largest = max(counts)
    data = out / f"generated-{largest}"
    if not (data / "train").is_dir():
        hpa_keras("make-demo-data", data, "--num-samples", largest, "--image-size", side,
                  "--cells", "--scheme", "hpa2021", "--test-fraction", 0, "--quiet")  # fmt: skip
    ids = sorted({path.name.rsplit("_", 1)[0] for path in (data / "train").glob("*_blue.png")})
    print(f"\n## Peak memory: generated {side} px fields, one worker\n")
    print("| fields | cells | peak memory (MiB) | seconds | s a field | outputs (s) |")
    print("|---|---|---|---|---|---|")
    for count in counts:
        plate = out / f"plate-{count}"
        shutil.rmtree(plate, ignore_errors=True)
        plate.mkdir()
        for field_id in ids[:count]:
            for stain in ("red", "green", "blue", "yellow"):
                os.symlink(
                    data / "train" / f"{field_id}_{stain}.png", plate / f"{field_id}_{stain}.png"
                )
        target = out / f"annotation-memory-{count}"
        shutil.rmtree(target, ignore_errors=True)
        wall, peak = hpa_keras("annotate", "--images", plate, "--run", run, "--out", target,
                               "--workers", 1, "--quiet")  # fmt: skip
        summary = json.loads((target / "summary.json").read_text())
        print(
            f"| {count} | {summary['cells']} | {peak} | {wall:.0f} | {wall / count:.2f} | "
            f"{summary['seconds_outputs']:.0f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/hpa-2021-single-cell"))
    parser.add_argument("--out", default="bench-annotate")
    parser.add_argument("--repeat", type=int, default=6)
    parser.add_argument("--memory", default="100,1000", help="field counts ('' to skip)")
    parser.add_argument("--memory-side", type=int, default=512)
    parser.add_argument("--skip-speed", action="store_true")
    arguments = parser.parse_args()
    out = Path(arguments.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    run = make_cell_run(out)
    if not arguments.skip_speed:
        speed(run, Path(arguments.data) / "images", out, arguments.repeat)
    if arguments.memory:
        memory(
            run, out, [int(count) for count in arguments.memory.split(",")], arguments.memory_side
        )


if __name__ == "__main__":
    main()
