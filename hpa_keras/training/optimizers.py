"""Optimizers with per-variable learning-rate multipliers (differential learning rates).

Fine-tuning an ImageNet backbone works best when the pretrained layers move
more slowly than the new head (the 2018 winners used a tenth of the head's
rate for the backbone). Keras 3 has no ``MultiOptimizer``; rather than a
custom ``train_step`` with two optimizers (which would have to re-implement
loss scaling for mixed precision and gradient reduction for distribution),
these optimizers scale the learning rate handed to ``update_step`` for the
listed variables. Everything else (schedules, ``ReduceLROnPlateau``,
``LossScaleOptimizer``, ``MirroredStrategy``) works unchanged, and since Adam
is invariant to gradient scale, scaling the rate rather than the gradient is
what makes the multiplier mean what it says.

Example:
    >>> multipliers = backbone_multipliers(model, 0.1)
    >>> optimizer = DifferentialAdam(learning_rate=1e-3, multipliers=multipliers)
"""

import keras

from hpa_keras.registration import finish_registration

PACKAGE = "hpa_keras"


class _LearningRateMultipliers:
    """Mixin: multiply the learning rate of variables named in ``multipliers``.

    ``multipliers`` maps a variable's ``path`` (for example
    ``"conv1_conv/kernel"``) to a factor; variables not listed use 1. AdamW's
    decoupled weight decay is not scaled.
    """

    def __init__(self, *args, multipliers=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.multipliers = {str(key): float(value) for key, value in (multipliers or {}).items()}

    def build(self, variables):
        self._variable_multipliers = [
            self.multipliers.get(variable.path, 1.0) for variable in variables
        ]
        super().build(variables)

    def update_step(self, gradient, variable, learning_rate):
        multiplier = self._variable_multipliers[self._get_variable_index(variable)]
        if multiplier != 1.0:
            learning_rate = learning_rate * multiplier
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "multipliers": self.multipliers}


@keras.saving.register_keras_serializable(package=PACKAGE)
class DifferentialAdam(_LearningRateMultipliers, keras.optimizers.Adam):
    """``keras.optimizers.Adam`` with per-variable learning-rate ``multipliers``."""


@keras.saving.register_keras_serializable(package=PACKAGE)
class DifferentialAdamW(_LearningRateMultipliers, keras.optimizers.AdamW):
    """``keras.optimizers.AdamW`` with per-variable learning-rate ``multipliers``."""


@keras.saving.register_keras_serializable(package=PACKAGE)
class DifferentialSGD(_LearningRateMultipliers, keras.optimizers.SGD):
    """``keras.optimizers.SGD`` with per-variable learning-rate ``multipliers``."""


OPTIMIZERS = {"adam": DifferentialAdam, "adamw": DifferentialAdamW, "sgd": DifferentialSGD}


def backbone_multipliers(model, factor: float) -> dict[str, float]:
    """``{path: factor}`` for every variable of the model's ``"backbone"`` sub-model.

    Models without a backbone (GAP-Net, the baselines) get an empty mapping:
    every variable then trains at the full rate.
    """
    try:
        backbone = model.get_layer("backbone")
    except ValueError:
        return {}
    return {variable.path: float(factor) for variable in backbone.weights}


def make_optimizer(name: str, learning_rate, multipliers=None, **options):
    """The optimizer ``name`` (``"adam"``, ``"adamw"`` or ``"sgd"``) with multipliers."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer {name!r}: use one of {sorted(OPTIMIZERS)}")
    if name == "sgd":
        options.setdefault("momentum", 0.9)
    return OPTIMIZERS[name](learning_rate=learning_rate, multipliers=multipliers, **options)


# Last: a registration deferred while this module was being imported (see registration.py)
finish_registration(__name__)
