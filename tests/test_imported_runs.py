"""An imported run is an ordinary run: predict, evaluate, cam, ensembles with trained runs of
the same classes, fit --init-from, and SubCell's per-cell classes and embeddings."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).parent))
from test_import_model import SUBCELL_CONFIG, TINY_DENSENET  # noqa: E402
from torch_reference import DensenetClass, ViTPoolClassifier, randomize  # noqa: E402

from hpa_keras.cli import main  # noqa: E402
from hpa_keras.errors import InputError  # noqa: E402


def cli(command: str) -> int:
    """``hpa-keras COMMAND`` (its words split at spaces: the paths here have none)."""
    return main(command.split())


@pytest.fixture(scope="module")
def imported_densenet(tmp_path_factory):
    from hpa_keras.workflows.import_model import import_hpa_densenet

    folder = tmp_path_factory.mktemp("imported")
    original = randomize(DensenetClass(num_classes=28, **TINY_DENSENET))
    torch.save({"state_dict": original.state_dict()}, folder / "model.pth")
    import_hpa_densenet(folder / "model.pth", folder / "run", input_size=64)
    return folder / "run"


@pytest.fixture(scope="module")
def imported_subcell(tmp_path_factory):
    from hpa_keras.workflows.import_model import import_subcell

    folder = tmp_path_factory.mktemp("subcell")
    original = randomize(ViTPoolClassifier(SUBCELL_CONFIG, classifiers=2))
    encoder, classifiers = original.save_as_published(folder)
    config = folder / "model_config.yaml"
    config.write_text(__import__("yaml").safe_dump({"model_config": SUBCELL_CONFIG}))
    import_subcell(encoder, classifiers, folder / "run", channels="rybg", config=config)
    return folder / "run"


def test_the_run_folder_states_its_origin_and_thresholds(imported_densenet, capsys):
    import json

    record = json.loads((imported_densenet / "import.json").read_text())
    assert record["source"] == "hpa-densenet" and record["model"] == "hpa_densenet121"
    assert record["files"]["checkpoint"]["file"] == "model.pth"
    assert len(record["files"]["checkpoint"]["sha256"]) == 64
    assert "0.5 for every class" in record["thresholds"]
    thresholds = json.loads((imported_densenet / "thresholds.json").read_text())
    assert thresholds["thresholds"] == [0.5] * 28
    settings = json.loads((imported_densenet / "input.json").read_text())
    assert settings["scheme"] == "hpa2018"
    assert settings["channels"] == ["red", "green", "blue", "yellow"]
    checkpoint = imported_densenet.parent / "model.pth"
    command = (
        f"import-model --from hpa-densenet --checkpoint {checkpoint} --out {imported_densenet}"
    )
    assert cli(command) == 2
    assert "not empty" in capsys.readouterr().err


def test_predict_evaluate_and_cam_take_an_imported_run(
    imported_densenet, training_records, tmp_path, capsys
):
    images = training_records.parent / "data" / "train"
    out = tmp_path / "submission.csv"
    table = tmp_path / "probabilities.csv"
    assert (
        cli(
            f"predict --run {imported_densenet} --images "
            f"{images} --out {out} --probabilities {table}"
        )
        == 0
    )
    submission = pd.read_csv(out)
    ids = pd.read_csv(training_records.parent / "data" / "train.csv")["Id"]
    assert sorted(submission["Id"]) == sorted(ids)
    assert submission["Predicted"].notna().all()  # the top class at least
    probabilities = pd.read_csv(table)
    assert probabilities.shape[0] == len(ids)
    assert (
        cli(
            f"evaluate --run {imported_densenet} --data {training_records} "
            f"--out {tmp_path / 'report'}"
        )
        == 0
    )
    assert (tmp_path / "report").is_dir()
    sample = ids.iloc[0]
    assert (
        cli(
            f"cam --run {imported_densenet} --images {images} "
            f"--id {sample} --out {tmp_path / 'cam.png'}"
        )
        == 0
    )
    assert (tmp_path / "cam.png").is_file()


def test_an_ensemble_mixes_imported_and_trained_runs_of_the_same_classes(
    imported_densenet, imported_subcell, runs, training_records, tmp_path, capsys
):
    images = training_records.parent / "data" / "train"
    out = tmp_path / "submission.csv"
    assert (
        cli(
            f"predict --run {imported_densenet} {runs[0]} --images {images} "
            f"--thresholds {runs[0] / 'thresholds.json'} --out {out}"
        )
        == 0
    )
    assert len(pd.read_csv(out)) == 40
    capsys.readouterr()
    assert (
        cli(
            f"predict --run {imported_densenet} {imported_subcell} --images {images} --thresholds "
            f"{runs[0] / 'thresholds.json'} --out {tmp_path / 'mixed.csv'}"
        )
        == 2
    )
    assert not (tmp_path / "mixed.csv").exists()


def test_fit_starts_from_an_imported_run(imported_densenet, training_records, tmp_path):
    import keras

    from hpa_keras.models.saving import load_model
    from hpa_keras.models.task import build_task_model
    from hpa_keras.training.fit import fit, resolve_config
    from hpa_keras.training.initial_weights import load_initial_weights

    imported = load_model(imported_densenet / "model.keras")
    source = [layer for layer in imported.layers if isinstance(layer, keras.Model)][-1]
    options = {"blocks": "1,1,1,1", "growth_rate": 8, "initial_features": 16}
    _, core = build_task_model(
        "hpa_densenet121",
        num_classes=19,
        channel_mean=[1] * 4,
        channel_std=[1] * 4,
        model_options=options,
    )
    message = load_initial_weights(core, imported_densenet)
    assert "the classification layer starts new" in message  # 19 classes, not 28
    for name in ("bn1", "fc1"):
        for mine, theirs in zip(
            core.get_layer(name).get_weights(), source.get_layer(name).get_weights(), strict=True
        ):
            np.testing.assert_array_equal(mine, theirs)
    stem = core.get_layer("backbone").get_layer("conv0").get_weights()[0]
    np.testing.assert_array_equal(
        stem, source.get_layer("backbone").get_layer("conv0").get_weights()[0]
    )

    config = resolve_config(
        {
            "data": str(training_records),
            "out": str(tmp_path / "tuned"),
            "model": "hpa_densenet121",
            "init_from": str(imported_densenet),
            "image_size": 96,  # the large stem halves 32 px fields too often
            "epochs": 1,
            "batch_size": 8,
            "verbose": 0,
            "tensorboard": False,
        }
    )
    assert config.model_options == options  # taken from the run
    fit(config)
    assert (tmp_path / "tuned" / "model.keras").is_file()
    with pytest.raises(InputError, match=r"is a hpa_densenet121 run; train it with --model"):
        resolve_config(
            {
                "data": str(training_records),
                "out": str(tmp_path / "x"),
                "init_from": str(imported_densenet),
            }
        )


def test_cam_refuses_a_cell_run_and_flags_of_the_other_source(
    imported_subcell, imported_densenet, training_records, tmp_path, capsys
):
    images = training_records.parent / "data" / "train"
    sample = pd.read_csv(training_records.parent / "data" / "train.csv")["Id"].iloc[0]
    assert (
        cli(
            f"cam --run {imported_subcell} --images {images} "
            f"--id {sample} --out {tmp_path / 'cam.png'}"
        )
        == 2
    )
    assert "a run of single cells" in capsys.readouterr().err
    checkpoint = imported_densenet.parent / "model.pth"
    assert (
        cli(
            f"import-model --from hpa-densenet --checkpoint {checkpoint} "
            f"--channels bg --out {tmp_path / 'r'}"
        )
        == 2
    )
    assert "(--channels: for --from subcell)" in capsys.readouterr().err


def test_init_from_refuses_other_channels(imported_subcell, training_records, tmp_path):
    from hpa_keras.training.fit import resolve_config

    settings = {
        "data": str(training_records),
        "out": str(tmp_path / "x"),
        "model": "subcell_vit",
        "init_from": str(imported_subcell),
    }
    with pytest.raises(
        InputError, match=r"reads red, yellow, blue, green; train it with --channels rybg"
    ):
        resolve_config(settings)
    config = resolve_config({**settings, "channels": "rybg", "image_size": 64})
    assert config.model_options["heads"] == 4  # the run's builder options


def test_subcell_gives_each_cell_classes_and_an_embedding(imported_subcell):
    from hpa_keras.classes import SUBCELL
    from hpa_keras.inference.cell_embedding import CellClassifier
    from hpa_keras.inference.runs import load_run

    run = load_run(imported_subcell)
    assert run.kind == "cells" and run.class_names == SUBCELL.class_names
    assert run.channels == ("red", "yellow", "blue", "green")
    rng = np.random.default_rng(0)
    stains = {
        name: rng.integers(0, 255, (120, 120), dtype=np.uint8)
        for name in ("red", "green", "blue", "yellow")
    }
    cells = np.zeros((120, 120), np.int32)
    cells[10:50, 10:60], cells[60:110, 50:100] = 1, 2
    result = CellClassifier(run).classify(stains, cells, "field")
    assert result.probabilities.shape == (2, 31)
    assert result.embeddings.shape == (2, 64) and result.embeddings.dtype == np.float32
    assert np.isfinite(result.embeddings).all()


def test_predict_writes_subcell_embeddings_and_a_2021_submission(
    imported_subcell, cell_records, tmp_path, capsys
):
    from hpa_keras.classes import SUBCELL, map_subcell_probabilities

    out, table, embeddings = tmp_path / "sub.csv", tmp_path / "cells.csv", tmp_path / "emb.npz"
    status = cli(
        f"predict --run {imported_subcell} --data {cell_records / 'records'} "
        f"--out {out} --cell-table {table} --embeddings {embeddings}"
    )
    err = capsys.readouterr().err
    assert status == 0, err
    # the records keep each cell's surroundings (make-tfrecords' default); SubCell's run zeroes
    assert "cells cut with --cell-context keep, but" in err and "--cell-context zero" in err
    assert "cells cut at 16 px, resized to the 64 px" in err and "--cell-size 64" in err
    cells = pd.read_csv(table)
    assert list(cells.columns[3:-1]) == list(SUBCELL.class_names)  # the table: SubCell's 31
    stored = np.load(embeddings)
    assert stored["embeddings"].shape == (len(cells), 64)  # 2 pooling heads x 32
    assert stored["embeddings"].dtype == np.float32
    assert sorted(stored["ids"]) == sorted(
        f"{f}_{c}" for f, c in zip(cells["ID"], cells["cell"], strict=True)
    )
    # the submission: every cell in the 2021 classes, each the largest SubCell class mapped
    first = cells.iloc[0]
    mapped = map_subcell_probabilities(
        first[list(SUBCELL.class_names)].to_numpy(float)[None], "hpa2021"
    )[0]
    submission = pd.read_csv(out).set_index("ID")
    entries = submission.loc[first["ID"], "PredictionString"].split()  # class, confidence, mask
    confidences = {int(entries[i]): float(entries[i + 1]) for i in range(0, 19 * 3, 3)}
    assert sorted(confidences) == list(range(19))
    for index, value in confidences.items():
        expected = 0.0 if np.isnan(mapped[index]) else mapped[index]
        assert value == pytest.approx(expected, abs=1e-3)
    capsys.readouterr()
    status = main(
        ["evaluate", "--run", str(imported_subcell), "--data", str(cell_records / "records")]
    )
    assert status == 2 and "predicts SubCell's 31 classes" in capsys.readouterr().err


def test_an_imported_run_predicts_real_kaggle_fields(
    imported_densenet, real_four_channel_folder, tmp_path, capsys
):
    """Real 512 px HPA samples (four PNGs each) through the imported run: every sample gets
    its most probable class at least, and the random weights' label count is warned of."""
    import shutil

    labels = pd.read_csv(real_four_channel_folder / "train.csv").head(3)
    images = tmp_path / "fields"
    images.mkdir()
    for sample in labels["Id"]:
        for path in (real_four_channel_folder / "train").glob(f"{sample}_*.png"):
            shutil.copy(path, images)
    out = tmp_path / "submission.csv"
    assert cli(f"predict --run {imported_densenet} --images {images} --out {out}") == 0
    submission = pd.read_csv(out)
    assert sorted(submission["Id"]) == sorted(labels["Id"])
    assert submission["Predicted"].notna().all()
    printed = capsys.readouterr()
    assert "wrote" in printed.out and "labels per image predicted" in printed.err
