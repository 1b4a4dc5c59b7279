"""Training samples per second: one JAX process against two (data parallel), side by side.

Both train the same GAP-Net on the same synthetic records with the same
global batch (two processes: half each, on the loopback address, gloo
collectives between CPU devices). The time of a step is what Keras prints
for each epoch (the epoch's time, its validation pass included, over its
steps), the median over the epochs after the first (which compiles). On one
2-core CPU machine this measures the mechanics and their overhead, not a
speed-up: the two processes share the same two cores.

    python benchmarks/bench_processes.py --epochs 6
"""

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from hpa_keras.data.conversion import ConversionSettings, make_tfrecords
from hpa_keras.data.tfrecords import read_manifest
from hpa_keras.synthetic.generator import DemoDataSettings, make_demo_data

BATCH = 16


STEP_TIME = re.compile(r" - (\d+(?:\.\d+)?)(ms|s)/step")


def step_seconds(log: str) -> float:
    """The median of the per-step times Keras printed, the first epoch left out."""
    times = [float(value) / (1000 if unit == "ms" else 1) for value, unit in STEP_TIME.findall(log)]
    if len(times) < 2:
        raise SystemExit(f"no step times in the output:\n{log[-2000:]}")
    return statistics.median(times[1:])


def run(records: Path, out: Path, epochs: int, processes: int) -> float:
    """Seconds per training step of one fit with ``processes`` processes (process 0's)."""
    command = [
        sys.executable, "-m", "hpa_keras", "fit", "--data", str(records), "--out", str(out),
        "--model", "gapnet", "--model-option", "width=8", "--model-option", "depth=2",
        "--batch-size", str(BATCH), "--epochs", str(epochs), "--no-tensorboard", "--verbose", "2",
    ]  # fmt: skip
    environment = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3"}
    if processes == 1:
        result = subprocess.run(
            command, env=environment, check=True, capture_output=True, text=True
        )
        return step_seconds(result.stdout)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    group = []
    for index in range(processes):
        flags = ["--distributed", "--coordinator", f"127.0.0.1:{port}"]
        flags += ["--num-processes", str(processes), "--process-id", str(index)]
        output = subprocess.PIPE if index == 0 else subprocess.DEVNULL
        process = subprocess.Popen(
            command + flags, env=environment, stdout=output, stderr=subprocess.DEVNULL, text=True
        )
        group.append(process)
    log = group[0].communicate()[0]
    if any(process.wait() for process in group):
        raise SystemExit("a process failed")
    return step_seconds(log)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-samples", type=int, default=240)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=6)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        make_demo_data(folder / "data", DemoDataSettings(
            num_samples=arguments.num_samples, image_size=arguments.image_size, test_fraction=0.0,
        ), progress=False)  # fmt: skip
        records = folder / "records"
        make_tfrecords(folder / "data" / "train", records, labels=folder / "data" / "train.csv",
                       progress=False, settings=ConversionSettings(num_shards=12))  # fmt: skip
        # fit validates on fold 0 and trains on the others
        train = sum(f["num_records"] for f in read_manifest(records).folds if f["fold"] != 0)
        steps = train // BATCH
        rows = []
        for processes in (1, 2):
            step = run(records, folder / f"run{processes}", arguments.epochs, processes)
            rows.append((processes, step, BATCH / step))
    print(
        f"GAP-Net (width 8, depth 2), {arguments.image_size} px synthetic records, global "
        f"batch {BATCH}, {train} training samples ({steps} steps) an epoch, JAX on "
        f"{os.cpu_count()} CPU cores; median of epochs 2-{arguments.epochs}"
    )
    print(f"{'processes':>9}{'ms/step':>10}{'samples/s':>11}")
    for processes, step, rate in rows:
        print(f"{processes:>9}{step * 1000:>10.0f}{rate:>11.1f}")
    print(
        f"two / one: {rows[1][2] / rows[0][2]:.2f}x the samples per second; two processes add "
        f"{(rows[1][1] - rows[0][1]) * 1000:.0f} ms a step"
    )


if __name__ == "__main__":
    main()
