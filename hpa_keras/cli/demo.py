"""``hpa-keras demo``: the field demo and, with ``--single-cell``, the single-cell demo.

The demos' modules (and TensorFlow) are imported inside the command, so ``--help`` starts
quickly."""

import dataclasses

from hpa_keras.cli.common import add_worker_arguments
from hpa_keras.errors import InputError
from hpa_keras.settings import positive_int
from hpa_keras.tensorflow_setup import import_tensorflow_quietly


def add_demo(commands) -> None:
    demo = commands.add_parser(
        "demo",
        help="run the main job on built-in synthetic data (about 10 minutes on 2 cores)",
        description="Generate built-in HPA-like data, draw it, convert it to TFRecords, "
        "cross-validate GAP-Net (2 of the 5 folds, thresholds tuned on the out-of-fold "
        "predictions), "
        "evaluate the fold ensemble on the held-out test split (HTML report) beside a single "
        "run, write the Kaggle submission and a Grad-CAM picture, and print the macro F1 "
        "beside the baselines. About 10 minutes on a 2-core CPU.",
    )
    demo.add_argument("--out", default="hpa-demo", help="output folder (default: hpa-demo)")
    demo.add_argument(
        "--epochs", type=positive_int, default=None, help="training epochs per fold (default: 36)"
    )
    demo.add_argument(
        "--folds",
        default=None,
        help="folds to train, comma-separated, or all (default: 0,1; all trains the 5)",
    )
    demo.add_argument(
        "--quick",
        action="store_true",
        help="60 tiny images, a tiny model and 2 folds: every step in well under a minute",
    )
    single = demo.add_argument_group(
        "single cell (--single-cell): labels for every cell; 600 fields with per-cell truth in "
        "the 2021 scheme, segmented and cut into cells, a cell run and a field run, the 2021 "
        "submission and its mAP beside two baselines (3-6 minutes on 2 cores)"
    )
    single.add_argument("--single-cell", action="store_true", help="run the single-cell demo")
    single.add_argument(
        "--cell-pooling",
        choices=("none", "max", "lse"),
        default="none",
        help="the cell run: none (field labels on every cell) or multiple instances",
    )
    single.add_argument("--seed", type=int, default=0, help="single cell: the data's seed")
    add_worker_arguments(demo)
    demo.set_defaults(handler=run_demo)


def run_demo(arguments) -> None:
    import_tensorflow_quietly()
    from hpa_keras.workflows.demo import DEMO_PLAN, QUICK_PLAN
    from hpa_keras.workflows.demo import run_demo as demo

    if arguments.single_cell:
        return _run_single_cell_demo(arguments)
    plan = QUICK_PLAN if arguments.quick else DEMO_PLAN
    if arguments.epochs is not None:
        plan = dataclasses.replace(plan, epochs=arguments.epochs)
    if arguments.folds is not None:
        plan = dataclasses.replace(plan, folds=arguments.folds)
    demo(arguments.out, workers=arguments.workers, progress=not arguments.quiet, plan=plan)


def _run_single_cell_demo(arguments) -> None:
    from hpa_keras.workflows.single_cell_demo import (
        QUICK_SINGLE_CELL_PLAN,
        SINGLE_CELL_PLAN,
        run_single_cell_demo,
    )

    if arguments.folds is not None:
        raise InputError("--folds is for the field demo; the single-cell demo trains fold 0")
    plan = QUICK_SINGLE_CELL_PLAN if arguments.quick else SINGLE_CELL_PLAN
    plan = dataclasses.replace(
        plan,
        data=dataclasses.replace(plan.data, seed=arguments.seed),
        cell_pooling=arguments.cell_pooling,
    )
    if arguments.epochs is not None:
        plan = dataclasses.replace(plan, epochs=arguments.epochs, field_epochs=arguments.epochs)
    out = arguments.out if arguments.out != "hpa-demo" else "hpa-single-cell"
    run_single_cell_demo(out, plan, workers=arguments.workers, progress=not arguments.quiet)
