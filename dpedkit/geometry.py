"""Homography helpers shared by synthesis, alignment, patches and tests.

Convention (see :mod:`dpedkit`): points are ``(x, y)`` with pixel centres at integers; ``H_a_to_b`` maps
image ``a`` points to image ``b``. An image resized by factor ``s`` (``s < 1`` shrinks) maps a full-resolution
point ``x`` to ``(x + 0.5) * s - 0.5`` (pixel-centre scaling, as ``cv2.resize`` samples).
"""

from __future__ import annotations

import numpy as np


def scale_matrix(s: float) -> np.ndarray:
    """3x3 matrix taking full-resolution pixel coordinates to those of the image resized by ``s``."""
    return np.array([[s, 0.0, 0.5 * s - 0.5], [0.0, s, 0.5 * s - 0.5], [0.0, 0.0, 1.0]])


def rescale_homography(h_small: np.ndarray, s_src: float, s_dst: float) -> np.ndarray:
    """Lift a homography estimated between images resized by ``s_src`` and ``s_dst`` to full resolution."""
    h = np.linalg.inv(scale_matrix(s_dst)) @ h_small @ scale_matrix(s_src)
    return h / h[2, 2]


def apply_homography(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Map ``N x 2`` points ``(x, y)`` through ``h``; returns ``N x 2`` float64."""
    pts = np.asarray(pts, np.float64).reshape(-1, 2)
    q = np.c_[pts, np.ones(len(pts))] @ np.asarray(h, np.float64).T
    return q[:, :2] / q[:, 2:3]


def image_corners(width: int, height: int) -> np.ndarray:
    """Centres of the four corner pixels, clockwise from top-left, as ``4 x 2``."""
    return np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], np.float64)


def mean_corner_error(h_est: np.ndarray, h_true: np.ndarray, width: int, height: int) -> float:
    """Mean distance (px, in the target image) between the source corners mapped by ``h_est`` and ``h_true``."""
    c = image_corners(width, height)
    return float(np.linalg.norm(apply_homography(h_est, c) - apply_homography(h_true, c), axis=1).mean())


def grid_residual(
    h_est: np.ndarray, h_true: np.ndarray, width: int, height: int, *, step: int = 16
) -> dict[str, float]:
    """Distances (px, target image) between ``h_est`` and ``h_true`` on a dense source grid: median/p95/max."""
    xs, ys = np.meshgrid(np.arange(0, width, step), np.arange(0, height, step))
    pts = np.c_[xs.ravel(), ys.ravel()]
    d = np.linalg.norm(apply_homography(h_est, pts) - apply_homography(h_true, pts), axis=1)
    return {"median": float(np.median(d)), "p95": float(np.percentile(d, 95)), "max": float(d.max())}


def turn_matrix(turn: int, width: int, height: int) -> np.ndarray:
    """``H_turned_to_original``: pixels of a ``width x height`` image turned clockwise by ``turn`` -> its own.

    ``turn`` is 0, 90, 180 or 270 degrees; ``width`` and ``height`` are those of the image before the turn.
    """
    w, h = width - 1, height - 1
    maps = {
        0: [[1, 0, 0], [0, 1, 0]],
        90: [[0, 1, 0], [-1, 0, h]],
        180: [[-1, 0, w], [0, -1, h]],
        270: [[0, -1, w], [1, 0, 0]],
    }
    if turn not in maps:
        raise ValueError(f"turn must be 0, 90, 180 or 270; got {turn!r}")
    return np.array([*maps[turn], [0, 0, 1]], np.float64)


def turn_image(img: np.ndarray, turn: int) -> np.ndarray:
    """``img`` turned clockwise by ``turn`` degrees (a multiple of 90; negative turns counter-clockwise)."""
    if turn % 90:
        raise ValueError(f"turn must be a multiple of 90 degrees; got {turn!r}")
    return np.ascontiguousarray(np.rot90(img, -(turn // 90) % 4))
