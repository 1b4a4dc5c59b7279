"""Where does one training step's time go? A model's train step under each precision and
compiler, with and without the augmentation layers, side by side in one run.

Times ``--steps`` Adam steps (binary cross-entropy, batch ``--batch-size``, random 4-channel
fields at ``--image-size``) after one untimed step (tracing), for: float32 and
mixed_bfloat16 in graph mode, both with XLA (``jit_compile=True``), and both without the
augmentation layers. Run it again with ``KERAS_BACKEND=jax`` for the JAX backend.

    python benchmarks/bench_train_step.py --model densenet121
    KERAS_BACKEND=jax python benchmarks/bench_train_step.py --model densenet121 --only-plain
"""

import argparse
import time

import numpy as np


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="densenet121")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument(
        "--only-plain", action="store_true", help="only graph mode without augmentation"
    )
    arguments = parser.parse_args(argv)
    import keras

    from hpa_keras.models.task import build_task_model

    rng = np.random.default_rng(0)
    size, batch = arguments.image_size, arguments.batch_size
    images = rng.integers(0, 256, (batch, size, size, 4)).astype(np.uint8)
    targets = (rng.random((batch, 28)) > 0.9).astype(np.float32)
    cases = [(policy, False, False) for policy in ("float32", "mixed_bfloat16")]
    if not arguments.only_plain:
        cases += [(policy, True, True) for policy in ("float32", "mixed_bfloat16")]
        cases += [(policy, False, True) for policy in ("float32", "mixed_bfloat16")]
    print(f"{arguments.model}, {keras.backend.backend()} backend, {size} px, batch {batch}")
    for policy, jit, augmented in cases:
        keras.config.set_dtype_policy(policy)
        options = {} if augmented else {"dihedral": False, "brightness": 0.0, "contrast": 0.0}
        model, _ = build_task_model(
            arguments.model, num_classes=28, channel_mean=[20.0] * 4, channel_std=[40.0] * 4,
            input_size=size, **options,
        )  # fmt: skip
        model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="binary_crossentropy",
                      jit_compile=jit)  # fmt: skip
        started = time.perf_counter()
        model.train_on_batch(images, targets)
        first = time.perf_counter() - started
        started = time.perf_counter()
        for _ in range(arguments.steps):
            model.train_on_batch(images, targets)
        rate = arguments.steps * batch / (time.perf_counter() - started)
        print(
            f"  {policy:15} {'XLA' if jit else 'graph':5} "
            f"{'augmented' if augmented else 'no augmentation':16} {rate:6.1f} images/s "
            f"(first step {first:.0f} s)"
        )


if __name__ == "__main__":
    main()
