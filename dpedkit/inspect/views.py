"""The data behind ``dpedkit inspect``'s pages: pair views, plots, galleries and notes (no markup).

A dataset written by ``dpedkit build`` stores every candidate window (kept or not) in its shards (schema 2,
:meth:`dpedkit.dataset.format.DatasetDir.read_candidates`): the NCC histogram then covers every window of every ok
pair and the pair views' window grid and shift field come from the stored windows, with nothing recomputed; only
the photo overlays (matches, checkerboard, blend, difference) of the worst pairs need their photos re-aligned from
the paths in ``pairs.jsonl``. For a dataset without stored windows (imported, or built by an older dpedkit) the
worst pairs (and a seeded random sample for the histogram) are re-aligned and their windows re-refined with the
build's own configuration. The notes say which was used. :mod:`dpedkit.inspect.html` renders all of it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dpedkit.dataset.format import DatasetDir
from dpedkit.errors import InputError
from dpedkit.inspect import pictures as pic
from dpedkit.inspect.summary import DatasetSummary, flatten_pair_record, is_finite_number, summarize_dataset
from dpedkit.io import is_url, read_image, to_uint8

if TYPE_CHECKING:
    from dpedkit.config import ReportConfig

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass
class PairView:
    """Everything one pair view shows.

    Attributes:
        name: the pair's name; ``status``: its status word.
        metrics: the numbers shown (a dataset pair: the build's, as recorded in ``pairs.jsonl``).
        images: encoded pictures ``name -> (mime, bytes)``; ``captions``: a sentence per picture.
        candidates: every window's ``xy``, ``shift``, ``ncc``, ``kept`` (None: not known).
        notes: sentences on how the pictures were drawn (the re-alignment behind the photo overlays).
    """

    name: str
    status: str
    metrics: dict[str, Any]
    images: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    captions: dict[str, str] = field(default_factory=dict)
    candidates: dict[str, np.ndarray] | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Gallery:
    """A strip of patch pairs: section ``sid``, a title and ``(caption, PNG bytes)`` cells (phone | DSLR)."""

    sid: str
    title: str
    cells: list[tuple[str, bytes]]


@dataclass
class DatasetPage:
    """Everything the dataset report shows.

    Attributes:
        summary: the :class:`~dpedkit.inspect.summary.DatasetSummary`.
        views: pair views in display order (failed pairs and the worst ok pairs).
        plots: plot name (``ncc``, ``shift``, ``kept``, ``inliers``) -> PNG bytes.
        notes: sentences saying what the histogram and the views were drawn from.
        galleries: random and lowest-NCC kept patch pairs.
        stored_candidates: the windows came from the dataset (not recomputed).
        recomputed: pairs re-aligned from their photos; ``unreadable``: pairs whose photos could not be read.
    """

    summary: DatasetSummary
    views: list[PairView]
    plots: dict[str, bytes]
    notes: list[str]
    galleries: list[Gallery]
    stored_candidates: bool
    recomputed: list[str] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)


def dataset_page(root: Path, cfg: ReportConfig, on_progress: Progress | None = None) -> DatasetPage:
    """Compute the views, plots, galleries and notes of a dataset's report (see the module docstring)."""
    summary = summarize_dataset(root)
    rng = np.random.default_rng(cfg.seed)
    if summary.imported and not summary.pairs:
        return _imported_page(summary, cfg, rng)
    pairs = summary.pairs
    ok = [p for p in pairs if p.get("status") == "ok"]
    stored = summary.stored_candidates
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
        views[name] = _view_from_recomputed(
            rec, rc, summary.patch_size, summary.ncc_min, cfg.image_width, candidates=windows.get(name)
        )
    if on_progress:
        on_progress("re-aligning pairs", len(todo), len(todo))
    shown = set(worst_ok) | {str(f["pair"]) for f in failed}
    view_names = [str(p["pair"]) for p in pairs if str(p["pair"]) in shown and str(p["pair"]) in views]
    if stored:
        hist_ncc, hist_kept, hist_note = _stored_histogram(root, len(ok))
    else:
        hist_ncc, hist_kept, hist_note = _histogram_values(summary, views, sample_names, len(ok))
    notes = [hist_note] + ([_views_note(worst_ok, unreadable, stored)] if worst_ok else [])
    return DatasetPage(
        summary=summary,
        views=[views[n] for n in view_names],
        plots=_dataset_plots(summary, hist_ncc, hist_kept),
        notes=notes,
        galleries=_patch_galleries(summary, cfg, rng),
        stored_candidates=stored,
        recomputed=recomputed,
        unreadable=unreadable,
    )


def _imported_page(summary: DatasetSummary, cfg: ReportConfig, rng: np.random.Generator) -> DatasetPage:
    """The page of an imported dataset: what it holds and sample patch pairs (it has no photos, pairs or NCC)."""
    note = (
        f"Imported dataset ({summary.source}): the layout holds patch pairs only, with no photos, alignment or NCC, "
        "so there is no histogram, plot or pair view; the summary lists its rows"
        + (", patch shapes and sensor" if summary.sensor else " and patch shapes")
        + ", and the samples show its patches"
        + (" (the RAW mosaics demosaiced with the sensor's CFA and levels)." if summary.sensor else ".")
    )
    return DatasetPage(summary=summary, views=[], plots={}, notes=[note],
                       galleries=_patch_galleries(summary, cfg, rng), stored_candidates=False)  # fmt: skip


def pair_folder_view(folder: Path, *, width: int = 900) -> tuple[PairView, list[str]]:
    """The view of a pair folder written by ``dpedkit align`` and the notes on how it was drawn."""
    from dpedkit.align import align_pair, read_alignment
    from dpedkit.config import PatchConfig
    from dpedkit.dataset.patches import extract_patches

    meta, phone, dslr = read_alignment(folder)
    metrics = {k: v for k, v in meta.items() if not isinstance(v, list | dict) or k == "crop"}
    if phone is None:
        return PairView(folder.name, str(meta.get("status")), metrics), []
    pcfg = PatchConfig()
    patches = extract_patches(phone, dslr, config=pcfg)
    # The folder holds the crops only: the matches drawn are those between the two aligned crops.
    res = align_pair(phone, dslr)
    matches = None
    if res.ok and getattr(res, "phone_pts", None) is not None:
        matches = (phone, dslr, res.phone_pts, res.dslr_pts)
    view = render_pair_view(
        folder.name, phone, dslr, patches.candidates, patch_size=pcfg.size, ncc_min=pcfg.ncc_min, metrics=metrics,
        matches=matches, width=width,
    )  # fmt: skip
    return view, ["Matches are re-detected between the two aligned crops (the pair folder stores no full images)."]


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
        candidates: every window of :func:`dpedkit.dataset.patches.extract_patches` (``xy``, ``shift``, ``ncc``,
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
        view.images["matches"] = _jpeg(pic.draw_matches(im_a, im_b, pa, pb, height=min(480, width // 2)))
        view.captions["matches"] = f"{len(pa)} inlier matches (at most 150 drawn), phone left, DSLR right"
    small_a, s = pic.fit_width(phone_crop, width)
    small_b, _ = pic.fit_width(dslr_crop, width)
    view.images["checkerboard"] = _jpeg(pic.checkerboard(small_a, small_b))
    view.captions["checkerboard"] = "checkerboard: phone on the top-left square, DSLR on the next"
    view.images["blend"] = _jpeg(pic.blend(small_a, small_b))
    view.captions["blend"] = "50/50 blend: ghosting shows misalignment"
    heat, vmax = pic.diff_heatmap(phone_crop, dslr_crop)
    view.images["diff"] = _jpeg(pic.fit_width(heat, width)[0])
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
    grid = pic.patch_grid_overlay(
        small, np.asarray(xy) * s, ncc, kept, size=patch_size * s, ncc_range=(ncc_min - 0.4, 1.0)
    )
    view.images["grid"] = _jpeg(grid)
    view.captions["grid"] = (
        f"{kept.sum()} of {len(kept)} windows kept (NCC >= {ncc_min:g}; thick = kept, crossed = rejected; "
        f"red NCC <= {ncc_min - 0.4:.1f}, green 1){note}"
    )
    view.images["field"] = ("image/png", pic.shift_field_png(crop, xy, candidates["shift"], kept, size=patch_size))
    view.captions["field"] = f"residual shift of every window after the global homography (magnified){note}"


def _jpeg(rgb: np.ndarray) -> tuple[str, bytes]:
    return "image/jpeg", pic.encode_jpeg(rgb, quality=88)


def _resolve(path: str, root: Path) -> Path:
    """A photo a build recorded: a URL's (photos read from object storage) local copy, else the path (or root/path)."""
    if is_url(path):
        from dpedkit.dataset.storage import fetch_folder

        folder, name = path.rsplit("/", 1)
        return fetch_folder(folder) / name
    p = Path(path)
    return p if p.is_absolute() or p.exists() else root / p


def recompute_pair(
    rec: Mapping[str, Any], root: Path, build_config: Mapping[str, Any], *, patches: bool = True
) -> dict[str, Any]:
    """Re-align one dataset pair from its photos as the build did, and re-refine its windows.

    The photos go through the build's own path (:func:`dpedkit.align.align_files`: HEIF and RAW decoders, a RAW
    file's features from its half-size luminance) with the build's alignment options and OpenCV seed, so the
    result normally equals the build's; the pictures then show the alignment that the recorded numbers describe.

    Args:
        rec: the pair's ``pairs.jsonl`` record (``phone`` and ``dslr`` paths).
        root: the dataset folder (relative photo paths are tried there).
        build_config: the build configuration (``dataset.json``'s ``config``).
        patches: also re-refine the windows (False when the dataset stores them).

    Returns:
        A dict with ``result`` (the :class:`dpedkit.align.AlignResult`), ``phone``/``dslr`` (full images, RGB
        uint8, to draw the matches on), ``patches`` (the :class:`dpedkit.dataset.patches.PatchSet`, None when
        alignment failed or ``patches`` is False).
    """
    import cv2

    from dpedkit.align import align_files
    from dpedkit.config import BuildConfig
    from dpedkit.dataset.patches import extract_patches

    config = BuildConfig.from_dict(dict(build_config)) if build_config else BuildConfig()
    paths = [_resolve(str(rec[side]), root) for side in ("phone", "dslr")]
    cv2.setRNGSeed(config.seed)  # as the build does before each pair
    result = align_files(*paths, config=config.align)
    refined = extract_patches(result.phone, result.dslr, config=config.patch) if result.ok and patches else None
    phone, dslr = (read_image(p, max_pixels=config.align.max_pixels).rgb for p in paths) if result.ok else (None, None)
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
    ds = DatasetDir(root)
    manifest = ds.manifest()
    recs = {str(r["pair"]): r for r in ds.pairs()}
    if name not in recs:
        raise InputError(ds.pairs_path, f"no pair named {name!r}")
    rec = flatten_pair_record(recs[name])
    if rec.get("status") != "ok":
        return _failed_view(rec)
    psize, ncc_min = ds.patch_size(), float(manifest.patch_setting("ncc_min"))
    stored = _stored_windows(ds.root, [name]).get(name) if ds.has_candidates() else None
    rc = recompute_pair(rec, ds.root, manifest.config, patches=stored is None)
    return _view_from_recomputed(rec, rc, psize, ncc_min, width, candidates=stored)


def _stored_windows(root: Path, names: Sequence[str]) -> dict[str, dict[str, np.ndarray]]:
    """Stored candidate windows of pairs ``names``: name -> columns ``xy``, ``shift``, ``ncc``, ``kept``."""
    if not names:
        return {}
    cand = DatasetDir(root).read_candidates(names, columns=["pair", "xy", "shift", "ncc", "kept"])
    return {n: {k: v[cand["pair"] == n] for k, v in cand.items()} for n in names}


# What a dataset pair view shows of the build's record (its alignment numbers and patch counts).
RECORDED = ("status", "reason", "split", "crop", "matches", "inliers", "rmse_px", "scale", "rotation_deg",
            "orientation_fix", "sharpness_ratio", "overlap", "coverage", "patches_total", "patches_kept")  # fmt: skip
COMPARED = ("matches", "inliers", "rmse_px")  # the numbers a re-alignment is checked against


def recorded_metrics(rec: Mapping[str, Any]) -> dict[str, Any]:
    """The build's numbers of a pair (a flattened ``pairs.jsonl`` record), as the table shows them."""
    return {k: rec[k] for k in RECORDED if k in rec}


def _realignment_note(rec: Mapping[str, Any], res: Any) -> str:
    """What the re-alignment behind the photo overlays found, compared with the build's recorded numbers."""
    found = f"{res.matches} matches, {res.inliers} inliers, RMSE {_num(res.rmse_px)} px"
    built = f"{rec.get('matches')} matches, {rec.get('inliers')} inliers, RMSE {_num(rec.get('rmse_px'))} px"
    if not res.ok:
        return (f"The photos were re-aligned to draw the overlays and this time it failed ({res.status}: "
                f"{res.reason}); the numbers above are the build's ({built}).")  # fmt: skip
    same = all(_same(getattr(res, k), rec.get(k)) for k in COMPARED)
    if same:
        return (f"The photo overlays come from a re-alignment of the photos with the build's options and decoders; "
                f"it found what the build recorded ({built}).")  # fmt: skip
    return (f"The photo overlays come from a re-alignment of the photos with the build's options and decoders, "
            f"which found {found}; the numbers above are the build's ({built}): the overlays may differ slightly "
            f"from the alignment the patches were cut with.")  # fmt: skip


def _same(a: Any, b: Any) -> bool:
    if is_finite_number(a) and is_finite_number(b):
        return abs(float(a) - float(b)) <= 1e-6 * max(1.0, abs(float(b)))
    return not is_finite_number(a) and not is_finite_number(b)


def _num(v: Any) -> str:
    return f"{float(v):.3g}" if is_finite_number(v) else "-"


def _view_from_recomputed(
    rec: Mapping[str, Any],
    rc: Mapping[str, Any],
    psize: int,
    ncc_min: float,
    width: int,
    *,
    candidates: Mapping[str, np.ndarray] | None = None,
) -> PairView:
    """The view of a re-aligned pair: the build's numbers (``rec``), pictures of the re-alignment ``rc``.

    Windows come from ``candidates`` (stored) or else from ``rc["patches"]``.
    """
    res = rc["result"]
    metrics = recorded_metrics(rec)
    note = _realignment_note(rec, res)
    if not res.ok:
        view = PairView(str(rec["pair"]), str(rec.get("status", "ok")), metrics, notes=[note])
        if candidates is not None and len(candidates["kept"]):
            _plain_windows(view, rec, candidates, psize, ncc_min, width, " (stored windows, no image behind them)")
        return view
    pts = (getattr(res, "phone_pts", None), getattr(res, "dslr_pts", None))
    matches = (rc["phone"], rc["dslr"], pts[0], pts[1]) if pts[0] is not None and len(pts[0]) else None
    view = render_pair_view(
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
    if matches is not None:
        view.captions["matches"] = (
            f"{len(pts[0])} inlier matches of the re-alignment that draws these pictures (at most 150 drawn), "
            "phone left, DSLR right"
        )
    view.notes.append(note)
    return view


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
    summary: DatasetSummary,
    width: int,
) -> PairView:
    """A pair whose photos cannot be read: the error, and the stored windows drawn on a plain background."""
    view = PairView(str(rec["pair"]), "unreadable", {"error": str(exc)})
    if windows is None or not len(windows["kept"]):
        return view
    note = " (stored windows; the photos could not be read, so no image behind them)"
    _plain_windows(view, rec, windows, summary.patch_size, summary.ncc_min, width, note)
    return view


def _plain_windows(
    view: PairView,
    rec: Mapping[str, Any],
    windows: Mapping[str, np.ndarray],
    p: int,
    ncc_min: float,
    width: int,
    note: str,
) -> None:
    """Add the window grid and shift field of ``windows`` drawn on a plain background of the crop's size."""
    crop = rec.get("crop")
    if isinstance(crop, list | tuple) and len(crop) == 4:
        w, h = int(crop[2]) - int(crop[0]), int(crop[3]) - int(crop[1])
    else:
        w, h = (np.asarray(windows["xy"]).max(axis=0) + p).tolist()
    blank = np.full((h, w, 3), 200, np.uint8)
    small, s = pic.fit_width(blank, width)
    _window_pictures(view, blank, small, s, windows, patch_size=p, ncc_min=ncc_min, note=note)


def _stored_histogram(root: Path, n_ok: int) -> tuple[np.ndarray, np.ndarray, str]:
    """``(ncc, kept, note)`` of every candidate window stored in the dataset."""
    cand = DatasetDir(root).read_candidates(columns=["ncc", "kept"])  # no pair names: 5 bytes a window
    return (
        cand["ncc"],
        cand["kept"],
        (
            f"NCC histogram: every candidate window (kept or rejected) of all ok pairs ({len(cand['ncc'])} windows "
            f"of {n_ok} pairs), read from the candidate windows stored in the dataset; nothing was recomputed."
        ),
    )


def _failed_view(rec: Mapping[str, Any]) -> PairView:
    keys = ("status", "reason", "split", "phone", "dslr", "matches", "inliers", "rmse_px", "scale", "orientation_fix")
    return PairView(str(rec["pair"]), str(rec.get("status")), {k: rec.get(k) for k in keys if k in rec})


def _hist_sample(ok: Sequence[Mapping[str, Any]], n: int, rng: np.random.Generator) -> list[str]:
    names = sorted(str(p["pair"]) for p in ok)
    if n >= len(names):
        return names
    return sorted(rng.choice(names, n, replace=False).tolist()) if n else []


def _histogram_values(
    summary: DatasetSummary, views: Mapping[str, PairView], sample: Sequence[str], n_ok: int
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


def _dataset_plots(summary: DatasetSummary, hist_ncc: np.ndarray, hist_kept: np.ndarray) -> dict[str, bytes]:
    cols, pairs = summary.columns, summary.pairs
    plots = {"ncc": pic.ncc_histogram_png(hist_ncc, threshold=summary.ncc_min, kept=hist_kept)}
    plots["shift"] = pic.shift_angle_png(cols["shift"], cols["angle"], title="Kept patches: residual shift and angle")
    plots["kept"] = pic.kept_fraction_png(
        [str(p["pair"]) for p in pairs],
        [p["kept_fraction"] for p in pairs],
        failed=[p.get("status") != "ok" for p in pairs],
    )
    ok = [p for p in pairs if p.get("status") == "ok" and is_finite_number(p.get("rmse_px"))]
    plots["inliers"] = pic.inliers_rmse_png(
        [float(p.get("inliers") or 0) for p in ok], [float(p["rmse_px"]) for p in ok], names=[p["pair"] for p in ok]
    )
    return plots


def _sensor_record(root: Path) -> dict[str, Any]:
    """The dataset's sensor as a pair's ``sources.phone`` record (an imported RAW dataset has no pair records)."""
    s = DatasetDir(root).sensor()
    return {"cfa": s["cfa"], "black_level": [s["black"]], "white_level": s["white"]}


def _patch_galleries(summary: DatasetSummary, cfg: ReportConfig, rng: np.random.Generator) -> list[Gallery]:
    """Random kept patch pairs and the lowest-NCC ones, each labelled (phone | DSLR, NCC) with its caption.

    An imported dataset has no NCC: its second gallery is left out, and captions name the split and row.
    """
    cols = summary.columns
    ncc = cols["ncc"]
    n = len(ncc)
    rand = np.sort(rng.choice(n, min(cfg.samples, n), replace=False)) if n else np.zeros(0, int)
    measured = np.flatnonzero(np.isfinite(ncc))
    low = measured[np.argsort(ncc[measured], kind="stable")[: cfg.lowest]]
    kinds = [("samples", f"Random kept patch pairs ({len(rand)} of {n})", rand)]
    if not summary.imported or len(measured):
        kinds.append(("lowest", f"Lowest-NCC kept patch pairs ({len(low)})", low))
    raw = {str(p["pair"]): (p.get("sources") or {}).get("phone") for p in summary.pairs}
    sensor: list[dict] = []  # the dataset's sensor, read once where a pair has no record (imported data)
    out, raw_data = [], DatasetDir(summary.root).is_raw()  # the manifest says whether phone patches are mosaics
    for sid, title, idx in kinds:
        phone, dslr = DatasetDir(summary.root).read_patches(idx)
        dslr = to_uint8(dslr)  # a 16-bit build's too
        cells = []
        for k, g in enumerate(idx):
            pair, split = cols["pair"][g], cols["split"][g]
            # a raw2rgb patch is the RAW mosaic: shown demosaiced (OpenCV, the pair's levels and white balance)
            if raw_data:
                if not raw.get(pair) and not sensor:
                    sensor.append(_sensor_record(summary.root))
                shown = pic.mosaic_preview(phone[k], raw.get(pair) or sensor[0])
            else:
                shown = to_uint8(phone[k])
            score = f"NCC {ncc[g]:.3f}" if np.isfinite(ncc[g]) else ""
            if summary.imported:
                row = int(np.count_nonzero(cols["split"][:g] == split))
                cap = f"{split} row {row}" + (f", {score}" if score else " (no NCC: imported)")
            else:
                xy = cols["xy"][g]
                cap = f"{pair} @ ({xy[0]}, {xy[1]}) {score} [{split}]"
            labels = ("phone RAW", "DSLR") if raw_data else ("phone", "DSLR")
            cells.append((cap, pic.encode_png(pic.patch_strip(shown, dslr[k], labels=labels, footer=score))))
        out.append(Gallery(sid, title, cells))
    return out
