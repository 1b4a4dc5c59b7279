"""Prediction speed and agreement: the Keras model against its OpenVINO engine, side by side.

Two parts, either or both:

``--models``: each named architecture, built with 4 channels at ``--image-size`` (random
weights: speed does not depend on them), predicts the same ``--images`` random uint8
fields in batches of ``--batch-size`` through Keras (TensorFlow, float32), ONNX Runtime
(where ``onnxruntime`` and ``tf2onnx`` are installed: Keras' ONNX export needs them), the
OpenVINO engine in float32 and, where the CPU has it, in bfloat16; images per second after a
warm-up batch, the ratio to Keras, and the largest probability difference from Keras.

``--run RUN --test RECORDS``: a trained run (or cv folder: each fold) predicts labelled
records through Keras and through each engine precision: the largest probability
difference, the labels that change (decisions over the run's thresholds that differ from
Keras'), and macro F1, so "within 1e-3" is also counted in what a user sees.

    python benchmarks/bench_engine.py --models densenet121 resnet50 gapnet --image-size 256
    python benchmarks/bench_engine.py --run hpa-demo/cv --test hpa-demo/tfrecords/test
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from hpa_keras.classes import CLASS_NAMES
from hpa_keras.errors import InputError
from hpa_keras.inference.engine import cpu_has_bfloat16, openvino_available


def _precisions() -> list[str]:
    return ["float32", "bfloat16"] if cpu_has_bfloat16() else ["float32"]


def _timed(predictor, images, batch_size: int) -> tuple[np.ndarray, float]:
    """Probabilities and images per second, after one warm-up batch (tracing, compiling)."""
    predictor.predict(images[:batch_size], verbose=0)
    started = time.perf_counter()
    outputs = [
        predictor.predict(images[start : start + batch_size], verbose=0)
        for start in range(0, len(images), batch_size)
    ]
    return np.concatenate(outputs), len(images) / (time.perf_counter() - started)


class _Compiled:
    """The engine's artifact compiled in a precision, whatever its difference from Keras
    (prediction refuses bfloat16 beyond 1e-3; a speed measurement wants it anyway)."""

    def __init__(self, artifact: Path, precision: str):
        import openvino

        hint = {"float32": "f32", "bfloat16": "bf16"}[precision]
        self.compiled = openvino.Core().compile_model(
            str(artifact), "CPU", {"INFERENCE_PRECISION_HINT": hint}
        )

    def predict(self, images, verbose=0):
        return np.asarray(self.compiled(images)[0])


def compiled_engine(run, precision: str) -> _Compiled:
    """The run's float32 engine exported (as prediction does), compiled in ``precision``."""
    from hpa_keras.inference.engine import ARTIFACT, engine_folder

    exported = run.predictor(1, "openvino:float32")
    exported.predict(np.zeros((1, run.image_size, run.image_size, 4), np.uint8))
    return _Compiled(engine_folder(run.folder, 1) / ARTIFACT, precision)


class _OnnxRuntime:
    """The run's model exported by Keras to ONNX and run by ONNX Runtime: the other engine
    the issue named, measured beside OpenVINO (needs ``tf2onnx`` and ``onnxruntime``)."""

    def __init__(self, model, image_size: int, folder: Path):
        import onnxruntime
        import tensorflow as tf

        path = folder / "model.onnx"
        signature = [tf.TensorSpec((None, image_size, image_size, 4), tf.uint8, name="images")]
        model.export(str(path), format="onnx", input_signature=signature, verbose=False)
        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.name = self.session.get_inputs()[0].name

    def predict(self, images, verbose=0):
        return self.session.run(None, {self.name: images})[0]


def _onnx_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
        import tf2onnx  # noqa: F401
    except ImportError:
        return False
    return True


def speed(models: list[str], image_size: int, count: int, batch_size: int) -> None:
    from hpa_keras.inference.runs import Run
    from hpa_keras.models.task import build_task_model

    images = np.random.default_rng(0).integers(0, 256, (count, image_size, image_size, 4))
    images = images.astype(np.uint8)
    print(
        f"prediction, images per second: {count} random fields of {image_size} px, "
        f"batch {batch_size}, 4 channels, 28 classes"
    )
    print(f"  {'model':14} {'engine':22} {'images/s':>9} {'x Keras':>8} {'largest diff':>13}")
    for name in models:
        model, _ = build_task_model(
            name, num_classes=28, channel_mean=[20.0] * 4, channel_std=[40.0] * 4,
            input_size=image_size,
        )  # fmt: skip
        with tempfile.TemporaryDirectory() as folder:
            model.save(Path(folder) / "model.keras")
            run = Run(
                folder=Path(folder), model=model, thresholds=np.full(28, 0.5),
                class_names=CLASS_NAMES, image_size=image_size,
                channels=("red", "green", "blue", "yellow"),
            )  # fmt: skip
            reference, keras_rate = _timed(run.predictor(1, "keras"), images, batch_size)
            print(f"  {name:14} {'Keras (TensorFlow)':22} {keras_rate:9.1f} {1.0:8.2f} {'-':>13}")
            if _onnx_available():
                predictor = _OnnxRuntime(model, image_size, Path(folder))
                probabilities, rate = _timed(predictor, images, batch_size)
                gap = np.abs(probabilities - reference).max()
                print(
                    f"  {name:14} {'ONNX Runtime float32':22} {rate:9.1f} "
                    f"{rate / keras_rate:8.2f} {gap:13.1e}"
                )
            for precision in _precisions() if openvino_available() else []:
                predictor = compiled_engine(run, precision)
                probabilities, rate = _timed(predictor, images, batch_size)
                gap = np.abs(probabilities - reference).max()
                print(
                    f"  {name:14} {'OpenVINO ' + precision:22} {rate:9.1f} "
                    f"{rate / keras_rate:8.2f} {gap:13.1e}"
                )


def agreement(run_folder: str, test: str) -> None:
    from hpa_keras.data.pipeline import dataset_labels
    from hpa_keras.inference.predict import predict_ids_by_member
    from hpa_keras.scoring.metrics import macro_f1

    ids, labels = dataset_labels(test)
    labels = np.asarray(labels).astype(bool)
    reference, thresholds = predict_ids_by_member([run_folder], ids, data=test, engine="keras")
    decided = reference.mean(axis=0) >= thresholds
    print(f"{run_folder} on {len(ids)} images of {test} ({reference.shape[0]} model(s)):")
    print(f"  {'engine':22} {'largest diff':>13} {'labels changed':>15} {'macro F1':>9}")
    print(f"  {'Keras (TensorFlow)':22} {'-':>13} {'-':>15} {macro_f1(labels, decided):9.4f}")
    for precision in ["auto", *_precisions()] if openvino_available() else []:
        try:
            members, _ = predict_ids_by_member(
                [run_folder], ids, data=test, engine=f"openvino:{precision}"
            )
        except InputError as error:  # bfloat16 beyond the bound on a fold's first batch
            print(f"  {'OpenVINO ' + precision:22} refused: {error}")
            continue
        changed = int(((members.mean(axis=0) >= thresholds) != decided).sum())
        print(
            f"  {'OpenVINO ' + precision:22} {np.abs(members - reference).max():13.1e} "
            f"{changed:>6} of {decided.size:<6} "
            f"{macro_f1(labels, members.mean(axis=0) >= thresholds):9.4f}"
        )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=[], help="registry names to time")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--run", help="a trained run or cv folder")
    parser.add_argument("--test", help="labelled records for --run")
    arguments = parser.parse_args(argv)
    if bool(arguments.run) != bool(arguments.test):
        parser.error("--run and --test go together")
    if not arguments.models and not arguments.run:
        parser.error("give --models, or --run with --test")
    if not openvino_available():
        print("OpenVINO is not installed (pip install 'hpa-keras[openvino]'): Keras only")
    if arguments.models:
        speed(arguments.models, arguments.image_size, arguments.images, arguments.batch_size)
    if arguments.run:
        agreement(arguments.run, arguments.test)


if __name__ == "__main__":
    main()
