"""make-tfrecords throughput, side by side with the bare cost of decoding the inputs.

For real HPA channel PNGs (../shared, grouped one red, green, blue and yellow
file to a sample, repeated to the requested count) and for synthetic data at
the same 512x512 size, prints samples per second of:

- the bare limit: reading and decoding each sample's four PNGs with OpenCV in
  a tight loop, one process, nothing else;
- make-tfrecords with 1 and with 2 workers, png and raw encodings;
- reading the records back through tf.data (parse and decode four channels),

with ratios, shard sizes, and the converter's peak memory at two data set
sizes (it streams, so memory should not grow with the data).

    python benchmarks/bench_tfrecords.py --num-samples 384
"""

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
from real_hpa import real_hpa_folder  # benchmarks/real_hpa.py

from hpa_keras.classes import CHANNELS
from hpa_keras.data.conversion import ConversionSettings, make_tfrecords
from hpa_keras.synthetic.generator import DemoDataSettings, make_demo_data


def bare_decode(images: Path, ids) -> float:
    start = time.perf_counter()
    for sample_id in ids:
        for channel in CHANNELS:
            cv2.imread(str(images / f"{sample_id}_{channel}.png"), cv2.IMREAD_UNCHANGED)
    return len(ids) / (time.perf_counter() - start)


def convert(folder: Path, out: Path, encoding: str, workers: int) -> tuple[float, dict]:
    start = time.perf_counter()
    manifest = make_tfrecords(
        folder / "train",
        out,
        labels=folder / "train.csv",
        settings=ConversionSettings(encoding=encoding, num_shards=8),
        workers=workers,
        progress=False,
    )
    return manifest.num_records / (time.perf_counter() - start), manifest


def read_back(out: Path, manifest: dict) -> float:
    """Records per second through tf.data: parse, decode all four channels, batch."""
    import tensorflow as tf

    files = [str(out / shard["file"]) for shard in manifest.shards]
    size = manifest.image_size
    encoding = manifest.encoding
    spec = {"image": tf.io.VarLenFeature(tf.string)}

    def decode(serialized):
        parts = tf.io.parse_single_example(serialized, spec)["image"].values
        if encoding == "png":
            planes = [tf.io.decode_png(parts[index], channels=1) for index in range(4)]
            return tf.concat(planes, axis=-1)
        return tf.reshape(tf.io.decode_raw(parts[0], tf.uint8), (size, size, 4))

    dataset = (
        tf.data.TFRecordDataset(files, num_parallel_reads=len(files), buffer_size=8 << 20)
        .map(decode, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(32)
        .prefetch(tf.data.AUTOTUNE)
    )
    for _ in dataset.take(1):  # warm up (graph tracing)
        pass
    start = time.perf_counter()
    count = sum(int(batch.shape[0]) for batch in dataset)
    return count / (time.perf_counter() - start)


def peak_memory_megabytes(count: int, folder: Path, size: int = 256) -> float:
    """Peak resident memory of a separate process converting ``count`` synthetic samples.

    Raw encoding, 2 workers: the case where the writing process is the slower
    side, so results piling up (rather than streaming) would show.
    """
    data = folder / f"memory-{count}"
    make_demo_data(
        data,
        DemoDataSettings(num_samples=count, image_size=size, seed=1, test_fraction=0.0),
        progress=False,
    )
    script = (
        "import re\n"
        "from hpa_keras.data.conversion import ConversionSettings, make_tfrecords\n"
        "if __name__ == '__main__':\n"
        f"    make_tfrecords({str(data / 'train')!r}, {str(folder / f'memory-out-{count}')!r}, "
        f"labels={str(data / 'train.csv')!r}, settings=ConversionSettings(encoding='raw', "
        "num_shards=4), workers=2, progress=False)\n"
        # VmHWM: this address space's peak (ru_maxrss would carry the parent's over exec)
        "    print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1])\n"
    )
    script_path = folder / f"memory-{count}.py"
    script_path.write_text(script)
    result = subprocess.run(
        [sys.executable, str(script_path)], capture_output=True, text=True, check=True
    )
    return int(result.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-samples", type=int, default=384)
    arguments = parser.parse_args()
    count = arguments.num_samples
    import tensorflow  # noqa: F401  (imported once here, not inside the timings)

    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        datasets = {}
        real = real_hpa_folder(folder / "real", count)
        if real is None:
            print("../shared is absent: real HPA PNGs skipped")
        else:
            datasets["real HPA PNGs"] = real
        synthetic = folder / "synthetic"
        make_demo_data(
            synthetic,
            DemoDataSettings(num_samples=count, image_size=512, seed=0, test_fraction=0.0),
            progress=False,
        )
        datasets["synthetic"] = synthetic

        for name, data in datasets.items():
            ids = [path.name[: -len("_red.png")] for path in (data / "train").glob("*_red.png")]
            bare = bare_decode(data / "train", ids)
            print(f"\n{name}: {count} samples of 4 x 512x512 PNG")
            print(f"  bare limit, decode 4 PNGs, 1 process:   {bare:7.1f} samples/s")
            for encoding in ("png", "raw"):
                for workers in (1, 2):
                    out = folder / f"out-{name}-{encoding}-{workers}".replace(" ", "_")
                    rate, manifest = convert(data, out, encoding, workers)
                    megabytes = sum(shard["bytes"] for shard in manifest.shards) / 2**20
                    label = f"{workers} worker{'s' if workers > 1 else ' '}"
                    print(
                        f"  make-tfrecords {encoding}, {label}:"
                        f"  {rate:7.1f} samples/s  ({rate / bare:.2f}x the bare limit; "
                        f"{1024 * megabytes / count:.0f} KiB a sample)"
                    )
                read = read_back(out, manifest)
                print(f"  tf.data read-back of {encoding} records:   {read:7.1f} samples/s")

        small, large = max(count // 4, 64), max(count, 256)
        print(
            f"\npeak memory of the converter process (raw, 256 px, 2 workers): "
            f"{small} samples {peak_memory_megabytes(small, folder):.0f} MB, "
            f"{large} samples {peak_memory_megabytes(large, folder):.0f} MB"
        )
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"(this benchmark process: {usage:.0f} MB peak)")


if __name__ == "__main__":
    main()
