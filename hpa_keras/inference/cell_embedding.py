"""Every cell of a field in memory: its probabilities and its embedding, from a cell run, a
field run, or both mixed as ``predict`` mixes them. What ``annotate`` asks of a run.

The embedding is the model's pooled features: the input of its classification layer
(GAP-Net's dense features, a backbone's global average pool), the vector the classes are
read from. A cv ensemble's members each learned their own feature space, so averaging
their features means nothing: the embedding is its first fold's. A field run embeds a
cell by seeing the cell's crop as a small field (the registry's models pool globally and
take any size; one trained on whole fields sees the crop in the middle of a black field
of its size), at the scale it saw fields at.
"""

from dataclasses import dataclass, field

import numpy as np

from hpa_keras.data.cell_records import cell_crops
from hpa_keras.data.images import resize_square, to_uint8
from hpa_keras.errors import InputError
from hpa_keras.scoring.uncertainty import predictive_entropy

FIELD_RUN_CELL_SIDES = (8, 512)  # a field run sees a cell crop at its own scale, within these


@dataclass
class FieldCells:
    """What a field's cells came to.

    Attributes:
        numbers: the cells' numbers in the mask, ``(N,)``.
        probabilities: ``(N, K)`` as predicted (mixed with the field run's where given);
            the thresholds judge these.
        shown: ``(N, K)`` through the runs' calibration maps where they have them, else
            ``probabilities``: what a user reads.
        labels: ``(N, K)`` bool, ``probabilities >= thresholds``.
        entropy: ``(N,)`` bits, of ``probabilities``.
        embeddings: ``(N, D)`` float32.
        geometry: per cell ``box``, ``area``, ``edge``, ``small`` (from the crops).
        pixel_means: ``{stain: mean}`` of what the run saw (the crops, or the field at its
            size), in its pixel units: the stain check's input.
    """

    numbers: np.ndarray
    probabilities: np.ndarray
    shown: np.ndarray
    labels: np.ndarray
    entropy: np.ndarray
    embeddings: np.ndarray
    geometry: list
    pixel_means: dict = field(default_factory=dict)


def embedding_model(task_model):
    """A model with the task model's input and two outputs: ``(embedding, probabilities)``.

    The task model is a chain (standardization, augmentation, back to pixels, the registry
    model); the chain is called again up to the registry model, whose classification layer's
    input becomes the first output. Augmentation layers pass images through unchanged
    outside training.
    """
    import keras  # lazy: imports TensorFlow

    chain = [layer for layer in task_model.layers if not isinstance(layer, keras.layers.InputLayer)]
    core = chain[-1]
    if not isinstance(core, keras.Model) or not core.layers:
        raise InputError(f"{task_model.name}: no registry model inside to take features from")
    head = core.layers[-1]
    try:
        features = keras.Model(core.inputs, [head.input, core.outputs[0]], name="features")
    except (ValueError, AttributeError) as error:
        raise InputError(f"{task_model.name}: cannot read its pooled features ({error})") from None
    images = keras.Input(task_model.input.shape[1:], dtype=task_model.input.dtype, name="images")
    flowing = images
    for layer in chain[:-1]:
        flowing = layer(flowing, training=False)
    embedding, probabilities = features(flowing)
    embedding = keras.layers.Flatten(name="embedding")(embedding)
    return keras.Model(images, [embedding, probabilities], name=f"{task_model.name}_features")


def record_embeddings(run, data, batch_size: int = 16) -> np.ndarray:
    """``(N, D)`` float32: the embedding of every record of ``data`` (a make-tfrecords
    folder, cell records for a cell run), in record order, as the run's (first member's)
    model sees them (resized to its size, its channels): ``predict --embeddings``."""
    from hpa_keras.data.pipeline import load_dataset  # lazy: imports TensorFlow

    member = run.members[0] if run.members else run
    dataset = load_dataset(
        data,
        training=False,
        batch_size=batch_size,
        image_size=run.image_size,
        channels=run.channels,
        normalization="none",
    ).map(lambda batch, _: batch)
    embedding, _ = embedding_model(member.model).predict(dataset, verbose=0)
    return np.asarray(embedding, dtype=np.float32)


def write_embeddings(path, ids, embeddings: np.ndarray) -> None:
    """``ids`` (strings) and ``embeddings`` ``(N, D)`` float32 into an ``.npz`` at ``path``,
    atomically: ``np.load(path)["ids"]``, ``["embeddings"]``."""
    import io

    from hpa_keras.atomic import write_bytes_atomic

    ids = np.asarray([str(value) for value in ids])
    if len(ids) != len(embeddings):
        raise InputError(f"{path}: {len(embeddings)} embeddings for {len(ids)} Ids")
    buffer = io.BytesIO()
    np.savez(buffer, ids=ids, embeddings=np.asarray(embeddings, dtype=np.float32))
    write_bytes_atomic(path, buffer.getvalue())


def run_pixels(stains: dict, run, name: str) -> np.ndarray:
    """A field's stains as the run reads them: ``(H, W, len(run.channels))`` in its pixel
    type; InputError naming the field for a stain the run reads and the field lacks."""
    planes = []
    for stain in run.channels:
        plane = stains.get(stain)
        if plane is None:
            raise InputError(
                f"{name}: has no {stain} stain, which {run.folder} reads (it was trained on "
                f"{', '.join(run.channels)})"
            )
        if run.bit_depth == 16:
            if plane.dtype != np.uint16:
                raise InputError(f"{name}: 8-bit, but {run.folder} reads 16-bit images")
        else:
            plane = to_uint8(plane, run.sixteen_bit_rule)
        planes.append(plane)
    return np.stack(planes, axis=-1)


class CellClassifier:
    """A cell run (or cv folder of cell runs), a field run, or both, ready for fields.

    Args:
        run: a loaded run (:func:`~hpa_keras.inference.runs.load_run`) of cells or fields.
        image_run: a field run to mix in when ``run`` is a cell run.
        image_weight: the field run's share of the mixture.
        views: dihedral views (default: each run's own).
        batch_size: cells per batch.
    """

    def __init__(self, run, image_run=None, image_weight: float = 0.5, views=None, batch_size=32):
        if image_run is not None:
            if run.kind != "cells":
                raise InputError(f"{run.folder}: --image-run mixes a field run into a cell run")
            if image_run.kind != "fields":
                raise InputError(f"{image_run.folder}: --image-run takes a run trained on fields")
            if image_run.class_names != run.class_names:
                raise InputError(
                    f"{image_run.folder}: its classes differ from {run.folder}'s; they cannot mix"
                )
        if not 0 <= image_weight <= 1:
            raise InputError(f"--image-weight must be in [0, 1], got {image_weight}")
        self.run, self.image_run, self.image_weight = run, image_run, image_weight
        self.views = views or run.views
        self.batch_size = batch_size
        self.member = run.members[0] if run.members else run
        self.features = embedding_model(self.member.model)
        # one model gives both outputs where the run is one model seen once
        self.one_pass = not run.members and self.views == 1

    @property
    def channels(self) -> tuple[str, ...]:
        """The stains the runs read."""
        stains = set(self.run.channels) | set(self.image_run.channels if self.image_run else ())
        return tuple(stain for stain in ("red", "green", "blue", "yellow") if stain in stains)

    def _predict(self, model, images) -> list | np.ndarray:
        import keras  # lazy: imports TensorFlow

        outputs = model.predict(images, batch_size=self.batch_size, verbose=0)
        if isinstance(outputs, (list, tuple)):
            return [keras.ops.convert_to_numpy(output) for output in outputs]
        return keras.ops.convert_to_numpy(outputs)

    def _field_run_crops(self, pixels, cells, field_side: int, geometry) -> list:
        """A field run's view of each cell: the cell's crop (outside the cell zero) at the
        scale the run saw fields at; in the middle of a black field of the run's size where
        its model takes one size only."""
        run = self.run
        windows = [crop["window"] for crop in geometry]
        low, high = FIELD_RUN_CELL_SIDES
        side = float(np.median(windows)) * run.image_size / field_side
        side = int(np.clip(8 * round(side / 8), low, min(high, run.image_size)))
        geometry = cell_crops(pixels, cells, side, run.cell_margin, "zero")
        fixed = self.member.model.input.shape[1]
        if fixed is not None and fixed != side:
            start = (fixed - side) // 2
            for crop in geometry:
                canvas = np.zeros((fixed, fixed, crop["image"].shape[-1]), crop["image"].dtype)
                canvas[start : start + side, start : start + side] = crop["image"]
                crop["image"] = canvas
        return geometry

    def classify(self, stains: dict, cells: np.ndarray, name: str) -> FieldCells:
        """Every cell of one field: ``stains`` ``{stain: (H, W)}`` at full resolution and
        ``cells`` its label image of the same size."""
        run = self.run
        pixels = run_pixels(stains, run, name)
        field_side = max(cells.shape)
        geometry = cell_crops(pixels, cells, run.image_size, run.cell_margin, run.cell_context)
        count = len(geometry)
        if count == 0:
            empty = np.zeros((0, run.num_classes))
            return FieldCells(
                np.zeros(0, np.int64), empty, empty, empty.astype(bool), np.zeros(0),
                np.zeros((0, 0), np.float32), [],
            )  # fmt: skip
        if run.kind != "cells":  # a field run: crops at the scale it saw fields at
            geometry = self._field_run_crops(pixels, cells, field_side, geometry)
        crops = np.stack([crop.pop("image") for crop in geometry])
        for crop in geometry:
            crop.pop("mask", None)
        if run.kind == "cells":
            if self.one_pass:
                embeddings, probabilities = self._predict(self.features, crops)
            else:
                embeddings, _ = self._predict(self.features, crops)
                probabilities = self._predict(run.predictor(self.views), crops)
        else:
            embeddings, _ = self._predict(self.features, crops)
            whole = resize_square(pixels, run.image_size)[None]
            probabilities = np.repeat(self._predict(run.predictor(self.views), whole), count, 0)
        seen = crops if run.kind == "cells" else whole
        means = seen.reshape(-1, seen.shape[-1]).mean(axis=0)
        probabilities = np.asarray(probabilities, np.float64)
        shown = run.calibration.apply(probabilities) if run.calibration is not None else None
        if self.image_run is not None:
            image_run = self.image_run
            field_pixels = resize_square(run_pixels(stains, image_run, name), image_run.image_size)
            predicted = self._predict(image_run.predictor(image_run.views), field_pixels[None])[0]
            weight = self.image_weight
            mixed = (1 - weight) * probabilities + weight * np.asarray(predicted, np.float64)[None]
            if shown is not None and image_run.calibration is not None:
                shown = (1 - weight) * shown + weight * image_run.calibration.apply(predicted)[None]
            else:
                shown = None
            probabilities = mixed
        return FieldCells(
            numbers=np.array([crop["number"] for crop in geometry], np.int64),
            probabilities=probabilities,
            shown=probabilities if shown is None else np.asarray(shown, np.float64),
            labels=probabilities >= run.thresholds[None],
            entropy=predictive_entropy(probabilities),
            embeddings=np.asarray(embeddings, np.float32).reshape(count, -1),
            geometry=geometry,
            pixel_means={
                stain: float(mean) for stain, mean in zip(run.channels, means, strict=True)
            },
        )

    @property
    def calibrated(self) -> bool:
        """Whether the probabilities a user reads went through calibration maps."""
        if self.run.calibration is None:
            return False
        return self.image_run is None or self.image_run.calibration is not None
