"""Losses for 28 independent, heavily imbalanced labels.

Plain binary cross-entropy lets the 12,885 Nucleoplasm images drown the 11
Rods & rings ones. The remedies tried on this challenge are here, as
serializable Keras losses (registered, so saved models reload in safe mode):

- :class:`WeightedBinaryCrossentropy`: positive weights per class (see
  :func:`positive_weights`) and/or class weights (see
  :func:`inverse_log_class_weights`);
- focal loss: Keras' own ``keras.losses.BinaryFocalCrossentropy``;
- :class:`SoftF1Loss`: one minus a differentiable macro F1 over the batch;
- :class:`CapsuleMarginLoss`: the capsule network's margin loss.

Weights are computed from per-class counts, such as a TFRecord manifest's
``class_counts`` and ``num_records``.
"""

import keras
import numpy as np
from keras import ops

from hpa_keras.training.config import POSITIVE_WEIGHT_RULES

PACKAGE = "hpa_keras"


def positive_weights(class_counts, num_samples: int, rule: str = "ratio") -> np.ndarray:
    """Per-class weight of the positive term, from ``ratio = negatives / positives``.

    Rules: ``"none"`` (all 1), ``"ratio"`` (the ratio itself), ``"log"``
    (its natural log, at least 1, since classes on over a third of the images
    would otherwise get weights below 1 or negative) and ``"sqrt"`` (its
    square root). Classes with no positive sample count as having one.
    """
    if rule not in POSITIVE_WEIGHT_RULES:
        raise ValueError(f"positive-weight rule {rule!r}: use one of {POSITIVE_WEIGHT_RULES}")
    positives = np.maximum(np.asarray(class_counts, dtype=np.float64), 1.0)
    ratio = np.maximum(num_samples - positives, 0.0) / positives
    weights = {
        "none": np.ones_like(ratio),
        "ratio": ratio,
        "log": np.maximum(np.log(np.maximum(ratio, 1e-12)), 1.0),
        "sqrt": np.sqrt(ratio),
    }[rule]
    return weights.astype(np.float32)


def inverse_log_class_weights(class_counts) -> np.ndarray:
    """Class weights proportional to ``1 / log(N_i)``, scaled to mean 1.

    ``N_i`` is floored at 2 so that a class seen once or never gets a finite,
    large weight rather than a division by zero.
    """
    counts = np.maximum(np.asarray(class_counts, dtype=np.float64), 2.0)
    weights = 1.0 / np.log(counts)
    return (weights / weights.mean()).astype(np.float32)


@keras.saving.register_keras_serializable(package=PACKAGE)
class WeightedBinaryCrossentropy(keras.losses.Loss):
    """Binary cross-entropy with per-class positive weights and class weights.

    Per sample: the mean over classes of
    ``-class_weight_c * (pos_weight_c * y log p + (1 - y) log(1 - p))``.

    Args:
        pos_weights: one weight per class for the positive term (default 1).
        class_weights: one weight per class for the whole term (default 1).
    """

    def __init__(self, pos_weights=None, class_weights=None, name="weighted_bce", **kwargs):
        super().__init__(name=name, **kwargs)
        self.pos_weights = None if pos_weights is None else [float(v) for v in pos_weights]
        self.class_weights = None if class_weights is None else [float(v) for v in class_weights]

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        epsilon = keras.config.epsilon()
        probabilities = ops.clip(y_pred, epsilon, 1.0 - epsilon)
        positive = y_true * ops.log(probabilities)
        if self.pos_weights is not None:
            positive = positive * ops.convert_to_tensor(self.pos_weights, dtype=y_pred.dtype)
        terms = -(positive + (1.0 - y_true) * ops.log(1.0 - probabilities))
        if self.class_weights is not None:
            terms = terms * ops.convert_to_tensor(self.class_weights, dtype=y_pred.dtype)
        return ops.mean(terms, axis=-1)

    def get_config(self):
        return {
            **super().get_config(),
            "pos_weights": self.pos_weights,
            "class_weights": self.class_weights,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class SoftF1Loss(keras.losses.Loss):
    """One minus the macro F1 of the batch computed with probabilities instead of 0/1.

    Per class: ``tp = sum(y p)``, ``fp = sum((1 - y) p)``, ``fn = sum(y (1 - p))``
    over the batch and ``F1 = 2 tp / (2 tp + fp + fn + epsilon)``; the loss is
    ``1 - mean_c F1``, the same for every sample of the batch. It optimizes
    the challenge's score directly but needs batches large enough to hold
    positives of most classes.
    """

    def __init__(self, name="soft_f1", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        true_positive = ops.sum(y_true * y_pred, axis=0)
        false_positive = ops.sum((1.0 - y_true) * y_pred, axis=0)
        false_negative = ops.sum(y_true * (1.0 - y_pred), axis=0)
        f1 = (
            2.0
            * true_positive
            / (2.0 * true_positive + false_positive + false_negative + keras.config.epsilon())
        )
        return (1.0 - ops.mean(f1)) * ops.ones_like(y_pred[:, 0])


@keras.saving.register_keras_serializable(package=PACKAGE)
class CapsuleMarginLoss(keras.losses.Loss):
    """The margin loss of capsule networks (Sabour et al. 2017), summed over classes.

    ``y max(0, m_plus - p)^2 + weight_absent (1 - y) max(0, p - m_minus)^2``
    with ``p`` the capsule length.
    """

    def __init__(self, m_plus=0.9, m_minus=0.1, weight_absent=0.5, name="margin", **kwargs):
        super().__init__(name=name, **kwargs)
        self.m_plus, self.m_minus, self.weight_absent = m_plus, m_minus, weight_absent

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        present = y_true * ops.square(ops.relu(self.m_plus - y_pred))
        absent = (1.0 - y_true) * ops.square(ops.relu(y_pred - self.m_minus))
        return ops.sum(present + self.weight_absent * absent, axis=-1)

    def get_config(self):
        return {
            **super().get_config(),
            "m_plus": self.m_plus,
            "m_minus": self.m_minus,
            "weight_absent": self.weight_absent,
        }
