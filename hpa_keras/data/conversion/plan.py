"""The plan: which samples go into which shard, in which order, written as ``plan.json``.

Every sample gets its group (fields of one antibody), labeled samples get
multilabel-stratified folds that keep each group in one fold, and each
(fold, source) is cut into shards. The plan is made once; a resumed run
reads it back (:func:`existing_plan`), so its shards come out the same.
"""

import collections
import json
from pathlib import Path

import numpy as np

from hpa_keras.classes import get_scheme
from hpa_keras.data.cells import find_mask_files, mask_ids, read_mask
from hpa_keras.data.conversion.sources import (
    DEFAULT_SHARD_SIZE_MB,
    GROUP_RULE,
    ConversionSettings,
    LoadedSource,
    check_sources,
    missing_of,
    problems_of,
    sample_group,
    unlabeled_scheme,
)
from hpa_keras.data.images import image_dimensions, read_sample
from hpa_keras.data.splits import grouped_stratified_folds, stratified_folds
from hpa_keras.data.tfrecords import FORMAT_VERSION, PLAN_FILE, UNLABELED_FOLD, encode_image
from hpa_keras.errors import InputError


def make_plan(
    sources: list[LoadedSource], arguments: dict, settings: ConversionSettings, workers: int
) -> dict:
    """The plan of a new conversion; ``arguments`` (:func:`~.sources.arguments_record`) holds
    each source's record, in the order of ``sources``."""
    scheme = check_sources(sources)
    labeled = scheme is not None
    problems = _problems(sources, settings)
    ids, labels_of, source_of, explicit_groups = _samples(sources)
    if settings.per_cell:
        _check_masks(ids, settings)
    grouping, fold_method = None, None
    if labeled:
        fold_of, grouping, fold_method = _folds(ids, labels_of, explicit_groups, scheme, settings)
        layout_groups = _fold_groups(sources, ids, fold_of, source_of, settings)
    else:
        layout_groups = [  # file or CSV order: a submission keeps it
            (UNLABELED_FOLD, source.name, [i for i in ids if source_of[i] == source.name])
            for source in sources
        ]
        layout_groups = [group for group in layout_groups if group[2]]

    index = {sample_id: source.index[sample_id] for source in sources for sample_id in source.index}
    image_size, bytes_per_sample = _pilot(ids, index, settings, workers)
    per_shard = _samples_per_shard(layout_groups, len(ids), bytes_per_sample, settings)
    return {
        "format_version": FORMAT_VERSION,
        "arguments": arguments,
        "split": "train" if labeled else "test",
        "labeled": labeled,
        # an unlabeled set takes the scheme its sample submission names (2021's
        # PredictionString), so a 2021 test set predicts and submits in 2021's classes
        "scheme": scheme or unlabeled_scheme(sources),
        "image_size": image_size,
        "fold_method": fold_method,
        "grouping": grouping,
        "labels": {sample_id: labels_of[sample_id] for sample_id in ids},
        "problems": [list(problem) for problem in problems],
        "sources": [
            {
                **record,
                "ignored": source.ignored,
                "missing": missing_of(source) if settings.missing == "ignore" else None,
                "labels_with_repeated_classes": source.table.repeated_classes,
            }
            for source, record in zip(sources, arguments["sources"], strict=True)
        ],
        "shards": _shards(layout_groups, per_shard, labeled, several=len(sources) > 1),
    }


def existing_plan(out: Path, arguments: dict) -> dict | None:
    """The plan of an interrupted run in ``out`` with the same arguments; None in a new folder."""
    plan_path = out / PLAN_FILE
    if not plan_path.exists():
        leftovers = sorted(path.name for path in out.glob("*.tfrecord"))
        if leftovers:
            raise InputError(
                f"{out}: holds shards ({leftovers[0]}, ...) but no {PLAN_FILE}; "
                "choose an empty folder"
            )
        return None
    plan = json.loads(plan_path.read_text())
    previous = plan.get("arguments", {})
    differences = [key for key in arguments if previous.get(key) != arguments[key]]
    if differences:
        raise InputError(
            f"{out}: holds records made with other arguments (differs in: "
            f"{', '.join(differences)}); use a new --out folder, or delete this one to start over"
        )
    return plan


def more(count: int) -> str:
    return f" (and {count - 1} more such problems)" if count > 1 else ""


def _problems(sources: list[LoadedSource], settings: ConversionSettings) -> list:
    """``(Id, file, reason)`` of the listed Ids without files that go to errors.csv; raises
    on the first in fail mode."""
    problems = [problem for source in sources for problem in problems_of(source)]
    if settings.missing == "ignore":
        return []
    if problems and settings.on_error == "fail":
        raise InputError(
            problems[0][2]
            + more(len(problems))
            + "; pass --missing ignore to convert the Ids that have files"
        )
    return problems


def _samples(sources: list[LoadedSource]):
    """The Ids that have files, in source and label-file order: ``(ids, labels of an Id,
    source of an Id, the label file's group of an Id where it has a group column)``."""
    ids, labels_of, source_of, explicit_groups = [], {}, {}, {}
    for source in sources:
        table = source.table
        for row, sample_id in enumerate(table.ids):
            if sample_id not in source.index:
                continue
            ids.append(sample_id)
            labels_of[sample_id] = list(table.labels[row])
            source_of[sample_id] = source.name
            if table.groups is not None:
                explicit_groups[sample_id] = table.groups[row]
    if not ids:
        listed = ", ".join(str(source.labels) for source in sources)
        raise InputError(f"none of the Ids in {listed} has image files")
    return ids, labels_of, source_of, explicit_groups


def _check_masks(ids: list, settings: ConversionSettings) -> None:
    """In fail mode, every field needs its cell mask."""
    with_masks = set(mask_ids(settings.masks))  # one listing, not a stat per name
    without = [field_id for field_id in ids if field_id not in with_masks]
    if without and settings.on_error == "fail":
        raise InputError(
            f"{Path(settings.masks) / (without[0] + '_cells.png')}: no cell mask for field "
            f"{without[0]}{more(len(without))}; run hpa-keras segment --images ... --out "
            f"{settings.masks}, or pass --on-error skip to leave such fields out"
        )


def _folds(ids, labels_of, explicit_groups, scheme: str, settings: ConversionSettings):
    """Each Id's fold, the grouping's summary and the fold method."""
    matrix = np.zeros((len(ids), get_scheme(scheme).num_classes), np.float32)
    for row, sample_id in enumerate(ids):
        matrix[row, labels_of[sample_id]] = 1
    groups = [sample_group(sample_id, explicit_groups.get(sample_id)) for sample_id in ids]
    sizes = collections.Counter(groups)
    grouping = {
        "rule": (
            f"the {settings.group_column!r} column of the label file"
            if explicit_groups
            else GROUP_RULE
        ),
        "num_groups": len(sizes),
        "largest_group": max(sizes.values()),
        "samples_in_shared_groups": sum(size for size in sizes.values() if size > 1),
    }
    if grouping["largest_group"] > 1:
        folds = grouped_stratified_folds(matrix, groups, settings.num_folds, settings.seed)
        fold_method = "grouped multilabel stratified"
    else:
        folds = stratified_folds(matrix, settings.num_folds, settings.seed)
        fold_method = "multilabel stratified"
    return dict(zip(ids, folds.tolist(), strict=True)), grouping, fold_method


def _fold_groups(sources, ids, fold_of: dict, source_of: dict, settings: ConversionSettings):
    """``(fold, source name, Ids)`` for each fold and source, the Ids in shuffled order."""
    rng = np.random.default_rng(settings.seed)
    # Within a shard the order is shuffled, so each shard mixes all kinds of samples.
    layout_groups = []
    for fold in range(settings.num_folds):
        for source in sources:
            members = [i for i in ids if fold_of[i] == fold and source_of[i] == source.name]
            if members:
                layout_groups.append((fold, source.name, list(rng.permutation(members))))
    return layout_groups


def _samples_per_shard(layout_groups, num_ids: int, bytes_per_sample: float, settings) -> list:
    """How many samples a shard of each layout group holds."""
    if settings.num_shards is not None:
        per_group = [
            max(1, round(settings.num_shards * len(members) / num_ids))
            for _, _, members in layout_groups
        ]
        return [
            int(np.ceil(len(members) / count))
            for (_, _, members), count in zip(layout_groups, per_group, strict=True)
        ]
    megabytes = settings.shard_size_mb or DEFAULT_SHARD_SIZE_MB
    per_shard = max(1, int(megabytes * 2**20 // bytes_per_sample))
    return [per_shard] * len(layout_groups)


def _shard_sizes(count: int, samples_per_shard: int) -> list[int]:
    shards = max(1, int(np.ceil(count / samples_per_shard)))
    return [len(part) for part in np.array_split(np.arange(count), shards)]


def _shards(layout_groups, samples_per_shard: list, labeled: bool, several: bool) -> list:
    """The shards' files, folds, sources and Ids, numbered across all groups."""
    layout = [
        (fold, name, members[start : start + size])
        for (fold, name, members), per_shard in zip(layout_groups, samples_per_shard, strict=True)
        for start, size in zip(
            np.cumsum([0] + _shard_sizes(len(members), per_shard)[:-1]),
            _shard_sizes(len(members), per_shard),
            strict=True,
        )
    ]
    split = "train" if labeled else "test"
    shards = []
    for number, (fold, name, members) in enumerate(layout):
        tag = (f"fold{fold}-" if labeled else "") + (f"{name}-" if several else "")
        shards.append(
            {
                "file": f"{split}-{tag}{number:05d}-of-{len(layout):05d}.tfrecord",
                "fold": int(fold),
                "source": name,
                "ids": list(members),
            }
        )
    return shards


def _pilot(ids, index, settings, workers):
    """The records' side, and their mean size in bytes, for the shard plan.

    Raw records have a known size, so only the side is needed: the settings'
    or, when fields keep their size, the first readable file's header. PNG
    records are sized by encoding the first two samples that read. Full-size
    fields are slow to decode, so nothing is decoded that the plan does not
    need (bad files are reported when their shard is written).
    """
    if settings.per_cell:
        return settings.cell_size, _cell_bytes_per_field(ids, settings)
    image_size = settings.image_size
    if image_size is None:
        for sample_id in ids[: max(8, workers)]:
            paths = [path for path in index[sample_id].values() if path is not None]
            try:
                height, width = image_dimensions(paths[0])
            except (InputError, IndexError):
                continue
            if height != width:
                raise InputError(
                    f"{paths[0]}: the field is not square ({width}x{height}); pass --image-size"
                )
            image_size = height
            break
    if settings.encoding == "raw" and image_size is not None:
        return int(image_size), float(image_size**2 * 4 * settings.bit_depth // 8)
    sizes, first_error = [], None
    for sample_id in ids[: max(8, workers)]:
        try:
            image = read_sample(
                index[sample_id], image_size, settings.sixteen_bit_rule, settings.bit_depth
            )
        except InputError as error:
            first_error = first_error or str(error)
            continue  # reported with the file and reason when its shard is written
        if image_size is None:
            image_size = image.shape[0]
        if image.shape[:2] == (image_size, image_size):
            sizes.append(sum(len(part) for part in encode_image(image, settings.encoding)))
        if len(sizes) == 2:
            break
    if image_size is None:
        tried = min(len(ids), max(8, workers))
        raise InputError(f"{first_error} (and none of the first {tried} samples could be read)")
    fallback = float(image_size**2 * 4 * settings.bit_depth // 8)
    return int(image_size), float(np.mean(sizes)) if sizes else fallback


def _cell_bytes_per_field(ids, settings) -> float:
    """The mean bytes of a field's cell records, from the cell counts of the first masks."""
    counts = []
    for field_id in ids[:8]:
        cell_path, _ = find_mask_files(settings.masks, field_id)
        if cell_path is None:
            continue
        try:
            counts.append(np.unique(read_mask(cell_path)).size - 1)
        except InputError:
            continue  # reported with the file and reason when its shard is written
    per_cell = settings.cell_size**2 * (4 * settings.bit_depth // 8 + 1)
    if settings.encoding == "png":
        per_cell /= 2
    return float(max(np.mean(counts) if counts else 20.0, 1.0) * per_cell)
