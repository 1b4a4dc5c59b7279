"""TrainingConfig's settings come in groups that check themselves; the flat names, defaults,
flags and messages are those of the one flat dataclass it was before."""

import dataclasses

import pytest

from hpa_keras.errors import InputError
from hpa_keras.settings import markdown_table, setting_groups
from hpa_keras.training.config import (
    SETTING_GROUPS,
    AugmentationSettings,
    CellSettings,
    DataSettings,
    LossSettings,
    ModelSettings,
    OptimizationSettings,
    RuntimeSettings,
    ScheduleSettings,
    ThresholdSettings,
    TrainingConfig,
)

# TrainingConfig's fields and defaults as the flat dataclass had them (taken from the code
# before the settings were grouped): the grouping moves them, it renames or changes none.
FLAT_DEFAULTS = {
    "data": None, "out": None, "model": "gapnet", "fold": 0, "epochs": 10, "image_size": None,
    "crop": None, "tiles": 0, "tta": 1, "validate_source": None, "channels": "rgby",
    "batch_size": 32, "cache": False, "shuffle_buffer": 1024, "cell_pooling": "none",
    "bag_size": 48, "bags_per_batch": 4, "lse_sharpness": 5.0, "weights": None,
    "model_options": {}, "dihedral": True, "rotation": 0.0, "zoom": 0.0, "brightness": 0.1,
    "contrast": 0.1, "loss": "weighted_bce", "pos_weight": "log", "class_weight": False,
    "focal_gamma": 2.0, "focal_alpha": None, "lovasz_weight": 1.0, "optimizer": "adam",
    "ema": False, "ema_momentum": 0.99, "swa_epochs": 0, "lr": 0.001, "frozen_epochs": 0,
    "frozen_lr": 0.001, "backbone_lr_factor": 1.0, "schedule": "plateau",
    "plateau_factor": 0.5, "plateau_patience": 2, "min_lr": 1e-06, "sgdr_epochs": 4,
    "sgdr_t_mul": 2.0, "early_stopping_patience": 0, "steps_per_epoch": None,
    "threshold_strategy": "per_class", "seed": 0, "mixed_precision": False,
    "strategy": "default", "distributed": False, "data_service": None, "tensorboard": True,
    "verbose": 2, "print_table": False,
}  # fmt: skip
# Settings added since, with the defaults that keep runs as they were.
ADDED_SINCE = {"deterministic": False, "init_from": None}  # issues 25, 28


def test_the_grouped_config_has_the_flat_fields_and_defaults_of_before():
    config = TrainingConfig()
    assert config.to_dict() == {**FLAT_DEFAULTS, **ADDED_SINCE}
    assert len(dataclasses.fields(TrainingConfig)) == len(FLAT_DEFAULTS) + len(ADDED_SINCE)
    assert config.lr == 0.001 and TrainingConfig(lr=0.01).lr == 0.01  # flat access


def test_the_fields_come_group_by_group_and_each_field_in_one_group():
    in_groups = [field.name for group in SETTING_GROUPS for field in dataclasses.fields(group)]
    assert in_groups == [field.name for field in dataclasses.fields(TrainingConfig)]
    assert TrainingConfig.GROUPS == SETTING_GROUPS
    titles = [title for title, _, _ in setting_groups(TrainingConfig)]
    assert titles == [
        "Data", "Model", "Augmentation", "Loss", "Optimization", "Schedule", "Thresholds",
        "Runtime", "Cells",
    ]  # fmt: skip
    table = markdown_table(TrainingConfig)
    assert all(f"### {title}\n" in table for title in titles)
    assert "| `--lr` | 0.001 | learning rate |" in table  # each default still said


VALID = {"data": "records"}


@pytest.mark.parametrize(
    ("group", "check", "values", "message"),
    [
        (DataSettings, "validate_data", {"data": None}, "data: give the make-tfrecords folder"),
        (DataSettings, "validate_data", {"crop": 8}, "crop: must be at least 16, got 8"),
        (DataSettings, "validate_data", {"tiles": 2}, "tiles: tiles are crop-sized"),
        (DataSettings, "validate_data", {"tta": 3}, "tta: 3 is not one of 1, 2, 4, 8"),
        (ModelSettings, "validate_model", {"model": "densnet121"}, "did you mean densenet121"),
        (ModelSettings, "validate_model", {"model_options": [1]}, "model_options: must be a"),
        (
            AugmentationSettings,
            "validate_augmentation",
            {"contrast": 1.5},
            "contrast: must be below 1, got 1.5",
        ),
        (AugmentationSettings, "validate_augmentation", {"zoom": -0.1}, "zoom: must be 0 or"),
        (LossSettings, "validate_loss", {"focal_alpha": 1.0}, r"focal_alpha: must be in \(0, 1"),
        (LossSettings, "validate_loss", {"loss": "mse"}, "loss: 'mse' is not one of"),
        (OptimizationSettings, "validate_optimization", {"lr": 0}, "lr: must be positive"),
        (
            OptimizationSettings,
            "validate_optimization",
            {"ema": True, "swa_epochs": 2},
            "swa_epochs and ema are two ways to average weights",
        ),
        (ScheduleSettings, "validate_schedule", {"plateau_factor": 1.0}, "plateau_factor: must"),
        (
            ScheduleSettings,
            "validate_schedule",
            {"schedule": "cosine", "sgdr_epochs": 3},
            "sgdr_epochs: applies to --schedule sgdr only, not to cosine",
        ),
        (
            ThresholdSettings,
            "validate_thresholds",
            {"threshold_strategy": "best"},
            "threshold_strategy: 'best' is not one of",
        ),
        (RuntimeSettings, "validate_runtime", {"verbose": 3}, "verbose: 3 is not one of 0, 1"),
        (
            CellSettings,
            "validate_cells",
            {"cell_pooling": "max", "bag_size": 0},
            "bag_size, bags_per_batch and lse_sharpness must be positive",
        ),
    ],
)
def test_each_group_refuses_its_own_bad_values(group, check, values, message):
    own = {field.name for field in dataclasses.fields(group)}
    group_values = {key: value for key, value in {**VALID, **values}.items() if key in own}
    with pytest.raises(InputError, match=message):  # the group alone
        getattr(group(**group_values), check)()
    with pytest.raises(InputError, match=message):  # and as part of the whole config
        TrainingConfig(**{**VALID, **values}).validate()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"swa_epochs": 12}, r"swa_epochs: must be between 0 and epochs \(10\)"),
        ({"frozen_epochs": 1}, "frozen_epochs: model gapnet has no pretrained backbone"),
        ({"model": "capsnet", "crop": 64, "image_size": 128}, "tiles: capsnet takes one"),
        ({"cell_pooling": "lse", "cache": True}, "cell_pooling lse: not with cache"),
        ({"distributed": True, "strategy": "mirrored"}, "distributed: not with strategy mirr"),
    ],
)
def test_the_rules_across_groups_keep_their_messages(values, message):
    with pytest.raises(InputError, match=message):
        TrainingConfig(**{**VALID, **values}).validate()


def test_a_valid_config_passes_and_the_model_gets_its_registry_name():
    config = TrainingConfig(data="records", model="GapNet")
    config.validate()
    assert config.model == "gapnet"
