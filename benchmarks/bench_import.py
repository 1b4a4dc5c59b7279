"""An imported model's speed on this CPU against its PyTorch original, side by side, on the
same inputs and the same number of threads.

The originals are the published structures (tests/torch_reference.py) at full size with
random weights (speed does not depend on them): the 2018 winner's DenseNet121 per field,
at 1024 px (what its prediction script feeds the network) and 1536 px (the size its
resize step writes), and SubCell's ViT-B/16 per 448 px cell, in batches. Each is imported
with ``hpa-keras``'s importer, run by Keras on TensorFlow (``model.predict``), by OpenVINO
as ``predict --engine openvino:float32`` serves the run (the DenseNet at the run's 1024 px,
where OpenVINO is installed) and by PyTorch (``torch.no_grad``, eval mode), after one
warm-up call each; the largest difference from PyTorch's output is printed too.

    python benchmarks/bench_import.py [--threads 2] [--repeat 3] [--cells 16] [--sizes 1024,1536]

With ``KERAS_BACKEND=jax`` the Keras column is Keras on JAX (TensorFlow still reads the
files).
"""

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def _seconds(function, repeat: int) -> float:
    function()  # warm-up: tracing, allocation
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def _densenet(folder: Path, sizes, repeat: int) -> list[dict]:
    import torch
    from torch_reference import DensenetClass, randomize

    from hpa_keras.models.saving import load_model
    from hpa_keras.workflows.import_model import import_hpa_densenet

    original = randomize(DensenetClass(num_classes=28))
    torch.save({"state_dict": original.state_dict()}, folder / "densenet.pth")
    import_hpa_densenet(folder / "densenet.pth", folder / "densenet")
    model = load_model(folder / "densenet" / "model.keras")
    rows = []
    for size in sizes:
        pixels = np.random.default_rng(0).integers(0, 256, (1, size, size, 4), dtype=np.uint8)
        tensor = torch.from_numpy(pixels.astype(np.float32) / 255).permute(0, 3, 1, 2)

        def run_torch(tensor=tensor):
            with torch.no_grad():
                return torch.sigmoid(original(tensor.clone())[0]).numpy()

        def run_keras(pixels=pixels):
            return model.predict(pixels, verbose=0)

        difference = float(np.abs(run_keras() - run_torch()).max())
        torch_seconds = _seconds(run_torch, repeat)
        rows.append(
            {
                "what": f"DenseNet121 (winner), one {size} px field",
                "keras": _seconds(run_keras, repeat),
                "torch": torch_seconds,
                "difference": difference,
                "unit": "s/field",
            }
        )
        engine = _openvino_predictor(folder / "densenet", size)
        if engine is not None:
            difference = float(np.abs(engine.predict(pixels) - run_torch()).max())
            rows.append(
                {
                    "what": f"the same through OpenVINO (predict --engine openvino), {size} px",
                    "keras": _seconds(
                        lambda pixels=pixels, engine=engine: engine.predict(pixels), repeat
                    ),
                    "torch": torch_seconds,
                    "difference": difference,
                    "unit": "s/field",
                }
            )
    return rows


def _openvino_predictor(run_folder: Path, size: int):
    """The imported run as ``predict --engine openvino:float32`` serves it, at the run's
    own field size (its engine is exported for it), on Keras' TensorFlow backend where
    OpenVINO is installed; else None."""
    import keras

    from hpa_keras.inference.engine import openvino_available
    from hpa_keras.inference.runs import load_run

    run = load_run(run_folder)
    if (
        keras.backend.backend() != "tensorflow"
        or not openvino_available()
        or size != run.image_size
    ):
        return None
    return run.predictor(1, "openvino:float32")


def _subcell(folder: Path, cells: int, repeat: int) -> dict:
    import torch
    from torch_reference import (
        SUBCELL_VIT_B_CONFIG,
        ViTPoolClassifier,
        min_max_standardize,
        randomize,
    )

    from hpa_keras.models.saving import load_model
    from hpa_keras.workflows.import_model import import_subcell

    original = randomize(ViTPoolClassifier(SUBCELL_VIT_B_CONFIG, classifiers=2))
    encoder, classifiers = original.save_as_published(folder)
    import_subcell(encoder, classifiers, folder / "subcell")
    model = load_model(folder / "subcell" / "model.keras")
    pixels = np.random.default_rng(1).integers(0, 256, (cells, 448, 448, 4), dtype=np.uint8)
    tensor = torch.from_numpy(pixels.astype(np.float32)).permute(0, 3, 1, 2)

    def run_torch():
        with torch.no_grad():
            return original(min_max_standardize(tensor))[0].numpy()

    def run_keras():
        return model.predict(pixels, batch_size=cells, verbose=0)

    difference = float(np.abs(run_keras() - run_torch()).max())
    return {
        "what": f"SubCell ViT-B/16, 448 px cells in batches of {cells}",
        "keras": _seconds(run_keras, repeat) / cells,
        "torch": _seconds(run_torch, repeat) / cells,
        "difference": difference,
        "unit": "s/cell",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="threads for both (default: 2)")
    parser.add_argument("--repeat", type=int, default=3, help="timed calls, median (default: 3)")
    parser.add_argument("--cells", type=int, default=16, help="SubCell batch (default: 16)")
    parser.add_argument("--sizes", default="1024,1536", help="DenseNet field sides")
    arguments = parser.parse_args()

    import tensorflow as tf
    import torch

    torch.set_num_threads(arguments.threads)
    tf.config.threading.set_intra_op_parallelism_threads(arguments.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    folder = Path(tempfile.mkdtemp(prefix="bench-import-"))
    try:
        sizes = [int(size) for size in arguments.sizes.split(",")]
        rows = _densenet(folder, sizes, arguments.repeat)
        rows.append(_subcell(folder, arguments.cells, arguments.repeat))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    import keras

    print(
        f"{arguments.threads} threads, torch {torch.__version__}, tensorflow {tf.__version__}, "
        f"Keras {keras.__version__} on its {keras.backend.backend()} backend"
    )
    print("| model and input | Keras | PyTorch | Keras / PyTorch | largest difference |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['what']} | {row['keras']:.3f} {row['unit']} | {row['torch']:.3f} "
            f"{row['unit']} | {row['keras'] / row['torch']:.2f} | {row['difference']:.1e} |"
        )


if __name__ == "__main__":
    main()
