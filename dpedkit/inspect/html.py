"""Markup of ``dpedkit inspect``'s report: plain HTML with inline CSS, a tiny table sorter and ``data:`` images.

Only rendering lives here: every number, picture and sentence comes from :mod:`dpedkit.inspect.views`.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from dpedkit import __version__
from dpedkit.inspect.summary import DatasetSummary, overview
from dpedkit.inspect.views import DatasetPage, Gallery, PairView

SECTIONS = ("summary", "plots", "pairs", "views", "samples", "lowest")


def page_sections(page: DatasetPage) -> list[str]:
    """The ids of the sections of a dataset page, in order (an import has no lowest-NCC gallery)."""
    return [*SECTIONS[:4], *(g.sid for g in page.galleries)]


def dataset_page(page: DatasetPage) -> str:
    """The whole HTML page of a dataset report."""
    s = page.summary
    shown = {v.name for v in page.views}
    body = [
        _summary_section(s),
        _plots_section(page.plots, page.notes),
        _pairs_table(s.pairs, shown, imported=s.imported),
        _views_section(page.views),
        *(_gallery_section(g) for g in page.galleries),
    ]
    return _page(f"dpedkit report: {s.root.name}", body, nav=page_sections(page))


def pair_page(view: PairView, notes: Sequence[str]) -> str:
    """The whole HTML page of a pair folder's report."""
    body = [_views_section([view]), "".join(f"<p class='note'>{_e(n)}</p>" for n in notes)]
    return _page(f"dpedkit pair: {view.name}", body, nav=["views"])


def _gallery_section(g: Gallery) -> str:
    cells = "".join(
        f"<figure class='patch'>{_img(('image/png', png), cap)}<figcaption>{_e(cap)}</figcaption></figure>"
        for cap, png in g.cells
    )
    empty = "<p>No kept patches.</p>" if not g.cells else ""
    return (
        f"<section id='{g.sid}'><h2>{_e(g.title)}</h2><p class='note'>Each: phone (left) | DSLR (right), "
        "labelled in the picture, with the patch's NCC below (when the dataset records one).</p>"
        f"{empty}<div class='gallery'>{cells}</div></section>"
    )


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1400px;padding:0 16px;
color:#222;background:#fafafa}
h1{margin:16px 0 4px}h2{border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:32px}
nav a{margin-right:12px}.note{color:#555;font-size:13px}
table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#eee;cursor:pointer;user-select:none;position:sticky;top:0}th:first-child,td:first-child{text-align:left}
tr.failed td{background:#fdecea}tr:hover td{background:#eef5ff}
th[data-dir=asc]::after{content:" \\25B2"}th[data-dir=desc]::after{content:" \\25BC"}
.kv td{text-align:left}.plots img{max-width:100%;margin:4px;border:1px solid #ddd;background:#fff}
.pair{border:1px solid #ccc;border-radius:6px;padding:8px 12px;margin:16px 0;background:#fff}
.figs{display:grid;grid-template-columns:repeat(auto-fill,minmax(440px,1fr));gap:8px}
.pair figure{margin:0}.pair figure.wide{grid-column:1/-1}
.pair img{max-width:100%;border:1px solid #ddd}figcaption{font-size:12px;color:#444;max-width:900px}
.gallery{display:flex;flex-wrap:wrap;gap:8px}.patch{margin:0}.patch img{image-rendering:pixelated}
.patch figcaption{font-size:11px;max-width:202px}.status-ok{color:#007a55}.status-bad{color:#b34700}
"""


_JS = """
document.querySelectorAll('table.sortable th').forEach(function (th) {
  th.addEventListener('click', function () {
    var table = th.closest('table'), body = table.tBodies[0], col = th.cellIndex;
    var asc = th.getAttribute('data-dir') !== 'asc';
    table.querySelectorAll('th').forEach(function (h) { h.removeAttribute('data-dir'); });
    th.setAttribute('data-dir', asc ? 'asc' : 'desc');
    function key(row) {
      var cell = row.cells[col], v = cell.getAttribute('data-v');
      if (v === null) { v = cell.textContent; }
      var n = parseFloat(v);
      return isNaN(n) ? v : n;
    }
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a), y = key(b);
      var c = (typeof x === 'number' && typeof y === 'number') ? x - y : String(x).localeCompare(String(y));
      return asc ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""


def _e(s: object) -> str:
    return html.escape(str(s), quote=True)


def _img(image: tuple[str, bytes], alt: str) -> str:
    mime, data = image
    return f"<img alt='{_e(alt)}' src='data:{mime};base64,{base64.b64encode(data).decode('ascii')}'>"


def _anchor(name: str) -> str:
    return "pair-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if np.isfinite(v) else "-"
    if v is None:
        return "-"
    return str(v)


GENERATOR = "<meta name='generator' content='dpedkit inspect'>"  # how an earlier report is known (inspect -o)


def _page(title: str, body: Sequence[str], *, nav: Sequence[str]) -> str:
    links = "".join(f"<a href='#{s}'>{s}</a>" for s in nav)
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>{GENERATOR}"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<link rel='icon' href='data:,'><title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{_e(title)}</h1><p class='note'>dpedkit {__version__}</p><nav>{links}</nav>"
        f"{''.join(body)}<script>{_JS}</script></body></html>\n"
    )


def _kv_table(rows: Sequence[tuple[str, Any]]) -> str:
    return (
        "<table class='kv'>" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(_fmt(v))}</td></tr>" for k, v in rows) + "</table>"
    )


def _summary_section(s: DatasetSummary) -> str:
    rows = [("dataset", str(s.root)), *overview(s)]
    status = _kv_table([(k, v) for k, v in s.status_counts.items()]) if s.status_counts else "<p>No pairs.</p>"
    if s.imported and not s.pairs:
        status = "<p>None recorded: an import has no pairs of photos.</p>"
    reasons = [p for p in s.pairs if p.get("status") != "ok"]
    fail_rows = "".join(
        f"<tr><td>{_e(p['pair'])}</td><td>{_e(p.get('status'))}</td><td>{_e(p.get('reason', ''))}</td></tr>"
        for p in reasons
    )
    failures = (
        f"<h3>Failed pairs</h3><table class='sortable'><thead><tr><th>pair</th><th>status</th><th>reason</th></tr>"
        f"</thead><tbody>{fail_rows}</tbody></table>"
        if reasons
        else ""
    )
    what = "Import record" if s.imported else "Build configuration"
    config = f"<details><summary>{what}</summary><pre>{_e(json.dumps(s.config, indent=2))}</pre></details>"
    return (
        f"<section id='summary'><h2>Summary</h2>{_kv_table(rows)}<h3>Pairs by status</h3>{status}{failures}"
        f"{config}</section>"
    )


def _plots_section(plots: Mapping[str, bytes], notes: Sequence[str]) -> str:
    alts = {
        "ncc": "NCC histogram of candidate windows with the threshold",
        "shift": "shift and angle distributions",
        "kept": "kept fraction per pair",
        "inliers": "inliers vs RMSE",
    }
    imgs = "".join(_img(("image/png", plots[k]), alts[k]) for k in alts if k in plots)
    text = "".join(f"<p class='note'>{_e(n)}</p>" for n in notes)
    return f"<section id='plots' class='plots'><h2>Plots</h2>{text}<div>{imgs}</div></section>"


_PAIR_COLUMNS = (
    ("pair", "pair"),
    ("status", "status"),
    ("split", "split"),
    ("kept fraction", "kept_fraction"),
    ("kept", "patches_kept"),
    ("windows", "patches_total"),
    ("inliers", "inliers"),
    ("matches", "matches"),
    ("RMSE px", "rmse_px"),
    ("scale", "scale"),
    ("turn (deg)", "orientation_fix"),
    ("RAW CFA", "raw_cfa"),
    ("black", "raw_black"),
    ("white", "raw_white"),
    ("reason", "reason"),
)


def _pairs_table(pairs: Sequence[Mapping[str, Any]], with_view: set[str], *, imported: bool = False) -> str:
    if imported and not pairs:
        return (
            "<section id='pairs'><h2>Pairs (0)</h2><p class='note'>An imported dataset has no pairs of photos: its "
            "rows are patch pairs as the layout stored them (see the summary and the samples).</p></section>"
        )
    head = "".join(f"<th>{_e(t)}</th>" for t, _ in _PAIR_COLUMNS)
    rows = []
    for rank, p in enumerate(pairs):
        cells = []
        for _, key in _PAIR_COLUMNS:
            v = p.get(key)
            if key == "pair":
                name = str(v)
                link = f"<a href='#{_anchor(name)}'>{_e(name)}</a>" if name in with_view else _e(name)
                cells.append(f"<td data-v='{_e(name)}'>{link}</td>")
            elif isinstance(v, int | float) and not isinstance(v, bool):
                cells.append(f"<td data-v='{float(v) if np.isfinite(v) else -1}'>{_e(_fmt(v))}</td>")
            else:
                cells.append(f"<td>{_e(_fmt(v))}</td>")
        cls = "" if p.get("status") == "ok" else " class='failed'"
        rows.append(f"<tr{cls} data-rank='{rank}'>{''.join(cells)}</tr>")
    more = len(pairs) - len(with_view)
    tail = f"; {more} rows have none (raise --pair-views)." if more > 0 else "."
    note = (
        "<p class='note'>Worst first (lowest kept fraction). Click a column to sort. "
        f"Pair views for the {len(with_view)} worst pairs{tail}</p>"
    )
    return (
        f"<section id='pairs'><h2>Pairs ({len(pairs)})</h2>{note}<table class='sortable' id='pairs-table'>"
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></section>"
    )


_VIEW_ORDER = ("matches", "checkerboard", "blend", "diff", "grid", "field")


def _views_section(views: Sequence[PairView]) -> str:
    blocks = []
    for v in views:
        cls = "status-ok" if v.status == "ok" else "status-bad"
        metrics = " &middot; ".join(
            f"{_e(k)}: {_e(_fmt(val))}" for k, val in v.metrics.items() if k not in ("timings",) and val is not None
        )
        figs = "".join(
            f"<figure{' class=wide' if k == 'matches' else ''}>{_img(v.images[k], k)}"
            f"<figcaption>{_e(v.captions.get(k, k))}</figcaption></figure>"
            for k in _VIEW_ORDER
            if k in v.images
        )
        empty = "<p>No pictures: the pair did not align.</p>" if v.status != "ok" else "<p>No pictures (see above).</p>"
        figs = f"<div class='figs'>{figs}</div>" if figs else empty
        notes = "".join(f"<p class='note'>{_e(n)}</p>" for n in v.notes)
        blocks.append(
            f"<div class='pair' id='{_anchor(v.name)}'><h3>{_e(v.name)} <span class='{cls}'>{_e(v.status)}</span></h3>"
            f"<p class='note'>{metrics}</p>{notes}{figs}</div>"
        )
    return f"<section id='views'><h2>Pair views</h2>{''.join(blocks) or '<p>None rendered.</p>'}</section>"
