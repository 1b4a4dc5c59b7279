"""Dihedral test-time augmentation: the one implementation, run on the device.

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
"""

import keras
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


class DihedralTTA(keras.Model):
    """A model's predictions reduced over the first ``views`` dihedral views of each input.

    Args:
        model: maps ``(B, H, H, C)`` images (uint8 or float) to ``(B, K)`` scores.
        views: 1, 2, 4 or 8.
        reduce: ``"mean"`` (default) or ``"max"`` over the views.

    Views are taken of a float32 copy of the images: TensorFlow's CPU kernels
    log an error line for uint8 transposes, and the wrapped model casts the
    float pixel values back to its input type exactly (they are integers).
    The wrapper is built for prediction only and is not meant to be saved.

    Example:
        >>> probabilities = DihedralTTA(run.model, views=8).predict(dataset)
    """

    def __init__(self, model, views: int = DIHEDRAL_VIEWS, reduce: str = "mean", **kwargs):
        super().__init__(**kwargs)
        if reduce not in REDUCTIONS:
            raise ValueError(f"reduce must be 'mean' or 'max', got {reduce!r}")
        self.model = model
        self.views = check_view_count(views)
        self.reduce = reduce

    def call(self, images, training=False):
        images = ops.cast(images, "float32")
        outputs = [
            self.model(dihedral_view(images, index), training=False) for index in range(self.views)
        ]
        stacked = ops.stack(outputs, axis=0)
        return ops.mean(stacked, axis=0) if self.reduce == "mean" else ops.max(stacked, axis=0)


def with_tta(model, views: int = DIHEDRAL_VIEWS, reduce: str = "mean"):
    """``model`` itself for one view, else its :class:`DihedralTTA` wrapper."""
    if check_view_count(views) == 1 and reduce == "mean":
        return model
    return DihedralTTA(model, views=views, reduce=reduce)


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
