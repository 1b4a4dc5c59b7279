"""The manifest: the finished shards' statistics gathered into ``manifest.json``.

Each shard's progress file (:func:`~.shards.progress_path`) holds its
counts and channel sums; the manifest adds them up per fold and per source,
lists the samples left out in ``errors.csv``, and describes the record set
(its scheme, encoding, folds, channel mean and standard deviation).
"""

import collections
import csv
import io
import json
from pathlib import Path

import numpy as np

from hpa_keras import __version__
from hpa_keras.atomic import write_text_atomic
from hpa_keras.classes import CHANNELS, get_scheme
from hpa_keras.data.conversion.shards import progress_path
from hpa_keras.data.conversion.sources import ConversionSettings
from hpa_keras.data.manifest import FORMAT_VERSION, Manifest, channel_statistics

ERRORS_FILE = "errors.csv"


def assemble_manifest(out: Path, plan: dict, settings: ConversionSettings) -> Manifest:
    """The manifest of the finished record set in ``out``; writes (or removes) errors.csv."""
    shards = [json.loads(progress_path(out, shard).read_text()) for shard in plan["shards"]]
    skipped = list(plan["problems"])
    for shard in shards:
        skipped.extend(shard["skipped"])
    errors_file = _write_errors(out, skipped)
    scheme = get_scheme(plan["scheme"])
    folds = _fold_summaries(shards, scheme.num_classes)
    mean, std = channel_statistics(folds)
    sources = _source_summaries(plan, shards)
    ignored = {
        "num_ids": sum(source["ignored"]["num_ids"] for source in sources),
        "num_files": sum(source["ignored"]["num_files"] for source in sources),
        "first_ids": [i for source in sources for i in source["ignored"]["first_ids"]][:5],
    }
    return Manifest(
        format_version=FORMAT_VERSION,
        created_by=f"hpa-keras {__version__}",
        kind="cells" if settings.per_cell else "fields",
        cells=_cell_summary(shards, settings) if settings.per_cell else None,
        source={key: sources[0][key] for key in ("images", "labels", "labels_sha256")},
        sources=sources,
        split=plan["split"],
        labeled=plan["labeled"],
        scheme=scheme.name,
        class_names=list(scheme.class_names),
        num_classes=scheme.num_classes,
        image_size=plan["image_size"],
        channels=list(CHANNELS),
        encoding=settings.encoding,
        bit_depth=settings.bit_depth,
        sixteen_bit_rule=settings.sixteen_bit_rule,
        num_folds=settings.num_folds if plan["labeled"] else 0,
        fold_method=plan["fold_method"],
        grouping=plan["grouping"],
        seed=settings.seed,
        num_records=sum(shard["num_records"] for shard in shards),
        num_skipped=len(skipped),
        errors_file=errors_file,
        ignored=ignored,
        class_counts=np.sum([fold["class_counts"] for fold in folds], axis=0).tolist(),
        channel_mean=mean,
        channel_std=std,
        folds=folds,
        shards=[
            {
                **{
                    key: shard[key]
                    for key in ("file", "fold", "source", "num_records", "bytes", "sha256")
                },
                **({"cells_per_field": shard["cells_per_field"]} if settings.per_cell else {}),
            }
            for shard in shards
        ],
    )


def _write_errors(out: Path, skipped: list) -> str | None:
    """errors.csv listing the samples left out (its name), or none (None)."""
    if not skipped:
        (out / ERRORS_FILE).unlink(missing_ok=True)
        return None
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["Id", "file", "reason"])
    writer.writerows(skipped)
    write_text_atomic(out / ERRORS_FILE, buffer.getvalue())
    return ERRORS_FILE


def _fold_summaries(shards: list, num_classes: int) -> list:
    """Records, shards, class counts and channel sums of each fold, and of its sources."""
    folds = []
    for fold in sorted({shard["fold"] for shard in shards}):
        members = [shard for shard in shards if shard["fold"] == fold]
        by_source = {}
        for shard in members:
            entry = by_source.setdefault(
                shard["source"], {"num_records": 0, "class_counts": [0] * num_classes}
            )
            entry["num_records"] += shard["num_records"]
            entry["class_counts"] = np.add(entry["class_counts"], shard["class_counts"]).tolist()
        folds.append(
            {
                "fold": fold,
                "num_records": sum(shard["num_records"] for shard in members),
                "shards": [shard["file"] for shard in members],
                "class_counts": np.sum(
                    [shard["class_counts"] for shard in members], axis=0
                ).tolist(),
                "channel_sum": np.sum([shard["channel_sum"] for shard in members], axis=0).tolist(),
                "channel_square_sum": np.sum(
                    [shard["channel_square_sum"] for shard in members], axis=0
                ).tolist(),
                "pixels": sum(shard["pixels"] for shard in members),
                "sources": by_source,
            }
        )
    return folds


def _source_summaries(plan: dict, shards: list) -> list:
    """The plan's sources with their records, file formats, sizes and bit depths."""
    sources = []
    for source in plan["sources"]:
        members = [shard for shard in shards if shard["source"] == source["name"]]
        sources.append(
            {
                **source,
                "num_records": sum(shard["num_records"] for shard in members),
                "formats": _merged_counts(members, "formats"),
                "original_sizes": _merged_counts(members, "original_sizes"),
                "file_bit_depths": _merged_counts(members, "file_bit_depths"),
            }
        )
    return sources


def _merged_counts(entries, key) -> dict:
    total = collections.Counter()
    for entry in entries:
        total.update(entry[key])
    return dict(sorted(total.items()))


def _cell_summary(shards: list, settings: ConversionSettings) -> dict:
    """What a cell record set holds: fields, cells, flags, and how the crops were cut."""
    totals = collections.Counter()
    for shard in shards:
        totals.update(shard.get("cell_totals", {}))
    return {
        "masks": str(Path(settings.masks).resolve()),
        "cell_labels": str(Path(settings.cell_labels).resolve()) if settings.cell_labels else None,
        "cell_size": settings.cell_size,
        "margin": settings.cell_margin,
        "context": settings.cell_context,
        "num_fields": totals["fields"],
        "num_cells": totals["cells"],
        "num_edge": totals["edge"],
        "num_small": totals["small"],
        "num_with_cell_labels": totals["with_cell_labels"],
        "cell_class_counts": np.sum(
            [shard.get("cell_class_counts", [0]) for shard in shards], axis=0
        ).tolist(),
        "small_rule": "area under 0.1 of the field's median cell area",
        "edge_rule": "the cell's box touches the field's border",
    }
