"""GPU time and memory of the shipped recipes, estimated on paper (no GPU needed).

    python scripts/estimate_recipe_cost.py            # every recipe in hpa_keras/recipes

How: each recipe's model is built at its training input (the crop, else the
field size) and its multiply-adds and stored activations are counted layer
by layer (:mod:`hpa_keras.models.cost`). A training step costs about three
forward passes (the backward pass about two). The training rate is the
lowest of three bounds on one A100 80GB:

- arithmetic, from one published anchor: NVIDIA's ResNet-50 v1.5 trains at
  2,470 images/s on one A100 80GB in mixed precision at 224 px
  (DeepLearningExamples, PyTorch 21.03 NGC container); that many
  multiply-adds a second, spent on the recipe's model;
- memory traffic: each stored activation written and read about six times
  a step (forward, backward, its gradient), 2 bytes each in mixed precision
  (4 otherwise), at the A100 80GB's 2,039 GB/s;
- input: raw records of the recipe's field size read from local NVMe at
  2 GB/s (``--cache`` lifts this bound when the records fit in memory).

It says which bound binds. Real rates are lower: DenseNet's concatenations,
EfficientNet's depthwise convolutions and GAP-Net's small layers use a GPU
less well than ResNet-50, and Keras on TensorFlow is not NVIDIA's tuned
PyTorch. Read the times as a floor, not a promise. Memory is weights,
gradients and Adam's moments in float32 plus the batch's stored layer
outputs; frameworks add workspace (often a fifth to a half more).

Validation adds a forward pass over the validation fold in the recipe's
views every epoch. Data: the 2018 challenge's 31,072 training images, and
105,678 with the HPA v18 images, in 5 folds.
"""

import argparse
import sys

import yaml

ANCHOR_IMAGES_PER_SECOND = 2470.0  # ResNet-50 v1.5, 1x A100 80GB, mixed precision, 224 px
ANCHOR_SIZE = 224
MEMORY_BANDWIDTH = 2.039e12  # bytes/s, A100 80GB SXM
TOUCHES_PER_ACTIVATION = 6
INPUT_BANDWIDTH = 2.0e9  # bytes/s of raw records from local NVMe
DATA_SIZES = {"Kaggle 2018": 31_072, "Kaggle + HPA v18": 105_678}
FOLDS = 5
COMMENT_START = "# GPU cost on paper"


def anchor_multiply_adds_per_second() -> float:
    import keras

    from hpa_keras.models.cost import multiply_adds

    model = keras.applications.ResNet50(weights=None, input_shape=(ANCHOR_SIZE, ANCHOR_SIZE, 3))
    return ANCHOR_IMAGES_PER_SECOND * 3 * multiply_adds(model)


def recipe_cost(name: str, rate: float) -> dict:
    """Per-image work, memory and time per epoch of recipe ``name`` on the anchor GPU."""
    from hpa_keras.models.cost import activation_elements, multiply_adds, training_memory_bytes
    from hpa_keras.models.registry import build_model
    from hpa_keras.training.recipes import recipe_text

    settings = yaml.safe_load(recipe_text(name))
    field = settings.get("image_size") or 512
    side = settings.get("crop") or field
    model = build_model(
        settings.get("model", "gapnet"),
        input_shape=(side, side, 4),
        **settings.get("model_options", {}),
    )
    train_macs = multiply_adds(model)
    if settings.get("crop") and not settings.get("tiles"):
        # Validation sees whole fields: the work grows with the area.
        validation_macs = train_macs * (field / side) ** 2
    elif settings.get("tiles"):
        validation_macs = train_macs * settings["tiles"] ** 2
    else:
        validation_macs = train_macs
    views = settings.get("tta", 1)
    batch = settings.get("batch_size", 32)
    memory = training_memory_bytes(model, batch, bool(settings.get("mixed_precision")))
    epochs = settings.get("epochs", 10) + settings.get("frozen_epochs", 0)
    element_bytes = 2 if settings.get("mixed_precision") else 4
    bounds = {
        "arithmetic": rate / (3 * train_macs),
        "memory traffic": MEMORY_BANDWIDTH
        / (TOUCHES_PER_ACTIVATION * activation_elements(model) * element_bytes),
        "input": INPUT_BANDWIDTH / (field * field * 4),
    }
    binding = min(bounds, key=bounds.get)
    # Per image, the work of training relative to the arithmetic bound; validation scales alike.
    slowdown = bounds["arithmetic"] / bounds[binding]
    result = {
        "recipe": name,
        "model": settings.get("model", "gapnet"),
        "input": side,
        "field": field,
        "batch": batch,
        "epochs": epochs,
        "gmacs": train_macs / 1e9,
        "parameters": memory["parameters"],
        "memory_gib": memory["total"] / 2**30,
        "images_per_second": bounds[binding],
        "bound": binding,
        "times": {},
    }
    for data, images in DATA_SIZES.items():
        train = images * (FOLDS - 1) / FOLDS * 3 * train_macs
        validate = images / FOLDS * views * validation_macs
        epoch_seconds = (train + validate) / rate * slowdown
        result["times"][data] = {
            "epoch_minutes": epoch_seconds / 60,
            "run_hours": epoch_seconds * epochs / 3600,
            "cv_hours": epoch_seconds * epochs * FOLDS / 3600,
        }
    return result


def describe(cost: dict) -> str:
    lines = [
        f"{cost['recipe']}: {cost['model']} at {cost['input']} px (fields {cost['field']}), "
        f"{cost['parameters'] / 1e6:.1f} M parameters, {cost['gmacs']:.1f} G multiply-adds an "
        f"image; batch {cost['batch']}: {cost['memory_gib']:.1f} GiB on paper; "
        f"~{cost['images_per_second']:.0f} training images/s on one A100 ({cost['bound']} "
        "bound)"
    ]
    for data, times in cost["times"].items():
        lines.append(
            f"  {data}: {times['epoch_minutes']:.1f} min an epoch, {times['run_hours']:.1f} h a "
            f"run of {cost['epochs']} epochs, {times['cv_hours']:.1f} h for {FOLDS} folds"
        )
    return "\n".join(lines)


def recipe_comment(cost: dict) -> str:
    """The cost lines a recipe file carries (a test keeps them equal to this)."""
    lines = [
        f"{COMMENT_START} (python scripts/estimate_recipe_cost.py; the method is in its",
        f"# docstring): one A100 80GB, ~{cost['images_per_second']:.0f} training images/s "
        f"({cost['bound']} bound), {cost['memory_gib']:.1f} GiB at batch {cost['batch']}.",
    ]
    for data, times in cost["times"].items():
        lines.append(
            f"# {data} ({DATA_SIZES[data]:,} images): {times['epoch_minutes']:.1f} min an epoch, "
            f"{times['run_hours']:.1f} h a run, {times['cv_hours']:.1f} h for {FOLDS} folds."
        )
    return "\n".join(lines)


def update_recipe_file(name: str, comment: str) -> None:
    """Put ``comment`` in the recipe's file, after its other header comments (replacing an
    earlier cost comment)."""
    from hpa_keras.atomic import write_text_atomic
    from hpa_keras.training.recipes import recipe_path

    path = recipe_path(name)
    lines = path.read_text().splitlines()
    start = next(
        (index for index, line in enumerate(lines) if line.startswith(COMMENT_START)), None
    )
    if start is not None:
        end = start
        while end < len(lines) and lines[end].startswith("#"):
            end += 1
        del lines[start:end]
    else:
        start = next(index for index, line in enumerate(lines) if not line.startswith("#"))
    lines[start:start] = comment.splitlines()
    write_text_atomic(path, "\n".join(lines) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipes", nargs="*", help="recipe names (default: all)")
    parser.add_argument(
        "--comments", action="store_true", help="also print the lines for the recipe files"
    )
    parser.add_argument(
        "--update", action="store_true", help="write the cost lines into the recipe files"
    )
    arguments = parser.parse_args(argv)
    from hpa_keras.tensorflow_setup import import_tensorflow_quietly
    from hpa_keras.training.recipes import recipe_names

    import_tensorflow_quietly()
    rate = anchor_multiply_adds_per_second()
    print(
        f"anchor: ResNet-50 at {ANCHOR_SIZE} px, {ANCHOR_IMAGES_PER_SECOND:.0f} images/s "
        f"-> {rate / 1e12:.1f} T multiply-adds/s of training on one A100 80GB"
    )
    for name in arguments.recipes or recipe_names():
        cost = recipe_cost(name, rate)
        print(describe(cost))
        if arguments.comments:
            print(recipe_comment(cost))
        if arguments.update:
            update_recipe_file(name, recipe_comment(cost))
    return 0


if __name__ == "__main__":
    sys.exit(main())
