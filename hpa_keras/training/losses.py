"""Losses for 28 independent, heavily imbalanced labels.

Plain binary cross-entropy lets the 12,885 Nucleoplasm images drown the 11
Rods & rings ones. The remedies tried on this challenge are here, as
serializable Keras losses (registered, so saved models reload in safe mode):

- :class:`WeightedBinaryCrossentropy`: positive weights per class (see
  :func:`positive_weights`) and/or class weights (see
  :func:`inverse_log_class_weights`);
- focal loss: Keras' own ``keras.losses.BinaryFocalCrossentropy``;
- :class:`SoftF1Loss`: one minus a differentiable macro F1 over the batch;
- :class:`LovaszHingeLoss`: the Lovász hinge (Berman et al. 2018) per class
  over the batch, a convex surrogate of each class's Jaccard index, and
  :class:`FocalLovaszLoss`, focal loss plus Lovász hinge, as the 2018
  challenge's winner combined them;
- :class:`CapsuleMarginLoss`: the capsule network's margin loss.

Weights are computed from per-class counts, such as a TFRecord manifest's
``class_counts`` and ``num_records``.
"""

import keras
import numpy as np
from keras import ops

from hpa_keras.registration import finish_registration
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


def _logits(probabilities, dtype):
    """Scores on the real line from the models' sigmoid probabilities (clipped away from 0
    and 1), where the hinge's margin of 1 means something."""
    epsilon = 1e-6
    clipped = ops.clip(ops.cast(probabilities, dtype), epsilon, 1.0 - epsilon)
    return ops.log(clipped) - ops.log(1.0 - clipped)


def lovasz_hinge_per_class(y_true, logits):
    """The Lovász hinge of each class over the batch: ``(classes,)``.

    For class c, with signs s = 2y - 1 and errors e = 1 - s x (x: logits),
    the errors are sorted in decreasing order and weighted by the gradient of
    the Lovász extension of the Jaccard loss at that order: the increments
    of ``1 - (P - cumsum(y)) / (P + cumsum(1 - y))`` (P: positives of the
    class in the batch); the loss is ``sum(relu(e_sorted) * increments)``.
    A class without positives in the batch is charged its largest margin
    violation, as the reference implementation does.
    """
    labels = ops.transpose(ops.cast(y_true, logits.dtype))  # (classes, batch)
    scores = ops.transpose(logits)
    errors = 1.0 - scores * (2.0 * labels - 1.0)
    order = ops.argsort(-errors, axis=1)
    errors_sorted = ops.take_along_axis(errors, order, axis=1)
    labels_sorted = ops.take_along_axis(labels, order, axis=1)
    positives = ops.sum(labels_sorted, axis=1, keepdims=True)
    intersection = positives - ops.cumsum(labels_sorted, axis=1)
    union = positives + ops.cumsum(1.0 - labels_sorted, axis=1)
    jaccard = 1.0 - intersection / union
    increments = ops.concatenate([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], axis=1)
    return ops.sum(ops.relu(errors_sorted) * ops.stop_gradient(increments), axis=1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class LovaszHingeLoss(keras.losses.Loss):
    """The Lovász hinge per class over the batch, averaged over classes.

    It optimizes each class's Jaccard index (intersection over union of the
    predicted and true positives in the batch) through its convex Lovász
    extension, on the logits of the models' probabilities. Like
    :class:`SoftF1Loss` it is a property of the whole batch, so every sample
    of the batch carries the same value; batches should hold positives of
    most classes.
    """

    def __init__(self, name="lovasz", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        loss = ops.mean(lovasz_hinge_per_class(y_true, _logits(y_pred, y_pred.dtype)))
        return loss * ops.ones_like(y_pred[:, 0])


@keras.saving.register_keras_serializable(package=PACKAGE)
class FocalLovaszLoss(keras.losses.Loss):
    """Binary focal loss plus ``lovasz_weight`` times the Lovász hinge (1st place, 2018).

    Args:
        gamma: the focal loss's focusing parameter.
        alpha: weight of the positive term (negatives get ``1 - alpha``);
            ``None`` balances nothing (see ``TrainingConfig.focal_alpha``).
        lovasz_weight: the weight of the Lovász term.
    """

    def __init__(self, gamma=2.0, alpha=None, lovasz_weight=1.0, name="focal_lovasz", **kwargs):
        super().__init__(name=name, **kwargs)
        self.gamma, self.alpha, self.lovasz_weight = gamma, alpha, lovasz_weight

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        epsilon = keras.config.epsilon()
        probabilities = ops.clip(y_pred, epsilon, 1.0 - epsilon)
        positive = -y_true * ops.power(1.0 - probabilities, self.gamma) * ops.log(probabilities)
        negative = (
            -(1.0 - y_true) * ops.power(probabilities, self.gamma) * ops.log(1.0 - probabilities)
        )
        if self.alpha is not None:
            positive, negative = self.alpha * positive, (1.0 - self.alpha) * negative
        focal = ops.mean(positive + negative, axis=-1)
        lovasz = ops.mean(lovasz_hinge_per_class(y_true, _logits(y_pred, y_pred.dtype)))
        return focal + self.lovasz_weight * lovasz

    def get_config(self):
        return {
            **super().get_config(),
            "gamma": self.gamma,
            "alpha": self.alpha,
            "lovasz_weight": self.lovasz_weight,
        }


# Last: a registration deferred while this module was being imported (see registration.py)
finish_registration(__name__)
