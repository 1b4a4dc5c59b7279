"""Training samples per second: one JAX process against two (data parallel), side by side.

Both train the same GAP-Net on the same synthetic records with the same
global batch (two processes: half each, on the loopback address, gloo
collectives between CPU devices). A process's time per epoch is the
difference between a run of E + 1 epochs and a run of 1 epoch, over E (so
start-up and compilation cancel). On one 2-core CPU machine this measures
the mechanics and their overhead, not a speed-up: the two processes share
the same two cores.

    python benchmarks/bench_processes.py --epochs 3
"""

import argparse
import csv
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hpa_keras.data.conversion import ConversionSettings, make_tfrecords
from hpa_keras.synthetic.generator import DemoDataSettings, make_demo_data

BATCH = 16


def run(records: Path, out: Path, epochs: int, processes: int) -> float:
    """Wall seconds of one fit with ``processes`` processes."""
    command = [
        sys.executable, "-m", "hpa_keras", "fit", "--data", str(records), "--out", str(out),
        "--model", "gapnet", "--model-option", "width=8", "--model-option", "depth=2",
        "--batch-size", str(BATCH), "--epochs", str(epochs), "--no-tensorboard", "--quiet",
    ]  # fmt: skip
    environment = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3"}
    started = time.perf_counter()
    if processes == 1:
        subprocess.run(command, env=environment, check=True, capture_output=True)
        return time.perf_counter() - started
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    group = [
        subprocess.Popen(
            command
            + [
                "--distributed",
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                str(processes),
                "--process-id",
                str(index),
            ],
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for index in range(processes)
    ]
    if any(process.wait() for process in group):
        raise SystemExit("a process failed")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-samples", type=int, default=240)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        make_demo_data(folder / "data", DemoDataSettings(
            num_samples=arguments.num_samples, image_size=arguments.image_size, test_fraction=0.0,
        ), progress=False)  # fmt: skip
        records = folder / "records"
        make_tfrecords(folder / "data" / "train", records, labels=folder / "data" / "train.csv",
                       progress=False, settings=ConversionSettings(num_shards=12))  # fmt: skip
        with open(folder / "data" / "train.csv") as file:
            samples = sum(1 for _ in csv.DictReader(file))
        train = samples * 4 // 5  # fold 0 of 5 validates
        rows = []
        for processes in (1, 2):
            short = run(records, folder / f"short{processes}", 1, processes)
            long = run(records, folder / f"long{processes}", arguments.epochs + 1, processes)
            per_epoch = (long - short) / arguments.epochs
            rows.append((processes, per_epoch, train / per_epoch, short))
    print(
        f"GAP-Net (width 8, depth 2), {arguments.image_size} px synthetic records, global "
        f"batch {BATCH}, ~{train} training samples per epoch, JAX on {os.cpu_count()} CPU cores"
    )
    print(f"{'processes':>9}{'s/epoch':>10}{'samples/s':>11}{'1-epoch run, s':>16}")
    for processes, per_epoch, rate, short in rows:
        print(f"{processes:>9}{per_epoch:>10.2f}{rate:>11.1f}{short:>16.1f}")
    print(f"two / one: {rows[1][2] / rows[0][2]:.2f}x the samples per second")


if __name__ == "__main__":
    main()
