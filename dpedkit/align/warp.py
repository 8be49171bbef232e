"""Crop to the common region and resample the DSLR image onto the phone pixel grid.

Convention: ``H`` maps phone ``(x, y, 1)`` to DSLR, full-resolution pixels with centres at integers. The crop
``[x0, y0, x1, y1]`` is half-open in phone pixel indices. A phone pixel is usable when its centre maps inside
the DSLR pixel-centre range shrunk by a margin, ``[m, W_d - 1 - m] x [m, H_d - 1 - m]``, with a positive
homogeneous coordinate. Under a homography that set is an intersection of half-planes of the phone image,
hence convex, and a rectangle lies inside it exactly when its four corner pixels do.
"""

from __future__ import annotations

import logging
import math

import cv2
import numpy as np

from dpedkit.align.homography import local_geometry

log = logging.getLogger(__name__)

INTERPOLATIONS = {"linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC, "lanczos": cv2.INTER_LANCZOS4}

_W_MIN = 1e-6  # smallest homogeneous coordinate accepted (relative to its value at the phone centre)


def _translate(tx: float, ty: float) -> np.ndarray:
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])


def valid_halfplanes(
    h: np.ndarray,
    phone_size: tuple[int, int],
    dslr_size: tuple[int, int],
    *,
    margin: float = 1.0,
    anchor: tuple[float, float] | None = None,
) -> np.ndarray:
    """Half-planes ``a x + b y + c >= 0`` (rows ``[a, b, c]``) of phone points whose content is in the DSLR.

    Args:
        h: 3x3 phone -> DSLR homography.
        phone_size: ``(width, height)`` of the phone image.
        dslr_size: ``(width, height)`` of the DSLR image.
        margin: DSLR pixels kept clear of the DSLR border (room for the interpolation kernel).
        anchor: a phone point known to be imaged by both cameras (e.g. the inlier centroid; default: the phone
            centre); it fixes the sign of ``h``, so the valid side of the horizon line ``w = 0`` is its side.

    Returns:
        ``K x 3`` float64 array of half-planes (phone box, DSLR box pulled back through ``h``, ``w > 0``).
    """
    wp, hp = phone_size
    wd, hd = dslr_size
    h = np.asarray(h, np.float64)
    ax, ay = anchor if anchor is not None else ((wp - 1) / 2, (hp - 1) / 2)
    w_anchor = h[2] @ np.array([ax, ay, 1.0])
    h = h / w_anchor if w_anchor != 0 else h  # make w positive (and ~1) at the anchor
    r1, r2, r3 = h
    lo_x, hi_x, lo_y, hi_y = margin, wd - 1 - margin, margin, hd - 1 - margin
    return np.array(
        [
            [1.0, 0.0, 0.0],  # x >= 0
            [-1.0, 0.0, wp - 1.0],  # x <= wp - 1
            [0.0, 1.0, 0.0],  # y >= 0
            [0.0, -1.0, hp - 1.0],  # y <= hp - 1
            r3 - np.array([0.0, 0.0, _W_MIN]),  # w > 0
            r1 - lo_x * r3,  # u >= lo_x
            hi_x * r3 - r1,  # u <= hi_x
            r2 - lo_y * r3,  # v >= lo_y
            hi_y * r3 - r2,  # v <= hi_y
        ]
    )


def row_intervals(planes: np.ndarray, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Continuous ``[lo(y), hi(y)]`` x-interval inside all half-planes for each row ``y = 0..height-1``.

    Rows with an empty interval get ``lo > hi``. ``lo`` is convex and ``hi`` concave in ``y``.
    """
    y = np.arange(height, dtype=np.float64)
    lo = np.full(height, -np.inf)
    hi = np.full(height, np.inf)
    for a, b, c in planes:
        rest = b * y + c
        if abs(a) < 1e-12:
            bad = rest < 0
            lo[bad], hi[bad] = np.inf, -np.inf
        elif a > 0:
            lo = np.maximum(lo, -rest / a)
        else:
            hi = np.minimum(hi, -rest / a)
    return lo, hi


def largest_rectangle(planes: np.ndarray, phone_size: tuple[int, int], *, step: int = 8) -> tuple[int, int, int, int]:
    """Largest axis-aligned rectangle of phone pixels whose centres satisfy all half-planes.

    Because the region is convex, a candidate row span ``y0..y1`` allows the columns
    ``ceil(max(lo[y0], lo[y1])) .. floor(min(hi[y0], hi[y1]))``; the area is searched on a coarse grid of row
    spans and then refined by single-row moves around the best span.

    Returns:
        ``(x0, y0, x1, y1)`` half-open; ``(0, 0, 0, 0)`` when no pixel is valid.
    """
    _, height = phone_size
    lo, hi = row_intervals(planes, height)
    ok = np.ceil(lo - 1e-9) <= np.floor(hi + 1e-9)
    rows = np.flatnonzero(ok)
    if len(rows) == 0:
        return (0, 0, 0, 0)
    ya, yb = int(rows[0]), int(rows[-1])
    lo_i = np.ceil(lo - 1e-9)
    hi_i = np.floor(hi + 1e-9)

    def area(y0: np.ndarray, y1: np.ndarray) -> np.ndarray:
        width = np.minimum(hi_i[y0], hi_i[y1]) - np.maximum(lo_i[y0], lo_i[y1]) + 1
        return np.where((y1 >= y0) & (width > 0), width * (y1 - y0 + 1), 0)

    coarse = np.unique(np.r_[np.arange(ya, yb + 1, step), yb])
    g0, g1 = np.meshgrid(coarse, coarse, indexing="ij")
    a = area(g0, g1)
    i = np.unravel_index(int(np.argmax(a)), a.shape)
    best = (int(g0[i]), int(g1[i]))
    # Local refinement: search every span within +-step rows of the coarse optimum.
    r0 = np.arange(max(ya, best[0] - step), min(yb, best[0] + step) + 1)
    r1 = np.arange(max(ya, best[1] - step), min(yb, best[1] + step) + 1)
    g0, g1 = np.meshgrid(r0, r1, indexing="ij")
    a = area(g0, g1)
    i = np.unravel_index(int(np.argmax(a)), a.shape)
    y0, y1 = int(g0[i]), int(g1[i])
    if a[i] <= 0:
        return (0, 0, 0, 0)
    x0 = int(max(lo_i[y0], lo_i[y1]))
    x1 = int(min(hi_i[y0], hi_i[y1])) + 1
    return (x0, y0, x1, y1 + 1)


def crop_scale(h: np.ndarray, rect: tuple[int, int, int, int]) -> float:
    """DSLR px per phone px at the centre of ``rect`` (square root of the local Jacobian determinant)."""
    x0, y0, x1, y1 = rect
    return local_geometry(h, np.array([(x0 + x1 - 1) / 2, (y0 + y1 - 1) / 2])).scale


def antialias_sigma(scale: float) -> float:
    """Gaussian sigma (DSLR px) to pre-filter a DSLR image sampled every ``scale`` DSLR pixels (0 if ``<= 1``).

    Treats each image as band-limited like a Gaussian of sigma 0.5 of its own pixel, as SIFT does: reaching
    0.5 phone pixel (``0.5 * scale`` DSLR px) needs ``0.5 * sqrt(scale**2 - 1)`` more.
    """
    return 0.5 * math.sqrt(scale * scale - 1.0) if scale > 1.0 else 0.0


def resample_dslr(
    dslr: np.ndarray,
    h: np.ndarray,
    rect: tuple[int, int, int, int],
    *,
    interpolation: str = "linear",
) -> np.ndarray:
    """Resample the DSLR image onto the phone pixel grid of ``rect``, anti-aliased when it shrinks.

    ``warpPerspective`` treats ``INTER_AREA`` as bilinear and would alias, so when the DSLR is downscaled
    (more than one DSLR pixel per phone pixel at the crop centre) the DSLR region under the crop is first
    blurred with a Gaussian of :func:`antialias_sigma`, then warped with ``interpolation``. When the DSLR is
    upscaled it is warped directly.

    Args:
        dslr: ``H_d x W_d x 3`` uint8 RGB DSLR image.
        h: 3x3 phone -> DSLR homography (full-resolution, pixel centres at integers).
        rect: ``(x0, y0, x1, y1)`` half-open crop in phone pixels.
        interpolation: ``linear``, ``cubic`` or ``lanczos``.

    Returns:
        ``(y1 - y0) x (x1 - x0) x 3`` uint8 RGB: the DSLR content at each phone pixel of ``rect``.
    """
    x0, y0, x1, y1 = rect
    out_size = (x1 - x0, y1 - y0)
    h = np.asarray(h, np.float64)
    m = h @ _translate(x0, y0)  # crop pixel -> DSLR pixel
    sigma = antialias_sigma(crop_scale(h, rect))
    # Work on the DSLR region under the crop only (plus room for the blur and interpolation kernels).
    corners = np.array([[x0 - 0.5, y0 - 0.5], [x1 - 0.5, y0 - 0.5], [x1 - 0.5, y1 - 0.5], [x0 - 0.5, y1 - 0.5]])
    q = np.c_[corners, np.ones(4)] @ h.T
    q = q[:, :2] / q[:, 2:3]
    pad = math.ceil(4 * sigma) + 4
    hd, wd = dslr.shape[:2]
    bx0, by0 = max(0, math.floor(q[:, 0].min()) - pad), max(0, math.floor(q[:, 1].min()) - pad)
    bx1, by1 = min(wd, math.ceil(q[:, 0].max()) + pad + 1), min(hd, math.ceil(q[:, 1].max()) + pad + 1)
    src = dslr[by0:by1, bx0:bx1]
    if sigma > 0.05:
        src = cv2.GaussianBlur(src, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
        log.debug("anti-alias: DSLR region %dx%d blurred with sigma %.3f px", src.shape[1], src.shape[0], sigma)
    m = _translate(-bx0, -by0) @ m
    flags = INTERPOLATIONS[interpolation] | cv2.WARP_INVERSE_MAP
    return cv2.warpPerspective(src, m, out_size, flags=flags, borderMode=cv2.BORDER_REPLICATE)
