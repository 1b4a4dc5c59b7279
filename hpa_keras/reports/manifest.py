"""A record set's manifest for people: what ``hpa-keras make-tfrecords`` prints when it
has written the records."""

from hpa_keras.data.manifest import Manifest


def manifest_summary(manifest: Manifest, out) -> str:
    """The terminal summary of a record set written to ``out``: records, size, shards and
    megabytes; the cells of cell records; each source's records, formats and field sizes,
    with the Ids left out or ignored; skipped inputs; and the folds' balance.
    """
    size = manifest.image_size
    megabytes = manifest.num_bytes / 2**20
    lines = [
        f"wrote {manifest.num_records} {manifest.split} records ({size}x{size}, "
        f"{manifest.bit_depth}-bit, {manifest.encoding}, {manifest.scheme} labels) in "
        f"{len(manifest.shards)} shards, {megabytes:.1f} MB, to {out}"
    ]
    cells = manifest.cells
    if cells:
        lines.append(
            f"  one record per cell: {cells['num_cells']} cells of {cells['num_fields']} fields "
            f"({cells['num_edge']} cut by the field's edge, {cells['num_small']} small: flagged, "
            f"kept; {cells['num_with_cell_labels']} with their own labels); folds are drawn per "
            "field, so a field's cells share a fold"
        )
    for source in manifest.sources:
        lines.extend(_source_lines(source))
    if manifest.num_skipped:
        lines.append(f"skipped {manifest.num_skipped} bad inputs; see {out}/{manifest.errors_file}")
    balance = manifest.summarize_folds()
    if balance:
        grouping = manifest.grouping
        names = manifest.class_names
        lines.append(
            f"{len(balance['fold_sizes'])} {manifest.fold_method} folds of "
            f"{balance['fold_sizes']} records ({grouping['num_groups']} groups, the largest of "
            f"{grouping['largest_group']}); largest per-class deviation from the overall "
            f"frequency: {balance['max_abs_deviation_points']:.2f} points "
            f"({100 * balance['max_relative_deviation']:.0f}% relative, "
            f"{names[balance['worst_class']]})"
        )
    return "\n".join(lines)


def _source_lines(source: dict) -> list[str]:
    """One source's line, and a line each for repeated classes, missing and ignored Ids."""
    fields = ", ".join(f"{count} at {size}" for size, count in source["original_sizes"].items())
    formats = ", ".join(source["formats"]) or "none"
    lines = [f"  {source['name']}: {source['num_records']} records ({formats}; {fields})"]
    if source.get("labels_with_repeated_classes"):
        lines.append(
            f"    {source['labels_with_repeated_classes']} label sets in {source['labels']} "
            "name a class twice (merged 2018 classes); each class is counted once"
        )
    missing = source.get("missing") or {}
    if missing.get("num_ids"):
        lines.append(
            f"    {missing['num_ids']} Ids of {source['labels']} have no image files and were "
            f"left out (--missing ignore; first: {missing['first_ids'][0]})"
        )
    ignored = source["ignored"]
    if ignored.get("num_files"):
        lines.append(
            f"    ignored {ignored['num_files']} image files of {ignored['num_ids']} Ids that "
            f"{source['labels']} does not list (first: {ignored['first_ids'][0]})"
        )
    return lines
