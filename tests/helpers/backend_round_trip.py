"""Save tiny models on this process's Keras backend, or load them and compare predictions.

Run by tests/test_backends.py as ``python backend_round_trip.py save|load FOLDER`` in a
subprocess with ``KERAS_BACKEND`` set, so that one test sees two backends.
"""

import json
import sys
from pathlib import Path

import numpy as np

# (name, input side): capsnet takes one input size; the others any.
MODELS = [
    ("gapnet", 32), ("densenet121", 32), ("resnet34", 32), ("inception_resnet_v2", 75),
    ("efficientnetv2_b0", 32), ("convnext_tiny", 32), ("simple_cnn", 32), ("capsnet", 32),
]  # fmt: skip


def build(name: str, side: int):
    """The model as fit builds it: uint8 in, standardization, augmentation, the registry model."""
    import keras

    from hpa_keras.models import TINY_OPTIONS, build_model
    from hpa_keras.models.augmentation import make_augmentation
    from hpa_keras.models.layers import ChannelStandardization

    core = build_model(name, input_shape=(side, side, 4), num_classes=28, **TINY_OPTIONS[name])
    images = keras.Input((side, side, 4), dtype="uint8")
    x = ChannelStandardization([20.0, 30.0, 40.0, 25.0], [10.0, 12.0, 9.0, 11.0])(images)
    x = make_augmentation()(x)
    return keras.Model(images, core(x), name=f"{name}_training")


def inputs(side: int) -> np.ndarray:
    return np.random.default_rng(side).integers(0, 255, (2, side, side, 4), dtype=np.uint8)


def save(folder: Path) -> None:
    import keras

    keras.utils.set_random_seed(0)
    for name, side in MODELS:
        model = build(name, side)
        model.save(folder / f"{name}.keras")
        np.save(folder / f"{name}.npy", np.asarray(model.predict(inputs(side), verbose=0)))
    (folder / "backend.txt").write_text(keras.backend.backend())


def load(folder: Path) -> dict:
    """The largest absolute difference per model between the saved and reloaded predictions."""
    import keras

    import hpa_keras  # noqa: F401  (registers the custom layers)

    differences = {}
    for name, side in MODELS:
        model = keras.saving.load_model(folder / f"{name}.keras", safe_mode=True)
        predicted = np.asarray(model.predict(inputs(side), verbose=0))
        differences[name] = float(np.abs(predicted - np.load(folder / f"{name}.npy")).max())
    return differences


if __name__ == "__main__":
    action, target = sys.argv[1], Path(sys.argv[2])
    if action == "save":
        save(target)
    else:
        print(json.dumps(load(target)))
