"""SIFT features at a working scale and ratio-test matching, in full-resolution coordinates.

Convention: keypoints are returned as ``(x, y)`` full-resolution pixel coordinates with pixel centres at
integers (see :mod:`dpedkit`). An image shrunk by ``s`` with ``INTER_AREA`` maps a full-resolution point ``x``
to ``(x + 0.5) * s - 0.5``; SIFT runs with ``enable_precise_upscale=True`` so its internal 2x upscale keeps that
convention, and points are lifted back with ``x_full = (x_s + 0.5) / s - 0.5``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import cv2
import numpy as np

from dpedkit.config import AlignConfig

log = logging.getLogger(__name__)

_FLANN_KDTREE = 1


@dataclass(frozen=True)
class Features:
    """SIFT keypoints and descriptors of one image.

    Attributes:
        pts: ``N x 2`` float64 ``(x, y)`` in full-resolution pixels, pixel centres at integers.
        desc: ``N x 128`` float32 SIFT descriptors.
        scale: the working scale the detector ran at (``<= 1``; working size = full size * scale).
        size: ``N`` float64 SIFT keypoint diameters in full-resolution pixels (localisation error grows with it).
    """

    pts: np.ndarray
    desc: np.ndarray
    scale: float
    size: np.ndarray

    def __len__(self) -> int:
        return len(self.pts)


@dataclass(frozen=True)
class Matches:
    """Putative correspondences after the ratio test and duplicate removal, best (lowest ratio) first.

    Attributes:
        src: ``N x 2`` float64 points in the first image (full-resolution pixels).
        dst: ``N x 2`` float64 points in the second image.
        ratio: ``N`` float32 Lowe ratios (nearest / second-nearest descriptor distance), ascending.
        src_size: ``N`` keypoint diameters in the first image (full-resolution px).
        dst_size: ``N`` keypoint diameters in the second image (full-resolution px).
    """

    src: np.ndarray
    dst: np.ndarray
    ratio: np.ndarray
    src_size: np.ndarray
    dst_size: np.ndarray

    def __len__(self) -> int:
        return len(self.src)


def working_scale(width: int, height: int, work_mp: float) -> float:
    """Scale (``<= 1``) that brings a ``width x height`` image down to about ``work_mp`` megapixels."""
    return min(1.0, math.sqrt(work_mp * 1e6 / (width * height)))


def to_gray_small(rgb: np.ndarray, scale: float) -> tuple[np.ndarray, float, float]:
    """Gray ``uint8`` version of an ``H x W x 3`` RGB image shrunk by ``scale`` with pixel-area averaging.

    The output is ``round(W * scale) x round(H * scale)``. Large shrinks go in two steps: first by the integer
    ``k = floor(1 / scale)`` over the top-left ``k``-divisible part (OpenCV's fast block average, ~3x quicker),
    then to the final size. Both steps keep the pixel-centre convention, so a full-resolution point ``x`` lands
    at ``(x + 0.5) * sx - 0.5`` with the exact factors returned.

    Returns:
        ``(small, sx, sy)``: the image and its per-axis scale factors.
    """
    gray = rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    h, w = gray.shape
    if scale >= 1.0:
        return gray, 1.0, 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    k = int(1.0 / scale)
    if k >= 2:
        gray = cv2.resize(gray[: h // k * k, : w // k * k], (w // k, h // k), interpolation=cv2.INTER_AREA)
    else:
        k = 1
    small = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    return small, size[0] / (k * gray.shape[1]), size[1] / (k * gray.shape[0])


def detect(rgb: np.ndarray, *, scale: float, config: AlignConfig = AlignConfig()) -> Features:  # noqa: B008
    """Detect and describe SIFT features of an image at a working scale.

    Args:
        rgb: ``H x W x 3`` uint8 RGB (or ``H x W`` gray) image, full resolution.
        scale: working scale in ``(0, 1]``; the image is shrunk with ``INTER_AREA`` before detection.
        config: the detector's options: ``max_features`` (keep the strongest this many keypoints, 0: all) and
            ``contrast_threshold`` (OpenCV's; lower finds more features on flat images). A new feature option is a
            field of :class:`AlignConfig` read here, and nowhere else.

    Returns:
        :class:`Features` with points lifted to full-resolution coordinates (pixel-centre convention).
    """
    small, sx, sy = to_gray_small(rgb, scale)
    sift = cv2.SIFT_create(nfeatures=config.max_features, contrastThreshold=config.contrast_threshold,
                           enable_precise_upscale=True)  # fmt: skip
    kps, desc = sift.detectAndCompute(small, None)
    if desc is None or not kps:
        return Features(np.zeros((0, 2)), np.zeros((0, 128), np.float32), scale, np.zeros(0))
    pts = np.array([kp.pt for kp in kps], np.float64)
    size = np.array([kp.size for kp in kps], np.float64) * 2.0 / (sx + sy)
    pts[:, 0] = (pts[:, 0] + 0.5) / sx - 0.5
    pts[:, 1] = (pts[:, 1] + 0.5) / sy - 0.5
    log.debug("SIFT at scale %.3f on %dx%d: %d keypoints", scale, small.shape[1], small.shape[0], len(kps))
    return Features(pts, np.ascontiguousarray(desc, np.float32), scale, size)


def match(a: Features, b: Features, *, config: AlignConfig = AlignConfig(), trees: int = 5,  # noqa: B008
          checks: int = 32) -> Matches:  # fmt: skip
    """Match descriptors of ``a`` to ``b`` with FLANN, Lowe's ratio test and duplicate removal.

    SIFT emits several orientations at one location, so the second-nearest neighbour used by the ratio test
    is the nearest one at a *different* location of ``b``, and repeated pairs are collapsed so each location
    of ``a`` and each location of ``b`` is used at most once (the lowest ratio wins).

    Args:
        a: features of the first (phone) image.
        b: features of the second (DSLR) image.
        config: the matcher's options: ``ratio`` (keep a match when nearest / second-nearest distance is below it).
        trees: FLANN KD-trees.
        checks: FLANN leaf checks per query.

    Returns:
        :class:`Matches` sorted by ratio, ascending (best first, as PROSAC expects).
    """
    empty = Matches(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0, np.float32), np.zeros(0), np.zeros(0))
    if len(a) < 2 or len(b) < 3:
        return empty
    index = cv2.flann_Index(b.desc, {"algorithm": _FLANN_KDTREE, "trees": trees})  # arrays, no DMatch objects
    train, sq = index.knnSearch(a.desc, 3, params={"checks": checks})
    found = (train >= 0).all(axis=1)
    if not found.any():
        return empty
    train, query = train[found].astype(np.int64), np.flatnonzero(found)
    dist = np.sqrt(np.maximum(sq[found].astype(np.float64), 0.0))  # FLANN's L2 distances are squared
    # Second neighbour = the nearest one at a location other than the best one's (orientation duplicates).
    same = np.all(np.abs(b.pts[train[:, 1]] - b.pts[train[:, 0]]) <= 1e-3, axis=1)
    second = np.where(same, dist[:, 2], dist[:, 1])
    same2 = same & np.all(np.abs(b.pts[train[:, 2]] - b.pts[train[:, 0]]) <= 1e-3, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = dist[:, 0] / second
    ok = (q < config.ratio) & ~same2 & (second > 0)
    if not ok.any():
        return empty
    qi, ti, r = query[ok], train[ok, 0], q[ok]
    order = np.argsort(r, kind="stable")
    qi, ti = qi[order], ti[order]
    src, dst = a.pts[qi], b.pts[ti]
    keep = _first_unique(src) & _first_unique(dst)  # kept rows are unique on both sides
    rr = r[order].astype(np.float32)
    return Matches(src[keep], dst[keep], rr[keep], a.size[qi][keep], b.size[ti][keep])


def _first_unique(pts: np.ndarray) -> np.ndarray:
    """Boolean mask keeping the first occurrence of each location (rounded to 1/1000 px)."""
    keys = np.round(pts * 1000).astype(np.int64)
    _, first = np.unique(keys, axis=0, return_index=True)
    mask = np.zeros(len(pts), bool)
    mask[first] = True
    return mask
