"""hpa-keras annotate: a plate of fields cell by cell, every output read back by the tools
a biologist uses (pandas, anndata), resumed, sharded and merged, and its bad inputs."""

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from hpa_keras.cli import main
from hpa_keras.errors import InputError

pytest.importorskip("anndata", reason="the annotate extra is not installed")
pytest.importorskip("bioio_ome_tiff", reason="the annotate extra is not installed")

NAMES = ["DAPI", "Tubulin", "GFP", "Calreticulin"]
MAP = "DAPI=blue,Tubulin=red,GFP=green,Calreticulin=yellow"


@pytest.fixture(scope="module")
def plate(tmp_path_factory):
    """12 synthetic 2021-style fields with cells (128 px) and a tiny cell run trained on them."""
    from hpa_keras.data.conversion import ConversionSettings, make_tfrecords
    from hpa_keras.synthetic.generator import DemoDataSettings, make_demo_data
    from hpa_keras.training.config import resolve_config
    from hpa_keras.training.fit import fit

    root = tmp_path_factory.mktemp("plate")
    make_demo_data(
        root / "demo",
        DemoDataSettings(
            num_samples=12, image_size=128, seed=4, cells=True, scheme="hpa2021",
            test_fraction=0.0,
        ),
        workers=1,
        progress=False,
    )  # fmt: skip
    make_tfrecords(
        root / "demo" / "train",
        root / "records",
        labels=root / "demo" / "train.csv",
        settings=ConversionSettings(
            masks=str(root / "demo" / "masks"), cell_size=24, num_folds=2, num_shards=2
        ),
        workers=1,
        progress=False,
    )
    fit(
        resolve_config({
            "data": str(root / "records"), "out": str(root / "cell-run"), "model": "gapnet",
            "model_options": {"width": 4, "depth": 1, "dense_units": 8}, "epochs": 1,
            "verbose": 0, "tensorboard": False, "batch_size": 16,
        })
    )  # fmt: skip
    return root


@pytest.fixture(scope="module")
def annotation(plate):
    out = plate / "annotation"
    status = main(
        ["annotate", "--images", str(plate / "demo" / "train"), "--run", str(plate / "cell-run"),
         "--out", str(out), "--quiet"]
    )  # fmt: skip
    assert status == 0
    return out


def _table(folder: Path, name: str = "cells.csv"):
    import pandas as pd

    table = pd.read_csv(folder / name) if name.endswith(".csv") else pd.read_parquet(folder / name)
    order = [name for name in ("field", "cell") if name in table.columns]
    return table.sort_values(order).reset_index(drop=True)


def test_every_cell_of_the_masks_is_in_the_table_with_its_classes(plate, annotation):
    from hpa_keras.classes import HPA2021, format_target
    from hpa_keras.data.cells import read_mask
    from hpa_keras.inference.runs import load_run

    table = _table(annotation)
    fields = _table(annotation, "fields.csv")
    assert len(fields) == 12 and fields["cells"].sum() == len(table)
    run = load_run(plate / "cell-run")
    for field_id, rows in table.groupby("field"):
        mask = read_mask(annotation / "masks" / f"{field_id}_cells.png")
        assert sorted(rows["cell"]) == sorted(int(n) for n in np.unique(mask) if n)
        with np.load(annotation / "parts" / f"{field_id}.npz") as part:
            probabilities, numbers = part["probabilities"], part["cell"]
        for position, number in enumerate(numbers):
            row = rows[rows["cell"] == number].iloc[0]
            chosen = np.flatnonzero(probabilities[position] >= run.thresholds).tolist()
            label = "" if pd_isna(row["Label"]) else str(row["Label"])
            assert label == format_target(chosen, "hpa2021")
            np.testing.assert_allclose(
                row[list(HPA2021.class_names)].to_numpy(float), probabilities[position], atol=6e-5
            )
    assert set(table["top_class"]) <= set(HPA2021.class_names)
    assert (table["x_um"] > 0).all() and (table["area_um2"] > 0).all()


def pd_isna(value) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


def test_the_h5ad_opens_in_anndata_with_embeddings_probabilities_and_places(annotation, plate):
    import anndata

    from hpa_keras.inference.cell_embedding import embedding_model
    from hpa_keras.inference.runs import load_run

    table = _table(annotation)
    adata = anndata.read_h5ad(annotation / "annotation.h5ad")
    run = load_run(plate / "cell-run")
    width = embedding_model(run.model).output[0].shape[-1]
    assert adata.shape == (len(table), width) and adata.X.dtype == np.float32
    assert adata.obsm["probabilities"].shape == (len(table), 19)
    assert adata.obsm["spatial"].shape == (len(table), 2)
    assert adata.obsm["X_umap"].shape == (len(table), 2)
    assert np.isfinite(adata.obsm["X_umap"]).all()
    assert list(adata.uns["class_names"])[-1] == "Negative" and len(adata.uns["thresholds"]) == 19
    assert set(adata.obs["field"].cat.categories) == set(table["field"])
    first = adata.obs.index[0]
    field_id, number = first.rsplit("_", 1)
    with np.load(annotation / "parts" / f"{field_id}.npz") as part:
        position = list(part["cell"]).index(int(number))
        np.testing.assert_array_equal(adata.X[0], part["embedding"][position])
        np.testing.assert_allclose(
            adata.obsm["spatial"][0], part["centroid"][position][::-1] * 1.28
        )
    json.loads(adata.uns["quality_settings"])  # the thresholds the flags were raised with
    assert (annotation / "umap.png").stat().st_size > 10_000


def test_a_killed_annotate_continues_where_it_stopped(plate, annotation, tmp_path):
    out = tmp_path / "resumed"
    shutil.copytree(annotation, out)
    lost = sorted((out / "parts").glob("*.json"))[3]
    lost.unlink()  # the field whose record was not written when the run was killed
    status = main(
        ["annotate", "--images", str(plate / "demo" / "train"), "--run", str(plate / "cell-run"),
         "--out", str(out), "--quiet"]
    )  # fmt: skip
    assert status == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["annotated_now"] == 1 and summary["kept"] == 11
    assert _table(out).equals(_table(annotation))


def test_a_resumed_annotate_with_other_settings_is_refused(plate, annotation, tmp_path, capsys):
    out = tmp_path / "other"
    shutil.copytree(annotation, out)
    arguments = [
        "annotate", "--images", str(plate / "demo" / "train"), "--run", str(plate / "cell-run"),
        "--out", str(out), "--quiet", "--focus-limit", "-4",
    ]  # fmt: skip
    assert main(arguments) == 2
    assert "was annotated with other quality" in capsys.readouterr().err
    assert main([*arguments, "--overwrite", "--skip-flagged"]) == 0
    fields = _table(out, "fields.csv")
    assert not fields["flags"].astype(str).str.contains("out_of_focus").any()


def test_shards_merge_into_the_plates_annotation(plate, annotation, tmp_path):
    import anndata

    shards = []
    for number in (1, 2):
        shards.append(tmp_path / f"shard{number}")
        status = main(
            ["annotate", "--images", str(plate / "demo" / "train"), "--run",
             str(plate / "cell-run"), "--out", str(shards[-1]), "--shard", f"{number}/2", "--quiet"]
        )  # fmt: skip
        assert status == 0
    assert len(_table(shards[0], "fields.csv")) == 6
    merged = tmp_path / "merged"
    assert main(["merge-annotations", *map(str, shards), "--out", str(merged)]) == 0
    assert _table(merged).equals(_table(annotation))
    assert anndata.read_h5ad(merged / "annotation.h5ad").n_obs == len(_table(annotation))
    with pytest.raises(InputError, match="not empty; the merged annotation goes into a new"):
        from hpa_keras.workflows.annotate import merge_annotations

        merge_annotations(shards, annotation)  # a folder holding another annotation
    with pytest.raises(InputError, match="give every shard's folder once"):
        from hpa_keras.workflows.annotate import merge_annotations

        merge_annotations([shards[0]], tmp_path / "half")


def test_skipped_flagged_fields_stay_in_the_outputs_without_cells(plate, tmp_path):
    import anndata

    out = tmp_path / "skipped"
    status = main(
        ["annotate", "--images", str(plate / "demo" / "train"), "--run", str(plate / "cell-run"),
         "--out", str(out), "--skip-flagged", "--min-cells", "0", "--max-cells", "0.5",
         "--table-format", "parquet", "--quiet"]
    )  # fmt: skip
    assert status == 0
    fields = _table(out, "fields.csv")
    assert len(fields) == 12 and fields["flags"].str.contains("many_cells").all()
    assert not fields["classified"].any()
    empty = _table(out, "cells.parquet")
    assert len(empty) == 0 and empty["cell"].dtype == np.int64 and empty["edge"].dtype == bool
    assert anndata.read_h5ad(out / "annotation.h5ad").n_obs == 0
    assert "Too few cells" in (out / "umap.html").read_text()


def test_the_users_masks_and_a_parquet_table(plate, annotation, tmp_path):
    out = tmp_path / "masks"
    status = main(
        ["annotate", "--images", str(plate / "demo" / "train"), "--run", str(plate / "cell-run"),
         "--out", str(out), "--masks", str(plate / "demo" / "masks"), "--table-format",
         "parquet", "--quiet"]
    )  # fmt: skip
    assert status == 0
    table = _table(out, "cells.parquet")
    from hpa_keras.data.cells import read_mask

    expected = sum(
        len(np.unique(read_mask(path))) - 1
        for path in (plate / "demo" / "masks").glob("*_cells.png")
    )
    assert len(table) == expected


def test_an_ome_tiff_plate_gives_the_per_channel_files_answer(plate, annotation, tmp_path):
    from bioio_base.types import PhysicalPixelSizes
    from bioio_ome_tiff.writers import OmeTiffWriter

    from hpa_keras.data.images import index_images

    ids, paths = index_images(plate / "demo" / "train")
    scenes = []
    for field_id in ids[:3]:
        planes = [cv2.imread(str(paths[field_id][stain]), cv2.IMREAD_UNCHANGED)
                  for stain in ("blue", "red", "green", "yellow")]  # fmt: skip
        scenes.append(np.stack(planes))
    images = tmp_path / "ome"
    images.mkdir()
    OmeTiffWriter.save(
        scenes, str(images / "plate.ome.tiff"), dim_order=["CYX"] * 3,
        channel_names=[NAMES] * 3, physical_pixel_sizes=[PhysicalPixelSizes(None, 1.28, 1.28)] * 3,
    )  # fmt: skip
    out = tmp_path / "from-ome"
    status = main(
        ["annotate", "--images", str(images / "plate.ome.tiff"), "--run", str(plate / "cell-run"),
         "--out", str(out), "--channels", MAP, "--quiet"]
    )  # fmt: skip
    assert status == 0
    from_ome = _table(out)
    reference = _table(annotation)
    for scene, field_id in enumerate(ids[:3]):
        ours = from_ome[from_ome["field"] == f"plate_s{scene}"].drop(columns=["field"])
        theirs = reference[reference["field"] == field_id].drop(columns=["field"])
        assert ours.reset_index(drop=True).equals(theirs.reset_index(drop=True))


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--shard", "3/2"], "--shard '3/2': K must be between 1 and N"),
        (["--channels", "DAPI=purple"], "'purple' is not a stain"),
        (["--image-weight", "2"], "--image-weight must be in [0, 1]"),
        (["--pixel-size", "50"], "--pixel-size 50.0: expected micrometres"),
    ],
)
def test_bad_settings_are_one_line_and_exit_2(plate, tmp_path, capsys, extra, expected):
    status = main(
        ["annotate", "--images", str(plate / "demo" / "train"), "--run", str(plate / "cell-run"),
         "--out", str(tmp_path / "bad"), "--quiet", *extra]
    )  # fmt: skip
    error = capsys.readouterr().err
    assert status == 2 and expected in error and "Traceback" not in error


def test_missing_inputs_are_named(plate, tmp_path, capsys):
    assert main(["annotate", "--images", str(tmp_path / "none"), "--run",
                 str(plate / "cell-run"), "--out", str(tmp_path / "o")]) == 2  # fmt: skip
    assert "none: no such file or folder" in capsys.readouterr().err
    assert main(["annotate", "--images", str(plate / "demo" / "train"), "--run",
                 str(tmp_path), "--out", str(tmp_path / "o")]) == 2  # fmt: skip
    assert "--run" in capsys.readouterr().err


def test_a_run_that_reads_a_stain_the_fields_lack_is_named(plate, tmp_path, capsys):
    images = tmp_path / "three-stains"
    images.mkdir()
    for path in sorted((plate / "demo" / "train").glob("*"))[:8]:
        if not path.name.endswith("_yellow.png"):
            shutil.copy(path, images / path.name)
    status = main(
        ["annotate", "--images", str(images), "--run", str(plate / "cell-run"),
         "--out", str(tmp_path / "o"), "--quiet"]
    )  # fmt: skip
    error = capsys.readouterr().err
    assert status == 2 and "has no yellow stain, which the run reads" in error
    status = main(
        ["annotate", "--images", str(images), "--run", str(plate / "cell-run"),
         "--out", str(tmp_path / "skipped"), "--on-error", "skip", "--quiet"]
    )  # fmt: skip
    assert status == 0 and "skipped 2 unreadable fields" in capsys.readouterr().out
    fields = _table(tmp_path / "skipped", "fields.csv")
    assert (fields["flags"] == "missing:yellow").all() and fields["error"].str.contains(
        "no yellow"
    ).all()


# ------------------------------------------------------------------ the classifier


def test_the_embedding_model_gives_the_runs_probabilities_and_its_head_reads_the_embedding(plate):
    from hpa_keras.inference.cell_embedding import embedding_model
    from hpa_keras.inference.runs import load_run

    run = load_run(plate / "cell-run")
    images = np.random.default_rng(0).integers(0, 255, (5, 24, 24, 4), dtype=np.uint8)
    embedding, probabilities = embedding_model(run.model).predict(images, verbose=0)
    np.testing.assert_allclose(probabilities, run.model.predict(images, verbose=0), atol=1e-5)
    head = run.model.layers[-1].layers[-1]
    kernel, bias = (np.asarray(weight) for weight in head.get_weights())
    expected = 1 / (1 + np.exp(-(embedding @ kernel + bias)))
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)


def test_a_field_run_gives_each_cell_its_fields_prediction(runs, training_records):
    from hpa_keras.data.images import index_images, read_sample, resize_square
    from hpa_keras.inference.cell_embedding import CellClassifier
    from hpa_keras.inference.runs import load_run

    run = load_run(runs[0])
    ids, paths = index_images(training_records.parent / "data" / "train")
    image = read_sample(paths[ids[0]])
    stains = dict(zip(("red", "green", "blue", "yellow"), np.moveaxis(image, -1, 0), strict=True))
    cells = np.zeros(image.shape[:2], np.int32)
    cells[2:14, 2:14], cells[16:30, 10:28] = 1, 2
    found = CellClassifier(run).classify(stains, cells, "field")
    expected = run.model.predict(resize_square(image, run.image_size)[None], verbose=0)[0]
    assert found.probabilities.shape == (2, 28) and list(found.numbers) == [1, 2]
    np.testing.assert_allclose(found.probabilities, np.repeat(expected[None], 2, 0), atol=1e-5)
    assert found.embeddings.shape[0] == 2 and not np.allclose(
        found.embeddings[0], found.embeddings[1]
    )


# ------------------------------------------------------------------ real fields


def test_real_2048_px_fields_end_to_end(plate, real_2021_folder, tmp_path, browser):
    import anndata

    images = tmp_path / "real"
    images.mkdir()
    for path in sorted((real_2021_folder / "images").glob("*.png"))[:8]:  # two fields
        shutil.copy(path, images / path.name)
    out = tmp_path / "annotation"
    status = main(
        ["annotate", "--images", str(images), "--run", str(plate / "cell-run"), "--out",
         str(out), "--quiet"]
    )  # fmt: skip
    assert status == 0
    fields = _table(out, "fields.csv")
    assert len(fields) == 2 and fields["flags"].isna().all()  # real fields pass every check
    assert fields["cells"].between(5, 80).all()
    assert anndata.read_h5ad(out / "annotation.h5ad").n_obs == fields["cells"].sum()
    picture = cv2.imread(str(out / "pictures" / f"{fields['field'][0]}.jpg"))
    assert picture.shape == (1024, 1024, 3)
    page, errors = _open(browser, (out / "fields" / f"{fields['field'][0]}.html").as_uri())
    assert page.locator("polygon").count() == fields["cells"][0]
    page.locator("polygon").nth(0).click()
    assert page.locator("#selected").text_content().startswith("cell ") and errors == []


# ------------------------------------------------------------------ the viewer, in Chromium

CHROMIUM = Path("/usr/bin/chromium")
BROWSER_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium driven by Playwright. CI installs both (.ci/run) and sets
    HPA_KERAS_REQUIRE_BROWSER=1, so there a missing browser fails instead of skipping."""
    import os

    required = os.environ.get("HPA_KERAS_REQUIRE_BROWSER") == "1"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if required:
            raise
        pytest.skip("playwright is not installed")
    if not CHROMIUM.is_file():
        if required:
            raise FileNotFoundError(CHROMIUM)
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_FLAGS)
        yield chromium
        chromium.close()


def _open(browser, url):
    """A page at ``url`` and the console errors and page errors it raised."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on(
        "console", lambda message: errors.append(message.text) if message.type == "error" else None
    )
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    return page, errors


def test_the_index_lists_every_field_without_an_error(browser, annotation):
    page, errors = _open(browser, (annotation / "index.html").as_uri())
    rows = page.locator("table tr")
    assert rows.count() == 13  # the header and 12 fields
    fields = set(_table(annotation, "fields.csv")["field"])
    links = {row.text_content() for row in page.locator("table a").all()}
    assert links == fields and errors == []
    for image in page.locator("img").all():  # every thumbnail loaded
        assert image.evaluate("image => image.complete && image.naturalWidth > 0")


def test_pointing_at_a_cell_shows_its_classes(browser, annotation):
    table = _table(annotation)
    field_id = table["field"].iloc[0]
    page, errors = _open(browser, (annotation / "fields" / f"{field_id}.html").as_uri())
    rows = table[table["field"] == field_id]
    assert page.locator("polygon").count() == len(rows)
    from hpa_keras.classes import HPA2021

    for number in list(rows["cell"])[:3]:
        page.locator(f'polygon[data-cell="{number}"]').click()
        assert page.locator("#selected").text_content() == f"cell {number}"
        label = rows[rows["cell"] == number]["Label"].iloc[0]
        names = (
            [HPA2021.class_names[int(i)] for i in str(label).split("|")]
            if not pd_isna(label)
            else []
        )
        shown = page.locator("#panel .classes").text_content()
        assert shown == "classes: " + (", ".join(names) if names else "none")
    assert errors == []


def test_the_gallery_lists_cells_the_table_gives_that_class(browser, annotation):
    from hpa_keras.classes import HPA2021

    table = _table(annotation)
    labels = {
        (row.field, int(row.cell)): set()
        if pd_isna(row.Label)
        else set(map(int, str(row.Label).split("|")))
        for row in table.itertuples()
    }
    page, errors = _open(browser, (annotation / "gallery.html").as_uri())
    sections = page.locator("section").all()
    assert sections and errors == []
    for section in sections:
        index = HPA2021.class_names.index(section.get_attribute("data-class"))
        tiles = section.locator("a.tile").all()
        assert 0 < len(tiles) <= 12
        for tile in tiles:
            key = (tile.get_attribute("data-field"), int(tile.get_attribute("data-cell")))
            assert index in labels[key]


def test_the_umap_shows_a_cell_under_the_pointer(browser, annotation):
    page, errors = _open(browser, (annotation / "umap.html").as_uri())
    dots = page.locator("circle")
    assert dots.count() == len(_table(annotation))
    dots.nth(dots.count() - 1).hover(timeout=5000)  # the last dot drawn: none covers it
    tip = page.locator("#tip")
    assert tip.is_visible() and " cell " in tip.text_content()
    assert errors == []


def test_cells_unlike_the_training_images_are_warned_about(plate, annotation, tmp_path, capsys):
    from hpa_keras.inference.input_shift import means_warning

    records = [json.loads(path.read_text()) for path in (annotation / "parts").glob("*.json")]
    means = {
        stain: np.mean([record["pixel_means"][stain] for record in records])
        for stain in ("red", "green", "blue", "yellow")
    }
    assert means_warning([plate / "cell-run"], means, "the plate") is None  # drawn alike
    images = tmp_path / "brighter"
    images.mkdir()
    for path in (plate / "demo" / "train").glob("*.png"):
        pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(images / path.name), cv2.add(pixels, 80))  # another microscope's offset
    status = main(
        ["annotate", "--images", str(images), "--run", str(plate / "cell-run"), "--out",
         str(tmp_path / "out"), "--quiet"]
    )  # fmt: skip
    error = capsys.readouterr().err
    assert status == 0 and "the cells' stains are unlike the run's training images" in error


def test_a_failed_start_does_not_block_the_corrected_rerun(plate, tmp_path, capsys):
    out = tmp_path / "out"
    arguments = ["annotate", "--images", str(plate / "demo" / "train"), "--run",
                 str(plate / "cell-run"), "--out", str(out), "--quiet"]  # fmt: skip
    assert main([*arguments, "--masks", str(tmp_path)]) == 2  # no masks there: fails at once
    assert "no cell mask" in capsys.readouterr().err
    assert main(arguments) == 0


def test_a_resume_on_other_images_of_the_same_names_is_refused(plate, annotation, tmp_path, capsys):
    images = tmp_path / "other-plate"
    shutil.copytree(plate / "demo" / "train", images)
    out = tmp_path / "resumed"
    shutil.copytree(annotation, out)
    status = main(["annotate", "--images", str(images), "--run", str(plate / "cell-run"),
                   "--out", str(out), "--quiet"])  # fmt: skip
    assert status == 2 and "was annotated with other images" in capsys.readouterr().err


def test_merging_refuses_other_plates_and_a_used_folder(plate, annotation, tmp_path, capsys):
    images = tmp_path / "other-plate"
    shutil.copytree(plate / "demo" / "train", images)
    shards = []
    for number, folder in ((1, plate / "demo" / "train"), (2, images)):
        shards.append(tmp_path / f"shard{number}")
        arguments = ["annotate", "--images", str(folder), "--run", str(plate / "cell-run"),
                     "--out", str(shards[-1]), "--shard", f"{number}/2", "--quiet"]  # fmt: skip
        assert main(arguments) == 0
    assert main(["merge-annotations", *map(str, shards), "--out", str(tmp_path / "m")]) == 2
    assert "annotated with other images than" in capsys.readouterr().err


def test_cells_are_counted_by_their_numbers_not_the_largest():
    from hpa_keras.workflows.annotate import cell_count

    cells = np.zeros((20, 20), np.int32)
    cells[1:4, 1:4], cells[10:14, 10:14] = 3, 17  # a mask whose other cells were removed
    assert cell_count(cells) == 2 and cell_count(np.zeros((5, 5), np.int32)) == 0


def test_field_ids_with_url_characters_open_from_the_index(browser, plate, tmp_path):
    images = tmp_path / "odd"
    images.mkdir()
    source = sorted((plate / "demo" / "train").glob("*_blue.png"))[0].name.rsplit("_", 1)[0]
    for stain in ("red", "green", "blue", "yellow"):
        shutil.copy(plate / "demo" / "train" / f"{source}_{stain}.png",
                    images / f"Plate 1 #A2 50%_{stain}.png")  # fmt: skip
    out = tmp_path / "annotation"
    assert main(["annotate", "--images", str(images), "--run", str(plate / "cell-run"),
                 "--out", str(out), "--quiet"]) == 0  # fmt: skip
    page, errors = _open(browser, (out / "index.html").as_uri())
    assert page.locator("img").first.evaluate("image => image.naturalWidth > 0")
    page.locator("table a").first.click()
    page.wait_for_load_state()
    assert page.locator("h1").text_content() == "field Plate 1 #A2 50%"
    assert page.locator("polygon").count() > 0 and errors == []


def test_the_panel_lists_a_cells_classes_then_the_likeliest_others():
    from hpa_keras.workflows.annotation_outputs import part_summary

    names = [f"class {index}" for index in range(8)]
    shown = np.array([[0.9, 0.1, 0.5, 0.3, 0.2, 0.6, 0.05, 0.4]], np.float32)
    labels = np.array([[False, False, True, False, False, True, False, False]])
    part = {"cell": np.array([7]), "shown": shown, "labels": labels, "entropy": np.array([0.5])}
    cell = part_summary(part, names)["7"]
    assert cell["labels"] == ["class 2", "class 5"]
    assert [row[0] for row in cell["top"]] == [
        "class 5",
        "class 2",
        "class 0",
        "class 7",
        "class 3",
    ]
    assert [row[2] for row in cell["top"]] == [True, True, False, False, False]
    labels[:] = True  # every class given: still two others? none are left
    assert len(part_summary(part, names)["7"]["top"]) == 8
