"""Probabilities from run folders: one run or an ensemble, with test-time augmentation.

Input is a make-tfrecords folder or a folder of ``<Id>_<channel>`` images.
Both are read through tf.data (parallel decode, prefetch) and predicted
with ``model.predict`` through :class:`~hpa_keras.inference.tta.DihedralTTA`,
so the dihedral views are made on the device and the host only decodes
(``python benchmarks/bench_predict.py`` measures it against
``model.predict`` on tensors already in memory).

Several runs (for example one per fold) form an ensemble: their
probabilities are averaged, and so are their thresholds.
"""

import os
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from hpa_keras.classes import SCHEMES
from hpa_keras.data.images import index_image_folder, index_images
from hpa_keras.data.labels import read_id_file
from hpa_keras.errors import InputError
from hpa_keras.inference.cells import check_run_and_records
from hpa_keras.inference.engine import default_engine, parse_engine, uses_openvino
from hpa_keras.inference.input_shift import input_shift_warning
from hpa_keras.inference.runs import Run, load_run
from hpa_keras.inference.submission import submission_labels
from hpa_keras.runs.documents import read_input_settings, read_thresholds_document
from hpa_keras.runs.folders import (
    check_finished_run,
    class_names_of,
    default_views,
    expand_runs,
    run_paths,
)
from hpa_keras.scoring.uncertainty import ensemble_disagreement, predictive_entropy


def input_ids(
    data=None, images=None, ids_file=None, folds=None, sources=None
) -> tuple[list[str], dict | None]:
    """The Ids to predict, in submission order, and the image index for ``images``.

    From TFRecords: their evaluation order. From an image folder: the order
    of ``ids_file`` (for example the challenge's ``sample_submission.csv``)
    when given, every listed Id needing its four channel files; otherwise the
    folder's Ids sorted.
    """

    if (data is None) == (images is None):
        raise InputError("give exactly one of --data (TFRecords) and --images (an image folder)")
    if data is not None:
        from hpa_keras.data.pipeline import dataset_ids  # lazy: imports TensorFlow

        return dataset_ids(data, folds, sources), None
    index = index_image_folder(images)
    if ids_file is not None:
        ids = list(read_id_file(ids_file).ids)
        for sample_id in ids:
            if sample_id not in index:
                raise InputError(f"{ids_file}: Id {sample_id} has no image files in {images}")
    else:
        ids = sorted(index)
    if not ids:
        raise InputError(f"{images}: no <Id>_<channel> image files")
    return ids, index


def check_prediction_settings(runs, tta: int) -> None:
    """Errors for a TTA count other than 1, 2, 4, 8, or no run at all."""
    if tta not in (1, 2, 4, 8):
        raise InputError(f"--tta must be 1, 2, 4 or 8, got {tta}")
    if not runs:
        raise InputError("give at least one run folder (--run)")


def _run_facts(run) -> dict:
    """What a run predicts and reads, without loading its model: a loaded
    :class:`~hpa_keras.inference.runs.Run`, or a run folder (its ``input.json``)."""

    if isinstance(run, Run):
        return {"folder": run.folder, "scheme": run.scheme, "kind": run.kind,
                "class_names": tuple(run.class_names)}  # fmt: skip
    check_finished_run(run)
    settings = read_input_settings(run)
    names = class_names_of(run)
    scheme = settings.scheme or next(
        (name for name, known in SCHEMES.items() if known.class_names == names), None
    )
    return {"folder": run, "scheme": scheme, "kind": settings.kind,
            "class_names": names}  # fmt: skip


def _described(facts: dict) -> str:
    """``the hpa2021 scheme's 19 classes``: what a run predicts, for messages."""
    count = len(facts["class_names"])
    if not facts["scheme"]:
        return f"{count} classes"
    return f"the {facts['scheme']} scheme's {count} classes"


def check_runs_and_input(
    runs, data=None, images=None, ids_file=None, thresholds=None, scheme: str | None = None
) -> dict:
    """The one check that runs and their input belong together, made before a model loads;
    returns the runs' facts (``scheme``, ``kind``, ``class_names``).

    ``runs``: run folders, a cv folder or a loaded Run. Refused: runs that predict different
    classes (an average of a 2018 and a 2021 run means nothing); records or a label or Id
    file (``ids_file``: a labels file, a sample submission) of another label scheme than
    the runs' (their class indices would be written or scored as the other scheme's); a
    cell run given field records or images and a field run given cell records; a
    ``thresholds`` file tuned for other classes; runs of another ``scheme`` than a run they
    are mixed with (``predict --image-run``). Records that carry no labels and no Id file
    say nothing of their scheme and pass.
    """

    document = None  # the thresholds to judge with, where a file gives them
    if isinstance(runs, Run):
        facts = [_run_facts(runs)]
    else:
        folders, document = expand_runs(runs)
        facts = [_run_facts(folder) for folder in folders]
    first = facts[0]
    for other in facts[1:]:
        if (other["class_names"], other["kind"]) != (first["class_names"], first["kind"]):
            raise InputError(
                f"{other['folder']}: predicts {_described(other)} from {other['kind']}, "
                f"{first['folder']} {_described(first)} from {first['kind']}; "
                "runs averaged together must predict the same classes from the same input"
            )
    predicts = _described(first)
    if scheme is not None and first["scheme"] != scheme:
        raise InputError(
            f"{first['folder']}: predicts {predicts}, the run it is mixed with the {scheme} "
            "scheme's; both must use one label scheme"
        )
    given = []  # (where, scheme) of what the input says of its classes
    if data is not None:
        from hpa_keras.data.tfrecords import read_manifest  # lazy: imports TensorFlow

        manifest = read_manifest(data)
        check_run_and_records(first["kind"], manifest.kind, data)
        named = manifest.labeled or any(s.get("labels") for s in manifest.sources)
        if named:
            given.append((f"{data}: records", manifest.scheme))
    if images is not None and first["kind"] == "cells":
        raise InputError(
            f"{images}: an image folder, but the run was trained on cells ({first['folder']}); "
            "cut the fields into cell records (make-tfrecords --masks) and predict those"
        )
    if ids_file is not None:
        from hpa_keras.data.labels import read_id_file  # lazy: imports TensorFlow

        given.append((f"{ids_file}: Ids", read_id_file(ids_file).scheme))
    for where, input_scheme in given:
        if first["scheme"] == "subcell" and input_scheme == "hpa2021":
            continue  # a SubCell cell run writes its submission in the 2021 classes (mapped)
        if first["scheme"] and input_scheme != first["scheme"]:
            count = SCHEMES[input_scheme].num_classes
            raise InputError(
                f"{where} in the {input_scheme} scheme ({count} classes), but "
                f"{first['folder']} predicts {predicts}; predict with a run of the "
                f"{input_scheme} scheme"
            )
    source = runs if document is not None else None
    if thresholds is not None and not (isinstance(thresholds, str) and thresholds == "own"):
        document, source = read_thresholds_document(thresholds), thresholds
    if document is not None:
        names = document.class_names
        if len(document.thresholds) != len(first["class_names"]) or (
            names and names != first["class_names"]
        ):
            raise InputError(
                f"{source}: {len(document.thresholds)} thresholds"
                f"{' of other classes' if names else ''}, but {first['folder']} predicts "
                f"{predicts}"
            )
    return first


def training_labels_per_image(runs) -> float | None:
    """The mean labels per image of the runs' training folds (their ``input.json``), to
    compare predictions with; ``None`` for runs made before it was recorded."""

    folders, _ = expand_runs(runs)
    values = [read_input_settings(folder).labels_per_image for folder in folders]
    values = [value for value in values if value is not None]
    return float(np.mean(values)) if values else None


def predict_run(
    run,
    ids,
    data=None,
    index=None,
    folds=None,
    tta: int = 1,
    batch_size: int = 16,
    sources=None,
    engine: str | None = None,
):
    """Probabilities ``(len(ids), classes)`` float32 of one loaded run (see :func:`predict_ids`).

    Fields are resized to the run's field size exactly as its records were
    made, and seen whole or as the run's tiles, in ``tta`` dihedral views, by the
    ``engine`` (:meth:`~hpa_keras.inference.runs.Run.predictor`; default
    :func:`~hpa_keras.inference.engine.default_engine`).
    """
    import tensorflow as tf  # lazy: imports TensorFlow

    from hpa_keras.data.pipeline import load_dataset, load_image_folder  # lazy: imports TensorFlow

    errors = None
    if data is not None:
        from hpa_keras.data.tfrecords import read_manifest  # lazy: imports TensorFlow

        stored = read_manifest(data).bit_depth
        if stored != run.bit_depth:
            raise InputError(
                f"{data}: {stored}-bit records, but {run.folder} was trained on "
                f"{run.bit_depth}-bit ones; convert with --bit-depth {run.bit_depth}"
            )
        dataset = load_dataset(
            data,
            folds=folds,
            training=False,
            batch_size=batch_size,
            image_size=run.image_size,
            channels=run.channels,
            normalization="none",
            sources=sources,
        )
    else:
        dataset, errors = load_image_folder(
            index,
            ids,
            run.image_size,
            run.channels,
            batch_size=batch_size,
            sixteen_bit_rule=run.sixteen_bit_rule,
            bit_depth=run.bit_depth,
        )
    images = dataset.map(lambda batch, _: batch)
    try:
        scores = run.predictor(tta, default_engine(engine)).predict(images, verbose=0)
    except tf.errors.OpError:
        if errors:
            errors.raise_first()
        raise
    scores = np.asarray(scores, dtype=np.float32)
    if len(scores) != len(ids):
        raise InputError(f"{run.folder}: {len(scores)} predictions for {len(ids)} Ids")
    return scores


def predict_ids_by_member(
    runs,
    ids,
    data=None,
    index=None,
    folds=None,
    tta: int | None = None,
    batch_size: int = 16,
    sources=None,
    thresholds=None,
    ids_file=None,
    engine: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(member_probabilities, thresholds)`` of Ids already known: float32 ``(M, len(ids),
    classes)``, one slice per run folder (a cv folder: per fold run), each predicted alone;
    :func:`predict_ids` is their mean.

    ``ids`` are those of ``data`` (and ``folds``) in evaluation order, as
    :func:`hpa_keras.data.pipeline.dataset_labels` gives them, or keys of the
    image-folder ``index`` in the order wanted. For callers that read the Ids
    anyway (evaluation reads them with the labels), so that the TFRecords are
    not read once more just for them.

    Thresholds: those of a cv folder (tuned on its out-of-fold predictions),
    of the one run, or of ``thresholds`` (a ``thresholds.json`` file;
    ``"own"``: the one run's own, for a fold run of a cv). Several runs
    without a cv folder or a file are refused: averaged probabilities need
    thresholds tuned on averaged probabilities, not the mean of each run's
    own. ``tta`` defaults to the views the thresholds were tuned with (the
    file's ``views``, else the runs'). ``ids_file``: the label or Id file the
    Ids came from, whose scheme must be the runs' (see
    :func:`check_runs_and_input`, made here before any model loads).
    """
    check_runs_and_input(runs, data=data, ids_file=ids_file, thresholds=thresholds)
    parse_engine(default_engine(engine))  # refused before any model loads
    folders, document = expand_runs(runs)
    if thresholds == "own":
        if len(folders) != 1:
            raise ValueError("thresholds='own' needs exactly one run folder")
        document = None
    elif thresholds is not None:
        document = read_thresholds_document(thresholds)
    if tta is None:
        given_views = document.views if document is not None else None
        tta = int(given_views) if given_views else default_views(runs)
    check_prediction_settings(folders, tta)
    if document is None and len(folders) > 1:
        raise InputError(
            f"{len(folders)} runs: an ensemble's thresholds must be tuned on its own averaged "
            "predictions; make it with `hpa-keras cv` (out-of-fold thresholds) or give "
            "--thresholds FILE"
        )
    probabilities, own = [], []
    for folder in folders:
        run = load_run(folder)
        probabilities.append(
            predict_run(run, ids, data, index, folds, tta, batch_size, sources, engine)
        )
        own.append(run.thresholds)
    chosen = document.thresholds if document is not None else own[0]
    if len(chosen) != len(own[0]):
        raise InputError(f"{len(chosen)} thresholds for models of {len(own[0])} classes")
    return np.stack(probabilities), chosen


def predict_ids(runs, ids, **options) -> tuple[np.ndarray, np.ndarray]:
    """``(probabilities, thresholds)`` of Ids already known, averaged over ``runs``: the mean
    over members of :func:`predict_ids_by_member`, whose arguments it takes."""
    members, chosen = predict_ids_by_member(runs, ids, **options)
    return np.mean(members, axis=0), chosen


def predict_runs_by_member(
    runs: Sequence[str | os.PathLike],
    data=None,
    images=None,
    ids_file=None,
    tta: int | None = None,
    batch_size: int = 16,
    folds=None,
    thresholds=None,
    engine: str | None = None,
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(ids, member_probabilities, thresholds)``: :func:`predict_runs` (the same arguments)
    with each member's probabilities, float32 ``(M, len(ids), classes)`` (M: the run
    folders, or a cv folder's folds), instead of their mean; for :func:`uncertainty_columns`.
    """

    runs = run_paths(runs)
    if not runs:
        raise InputError("give at least one run folder (--run)")
    check_runs_and_input(runs, data, images, ids_file, thresholds)
    ids, index = input_ids(data, images, ids_file, folds)
    members, chosen = predict_ids_by_member(
        runs, ids, data=data, index=index, folds=folds, tta=tta, batch_size=batch_size,
        thresholds=thresholds, ids_file=ids_file, engine=engine,
    )  # fmt: skip
    return ids, members, chosen


def predict_runs(
    runs: Sequence[str | os.PathLike],
    data=None,
    images=None,
    ids_file=None,
    tta: int | None = None,
    batch_size: int = 16,
    folds=None,
    thresholds=None,
    engine: str | None = None,
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(ids, probabilities, thresholds)`` averaged over ``runs`` (the mean over members of
    :func:`predict_runs_by_member`).

    Args:
        runs: a run folder, a list of run folders, or one cv folder (an
            ensemble with its out-of-fold thresholds); several plain runs
            need ``thresholds``.
        data: a make-tfrecords folder, or
        images: a folder of ``<Id>_<channel>`` images (PNG, TIFF, JPEG).
        ids_file: with ``images``: a CSV with an ``Id`` column fixing which
            Ids are predicted and their order.
        tta: dihedral views averaged per image: 1, 2, 4 or 8 (default: as the
            thresholds were tuned).
        folds: with ``data``: the fold or folds to predict (default: all).
        thresholds: a ``thresholds.json`` to judge the probabilities with.
        engine: ``"auto"`` (OpenVINO where installed), ``"openvino"`` or ``"keras"``,
            optionally with ``:float32`` or ``:bfloat16``
            (:mod:`hpa_keras.inference.engine`); default
            :func:`~hpa_keras.inference.engine.default_engine`.
    """
    ids, members, chosen = predict_runs_by_member(
        runs, data, images, ids_file, tta, batch_size, folds, thresholds, engine
    )
    return ids, np.mean(members, axis=0), chosen


def uncertainty_columns(probabilities, members=None) -> dict[str, np.ndarray]:
    """The uncertainty columns of a probability table, per image.

    ``entropy``: :func:`~hpa_keras.scoring.uncertainty.predictive_entropy` of
    ``probabilities`` (bits, the mean over classes of each class's binary entropy: 0 for
    certain answers, 1 when every class sits at 0.5). ``disagreement``, only with two or
    more ``members`` (``(M, N, C)``, e.g. from :func:`predict_runs_by_member`): the
    members' mutual information (BALD,
    :func:`~hpa_keras.scoring.uncertainty.ensemble_disagreement`), the part of the
    entropy that comes from the members disagreeing, in the same units.
    """
    columns = {"entropy": predictive_entropy(probabilities)}
    if members is not None and len(members) >= 2:
        columns["disagreement"] = ensemble_disagreement(members).mutual_information
    return columns


def predict_images(
    run,
    images,
    tta: int | None = None,
    batch_size: int = 16,
    allow_empty: bool = False,
    disagreement: bool = False,
    calibrated: bool = True,
    engine: str | None = None,
):
    """Labels and probabilities of image files, one DataFrame row per image.

    Args:
        run: a :class:`~hpa_keras.inference.runs.Run` from
            :func:`~hpa_keras.inference.runs.load_run`, or a run folder or cv
            folder (loaded here; a cv folder predicts as its fold ensemble
            with the out-of-fold thresholds).
        images: a folder of ``<Id>_<red|green|blue|yellow>`` files (PNG,
            TIFF, JPEG, HPA v18 colour JPEGs included), or a list of paths:
            channel files (``"test/x_green.png"``: the sample ``x``, its
            other channels beside it), samples without the channel suffix
            (``"test/x"``) or folders. See
            :func:`hpa_keras.data.images.index_images`.
        tta: dihedral views averaged per image (1, 2, 4, 8); default the
            views the run's thresholds were tuned with (``run.views``).
        batch_size: images per prediction batch.
        allow_empty: keep images with no class over its threshold without
            labels; by default such an image gets its most probable class, as
            ``hpa-keras predict`` does (every HPA image shows its protein).
        disagreement: for an ensemble (a cv folder's run), predict each fold
            model alone and add the ``disagreement`` column; the probabilities
            are then the mean of the folds' (equal to the ensemble model's up to
            float rounding), at the cost of reading the images once per fold.
        calibrated: the probability columns through the run's calibration maps
            (``run.calibration``, a cv folder's ``calibration.json``) when it has
            them; the labels are decided on the probabilities as predicted, which
            the thresholds were tuned on. ``False``: the columns as predicted.
        engine: as :func:`predict_runs`.

    Returns:
        A pandas DataFrame, one row per image (a folder's Ids sorted, a
        list's in the order given): ``Id``; ``labels``, the predicted class
        indices (a list, ascending); ``label_names``, their names; then one
        column per class, named as ``run.class_names``, of probabilities;
        then ``entropy`` and, with ``disagreement`` and an ensemble,
        ``disagreement`` (see :func:`uncertainty_columns`).
        ``frame.attrs["thresholds"]`` holds the thresholds used.

    Images are read and resized exactly as for ``hpa-keras predict --images``,
    so the probabilities as predicted (``calibrated=False``, or a run without
    calibration) equal :func:`predict_runs`'s for the same files.

    Example:
        >>> import hpa_keras
        >>> run = hpa_keras.load_run("runs/cv")              # or a single run
        >>> table = hpa_keras.predict_images(run, "test/")
        >>> table[["Id", "label_names"]].head()
        >>> table = hpa_keras.predict_images(run, ["test/x_green.png", "test/y"])
    """

    check_runs_and_input(run if isinstance(run, Run) else [run], images=images)
    shift = input_shift_warning([run.folder if isinstance(run, Run) else run], images=images)
    if shift:
        warnings.warn(shift, stacklevel=2)
    if not isinstance(run, Run):
        run = load_run(run)
    views = run.views if tta is None else tta
    check_prediction_settings([run], views)
    ids, index = index_images(images)
    members = None
    # An engine serves one model: a cv's folds then predict one by one, as with disagreement.
    by_member = disagreement or uses_openvino(parse_engine(default_engine(engine))[0])
    if by_member and len(run.members) >= 2:
        members = np.stack(
            [predict_run(member, ids, index=index, tta=views, batch_size=batch_size,
                         engine=engine)
             for member in run.members]
        )  # fmt: skip
        probabilities = np.mean(members, axis=0)
    else:
        probabilities = predict_run(
            run, ids, index=index, tta=views, batch_size=batch_size, engine=engine
        )
    labels = submission_labels(probabilities, run.thresholds, require_label=not allow_empty)
    if calibrated and run.calibration is not None:
        probabilities = run.calibration.apply(probabilities)
    frame = pd.DataFrame(probabilities, columns=list(run.class_names))
    frame.insert(0, "Id", ids)
    frame.insert(1, "labels", labels)
    frame.insert(2, "label_names", [[run.class_names[k] for k in row] for row in labels])
    for name, values in uncertainty_columns(
        probabilities, members if disagreement else None
    ).items():
        frame[name] = values
    frame.attrs["thresholds"] = np.asarray(run.thresholds)
    return frame
