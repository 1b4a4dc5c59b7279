"""``make_tfrecords``: image folders and label files to one sharded, resumable record set.

A conversion reads one or more **sources**, each a folder of
``<Id>_<channel>`` images with its label file (the Kaggle training set, the
HPA v18 external images, ...), and writes one record set, in three phases,
one module each:

1. Settings and sources (:mod:`.sources`): read the label files, index the
   folders, check that Ids are unique across sources.
2. The plan (:mod:`.plan`): give every sample its group (fields of one
   antibody), assign multilabel-stratified folds that keep each group in
   one fold, cut each (fold, source) into shards, write ``plan.json``.
3. Encoding and writing shards (:mod:`.shards`): write each shard to a
   temporary name, rename it when complete, then record its statistics in
   ``.progress/``; then the manifest (:mod:`.manifest`) gathers those into
   ``manifest.json``.

A run killed anywhere and started again with the same arguments finds the
plan, skips the shards it already finished and writes the rest; encoding is
deterministic, so the result is byte for byte that of an uninterrupted run.

Workers (:mod:`hpa_keras.parallel`) read, check, resize and encode samples;
only the main process imports TensorFlow, to serialize and write records.
Shards never mix folds or sources, so a fold (or one source of a fold, for
``fit --validate-source``) is read as whole files.

Why four PNGs rather than one 4-channel PNG: a Kaggle channel file that is
already a grayscale PNG of the right size and depth is stored byte for
byte, so conversion costs one decode (for checking and statistics) and no
encode, records are exactly the source files, and they are smaller than one
re-encoded 4-channel PNG (the manual's TFRecords page has the sizes). A
loader can also decode only the channels it uses.
"""

import dataclasses
import json
import os
import tempfile
from pathlib import Path

from hpa_keras import storage
from hpa_keras.atomic import removed_on_bad_input, write_text_atomic
from hpa_keras.data.conversion.manifest import ERRORS_FILE, assemble_manifest
from hpa_keras.data.conversion.plan import existing_plan, make_plan
from hpa_keras.data.conversion.shards import (
    PROGRESS_FOLDER,
    remove_stale_temporaries,
    write_shards,
)
from hpa_keras.data.conversion.sources import (
    DEFAULT_SHARD_SIZE_MB,
    GROUP_RULE,
    ConversionSettings,
    Source,
    arguments_record,
    load_source,
    sample_group,
    source_record,
)
from hpa_keras.data.manifest import Manifest
from hpa_keras.data.tfrecords import MANIFEST_FILE, PLAN_FILE
from hpa_keras.errors import InputError
from hpa_keras.parallel import default_workers

__all__ = [
    "DEFAULT_SHARD_SIZE_MB",
    "ERRORS_FILE",
    "GROUP_RULE",
    "PROGRESS_FOLDER",
    "ConversionSettings",
    "Source",
    "make_tfrecords",
    "sample_group",
]


def make_tfrecords(
    images: str | os.PathLike | None = None,
    out: str | os.PathLike = "tfrecords",
    labels: str | os.PathLike | None = None,
    settings: ConversionSettings = ConversionSettings(),  # noqa: B008 (frozen, so shareable)
    workers: int | None = None,
    progress: bool = True,
    sources: list[Source] | None = None,
) -> Manifest:
    """Convert image folders (and their labels) into sharded TFRecords; returns the manifest.

    Args:
        images, labels: one source: an image folder and its ``train.csv``
            (labeled records with folds), a ``sample_submission.csv`` or
            ``None`` (unlabeled records); or
        sources: several :class:`Source` folders into one record set (for
            example the Kaggle training set and the HPA v18 images).
        out: the output folder, or a URL (``gs://...``): written in a local
            folder, then uploaded file by file, the manifest last
            (:mod:`hpa_keras.storage`).
        settings: size, encoding, shards, folds, bit depth, grouping.
        workers: processes that read and encode (default: all cores).

    Started again with the same arguments after an interruption, it finishes
    the missing shards; with different arguments on the same ``out`` it
    refuses. Stopped by bad input (InputError), it removes what it wrote: a
    new ``out`` entirely (:func:`hpa_keras.atomic.removed_on_bad_input`).
    """
    settings.validate()
    if (images is None) == (sources is None):
        raise InputError("give an image folder, or a list of sources, not both")
    if storage.is_url(out):
        return storage.work_at_url(
            out,
            lambda staged: make_tfrecords(
                images, staged.local, labels, settings, workers, progress, sources
            ),
        )
    sources = sources if sources is not None else [Source(images, labels)]
    if any(source.labels is not None and storage.is_url(source.labels) for source in sources):
        # Label files are small: read a local copy (the digest and error messages name it
        # by its URL's file name).
        with tempfile.TemporaryDirectory(prefix="hpa-keras-labels-") as folder:
            local = []
            for index, source in enumerate(sources):
                if source.labels is not None and storage.is_url(source.labels):
                    copy_folder = Path(folder) / str(index)
                    copy_folder.mkdir()
                    copy = storage.download_file(os.fspath(source.labels), copy_folder)
                    source = dataclasses.replace(source, labels=copy)
                local.append(source)
            return make_tfrecords(None, out, None, settings, workers, progress, local)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    with removed_on_bad_input(out):
        return _convert(sources, out, settings, max(1, workers or default_workers()), progress)


def _convert(sources, out: Path, settings: ConversionSettings, workers: int, progress) -> Manifest:
    """make_tfrecords into the local folder ``out``."""
    loaded = [load_source(source, settings.group_column) for source in sources]
    out.mkdir(parents=True, exist_ok=True)

    arguments = arguments_record([source_record(source) for source in loaded], settings)
    plan = existing_plan(out, arguments)
    if plan is None:
        plan = make_plan(loaded, arguments, settings, workers)
        write_text_atomic(out / PLAN_FILE, json.dumps(plan) + "\n")
    (out / PROGRESS_FOLDER).mkdir(exist_ok=True)
    remove_stale_temporaries(out)

    index = {}  # indexed again on resume: picks up files fixed since
    for source in loaded:
        index.update(source.index)
    write_shards(out, plan, index, settings, workers, progress)

    manifest = assemble_manifest(out, plan, settings)
    write_text_atomic(out / MANIFEST_FILE, manifest.to_json())
    return manifest
