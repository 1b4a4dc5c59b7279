"""Test-time augmentation (dihedral views, tiles): the one implementation, run on the device.

A field of cells has no orientation, so each of the eight symmetries of the
square (four quarter turns, each with or without a mirror) is an equally
valid view of it; averaging a model's predictions over several views is
the test-time augmentation the 2018 winners used (8 dihedral views).

:class:`DihedralTTA` wraps a model so that the views are made and averaged
inside the model's own graph: ``DihedralTTA(model, 8).predict(dataset)``
keeps the accelerator busy like a plain ``model.predict``, instead of a
numpy loop over views between the device and the host. Prediction,
evaluation and threshold tuning all use it, so thresholds are tuned on
probabilities made the same way as those they are applied to.

Tiles: a model trained on crops of larger fields (``fit --crop 512`` from
768 px records) can see a whole field (the registry's models pool
globally) or the mean over an N x N grid of crop-sized tiles spread evenly
over it, corners included (``fit --tiles N``); :func:`tile_offsets` places
them.
"""

import keras
import numpy as np
from keras import ops

DIHEDRAL_VIEWS = 8
VIEW_COUNTS = (1, 2, 4, 8)
REDUCTIONS = ("mean", "max")


def dihedral_view(images, index: int):
    """View ``index`` (0-7) of a batch ``(B, H, H, C)``: ``index // 2`` quarter turns,
    mirrored left-right when ``index`` is odd."""
    view = ops.rot90(images, k=index // 2, axes=(1, 2))
    return ops.flip(view, axis=2) if index % 2 else view


def inverse_dihedral_view(views, index: int):
    """Undo :func:`dihedral_view` (for maps such as class activation maps)."""
    if index % 2:
        views = ops.flip(views, axis=2)
    return ops.rot90(views, k=-(index // 2), axes=(1, 2))


def check_view_count(count: int) -> int:
    """``count`` if it is 1, 2, 4 or 8 (the first views are the most different ones)."""
    if count not in VIEW_COUNTS:
        raise ValueError(f"views must be 1, 2, 4 or 8, got {count}")
    return count


def dihedral_views(images, count: int = DIHEDRAL_VIEWS) -> list:
    """The first ``count`` (1, 2, 4 or 8) dihedral views of a batch."""
    return [dihedral_view(images, index) for index in range(check_view_count(count))]


def tile_offsets(side: int, tile: int, tiles: int) -> list[int]:
    """Top-left offsets of ``tiles`` windows of ``tile`` pixels spread evenly over ``side``
    (first at 0, last at ``side - tile``; one tile is centred)."""
    if not 0 < tile <= side:
        raise ValueError(f"tile {tile} must be between 1 and the field's side {side}")
    if tiles == 1:
        return [(side - tile) // 2]
    return [round(position) for position in np.linspace(0, side - tile, tiles)]


class DihedralTTA(keras.Model):
    """A model's predictions reduced over dihedral views (and tiles) of each input.

    Args:
        model: maps ``(B, H, H, C)`` images (uint8 or float) to ``(B, K)`` scores.
        views: 1, 2, 4 or 8 dihedral views.
        reduce: ``"mean"`` (default) or ``"max"`` over the views.
        tiles: 0 (the whole image) or N: each view is cut into an N x N grid
            of ``tile_size`` tiles (:func:`tile_offsets`), all predicted.
        tile_size: the side of a tile (a run's ``crop``).

    Views are taken of a float32 copy of the images: TensorFlow's CPU kernels
    log an error line for uint8 transposes, and the wrapped model casts the
    float pixel values back to its input type exactly (they are integers).
    The wrapper is built for prediction only and is not meant to be saved.

    Example:
        >>> probabilities = DihedralTTA(run.model, views=8).predict(dataset)
    """

    def __init__(
        self,
        model,
        views: int = DIHEDRAL_VIEWS,
        reduce: str = "mean",
        tiles: int = 0,
        tile_size: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if reduce not in REDUCTIONS:
            raise ValueError(f"reduce must be 'mean' or 'max', got {reduce!r}")
        if tiles and not tile_size:
            raise ValueError("tiles need a tile_size")
        self.model = model
        self.views = check_view_count(views)
        self.reduce = reduce
        self.tiles = int(tiles)
        self.tile_size = tile_size

    def _windows(self, images):
        if not self.tiles:
            return [images]
        side = images.shape[1]
        if side is None:
            raise ValueError("tiles need images of a known size")
        offsets = tile_offsets(side, self.tile_size, self.tiles)
        size = self.tile_size
        return [
            images[:, top : top + size, left : left + size, :]
            for top in offsets
            for left in offsets
        ]

    def call(self, images, training=False):
        images = ops.cast(images, "float32")
        outputs = [
            self.model(window, training=False)
            for index in range(self.views)
            for window in self._windows(dihedral_view(images, index))
        ]
        stacked = ops.stack(outputs, axis=0)
        return ops.mean(stacked, axis=0) if self.reduce == "mean" else ops.max(stacked, axis=0)


class MeanOfModels(keras.Model):
    """The mean of several models' outputs for the same input (a cv's fold ensemble).

    Args:
        models: Keras models taking the same input and giving outputs of the
            same shape.

    Like :class:`DihedralTTA`, built for prediction and not meant to be saved;
    the two compose (``DihedralTTA(MeanOfModels(models), 8)``), and since
    both take means the result is the mean over models of each model's
    views.
    """

    def __init__(self, models, **kwargs):
        super().__init__(**kwargs)
        if not models:
            raise ValueError("MeanOfModels needs at least one model")
        self.members = list(models)

    def call(self, images, training=False):
        outputs = [member(images, training=False) for member in self.members]
        return ops.mean(ops.stack(outputs, axis=0), axis=0)


def with_tta(
    model, views: int = DIHEDRAL_VIEWS, reduce: str = "mean", tiles: int = 0, tile_size=None
):
    """``model`` itself for one view of the whole image, else its :class:`DihedralTTA`."""
    if check_view_count(views) == 1 and reduce == "mean" and not tiles:
        return model
    return DihedralTTA(model, views=views, reduce=reduce, tiles=tiles, tile_size=tile_size)


def predict_with_tta(
    model, images, views: int = DIHEDRAL_VIEWS, reduce: str = "mean", batch_size: int = 32
):
    """Predictions of ``model`` reduced over the dihedral views of each image.

    Args:
        model: a Keras model mapping images to per-class probabilities.
        images: an array ``(N, H, H, C)`` or a finite ``tf.data.Dataset`` of
            image batches (or ``(images, anything)`` batches).
        views: 1, 2, 4 or 8 views.
        reduce: ``"mean"`` or ``"max"`` over the views.
    """
    predictor = with_tta(model, views, reduce)
    return ops.convert_to_numpy(predictor.predict(images, batch_size=batch_size, verbose=0))
