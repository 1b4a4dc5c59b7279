"""``hpa-keras demo --single-cell``: labels for every cell, on built-in data with per-cell truth.

Steps, each announced:

1. generate fields in the 2021 scheme with cell masks and each cell's truth
   (``data/``: the field labels are the only truth training sees);
2. segment the test fields with ``hpa-keras segment`` and compare its cells
   with the generated ones (precision and recall at IoU 0.5);
3. cut cell records: training cells from the generated masks, test cells
   from the generated masks and from the segmented ones; field records too;
4. train a cell run (each cell learns its field's labels, or with
   ``cell_pooling`` the field's label is its cells' pooled prediction) and
   a field run (whole fields, the image-level model);
5. choose the field run's share ``W`` in the mixed prediction on the
   validation fold's cells (the only place per-cell truth is looked at
   before the test), from 0, 0.25, 0.5, 0.75, 1;
6. predict the test cells, write the 2021 submissions, and score them with
   the challenge's mAP against the true cells: the cell run, the mix, the
   cell run on segmented cells, beside two baselines: every cell given its
   field's predicted probabilities (the field run alone, ``W = 1``) and a
   random forest on each cell's image features trained on field labels.
"""

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from hpa_keras.atomic import write_text_atomic
from hpa_keras.cells.average_precision import FieldCells, mean_average_precision, submission_fields
from hpa_keras.cells.matching import match_cells
from hpa_keras.cells.segment import segment_folder
from hpa_keras.cells.submission import FieldPrediction, read_submission
from hpa_keras.classes import HPA2021
from hpa_keras.data.cell_records import read_cell_labels
from hpa_keras.data.cells import find_mask_files, read_mask
from hpa_keras.data.conversion import ConversionSettings, make_tfrecords
from hpa_keras.data.images import image_dimensions
from hpa_keras.inference.cell_prediction import predict_cells
from hpa_keras.inference.cells import cells_by_field, mix_with_fields, write_cell_predictions
from hpa_keras.inference.predict import predict_runs
from hpa_keras.synthetic.generator import DemoDataSettings, make_demo_data
from hpa_keras.training.baselines import image_features, random_forest_probabilities
from hpa_keras.training.config import resolve_config
from hpa_keras.training.fit import fit

STEPS = 6
MIX_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
RESULTS_FILE = "single_cell_results.json"


@dataclass(frozen=True)
class SingleCellPlan:
    """What the single-cell demo generates and how long it trains."""

    data: DemoDataSettings = DemoDataSettings(
        num_samples=600, image_size=128, seed=0, test_fraction=0.2, label_balance=0.5,
        cells=True, scheme="hpa2021",
    )  # fmt: skip
    cell_size: int = 32
    epochs: int = 30
    field_epochs: int = 30
    batch_size: int = 64
    field_batch_size: int = 16
    lr: float = 2e-3
    cell_pooling: str = "none"
    bags_per_batch: int = 4
    model_options: dict = field(default_factory=dict)
    trees: int = 100


SINGLE_CELL_PLAN = SingleCellPlan()
QUICK_SINGLE_CELL_PLAN = SingleCellPlan(
    data=DemoDataSettings(
        num_samples=40,
        image_size=64,
        seed=0,
        test_fraction=0.25,
        label_balance=0.5,
        cells=True,
        scheme="hpa2021",
    ),  # fmt: skip
    cell_size=16,
    epochs=1,
    field_epochs=1,
    batch_size=32,
    field_batch_size=8,
    model_options={"width": 4, "depth": 1, "dense_units": 8},
    trees=10,
)


def _step(number: int, text: str) -> None:
    print(f"[{number}/{STEPS}] {text}", flush=True)


def run_single_cell_demo(
    out: str | Path = "hpa-single-cell",
    plan: SingleCellPlan = SINGLE_CELL_PLAN,
    workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Run the steps of the module docstring into ``out``; returns (and writes) the results."""

    started = time.monotonic()
    out = Path(out)
    data = out / "data"
    settings = plan.data
    _step(1, f"Generating {settings.num_samples} fields with cells ({settings.scheme}) in {data}")
    summary = make_demo_data(data, settings, workers=workers, overwrite=True, progress=progress)
    print(f"      {summary['num_train']} training and {summary['num_test']} test fields")

    _step(2, f"Segmenting the test fields into {out / 'segmented'}")
    segmentation = _segment_test_fields(data, out / "segmented", workers, progress)
    print(
        f"      {segmentation['cells']} cells found, {segmentation['true_cells']} generated: "
        f"precision {segmentation['precision']:.3f}, recall {segmentation['recall']:.3f} at "
        f"IoU 0.5, mean IoU {segmentation['mean_iou']:.3f}"
    )

    _step(3, "Cutting cell records (and field records) from the fields")
    records = _make_records(data, out, plan, workers, progress)

    _step(4, f"Training the cell run (cell pooling: {plan.cell_pooling}) and the field run")
    cell_run = _fit(records["cells_train"], out / "cell-run", plan, cells=True)
    field_run = _fit(records["fields_train"], out / "field-run", plan, cells=False)

    _step(5, "Choosing the field run's share W on the validation fold's cells")

    truth = read_cell_labels(data / "cells.csv", settings.scheme)
    weight, validation = choose_mix_weight(cell_run, field_run, records, truth, fold=0)
    print(
        "      validation mAP by W: "
        + ", ".join(f"{w:g}: {value:.3f}" for w, value in validation.items())
        + f"; chosen W = {weight:g}"
    )

    _step(6, "Predicting the test cells, writing the 2021 submissions, scoring them")
    scores = _score_test(out, data, records, cell_run, field_run, weight, plan)
    results = {
        "plan": asdict(plan),
        "segmentation": segmentation,
        "mix_weight": weight,
        "validation_map_by_weight": {str(w): value for w, value in validation.items()},
        "test_map": scores,
        "seconds": round(time.monotonic() - started, 1),
    }
    write_text_atomic(out / RESULTS_FILE, json.dumps(results, indent=1) + "\n")
    _print_results(results, summary["num_test"])
    return results


def _segment_test_fields(data: Path, masks: Path, workers, progress) -> dict:

    summary = segment_folder(data / "test", masks, workers=workers, overwrite=True,
                             progress=progress)  # fmt: skip
    matched = predicted = true_cells = 0
    ious = []
    for path in sorted((data / "test").glob("*_blue.png")):
        field_id = path.name[: -len("_blue.png")]
        truth = read_mask(find_mask_files(data / "masks", field_id)[0])
        found, _ = find_mask_files(masks, field_id)
        cells = read_mask(found) if found is not None else np.zeros_like(truth)
        result = match_cells(cells, truth, 0.5)
        matched += len(result.matches)
        predicted += result.num_predicted
        true_cells += result.num_reference
        ious.extend(iou for _, _, iou in result.matches)
    return {
        "cells": predicted,
        "true_cells": true_cells,
        "precision": matched / max(predicted, 1),
        "recall": matched / max(true_cells, 1),
        "mean_iou": float(np.mean(ious)) if ious else 0.0,
        "fields_without_cells": len(summary["no_cells"]),
        "seconds": summary["seconds"],
    }


def _make_records(data: Path, out: Path, plan: SingleCellPlan, workers, progress) -> dict:

    def convert(folder, labels, target, masks=None, cell_labels=None, on_error="fail"):
        settings = ConversionSettings(
            masks=str(masks) if masks else None,
            cell_labels=str(cell_labels) if cell_labels else None,
            cell_size=plan.cell_size,
            on_error=on_error,
        )
        make_tfrecords(data / folder, target, labels=data / labels, settings=settings,
                       workers=workers, progress=progress)  # fmt: skip
        return target

    records = {
        "cells_train": convert("train", "train.csv", out / "records" / "cells-train",
                               data / "masks", data / "cells.csv"),
        "cells_test": convert("test", "sample_submission.csv", out / "records" / "cells-test",
                              data / "masks", data / "test_cells.csv"),
        # fields where segmentation found no cell have no mask: left out, and score 0
        "cells_test_segmented": convert("test", "sample_submission.csv",
                                        out / "records" / "cells-test-segmented",
                                        out / "segmented", on_error="skip"),
        "fields_train": convert("train", "train.csv", out / "records" / "fields-train"),
        "fields_test": convert("test", "sample_submission.csv", out / "records" / "fields-test"),
    }  # fmt: skip
    return records


def _fit(records: Path, run: Path, plan: SingleCellPlan, cells: bool) -> Path:

    settings = {
        "data": str(records),
        "out": str(run),
        "model": "gapnet",
        "model_options": plan.model_options,
        "epochs": plan.epochs if cells else plan.field_epochs,
        "batch_size": plan.batch_size if cells else plan.field_batch_size,
        "lr": plan.lr,
        "schedule": "cosine",
        "verbose": 0,
        "tensorboard": False,
    }
    if cells and plan.cell_pooling != "none":
        settings.update(cell_pooling=plan.cell_pooling, bags_per_batch=plan.bags_per_batch)
    summary = fit(resolve_config(settings))
    print(
        f"      {run.name}: {summary['epochs']} epochs, validation macro F1 "
        f"{summary['val_macro_f1_tuned']:.3f} tuned ({summary['seconds']:.0f} s)"
    )
    return run


def records_map(ids, probabilities, truth: dict) -> float:
    """The challenge's mAP of per-record predictions over cells whose masks are the true
    ones (each record is its own true cell: IoU 1)."""

    fields = []
    for field_id, cells in cells_by_field(ids, probabilities).items():
        numbers = sorted(cells)
        scores = np.stack([cells[number] for number in numbers])
        classes = [set(truth[field_id][number]) for number in numbers]
        fields.append(FieldCells(np.eye(len(numbers)), scores, classes, field_id))
    return mean_average_precision(fields, HPA2021.num_classes).mean_average_precision


def choose_mix_weight(cell_run: Path, field_run: Path, records: dict, truth: dict, fold=0):
    """The field run's share W (of MIX_WEIGHTS) with the best mAP on the validation fold's
    cells (``truth``: the training cells' own classes, from cells.csv), and the mAP of
    each W."""

    cell_ids, cell_probabilities, _ = predict_runs([cell_run], data=records["cells_train"],
                                                   folds=[fold])  # fmt: skip
    field_ids, field_probabilities, _ = predict_runs([field_run], data=records["fields_train"],
                                                     folds=[fold])  # fmt: skip
    by_weight = {}
    for weight in MIX_WEIGHTS:
        mixed = mix_with_fields(cell_ids, cell_probabilities, field_ids, field_probabilities,
                                weight)  # fmt: skip
        by_weight[weight] = records_map(cell_ids, mixed, truth)
    best = max(by_weight, key=lambda weight: (by_weight[weight], -weight))
    return best, by_weight


def _score_test(out, data, records, cell_run, field_run, weight, plan) -> dict:
    """The test fields' mAP of each submission: written by predict_cells (the flow of
    ``hpa-keras predict`` for a cell run, with and without a field run mixed in) or, for the
    random forest, from its probabilities."""

    truth = read_cell_labels(data / "test_cells.csv", HPA2021.name)
    written = {}

    def score(name, **settings):
        """Predict (or write) the submission ``name`` and score it on the true masks."""
        submission = out / f"submission_{name}.csv"
        settings = {"masks": data / "masks", "data": records["cells_test"], **settings}
        if "probabilities" in settings:  # not a run's: written from the probabilities
            write_cell_predictions(
                settings["ids"], settings["probabilities"], settings["thresholds"],
                settings["masks"], submission, out / f"submission_{name}_cells.csv",
                list(HPA2021.class_names), HPA2021.name, records=settings["data"],
            )  # fmt: skip
        else:
            written[name] = predict_cells([cell_run], out=submission, **settings)
        predicted = read_submission(submission, HPA2021.num_classes)
        for field_id in truth:  # a field where segmentation found nothing: no cell predicted
            predicted.setdefault(field_id, _empty_field(data, field_id))
        fields = submission_fields(predicted, data / "masks", truth, HPA2021.num_classes)
        return mean_average_precision(fields, HPA2021.num_classes).mean_average_precision

    def with_fields(share):
        return {"image_runs": [field_run], "image_data": records["fields_test"],
                "image_weight": share}  # fmt: skip

    scores = {"cell run": score("cells")}
    scores[f"cell run + field run, W = {weight:g}"] = score("mixed", **with_fields(weight))
    scores["cell run on segmented cells"] = score(
        "segmented", masks=out / "segmented", data=records["cells_test_segmented"]
    )
    scores["baseline: each cell its field's prediction"] = score("field_labels", **with_fields(1.0))
    forest_ids, forest_probabilities = _random_forest_cells(records, plan)
    scores["baseline: random forest on cell features"] = score(
        "random_forest", ids=forest_ids, probabilities=forest_probabilities,
        thresholds=written["cells"]["thresholds"],  # the cell run's, for its table
    )  # fmt: skip
    return scores


def _empty_field(data: Path, field_id: str):

    height, width = image_dimensions(find_mask_files(data / "masks", field_id)[0])
    return FieldPrediction(field_id, width, height, [])


def _random_forest_cells(records: dict, plan: SingleCellPlan):
    """``(ids, probabilities)`` of the test cells from a random forest on cell features,
    trained on the training cells with their fields' labels."""
    from hpa_keras.data.pipeline import load_dataset  # lazy: imports TensorFlow

    def features(folder):
        rows, targets = [], []
        for images, target in load_dataset(folder, training=False, batch_size=256,
                                           normalization="none"):  # fmt: skip
            rows.append(image_features(images.numpy()))
            targets.extend(target.numpy())
        return np.concatenate(rows), targets

    train_x, train_y = features(records["cells_train"])
    test_x, test_ids = features(records["cells_test"])
    probabilities = random_forest_probabilities(train_x, np.asarray(train_y), test_x, 0, plan.trees)
    return [value.decode("utf-8") for value in test_ids], probabilities


def _print_results(results: dict, test_fields: int) -> None:
    print(
        f"\nOn the {test_fields} held-out test fields, mAP over cells at IoU 0.6 (the 2021 metric):"
    )
    width = max(len(name) for name in results["test_map"])
    for name, value in results["test_map"].items():
        print(f"  {name:{width}}  {value:.3f}")
    print(f"({results['seconds']:.0f} s)")
