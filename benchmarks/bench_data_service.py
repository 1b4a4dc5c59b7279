"""Training input per second: decoded here, or on a tf.data service, side by side.

The training pipeline of ``fit`` (PNG records at 512 px, shuffled, decoded,
randomly cropped to 384 and augmented on the CPU with the package's
augmentation layers; uint8 out) is consumed (a) in this process and (b) from
a tf.data service whose dispatcher and workers run in a separate process
(``hpa-keras data-service``), as on a cluster where they would run on other
machines. On one machine both compete for the same cores, so (b) shows the
service's overhead; the trainer's own CPU time is printed too: that is what
the service frees on a trainer whose cores are the bottleneck.

    python benchmarks/bench_data_service.py --num-samples 160 --workers 2
"""

import argparse
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from real_hpa import real_hpa_folder  # benchmarks/real_hpa.py

from hpa_keras.data.conversion import ConversionSettings, make_tfrecords
from hpa_keras.data.pipeline import load_dataset
from hpa_keras.models.augmentation import make_augmentation
from hpa_keras.synthetic.generator import DemoDataSettings, make_demo_data

BATCH = 16


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def consume(records: Path, batches: int, service: str | None) -> tuple[float, float]:
    """(images per second, trainer CPU seconds per image) over ``batches`` batches."""
    dataset = load_dataset(
        records, training=True, batch_size=BATCH, normalization="none", crop=384, seed=0,
        augment=make_augmentation(), data_service=service,
    )  # fmt: skip
    iterator = iter(dataset)
    for _ in range(3):  # warm-up: workers start, buffers fill
        next(iterator)
    started, cpu = time.perf_counter(), cpu_seconds()
    for _ in range(batches):
        next(iterator)
    seconds = time.perf_counter() - started
    return batches * BATCH / seconds, (cpu_seconds() - cpu) / (batches * BATCH)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-samples", type=int, default=160)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batches", type=int, default=30)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        data = real_hpa_folder(folder / "real", arguments.num_samples)
        kind = "real HPA channel PNGs"
        if data is None:
            kind = "synthetic fields"
            data = folder / "synthetic"
            make_demo_data(data, DemoDataSettings(num_samples=arguments.num_samples,
                                                  image_size=512, test_fraction=0.0))  # fmt: skip
        records = folder / "records"
        make_tfrecords(data / "train", records, labels=data / "train.csv", progress=False,
                       settings=ConversionSettings(encoding="png", num_shards=8))  # fmt: skip
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = subprocess.Popen(
            [sys.executable, "-m", "hpa_keras", "data-service", "--port", str(port),
             "--workers", str(arguments.workers)],
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            server.stdout.readline()  # "running" once it listens
            local_rate, local_cpu = consume(records, arguments.batches, None)
            remote_rate, remote_cpu = consume(
                records, arguments.batches, f"grpc://localhost:{port}"
            )
        finally:
            server.terminate()
            server.wait()
    print(f"{arguments.num_samples} {kind} as PNG records, 512 px, crop 384, batch {BATCH}, "
          f"{os.cpu_count()} cores")  # fmt: skip
    print(f"{'input':<40}{'images/s':>10}{'trainer CPU ms/image':>24}")
    print(f"{'this process (tf.data)':<40}{local_rate:>10.1f}{local_cpu * 1000:>24.2f}")
    label = f"tf.data service ({arguments.workers} workers, other process)"
    print(f"{label:<40}{remote_rate:>10.1f}{remote_cpu * 1000:>24.2f}")
    print(
        f"service / local: {remote_rate / local_rate:.2f}x the images per second, "
        f"{remote_cpu / local_cpu:.2f}x the trainer's CPU per image"
    )


if __name__ == "__main__":
    main()
