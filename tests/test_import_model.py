"""Imported PyTorch models compute what the originals compute, every published parameter
consumed (both Keras backends: the CI's JAX line runs this file), and a bad checkpoint is
one line naming the file and the parameter.

The originals are tests/torch_reference.py: the published module structures (so the
parameter names are those of the real checkpoints), with random weights, saved in the
authors' container format, at narrow widths so that each comparison takes seconds.
"""

import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from torch_reference import (  # noqa: E402
    SUBCELL_VIT_B_CONFIG,
    DenseNet,
    DensenetClass,
    ResNet,
    ViTPoolClassifier,
    min_max_standardize,
    randomize,
)

from hpa_keras.errors import InputError  # noqa: E402

TOLERANCE = 1e-4
TINY_DENSENET = {"growth_rate": 8, "block_config": (1, 1, 1, 1), "num_init_features": 16}
SUBCELL_CONFIG = {
    "vit_model": {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "layer_norm_eps": 1e-12,
        "image_size": 64,
        "patch_size": 16,
        "num_channels": 4,
    },
    "pool_model": {"dim": 32, "int_dim": 16, "num_heads": 2},
    "num_classes": 31,
}


def _pixels(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _channels_first(pixels, scale=1.0):
    return torch.from_numpy(pixels.astype(np.float32) * scale).permute(0, 3, 1, 2).contiguous()


@pytest.fixture(scope="module")
def winner(tmp_path_factory):
    folder = tmp_path_factory.mktemp("winner")
    original = randomize(DensenetClass(num_classes=28, **TINY_DENSENET))
    torch.save({"state_dict": original.state_dict(), "epoch": 12}, folder / "model.pth")
    return original, folder / "model.pth"


@pytest.fixture(scope="module")
def subcell(tmp_path_factory):
    import yaml

    folder = tmp_path_factory.mktemp("subcell")
    original = randomize(ViTPoolClassifier(SUBCELL_CONFIG, classifiers=2))
    encoder, classifiers = original.save_as_published(folder)
    (folder / "model_config.yaml").write_text(yaml.safe_dump({"model_config": SUBCELL_CONFIG}))
    return original, encoder, classifiers, folder / "model_config.yaml"


def test_winner_densenet_equals_pytorch_and_consumes_every_parameter(winner):
    from hpa_keras.models import build_model
    from hpa_keras.models.torch_checkpoints import (
        WINNER,
        StateDict,
        load_winner_densenet,
        read_state_dict,
        winner_settings,
    )

    original, path = winner
    state = StateDict(read_state_dict(path), path, WINNER)
    settings = winner_settings(state)
    assert settings == {
        "blocks": "1,1,1,1",
        "growth_rate": 8,
        "initial_features": 16,
        "channels": 4,
        "num_classes": 28,
    }
    options = {key: settings[key] for key in ("blocks", "growth_rate", "initial_features")}
    model = build_model("hpa_densenet121", input_shape=(96, 96, 4), **options)
    load_winner_densenet(model, state)
    names = set(original.state_dict())
    assert state.consumed == names  # every published name read (or checked as a second name)
    assert any(name.startswith("encoder3.1.") for name in names)  # the second names exist

    pixels = _pixels((2, 96, 96, 4))
    with torch.no_grad():
        logits, features = original(_channels_first(pixels, 1 / 255))
    from hpa_keras.inference.cell_embedding import embedding_model

    embedding, probabilities = embedding_model(_as_task(model))(pixels)
    assert np.abs(np.asarray(probabilities) - torch.sigmoid(logits).numpy()).max() <= TOLERANCE
    assert np.abs(np.asarray(embedding) - features.numpy()).max() <= TOLERANCE


def _as_task(core):
    """``core`` behind a pass-through layer, as a run's task model holds its registry model."""
    import keras

    inputs = keras.Input(core.input.shape[1:], name="images")
    return keras.Model(inputs, core(keras.layers.Identity(name="pixels")(inputs)))


def test_subcell_equals_pytorch_and_consumes_every_parameter(subcell):
    from hpa_keras.models import build_model
    from hpa_keras.models.torch_checkpoints import (
        SUBCELL_CLASSIFIER,
        SUBCELL_ENCODER,
        StateDict,
        load_subcell,
        read_state_dict,
        subcell_settings,
    )

    original, encoder, classifiers, _ = subcell
    encoder_state = StateDict(read_state_dict(encoder), encoder, SUBCELL_ENCODER)
    states = [StateDict(read_state_dict(path), path, SUBCELL_CLASSIFIER) for path in classifiers]
    settings = subcell_settings(encoder_state, states, heads=4)
    assert (settings["input_size"], settings["classifiers"], settings["pool_heads"]) == (64, 2, 2)
    options = {
        key: value
        for key, value in settings.items()
        if key not in ("input_size", "channels", "num_classes")
    }
    model = build_model("subcell_vit", input_shape=(64, 64, 4), num_classes=31, **options)
    assert load_subcell(model, encoder_state, states) == []
    assert encoder_state.consumed == set(torch.load(encoder))
    for state, path in zip(states, classifiers, strict=True):
        assert state.consumed == set(torch.load(path))

    pixels = _pixels((3, 64, 64, 4), seed=1)
    with torch.no_grad():
        probabilities, embedding = original(min_max_standardize(_channels_first(pixels)))
    from hpa_keras.inference.cell_embedding import embedding_model

    keras_embedding, keras_probabilities = embedding_model(_as_task(model))(pixels)
    assert keras_embedding.shape == (3, 64)  # 2 pooling heads x 32
    assert np.abs(np.asarray(keras_probabilities) - probabilities.numpy()).max() <= TOLERANCE
    assert np.abs(np.asarray(keras_embedding) - embedding.numpy()).max() <= TOLERANCE


def test_subcell_portable_renamed_files_load_the_same(subcell, tmp_path):
    """SubCellPortable's own renaming (pooler Linears at 0, classifiers' at 0, 2, 4) loads
    into the same model: both layouts of the files are accepted."""
    from hpa_keras.workflows.import_model import import_subcell

    original, encoder, classifiers, config = subcell
    renamed = {
        name.replace("_v.1.", "_v.0.").replace("_u.1.", "_u.0."): value
        for name, value in torch.load(encoder).items()
    }
    torch.save(renamed, tmp_path / "encoder.pth")
    paths = []
    for index, path in enumerate(classifiers):
        state = {
            name.replace("3.", "2.").replace("6.", "4."): value
            for name, value in torch.load(path).items()
        }
        paths.append(tmp_path / f"classifier_{index}.pth")
        torch.save(state, paths[-1])
    record = import_subcell(tmp_path / "encoder.pth", paths, tmp_path / "run", config=config)
    assert record["model_options"]["heads"] == 4
    from hpa_keras.models.saving import load_model

    model = load_model(tmp_path / "run" / "model.keras")
    pixels = _pixels((2, 64, 64, 4), seed=2)
    with torch.no_grad():
        expected, _ = original(min_max_standardize(_channels_first(pixels)))
    assert np.abs(np.asarray(model(pixels)) - expected.numpy()).max() <= TOLERANCE


@pytest.mark.parametrize(
    "name, original",
    [
        ("resnet18", lambda: ResNet((1, 1), (8, 16), stem=16)),
        ("densenet161", lambda: DenseNet(**TINY_DENSENET)),
    ],
)
def test_torchvision_checkpoints_load_into_the_trunks(name, original, tmp_path):
    """torchvision's ImageNet checkpoint (its state dict as published) into the trunk built
    here: equal on 3 channels; 4 channels widen the first convolution with red's filters."""
    from hpa_keras.models import build_model

    reference = randomize(original())
    torch.save(reference.state_dict(), tmp_path / f"{name}.pth")
    three = build_model(name, (64, 64, 3), weights=str(tmp_path / f"{name}.pth"), variant="tiny")
    pixels = _pixels((2, 64, 64, 3), seed=3)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    with torch.no_grad():
        expected = reference(_channels_first((pixels / 255.0 - mean) / std)).numpy()
    trunk = three.get_layer("backbone")
    scaled = three.get_layer("preprocessing")(pixels)
    assert np.abs(np.asarray(trunk(scaled)) - expected).max() <= TOLERANCE

    four = build_model(name, (64, 64, 4), weights=str(tmp_path / f"{name}.pth"), variant="tiny")
    backbone = four.get_layer("backbone")
    if name.startswith("densenet"):
        backbone = backbone.get_layer(f"{name}_features")
    kernel = np.asarray(
        backbone.get_layer("conv0" if name.startswith("densenet") else "conv1_conv").kernel
    )
    stem = reference.features.conv0 if name.startswith("densenet") else reference.conv1
    stem = stem.weight.detach().numpy()
    assert np.allclose(kernel[:, :, :3], stem.transpose(2, 3, 1, 0))
    assert np.allclose(kernel[:, :, 3], kernel[:, :, 0])


def test_torchvision_first_release_densenet_names_and_numpy_values_load(tmp_path):
    """torchvision's published DenseNet files name a dense layer's parts as its first
    release did (``norm.1``, ``conv.2``); training scripts save numpy values beside the
    weights. Both load (torchvision renames the first the same way)."""
    import re

    from hpa_keras.models import build_model

    reference = randomize(DenseNet(**TINY_DENSENET))
    old = {
        re.sub(r"(denselayer\d+)\.(norm|relu|conv)([12])\.", r"\1.\2.\3.", name): value
        for name, value in reference.state_dict().items()
    }
    assert "features.denseblock1.denselayer1.norm.1.weight" in old
    torch.save({"state_dict": old, "best": np.float64(0.61), "f1": np.ones(3)}, tmp_path / "d.pth")
    model = build_model("densenet161", (64, 64, 3), weights=str(tmp_path / "d.pth"), variant="tiny")
    pixels = _pixels((1, 64, 64, 3), seed=4)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    with torch.no_grad():
        expected = reference(_channels_first((pixels / 255.0 - mean) / std)).numpy()
    scaled = model.get_layer("preprocessing")(pixels)
    assert np.abs(np.asarray(model.get_layer("backbone")(scaled)) - expected).max() <= TOLERANCE


def _changed_second_name(state):
    name = "encoder3.1.denselayer1.conv1.weight"
    state[name] = state[name] + 1  # a copy: the two names share one tensor in the file


def _damaged(path, tmp_path, change):
    state = torch.load(path)["state_dict"]
    change(state)
    target = tmp_path / "damaged.pth"
    torch.save({"state_dict": state}, target)
    return target


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda state: state.pop("fc1.weight"), r"damaged.pth: no parameter 'fc1.weight'"),
        (
            lambda state: state.__setitem__("extra.weight", torch.zeros(2)),
            r"damaged.pth: parameter 'extra.weight' is not part of",
        ),
        (
            lambda state: state.__setitem__("logit.bias", torch.zeros(27)),
            r"parameter 'logit.bias' has shape \(27,\), .* needs \(28,\)",
        ),
        (
            _changed_second_name,
            r"'encoder3.1.denselayer1.conv1.weight' differs from "
            r"'backbone.features.denseblock2.denselayer1.conv1.weight'",
        ),
    ],
)
def test_a_mismatched_checkpoint_is_one_line_naming_the_file_and_parameter(
    winner, tmp_path, change, message
):
    from hpa_keras.workflows.import_model import import_hpa_densenet

    damaged = _damaged(winner[1], tmp_path, change)
    with pytest.raises(InputError, match=message):
        import_hpa_densenet(damaged, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # nothing half-written
    assert [path.name for path in tmp_path.iterdir()] == ["damaged.pth"]


def test_truncated_foreign_and_missing_files_are_named(winner, tmp_path):
    from hpa_keras.models.torch_checkpoints import read_state_dict

    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(winner[1].read_bytes()[:5000])
    with pytest.raises(InputError, match=r"truncated.pth: not a readable PyTorch checkpoint"):
        read_state_dict(truncated)
    (tmp_path / "notes.pth").write_text("not a checkpoint")
    with pytest.raises(InputError, match=r"notes.pth: not a readable PyTorch checkpoint"):
        read_state_dict(tmp_path / "notes.pth")
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(InputError, match=r"empty.pth: empty file"):
        read_state_dict(tmp_path / "empty.pth")
    with pytest.raises(InputError, match=r"missing.pth: no checkpoint there"):
        read_state_dict(tmp_path / "missing.pth")


def test_objects_beside_the_weights_are_refused_unless_allowed(winner, tmp_path):
    import argparse

    from hpa_keras.models.torch_checkpoints import read_state_dict

    state = torch.load(winner[1])["state_dict"]
    torch.save({"state_dict": state, "args": argparse.Namespace(lr=0.1)}, tmp_path / "a.pth")
    with pytest.raises(
        InputError,
        match=r"a.pth: holds a Python object \(argparse.Namespace\)"
        r".*add --allow-pickle",
    ):
        read_state_dict(tmp_path / "a.pth")
    assert set(read_state_dict(tmp_path / "a.pth", allow_pickle=True)) == set(state)


def test_a_retrained_winner_imports_with_a_warning(tmp_path, capsys):
    from hpa_keras.workflows.import_model import import_hpa_densenet

    retrained = randomize(DensenetClass(num_classes=19, **TINY_DENSENET))
    torch.save({"state_dict": retrained.state_dict()}, tmp_path / "r.pth")
    import_hpa_densenet(tmp_path / "r.pth", tmp_path / "run")
    assert "19 classes from 4 stains" in capsys.readouterr().err
    settings = __import__("json").loads((tmp_path / "run" / "input.json").read_text())
    assert settings["scheme"] is None and settings["class_names"][:2] == ["0", "1"]


def test_without_pytorch_the_import_says_what_to_install(winner, monkeypatch):
    from hpa_keras.models.torch_checkpoints import read_state_dict

    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails
    with pytest.raises(InputError, match=r"needs PyTorch.*pip install 'hpa-keras\[import\]'"):
        read_state_dict(winner[1])


def test_subcell_channels_must_match_the_encoder(subcell, tmp_path):
    from hpa_keras.workflows.import_model import import_subcell

    _, encoder, classifiers, config = subcell
    with pytest.raises(InputError, match=r"an encoder of 4 channels, not rbg's 3"):
        import_subcell(encoder, classifiers, tmp_path / "run", channels="rbg", config=config)


@pytest.mark.large
def test_full_size_models_equal_pytorch(tmp_path):
    """The published sizes: DenseNet121 (the winner's, 28 classes) on a 256 px field and
    SubCell's ViT-B/16 on a 448 px cell (tiny widths above; here the real depths)."""
    from hpa_keras.models.saving import load_model
    from hpa_keras.workflows.import_model import import_hpa_densenet, import_subcell

    winner = randomize(DensenetClass(num_classes=28))
    torch.save({"state_dict": winner.state_dict()}, tmp_path / "winner.pth")
    import_hpa_densenet(tmp_path / "winner.pth", tmp_path / "densenet")
    pixels = _pixels((1, 256, 256, 4))
    with torch.no_grad():
        expected = torch.sigmoid(winner(_channels_first(pixels, 1 / 255))[0]).numpy()
    model = load_model(tmp_path / "densenet" / "model.keras")
    assert np.abs(np.asarray(model(pixels)) - expected).max() <= TOLERANCE

    subcell = randomize(ViTPoolClassifier(SUBCELL_VIT_B_CONFIG, classifiers=2))
    encoder, classifiers = subcell.save_as_published(tmp_path)
    import_subcell(encoder, classifiers, tmp_path / "subcell")  # 12 heads: ViT-B's default
    cells = _pixels((2, 448, 448, 4), seed=5)
    with torch.no_grad():
        expected, embedding = subcell(min_max_standardize(_channels_first(cells)))
    model = load_model(tmp_path / "subcell" / "model.keras")
    assert np.abs(np.asarray(model(cells)) - expected.numpy()).max() <= TOLERANCE
