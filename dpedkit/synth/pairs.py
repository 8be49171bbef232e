"""Synthetic phone/DSLR pairs with known geometry, made from real photos.

How a pair is made (all randomness comes from the ``rng`` passed in; everything drawn is recorded in ``truth``):

1. **Scene** (the world plane). A crop of a real photo (3:2, random position/size, maybe mirrored) is resized
   to the DSLR resolution plus a 5 % margin (``INTER_CUBIC`` when enlarging, ``INTER_AREA`` when shrinking)
   after a faint low-frequency colour variation. Enlarged small photos are soft, so a fine **texture** is
   added at full resolution: band-limited Gaussian noise synthesised on a Laplacian pyramid (wavelengths of
   about 4 to 256 DSLR pixels, the coarse octaves weaker), applied as a luminance gain (about 10 % rms) plus a
   small additive term. It gives SIFT, ECC and 100x100 NCC windows real detail everywhere, like paper or
   canvas grain under the photo. Photos that need no enlargement (``--source`` with large photos) get a
   quarter of that texture.
2. **DSLR** = the scene without its margin (no resampling), JPEG quality 90-96: the larger, sharper camera.
3. **Phone** = its own field of view: a random homography ``H_phone_to_dslr`` (rotation up to 3 degrees, a
   little perspective, scale so the phone footprint covers about 70-92 % of the DSLR frame, an offset; the
   footprint may leave the DSLR frame by up to the margin). The phone image is rendered by
   ``cv2.warpPerspective(scene_blurred, T_margin @ H_phone_to_dslr, ..., INTER_LINEAR | WARP_INVERSE_MAP)``
   where ``scene_blurred`` is the scene blurred by a Gaussian of ``blur_sigma_px * scale`` scene pixels: that
   is both the phone lens blur (``blur_sigma_px`` phone pixels) and the anti-aliasing the down-sampling needs
   (a phone pixel spans ``scale`` ~ 1.2-1.4 DSLR pixels). A symmetric blur shifts nothing, so ``H`` stays
   exact; bilinear sampling adds at most ~0.02 px (OpenCV quantises sub-pixel positions to 1/32 px).
   Then the phone ISP: vignetting, exposure and colour gains (a cast), a saturation change,
   signal-dependent noise (``sigma^2 = read^2 + shot * value`` in 8-bit units), a tone curve (gamma and an
   S-curve), an unsharp mask and JPEG quality 70-92.
4. ``hard=True`` adds, on the phone only: radial lens distortion (OpenCV model, ``|k1|`` 0.004-0.012 with the
   focal length = half-diagonal; camera matrix recorded: ``cv2.undistort(phone, K, (k1, 0, 0, 0))`` gives
   back the planar phone view), a **parallax region** (a phone rectangle whose content is displaced by
   ``shift_px``, 8-24 phone pixels at 3 MP, in undistorted coordinates) and a **moving object** (an elliptical
   object at one place in the DSLR and ``motion`` DSLR pixels away in the phone). The phone is then rendered
   with ``cv2.remap`` from exact per-pixel maps. ``truth["hard"]["best_fit"]`` is the least-squares
   homography a perfect global aligner would find and the residual it leaves (at 3/6 MP: median 1-2 px,
   p95 2-4.5 px, max 6-11 px).

Convention (see :mod:`dpedkit`): ``(x, y)`` pixel centres at integers; ``H_phone_to_dslr`` maps phone
``(x, y, 1)`` to DSLR pixels. Outside the hard regions, and for undistorted phone coordinates,
``p_dslr ~ H_phone_to_dslr @ p_phone`` holds exactly; :func:`map_phone_to_dslr` applies the whole truth
(distortion, parallax) and gives NaN where the moving object breaks the correspondence.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dpedkit import __version__
from dpedkit.config import SynthConfig
from dpedkit.errors import ConfigError, InputError, check_rgb_uint8
from dpedkit.geometry import apply_homography
from dpedkit.io import atomic_path, check_apart, dumps, json_safe, list_images, read_rgb, write_text
from dpedkit.synth.files import SUFFIXES, camera_files, capture_times

log = logging.getLogger(__name__)

TRUTH_FORMAT = 1
PHONE_ASPECT = 4 / 3  # width / height
DSLR_ASPECT = 3 / 2
MARGIN = 0.05  # scene margin around the DSLR frame, fraction of each side
# Colour photos shipped inside scikit-image's wheel (loaded from the installed package, never downloaded).
BUNDLED = {
    "astronaut": "astronaut.png",
    "chelsea": "chelsea.png",
    "coffee": "coffee.png",
    "motorcycle": "motorcycle_left.png",
    "rocket": "rocket.jpg",
}
OCTAVE_WEIGHTS = (1.0, 1.0, 0.8, 0.5, 0.3, 0.2, 0.1)  # texture octaves, wavelength ~4, 8, ... 256 DSLR px
_STRIP = 32  # rows per strip in per-pixel float work (keeps buffers small and cache-friendly)


@dataclass
class SynthPair:
    """One synthetic pair.

    Attributes:
        phone: ``H x W x 3`` uint8 RGB, exactly what ``phone_jpeg`` decodes to.
        dslr: ``H x W x 3`` uint8 RGB, exactly what ``dslr_jpeg`` decodes to.
        truth: JSON-ready dict: ``H_phone_to_dslr`` (3x3 list), ``phone_size`` and ``dslr_size`` ``[w, h]``,
            ``applied`` (degradations), ``hard`` (dict or None), ``source`` (photo name), ``overlap``, ...
        phone_jpeg: the encoded phone JPEG (written as is by :func:`synthesize`, no second compression).
        dslr_jpeg: the encoded DSLR JPEG.
        phone_sensor: what the phone's sensor recorded (``make_pair(sensor=True)``), the content of a phone RAW
            file: ``phone``'s optics (blur, distortion, vignetting) and noise, none of its ISP look (colour gains,
            exposure, saturation, tone curve, sharpening, JPEG). ``H x W x 3`` uint8 sRGB, or None.
    """

    phone: np.ndarray
    dslr: np.ndarray
    truth: dict
    phone_jpeg: bytes = field(default=b"", repr=False)
    dslr_jpeg: bytes = field(default=b"", repr=False)
    phone_sensor: np.ndarray | None = field(default=None, repr=False)


@dataclass(frozen=True)
class SynthResult:
    """What :func:`synthesize` reports for each written pair (through ``on_result``)."""

    name: str
    truth_path: Path
    truth: dict


# ----------------------------------------------------------------------------------------------- sources


def bundled_photos() -> dict[str, np.ndarray]:
    """The colour photos bundled in scikit-image's wheel, read offline: name -> ``H x W x 3`` uint8 RGB.

    Raises:
        InputError: scikit-image is not installed or its data folder lacks a photo.
    """
    import importlib.util

    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(None, "scikit-image is not installed: its bundled photos are the default synth source")
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    return {name: read_rgb(folder / fname) for name, fname in BUNDLED.items()}


def _sources(source: str | Path | None) -> list[tuple[str, Callable[[], np.ndarray]]]:
    """(name, loader) for each source photo: the bundled ones, or every image in the folder ``source``."""
    if source is None:
        photos = bundled_photos()
        return [(name, lambda rgb=rgb: rgb) for name, rgb in photos.items()]
    paths = list_images(source)
    if not paths:
        raise InputError(source, "no images in this folder (expected .jpg, .png, .tif, ...)")
    return [(p.stem, lambda p=p: read_rgb(p)) for p in paths]


# ----------------------------------------------------------------------------------------------- sizes


def frame_size(mp: float, aspect: float) -> tuple[int, int]:
    """``(width, height)``, both even, of an ``mp``-megapixel frame with ``width / height = aspect``."""
    h = math.sqrt(mp * 1e6 / aspect)
    return 2 * round(aspect * h / 2), 2 * round(h / 2)


# ----------------------------------------------------------------------------------------------- scene


def _pyramid_noise(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """Band-limited noise at HALF resolution (``ceil(h/2) x ceil(w/2)`` float32), zero mean, unit std.

    Octave ``k`` is white noise at 1/2**(k+1) of ``width x height``, weighted by ``OCTAVE_WEIGHTS[k]``; octaves
    are summed coarse to fine with ``pyrUp`` (Gaussian interpolation: the first one band-limits an octave,
    later ones keep its contrast). :func:`_texture_rows` does the last ``pyrUp`` to full resolution strip by
    strip, so the finest detail has a wavelength of about 4 pixels and the coarsest about 256; the coarse
    octaves are weak (the photo has its own coarse structure; strong ones look like grime).
    """
    sizes = [((width + 1) // 2, (height + 1) // 2)]
    for _ in OCTAVE_WEIGHTS[1:]:
        w, h = sizes[-1]
        sizes.append(((w + 1) // 2, (h + 1) // 2))
    t = np.zeros(sizes[-1][::-1], np.float32)
    for k in range(len(sizes) - 1, -1, -1):
        if t.shape != sizes[k][::-1]:
            t = cv2.pyrUp(t, dstsize=sizes[k])
        t += OCTAVE_WEIGHTS[k] * rng.standard_normal(t.shape, dtype=np.float32)
    sample = cv2.pyrUp(t[: min(len(t), 130), : min(t.shape[1], 260)])  # std after the last pyrUp
    t -= float(t.mean())
    t *= 1.0 / max(float(sample.std()), 1e-6)
    return t


def _texture_rows(half: np.ndarray, width: int, y0: int, y1: int) -> np.ndarray:
    """Rows ``y0..y1`` of ``pyrUp(half)`` at full resolution, computed from a band of ``half`` (exact)."""
    a0, a1 = max(0, y0 // 2 - 3), min(len(half), (y1 + 1) // 2 + 3)
    up = cv2.pyrUp(half[a0:a1], dstsize=(width, 2 * (a1 - a0)))
    return up[y0 - 2 * a0 : y1 - 2 * a0]


def _crop_source(src: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A random 3:2 crop (60-100 % of the largest one), mirrored with probability 1/2."""
    sh, sw = src.shape[:2]
    cw, ch = (sw, round(sw / DSLR_ASPECT)) if sw / sh <= DSLR_ASPECT else (round(sh * DSLR_ASPECT), sh)
    f = rng.uniform(0.6, 1.0)
    cw, ch = max(8, round(cw * f)), max(8, round(ch * f))
    x0 = int(rng.integers(0, sw - cw + 1))
    y0 = int(rng.integers(0, sh - ch + 1))
    crop = src[y0 : y0 + ch, x0 : x0 + cw]
    flip = bool(rng.random() < 0.5)
    if flip:
        crop = crop[:, ::-1]
    return np.ascontiguousarray(crop), {"crop": [x0, y0, x0 + cw, y0 + ch], "mirrored": flip}


def make_scene(src: np.ndarray, width: int, height: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """The world plane: a photo crop resized to ``width x height`` with fine texture. Returns (RGB uint8, info)."""
    crop, info = _crop_source(src, rng)
    # faint low-frequency colour variation at the photo's own resolution (cheap, survives the enlargement)
    ch, cw = crop.shape[:2]
    chroma = cv2.resize(
        rng.normal(0.0, 0.04, (max(2, ch // 24), max(2, cw // 24), 3)).astype(np.float32),
        (cw, ch),
        interpolation=cv2.INTER_CUBIC,
    )
    crop = np.clip(crop * (1.0 + chroma), 0, 255).astype(np.uint8)
    up = width / cw
    interp = cv2.INTER_CUBIC if up > 1 else cv2.INTER_AREA
    scene = cv2.resize(crop, (width, height), interpolation=interp)
    # full texture on enlarged photos; a quarter of it on photos that already have full-resolution detail
    weight = min(1.0, max(0.25, (up - 0.5) / 1.5))
    gain_rms = float(rng.uniform(0.08, 0.12)) * weight
    add_rms = 3.0 * weight  # 8-bit units: texture survives in dark areas too
    half = _pyramid_noise(width, height, rng)
    for y0 in range(0, height, _STRIP):
        y1 = min(height, y0 + _STRIP)
        t = _texture_rows(half, width, y0, y1)
        g = 1.0 + gain_rms * t
        x = scene[y0:y1].astype(np.float32)
        x *= cv2.merge([g, g, g])
        t *= add_rms
        x += cv2.merge([t, t, t])
        x += 0.5
        np.clip(x, 0, 255, out=x)
        scene[y0:y1] = x
    info |= {
        "enlargement": round(up, 4),
        "texture": {"gain_rms": round(gain_rms, 4), "add_rms": round(add_rms, 4), "wavelengths_px": [4, 256]},
    }
    return scene, info


# ----------------------------------------------------------------------------------------------- geometry


def _random_homography(
    phone: tuple[int, int],
    dslr: tuple[int, int],
    margin: tuple[int, int],
    rng: np.random.Generator,
    *,
    reach: np.ndarray | None = None,
) -> tuple[np.ndarray, dict]:
    """A random ``H_phone_to_dslr`` whose footprint covers 70-92 % of the DSLR and stays inside the scene.

    ``reach``: the phone points (``N x 2``, undistorted) that must land inside the scene; default the corners.
    """
    (pw, ph), (dw, dh), (mx, my) = phone, dslr, margin
    cp = np.array([[1, 0, -(pw - 1) / 2], [0, 1, -(ph - 1) / 2], [0, 0, 1.0]])
    corners = np.array([[-0.5, -0.5], [pw - 0.5, -0.5], [pw - 0.5, ph - 0.5], [-0.5, ph - 0.5]])
    reach = corners if reach is None else reach
    cover = rng.uniform(0.70, 0.92)
    for _ in range(200):
        s = math.sqrt(cover * dw * dh / (pw * ph))
        theta = rng.uniform(-3.0, 3.0)
        persp = rng.uniform(-0.03, 0.03, 2) / np.array([pw / 2, ph / 2])
        off = rng.uniform(-1, 1, 2) * np.array([0.06 * dw, 0.06 * dh])
        c, si = math.cos(math.radians(theta)), math.sin(math.radians(theta))
        a = np.array([[s * c, -s * si, (dw - 1) / 2 + off[0]], [s * si, s * c, (dh - 1) / 2 + off[1]], [0, 0, 1]])
        p = np.array([[1, 0, 0], [0, 1, 0], [persp[0], persp[1], 1.0]])
        h = a @ p @ cp
        h /= h[2, 2]
        q = apply_homography(h, reach)
        pad = 4 + 3 * s
        if (
            q[:, 0].min() >= -mx + pad
            and q[:, 0].max() <= dw - 1 + mx - pad
            and q[:, 1].min() >= -my + pad
            and q[:, 1].max() <= dh - 1 + my - pad
        ):
            break
        cover *= 0.99
    else:  # pragma: no cover - the loop shrinks the footprint until it fits
        raise RuntimeError("could not place the phone footprint")
    poly = apply_homography(h, corners).astype(np.float32)
    frame = np.array([[-0.5, -0.5], [dw - 0.5, -0.5], [dw - 0.5, dh - 0.5], [-0.5, dh - 0.5]], np.float32)
    inter, _ = cv2.intersectConvexConvex(poly, frame)
    area = cv2.contourArea(poly)
    info = {
        "rotation_deg": round(theta, 4),
        "scale": round(s, 5),
        "perspective": [float(v) for v in persp],
        "offset_px": [round(float(v), 3) for v in off],
        "overlap": {"dslr": round(float(inter) / (dw * dh), 4), "phone": round(float(inter) / area, 4)},
    }
    return h, info


def camera_matrix(width: int, height: int) -> np.ndarray:
    """The phone camera matrix used for lens distortion: focal = half-diagonal, centre = image centre."""
    f = 0.5 * math.hypot(width, height)
    return np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1.0]])


def distort_points(pts: np.ndarray, k: np.ndarray, k1: float) -> np.ndarray:
    """OpenCV radial model: undistorted ``N x 2`` pixel points -> distorted (``x_d = x_u (1 + k1 r_u^2)``)."""
    f, cx, cy = k[0, 0], k[0, 2], k[1, 2]
    x, y = (pts[:, 0] - cx) / f, (pts[:, 1] - cy) / f
    g = 1 + k1 * (x * x + y * y)
    return np.c_[x * g * f + cx, y * g * f + cy]


def undistort_points(pts: np.ndarray, k: np.ndarray, k1: float, *, iterations: int = 6) -> np.ndarray:
    """Inverse of :func:`distort_points` (fixed-point iteration; exact to < 1e-4 px for ``|k1| <= 0.05``)."""
    f, cx, cy = k[0, 0], k[0, 2], k[1, 2]
    xd, yd = (pts[:, 0] - cx) / f, (pts[:, 1] - cy) / f
    x, y = xd.copy(), yd.copy()
    for _ in range(iterations):
        g = 1 + k1 * (x * x + y * y)
        x, y = xd / g, yd / g
    return np.c_[x * f + cx, y * f + cy]


def _rect_of(pts: np.ndarray, width: int, height: int) -> list[int]:
    """Half-open integer bounding rectangle of points, clipped to the image (empty: ``x1 == x0`` or ``y1 == y0``)."""
    x0, y0 = np.clip(np.floor(pts.min(0)).astype(int), 0, [width, height])
    x1, y1 = np.clip(np.ceil(pts.max(0)).astype(int) + 1, [x0, y0], [width, height])
    return [int(x0), int(y0), int(x1), int(y1)]


def _in_rect(pts: np.ndarray, rect: list[int]) -> np.ndarray:
    x0, y0, x1, y1 = rect
    return (pts[:, 0] >= x0 - 0.5) & (pts[:, 0] < x1 - 0.5) & (pts[:, 1] >= y0 - 0.5) & (pts[:, 1] < y1 - 0.5)


def map_phone_to_dslr(truth: dict, pts: np.ndarray) -> np.ndarray:
    """The true DSLR position of phone pixels ``pts`` (``N x 2``, ``(x, y)``) under the whole truth.

    Applies lens distortion and the parallax shift of a hard pair; returns NaN rows where the moving object
    (in either view) breaks the correspondence. For a plain pair this is ``apply_homography(H, pts)``.
    """
    pts = np.asarray(pts, np.float64).reshape(-1, 2)
    h = np.asarray(truth["H_phone_to_dslr"], np.float64)
    hard = truth.get("hard")
    if not hard:
        return apply_homography(h, pts)
    lens = hard["lens_distortion"]
    u = undistort_points(pts, np.asarray(lens["camera_matrix"]), lens["k1"])
    par = hard["parallax"]
    inside = _in_rect(pts, par["phone_rect"])
    u[inside] -= np.asarray(par["shift_px"], np.float64)
    out = apply_homography(h, u)
    for rect in hard["moving_object"]["phone_rects"]:
        out[_in_rect(pts, rect)] = np.nan
    return out


def best_planar_fit(truth: dict, *, step: int = 16) -> dict:
    """The homography a perfect global aligner would find on a hard pair, and what it leaves.

    Least-squares fit of the true correspondences (:func:`map_phone_to_dslr`) on a ``step``-pixel phone grid
    outside ``invalid_phone_rects``. Returns ``{"H_phone_to_dslr": 3x3 list, "residual_px": {"median", "p95",
    "max"}}`` (DSLR pixels): the misalignment left for per-patch refinement.
    """
    pw, ph = truth["phone_size"]
    xs, ys = np.meshgrid(np.arange(0, pw, step), np.arange(0, ph, step))
    pts = np.c_[xs.ravel(), ys.ravel()].astype(np.float64)
    q = map_phone_to_dslr(truth, pts)
    keep = np.isfinite(q).all(1)
    for rect in (truth.get("hard") or {}).get("invalid_phone_rects", []):
        keep &= ~_in_rect(pts, rect)
    h, _ = cv2.findHomography(pts[keep], q[keep], 0)
    h /= h[2, 2]
    d = np.linalg.norm(apply_homography(h, pts[keep]) - q[keep], axis=1)
    res = {"median": float(np.median(d)), "p95": float(np.percentile(d, 95)), "max": float(d.max())}
    return {"H_phone_to_dslr": h.tolist(), "residual_px": {k: round(v, 4) for k, v in res.items()}}


# ----------------------------------------------------------------------------------------------- hard extras


def _object_mask(rx: int, ry: int) -> np.ndarray:
    """Soft elliptical mask ``(2ry+1) x (2rx+1)`` float32 in [0, 1]."""
    m = np.zeros((2 * ry + 1, 2 * rx + 1), np.float32)
    cv2.ellipse(m, (rx, ry), (rx - 2, ry - 2), 0, 0, 360, 1.0, -1, cv2.LINE_AA)
    return cv2.GaussianBlur(m, (0, 0), 1.0)


def _paste(img: np.ndarray, obj: np.ndarray, mask: np.ndarray, x0: int, y0: int) -> None:
    h, w = mask.shape
    roi = img[y0 : y0 + h, x0 : x0 + w].astype(np.float32)
    roi += mask[:, :, None] * (obj.astype(np.float32) - roi)
    img[y0 : y0 + h, x0 : x0 + w] = roi + 0.5


def _moving_object(scene: np.ndarray, dslr: np.ndarray, margin: tuple[int, int], rng: np.random.Generator) -> dict:
    """Paste an object into the DSLR at A and into the scene (the phone's view) at A + motion. Returns info."""
    dh, dw = dslr.shape[:2]
    mx, my = margin
    ry = int(rng.uniform(0.06, 0.09) * dh)
    rx = int(ry * rng.uniform(0.8, 1.5))
    angle = rng.uniform(0, 2 * math.pi)
    motion = rng.uniform(0.8, 1.6) * max(rx, ry) * np.array([math.cos(angle), math.sin(angle)])
    motion = np.round(motion).astype(int)
    cx = int(rng.uniform(0.3, 0.7) * dw)
    cy = int(rng.uniform(0.3, 0.7) * dh)
    # the object: a distant scene patch, rotated 180 degrees with channels swapped (clearly a foreign thing)
    sx = int((cx + dw // 2) % (dw - 2 * rx - 1))
    sy = int((cy + dh // 2) % (dh - 2 * ry - 1))
    obj = np.ascontiguousarray(dslr[sy : sy + 2 * ry + 1, sx : sx + 2 * rx + 1][::-1, ::-1, ::-1])
    mask = _object_mask(rx, ry)
    a = [cx - rx, cy - ry, cx + rx + 1, cy + ry + 1]
    b = [a[0] + motion[0], a[1] + motion[1], a[2] + motion[0], a[3] + motion[1]]
    _paste(dslr, obj, mask, a[0], a[1])
    _paste(scene, obj, mask, b[0] + mx, b[1] + my)
    return {"dslr_rect": a, "phone_view_dslr_rect": b, "motion_dslr_px": [int(v) for v in motion], "shape": "ellipse"}


def _dslr_rect_to_phone(rect: list[int], h: np.ndarray, lens: dict, phone: tuple[int, int]) -> list[int]:
    """Bounding rectangle in the (distorted) phone image of a DSLR rectangle."""
    x0, y0, x1, y1 = rect
    t = np.linspace(0, 1, 9)
    edge = np.r_[
        np.c_[x0 + t * (x1 - x0), np.full(9, y0)],
        np.c_[x0 + t * (x1 - x0), np.full(9, y1)],
        np.c_[np.full(9, x0), y0 + t * (y1 - y0)],
        np.c_[np.full(9, x1), y0 + t * (y1 - y0)],
    ]
    u = apply_homography(np.linalg.inv(h), edge - 0.5)
    d = distort_points(u, np.asarray(lens["camera_matrix"]), lens["k1"])
    return _rect_of(np.r_[d.min(0) - 2, d.max(0) + 2].reshape(2, 2), *phone)  # 2 px for the mask's soft edge


def _phone_maps(
    h_roi: np.ndarray, width: int, lens: dict, parallax: dict, y0: int, y1: int
) -> tuple[np.ndarray, np.ndarray]:
    """``remap`` maps (x, y) of hard-phone rows ``y0..y1``: distorted pixel -> undistorted (-> parallax) -> scene ROI.

    The float32 twin of :func:`map_phone_to_dslr` (agrees to ~1e-3 px), vectorised over a strip of rows.
    """
    k = np.asarray(lens["camera_matrix"])
    f, cx, cy, k1 = float(k[0, 0]), float(k[0, 2]), float(k[1, 2]), float(lens["k1"])
    xd = ((np.arange(width, dtype=np.float32) - cx) / f)[None, :]
    yd = ((np.arange(y0, y1, dtype=np.float32) - cy) / f)[:, None]
    x, y = xd, yd
    for _ in range(5):  # fixed point of x_d = x_u (1 + k1 r_u^2)
        g = x * x + y * y
        g *= k1
        g += 1.0
        x, y = xd / g, yd / g
    x *= f
    x += cx
    y *= f
    y += cy
    rx0, ry0, rx1, ry1 = parallax["phone_rect"]
    r0, r1 = max(ry0, y0) - y0, min(ry1, y1) - y0
    if r1 > r0:
        x[r0:r1, rx0:rx1] -= parallax["shift_px"][0]
        y[r0:r1, rx0:rx1] -= parallax["shift_px"][1]
    h = [[float(v) for v in row] for row in h_roi]
    w = h[2][0] * x + h[2][1] * y + h[2][2]
    mx = h[0][0] * x + h[0][1] * y + h[0][2]
    mx /= w
    my = h[1][0] * x + h[1][1] * y + h[1][2]
    my /= w
    return mx, my


# ----------------------------------------------------------------------------------------------- phone look


def _tone_lut(gamma: float, contrast: float) -> np.ndarray:
    """65536-entry uint8 LUT from 16-bit linear-ish values: gamma, then an S-curve of strength ``contrast``."""
    x = np.linspace(0.0, 1.0, 65536)
    y = x**gamma
    y = y - contrast * np.sin(2 * np.pi * y) / (2 * np.pi)
    return np.clip(np.rint(y * 255), 0, 255).astype(np.uint8)


def _phone_look(img: np.ndarray, p: dict, rng: np.random.Generator) -> np.ndarray:
    """Phone ISP look, in place: vignetting, exposure and colour gains, saturation, noise, tone curve, sharpening.

    ``img``: ``H x W x 3`` uint8 RGB; per-pixel work is done by strips of rows.

    Vignetting is separable, ``(1 - v x^2) (1 - v y^2)`` with ``x, y`` in half-diagonals from the centre.
    Noise is Gaussian (inverse-CDF table on random 16-bit integers), ``sigma^2 = read^2 + shot * value``.
    """
    hgt, wid = img.shape[:2]
    half = 0.5 * math.hypot(wid, hgt)
    v = p["vignetting"]
    vx = 1.0 - v * ((np.arange(wid) - (wid - 1) / 2) / half) ** 2
    vy = (1.0 - v * ((np.arange(hgt) - (hgt - 1) / 2) / half) ** 2).astype(np.float32)
    gains = np.asarray(p["colour_gains"]) * p["exposure"]
    colfac = (vx[:, None] * gains[None, :]).astype(np.float32)  # W x 3
    lut = _tone_lut(p["gamma"], p["contrast"])
    sat, read2, shot = p["saturation"], p["noise"]["read_sigma"] ** 2, p["noise"]["shot_gain"]
    gauss = _gauss_table()
    for y0 in range(0, hgt, _STRIP):
        y1 = min(hgt, y0 + _STRIP)
        x = img[y0:y1].astype(np.float32)
        x *= colfac
        x *= vy[y0:y1, None, None]
        lum = cv2.cvtColor(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
        x = cv2.addWeighted(x, sat, lum, 1.0 - sat, 0.0)
        np.maximum(x, 0, out=x)
        sigma = x * shot
        sigma += read2
        np.sqrt(sigma, out=sigma)
        sigma *= gauss[np.frombuffer(rng.bytes(x.size * 2), np.uint16).reshape(x.shape)]
        x += sigma
        x *= 65535 / 255
        np.clip(x, 0, 65535, out=x)
        img[y0:y1] = lut[x.astype(np.uint16)]
    amount = p["sharpen"]["amount"]
    if amount > 0:  # the ISP's unsharp mask (symmetric: moves nothing)
        soft = cv2.GaussianBlur(img, (0, 0), p["sharpen"]["sigma_px"])
        cv2.addWeighted(img, 1.0 + amount, soft, -amount, 0.0, dst=img)
    return img


@functools.cache
def _gauss_table() -> np.ndarray:
    """Standard normal quantiles at the 65536 mid-points: index it with uniform uint16 for Gaussian noise."""
    from scipy.special import ndtri

    return ndtri((np.arange(65536) + 0.5) / 65536).astype(np.float32)


def _jpeg(rgb: np.ndarray, quality: int) -> tuple[bytes, np.ndarray]:
    """Encode RGB as JPEG; returns (bytes, the decoded RGB image, i.e. exactly what a reader gets)."""
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - OpenCV always encodes uint8 RGB
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes(), cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _draw_phone_params(rng: np.random.Generator) -> dict:
    gains = rng.uniform(0.88, 1.12, 3)
    gains /= gains.mean()
    return {
        "blur_sigma_px": round(float(rng.uniform(0.6, 1.2)), 4),
        "vignetting": round(float(rng.uniform(0.15, 0.4)), 4),
        "colour_gains": [round(float(g), 4) for g in gains],
        "exposure": round(float(rng.uniform(0.85, 1.15)), 4),
        "saturation": round(float(rng.uniform(0.8, 1.3)), 4),
        "noise": {
            "read_sigma": round(float(rng.uniform(1.0, 3.0)), 4),
            "shot_gain": round(float(rng.uniform(0.02, 0.08)), 4),
        },
        "gamma": round(float(rng.uniform(0.8, 1.25)), 4),
        "contrast": round(float(rng.uniform(-0.1, 0.3)), 4),
        "sharpen": {"amount": round(float(rng.uniform(0.0, 0.8)), 4), "sigma_px": 1.0},
        "jpeg_quality": int(rng.integers(70, 93)),
    }


# What a RAW file records of a scene given as a camera-rendered photo: the rendering's tone S-curve and saturation
# undone (approximately), so LibRaw's plain processing (white balance, colour matrix, sRGB gamma) gives a flatter,
# less saturated picture than the DSLR's, as it does with real cameras. Fixed: the same for every pair.
SENSOR_CONTRAST = -0.3
SENSOR_SATURATION = 0.85


def _sensor_params(p: dict) -> dict:
    """The phone's parameters with its ISP look removed: what its sensor records (vignetting and noise stay)."""
    flat = {"colour_gains": [1.0, 1.0, 1.0], "exposure": 1.0, "saturation": SENSOR_SATURATION, "gamma": 1.0,
            "contrast": SENSOR_CONTRAST, "sharpen": {"amount": 0.0, "sigma_px": 1.0}, "jpeg_quality": None}  # fmt: skip
    return {**p, **flat}


# ----------------------------------------------------------------------------------------------- a pair


def scene_light(rgb: np.ndarray, light: str) -> np.ndarray:
    """``rgb`` (sRGB uint8) under the light ``light`` of :class:`~dpedkit.config.SynthConfig`, in linear light.

    Pointwise and deterministic (no random draw), so a pair's geometry and every other draw stay as with
    ``normal`` light: ``shadow`` multiplies linear values by ``25 ** -t`` with ``t`` running 0 -> 1 from left to
    right (most of the frame below 1/5 of its exposure); ``tint`` by (1, 1/5, 1/2) per channel.
    """
    if light == "normal":
        return rgb
    x = rgb.astype(np.float32) / 255.0
    lin = np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)
    if light == "shadow":
        lin *= (25.0 ** -np.linspace(0.0, 1.0, rgb.shape[1], dtype=np.float32))[None, :, None]
    else:
        lin *= np.array([1.0, 0.2, 0.5], np.float32)
    srgb = np.where(lin <= 0.0031308, lin * 12.92, 1.055 * lin ** (1 / 2.4) - 0.055)
    return np.clip(srgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


def make_pair(
    source_rgb: np.ndarray,
    *,
    rng: np.random.Generator,
    phone_mp: float = SynthConfig.phone_mp,
    dslr_mp: float = SynthConfig.dslr_mp,
    hard: bool = SynthConfig.hard,
    source_name: str = "array",
    sensor: bool = False,
) -> SynthPair:
    """Make one phone/DSLR pair with known geometry from a real photo.

    Args:
        source_rgb: ``H x W x 3`` uint8 RGB photo (any size; small ones are enlarged and textured).
        rng: the only source of randomness; the same generator state gives the same pair.
        phone_mp: phone size in megapixels (4:3 frame).
        dslr_mp: DSLR size in megapixels (3:2 frame), ``>= phone_mp``.
        hard: add lens distortion, a parallax region and a moving object on the phone side.
        source_name: recorded as ``truth["source"]``.
        sensor: also make :attr:`SynthPair.phone_sensor` (for a phone RAW file); the other fields do not change.

    Returns:
        A :class:`SynthPair`; ``truth["H_phone_to_dslr"]`` maps phone ``(x, y, 1)`` (pixel centres at
        integers) to DSLR pixels, exactly for the planar part.

    Raises:
        ConfigError: sizes out of range. InputError: ``source_rgb`` is not an ``H x W x 3`` uint8 image.

    Example:
        >>> pair = make_pair(bundled_photos()["coffee"], rng=np.random.default_rng(0), phone_mp=0.3, dslr_mp=0.6)
        >>> pair.phone.shape, pair.dslr.shape
        ((474, 632, 3), (632, 948, 3))
    """
    cfg = SynthConfig(phone_mp=phone_mp, dslr_mp=dslr_mp, hard=hard)
    src = check_rgb_uint8(np.asarray(source_rgb), "source", min_side=16)
    pw, ph = frame_size(cfg.phone_mp, PHONE_ASPECT)
    dw, dh = frame_size(cfg.dslr_mp, DSLR_ASPECT)
    mx, my = round(MARGIN * dw), round(MARGIN * dh)
    scene, scene_info = make_scene(src, dw + 2 * mx, dh + 2 * my, rng)
    border = np.array([[-0.5, -0.5], [pw - 0.5, -0.5], [pw - 0.5, ph - 0.5], [-0.5, ph - 0.5]])
    lens = _lens((pw, ph), rng) if cfg.hard else None
    if lens:  # the distorted phone frame reaches further into the scene: keep it inside too
        edges = np.r_[border, (border + np.roll(border, 1, axis=0)) / 2]
        border = undistort_points(edges, np.asarray(lens["camera_matrix"]), lens["k1"])
    h, geo = _random_homography((pw, ph), (dw, dh), (mx, my), rng, reach=border)
    phone_p = _draw_phone_params(rng)
    dslr_q = int(rng.integers(90, 97))
    dslr = scene[my : my + dh, mx : mx + dw].copy()
    hard_info = _hard_extras(scene, dslr, h, lens, (pw, ph), (mx, my), rng) if lens else None

    h_scene = np.array([[1, 0, mx], [0, 1, my], [0, 0, 1.0]]) @ h
    phone = _render_phone(scene, h_scene, (pw, ph), phone_p["blur_sigma_px"] * geo["scale"], hard_info)
    del scene
    raw = phone.copy() if sensor else None
    _phone_look(phone, phone_p, rng)
    phone_jpeg, phone = _jpeg(phone, phone_p["jpeg_quality"])
    dslr_jpeg, dslr = _jpeg(dslr, dslr_q)
    if raw is not None:  # drawn last: the other fields stay as without it
        _phone_look(raw, _sensor_params(phone_p), rng)

    truth = {
        "format": TRUTH_FORMAT,
        "dpedkit_version": __version__,
        "source": source_name,
        "H_phone_to_dslr": [[float(v) for v in row] for row in h],
        "convention": "p_dslr ~ H_phone_to_dslr @ (x, y, 1) of the phone; pixel centres at integers",
        "phone_size": [pw, ph],
        "dslr_size": [dw, dh],
        "config": cfg.to_dict(),
        "geometry": {k: v for k, v in geo.items() if k != "overlap"},
        "overlap": geo["overlap"],
        "scene": scene_info,
        "applied": {"phone": phone_p, "dslr": {"jpeg_quality": dslr_q, "blur_sigma_px": 0.0, "noise": None}},
        "hard": hard_info,
    }
    if raw is not None:
        truth["applied"]["phone_sensor"] = _sensor_params(phone_p)
    if hard_info:
        hard_info["best_fit"] = best_planar_fit(truth)
    return SynthPair(phone=phone, dslr=dslr, truth=json_safe(truth), phone_jpeg=phone_jpeg, dslr_jpeg=dslr_jpeg,
                     phone_sensor=raw)  # fmt: skip


def _lens(phone: tuple[int, int], rng: np.random.Generator) -> dict:
    """Draw the hard phone's radial distortion (barrel or pincushion, 0.4-1.2 % displacement at the corners)."""
    k1 = float(rng.uniform(0.004, 0.012) * rng.choice([-1, 1]))
    return {
        "model": "opencv-radial",
        "k1": round(k1, 6),
        "camera_matrix": camera_matrix(*phone).tolist(),
        "note": "cv2.undistort(phone, K, (k1, 0, 0, 0)) gives the planar phone view that H maps exactly",
    }


def _hard_extras(
    scene: np.ndarray,
    dslr: np.ndarray,
    h: np.ndarray,
    lens: dict,
    phone: tuple[int, int],
    margin: tuple[int, int],
    rng: np.random.Generator,
) -> dict:
    """Draw a parallax region and paste the moving object; return the ``hard`` truth."""
    pw, ph = phone
    rw, rh = int(rng.uniform(0.15, 0.25) * pw), int(rng.uniform(0.15, 0.25) * ph)
    x0, y0 = int(rng.uniform(0.1, 0.9) * pw - rw / 2), int(rng.uniform(0.1, 0.9) * ph - rh / 2)
    mag = rng.uniform(8, 24) * max(1.0, pw / 2000)
    shift = [round(float(mag * rng.choice([-1, 1])), 3), round(float(rng.uniform(-2, 2)), 3)]
    parallax = {
        "phone_rect": [max(0, x0), max(0, y0), min(pw, x0 + rw), min(ph, y0 + rh)],
        "shift_px": shift,
        "note": "phone pixels in phone_rect show content displaced by shift_px phone pixels",
    }
    obj = _moving_object(scene, dslr, margin, rng)
    obj["phone_rects"] = [
        _dslr_rect_to_phone(obj["dslr_rect"], h, lens, phone),
        _dslr_rect_to_phone(obj["phone_view_dslr_rect"], h, lens, phone),
    ]
    obj["note"] = (
        "the object is at dslr_rect in the DSLR and at phone_view_dslr_rect (DSLR coordinates) in "
        "the phone; phone_rects: phone areas where the planar truth does not hold"
    )
    return {
        "lens_distortion": lens,
        "parallax": parallax,
        "moving_object": obj,
        "invalid_phone_rects": [parallax["phone_rect"], *obj["phone_rects"]],
    }


def _render_phone(
    scene: np.ndarray, h_scene: np.ndarray, phone: tuple[int, int], sigma: float, hard: dict | None
) -> np.ndarray:
    """Blur the scene footprint (lens blur + anti-aliasing) and sample it on the phone grid."""
    pw, ph = phone
    q = apply_homography(h_scene, np.array([[0, 0], [pw - 1, 0], [pw - 1, ph - 1], [0, ph - 1]], float))
    pad = int(math.ceil(4 * sigma)) + 8 + (int(0.05 * max(pw, ph)) if hard else 0)
    sh, sw = scene.shape[:2]
    x0, y0 = max(0, int(q[:, 0].min()) - pad), max(0, int(q[:, 1].min()) - pad)
    x1, y1 = min(sw, int(q[:, 0].max()) + pad + 1), min(sh, int(q[:, 1].max()) + pad + 1)
    roi = cv2.GaussianBlur(scene[y0:y1, x0:x1], (0, 0), sigma, borderType=cv2.BORDER_REFLECT101)
    h_roi = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1.0]]) @ h_scene
    flags = cv2.INTER_LINEAR
    if not hard:
        return cv2.warpPerspective(
            roi, h_roi, (pw, ph), flags=flags | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT101
        )
    out = np.empty((ph, pw, 3), np.uint8)
    for r0 in range(0, ph, _STRIP):
        r1 = min(ph, r0 + _STRIP)
        mx, my = _phone_maps(h_roi, pw, hard["lens_distortion"], hard["parallax"], r0, r1)
        out[r0:r1] = cv2.remap(roi, mx, my, flags, borderMode=cv2.BORDER_REFLECT101)
    return out


# ----------------------------------------------------------------------------------------------- a folder


def synthesize(
    out_dir: str | Path,
    *,
    n: int = 20,
    seed: int = 0,
    source: str | Path | None = None,
    config: SynthConfig | None = None,
    on_result: Callable[[SynthResult], None] | None = None,
    overwrite: bool = False,
    **options: Any,
) -> list[Path]:
    """Write ``n`` synthetic pairs: ``phone/NAME.EXT``, ``dslr/NAME.EXT``, ``truth/NAME.json`` (NAME = 0000, ...).

    Pair ``i`` uses ``np.random.default_rng([seed, i])`` and source photo ``i mod len(sources)`` (sorted by
    name), so its geometry depends neither on ``n`` nor on the file options (formats, turn, capture times: see
    :mod:`dpedkit.synth.files`). A ``synth.json`` records the options and the names.

    Args:
        out_dir: output folder (created).
        n: number of pairs, >= 1.
        seed: base seed.
        source: folder of the user's photos; default: scikit-image's bundled photos.
        config: a :class:`dpedkit.config.SynthConfig` (sizes, ``hard``, file formats, ``rotate``, clock offset,
            time jitter, bursts).
        on_result: called with a :class:`SynthResult` as soon as each pair is written.
        overwrite: replace the pairs of an earlier run in ``out_dir`` (only what this function writes there).
        **options: fields of ``config`` to override (``phone_mp=0.3, phone_format="heic"``).

    Returns:
        The truth JSON paths, in order.

    Raises:
        ConfigError: bad option values, or ``out_dir`` holds an earlier run and ``overwrite`` is off (its old
        pairs would otherwise mix with the new ones). InputError: ``source`` is not a folder, holds no images,
        or an image cannot be read.
    """
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"n must be an integer >= 1; got {n!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0; got {seed!r}")
    cfg = replace(config or SynthConfig(), **options)
    sources = _sources(source)
    out = Path(out_dir)
    check_apart(out, [source], what="output folder")
    _clear_earlier_run(out, overwrite)
    times = capture_times(n, cfg, seed)
    paths, enlarged = [], {}
    dslr_pixels = math.prod(frame_size(cfg.dslr_mp, DSLR_ASPECT))
    for i in range(n):
        name, load = sources[i % len(sources)]
        photo = load()
        if source is not None and photo.shape[0] * photo.shape[1] < dslr_pixels:
            enlarged[name] = photo.shape[0] * photo.shape[1] / 1e6
        pair = make_pair(
            scene_light(photo, cfg.light),
            rng=np.random.default_rng([seed, i]),
            phone_mp=cfg.phone_mp,
            dslr_mp=cfg.dslr_mp,
            hard=cfg.hard,
            source_name=name,
            sensor=cfg.phone_format == "dng",
        )
        files, updates = camera_files(pair, cfg, times[i])
        pair.truth.update(updates, config=cfg.to_dict())
        paths.append(write_pair(out, f"{i:04d}", pair, files=files, extra={"seed": seed, "index": i}))
        log.debug("pair %04d from %s: overlap %.2f", i, name, pair.truth["overlap"]["dslr"])
        if on_result is not None:
            on_result(SynthResult(f"{i:04d}", paths[-1], pair.truth))
    meta = {
        "dpedkit_version": __version__,
        "seed": seed,
        "n": n,
        "source": str(source) if source else "bundled",
        "config": cfg.to_dict(),
        "names": [p.stem for p in paths],
    }
    write_text(out / "synth.json", dumps(meta, indent=2, sort_keys=False, finite=False))
    log.info("wrote %d synthetic pairs to %s", n, out)
    if enlarged:
        names = ", ".join(f"{k} ({v:.1f} MP)" for k, v in sorted(enlarged.items()))
        log.warning("%d of your photos hold fewer pixels than the %g MP DSLR frame, so their crops were enlarged "
                    "(interpolated, with added texture): %s; use larger photos or a smaller --dslr-mp for real "
                    "DSLR detail", len(enlarged), cfg.dslr_mp, names)  # fmt: skip
    return paths


_OUTPUTS = ("phone", "dslr", "truth")
_SUFFIXES = {"phone": set(SUFFIXES.values()), "dslr": set(SUFFIXES.values()), "truth": {".json"}}


def _clear_earlier_run(out: Path, overwrite: bool) -> None:
    """Refuse (or, with ``overwrite``, delete) the pairs an earlier run wrote in ``out``; never other files.

    An earlier run is known by its ``synth.json``; files in ``phone/``, ``dslr/`` or ``truth/`` that it did not
    write are always refused (they would mix with the new pairs), never deleted.
    """
    meta = out / "synth.json"
    names: list[str] = []
    if meta.is_file():
        try:
            names = [str(n) for n in json.loads(meta.read_text()).get("names", [])]
        except (OSError, ValueError, AttributeError):
            names = []
    stems = set(names)
    present = [p for d in _OUTPUTS if (out / d).is_dir() for p in sorted((out / d).iterdir())]
    foreign = [p for p in present if p.stem not in stems or p.suffix not in _SUFFIXES[p.parent.name]]
    if foreign:
        shown = ", ".join(str(p.relative_to(out)) for p in foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise ConfigError(f"{out} holds files that dpedkit synth did not write ({shown}); choose another folder")
    if not meta.is_file():
        return
    if not overwrite:
        raise ConfigError(
            f"{out} already holds {len(names)} synthetic pairs (synth.json): pass --overwrite to replace "
            "them, or choose another folder"
        )
    for path in present:
        path.unlink()
    meta.unlink()


def write_pair(
    out_dir: str | Path,
    name: str,
    pair: SynthPair,
    *,
    files: dict[str, tuple[str, bytes]] | None = None,
    extra: dict | None = None,
) -> Path:
    """Write one pair and its truth; returns the truth path.

    ``files``: ``{"phone": (suffix, bytes), "dslr": (suffix, bytes)}`` as :func:`camera_files` makes them;
    default: the pair's own JPEG bytes (no recompression).
    """
    out = Path(out_dir)
    if files is None:
        files = {side: (".jpg", data or _jpeg(rgb, 95)[0]) for side, data, rgb in
                 (("phone", pair.phone_jpeg, pair.phone), ("dslr", pair.dslr_jpeg, pair.dslr))}  # fmt: skip
    for side, (suffix, data) in files.items():
        with atomic_path(out / side / f"{name}{suffix}") as tmp:
            tmp.write_bytes(data)
    truth_path = out / "truth" / f"{name}.json"
    write_text(truth_path, dumps(pair.truth | (extra or {}), indent=1, sort_keys=False))
    return truth_path


def load_truth(path: str | Path) -> dict:
    """Read a ``truth/NAME.json`` file (InputError when missing or not JSON)."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(path, f"cannot read synth truth: {exc}") from exc


def iter_pairs(out_dir: str | Path) -> Iterable[tuple[Path, Path, dict]]:
    """``(phone_path, dslr_path, truth)`` for each pair written by :func:`synthesize` in ``out_dir``."""
    out = Path(out_dir)
    for t in sorted((out / "truth").glob("*.json")):
        truth = load_truth(t)
        fmt = truth.get("formats", {"phone": "jpg", "dslr": "jpg"})
        yield (out / "phone" / f"{t.stem}{SUFFIXES[fmt['phone']]}", out / "dslr" / f"{t.stem}{SUFFIXES[fmt['dslr']]}",
               truth)  # fmt: skip
