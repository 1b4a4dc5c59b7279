"""annotate's viewer: static pages that open from the annotation folder in any browser, with
no server and nothing fetched from the network.

* ``index.html`` (and ``index-2.html``, ... past FIELDS_PER_PAGE fields): the fields with
  thumbnails, cells, quality flags and the labels their cells sum to;
* ``fields/<field>.html``: the field's composite with every cell outlined; pointing at a
  cell shows its classes and probabilities, clicking keeps it shown;
* ``gallery.html``: the most confident cells of each class (at most GALLERY_CELLS), each
  cut from its field's picture by the browser (no image files of its own);
* ``umap.html``: the UMAP of the cells' embeddings (at most the UMAP's sample), pointing
  at a dot shows the cell, clicking opens its field.

Every page's data is inside the page (a JSON script element), so pages stay bounded by
what they show: a field's cells, a gallery's tiles, the map's sample.
"""

import html
import json
from pathlib import Path
from urllib.parse import quote

from hpa_keras.atomic import write_text_atomic
from hpa_keras.reports.figures import plt, save_figure

FIELDS_PER_PAGE = 200
GALLERY_CELLS = 12  # per class
TILE = 112  # gallery tile side, CSS pixels
MIN_DISPLAY_SIDE = 640  # a field page shows a smaller picture enlarged to this
PICTURES = "pictures"

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.2em; background: #fafafa; color: #222; }
a { color: #0b5cad; } table { border-collapse: collapse; }
td, th { padding: 4px 8px; border-bottom: 1px solid #ddd; text-align: left; vertical-align: top; }
.flag { display: inline-block; background: #c62828; color: white; border-radius: 3px;
        padding: 0 4px; margin: 1px; font-size: 0.8em; }
.ok { color: #2e7d32; } nav a { margin-right: 1em; }
#view { display: flex; gap: 1.5em; align-items: flex-start; }
#stage { position: relative; flex: 0 1 auto; } #stage img { display: block; max-width: 100%;
  height: auto; }
#panel { flex: 0 0 20em; }
#stage svg { position: absolute; left: 0; top: 0; width: 100%; height: 100%; }
polygon { fill: rgba(255,255,255,0.04); stroke: white; stroke-width: 1.2; cursor: pointer;
  vector-effect: non-scaling-stroke; }
polygon.labelled { stroke: #ffd54f; }
polygon:hover { stroke: #00e5ff; } polygon.active { fill: rgba(255,255,255,0.25);
  stroke: #00e5ff; stroke-width: 2.5; }
#panel { background: white; border: 1px solid #ddd; padding: 0.8em; }
.bar { background: #90caf9; height: 0.7em; display: inline-block; }
tr.chosen td { font-weight: 600; } tr.chosen .bar { background: #1e88e5; }
.tile { display: inline-block; margin: 4px; text-align: center; font-size: 0.75em; }
.crop { width: 112px; height: 112px; background-repeat: no-repeat; border: 1px solid #999;
        background-color: #000; }
circle { cursor: pointer; } #tip { position: fixed; background: white; border: 1px solid #999;
  padding: 4px 6px; font-size: 0.85em; pointer-events: none; display: none; }
"""


def _page(title: str, body: str, depth: int = 0) -> str:
    up = "../" * depth
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        f'<nav><a href="{up}index.html">fields</a><a href="{up}gallery.html">gallery</a>'
        f'<a href="{up}umap.html">UMAP</a></nav><h1>{html.escape(title)}</h1>{body}</body></html>\n'
    )


def _flags(text_or_list) -> str:
    flags = text_or_list.split(";") if isinstance(text_or_list, str) else list(text_or_list)
    flags = [flag for flag in flags if flag]
    if not flags:
        return '<span class="ok">none</span>'
    return "".join(f'<span class="flag">{html.escape(flag)}</span>' for flag in flags)


def _data(element_id: str, value) -> str:
    text = json.dumps(value, separators=(",", ":")).replace("</", "<\\/")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def field_page_name(field_id: str) -> str:
    """The field page's path inside the annotation folder."""
    return f"fields/{field_id}.html"


def _link(path: str) -> str:
    """A relative path as an attribute's URL: each name URL-quoted (a field Id may hold
    ``#``, ``%`` or spaces), then HTML-escaped."""
    return html.escape(quote(path))


FIELD_SCRIPT = """
<script>
const cells = JSON.parse(document.getElementById('cells').textContent);
const panel = document.getElementById('panel');
let pinned = null;
function show(number) {
  const cell = cells[number];
  if (!cell) {
    panel.innerHTML = Object.keys(cells).length ? '<p>Point at a cell.</p>'
      : '<p>This field was not classified.</p>';
    return;
  }
  const rows = cell.top.map(([name, p, chosen]) =>
    `<tr class="${chosen ? 'chosen' : ''}"><td>${chosen ? '&#10003; ' : ''}${name}</td><td>${
      p.toFixed(3)}</td><td><span class="bar" style="width:${
      Math.round(p * 120)}px"></span></td></tr>`).join('');
  panel.innerHTML = `<h2 id="selected">cell ${number}</h2>` +
    `<p class="classes"><b>classes:</b> ${cell.labels.length ? cell.labels.join(', ') : 'none'
    }</p><table>${rows}</table><p>&#10003; over the run's threshold; entropy ${
      cell.entropy.toFixed(3)} bits</p>`;
}
for (const polygon of document.querySelectorAll('polygon')) {
  const number = polygon.dataset.cell;
  polygon.addEventListener('mouseenter', () => { if (pinned === null) show(number); });
  polygon.addEventListener('click', () => {
    document.querySelectorAll('polygon.active').forEach(p => p.classList.remove('active'));
    polygon.classList.add('active'); pinned = number; show(number);
  });
}
const wanted = location.hash.startsWith('#cell-') ? location.hash.slice(6) : null;
if (wanted && cells[wanted]) {
  const polygon = document.querySelector(`polygon[data-cell="${wanted}"]`);
  if (polygon) { polygon.classList.add('active'); pinned = wanted; }
  show(wanted);
} else { show(null); }
</script>
"""


def write_field_page(out: Path, record: dict, cells: dict | None, previous, following) -> None:
    """One field's page: its picture, outlines and cells (``cells``: ``{number: {labels,
    top, entropy}}`` from :func:`~hpa_keras.workflows.annotation_outputs.part_summary`)."""
    field_id = record["field"]
    height, width = record.get("picture") or (0, 0)
    # small fields shown larger (the outlines scale with them: the SVG's viewBox is the
    # picture's own pixels)
    enlarge = max(1.0, MIN_DISPLAY_SIDE / max(height, width, 1))
    display_width, display_height = round(width * enlarge), round(height * enlarge)
    polygons = []
    for number, points in (record.get("outlines") or {}).items():
        labelled = bool(cells and cells.get(number, {}).get("labels"))
        path = " ".join(f"{x},{y}" for x, y in points)
        polygons.append(
            f'<polygon data-cell="{number}" class="{"labelled" if labelled else ""}" '
            f'points="{path}"><title>cell {number}</title></polygon>'
        )
    links = " ".join(
        f'<a href="{_link(Path(field_page_name(other)).name)}">{label}</a>'
        for other, label in ((previous, "previous field"), (following, "next field"))
        if other
    )
    facts = (
        f"<p>{html.escape(str(record.get('file', '')))}; "
        + (
            f"{record['width']} x {record['height']} px at {record['pixel_size']:.3f} um; "
            if record.get("width")
            else ""
        )
        + f"{record.get('cells', 0)} cells; quality flags: {_flags(record.get('flags', []))}</p>"
    )
    if record.get("error"):
        body = facts + f'<p class="flag">{html.escape(record["error"])}</p>'
    elif not height:
        body = facts
    else:
        note = "" if cells else "<p>Not classified (a quality flag, or no cell).</p>"
        body = (
            f'<p>{links}</p>{facts}{note}<div id="view"><div id="stage">'
            f'<img src="../{_link(PICTURES + "/" + field_id)}.jpg" width="{display_width}" '
            f'height="{display_height}" alt="field {html.escape(field_id)}">'
            f'<svg viewBox="0 0 {width} {height}" preserveAspectRatio="none">'
            f'{"".join(polygons)}</svg></div><div id="panel"></div></div>'
            + _data("cells", cells or {})
            + FIELD_SCRIPT
        )
    write_text_atomic(out / field_page_name(field_id), _page(f"field {field_id}", body, depth=1))


def _index_pages(out: Path, field_rows: list[dict]) -> None:
    pages = max(1, -(-len(field_rows) // FIELDS_PER_PAGE))
    flagged = sum(bool(row["flags"]) for row in field_rows)
    cells = sum(int(row.get("cells") or 0) for row in field_rows)
    for page in range(pages):
        rows = field_rows[page * FIELDS_PER_PAGE : (page + 1) * FIELDS_PER_PAGE]
        lines = []
        for row in rows:
            field_id = html.escape(row["field"])
            small = _link(f"{PICTURES}/{row['field']}_thumbnail.jpg")
            thumbnail = "" if row.get("error") else f'<img src="{small}" width="96" alt="">'
            lines.append(
                f'<tr><td>{thumbnail}</td><td><a href="{_link(field_page_name(row["field"]))}">'
                f"{field_id}</a></td><td>{row.get('cells', 0)}</td>"
                f"<td>{_flags(row['flags'])}</td><td>{html.escape(row.get('top_classes', ''))}"
                f"</td></tr>"
            )
        names = ["index.html"] + [f"index-{number}.html" for number in range(2, pages + 1)]
        pager = " ".join(
            f'<a href="{name}">{number}</a>' if number != page + 1 else f"<b>{number}</b>"
            for number, name in enumerate(names, start=1)
        )
        body = (
            f"<p>{len(field_rows)} fields, {cells} cells; {flagged} fields with a quality "
            f"flag.</p><p>pages: {pager}</p><table><tr><th></th><th>field</th><th>cells</th>"
            f"<th>quality flags</th><th>its cells' classes</th></tr>{''.join(lines)}</table>"
        )
        write_text_atomic(out / names[page], _page("annotation", body))


def _gallery_page(out: Path, gallery: dict) -> None:
    sections = []
    for class_name, entries in gallery.items():
        tiles = []
        for probability, field_id, number, box, picture in entries:
            x0, y0, x1, y1 = box
            scale = TILE / max(x1 - x0, y1 - y0, 1)
            style = (
                f"background-image:url('{_link(PICTURES + '/' + field_id + '.jpg')}');"
                f"background-size:{picture[1] * scale:.0f}px {picture[0] * scale:.0f}px;"
                f"background-position:{-x0 * scale:.0f}px {-y0 * scale:.0f}px"
            )
            tiles.append(
                f'<a class="tile" data-field="{html.escape(field_id)}" data-cell="{number}" '
                f'href="{_link(field_page_name(field_id))}#cell-{number}"><div class="crop" '
                f'style="{style}"></div>{html.escape(field_id)[:16]} #{number}<br>'
                f"{probability:.2f}</a>"
            )
        sections.append(
            f'<section data-class="{html.escape(class_name)}"><h2>{html.escape(class_name)}'
            f"</h2>{''.join(tiles)}</section>"
        )
    body = (
        f"<p>The {GALLERY_CELLS} most confident cells of each class, among the cells given "
        "that class.</p>" + ("".join(sections) or "<p>No cell was given a class.</p>")
    )
    write_text_atomic(out / "gallery.html", _page("gallery", body))


UMAP_SCRIPT = """
<script>
const tip = document.getElementById('tip');
for (const dot of document.querySelectorAll('circle')) {
  dot.addEventListener('mouseenter', event => {
    tip.style.display = 'block';
    tip.textContent = `${dot.dataset.field} cell ${dot.dataset.cell}: ${dot.dataset.top} ${
      dot.dataset.p}`;
  });
  dot.addEventListener('mousemove', event => {
    tip.style.left = (event.clientX + 12) + 'px'; tip.style.top = (event.clientY + 12) + 'px';
  });
  dot.addEventListener('mouseleave', () => { tip.style.display = 'none'; });
  dot.addEventListener('click', () => {
    location.href = `fields/${encodeURIComponent(dot.dataset.field)}.html#cell-${dot.dataset.cell}`;
  });
}
</script>
"""

PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
    "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
)  # fmt: skip


def _umap_page(out: Path, points, class_names) -> None:
    if not points:
        body = "<p>Too few cells for a UMAP.</p>"
        write_text_atomic(out / "umap.html", _page("UMAP", body))
        return
    xs = [point["x"] for point in points]
    ys = [point["y"] for point in points]
    low_x, high_x, low_y, high_y = min(xs), max(xs), min(ys), max(ys)
    side = 640
    span = max(high_x - low_x, high_y - low_y, 1e-9)  # one scale for both axes

    def place(value, low, high):
        return 10 + (value - low + (span - (high - low)) / 2) / span * (side - 20)

    present = [name for name in class_names if any(point["top"] == name for point in points)]
    colour = {name: PALETTE[index % len(PALETTE)] for index, name in enumerate(present)}
    dots = "".join(
        f'<circle cx="{place(p["x"], low_x, high_x):.1f}" '
        f'cy="{side - place(p["y"], low_y, high_y):.1f}" r="3" fill="{colour[p["top"]]}" '
        f'data-field="{html.escape(p["field"])}" data-cell="{p["cell"]}" '
        f'data-top="{html.escape(p["top"])}" data-p="{p["p"]:.2f}"></circle>'
        for p in points
    )
    legend = "".join(
        f'<div><span style="color:{colour[name]}">&#9679;</span> {html.escape(name)}</div>'
        for name in present
    )
    body = (
        f"<p>{len(points)} cells (a sample where there are more), placed by the UMAP of "
        "their embeddings, coloured by their most probable class. Point at a dot to see the "
        f'cell; click to open its field.</p><div id="view"><svg width="{side}" height="{side}" '
        f'style="background:white;border:1px solid #ddd">{dots}</svg><div>{legend}</div></div>'
        f'<div id="tip"></div>{UMAP_SCRIPT}'
    )
    write_text_atomic(out / "umap.html", _page("UMAP", body))


def write_viewer(out: Path, field_rows: list[dict], gallery: dict, points, class_names) -> None:
    """The index pages, the gallery and the UMAP page (field pages are written as their
    fields are read: :func:`write_field_page`)."""
    _index_pages(out, field_rows)
    _gallery_page(out, gallery)
    _umap_page(out, points, class_names)


def write_umap_picture(path: Path, points, tops: list[str], class_names) -> None:
    """``umap.png``: the UMAP's sample, each dot coloured by its cell's most probable class."""
    figure, axis = plt.subplots(figsize=(9, 6))
    figure.subplots_adjust(left=0.08, right=0.68)  # the legend beside the map
    present = [name for name in class_names if name in set(tops)]
    colours = plt.get_cmap("tab20")
    for index, name in enumerate(present):
        chosen = [position for position, top in enumerate(tops) if top == name]
        axis.scatter(
            points[chosen, 0], points[chosen, 1], s=6, color=colours(index % 20), label=name,
            linewidths=0,
        )  # fmt: skip
    axis.set_xlabel("UMAP 1")
    axis.set_ylabel("UMAP 2")
    axis.set_title(f"{len(points)} cells, coloured by their most probable class")
    axis.legend(fontsize=7, markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5))
    save_figure(figure, path)
