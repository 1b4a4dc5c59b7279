"""``hpa-keras annotate`` (a plate of the user's own fields, cell by cell) and
``hpa-keras merge-annotations`` (the shards of one plate joined)."""

from hpa_keras.cli.common import add_worker_arguments
from hpa_keras.settings import add_setting_arguments, given_settings


def add_annotate(commands) -> None:
    from hpa_keras.cells.segment import SegmentationSettings
    from hpa_keras.data.quality import QualitySettings
    from hpa_keras.workflows.annotate import AnnotationSettings

    annotate = commands.add_parser(
        "annotate",
        help="your own fields cell by cell: quality control, cells, classes, embeddings, "
        "a table, AnnData and a viewer",
        description="Annotate every field of IMAGES (a folder of OME-TIFF / OME-Zarr files "
        "or <Id>_<stain> files, or one OME file) with RUN: quality flags per field, cells "
        "segmented (or --masks), each cell's classes, probabilities and embedding. Writes "
        "cells.csv, fields.csv, annotation.h5ad, umap.png, masks/ and a viewer (index.html) "
        "into OUT. A rerun with the same settings continues where the last one stopped.",
    )
    annotate.add_argument(
        "--images", required=True, metavar="IMAGES", help="a folder of fields, or one OME file"
    )
    annotate.add_argument(
        "--run", required=True, metavar="RUN", help="a run or cv folder, of cells or of fields"
    )
    annotate.add_argument("--out", required=True, metavar="OUT", help="the annotation folder")
    annotate.add_argument(
        "--image-run",
        metavar="RUN",
        help="a field run whose prediction of each field is mixed into a cell run's cells",
    )
    annotate.add_argument(
        "--shard",
        metavar="K/N",
        help="annotate every N-th field from the K-th (1-based), for N machines; join the "
        "shards with hpa-keras merge-annotations",
    )
    annotate.add_argument(
        "--on-error",
        choices=("fail", "skip"),
        default="fail",
        help="fail: stop at an unreadable field; skip: record it in fields.csv and go on "
        "(default: fail)",
    )
    annotate.add_argument(
        "--overwrite", action="store_true", help="start again in an OUT annotated before"
    )
    add_setting_arguments(annotate, AnnotationSettings, group_title="reading and outputs")
    add_setting_arguments(annotate, QualitySettings, group_title="quality control")
    add_setting_arguments(
        annotate, SegmentationSettings, group_title="segmentation", positive=("working_size",)
    )
    add_worker_arguments(annotate)
    annotate.set_defaults(handler=run_annotate)


def add_merge_annotations(commands) -> None:
    merge = commands.add_parser(
        "merge-annotations",
        help="join the folders of annotate --shard K/N into one annotation",
        description="Join the shard folders of one plate (annotate --shard 1/N ... N/N, all "
        "finished) into OUT: one table, one AnnData file, one UMAP and one viewer over every "
        "field.",
    )
    merge.add_argument("shards", nargs="+", metavar="SHARD", help="the shards' folders")
    merge.add_argument("--out", required=True, metavar="OUT", help="the joined annotation")
    merge.set_defaults(handler=run_merge_annotations)


def run_annotate(arguments) -> None:
    from hpa_keras.cells.segment import SegmentationSettings
    from hpa_keras.data.quality import QualitySettings
    from hpa_keras.workflows.annotate import AnnotationSettings, annotate, parse_shard

    summary = annotate(
        arguments.images,
        arguments.run,
        arguments.out,
        image_run=arguments.image_run,
        settings=AnnotationSettings(**given_settings(arguments, AnnotationSettings)),
        quality=QualitySettings(**given_settings(arguments, QualitySettings)),
        segmentation=SegmentationSettings(**given_settings(arguments, SegmentationSettings)),
        shard=parse_shard(arguments.shard),
        workers=arguments.workers or 1,
        on_error=arguments.on_error,
        overwrite=arguments.overwrite,
        progress=not arguments.quiet,
    )
    _report(arguments.out, summary)


def run_merge_annotations(arguments) -> None:
    from hpa_keras.workflows.annotate import merge_annotations

    summary = merge_annotations(arguments.shards, arguments.out)
    _report(arguments.out, summary)


def _report(out, summary: dict) -> None:
    kept = f" ({summary['kept']} were done before and kept)" if summary.get("kept") else ""
    shard = f" (shard {summary['shard'][0]}/{summary['shard'][1]})" if summary.get("shard") else ""
    print(
        f"annotated {summary['fields']} fields{shard}{kept}: {summary.get('cells', 0)} cells; "
        f"{summary.get('fields_flagged', 0)} fields with a quality flag"
    )
    if summary.get("errors"):
        print(f"skipped {len(summary['errors'])} unreadable fields; first: {summary['errors'][0]}")
    if "outputs" in summary:
        umap = "" if summary.get("umap") else " (too few cells for a UMAP)"
        print(f"wrote {', '.join(summary['outputs'])}{umap}; open {out}/index.html in a browser")
