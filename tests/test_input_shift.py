"""The check that images to predict look like a run's training images (inference.input_shift)."""

import json
import re
import shutil

import cv2
import numpy as np
import pytest

from hpa_keras.classes import CHANNELS
from hpa_keras.cli import main
from hpa_keras.data.images import index_images, read_sample
from hpa_keras.errors import InputError
from hpa_keras.inference import input_shift
from hpa_keras.inference.input_shift import (
    MAX_MEAN_SHIFT,
    MIN_IMAGES,
    input_shift_warning,
    sampled_pixel_means,
    training_statistics,
)
from hpa_keras.runs.documents import read_input_settings


def _shifted_copy(source, target, offsets: dict) -> None:
    """Copy an image folder adding ``offsets[stain]`` to that stain's pixels (clipped)."""
    target.mkdir(parents=True)
    for path in source.glob("*.png"):
        stain = path.stem.rsplit("_", 1)[1]
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED).astype(np.int32)
        cv2.imwrite(
            str(target / path.name), np.clip(image + offsets.get(stain, 0), 0, 255).astype(np.uint8)
        )


def test_fit_keeps_the_training_folds_pixel_statistics_against_numpy(runs, training_records):
    from hpa_keras.data.pipeline import dataset_labels

    settings = read_input_settings(runs[0])  # fold 0 validates: folds 1 and 2 trained
    ids, _ = dataset_labels(str(training_records), [1, 2])
    _, index = index_images(training_records.parent / "data" / "train")
    pixels = np.stack([read_sample(index[i]) for i in ids]).astype(np.float64)
    expected_mean = pixels.mean(axis=(0, 1, 2))
    expected_std = pixels.std(axis=(0, 1, 2))
    assert list(settings.pixel_mean) == list(CHANNELS) == list(settings.pixel_std)
    np.testing.assert_allclose(list(settings.pixel_mean.values()), expected_mean, atol=1e-3)
    np.testing.assert_allclose(list(settings.pixel_std.values()), expected_std, atol=1e-3)


def test_images_like_the_training_ones_pass_and_brighter_stains_are_named(
    runs, training_records, tmp_path
):
    images = training_records.parent / "data" / "train"
    assert input_shift_warning([runs[0]], images=images) is None
    assert input_shift_warning([runs[0]], data=training_records) is None
    settings = training_statistics([runs[0]])
    step = {
        stain: int(np.ceil((MAX_MEAN_SHIFT + 0.3) * settings.pixel_std[stain]))
        for stain in CHANNELS
    }

    protein_only = tmp_path / "green"
    _shifted_copy(images, protein_only, {"green": step["green"]})
    assert input_shift_warning([runs[0]], images=protein_only) is None  # the protein's own

    brighter = tmp_path / "brighter"
    _shifted_copy(images, brighter, {"blue": step["blue"], "yellow": step["yellow"]})
    message = input_shift_warning([runs[0]], images=brighter)
    assert message.startswith(f"{brighter}: the images' stains are unlike")
    named = set(re.findall(r"\b(red|green|blue|yellow) \d", message))
    assert named == {"blue", "yellow"}
    means = sampled_pixel_means(brighter, settings)
    assert f"blue {means['blue']:.1f} against {settings.pixel_mean['blue']:.1f}" in message


def test_the_sample_is_bounded_and_evenly_spread_and_a_handful_is_not_checked(
    runs, training_records
):
    settings = training_statistics([runs[0]])
    images = training_records.parent / "data" / "train"
    ids, index = index_images(images)
    assert len(ids) == 40
    chosen = [ids[0], ids[19], ids[39]]  # the first, the middle (19.5 rounded down), the last
    pixels = np.stack([read_sample(index[i]) for i in chosen]).astype(np.float64)
    expected = pixels.reshape(len(chosen), -1, 4).mean(axis=1).mean(axis=0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(input_shift, "MIN_IMAGES", 3)
        measured = sampled_pixel_means(images, settings, limit=3)
    np.testing.assert_allclose([measured[stain] for stain in CHANNELS], expected, rtol=1e-9)
    assert sampled_pixel_means(images, settings, limit=MIN_IMAGES - 1) == {}
    assert sampled_pixel_means([index[i]["red"] for i in ids[:3]], settings) == {}


def test_runs_without_statistics_are_not_checked_and_malformed_ones_are_named(runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(runs[0], run)
    document = json.loads((run / "input.json").read_text())
    del document["pixel_mean"], document["pixel_std"]
    (run / "input.json").write_text(json.dumps(document))
    assert training_statistics([run]) is None
    assert input_shift_warning([run], images=tmp_path / "anything") is None
    document["pixel_mean"] = [1, 2, 3, 4]
    (run / "input.json").write_text(json.dumps(document))
    with pytest.raises(InputError, match=r"input.json.*pixel_mean.*mapping of stain names"):
        training_statistics([run])


def test_predict_warns_on_unlike_images_and_still_predicts(
    runs, training_records, tmp_path, capsys
):
    import hpa_keras

    brighter = tmp_path / "brighter"
    _shifted_copy(training_records.parent / "data" / "train", brighter, {"red": 120, "blue": 120})
    out = tmp_path / "submission.csv"
    assert (
        main(["predict", "--run", str(runs[0]), "--images", str(brighter), "--out", str(out)]) == 0
    )
    captured = capsys.readouterr()
    assert "warning:" in captured.err and "unlike the run's training images" in captured.err
    assert out.is_file()
    with pytest.warns(UserWarning, match="unlike the run's training images"):
        hpa_keras.predict_images(str(runs[0]), brighter)


def test_evaluate_warns_on_unlike_images_after_its_scores(runs, training_records, tmp_path, capsys):
    data = training_records.parent / "data"
    brighter = tmp_path / "brighter"
    _shifted_copy(data / "train", brighter, {"yellow": 150})
    arguments = ["evaluate", "--run", str(runs[0]), "--labels", str(data / "train.csv")]
    assert main([*arguments, "--images", str(data / "train"), "--out", str(tmp_path / "a")]) == 0
    assert "unlike the run's training images" not in capsys.readouterr().err
    assert main([*arguments, "--images", str(brighter), "--out", str(tmp_path / "b")]) == 0
    captured = capsys.readouterr()
    assert "macro F1" in captured.out
    assert re.search(
        r"warning: .*brighter: the images' stains are unlike .*\(yellow ", captured.err
    )
