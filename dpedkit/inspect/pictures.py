"""Pictures of alignment quality for ``dpedkit inspect``: overlays, heat maps and plots.

Everything here takes arrays (or plain dicts read from a dataset) and returns arrays or encoded image bytes;
nothing is written to disk and nothing is printed. Plots use matplotlib's object API with the Agg canvas (no
``pyplot``, no global state), so they work headless and in threads.

Conventions (see :mod:`dpedkit`): images are ``H x W x 3`` RGB ``uint8``; points are ``(x, y)`` with pixel
centres at integers; a patch window is given by its top-left ``(x, y)`` in phone-crop pixels and its size ``P``.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import cv2
import numpy as np

from dpedkit.io import encode_image

# Okabe-Ito colours: readable for colour-blind readers, used for kept/rejected and ok/failed everywhere.
KEPT_RGB = (0, 158, 115)
REJECTED_RGB = (213, 94, 0)
NCC_CMAP = "RdYlGn"


def encode_png(rgb: np.ndarray) -> bytes:
    """Encode an ``H x W x 3`` RGB uint8 image (or ``H x W`` gray) as PNG bytes."""
    return encode_image(rgb, ".png")


def encode_jpeg(rgb: np.ndarray, *, quality: int = 90) -> bytes:
    """Encode an ``H x W x 3`` RGB uint8 image as JPEG bytes (photographic views: 5-10x smaller than PNG)."""
    return encode_image(rgb, ".jpg", quality=quality)


def fit_width(rgb: np.ndarray, max_width: int) -> tuple[np.ndarray, float]:
    """Shrink ``rgb`` (INTER_AREA) so it is at most ``max_width`` wide; returns ``(image, scale)``, scale <= 1."""
    h, w = rgb.shape[:2]
    if w <= max_width:
        return rgb, 1.0
    s = max_width / w
    return cv2.resize(rgb, (max_width, max(1, round(h * s))), interpolation=cv2.INTER_AREA), s


def _scale_pts(pts: np.ndarray, s: float) -> np.ndarray:
    """Pixel-centre scaling of ``N x 2`` points into an image resized by ``s`` (see :mod:`dpedkit.geometry`)."""
    return (np.asarray(pts, np.float64).reshape(-1, 2) + 0.5) * s - 0.5


def draw_matches(
    phone: np.ndarray,
    dslr: np.ndarray,
    phone_pts: np.ndarray,
    dslr_pts: np.ndarray,
    *,
    max_lines: int = 150,
    height: int = 480,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Phone and DSLR side by side at one display height, with matched points joined by lines.

    Args:
        phone: phone image, ``H x W x 3`` uint8 RGB (full resolution, the coordinates of ``phone_pts``).
        dslr: DSLR image, ``H' x W' x 3`` uint8 RGB (coordinates of ``dslr_pts``).
        phone_pts: ``N x 2`` matched points ``(x, y)`` in ``phone``.
        dslr_pts: ``N x 2`` corresponding points in ``dslr``.
        max_lines: draw at most this many matches (a random subset, drawn with ``rng``).
        height: display height of both images in pixels.
        rng: random generator for the subset; ``np.random.default_rng(0)`` when None.

    Returns:
        ``height x (w1 + w2) x 3`` uint8 RGB.
    """
    s1, s2 = height / phone.shape[0], height / dslr.shape[0]
    a = cv2.resize(phone, (max(1, round(phone.shape[1] * s1)), height), interpolation=cv2.INTER_AREA)
    b = cv2.resize(dslr, (max(1, round(dslr.shape[1] * s2)), height), interpolation=cv2.INTER_AREA)
    canvas = np.ascontiguousarray(np.concatenate([a, b], axis=1))
    p, q = np.asarray(phone_pts).reshape(-1, 2), np.asarray(dslr_pts).reshape(-1, 2)
    if len(p) > max_lines:
        idx = (rng or np.random.default_rng(0)).choice(len(p), max_lines, replace=False)
        p, q = p[idx], q[idx]
    p, q = _scale_pts(p, s1), _scale_pts(q, s2) + [a.shape[1], 0]
    colours = _cmap_rgb("hsv", np.linspace(0, 1, len(p), endpoint=False)).tolist()
    for (x0, y0), (x1, y1), c in zip(p, q, colours, strict=True):
        cv2.line(canvas, (round(x0), round(y0)), (round(x1), round(y1)), c, 1, cv2.LINE_AA)
        cv2.circle(canvas, (round(x0), round(y0)), 3, c, 1, cv2.LINE_AA)
        cv2.circle(canvas, (round(x1), round(y1)), 3, c, 1, cv2.LINE_AA)
    return canvas


def checkerboard(a: np.ndarray, b: np.ndarray, *, tiles: int = 8) -> np.ndarray:
    """Alternate square tiles of two aligned images of the same shape (misalignment shows as broken edges).

    Args:
        a: ``H x W x 3`` uint8 (the phone crop).
        b: same shape (the DSLR resampled onto the phone grid).
        tiles: number of tiles along the longer side.

    Returns:
        ``H x W x 3`` uint8: ``a`` on the "white" squares (top-left included), ``b`` on the others.
    """
    _check_same_shape(a, b)
    h, w = a.shape[:2]
    t = max(1, int(np.ceil(max(h, w) / tiles)))
    mask = ((np.arange(h)[:, None] // t + np.arange(w)[None, :] // t) % 2 == 0)[:, :, None]
    return np.where(mask, a, b)


def blend(a: np.ndarray, b: np.ndarray, *, alpha: float = 0.5) -> np.ndarray:
    """``alpha * a + (1 - alpha) * b`` of two same-shape uint8 images (ghosting shows misalignment)."""
    _check_same_shape(a, b)
    return cv2.addWeighted(a, float(alpha), b, 1.0 - float(alpha), 0.0)


def abs_diff(a: np.ndarray, b: np.ndarray, *, sigma: float = 3.0) -> np.ndarray:
    """Absolute difference of the band-passed luminances of two aligned same-shape images.

    Both lumas lose their low frequencies (minus a Gaussian blur of ``sigma`` px), which removes the tone,
    colour and vignetting differences between two cameras, then ``b``'s detail is scaled to ``a``'s contrast
    (least squares). What remains bright is structure that differs: misalignment, motion, parallax, blur.

    Args:
        a: ``H x W x 3`` uint8 RGB (the phone crop).
        b: same shape (the DSLR on the phone grid).
        sigma: Gaussian sigma (px) of the removed low frequencies; 0 compares the plain lumas.

    Returns:
        ``H x W`` float32, grey levels.
    """
    _check_same_shape(a, b)
    ga = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gb = cv2.cvtColor(b, cv2.COLOR_RGB2GRAY).astype(np.float32)
    if sigma > 0:
        ga -= cv2.GaussianBlur(ga, (0, 0), sigma)
        gb -= cv2.GaussianBlur(gb, (0, 0), sigma)
        den = float((gb * gb).sum())
        gb *= float((ga * gb).sum()) / den if den > 0 else 1.0
    return np.abs(ga - gb)


def diff_heatmap(
    a: np.ndarray, b: np.ndarray, *, vmax: float | None = None, sigma: float = 3.0
) -> tuple[np.ndarray, float]:
    """:func:`abs_diff` as a colour heat map (``inferno``: black = equal, yellow = ``vmax`` or more).

    Args:
        a: ``H x W x 3`` uint8.
        b: same shape.
        vmax: difference mapped to the top colour; by default the 99th percentile (at least 1).
        sigma: see :func:`abs_diff`.

    Returns:
        ``(H x W x 3 uint8 RGB, vmax used)``.
    """
    d = abs_diff(a, b, sigma=sigma)
    top = float(vmax) if vmax is not None else max(1.0, float(np.percentile(d, 99)))
    return _cmap_rgb("inferno", np.clip(d / top, 0.0, 1.0)), top


def patch_grid_overlay(
    image: np.ndarray,
    xy: np.ndarray,
    ncc: np.ndarray,
    kept: np.ndarray,
    *,
    size: int,
    ncc_range: tuple[float, float] = (0.5, 1.0),
) -> np.ndarray:
    """Draw every candidate window on ``image``, coloured by NCC; rejected windows are crossed out.

    Args:
        image: the phone crop, ``H x W x 3`` uint8 RGB.
        xy: ``M x 2`` top-left ``(x, y)`` of each window, in ``image`` pixels.
        ncc: ``M`` NCC of each window after refinement.
        kept: ``M`` bool, window kept in the dataset.
        size: window side ``P`` in ``image`` pixels (may be fractional for a shrunk display image).
        ncc_range: NCC mapped to the two ends of the red-yellow-green colour map.

    Returns:
        A copy of ``image`` (uint8 RGB) with the windows drawn: a thick outline for kept windows, a thin outline
        and a cross for rejected ones.
    """
    out = np.ascontiguousarray(image.copy())
    lo, hi = ncc_range
    colours = _cmap_rgb(NCC_CMAP, np.clip((np.asarray(ncc, np.float64) - lo) / (hi - lo), 0.0, 1.0)).tolist()
    thick = max(2, round(size / 25))
    for (x, y), k, c in zip(np.asarray(xy, np.float64).reshape(-1, 2), np.asarray(kept, bool), colours, strict=True):
        p0, p1 = (round(x) + 1, round(y) + 1), (round(x + size) - 2, round(y + size) - 2)
        if k:
            cv2.rectangle(out, p0, p1, c, thick)
        else:
            cv2.rectangle(out, p0, p1, c, 1)
            cv2.line(out, p0, p1, c, 1, cv2.LINE_AA)
            cv2.line(out, (p0[0], p1[1]), (p1[0], p0[1]), c, 1, cv2.LINE_AA)
    return out


def _check_same_shape(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"images must have the same shape; got {a.shape} and {b.shape}")


def _cmap_rgb(name: str, values: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] through a matplotlib colour map to uint8 RGB (shape ``values.shape + (3,)``)."""
    from matplotlib import colormaps

    rgba = colormaps[name](np.asarray(values, np.float64))
    return np.rint(rgba[..., :3] * 255).astype(np.uint8)


def _figure(width: float = 6.0, height: float = 3.6):  # noqa: ANN202 - matplotlib Figure, imported lazily
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def figure_png(fig) -> bytes:  # noqa: ANN001 - matplotlib Figure
    """Render a matplotlib figure with the Agg canvas and return PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def ncc_histogram_png(
    ncc: np.ndarray,
    *,
    threshold: float,
    kept: np.ndarray | None = None,
    title: str = "NCC of candidate windows",
) -> bytes:
    """Histogram of window NCC values, kept and rejected stacked, with the keep threshold marked; PNG bytes.

    Args:
        ncc: NCC of every candidate window (kept or not), ``M`` values in [-1, 1].
        threshold: the keep threshold (dashed line).
        kept: ``M`` bool (windows can be rejected above the threshold, e.g. when they leave the crop); by
            default ``ncc >= threshold``.
        title: plot title.
    """
    v = np.asarray(ncc, np.float64).ravel()
    keep = v >= threshold if kept is None else np.asarray(kept, bool).ravel()
    fin = np.isfinite(v)
    v, keep = v[fin], keep[fin]
    fig = _figure()
    ax = fig.add_subplot()
    lo = min(float(v.min()) if v.size else 0.0, threshold - 0.1)
    bins = np.linspace(max(-1.0, lo), 1.0, 61)
    colours = [np.array(REJECTED_RGB) / 255, np.array(KEPT_RGB) / 255]
    labels = [f"rejected ({(~keep).sum()})", f"kept ({keep.sum()})"]
    ax.hist([v[~keep], v[keep]], bins=bins, stacked=True, color=colours, label=labels)
    ax.axvline(threshold, color="k", linestyle="--", label=f"threshold {threshold:g}")
    ax.set(xlabel="NCC", ylabel="windows", title=title)
    ax.legend(loc="upper left")
    return figure_png(fig)


def shift_angle_png(shift: np.ndarray, angle: np.ndarray, *, title: str = "Residual shift and angle") -> bytes:
    """Distributions of per-patch refinement: a 2-D histogram of ``(dx, dy)`` shifts and a histogram of angles.

    Args:
        shift: ``N x 2`` phone-window offsets ``(dx, dy)`` in pixels.
        angle: ``N`` rotation angles in degrees.
        title: figure title.
    """
    s = np.asarray(shift, np.float64).reshape(-1, 2)
    a = np.asarray(angle, np.float64).ravel()
    fig = _figure(9.0, 3.6)
    ax1, ax2, ax3 = fig.subplots(1, 3)
    mag = np.hypot(s[:, 0], s[:, 1]) if len(s) else np.zeros(1)
    ax1.hist(mag, bins=40, color="0.3")
    ax1.set(xlabel="|shift| (px)", ylabel="patches", title=f"median {np.median(mag):.2f} px")
    if len(s):
        r = max(1.0, float(np.abs(s).max()))
        ax2.hist2d(s[:, 0], s[:, 1], bins=31, range=[[-r, r], [-r, r]], cmap="Greys")
    ax2.set(xlabel="dx (px)", ylabel="dy (px)", title="shift (dx, dy)", aspect="equal")
    ax3.hist(a if a.size else np.zeros(1), bins=31, color="0.3")
    ax3.set(xlabel="angle (deg)", ylabel="patches", title="rotation")
    fig.suptitle(title)
    return figure_png(fig)


def kept_fraction_png(names: Sequence[str], fractions: Sequence[float], *, failed: Sequence[bool] = ()) -> bytes:
    """Bar chart of the kept fraction of candidate windows per pair, worst first; failed pairs in orange.

    Args:
        names: pair names.
        fractions: kept / candidate windows per pair, in [0, 1] (0 for failed pairs).
        failed: per-pair flag, drawn in the "rejected" colour.
    """
    f = np.asarray(fractions, np.float64)
    bad = np.asarray(failed, bool) if len(failed) else np.zeros(len(f), bool)
    order = np.argsort(f, kind="stable")
    fig = _figure(max(6.0, min(16.0, 0.25 * len(f) + 2)), 3.6)
    ax = fig.add_subplot()
    colours = [np.array(REJECTED_RGB if bad[i] else KEPT_RGB) / 255 for i in order]
    ax.bar(np.arange(len(f)), f[order], color=colours)
    if len(f) <= 40:
        ax.set_xticks(np.arange(len(f)), [names[i] for i in order], rotation=90, fontsize=7)
    else:
        ax.set_xticks([])
    ax.set(ylim=(0, 1), ylabel="kept fraction", xlabel=f"{len(f)} pairs, worst first", title="Kept windows per pair")
    return figure_png(fig)


def inliers_rmse_png(inliers: Sequence[float], rmse: Sequence[float], *, names: Sequence[str] = ()) -> bytes:
    """Scatter of homography inlier count against inlier RMSE (px), one dot per aligned pair."""
    x, y = np.asarray(inliers, np.float64), np.asarray(rmse, np.float64)
    fig = _figure()
    ax = fig.add_subplot()
    ax.scatter(x, y, s=18, color=np.array(KEPT_RGB) / 255)
    if len(names) and len(names) <= 30:
        for n, xi, yi in zip(names, x, y, strict=True):
            ax.annotate(str(n), (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set(xlabel="inliers", ylabel="inlier RMSE (px)", title="Alignment: inliers vs RMSE")
    if len(x) and np.all(x > 0) and x.max() / max(x.min(), 1) > 20:
        ax.set_xscale("log")
    return figure_png(fig)


def shift_field_png(
    image: np.ndarray,
    xy: np.ndarray,
    shift: np.ndarray,
    kept: np.ndarray,
    *,
    size: int,
    title: str = "Residual shift field",
) -> bytes:
    """Arrows of the per-window residual shift over the (grayed) phone crop, magnified to be visible; PNG bytes.

    The magnification makes the 95th-percentile kept shift (at least 0.1 px) half a window long; arrows are
    capped at one window (rejected windows often have large, meaningless shifts).

    Args:
        image: phone crop, ``H x W x 3`` uint8 RGB (background).
        xy: ``M x 2`` window top-left ``(x, y)``.
        shift: ``M x 2`` refined offsets ``(dx, dy)`` in pixels.
        kept: ``M`` bool.
        size: window side ``P`` (arrows start at window centres).
        title: plot title (the magnification is appended).
    """
    h, w = image.shape[:2]
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    s = np.asarray(shift, np.float64).reshape(-1, 2)
    k = np.asarray(kept, bool)
    centres = xy + (size - 1) / 2
    mag = np.hypot(s[:, 0], s[:, 1])
    ref = mag[k] if k.any() else mag
    top = float(np.percentile(ref, 95)) if len(ref) else 0.0
    gain = 0.45 * size / max(top, 0.1)
    s = s * np.minimum(1.0, size / np.maximum(mag * gain, 1e-9))[:, None]  # no drawn arrow longer than a window
    fig = _figure(7.0, 7.0 * h / w + 0.6)
    ax = fig.add_subplot()
    ax.imshow(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cmap="gray", alpha=0.5, extent=(-0.5, w - 0.5, h - 0.5, -0.5))
    for mask, rgb, label in ((k, KEPT_RGB, "kept"), (~k, REJECTED_RGB, "rejected")):
        if mask.any():
            c = centres[mask]
            ax.quiver(c[:, 0], c[:, 1], s[mask, 0] * gain, s[mask, 1] * gain, angles="xy", scale_units="xy",
                      scale=1.0, color=np.array(rgb) / 255, width=0.004, label=label)  # fmt: skip
    ax.set(xlim=(-0.5, w - 0.5), ylim=(h - 0.5, -0.5), title=f"{title} (arrows x{gain:.3g}, capped at {size} px)")
    ax.set_axis_off()
    if len(s):
        ax.legend(loc="lower right", fontsize=8)
    return figure_png(fig)


def mosaic_preview(mosaic: np.ndarray, raw: dict) -> np.ndarray:
    """A RAW mosaic patch (``P x P`` or ``P x P x 1`` uint16) as viewable uint8 RGB.

    :func:`dpedkit.io.camera.render_mosaic` with the levels and as-shot white balance of ``raw`` (a pair's
    ``sources.phone`` record: ``cfa``, ``black_level``, ``white_level``, ``as_shot_wb``; grey world without one).
    For viewing only: the stored mosaic is what trains.
    """
    from dpedkit.io.camera import render_mosaic

    wb = raw.get("as_shot_wb")
    gains = np.asarray([v or 1.0 for v in wb[:3]], np.float32) if wb else None
    return render_mosaic(mosaic, raw["cfa"], float(np.mean(raw["black_level"])), float(raw["white_level"]), gains)


def patch_strip(
    phone: np.ndarray, dslr: np.ndarray, *, labels: tuple[str, str] | None = None, footer: str = ""
) -> np.ndarray:
    """One phone patch and its DSLR twin side by side with a 2-px white gap, optionally labelled.

    Args:
        phone: ``P x P x 3`` uint8.
        dslr: ``P x P x 3`` uint8.
        labels: the words written above the two columns (``("phone", "DSLR")``); None: no labels.
        footer: a line written below both (``"NCC 0.953"``); empty: none.

    Returns:
        ``P x (2P + 2) x 3`` uint8 without labels or footer; with them, a patch side below 64 px is first
        enlarged (nearest neighbour, an integer factor) so the words fit, and a 14-px white band is added above
        (labels) and below (footer), written in black.
    """
    if labels is None and not footer:
        gap = np.full((phone.shape[0], 2, 3), 255, np.uint8)
        return np.concatenate([phone, gap, dslr], axis=1)
    k = -(-64 // phone.shape[0])  # enlarge small patches (32 px ZRR) so a word fits over each column
    if k > 1:
        phone, dslr = (np.repeat(np.repeat(a, k, axis=0), k, axis=1) for a in (phone, dslr))
    strip = patch_strip(phone, dslr)
    p = phone.shape[1]
    parts = []
    if labels is not None:
        head = _band(strip.shape[1])
        for x0, word in zip((0, p + 2), labels, strict=True):
            _write(head, word, x0, p)
        parts.append(head)
    parts.append(strip)
    if footer:
        foot = _band(strip.shape[1])
        _write(foot, footer, 0, strip.shape[1])
        parts.append(foot)
    return np.concatenate(parts, axis=0)


def label_columns(image: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """``image`` (uint8 RGB) with a white band above it naming its equal-width columns, left to right."""
    width = image.shape[1] // len(labels)
    head = _band(image.shape[1])
    for i, word in enumerate(labels):
        _write(head, word, i * width, width)
    return np.concatenate([head, image], axis=0)


_BAND = 14  # rows of a label band
_FONT, _SCALE = cv2.FONT_HERSHEY_SIMPLEX, 0.38


def _band(width: int) -> np.ndarray:
    return np.full((_BAND, width, 3), 255, np.uint8)


def _write(band: np.ndarray, text: str, x0: int, width: int) -> None:
    """Write ``text`` in black, centred in columns ``[x0, x0 + width)`` of ``band`` (in place)."""
    (tw, th), _ = cv2.getTextSize(text, _FONT, _SCALE, 1)
    x = x0 + max(0, (width - tw) // 2)
    cv2.putText(band, text, (x, (_BAND + th) // 2), _FONT, _SCALE, (0, 0, 0), 1, cv2.LINE_AA)
