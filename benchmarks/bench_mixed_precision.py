"""Training in bfloat16 on a CPU that has it, against float32: speed and learning curves.

Generates built-in data (``--samples`` fields at ``--image-size`` px, real label sets),
converts it, and trains the same ``--model`` twice with the same deterministic settings
(``fit --deterministic``), once in float32 and once with ``--mixed-precision`` (the
``mixed_bfloat16`` policy on a CPU); prints the seconds of each epoch (timed by a
callback, the first epoch's tracing apart) and, epoch by epoch, the training loss and the
validation macro F1 (tuned) of both, side by side.

    python benchmarks/bench_mixed_precision.py --out bench-bf16 --model gapnet --epochs 10
"""

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from hpa_keras.data.conversion import ConversionSettings, make_tfrecords
from hpa_keras.synthetic.generator import DemoDataSettings, make_demo_data
from hpa_keras.training.fit import fit, resolve_config


def epoch_timer():
    """A Keras callback keeping each epoch's seconds in ``.seconds``."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.started)

    return EpochTimer()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--model", default="gapnet")
    parser.add_argument("--samples", type=int, default=1200)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    arguments = parser.parse_args(argv)
    out = Path(arguments.out)
    if not (out / "records" / "manifest.json").is_file():
        make_demo_data(
            out / "data",
            DemoDataSettings(num_samples=arguments.samples, image_size=arguments.image_size,
                             seed=0, test_fraction=0.0),
            overwrite=True, progress=False,
        )  # fmt: skip
        make_tfrecords(
            out / "data" / "train", out / "records", labels=out / "data" / "train.csv",
            settings=ConversionSettings(num_folds=5), progress=False,
        )  # fmt: skip
    histories, seconds = {}, {}
    for name, mixed in (("float32", False), ("bfloat16", True)):
        run = out / name
        shutil.rmtree(run, ignore_errors=True)  # timed afresh
        timer = epoch_timer()
        config = resolve_config({
            "data": str(out / "records"), "out": str(run), "model": arguments.model,
            "epochs": arguments.epochs, "batch_size": arguments.batch_size, "cache": True,
            "lr": 2e-3, "schedule": "cosine", "seed": 0, "deterministic": True,
            "mixed_precision": mixed, "verbose": 0, "tensorboard": False
        })  # fmt: skip
        fit(config, callbacks=[timer])
        histories[name] = pd.read_csv(run / "history.csv")
        seconds[name] = timer.seconds
    rest = {name: np.mean(values[1:]) for name, values in seconds.items()}
    print(
        f"{arguments.model}, {arguments.samples} fields of {arguments.image_size} px, batch "
        f"{arguments.batch_size}, {arguments.epochs} epochs, deterministic"
    )
    print(
        f"seconds per epoch after the first: float32 {rest['float32']:.1f}, bfloat16 "
        f"{rest['bfloat16']:.1f} ({rest['float32'] / rest['bfloat16']:.2f}x); first epoch "
        f"{seconds['float32'][0]:.1f} and {seconds['bfloat16'][0]:.1f}"
    )
    print(f"  {'epoch':>5} {'loss f32':>9} {'loss bf16':>9} {'val F1 f32':>10} {'val F1 bf16':>11}")
    first, second = histories["float32"], histories["bfloat16"]
    for row in range(min(len(first), len(second))):
        print(
            f"  {row:5d} {first['loss'][row]:9.4f} {second['loss'][row]:9.4f} "
            f"{first['val_macro_f1_tuned'][row]:10.4f} {second['val_macro_f1_tuned'][row]:11.4f}"
        )
    best = {name: history["val_macro_f1_tuned"].max() for name, history in histories.items()}
    print(f"best validation macro F1 (tuned): float32 {best['float32']:.4f}, "
          f"bfloat16 {best['bfloat16']:.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
