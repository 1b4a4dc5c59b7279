"""Throughput of the synthetic data generator, side by side in one run.

Prints samples per second for rendering alone (one process, no disk) and for
``make_demo_data`` with 1 and with N worker processes (render, PNG-encode and
write four channels), and the ratio of N workers to 1.

    python benchmarks/bench_synthetic.py --num-samples 1000 --image-size 256
"""

import argparse
import tempfile
import time

import numpy as np

from hpa_keras.parallel import default_workers
from hpa_keras.synthetic.generator import DemoDataSettings, make_demo_data, render_sample
from hpa_keras.synthetic.label_sampler import sample_label_sets


def render_only(count: int, image_size: int) -> float:
    labels = sample_label_sets(np.random.default_rng(0), count)
    start = time.perf_counter()
    for index, label_set in enumerate(labels):
        render_sample(np.random.default_rng([0, index]), label_set, image_size)
    return count / (time.perf_counter() - start)


def full_generation(settings: DemoDataSettings, workers: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        make_demo_data(folder, settings, workers=workers, progress=False)
        seconds = time.perf_counter() - start
    return settings.num_samples / seconds, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=default_workers())
    arguments = parser.parse_args()
    settings = DemoDataSettings(
        num_samples=arguments.num_samples, image_size=arguments.image_size, seed=0
    )

    print(
        f"{arguments.num_samples} samples at {arguments.image_size}x{arguments.image_size}, "
        f"{default_workers()} cores available"
    )
    rendered = render_only(min(arguments.num_samples, 200), arguments.image_size)
    print(f"  render only, 1 process, no disk:   {rendered:7.1f} samples/s")
    one, one_seconds = full_generation(settings, 1)
    print(f"  make_demo_data, 1 worker:          {one:7.1f} samples/s  ({one_seconds:.1f} s)")
    many, many_seconds = full_generation(settings, arguments.workers)
    print(
        f"  make_demo_data, {arguments.workers} workers:         {many:7.1f} samples/s  "
        f"({many_seconds:.1f} s)"
    )
    print(
        f"  speed-up {arguments.workers} workers / 1 worker: {many / one:.2f}x; "
        f"writing costs {100 * (1 - one / rendered):.0f}% of single-process throughput"
    )


if __name__ == "__main__":
    main()
