import re

import keras
import numpy as np
import pytest

from hpa_keras.errors import InputError
from hpa_keras.models import TINY_OPTIONS, build_model, freeze_backbone, list_models, unfreeze
from hpa_keras.models.applications import (
    _trunk,
    resolve_weights,
    widen_first_kernel,
)
from hpa_keras.models.layers import CHANNEL_MIXES, ChannelMixing

SHAPE = (32, 32, 4)


def tiny(name, **options):
    return build_model(name, input_shape=SHAPE, **{**TINY_OPTIONS[name], **options})


def images(count=2, seed=0):
    return np.random.default_rng(seed).normal(size=(count, *SHAPE)).astype(np.float32)


def test_registry_names():
    assert list_models() == [
        "gapnet",
        "inception_resnet_v2",
        "densenet121",
        "densenet169",
        "resnet50",
        "resnet18",
        "resnet34",
        "densenet161",
        "vgg19",
        "efficientnetv2_b0",
        "efficientnetv2_b1",
        "efficientnetv2_b2",
        "efficientnetv2_b3",
        "convnext_tiny",
        "densenet",
        "densenet73",
        "hpa_densenet121",
        "subcell_vit",
        "simple_cnn",
        "capsnet",
    ]
    with pytest.raises(InputError, match="unknown model 'xception'; available: gapnet"):
        build_model("xception")
    with pytest.raises(InputError, match="model gapnet has no option 'mix'"):
        build_model("gapnet", input_shape=SHAPE, mix="kaggle")
    # None options are dropped, so a CLI can pass every flag through.
    assert (
        build_model("gapnet", input_shape=SHAPE, activation=None, **TINY_OPTIONS["gapnet"]).name
        == "gapnet"
    )


def test_each_model_is_one_record_and_the_tables_are_views_of_the_records():
    from hpa_keras.models import (
        BACKBONE_MODELS,
        DESCRIPTIONS,
        FIXED_SIZE_MODELS,
        MODELS,
        PARAMETER_COUNTS,
        REGISTRY,
        ModelRecord,
        model_record,
    )
    from hpa_keras.models.applications import BACKBONES

    assert list(REGISTRY) == list_models() == list(MODELS) == list(DESCRIPTIONS)
    for name, record in REGISTRY.items():
        assert isinstance(record, ModelRecord) and record.name == name
        assert model_record(name.upper()) is record
        assert MODELS[name] == record.builder and DESCRIPTIONS[name] == record.description
        assert TINY_OPTIONS[name] == record.tiny_options
        assert PARAMETER_COUNTS[name] == record.parameters
        assert (name in BACKBONE_MODELS) == record.backbone
        assert (name in FIXED_SIZE_MODELS) == record.fixed_size
    assert FIXED_SIZE_MODELS == ("subcell_vit", "capsnet")
    # What applications.py knows of a backbone (how to build it, its weight file) agrees
    # with its record: every backbone model has a trunk there, and "imagenet" is offered
    # exactly where Keras publishes a weight file.
    # The imported HPA models scale pixels as their published originals (hpa_models.py).
    hpa_models = {"hpa_densenet121": "hpa2018", "subcell_vit": "min-max"}
    assert set(BACKBONES) == set(BACKBONE_MODELS) - set(hpa_models)
    for name, scaling in hpa_models.items():
        assert REGISTRY[name].input_scaling == scaling
        assert tiny(name).get_layer("preprocessing").mode == scaling
    for name in BACKBONES:
        assert REGISTRY[name].input_scaling in ("torch", "caffe", "tf")
        assert ("imagenet" in REGISTRY[name].weights) == (BACKBONES[name].weights_file is not None)
        assert tiny(name).get_layer("preprocessing").mode == REGISTRY[name].input_scaling
    with pytest.raises(ValueError, match="only one, has input_scaling"):
        ModelRecord("x", "m:f", "x", 1, backbone=True)


@pytest.mark.parametrize("name", list_models())
def test_output_shape_range_and_dtype(name):
    model = tiny(name)
    outputs = keras.ops.convert_to_numpy(model(images(), training=False))
    assert outputs.shape == (2, 28) and outputs.dtype == np.float32
    assert outputs.min() >= 0 and outputs.max() <= 1


@pytest.mark.parametrize("name", list_models())
def test_save_and_reload_in_safe_mode_gives_identical_predictions(name, tmp_path):
    model = tiny(name)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(
        reloaded.predict(images(), verbose=0),
        model.predict(images(), verbose=0),
        rtol=1e-5,
        atol=1e-6,
    )


@pytest.mark.parametrize("name", list_models())
def test_one_training_step_in_eager_mode(name):
    model = tiny(name)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy", run_eagerly=True
    )
    before = [weight.copy() for weight in model.get_weights()]
    targets = np.zeros((2, 28), np.float32)
    targets[:, [0, 25]] = 1
    loss = model.train_on_batch(images(), targets)
    assert np.isfinite(loss)
    changed = [
        not np.array_equal(old, new) for old, new in zip(before, model.get_weights(), strict=True)
    ]
    assert any(changed)


@pytest.mark.parametrize("name", ["densenet121", "resnet50"])
@pytest.mark.parametrize("rule", ["red", "mean", "zero"])
def test_pretrained_weights_are_copied_and_the_first_conv_widened(name, rule, tmp_path):
    twin = _trunk(name, (32, 32, 3), None, "tiny")  # a fake 3-channel checkpoint
    path = tmp_path / "fake.weights.h5"
    twin.save_weights(path)
    model = tiny(name, weights=str(path), fourth_channel=rule)
    backbone = model.get_layer("backbone")
    source = twin.get_layer("conv1_conv").get_weights()[0]
    kernel = backbone.get_layer("conv1_conv").get_weights()[0]
    assert kernel.shape == (*source.shape[:2], 4, source.shape[3])
    rgb = source[:, :, ::-1] if name == "resnet50" else source  # caffe kernels are BGR
    np.testing.assert_array_equal(kernel[:, :, :3], rgb)
    expected = {"red": rgb[:, :, 0], "mean": rgb.mean(axis=2), "zero": 0 * rgb[:, :, 0]}[rule]
    np.testing.assert_allclose(kernel[:, :, 3], expected, rtol=1e-6)
    for layer in twin.layers:  # every other weight lands unchanged
        if layer.name != "conv1_conv" and layer.get_weights():
            for copied, original in zip(
                backbone.get_layer(layer.name).get_weights(), layer.get_weights(), strict=True
            ):
                np.testing.assert_array_equal(copied, original)


def test_widen_first_kernel_rules():
    kernel = np.arange(2 * 2 * 3 * 1, dtype=np.float32).reshape(2, 2, 3, 1)
    np.testing.assert_array_equal(widen_first_kernel(kernel, 4, "red")[:, :, 3], kernel[:, :, 0])
    np.testing.assert_allclose(widen_first_kernel(kernel, 4, "mean")[:, :, 3], kernel.mean(axis=2))
    assert not widen_first_kernel(kernel, 4, "zero")[:, :, 3].any()
    # A BGR (caffe) kernel is put into red, green, blue order first: "red" copies the red one.
    bgr = widen_first_kernel(kernel, 4, "red", bgr=True)
    np.testing.assert_array_equal(bgr[:, :, 0], kernel[:, :, 2])
    np.testing.assert_array_equal(bgr[:, :, 3], kernel[:, :, 2])
    with pytest.raises(InputError, match="fourth-channel rule"):
        widen_first_kernel(kernel, 4, "blue")


PREPROCESS = {
    "resnet50": ("ResNet50", keras.applications.resnet50.preprocess_input),
    "densenet121": ("DenseNet121", keras.applications.densenet.preprocess_input),
    "efficientnetv2_b0": ("EfficientNetV2B0", None),  # Keras' own model scales inside
    "convnext_tiny": ("ConvNeXtTiny", None),
}


@pytest.mark.parametrize("name", ["resnet50", "densenet121", "efficientnetv2_b0", "convnext_tiny"])
def test_imagenet_shaped_weights_reproduce_the_3_channel_model(name, tmp_path, monkeypatch):
    """Keras' real architecture with weights of ImageNet's shapes (random, built offline),
    put where Keras keeps its files: the 4-channel model with the yellow filters zeroed
    computes what Keras' 3-channel model computes on preprocess_input(RGB) pixels."""
    check_backbone_equivalence(name, tmp_path, monkeypatch)


def test_resnet34_has_the_layout_of_the_paper():
    """Basic blocks of (3, 4, 6, 3) with 64-512 filters, 512 features at 1/32 of the side."""
    model = build_model("resnet34", input_shape=(64, 64, 4))
    backbone = model.get_layer("backbone")
    blocks = {name.split("_")[0] + "_" + name.split("_")[1] for name in
              (layer.name for layer in backbone.layers) if "_block" in name}  # fmt: skip
    counts = [sum(name.startswith(f"conv{stage}_") for name in blocks) for stage in (2, 3, 4, 5)]
    assert counts == [3, 4, 6, 3]
    assert backbone.get_layer("conv5_block3_out").output.shape == (None, 2, 2, 512)
    assert backbone.output.shape == (None, 512)


def write_legacy_weights(model, path):
    """A weight file in the legacy HDF5 layout of Keras' published notop files (layer groups
    in order, each listing its weights; Keras 3 itself only saves ``.weights.h5``)."""
    import h5py

    with h5py.File(path, "w") as handle:
        layers = [layer for layer in model.layers if layer.weights]
        handle.attrs["layer_names"] = [layer.name.encode() for layer in layers]
        handle.attrs["backend"] = b"tensorflow"
        handle.attrs["keras_version"] = b"2.2.4"
        for layer in layers:
            group = handle.create_group(layer.name)
            values = [*layer.trainable_weights, *layer.non_trainable_weights]
            names = [f"{layer.name}/weight{index}".encode() for index in range(len(values))]
            group.attrs["weight_names"] = names
            for weight_name, value in zip(names, values, strict=True):
                group.create_dataset(weight_name.decode(), data=keras.ops.convert_to_numpy(value))


def check_backbone_equivalence(name, tmp_path, monkeypatch):
    from hpa_keras.models.applications import BACKBONES

    application, preprocess = PREPROCESS[name]
    size = 64
    twin = getattr(keras.applications, application)(
        include_top=False, weights=None, input_shape=(size, size, 3), pooling="avg"
    )
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    write_legacy_weights(twin, tmp_path / "models" / BACKBONES[name].weights_file)
    model = build_model(
        name, input_shape=(size, size, 4), weights="imagenet", fourth_channel="zero"
    )
    pixels = np.random.default_rng(1).uniform(0, 255, (2, size, size, 4)).astype("float32")
    scaled = model.get_layer("preprocessing")(pixels)
    ours = keras.ops.convert_to_numpy(model.get_layer("backbone")(scaled, training=False))
    rgb = pixels[..., :3]
    reference = keras.ops.convert_to_numpy(
        twin(preprocess(rgb.copy()) if preprocess else rgb, training=False)
    )
    np.testing.assert_allclose(ours, reference, rtol=2e-4, atol=2e-4)


def test_imagenet_weights_download_when_online_and_fail_at_once_offline(tmp_path, monkeypatch):
    from hpa_keras.models import applications

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(applications, "_reachable", lambda url, timeout=3.0: False)
    with pytest.raises(InputError) as caught:
        resolve_weights("densenet121", "imagenet")
    message = str(caught.value)
    assert "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert str(tmp_path / "models") in message and "weights=PATH" in message
    assert "cannot be reached" in message
    fetched = []

    def get_file(name, url, cache_subdir):  # what Keras does online: fetch into the cache
        fetched.append(url)
        path = tmp_path / cache_subdir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"weights")
        return str(path)

    monkeypatch.setattr(applications, "_reachable", lambda url, timeout=3.0: True)
    monkeypatch.setattr(applications.keras.utils, "get_file", get_file)
    path = resolve_weights("densenet121", "imagenet")
    assert path == str(
        tmp_path / "models" / "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5"
    )
    assert fetched == [
        "https://storage.googleapis.com/tensorflow/keras-applications/densenet/"
        "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5"
    ]
    assert resolve_weights("densenet121", "imagenet") == path and len(fetched) == 1  # cached
    with pytest.raises(InputError, match="weights file not found"):
        resolve_weights("resnet50", str(tmp_path / "missing.h5"))
    with pytest.raises(InputError, match="Keras ships no ImageNet weights for resnet34"):
        resolve_weights("resnet34", "imagenet")
    with pytest.raises(InputError, match="gapnet has no ImageNet weights"):
        build_model("gapnet", weights="imagenet")


@pytest.mark.parametrize("mix", ["kaggle", "variant", "identity"])
def test_channel_mixing_starts_from_the_chosen_formula(mix):
    red, green, blue, yellow = 1.0, 10.0, 100.0, 1000.0
    image = np.array([red, green, blue, yellow], np.float32).reshape(1, 1, 1, 4)
    expected = {
        "kaggle": [red + yellow / 2, green + yellow / 2, blue],
        "variant": [red / 2 + blue / 2, yellow / 2 + blue / 2, green],
        "identity": [red, green, blue],
    }[mix]
    layer = ChannelMixing(mix)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(image))[0, 0, 0], expected)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer.kernel), CHANNEL_MIXES[mix])


def test_fixed_or_learned_mixing_in_the_inception_model():
    fixed = tiny("inception_resnet_v2", mix="variant", trainable_mix=False)
    learned = tiny("inception_resnet_v2", mix="identity")
    fixed_layer, learned_layer = (
        fixed.get_layer("channel_mixing"),
        learned.get_layer("channel_mixing"),
    )
    assert not fixed_layer.trainable and not fixed_layer.trainable_weights
    assert learned_layer.trainable and len(learned_layer.trainable_weights) == 1


def test_freeze_then_unfreeze_from_a_named_layer():
    model = tiny("resnet50")
    backbone = model.get_layer("backbone")
    freeze_backbone(model)
    assert not backbone.trainable_weights
    head_weights = len(model.trainable_weights)
    assert head_weights == 2  # the classifier's kernel and bias
    names = [layer.name for layer in backbone.layers]
    unfreeze(model, from_layer="conv3_block1_1_conv")
    start = names.index("conv3_block1_1_conv")
    assert all(not layer.trainable for layer in backbone.layers[:start] if layer.weights)
    assert all(layer.trainable for layer in backbone.layers[start:])
    unfreeze(model)
    assert all(layer.trainable for layer in backbone.layers)
    with pytest.raises(InputError, match="no layer 'nope'"):
        unfreeze(model, from_layer="nope")
    with pytest.raises(InputError, match="no pretrained backbone"):
        freeze_backbone(tiny("gapnet"))


def test_outputs_stay_float32_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        for name in ("gapnet", "densenet121", "capsnet"):
            outputs = tiny(name)(images())
            assert keras.backend.standardize_dtype(outputs.dtype) == "float32", name
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_gapnet_structure_follows_the_paper():
    model = build_model("gapnet", input_shape=(64, 64, 4))
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [layer.filters for layer in convs] == [32, 64, 64, 64, 64, 128, 128, 128]
    assert [layer.strides for layer in convs[:2]] == [(2, 2), (2, 2)]
    assert model.get_layer("gap_concat").output.shape == (None, 32 + 64 + 128)
    assert model.get_layer("dense1").units == 256 and model.get_layer("dense2").units == 256
    selu = build_model("gapnet", input_shape=(64, 64, 4), activation="selu")
    assert isinstance(selu.get_layer("dense1_dropout"), keras.layers.AlphaDropout)


@pytest.mark.large
@pytest.mark.parametrize(
    ("name", "application", "feature_size", "extra"),
    [
        ("densenet121", "DenseNet121", 1024, 7 * 7 * 64),
        ("densenet169", "DenseNet169", 1664, 7 * 7 * 64),
        ("resnet50", "ResNet50", 2048, 7 * 7 * 64),
        ("inception_resnet_v2", "InceptionResNetV2", 1536, 4 * 3),
        ("efficientnetv2_b0", "EfficientNetV2B0", 1280, 3 * 3 * 32),
        ("convnext_tiny", "ConvNeXtTiny", 768, 4 * 4 * 96),
    ],
)
def test_full_size_parameter_counts_are_keras_own_plus_our_parts(
    name, application, feature_size, extra
):
    options = (
        {"include_preprocessing": False} if name in ("efficientnetv2_b0", "convnext_tiny") else {}
    )
    reference = getattr(keras.applications, application)(
        include_top=False, weights=None, input_shape=(224, 224, 3), pooling="avg", **options
    )
    model = build_model(name, input_shape=(224, 224, 4))
    head = feature_size * 28 + 28
    # extra: the 4th input channel of the first conv (7x7x64), or the 4x3 channel mix.
    assert model.count_params() == reference.count_params() + extra + head


def test_models_command_lists_every_model_with_its_parameter_count(capsys):
    from hpa_keras.cli import main

    assert main(["models", "--tiny", "--image-size", "32"]) == 0
    printed = capsys.readouterr().out
    for name in list_models():
        count = tiny(name).count_params()
        assert f"{name:22s} {count:12,d}" in printed


SMALL_MODELS = ["gapnet", "simple_cnn", "capsnet"]  # built at 512 px in well under a second


@pytest.mark.parametrize(
    "name",
    [
        name if name in SMALL_MODELS else pytest.param(name, marks=pytest.mark.large)
        for name in list_models()
    ],
)
def test_parameter_table_equals_the_built_model(name):
    from hpa_keras.models import PARAMETER_COUNTS
    from hpa_keras.models.registry import PARAMETER_COUNTS_AT

    assert list(PARAMETER_COUNTS) == list_models()
    assert build_model(name, **PARAMETER_COUNTS_AT).count_params() == PARAMETER_COUNTS[name]


def test_models_command_answers_from_the_table_without_importing_tensorflow():
    import subprocess
    import sys

    from hpa_keras.models import PARAMETER_COUNTS

    script = (
        "import sys\n"
        "from hpa_keras.cli import main\n"
        "status = main(['models'])\n"
        "heavy = sorted(name for name in ('tensorflow', 'keras') if name in sys.modules)\n"
        "print('imported:', heavy)\n"
        "sys.exit(status)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "imported: []" in result.stdout
    for name in list_models():
        assert f"{name:22s} {PARAMETER_COUNTS[name]:12,d}" in result.stdout


def test_model_names_are_case_insensitive_and_typos_get_the_closest_name():
    from hpa_keras.models import canonical_model_name
    from hpa_keras.training.config import TrainingConfig

    assert canonical_model_name("GapNet") == "gapnet"
    assert canonical_model_name(" Simple-CNN ") == "simple_cnn"
    assert build_model("GAPNET", input_shape=SHAPE, **TINY_OPTIONS["gapnet"]).name == "gapnet"
    config = TrainingConfig(model="DenseNet121", data="records")
    config.validate()
    assert config.model == "densenet121"
    message = re.escape("unknown model 'densnet121'; did you mean densenet121? available: gapnet,")
    with pytest.raises(InputError, match=message):
        canonical_model_name("densnet121")
    with pytest.raises(InputError, match=message):
        TrainingConfig(model="densnet121", data="records").validate()
    with pytest.raises(InputError, match="unknown model 'xception'; available: gapnet"):
        canonical_model_name("xception")


def test_fit_command_names_the_closest_model(tmp_path, capsys):
    from hpa_keras.cli import main

    status = main(["fit", "--data", str(tmp_path), "--model", "densnet121"])
    assert status == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "did you mean densenet121?" in error[0] and "capsnet" in error[0]


def task_statistics():
    return {"channel_mean": [20.0, 30.0, 10.0, 25.0], "channel_std": [30.0, 40.0, 20.0, 35.0]}


def test_task_model_wraps_the_core_in_standardization_augmentation_and_pixels():
    from hpa_keras.models import build_task_model

    model, core = build_task_model(
        "gapnet", num_classes=28, model_options=TINY_OPTIONS["gapnet"], **task_statistics()
    )
    assert model.name == "hpa_gapnet" and model.layers[-1] is core
    assert [layer.name for layer in model.layers] == [
        "images", "standardization", "augmentation", "gapnet",
    ]  # fmt: skip
    assert model.input.dtype == "uint8" and tuple(model.input.shape) == (None, None, None, 4)
    # A backbone gets pixel units back (its own input scaling is inside it); the stains it
    # reads are picked from the four statistics, for the inverse too.
    model, core = build_task_model(
        "densenet121", num_classes=19, channels="rgb", bit_depth=16, input_size=32,
        dihedral=False, brightness=0.0, contrast=0.0, model_options={"variant": "tiny"},
        **task_statistics(),
    )  # fmt: skip
    assert [layer.name for layer in model.layers] == [
        "images", "standardization", "pixels", core.name,
    ]  # fmt: skip
    pixels = model.get_layer("pixels")
    assert pixels.mean == [20.0, 30.0, 10.0] and pixels.std == [30.0, 40.0, 20.0]
    assert pixels.scale == pytest.approx(1 / 257) and model.input.dtype == "uint16"
    images16 = np.random.default_rng(0).integers(0, 65535, (2, 32, 32, 3)).astype("uint16")
    assert keras.ops.convert_to_numpy(model(images16)).shape == (2, 19)
    with pytest.raises(InputError, match="capsnet takes one input size"):
        build_task_model("capsnet", num_classes=28, **task_statistics())
