"""Training: losses, callbacks, optimizers, ``fit`` and baselines.

Scores and threshold search live in :mod:`hpa_keras.scoring`.

    >>> from hpa_keras.training import ThresholdSearch, WeightedBinaryCrossentropy
    >>> from hpa_keras.training import TrainingConfig, fit

The callbacks, losses and optimizers are ordinary Keras objects for use in
a notebook's own ``model.fit``; ``fit`` joins them into a run folder.
"""

from hpa_keras._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "TrainingConfig": "config",
        "resolve_config": "config",
        "fit": "fit",
        "find_learning_rate_for": "fit",
        "ThresholdSearch": "callbacks",
        "LRFinder": "callbacks",
        "LearningRateLogger": "callbacks",
        "find_learning_rate": "callbacks",
        "read_thresholds": "callbacks",
        "WeightedBinaryCrossentropy": "losses",
        "SoftF1Loss": "losses",
        "CapsuleMarginLoss": "losses",
        "positive_weights": "losses",
        "inverse_log_class_weights": "losses",
        "DifferentialAdam": "optimizers",
        "DifferentialAdamW": "optimizers",
        "DifferentialSGD": "optimizers",
        "backbone_multipliers": "optimizers",
        "make_optimizer": "optimizers",
        "run_baselines": "baselines",
        "baselines_on_tfrecords": "baselines",
    },
)
