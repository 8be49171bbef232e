"""The ``dpedkit inspect`` HTML report: one self-contained file that opens offline in any browser.

:func:`write_report` takes a dataset folder (written by ``dpedkit build``) or a pair folder (written by
``dpedkit align``) and writes plain HTML with inline CSS, a tiny inline table sorter and every image embedded
as a ``data:`` URI (no CDN, no sibling files). The pictures come from :mod:`dpedkit.diagnostics`.

A dataset written by ``dpedkit build`` stores every candidate window (kept or not) in its shards (schema 2,
:func:`dpedkit.shards.read_candidates`): the NCC histogram then covers every window of every ok pair and the
pair views' window grid and shift field come from the stored windows, with nothing recomputed; only the photo
overlays (matches, checkerboard, blend, difference) of the worst pairs need their photos re-aligned from the
paths in ``pairs.jsonl``. For a dataset without stored windows (imported, or built by an older dpedkit) the
worst pairs (and a seeded random sample for the histogram) are re-aligned and their windows re-refined with
the build's own configuration. The page says which was used.
"""

from __future__ import annotations

import base64
import html
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from dpedkit import __version__, shards
from dpedkit import diagnostics as dg
from dpedkit.config import ConfigMixin
from dpedkit.errors import InputError, check_range
from dpedkit.io import read_rgb, write_text

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(frozen=True)
class ReportConfig(ConfigMixin):
    """Options of the report.

    Attributes:
        pair_views: render a full pair view for this many pairs, worst first (0: none).
        hist_pairs: when the dataset does not store every candidate window, re-refine up to this many pairs
            (a seeded random sample of the ok pairs) for the NCC histogram (0: histogram of kept patches only).
        samples: random kept patch pairs shown side by side.
        lowest: lowest-NCC kept patch pairs shown.
        seed: seed of every random choice in the report.
        image_width: display width of the pictures in pixels.
    """

    pair_views: int = 12
    hist_pairs: int = 12
    samples: int = 24
    lowest: int = 12
    seed: int = 0
    image_width: int = 900

    def __post_init__(self) -> None:
        for name in ("pair_views", "hist_pairs", "samples", "lowest", "seed"):
            check_range(name, getattr(self, name), 0)
        check_range("image_width", self.image_width, 200, 4000)


@dataclass
class ReportResult:
    """What :func:`write_report` wrote.

    Attributes:
        path: the HTML file.
        kind: ``"dataset"`` or ``"pair"``.
        n_pairs: pairs listed; ``pair_views``: names of the pairs with a rendered view.
        sections: ids of the sections present in the page (``summary``, ``plots``, ``pairs``, ``views``,
            ``samples``, ``lowest``; a pair report has ``views`` only).
        notes: caveats written into the report (e.g. which pairs were recomputed).
        size_bytes: size of the HTML file.
        stored_candidates: the histogram and the window pictures come from the dataset's stored candidate
            windows (False: recomputed from the photos, or a pair report).
        recomputed: pairs re-aligned from their photos (for the photo overlays, and without stored candidates
            also re-refined), in the order they were processed.
        unreadable: pairs that were to be re-aligned but whose photos could not be read (moved, deleted or
            damaged), each with its error; their views show the stored windows, or only the error.
    """

    path: Path
    kind: Literal["dataset", "pair"]
    n_pairs: int
    pair_views: list[str]
    sections: list[str]
    notes: list[str] = field(default_factory=list)
    size_bytes: int = 0
    stored_candidates: bool = False
    recomputed: list[str] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)


def write_report(
    source: str | Path,
    out: str | Path | None = None,
    *,
    config: ReportConfig = ReportConfig(),
    on_progress: Progress | None = None,
) -> ReportResult:
    """Write the HTML report of a dataset folder or of one aligned pair folder.

    Args:
        source: a folder written by ``dpedkit build`` (has ``dataset.json``) or by ``dpedkit align`` (has
            ``alignment.json``).
        out: the HTML file to write; default ``SOURCE/report.html``.
        config: the options (:class:`ReportConfig`).
        on_progress: called as ``on_progress(stage, done, total)`` while pairs are re-aligned.

    Returns:
        A :class:`ReportResult`.

    Raises:
        InputError: ``source`` is neither a dataset nor a pair folder.
        ShardError: the dataset is unfinished or damaged.
    """
    source = Path(source)
    out = Path(out) if out is not None else source / "report.html"
    if dg.is_dataset(source):
        page, result = _dataset_page(source, config, on_progress)
    elif dg.is_pair_dir(source):
        page, result = _pair_page(source, config)
    else:
        raise InputError(source, "not a dataset (no dataset.json) nor an aligned pair folder (no alignment.json)")
    write_text(out, page)
    result.path, result.size_bytes = out, out.stat().st_size
    log.debug("report: %s (%.1f MB)", out, result.size_bytes / 1e6)
    return result


# ------------------------------------------------------------------------------------------------ pair views


@dataclass
class PairView:
    """Everything one pair view shows: metrics and encoded pictures ``name -> (mime, bytes)``."""

    name: str
    status: str
    metrics: dict[str, Any]
    images: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    captions: dict[str, str] = field(default_factory=dict)
    candidates: dict[str, np.ndarray] | None = None


def render_pair_view(
    name: str,
    phone_crop: np.ndarray,
    dslr_crop: np.ndarray,
    candidates: Mapping[str, np.ndarray],
    *,
    patch_size: int,
    ncc_min: float,
    metrics: Mapping[str, Any],
    matches: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
    width: int = 900,
) -> PairView:
    """Draw the pictures of one aligned pair.

    Args:
        name: pair name.
        phone_crop: phone crop, ``H x W x 3`` uint8 RGB.
        dslr_crop: the DSLR resampled onto the same grid, same shape.
        candidates: every window of :func:`dpedkit.patches.extract_patches` (``xy``, ``shift``, ``ncc``,
            ``kept``).
        patch_size: window side ``P``.
        ncc_min: keep threshold (for the colour scale and captions).
        metrics: alignment metrics shown in the view (``alignment.json``'s fields).
        matches: ``(phone_image, dslr_image, phone_pts, dslr_pts)``: inlier matches to draw, points in the
            given images' pixels; None to leave the matches picture out.
        width: display width in pixels.

    Returns:
        A :class:`PairView` with pictures ``matches``, ``checkerboard``, ``blend``, ``diff``, ``grid``, ``field``.
    """
    view = PairView(name, str(metrics.get("status", "ok")), dict(metrics), candidates=dict(candidates))
    if matches is not None:
        im_a, im_b, pa, pb = matches
        view.images["matches"] = _jpeg(dg.draw_matches(im_a, im_b, pa, pb, height=min(480, width // 2)))
        view.captions["matches"] = f"{len(pa)} inlier matches (at most 150 drawn), phone left, DSLR right"
    small_a, s = dg.fit_width(phone_crop, width)
    small_b, _ = dg.fit_width(dslr_crop, width)
    view.images["checkerboard"] = _jpeg(dg.checkerboard(small_a, small_b))
    view.captions["checkerboard"] = "checkerboard: phone on the top-left square, DSLR on the next"
    view.images["blend"] = _jpeg(dg.blend(small_a, small_b))
    view.captions["blend"] = "50/50 blend: ghosting shows misalignment"
    heat, vmax = dg.diff_heatmap(phone_crop, dslr_crop)
    view.images["diff"] = _jpeg(dg.fit_width(heat, width)[0])
    view.captions["diff"] = (
        f"|difference| of the band-passed lumas (tone and colour removed): black 0, yellow >= {vmax:.0f} grey levels"
    )
    _window_pictures(view, phone_crop, small_a, s, candidates, patch_size=patch_size, ncc_min=ncc_min)
    return view


def _window_pictures(
    view: PairView,
    crop: np.ndarray,
    small: np.ndarray,
    s: float,
    candidates: Mapping[str, np.ndarray],
    *,
    patch_size: int,
    ncc_min: float,
    note: str = "",
) -> None:
    """Add the ``grid`` (windows coloured by NCC on ``small``, ``crop`` shrunk by ``s``) and ``field`` pictures."""
    xy, ncc, kept = candidates["xy"], candidates["ncc"], np.asarray(candidates["kept"], bool)
    grid = dg.patch_grid_overlay(
        small, np.asarray(xy) * s, ncc, kept, size=patch_size * s, ncc_range=(ncc_min - 0.4, 1.0)
    )
    view.images["grid"] = _jpeg(grid)
    view.captions["grid"] = (
        f"{kept.sum()} of {len(kept)} windows kept (NCC >= {ncc_min:g}; thick = kept, crossed = rejected; "
        f"red NCC <= {ncc_min - 0.4:.1f}, green 1){note}"
    )
    view.images["field"] = ("image/png", dg.shift_field_png(crop, xy, candidates["shift"], kept, size=patch_size))
    view.captions["field"] = f"residual shift of every window after the global homography (magnified){note}"


def _jpeg(rgb: np.ndarray) -> tuple[str, bytes]:
    return "image/jpeg", dg.encode_jpeg(rgb, quality=88)


def _resolve(path: str, root: Path) -> Path:
    p = Path(path)
    return p if p.is_absolute() or p.exists() else root / p


def recompute_pair(
    rec: Mapping[str, Any], root: Path, build_config: Mapping[str, Any], *, patches: bool = True
) -> dict[str, Any]:
    """Re-align one dataset pair from its photos and re-refine its windows with the build's configuration.

    Args:
        rec: the pair's ``pairs.jsonl`` record (``phone`` and ``dslr`` paths).
        root: the dataset folder (relative photo paths are tried there).
        build_config: the build configuration (``dataset.json``'s ``config``).
        patches: also re-refine the windows (False when the dataset stores them).

    Returns:
        A dict with ``result`` (the :class:`dpedkit.align.AlignResult`), ``phone``/``dslr`` (full images),
        ``patches`` (the :class:`dpedkit.patches.PatchSet`, None when alignment failed).
    """
    import cv2

    from dpedkit.align import align_pair
    from dpedkit.build import BuildConfig
    from dpedkit.patches import extract_patches

    config = BuildConfig.from_dict(dict(build_config)) if build_config else BuildConfig()
    phone = read_rgb(_resolve(str(rec["phone"]), root))
    dslr = read_rgb(_resolve(str(rec["dslr"]), root))
    cv2.setRNGSeed(config.seed)  # as the build does before each pair
    result = align_pair(phone, dslr, config=config.align)
    refined = extract_patches(result.phone, result.dslr, config=config.patch) if result.ok and patches else None
    return {"result": result, "phone": phone, "dslr": dslr, "patches": refined}


def dataset_pair_view(root: str | Path, name: str, *, width: int = 900) -> PairView:
    """Re-align pair ``name`` of a dataset and draw its view (what the report shows for that pair).

    The window grid and shift field use the dataset's stored candidate windows when it has them; otherwise the
    windows are re-refined too.

    Args:
        root: dataset folder.
        name: a pair name from ``pairs.jsonl``.
        width: display width of the pictures.

    Returns:
        A :class:`PairView`; ``images`` maps picture names to ``(mime, bytes)`` (show them with
        ``IPython.display.Image(data)``) and ``candidates`` holds every window's NCC, shift and kept flag.

    Raises:
        InputError: no pair of that name, or its photos are unreadable.
    """
    root = Path(root)
    config = shards.read_manifest(root).get("config") or {}
    recs = {str(r["pair"]): r for r in dg.read_jsonl(root / "pairs.jsonl")}
    if name not in recs:
        raise InputError(root / "pairs.jsonl", f"no pair named {name!r}")
    rec = dg.flatten_pair_record(recs[name])
    if rec.get("status") != "ok":
        return _failed_view(rec)
    psize, ncc_min = int(dg._find(config, "size", 100)), float(dg._find(config, "ncc_min", 0.9))
    stored = _stored_windows(root, [name]).get(name) if shards.dataset_has_candidates(root) else None
    rc = recompute_pair(rec, root, config, patches=stored is None)
    return _view_from_recomputed(rec, rc, psize, ncc_min, width, candidates=stored)


def _stored_windows(root: Path, names: Sequence[str]) -> dict[str, dict[str, np.ndarray]]:
    """Stored candidate windows of pairs ``names``: name -> columns ``xy``, ``shift``, ``ncc``, ``kept``."""
    if not names:
        return {}
    cand = shards.read_candidates(root, names, columns=["pair", "xy", "shift", "ncc", "kept"])
    return {n: {k: v[cand["pair"] == n] for k, v in cand.items()} for n in names}


def _view_from_recomputed(
    rec: Mapping[str, Any],
    rc: Mapping[str, Any],
    psize: int,
    ncc_min: float,
    width: int,
    *,
    candidates: Mapping[str, np.ndarray] | None = None,
) -> PairView:
    """The view of a re-aligned pair; windows from ``candidates`` (stored) or else from ``rc["patches"]``."""
    res = rc["result"]
    metrics = {k: v for k, v in res.to_json().items() if not isinstance(v, list | dict) or k == "crop"}
    metrics.update({k: rec[k] for k in ("split", "patches_total", "patches_kept") if k in rec})
    if not res.ok:
        return PairView(str(rec["pair"]), res.status, metrics)
    pts = (getattr(res, "phone_pts", None), getattr(res, "dslr_pts", None))
    matches = (rc["phone"], rc["dslr"], pts[0], pts[1]) if pts[0] is not None and len(pts[0]) else None
    return render_pair_view(
        str(rec["pair"]),
        res.phone,
        res.dslr,
        rc["patches"].candidates if candidates is None else candidates,
        patch_size=psize,
        ncc_min=ncc_min,
        metrics=metrics,
        matches=matches,
        width=width,
    )


# ---------------------------------------------------------------------------------------------- dataset page


def _dataset_page(root: Path, cfg: ReportConfig, on_progress: Progress | None) -> tuple[str, ReportResult]:
    summary = dg.summarize_dataset(root)
    rng = np.random.default_rng(cfg.seed)
    pairs = summary.pairs
    ok = [p for p in pairs if p.get("status") == "ok"]
    stored = summary.stored_candidates
    notes: list[str] = []
    # Failed pairs get a (cheap) text view with their reason; the worst ok pairs are re-aligned and drawn.
    failed = [p for p in pairs if p.get("status") != "ok"]
    worst_ok = [str(p["pair"]) for p in ok[: cfg.pair_views]]
    sample_names = [] if stored else _hist_sample(ok, cfg.hist_pairs, rng)
    windows = _stored_windows(root, worst_ok) if stored else {}
    todo = [p for p in ok if str(p["pair"]) in set(worst_ok) | set(sample_names)]
    views: dict[str, PairView] = {str(p["pair"]): _failed_view(p) for p in failed}
    recomputed, unreadable = [], {}
    for i, rec in enumerate(todo):
        name = str(rec["pair"])
        if on_progress:
            on_progress("re-aligning pairs", i, len(todo))
        try:
            rc = recompute_pair(rec, root, summary.config, patches=not stored)
        except InputError as exc:
            views[name] = _unreadable_view(rec, exc, windows.get(name), summary, cfg.image_width)
            unreadable[name] = str(exc)
            continue
        recomputed.append(name)
        view = _view_from_recomputed(rec, rc, summary.patch_size, summary.ncc_min, cfg.image_width,
                                     candidates=windows.get(name))  # fmt: skip
        views[name] = view
    view_names = [str(p["pair"]) for p in pairs if str(p["pair"]) in set(worst_ok) | {str(f["pair"]) for f in failed}]
    if on_progress:
        on_progress("re-aligning pairs", len(todo), len(todo))
    if stored:
        hist_ncc, hist_kept, hist_note = _stored_histogram(root, len(ok))
    else:
        hist_ncc, hist_kept, hist_note = _histogram_values(summary, views, sample_names, len(ok))
    notes.append(hist_note)
    if worst_ok:
        notes.append(_views_note(worst_ok, unreadable, stored))
    plots = _dataset_plots(summary, hist_ncc, hist_kept)
    samples, lowest = _patch_galleries(summary, cfg, rng)
    body = [
        _summary_section(summary),
        _plots_section(plots, notes),
        _pairs_table(pairs, set(view_names) & set(views)),
        _views_section([views[n] for n in view_names if n in views], summary.ncc_min),
        samples,
        lowest,
    ]
    sections = ["summary", "plots", "pairs", "views", "samples", "lowest"]
    page = _page(f"dpedkit report: {root.name}", body, nav=sections)
    shown = [n for n in view_names if n in views]
    result = ReportResult(Path(), "dataset", len(pairs), shown, sections, notes)
    result.stored_candidates, result.recomputed, result.unreadable = stored, recomputed, unreadable
    return page, result


def _views_note(worst_ok: Sequence[str], unreadable: Mapping[str, str], stored: bool) -> str:
    """What the pair views of the worst ok pairs were drawn from, counting pairs whose photos could not be read."""
    missing = [n for n in worst_ok if n in unreadable]
    n_ok = len(worst_ok) - len(missing)
    if stored:
        how = (
            "for the photo overlays (matches, checkerboard, blend, difference); their window grid and shift field "
            "are drawn from the candidate windows stored in the dataset."
        )
    else:
        how = "and their windows re-refined with the build configuration (the dataset stores kept patches only)."
    if not missing:
        return f"Pair views: the {n_ok} worst ok pairs were re-aligned from their photos {how}"
    lead = (
        f"Pair views: {n_ok} of the {len(worst_ok)} worst ok pairs were re-aligned from their photos {how} "
        f"{len(missing)} could not be"
        if n_ok
        else f"Pair views: none of the {len(worst_ok)} worst ok pairs could be re-aligned"
    )
    drawn = "their stored windows on a plain background" if stored else "only the error"
    return f"{lead}: their photos could not be read (first: {unreadable[missing[0]]}); their views show {drawn}."


def _unreadable_view(
    rec: Mapping[str, Any],
    exc: InputError,
    windows: Mapping[str, np.ndarray] | None,
    summary: dg.DatasetSummary,
    width: int,
) -> PairView:
    """A pair whose photos cannot be read: the error, and the stored windows drawn on a plain background."""
    view = PairView(str(rec["pair"]), "unreadable", {"error": str(exc)})
    if windows is None or not len(windows["kept"]):
        return view
    p = summary.patch_size
    crop = rec.get("crop")
    if isinstance(crop, list | tuple) and len(crop) == 4:
        w, h = int(crop[2]) - int(crop[0]), int(crop[3]) - int(crop[1])
    else:
        w, h = (np.asarray(windows["xy"]).max(axis=0) + p).tolist()
    blank = np.full((h, w, 3), 200, np.uint8)
    small, s = dg.fit_width(blank, width)
    note = " (stored windows; the photos could not be read, so no image behind them)"
    _window_pictures(view, blank, small, s, windows, patch_size=p, ncc_min=summary.ncc_min, note=note)
    return view


def _stored_histogram(root: Path, n_ok: int) -> tuple[np.ndarray, np.ndarray, str]:
    """``(ncc, kept, note)`` of every candidate window stored in the dataset."""
    cand = shards.read_candidates(root, columns=["ncc", "kept"])  # no pair names: 5 bytes a window
    return (
        cand["ncc"],
        cand["kept"],
        (
            f"NCC histogram: every candidate window (kept or rejected) of all ok pairs ({len(cand['ncc'])} windows "
            f"of {n_ok} pairs), read from the candidate windows stored in the dataset; nothing was recomputed."
        ),
    )


def _failed_view(rec: Mapping[str, Any]) -> PairView:
    keys = ("status", "reason", "split", "phone", "dslr", "matches", "inliers", "rmse_px", "scale")
    return PairView(str(rec["pair"]), str(rec.get("status")), {k: rec.get(k) for k in keys if k in rec})


def _hist_sample(ok: Sequence[Mapping[str, Any]], n: int, rng: np.random.Generator) -> list[str]:
    names = sorted(str(p["pair"]) for p in ok)
    if n >= len(names):
        return names
    return sorted(rng.choice(names, n, replace=False).tolist()) if n else []


def _histogram_values(
    summary: dg.DatasetSummary, views: Mapping[str, PairView], sample: Sequence[str], n_ok: int
) -> tuple[np.ndarray, np.ndarray, str]:
    """``(ncc, kept, note)`` of every candidate window of ``sample`` (recomputed), else of the kept patches."""
    cands = [views[n].candidates for n in sample if n in views and views[n].candidates]
    if cands:
        ncc = np.concatenate([c["ncc"] for c in cands])
        kept = np.concatenate([np.asarray(c["kept"], bool) for c in cands])
        scope = "all" if len(cands) == n_ok else f"a seeded random sample of {len(cands)} of the {n_ok}"
        return (
            ncc,
            kept,
            (
                f"NCC histogram: every candidate window (kept or rejected) of {scope} ok pairs, recomputed from the "
                f"photos ({len(ncc)} windows); the dataset itself stores only the kept patches."
            ),
        )
    ncc = summary.columns["ncc"]
    return (
        ncc,
        np.ones(len(ncc), bool),
        (
            "NCC histogram: kept patches only (candidate windows were not recomputed: hist_pairs = 0, no ok pair, "
            "or no photo of the sampled pairs could be read)."
        ),
    )


def _dataset_plots(summary: dg.DatasetSummary, hist_ncc: np.ndarray, hist_kept: np.ndarray) -> dict[str, bytes]:
    cols, pairs = summary.columns, summary.pairs
    plots = {"ncc": dg.ncc_histogram_png(hist_ncc, threshold=summary.ncc_min, kept=hist_kept)}
    plots["shift"] = dg.shift_angle_png(cols["shift"], cols["angle"], title="Kept patches: residual shift and angle")
    plots["kept"] = dg.kept_fraction_png(
        [str(p["pair"]) for p in pairs],
        [p["kept_fraction"] for p in pairs],
        failed=[p.get("status") != "ok" for p in pairs],
    )
    ok = [p for p in pairs if p.get("status") == "ok" and dg._finite(p.get("rmse_px"))]
    plots["inliers"] = dg.inliers_rmse_png(
        [float(p.get("inliers") or 0) for p in ok], [float(p["rmse_px"]) for p in ok], names=[p["pair"] for p in ok]
    )
    return plots


def _patch_galleries(summary: dg.DatasetSummary, cfg: ReportConfig, rng: np.random.Generator) -> tuple[str, str]:
    ncc = summary.columns["ncc"]
    n = len(ncc)
    rand = np.sort(rng.choice(n, min(cfg.samples, n), replace=False)) if n else np.zeros(0, int)
    low = np.argsort(ncc, kind="stable")[: cfg.lowest]
    out = []
    for sid, title, idx in (
        ("samples", f"Random kept patch pairs ({len(rand)} of {n})", rand),
        ("lowest", f"Lowest-NCC kept patch pairs ({len(low)})", low),
    ):
        phone, dslr = dg.read_patches(summary.root, idx)
        cells = []
        for k, g in enumerate(idx):
            pair, xy = summary.columns["pair"][g], summary.columns["xy"][g]
            cap = f"{pair} @ ({xy[0]}, {xy[1]}) NCC {ncc[g]:.3f} [{summary.columns['split'][g]}]"
            strip = dg.patch_strip(phone[k], dslr[k])
            cells.append(f"<figure class='patch'>{_img(('image/png', dg.encode_png(strip)), cap)}"
                         f"<figcaption>{_e(cap)}</figcaption></figure>")  # fmt: skip
        empty = "<p>No kept patches.</p>" if not cells else ""
        out.append(
            f"<section id='{sid}'><h2>{_e(title)}</h2><p class='note'>Each: phone (left) | DSLR (right).</p>"
            f"{empty}<div class='gallery'>{''.join(cells)}</div></section>"
        )
    return out[0], out[1]


# ------------------------------------------------------------------------------------------------- pair page


def _pair_page(folder: Path, cfg: ReportConfig) -> tuple[str, ReportResult]:
    from dpedkit.align import align_pair
    from dpedkit.patches import PatchConfig, extract_patches

    meta = json.loads((folder / "alignment.json").read_text())
    name = folder.name
    metrics = {k: v for k, v in meta.items() if not isinstance(v, list | dict) or k == "crop"}
    if meta.get("status") != "ok" or not (folder / "phone.png").is_file():
        view = PairView(name, str(meta.get("status")), metrics)
        return _page(f"dpedkit pair: {name}", [_views_section([view], 0.9)], nav=["views"]), ReportResult(
            Path(), "pair", 1, [name], ["views"]
        )
    phone, dslr = read_rgb(folder / "phone.png"), read_rgb(folder / "dslr.png")
    pcfg = PatchConfig()
    patches = extract_patches(phone, dslr, config=pcfg)
    # The folder holds the crops only: the matches drawn are those between the two aligned crops.
    res = align_pair(phone, dslr)
    matches = None
    if res.ok and getattr(res, "phone_pts", None) is not None:
        matches = (phone, dslr, res.phone_pts, res.dslr_pts)
    view = render_pair_view(
        name, phone, dslr, patches.candidates, patch_size=pcfg.size, ncc_min=pcfg.ncc_min, metrics=metrics,
        matches=matches, width=cfg.image_width,
    )  # fmt: skip
    notes = ["Matches are re-detected between the two aligned crops (the pair folder stores no full images)."]
    body = [_views_section([view], pcfg.ncc_min), "".join(f"<p class='note'>{_e(n)}</p>" for n in notes)]
    return _page(f"dpedkit pair: {name}", body, nav=["views"]), ReportResult(
        Path(), "pair", 1, [name], ["views"], notes
    )


# ---------------------------------------------------------------------------------------------------- HTML

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


def _page(title: str, body: Sequence[str], *, nav: Sequence[str]) -> str:
    links = "".join(f"<a href='#{s}'>{s}</a>" for s in nav)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<link rel='icon' href='data:,'><title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{_e(title)}</h1><p class='note'>dpedkit {__version__}</p><nav>{links}</nav>"
        f"{''.join(body)}<script>{_JS}</script></body></html>\n"
    )


def _kv_table(rows: Sequence[tuple[str, Any]]) -> str:
    return (
        "<table class='kv'>" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(_fmt(v))}</td></tr>" for k, v in rows) + "</table>"
    )


def _summary_section(s: dg.DatasetSummary) -> str:
    n_ok = s.status_counts.get("ok", 0)
    rows = [
        ("dataset", str(s.root)),
        ("pairs", len(s.pairs)),
        ("pairs ok", n_ok),
        ("pairs failed", len(s.pairs) - n_ok),
        ("candidate windows", s.patches_total),
        ("patches kept", s.patches_kept),
        ("kept fraction", s.patches_kept / s.patches_total if s.patches_total else float("nan")),
        ("patch size", s.patch_size),
        ("NCC threshold", s.ncc_min),
    ]
    rows += [
        (f"{split} split", f"{s.split_pairs.get(split, 0)} pairs, {n} patches") for split, n in s.split_patches.items()
    ]
    status = _kv_table([(k, v) for k, v in s.status_counts.items()]) if s.status_counts else "<p>No pairs.</p>"
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
    config = f"<details><summary>Build configuration</summary><pre>{_e(json.dumps(s.config, indent=2))}</pre></details>"
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
    ("reason", "reason"),
)


def _pairs_table(pairs: Sequence[Mapping[str, Any]], with_view: set[str]) -> str:
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


def _views_section(views: Sequence[PairView], ncc_min: float) -> str:
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
        figs = f"<div class='figs'>{figs}</div>" if figs else "<p>No pictures: the pair did not align.</p>"
        blocks.append(
            f"<div class='pair' id='{_anchor(v.name)}'><h3>{_e(v.name)} <span class='{cls}'>{_e(v.status)}</span></h3>"
            f"<p class='note'>{metrics}</p>{figs}</div>"
        )
    return f"<section id='views'><h2>Pair views</h2>{''.join(blocks) or '<p>None rendered.</p>'}</section>"
