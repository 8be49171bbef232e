"""Per-patch refinement: cut an aligned phone/DSLR pair into P x P patch pairs (the DPED recipe).

Input is one aligned pair: the phone crop and the DSLR image resampled onto exactly the same pixel grid
(``H x W x 3`` RGB uint8, same shape). A non-overlapping grid of ``P x P`` windows covers the crop; the DSLR
window stays at its grid position and the phone window is moved to maximise the grayscale normalised
cross-correlation (NCC) with it:

1. integer search: ``cv2.matchTemplate(TM_CCOEFF_NORMED)`` of the DSLR window over the phone neighbourhood
   and a parabola through the peak. By default (``search_scale=2``) on both images halved, over +-8 px first
   and over ``+-radius`` only when that peak is on the border or below ``ncc_min`` (a start good to
   ~0.2-0.5 px); ``search_scale=1`` searches ``+-radius`` at full resolution (~0.1-0.3 px);
2. sub-pixel shift and rotation (``rotation="fit"``, the default): Gauss-Newton on the zero-mean, unit-norm
   windows (i.e. maximising NCC) over ``(dx, dy, angle)`` about the window centre, with the ESM Jacobian (mean
   of the DSLR and phone gradients). The windows of a grid row are refined together in small batches
   (vectorised normalisation, Jacobians, normal equations); the first step linearises at the integer peak
   (a slice, no interpolation), later ones at one cubic ``P x P`` warp each (1.2-1.6 warps a window in all). It
   recovers known shifts to ~0.003 px (median) and angles to ~0.01 degree on synthetic warps, where the
   parabola alone is biased by 0.05-0.2 px. The angle costs one more Jacobian column, not a search: ~1.07x
   ``rotation="none"`` (the same Gauss-Newton on ``(dx, dy)`` only), against ~3.2x for ``rotation="search"``,
   the naive search (rotate the neighbourhood to ``angle_steps`` angles and re-match each at full
   resolution; parabola sub-pixel, coarser);
3. the phone patch is resampled once (``cv2.warpAffine``, cubic) at the refined shift and angle, its NCC with
   the DSLR patch is computed by :func:`ncc` on the stored uint8 arrays (so re-checking a stored pair from a
   file gives the same number) and the pair is kept when ``NCC >= ncc_min``.

Cost (one thread, 13 MP crop, ~1,230 windows): ~0.7 CPU-s in all, about 30 % the cubic RGB cut-outs, 25 %
the Gauss-Newton arithmetic, 10 % its gray warps, 10 % the search (``search_scale=1``: ~1.0 CPU-s).

Windows lie at ``x0 = gx * P``, ``y0 = gy * P`` over the whole crop; the search reads reflected borders, and a
window whose refined footprint reaches more than ``max_outside`` px beyond the crop is recorded, not kept.
Every window's result (kept or not) is returned in :attr:`PatchSet.candidates` for ``dpedkit inspect``.

Convention (see :mod:`dpedkit`): for a window with top-left ``(x0, y0)`` and centre
``c = (x0, y0) + (P - 1) / 2``, DSLR pixel ``q`` is paired with phone point
``p = c + shift + R(angle) (q - c)``, where ``R(a) = [[cos a, -sin a], [sin a, cos a]]`` acts on ``(x, y)``
(positive angles turn +x towards +y: clockwise on screen, since y points down). ``shift = (dx, dy)`` px.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from dpedkit.config import PatchConfig
from dpedkit.errors import InputError, check_rgb_uint8

log = logging.getLogger(__name__)

_INTER = {"linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}
_NEAR_RADIUS = 4  # half-res px searched first (search_scale=2); wider only when not clearly found there
_GN_ITERS = 4  # Gauss-Newton iterations at most (1-2 are typical from the correlation peak)
_GN_CHUNK = 8  # windows refined together (their arrays stay in cache)
_GN_TOL = 0.02  # px; stop when an update moves the window (centre and corners) less than this
_GN_SKIP_MARGIN = 0.3  # windows whose correlation peak is below ncc_min - this are not refined further
_GN_MAX_MOVE = 3.0  # px; a Gauss-Newton result further than this from the correlation peak is discarded
_GRAY = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601 luma, as cv2.COLOR_RGB2GRAY


@dataclass
class PatchSet:
    """Patch pairs of one aligned pair, plus the refinement record of every candidate window.

    Attributes:
        phone: ``K x P x P x 3`` uint8, kept phone patches resampled at the refined shift and angle.
        dslr: ``K x P x P x 3`` uint8, the DSLR windows at their grid positions.
        xy: ``K x 2`` int32, grid window top-left ``(x, y)`` in crop pixels.
        shift: ``K x 2`` float32, refined phone offset ``(dx, dy)`` px (see the module convention).
        angle: ``K`` float32, refined phone rotation in degrees.
        ncc: ``K`` float32, :func:`ncc` of the stored uint8 ``phone`` and ``dslr`` patches.
        texture: ``K`` float32, :func:`texture` of the DSLR patch (mean gradient magnitude, levels/px).
        candidates: every grid window, kept or not: ``"xy"`` (M x 2 int32), ``"grid"`` (M x 2 int32, column and
            row index), ``"shift"`` (M x 2 float32), ``"angle"`` (M float32), ``"ncc"`` (M float32), ``"texture"``
            (M float32), ``"kept"`` (M bool), ``"at_radius"`` (M bool: the best integer shift lies on the
            search border, so the true one may be beyond ``radius``; with ``search_scale=2``: the half-res
            peak does and the refined shift is within 1 px of ``+-radius``), ``"outside"`` (M bool: the refined
            window reaches more than ``max_outside`` px beyond the crop; never kept).
    """

    phone: np.ndarray
    dslr: np.ndarray
    xy: np.ndarray
    shift: np.ndarray
    angle: np.ndarray
    ncc: np.ndarray
    texture: np.ndarray
    candidates: dict[str, np.ndarray] = field(default_factory=dict)
    baseline: np.ndarray | None = None  # raw2rgb: LibRaw's processing of each phone window (``K x P x P x 3``)
    timings: dict[str, float] = field(default_factory=dict)  # seconds of each step (see extract_patches)

    def __len__(self) -> int:
        return len(self.xy)


def ncc(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised cross-correlation of two same-shape patches on their luma (BT.601), in [-1, 1].

    Args:
        a: ``h x w x 3`` RGB or ``h x w`` gray patch, uint8 or float (any range; NCC is gain/offset invariant).
        b: same height and width as ``a`` (RGB or gray).

    Returns:
        ``sum(a' b') / (|a'| |b'|)`` with ``a'``, ``b'`` the zero-mean luma (float64); 0.0 if either is flat.

    Raises:
        InputError: the shapes differ.

    Example:
        >>> x = np.arange(100, dtype=np.uint8).reshape(10, 10)
        >>> round(ncc(x, 255 - x), 6)
        -1.0
    """
    ga, gb = _luma(a), _luma(b)
    if ga.shape != gb.shape:
        raise InputError(None, f"ncc needs same-shape patches; got {np.shape(a)} and {np.shape(b)}")
    return _ncc_luma(ga, gb)


def texture(patch: np.ndarray) -> float:
    """Texture measure of a patch: mean luma gradient magnitude (grey levels per px, central differences).

    Args:
        patch: ``h x w x 3`` RGB or ``h x w`` gray, uint8 (0..255), uint16 (0..65535) or float on the 0..255 scale.

    Returns:
        ``mean(sqrt(gx^2 + gy^2))`` over the patch (``np.gradient``, one-sided at the border); 0 when flat.
    """
    return _texture_luma(_luma(patch))


def extract_patches(phone: np.ndarray, dslr: np.ndarray, *, config: PatchConfig = PatchConfig()) -> PatchSet:
    """Refine every grid window of an aligned pair and keep the well-matched patch pairs.

    Args:
        phone: ``H x W x 3`` uint8 RGB phone crop (or uint16: the patches keep the sample type).
        dslr: ``H x W x 3`` RGB DSLR image resampled onto the phone crop's grid (same shape and sample type).
        config: the options (:class:`PatchConfig`).

    Returns:
        A :class:`PatchSet`; windows are the ``floor(W / P) x floor(H / P)`` grid at ``x0 = gx * P``,
        ``y0 = gy * P`` in row-major order (empty when the crop is smaller than one patch).

    ``timings`` of the result: wall seconds of its steps: ``setup`` (luma images), ``search`` (integer search),
    ``refine`` (Gauss-Newton), ``resample`` (the stored patches cut out, their NCC checked).

    With ``config.moving == "dslr"`` the roles swap: the phone windows stay exactly on the grid and the DSLR
    window of each is moved and resampled (``shift``/``angle`` are then the DSLR window's).

    Raises:
        InputError: the arrays are not ``H x W x 3`` uint8 (or uint16) of the same shape and type.
    """
    _check_pair(phone, dslr)
    if config.moving == "dslr":
        out = extract_patches(dslr, phone, config=replace(config, moving="phone"))
        return replace(out, phone=out.dslr, dslr=out.phone)
    p = config.size
    h, w = phone.shape[:2]
    grid = np.array([(gx, gy) for gy in range(h // p) for gx in range(w // p)], np.int32).reshape(-1, 2)
    ctx = _Context(phone, dslr, config)
    out_phone, out_dslr = np.empty((len(grid), p, p, 3), phone.dtype), np.empty((len(grid), p, p, 3), dslr.dtype)
    rows, n, pos = [], w // p, 0
    for gy in range(h // p if n else 0):
        rows.append(ctx.refine_row(gy, out_phone[pos : pos + n]))  # its phone patches land there
        keep = np.flatnonzero(rows[-1]["kept"])
        if len(keep) < n:
            out_phone[pos : pos + len(keep)] = out_phone[pos : pos + n][keep]
        for i, k in enumerate(keep):  # (np.take from the strided row view is 15x slower)
            out_dslr[pos + i] = dslr[gy * p : gy * p + p, k * p : k * p + p]
        pos += len(keep)
    cand: dict[str, np.ndarray] = {"xy": (grid * p).astype(np.int32), "grid": grid}
    for key, dtype, shape in _ROW_KEYS:
        cand[key] = np.concatenate([r[key] for r in rows]).astype(dtype) if rows else np.zeros(shape, dtype)
    cand["kept"] = np.concatenate([r["kept"] for r in rows]) if rows else np.zeros(0, bool)
    idx = np.flatnonzero(cand["kept"])
    out = PatchSet(
        phone=out_phone[:pos],
        dslr=out_dslr[:pos],
        xy=cand["xy"][idx],
        shift=cand["shift"][idx],
        angle=cand["angle"][idx],
        ncc=cand["ncc"][idx],
        texture=cand["texture"][idx],
        candidates=cand,
        timings=ctx.timings,
    )
    log.debug("patches: %d of %d windows kept (ncc >= %.2f)", len(idx), len(grid), config.ncc_min)
    return out


# --------------------------------------------------------------------------------------------------- internals


# per-window arrays of a row: key, dtype stored, shape when there are no windows
_ROW_KEYS = (
    ("shift", np.float32, (0, 2)),
    ("angle", np.float32, (0,)),
    ("ncc", np.float32, (0,)),
    ("texture", np.float32, (0,)),
    ("at_radius", bool, (0,)),
    ("outside", bool, (0,)),
)


def _luma(img: np.ndarray) -> np.ndarray:
    """Luma as float32 on the 0..255 scale (a ``uint16`` image's divided by 257)."""
    a = np.asarray(img)
    g = a.astype(np.float32) @ _GRAY if a.ndim == 3 else a.astype(np.float32)
    return g / np.float32(257.0) if a.dtype == np.uint16 else g


def _ncc_luma(ga: np.ndarray, gb: np.ndarray) -> float:
    ga = ga.astype(np.float64) - ga.mean(dtype=np.float64)
    gb = gb.astype(np.float64) - gb.mean(dtype=np.float64)
    den = math.sqrt(float((ga * ga).sum()) * float((gb * gb).sum()))
    return float((ga * gb).sum() / den) if den > 1e-9 else 0.0


def _texture_luma(gray: np.ndarray) -> float:
    gy, gx = np.gradient(gray)
    return float(np.sqrt(gx * gx + gy * gy).mean())


def _check_pair(phone: np.ndarray, dslr: np.ndarray) -> None:
    check_rgb_uint8(phone, "phone", deep=True)
    check_rgb_uint8(dslr, "dslr", deep=True)
    if phone.dtype != dslr.dtype:
        raise InputError(None, f"phone ({phone.dtype}) and dslr ({dslr.dtype}) must have the same sample type")
    if phone.shape != dslr.shape:
        raise InputError(None, f"phone {phone.shape} and dslr {dslr.shape} must have the same shape (aligned pair)")


def _normalise(win: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zero-mean, unit-norm copies of ``m x P x P`` float32 windows (flat ones all zero) and the norms."""
    flat = win.reshape(len(win), -1)
    c = flat - flat.mean(axis=1, dtype=np.float64).astype(np.float32)[:, None]
    norm = np.sqrt(_dots(c, c).astype(np.float64))
    c *= np.divide(1.0, norm, out=np.zeros_like(norm), where=norm > 1e-6).astype(np.float32)[:, None]
    return c.reshape(win.shape), norm


def _ncc_rows(patches: np.ndarray, gray: np.ndarray) -> np.ndarray:
    """:func:`ncc` of ``m x P x P x 3`` uint8 patches with ``m x P x P`` float32 luma windows (float64)."""
    if not len(patches):
        return np.zeros(0)
    a = (patches.astype(np.float32) @ _GRAY).reshape(len(patches), -1).astype(np.float64)
    b = gray.reshape(a.shape).astype(np.float64)
    a -= a.mean(axis=1, keepdims=True)
    b -= b.mean(axis=1, keepdims=True)
    den = np.sqrt(_dots(a, a) * _dots(b, b))
    return np.divide(_dots(a, b), den, out=np.zeros(len(a)), where=den > 1e-9)


def _gradient(win: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.gradient`` along x and y of ``m x h x w`` float32 windows (central inside, one-sided on the border)."""
    gx, gy = np.empty_like(win), np.empty_like(win)
    _diff_x(win, gx)
    gx[:, :, 1:-1] *= np.float32(0.5)
    np.subtract(win[:, :, 1], win[:, :, 0], out=gx[:, :, 0])
    np.subtract(win[:, :, -1], win[:, :, -2], out=gx[:, :, -1])
    np.subtract(win[:, 2:], win[:, :-2], out=gy[:, 1:-1])
    gy[:, 1:-1] *= np.float32(0.5)
    np.subtract(win[:, 1], win[:, 0], out=gy[:, 0])
    np.subtract(win[:, -1], win[:, -2], out=gy[:, -1])
    return gx, gy


def _diff_x(win: np.ndarray, out: np.ndarray) -> None:
    """``out[..., 1:-1] = win[..., 2:] - win[..., :-2]`` for ``m x h x w`` C-contiguous arrays.

    Computed over all pixels as one flat run (~3x faster than row by row); the first and last column of ``out``
    then hold differences across rows or windows: the caller overwrites them.
    """
    if not out.flags.c_contiguous:  # (reshape would write into a copy)
        raise ValueError("_diff_x needs a C-contiguous output")
    flat, dst = win.reshape(-1), out.reshape(-1)
    np.subtract(flat[2:], flat[:-2], out=dst[1:-1])


def _dots(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise dot products of ``m x N`` arrays (batched BLAS dot: ~10x faster than einsum or ``a @ b.T``)."""
    return (a[:, None, :] @ b[:, :, None])[:, 0, 0]


def _take(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``a[idx]`` for sorted unique ``idx``, without the copy when it selects everything."""
    return a if len(idx) == len(a) else a[idx]


def _luma_image(img: np.ndarray, pad: int = 0) -> np.ndarray:
    """:func:`_luma` of a whole RGB image with ``pad`` px of reflected border (``BORDER_REFLECT_101``).

    On the 0..255 scale whatever the sample type (a ``uint16`` image's luma is divided by 257), so that texture
    and every other threshold mean the same for 8- and 16-bit images.

    Row bands go through one reused, cache-sized float32 buffer and the luma is written straight into the output
    (~30 % cheaper than a temporary per band); the border is mirrored in place.
    """
    h, w = img.shape[:2]
    if pad >= min(h, w):  # the border reflects more than once
        return cv2.copyMakeBorder(_luma_image(img), pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
    out = np.empty((h + 2 * pad, w + 2 * pad), np.float32)
    weights = _GRAY / np.float32(257.0) if img.dtype == np.uint16 else _GRAY
    buf = np.empty((16, w, 3), np.float32)
    for y in range(0, h, 16):  # (one BLAS call per image row whatever the band height: the same sums)
        band = buf[: min(16, h - y)]
        np.copyto(band, img[y : y + len(band)])
        np.matmul(band, weights, out=out[pad + y : pad + y + len(band), pad : pad + w])
    if pad:
        out[pad : pad + h, :pad] = out[pad : pad + h, pad + 1 : 2 * pad + 1][:, ::-1]
        out[pad : pad + h, -pad:] = out[pad : pad + h, -2 * pad - 1 : -pad - 1][:, ::-1]
        out[:pad] = out[pad + 1 : 2 * pad + 1][::-1]
        out[-pad:] = out[-2 * pad - 1 : -pad - 1][::-1]
    return out


def _rot(deg: float) -> np.ndarray:
    a = math.radians(deg)
    return np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])


def _subpixel_peak(res: np.ndarray) -> tuple[float, float, float, bool]:
    """Peak of a correlation map: ``(x, y)`` with a 1-D parabola fit per axis, its value, on-border flag."""
    cv2.patchNaNs(res, -1.0)  # in place (flat neighbourhoods)
    _, peak, _, (ix, iy) = cv2.minMaxLoc(res)
    rh, rw = res.shape
    border = ix in (0, rw - 1) or iy in (0, rh - 1)

    def vertex(lo: float, c: float, hi: float) -> float:
        den = lo - 2.0 * c + hi
        return min(max(0.5 * (lo - hi) / den, -0.5), 0.5) if den < 0 else 0.0

    fx = vertex(res[iy, ix - 1].item(), peak, res[iy, ix + 1].item()) if 0 < ix < rw - 1 else 0.0
    fy = vertex(res[iy - 1, ix].item(), peak, res[iy + 1, ix].item()) if 0 < iy < rh - 1 else 0.0
    return ix + fx, iy + fy, float(peak), border


class _Context:
    """Per-pair state: grayscale images padded for the search, the options and the row refiner."""

    def __init__(self, phone: np.ndarray, dslr: np.ndarray, config: PatchConfig) -> None:
        t0 = time.perf_counter()
        self.cfg = config
        self.phone = phone
        self.dslr = dslr
        self.pad = 2 * ((config.radius + 9) // 2)  # search + Gauss-Newton moves + rotation + cubic; even
        self.gphone = _luma_image(phone, self.pad)
        self.gdslr = _luma_image(dslr)
        if config.search_scale == 2:  # same pixel phase on both sides (even pad): half-res shift x 2 = shift
            self.half = [
                cv2.resize(g, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA) for g in (self.gphone, self.gdslr)
            ]
        self.centre = (config.size - 1) / 2.0
        v, u = np.mgrid[0 : config.size, 0 : config.size] - self.centre
        self.uv = (u.astype(np.float32), v.astype(np.float32))
        self.timings = dict.fromkeys(("setup", "search", "refine", "resample"), 0.0)
        self._clock("setup", t0)

    def _clock(self, step: str, since: float) -> float:
        """Add the seconds since ``since`` to ``step``; the time now."""
        now = time.perf_counter()
        self.timings[step] += now - since
        return now

    def refine_row(self, gy: int, patches: np.ndarray) -> dict[str, np.ndarray]:
        """Refine the grid windows of row ``gy`` together, resample their phone patches into ``patches``.

        Returns:
            Per-window arrays: ``_ROW_KEYS`` (``ncc`` float64, exact) and ``kept``.
        """
        cfg, p = self.cfg, self.cfg.size
        n, y0 = self.phone.shape[1] // p, gy * p
        x0s = np.arange(n) * p
        tmpl = np.ascontiguousarray(self.gdslr[y0 : y0 + p, : n * p].reshape(p, n, p).transpose(1, 0, 2))
        tgx, tgy = _gradient(tmpl)  # texture measure and Gauss-Newton Jacobian
        mag = tgx * tgx
        mag += tgy * tgy
        texture = np.sqrt(mag, out=mag).mean(axis=(1, 2))  # (cv2.magnitude varies with alignment)
        t = time.perf_counter()
        start, angle = np.zeros((n, 2)), np.zeros(n)
        peak, at_radius = np.zeros(n), np.zeros(n, bool)
        for k in range(n):
            if cfg.rotation == "search":
                (start[k, 0], start[k, 1]), angle[k], at_radius[k] = self._search_rotation(tmpl[k], x0s[k], y0)
            else:
                start[k, 0], start[k, 1], peak[k], at_radius[k] = self._search(tmpl[k], x0s[k], y0)
        t = self._clock("search", t)
        shift = start.copy()
        todo = np.flatnonzero(peak >= cfg.ncc_min - _GN_SKIP_MARGIN) if cfg.rotation != "search" else []
        for i in range(0, len(todo), _GN_CHUNK):  # a few windows at a time: the arrays stay in cache
            c = todo[i : i + _GN_CHUNK]
            shift[c], angle[c] = self._gauss_newton(tmpl[c], (tgx[c], tgy[c]), x0s[c], y0, start[c])
        t = self._clock("refine", t)
        self._extract(patches, x0s, y0, shift, angle)
        score = _ncc_rows(patches, tmpl)
        if cfg.rotation != "search":
            # far from the correlation peak or stuck at the angle limit: keep it only if it scores better
            at_limit = (cfg.max_angle > 0) & (np.abs(angle) >= cfg.max_angle)
            check = np.flatnonzero(at_limit | (np.hypot(*(shift - start).T) > 1.0))
            if len(check):
                alt = np.empty((len(check), p, p, 3), patches.dtype)
                self._extract(alt, x0s[check], y0, start[check], np.zeros(len(check)))
                alt_score = _ncc_rows(alt, tmpl[check])
                better = alt_score > score[check]
                k = check[better]
                shift[k], angle[k], patches[k], score[k] = start[k], 0.0, alt[better], alt_score[better]
            if cfg.search_scale == 2:  # a half-res peak on the border: only if the result is there too
                at_radius &= np.abs(shift).max(axis=1) >= cfg.radius - 1
        outside = self._reach_outside(x0s, y0, shift, angle) > cfg.max_outside
        self._clock("resample", t)
        return {
            "shift": shift,
            "angle": angle,
            "ncc": score,
            "texture": texture,
            "at_radius": at_radius,
            "outside": outside,
            "kept": (score >= cfg.ncc_min) & ~outside,  # decided on the exact (float64) NCC
        }

    def _search(self, tmpl: np.ndarray, x0: int, y0: int) -> tuple[float, float, float, bool]:
        """Integer search + parabola: shift ``(dx, dy)``, peak NCC, peak-on-border flag."""
        p, r, pad = self.cfg.size, self.cfg.radius, self.pad
        if self.cfg.search_scale == 1:
            region = self.gphone[y0 + pad - r : y0 + pad + p + r, x0 + pad - r : x0 + pad + p + r]
            px, py, peak, border = _subpixel_peak(cv2.matchTemplate(region, tmpl, cv2.TM_CCOEFF_NORMED))
            return px - r, py - r, peak, border
        gphone, gdslr = self.half
        q, x, y, hp, far = p // 2, x0 // 2, y0 // 2, pad // 2, (r + 1) // 2
        tmpl = gdslr[y : y + q, x : x + q]
        for r in (min(_NEAR_RADIUS, far), far):  # near first; widen unless clearly found there
            region = gphone[y + hp - r : y + hp + q + r, x + hp - r : x + hp + q + r]
            px, py, peak, border = _subpixel_peak(cv2.matchTemplate(region, tmpl, cv2.TM_CCOEFF_NORMED))
            if not border and peak >= self.cfg.ncc_min:
                break
        lim = float(self.cfg.radius)  # odd radius: the half-res border is one px further
        return min(max(2.0 * (px - r), -lim), lim), min(max(2.0 * (py - r), -lim), lim), peak, border

    def _gauss_newton(
        self, tmpl: np.ndarray, grad: tuple[np.ndarray, np.ndarray], x0s: np.ndarray, y0: int, start: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Refine ``(dx, dy[, angle])`` of ``m`` windows of a row from their correlation peaks, in lock step.

        Gauss-Newton on the zero-mean, unit-norm windows (i.e. maximising NCC) with the efficient second-order
        minimisation (ESM) Jacobian: the mean of the DSLR window's gradients and the phone window's, which
        converges even when the phone is blurrier than the DSLR (the DSLR gradients alone overshoot the normal
        matrix and crawl). The first step linearises at the rounded peak (an integer shift: the phone window is a
        plain slice, no interpolation), each later one at the current estimate (one cubic ``P x P`` warp; the
        Jacobian is recomputed each time: keeping the previous one biased blurred windows by up to 0.1 px). A
        window falls back to its peak (angle 0) when degenerate or runaway.

        Returns:
            ``m x 2`` shifts and ``m`` angles in degrees.
        """
        m, p, pad = len(tmpl), self.cfg.size, self.pad
        rotate = self.cfg.rotation == "fit"
        tn, tnorm = _normalise(tmpl)
        tn = tn.reshape(m, -1)
        # 4x the Jacobian (central differences without the 1/2, ESM mean without the 1/2): steps are 4 H^-1 J^T r
        scale = np.divide(2.0, tnorm, out=np.zeros_like(tnorm), where=tnorm > 1e-6).astype(np.float32)[:, None, None]
        tgrad = (grad[0] * scale, grad[1] * scale)
        est = np.zeros((m, 3))
        est[:, :2] = np.rint(start)
        ok = tnorm > 1e-6
        active = np.flatnonzero(ok)
        win = np.empty_like(tmpl)
        lim = math.radians(self.cfg.max_angle)
        flags = cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP
        for it in range(_GN_ITERS):
            if not len(active):  # every window left is flat (a blown-out sky: OpenCV's correlation of flat is 1)
                break
            for k in active:
                if it == 0:
                    x, y = int(x0s[k] + pad + est[k, 0]), int(y0 + pad + est[k, 1])
                    win[k] = self.gphone[y : y + p, x : x + p]
                else:
                    mat = self._affine(x0s[k] + pad, y0 + pad, est[k, 0], est[k, 1], math.degrees(est[k, 2]))
                    cv2.warpAffine(self.gphone, mat, (p, p), dst=win[k], flags=flags, borderMode=cv2.BORDER_REFLECT_101)
            wn, norm = _normalise(_take(win, active))
            good = norm > 1e-6
            sd, hess = self._jacobian(wn, _take(tgrad[0], active), _take(tgrad[1], active))
            if it == 0:
                ev = np.linalg.eigvalsh(hess)
                good &= ev[:, 0] > 1e-6 * ev[:, -1]
            hess[~good] = np.eye(len(hess[0]))
            res = (_take(tn, active) - wn.reshape(len(active), -1))[:, :, None]
            step = 4.0 * np.linalg.solve(hess, (sd @ res).astype(np.float64))[:, :, 0]
            step[~good] = 0.0
            ok[active[~good]] = False
            est[active, : step.shape[1]] += step
            if rotate:
                est[active, 2] = np.clip(est[active, 2], -lim, lim)
            moving = np.abs(step[:, 0]) + np.abs(step[:, 1]) >= _GN_TOL
            if rotate:
                moving |= np.abs(step[:, 2]) * self.centre >= _GN_TOL
            moving &= good
            active = active[moving]
        bad = ~ok | ~np.isfinite(est).all(axis=1) | (np.hypot(*(est[:, :2] - start).T) > _GN_MAX_MOVE)
        est[bad, :2], est[bad, 2] = start[bad], 0.0
        return est[:, :2], np.degrees(est[:, 2])

    def _jacobian(self, wn: np.ndarray, tgx: np.ndarray, tgy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """4x the ESM Jacobian rows ``a x c x P^2`` (d/dx, d/dy[, d/d(angle)]) and normal matrices ``a x c x c``.

        ``wn`` are the normalised phone windows, ``tgx``/``tgy`` 2x the normalised DSLR window gradients.
        """
        a, p = wn.shape[:2]
        c = 3 if self.cfg.rotation == "fit" else 2
        sd = np.empty((c, a, p, p), np.float32)  # column-major here, so that each column is one contiguous run
        gx, gy = sd[0], sd[1]
        _diff_x(wn, gx)  # central differences, 0 on the border
        np.subtract(wn[:, 2:], wn[:, :-2], out=gy[:, 1:-1])  # (as Sobel ksize 1 with reflected borders)
        gx[:, :, 0] = gx[:, :, -1] = gy[:, 0] = gy[:, -1] = 0.0
        gx += tgx
        gy += tgy
        if c == 3:
            u, v = self.uv
            np.multiply(gy, u, out=sd[2])  # the sample point moves by (-v, u)
            sd[2] -= gx * v
        sd = sd.reshape(c, a, p * p).transpose(1, 0, 2)
        hess = np.empty((a, c, c))
        for i in range(c):
            for j in range(i + 1):
                hess[:, i, j] = hess[:, j, i] = _dots(sd[:, i], sd[:, j])
        return sd, hess

    def _affine(self, x0: float, y0: float, sx: float, sy: float, angle: float) -> np.ndarray:
        """2x3 matrix taking patch pixel ``(u, v)`` to its phone point (for ``WARP_INVERSE_MAP``)."""
        c, s, k = math.cos(math.radians(angle)), math.sin(math.radians(angle)), self.centre
        return np.array([[c, -s, x0 + sx + k - (c - s) * k], [s, c, y0 + sy + k - (s + c) * k]])

    def _extract(self, out: np.ndarray, x0s: np.ndarray, y0: int, shift: np.ndarray, angle: np.ndarray) -> None:
        """Resample the phone patches (RGB, ``interpolation``) at ``shift``/``angle`` into ``out``."""
        p, flags = self.cfg.size, _INTER[self.cfg.interpolation] | cv2.WARP_INVERSE_MAP
        for k in range(len(out)):
            mat = self._affine(float(x0s[k]), y0, float(shift[k, 0]), float(shift[k, 1]), float(angle[k]))
            cv2.warpAffine(self.phone, mat, (p, p), dst=out[k], flags=flags, borderMode=cv2.BORDER_REPLICATE)

    def _reach_outside(self, x0s: np.ndarray, y0: int, shift: np.ndarray, angle: np.ndarray) -> np.ndarray:
        """How far (px) each refined window's corner pixel centres reach beyond the crop's pixel centres."""
        k, a = self.centre, np.radians(angle)[:, None]
        du, dv = np.array([-k, k, -k, k]), np.array([-k, -k, k, k])  # corners relative to the centre
        cx = x0s[:, None] + k + shift[:, :1] + np.cos(a) * du - np.sin(a) * dv
        cy = y0 + k + shift[:, 1:] + np.sin(a) * du + np.cos(a) * dv
        h, w = self.phone.shape[:2]
        over = np.maximum(np.maximum(-cx, cx - (w - 1)), np.maximum(-cy, cy - (h - 1)))
        return over.max(axis=1)

    def _search_rotation(self, tmpl: np.ndarray, x0: int, y0: int) -> tuple[tuple[float, float], float, bool]:
        """Naive rotation search: rotate the neighbourhood to each angle, re-match, refine the best angle."""
        p, r, pad = self.cfg.size, self.cfg.radius, self.pad
        n = p + 2 * r
        c = np.array([x0 + self.centre, y0 + self.centre])
        angles = np.linspace(-self.cfg.max_angle, self.cfg.max_angle, self.cfg.angle_steps)
        peaks = []
        for a in angles:
            rot = _rot(float(a))
            # region pixel u (absolute v = u + (x0 - r, y0 - r)) samples phone at c + R (v - c), padded coords
            t = c + rot @ (np.array([x0 - r, y0 - r]) - c) + pad
            region = cv2.warpAffine(self.gphone, np.c_[rot, t], (n, n), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
            peaks.append(_subpixel_peak(cv2.matchTemplate(region, tmpl, cv2.TM_CCOEFF_NORMED)))
        vals = np.array([pk[2] for pk in peaks])
        k = int(vals.argmax())
        step = float(angles[1] - angles[0])
        angle = float(angles[k])
        if 0 < k < len(angles) - 1:
            den = vals[k - 1] - 2 * vals[k] + vals[k + 1]
            if den < 0:
                angle += step * float(np.clip(0.5 * (vals[k - 1] - vals[k + 1]) / den, -0.5, 0.5))
        s = _rot(float(angles[k])) @ np.array([peaks[k][0] - r, peaks[k][1] - r])
        return (float(s[0]), float(s[1])), angle, peaks[k][3]
