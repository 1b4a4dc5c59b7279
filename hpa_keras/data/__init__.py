"""The data format and its I/O: label files, channel images, folds, TFRecords, the loader.

    >>> from hpa_keras.data import read_labels, make_tfrecords, load_dataset

Names are imported from their modules on first use, so reading a label
file does not import TensorFlow.
"""

from hpa_keras._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "LabelTable": "labels",
        "read_labels": "labels",
        "read_sample_submission": "labels",
        "read_id_file": "labels",
        "write_labels": "labels",
        "find_sample_files": "images",
        "index_image_folder": "images",
        "read_channel": "images",
        "read_sample": "images",
        "resize_square": "images",
        "stratified_folds": "splits",
        "fold_balance": "splits",
        "ConversionSettings": "conversion",
        "Source": "conversion",
        "make_tfrecords": "conversion",
        "grouped_stratified_folds": "splits",
        "read_manifest": "tfrecords",
        "read_shard": "tfrecords",
        "verify_tfrecords": "tfrecords",
        "channel_statistics": "tfrecords",
        "load_dataset": "pipeline",
        "dataset_ids": "pipeline",
        "dataset_labels": "pipeline",
        "resolve_channels": "pipeline",
        "load_cell_bags": "bags",
        "read_mask": "cells",
        "write_mask": "cells",
        "read_field_masks": "cells",
        "find_mask_files": "cells",
        "read_cell_labels": "cell_records",
    },
)
