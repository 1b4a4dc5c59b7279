"""Model builders by name, the layers they share, augmentation, the task model that
``fit`` trains, and safe-mode loading.

    >>> from hpa_keras.models import build_model, list_models
    >>> model = build_model("gapnet", input_shape=(256, 256, 4))

Every builder is ``build_<name>(input_shape, num_classes, weights, **options)``
and returns an uncompiled ``keras.Model``; each model is one record of
``REGISTRY`` (see :mod:`hpa_keras.models.registry`). ``build_task_model``
wraps one in the standardization and augmentation ``fit`` trains it with
(:mod:`hpa_keras.models.task`).
"""

from hpa_keras._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "REGISTRY": "registry",
        "ModelRecord": "registry",
        "model_record": "registry",
        "MODELS": "registry",
        "DESCRIPTIONS": "registry",
        "BACKBONE_MODELS": "registry",
        "TINY_OPTIONS": "registry",
        "FIXED_SIZE_MODELS": "registry",
        "PARAMETER_COUNTS": "registry",
        "build_model": "registry",
        "canonical_model_name": "registry",
        "list_models": "registry",
        "build_task_model": "task",
        "task_model_settings": "task",
        "freeze_backbone": "applications",
        "unfreeze": "applications",
        "load_model": "saving",
        "ChannelStandardization": "layers",
        "ChannelMixing": "layers",
        "RandomDihedral": "augmentation",
        "RandomChannelIntensity": "augmentation",
        "make_augmentation": "augmentation",
    },
)
