"""The data commands: make-demo-data, show, segment, make-tfrecords and verify.

Their library modules are imported inside the commands: the conversion, segmentation and
record modules load OpenCV, pandas or (verify) TensorFlow, which ``--help`` skips."""

import sys

from hpa_keras.classes import get_scheme
from hpa_keras.cli.common import EXIT_VERIFY_FAILED, add_worker_arguments
from hpa_keras.errors import InputError
from hpa_keras.settings import add_setting_arguments, given_settings
from hpa_keras.tensorflow_setup import import_tensorflow_quietly


def add_make_demo_data(commands) -> None:
    from hpa_keras.synthetic.generator import DemoDataSettings

    make = commands.add_parser(
        "make-demo-data",
        help="write a synthetic HPA-like data set in the Kaggle layout",
        description="Write OUT/train.csv, OUT/train/<Id>_<channel>.png, OUT/test/, "
        "OUT/sample_submission.csv and OUT/test_labels.csv. The same seed gives the same bytes.",
    )
    make.add_argument(
        "out", help="output folder (new or empty, or an earlier synthetic set with --overwrite)"
    )
    add_setting_arguments(make, DemoDataSettings, positive=("num_samples", "image_size"))
    make.add_argument(
        "--overwrite", action="store_true", help="replace an earlier synthetic data set in OUT"
    )
    add_worker_arguments(make)
    make.set_defaults(handler=run_make_demo_data)


def run_make_demo_data(arguments) -> None:
    from hpa_keras.synthetic.generator import DemoDataSettings, make_demo_data

    settings = DemoDataSettings(**given_settings(arguments, DemoDataSettings))
    summary = make_demo_data(
        arguments.out,
        settings,
        workers=arguments.workers,
        overwrite=arguments.overwrite,
        progress=not arguments.quiet,
    )
    size = f"{settings.image_size}x{settings.image_size}, {settings.bit_depth}-bit"
    print(
        f"wrote {summary['num_train']} training and {summary['num_test']} test samples "
        f"({size}) to {arguments.out}"
    )


# ------------------------------------------------------------------ show


def add_show(commands) -> None:
    show = commands.add_parser(
        "show",
        help="draw one sample: composite and its four channels",
        description="Draw a sample's colour composite beside its four channels, titled with "
        "its classes. DIR is a data set root (with train/ and test/) or a folder of images.",
    )
    show.add_argument("dir", help="data set root or image folder")
    show.add_argument("--id", required=True, help="sample Id")
    show.add_argument("--out", default="sample.png", help="PNG to write (default: sample.png)")
    show.add_argument(
        "--labels",
        default=None,
        help="CSV with Id,Target (default: DIR/train.csv or DIR/test_labels.csv)",
    )
    show.add_argument(
        "--masks",
        default=None,
        metavar="MASKS",
        help="folder of cell masks (hpa-keras segment's, the HPA's, Cellpose's): outline and "
        "number the field's cells",
    )
    show.add_argument(
        "--cell-labels",
        default=None,
        metavar="CSV",
        help="with --masks: ID,cell,Label (a cells.csv, or predict's per-cell table) to write "
        "each cell's classes under its number",
    )
    show.set_defaults(handler=run_show)


def run_show(arguments) -> None:
    from hpa_keras.reports.samples import write_sample_figure

    found = write_sample_figure(
        arguments.dir,
        arguments.id,
        arguments.out,
        arguments.labels,
        arguments.masks,
        arguments.cell_labels,
    )
    missing = [name for name, path in found["files"].items() if path is None]
    if missing:
        print(
            f"note: no {', '.join(missing)} channel for Id {arguments.id}; shown as missing",
            file=sys.stderr,
        )
    labels, names = found["labels"], get_scheme(found["scheme"]).class_names
    described = ", ".join(names[index] for index in labels) if labels else "no labels found"
    if found.get("num_cells") is not None:
        described += f"; {found['num_cells']} cells outlined"
    print(f"wrote {arguments.out} ({described})")


# ------------------------------------------------------------------ segment


def add_segment(commands) -> None:
    from hpa_keras.cells.segment import SegmentationSettings

    segment = commands.add_parser(
        "segment",
        help="cell and nucleus masks of every field of an image folder",
        description="Segment every field of a folder of <Id>_<channel> images into "
        "<Id>_cells.png and <Id>_nuclei.png in MASKS (0 background, 1..N one cell each, a "
        "nucleus numbered as its cell; 16-bit from 255 cells on): nuclei from the blue "
        "channel, cells grown from them over the red and yellow channels by a seeded "
        "watershed. Fields that already have masks in MASKS are kept, so a rerun finishes an "
        "interrupted run. Lengths are in pixels of a field shrunk to 512 px.",
    )
    segment.add_argument("--images", required=True, metavar="DIR", help="folder of fields")
    segment.add_argument("--out", required=True, metavar="MASKS", help="folder for the masks")
    segment.add_argument(
        "--overwrite", action="store_true", help="segment again fields that have masks"
    )
    segment.add_argument(
        "--on-error",
        choices=("fail", "skip"),
        default="fail",
        help="fail: stop at an unreadable field; skip: list it in segmentation.json and go on "
        "(default: fail)",
    )
    add_setting_arguments(segment, SegmentationSettings, positive=("working_size",))
    add_worker_arguments(segment)
    segment.set_defaults(handler=run_segment)


def run_segment(arguments) -> None:
    from hpa_keras.cells.segment import SUMMARY_FILE, SegmentationSettings, segment_folder

    settings = SegmentationSettings(**given_settings(arguments, SegmentationSettings))
    summary = segment_folder(
        arguments.images,
        arguments.out,
        settings,
        workers=arguments.workers,
        overwrite=arguments.overwrite,
        on_error=arguments.on_error,
        progress=not arguments.quiet,
    )
    counts = [field["cells"] for field in summary["fields"]]
    spread = f", {min(counts)}-{max(counts)} a field" if counts else ""
    kept = f" ({summary['kept']} had masks and were kept)" if summary["kept"] else ""
    print(
        f"segmented {summary['segmented']} of {summary['num_fields']} fields in "
        f"{summary['seconds']:.1f} s{kept}; {arguments.out} holds masks of {len(counts)} "
        f"fields, {sum(counts)} cells{spread} ({SUMMARY_FILE})"
    )
    if summary["no_cells"]:
        print(
            f"no cells found in {len(summary['no_cells'])} fields (no mask written; first: "
            f"{summary['no_cells'][0]})"
        )
    if summary["errors"]:
        print(
            f"skipped {len(summary['errors'])} unreadable fields; first: "
            f"{summary['errors'][0]['error']}"
        )


# ------------------------------------------------------------------ make-tfrecords


def add_make_tfrecords(commands) -> None:
    from hpa_keras.data.conversion import ConversionSettings

    records = commands.add_parser(
        "make-tfrecords",
        help="convert channel images + train.csv into sharded TFRecords with folds",
        description="Convert folders of <Id>_<channel> images (PNG, TIFF or JPEG; 8- or "
        "16-bit grayscale, or HPA v18 colour files) and their labels into sharded TFRecords "
        "with multilabel-stratified folds that keep each antibody's fields together, and a "
        "manifest. Repeat --images and --labels in pairs to put several sources (the Kaggle "
        "training set and the v18 images) into one record set. Images of Ids a label file "
        "does not list are ignored (and counted). Interrupted, run it again with the same "
        "arguments to finish.",
    )
    records.add_argument(
        "--images",
        required=True,
        action="append",
        metavar="DIR",
        help="folder of <Id>_<channel> images; repeat for several sources",
    )
    records.add_argument(
        "--labels",
        action="append",
        metavar="CSV",
        help="the folder's train.csv (2018 Id,Target or 2021 ID,Label; labeled, with folds) "
        "or sample_submission.csv (unlabeled); one per --images, in the same order; "
        "default: unlabeled, every Id of the folder",
    )
    records.add_argument(
        "--source-name",
        action="append",
        metavar="NAME",
        help="name of each source, in --images order (default: kaggle for Kaggle Ids, "
        "hpa-v18 for v18 Ids, else the folder's name)",
    )
    records.add_argument("--out", default="tfrecords", help="output folder (default: tfrecords)")
    add_setting_arguments(records, ConversionSettings, positive=("image_size", "num_shards"))
    add_worker_arguments(records)
    records.set_defaults(handler=run_make_tfrecords)


def _sources(arguments) -> list:
    """The --images/--labels/--source-name pairs as conversion sources."""
    from hpa_keras.data.conversion import Source

    images, labels, names = arguments.images, arguments.labels, arguments.source_name
    if labels is not None and len(labels) != len(images):
        raise InputError(
            f"{len(images)} --images but {len(labels)} --labels: give one label file per image "
            "folder, in the same order (or none, for unlabeled folders)"
        )
    if names is not None and len(names) != len(images):
        raise InputError(f"{len(images)} --images but {len(names)} --source-name")
    return [
        Source(folder, labels[position] if labels else None, names[position] if names else None)
        for position, folder in enumerate(images)
    ]


def run_make_tfrecords(arguments) -> None:
    # TensorFlow is imported by the writing phase, after the labels and files are checked.
    from hpa_keras.data.conversion import ConversionSettings, make_tfrecords
    from hpa_keras.reports.manifest import manifest_summary

    settings = ConversionSettings(**given_settings(arguments, ConversionSettings))
    manifest = make_tfrecords(
        out=arguments.out,
        settings=settings,
        workers=arguments.workers,
        progress=not arguments.quiet,
        sources=_sources(arguments),
    )
    print(manifest_summary(manifest, arguments.out))


# ------------------------------------------------------------------ verify


def add_verify(commands) -> None:
    verify = commands.add_parser(
        "verify",
        help="re-read every TFRecord shard against its manifest",
        description="Check every shard's sha256 and record count, that every record parses "
        "and decodes, Ids are unique and folds are as in the manifest. Exit status 1 on any "
        "mismatch, naming the shard.",
    )
    verify.add_argument("dir", help="make-tfrecords output folder")
    verify.add_argument("--quiet", action="store_true", help="no progress bar")
    verify.set_defaults(handler=run_verify)


def run_verify(arguments) -> int:
    import_tensorflow_quietly()
    from hpa_keras.data.tfrecords import read_manifest, verify_tfrecords

    problems = verify_tfrecords(arguments.dir, progress=not arguments.quiet)
    if problems:
        for problem in problems:
            print(f"hpa-keras verify: {problem}", file=sys.stderr)
        print(f"hpa-keras verify: {len(problems)} problems in {arguments.dir}", file=sys.stderr)
        return EXIT_VERIFY_FAILED
    manifest = read_manifest(arguments.dir)
    print(
        f"ok: {len(manifest.shards)} shards, {manifest.num_records} records, "
        "checksums, counts, Ids, folds and images all as in the manifest"
    )
    return 0
