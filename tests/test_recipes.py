"""Shipped recipes (YAML settings usable by name) and their on-paper GPU cost."""

import importlib.util
import tomllib
from pathlib import Path

import pytest
import yaml

from hpa_keras.errors import InputError
from hpa_keras.training.config import resolve_config
from hpa_keras.training.recipes import recipe_names, recipe_text

ROOT = Path(__file__).resolve().parents[1]


def test_the_issue_s_recipes_are_shipped_and_packaged():
    assert {"gapnet", "densenet121-512", "resnet50-fast"} <= set(recipe_names())
    shipped = sorted(path.stem for path in (ROOT / "hpa_keras" / "recipes").glob("*.yaml"))
    assert recipe_names() == shipped
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert package_data["package-data"]["hpa_keras.recipes"] == ["*.yaml"]  # in a wheel, too


@pytest.mark.parametrize("name", recipe_names())
def test_every_recipe_is_a_valid_training_config(name, tmp_path):
    config = resolve_config({"data": str(tmp_path)}, f"recipes/{name}")
    settings = yaml.safe_load(recipe_text(name))
    for key, value in settings.items():
        assert getattr(config, key) == value, key
    assert "# GPU cost on paper" in recipe_text(name)


def test_the_winner_style_recipe_is_what_the_issue_names():
    config = resolve_config({"data": "records"}, "recipes/densenet121-512")
    assert (config.model, config.weights, config.loss) == (
        "densenet121",
        "imagenet",
        "focal_lovasz",
    )
    assert (config.image_size, config.crop, config.tta) == (768, 512, 8)


def test_flags_override_a_recipe_and_a_local_file_wins(tmp_path, monkeypatch):
    config = resolve_config({"data": "records", "epochs": 3}, "recipes/gapnet.yaml")
    assert config.epochs == 3 and config.model == "gapnet"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "gapnet").write_text("epochs: 7\n")
    assert resolve_config({"data": "records"}, "recipes/gapnet").epochs == 7


def test_a_recipe_larger_than_the_records_is_refused_unless_the_size_is_given(
    training_records, tmp_path, capsys
):
    data = {"data": str(training_records)}  # 32 px records; the gapnet recipe says 512
    with pytest.raises(InputError) as refused:
        resolve_config(data, "recipes/gapnet")
    assert str(refused.value) == (
        f"recipes/gapnet: image_size 512 is larger than the records of {training_records} "
        "(32 px): training would upsample every field (256x the compute, no new detail); give "
        "--image-size 32 to train at the stored size, or --image-size 512 to upsample anyway"
    )
    assert resolve_config({**data, "image_size": 512}, "recipes/gapnet").image_size == 512
    assert resolve_config({**data, "image_size": 32}, "recipes/gapnet").image_size == 32
    (tmp_path / "small.yaml").write_text("image_size: 32\n")  # not larger: no complaint
    assert resolve_config(data, tmp_path / "small.yaml").image_size == 32
    assert resolve_config({**data, "image_size": 64}).image_size == 64  # no file: as asked
    from hpa_keras.cli import main

    argv = ["fit", "--data", str(training_records), "--config", "recipes/gapnet"]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 2
    assert "image_size 512 is larger than the records" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_unknown_recipes_and_missing_files_list_the_recipes(capsys):
    with pytest.raises(InputError, match="recipes/nope: no such recipe; shipped recipes: "):
        resolve_config({"data": "records"}, "recipes/nope")
    with pytest.raises(InputError, match="gone.yaml: config file not found.*densenet121-512"):
        resolve_config({"data": "records"}, "gone.yaml")
    from hpa_keras.cli import main

    assert main(["fit", "--data", "records", "--config", "recipes/nope"]) == 2
    assert "shipped recipes" in capsys.readouterr().err


def test_multiply_adds_and_activations_are_counted_layer_by_layer():
    import keras

    from hpa_keras.models.cost import activation_elements, multiply_adds

    inputs = keras.Input((16, 16, 4))
    a = keras.layers.Conv2D(8, 3, strides=2, padding="same")(inputs)  # 8x8x8
    b = keras.layers.Conv2D(8, 3, padding="same", groups=2)(a)  # 8x8x8, 4 inputs a filter
    c = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(b)  # 8x8x16
    d = keras.layers.SeparableConv2D(6, 3, padding="same")(c)  # 8x8x6
    e = keras.layers.Dense(5)(d)  # per pixel: 8x8x5
    f = keras.layers.GlobalAveragePooling2D()(e)
    outputs = keras.layers.Dense(3)(f)
    model = keras.Model(inputs, outputs)
    expected = (
        64 * 9 * 4 * 8  # strided conv
        + 64 * 9 * 4 * 8  # grouped conv
        + 64 * 9 * 16  # depthwise, multiplier 2
        + (64 * 9 * 16 + 64 * 16 * 6)  # separable: depthwise, then pointwise
        + 64 * 6 * 5  # dense per pixel
        + 5 * 3  # dense head
    )
    assert multiply_adds(model) == expected
    assert activation_elements(model) == 64 * (8 + 8 + 16 + 6 + 5) + 5 + 3
    nested = keras.Sequential([keras.Input((16, 16, 4)), model])
    assert multiply_adds(nested) == expected  # descends into nested models


def test_keras_backbones_count_as_published():
    """Multiply-adds at 224 px as published: DenseNet121 2.83 G (torchvision's model table);
    ResNet50 3.86 G (Keras' v1, stride in the 1x1 convolutions; torchvision's v1.5 is 4.09 G)."""
    import keras

    from hpa_keras.models.cost import multiply_adds

    resnet = multiply_adds(keras.applications.ResNet50(weights=None, input_shape=(224, 224, 3)))
    densenet = multiply_adds(
        keras.applications.DenseNet121(weights=None, input_shape=(224, 224, 3))
    )
    assert resnet == pytest.approx(3.86e9, rel=0.005)
    assert densenet == pytest.approx(2.83e9, rel=0.005)


@pytest.mark.large
def test_recipe_files_carry_the_estimator_s_figures():
    spec = importlib.util.spec_from_file_location(
        "estimate_recipe_cost", ROOT / "scripts" / "estimate_recipe_cost.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    rate = script.anchor_multiply_adds_per_second()
    for name in recipe_names():
        assert script.recipe_comment(script.recipe_cost(name, rate)) in recipe_text(name), name
