"""Robust homography fit, least-squares refinement and plausibility checks.

Convention: ``H`` maps phone points to DSLR points, ``p_dslr ~ H @ p_phone``, full-resolution pixel
coordinates with pixel centres at integers. Residuals are measured in DSLR pixels.
Failures are returned as :class:`dpedkit.errors.Failure` values, never raised.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace

import cv2
import numpy as np

from dpedkit.errors import Failure
from dpedkit.geometry import apply_homography

log = logging.getLogger(__name__)

# the robust estimators of AlignConfig.method (keys: the dpedkit.config.Method choices)
METHODS: dict[str, int] = {
    "magsac": cv2.USAC_MAGSAC,
    "prosac": cv2.USAC_PROSAC,
    "accurate": cv2.USAC_ACCURATE,
    "ransac": cv2.RANSAC,
}


@dataclass(frozen=True)
class Fit:
    """A fitted homography and its inliers.

    Attributes:
        H: 3x3 float64, phone -> DSLR, normalised so ``H[2, 2] == 1``.
        inliers: boolean mask over the putative matches.
        rmse: root-mean-square inlier residual (DSLR pixels).
    """

    H: np.ndarray
    inliers: np.ndarray
    rmse: float

    @property
    def n_inliers(self) -> int:
        """Number of inliers."""
        return int(self.inliers.sum())


@dataclass(frozen=True)
class LocalGeometry:
    """First-order behaviour of ``H`` around a phone point: scale, rotation, anisotropy, orientation."""

    scale: float  # sqrt(|det J|): DSLR px per phone px
    rotation_deg: float  # rotation of the closest similarity, in (-180, 180]
    anisotropy: float  # ratio of the singular values of J (>= 1)
    det: float  # det J (< 0 means mirrored)
    turn: int = 0  # the phone's clockwise quarter turn relative to the DSLR accepted by check_geometry (0..270)


def residuals(h: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Distances (DSLR px) between ``h @ src`` and ``dst``; ``inf`` where a point maps to infinity."""
    if len(src) == 0:
        return np.zeros(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.linalg.norm(apply_homography(h, src) - dst, axis=1)
    return np.where(np.isfinite(d), d, np.inf)


def robust_fit(
    src: np.ndarray,
    dst: np.ndarray,
    *,
    threshold: float,
    method: str = "magsac",
    confidence: float = 0.999,
    max_iters: int = 10000,
    refits: int = 3,
    sigma: np.ndarray | None = None,
) -> Fit | Failure:
    """Fit ``dst ~ H src`` robustly, then re-fit by least squares on the inliers found under ``H`` itself.

    OpenCV's inlier mask is not trusted: after the robust estimate, inliers are recomputed from the
    residuals, and ``refits`` rounds of least-squares (Levenberg-Marquardt) fitting on them follow.

    Args:
        src: ``N x 2`` phone points (full-resolution px), best matches first (PROSAC uses the order).
        dst: ``N x 2`` DSLR points.
        threshold: inlier residual bound in DSLR pixels.
        method: one of ``METHODS`` (``magsac`` = MAGSAC++, ``prosac``, ``accurate`` = GC-RANSAC, ``ransac``).
        confidence: robust estimator confidence.
        max_iters: robust estimator iteration cap.
        refits: least-squares re-fit rounds on the recomputed inliers.
        sigma: optional ``N`` expected localisation error of each match (DSLR px, relative values suffice);
            when given, a final weighted least-squares fit on the inliers uses weights ``1 / sigma``.

    Returns:
        A :class:`Fit`, or ``Failure("too-few-matches")`` when no homography is found.
    """
    if len(src) < 4:
        return Failure("too-few-matches", f"{len(src)} putative matches, a homography needs at least 4")
    s32, d32 = src.astype(np.float32), dst.astype(np.float32)
    h, _ = cv2.findHomography(s32, d32, METHODS[method], threshold, maxIters=max_iters, confidence=confidence)
    if h is None or not np.all(np.isfinite(h)) or abs(h[2, 2]) < 1e-12:
        return Failure("too-few-matches", f"no consistent homography among {len(src)} matches")
    h = h / h[2, 2]
    inl = residuals(h, src, dst) < threshold
    for _ in range(refits):
        if inl.sum() < 4:
            break
        h_ls, _ = cv2.findHomography(s32[inl], d32[inl], 0)
        if h_ls is None or not np.all(np.isfinite(h_ls)):
            break
        h_new = h_ls / h_ls[2, 2]
        inl_new = residuals(h_new, src, dst) < threshold
        if inl_new.sum() < inl.sum():
            break
        converged = np.array_equal(inl_new, inl)
        h, inl = h_new, inl_new
        if converged:
            break
    if sigma is not None and inl.sum() >= 8:
        h = weighted_fit(h, src[inl], dst[inl], sigma[inl])
        inl = residuals(h, src, dst) < threshold
    r = residuals(h, src[inl], dst[inl])
    rmse = float(np.sqrt(np.mean(r**2))) if len(r) else math.inf
    return Fit(h, inl, rmse)


def _normaliser(pts: np.ndarray) -> np.ndarray:
    """Similarity moving ``pts`` to zero mean and unit RMS distance (conditioning, as in Hartley's DLT)."""
    c = pts.mean(axis=0)
    d = np.sqrt(np.mean(np.sum((pts - c) ** 2, axis=1))) or 1.0
    return np.array([[1 / d, 0, -c[0] / d], [0, 1 / d, -c[1] / d], [0, 0, 1.0]])


def weighted_fit(h0: np.ndarray, src: np.ndarray, dst: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Refine ``h0`` by minimising ``sum(|H src_i - dst_i|^2 / sigma_i^2)`` (Levenberg-Marquardt).

    SIFT localisation error grows with the keypoint size, so matches found at coarse scales get less weight.

    Args:
        h0: 3x3 initial homography (src -> dst).
        src: ``N x 2`` source points, ``N >= 8``.
        dst: ``N x 2`` destination points.
        sigma: ``N`` positive expected errors (relative values suffice).

    Returns:
        The refined 3x3 homography (``H[2, 2] == 1``), or ``h0`` when the solver fails.
    """
    from scipy.optimize import least_squares

    ts, td = _normaliser(src), _normaliser(dst)
    hn = td @ h0 @ np.linalg.inv(ts)
    hn = hn / hn[2, 2]
    sn = apply_homography(ts, src)
    dn = apply_homography(td, dst)
    w = (1.0 / np.asarray(sigma, np.float64))[:, None]

    def resid(p: np.ndarray) -> np.ndarray:
        hp = np.append(p, 1.0).reshape(3, 3)
        return ((apply_homography(hp, sn) - dn) * w).ravel()

    sol = least_squares(resid, hn.ravel()[:8], method="lm", x_scale="jac")
    if not sol.success or not np.all(np.isfinite(sol.x)):
        return h0
    h = np.linalg.inv(td) @ np.append(sol.x, 1.0).reshape(3, 3) @ ts
    return h / h[2, 2]


def local_geometry(h: np.ndarray, pt: np.ndarray) -> LocalGeometry:
    """Jacobian of ``h`` at phone point ``pt`` (``(x, y)``), summarised as scale/rotation/anisotropy."""
    x, y = float(pt[0]), float(pt[1])
    w = h[2, 0] * x + h[2, 1] * y + h[2, 2]
    u = (h[0, 0] * x + h[0, 1] * y + h[0, 2]) / w
    v = (h[1, 0] * x + h[1, 1] * y + h[1, 2]) / w
    jac = np.array(
        [
            [(h[0, 0] - u * h[2, 0]) / w, (h[0, 1] - u * h[2, 1]) / w],
            [(h[1, 0] - v * h[2, 0]) / w, (h[1, 1] - v * h[2, 1]) / w],
        ]
    )
    det = float(np.linalg.det(jac))
    sv = np.linalg.svd(jac, compute_uv=False)
    aniso = float(sv[0] / sv[1]) if sv[1] > 0 else math.inf
    # Rotation of the closest similarity [[a, -b], [b, a]].
    a, b = (jac[0, 0] + jac[1, 1]) / 2, (jac[1, 0] - jac[0, 1]) / 2
    return LocalGeometry(math.sqrt(abs(det)), math.degrees(math.atan2(b, a)), aniso, det)


def check_geometry(
    h: np.ndarray,
    phone_size: tuple[int, int],
    centre: np.ndarray,
    *,
    scale_range: tuple[float, float],
    max_rotation_deg: float,
    max_anisotropy: float,
    turn_tolerance_deg: float = 0.0,
) -> tuple[LocalGeometry, Failure | None]:
    """Plausibility of ``h`` over the phone image: finite, no fold, plausible scale and orientation.

    A rotation within ``turn_tolerance_deg`` of 90, 180 or 270 degrees is a photo turned by a quarter turn
    (EXIF orientation missing or wrong): accepted, with the turn in ``geometry.turn``. Image axes point right
    and down, so a positive ``rotation_deg`` turns the phone's content clockwise onto the DSLR's: the phone
    photo is then turned ``-rotation_deg`` (mod 360) clockwise relative to the DSLR's.

    Args:
        h: 3x3 phone -> DSLR homography.
        phone_size: ``(width, height)`` of the phone image.
        centre: phone point where scale/rotation are measured (e.g. the inlier centroid).
        scale_range: allowed ``(min, max)`` DSLR px per phone px.
        max_rotation_deg: largest allowed absolute rotation.
        max_anisotropy: largest allowed singular-value ratio of the local Jacobian.
        turn_tolerance_deg: largest distance from a quarter turn accepted as a turned photo (0: none).

    Returns:
        ``(geometry at centre, failure or None)``.
    """
    geo = local_geometry(h, centre)
    if not np.all(np.isfinite(h)) or not math.isfinite(geo.scale):
        return geo, Failure("degenerate-homography", "the homography is not finite")
    if geo.det <= 0:
        return geo, Failure("degenerate-homography", "the homography mirrors the image (negative determinant)")
    if geo.anisotropy > max_anisotropy:
        return geo, Failure(
            "degenerate-homography", f"anisotropy {geo.anisotropy:.2f} exceeds {max_anisotropy:g} (shear/squash)"
        )
    lo, hi = scale_range
    if not lo <= geo.scale <= hi:
        return geo, Failure("implausible-scale", f"scale {geo.scale:.3f} DSLR px per phone px outside [{lo:g}, {hi:g}]")
    quarters = round(geo.rotation_deg / 90.0)
    off = geo.rotation_deg - 90.0 * quarters
    if quarters % 4 and abs(off) <= turn_tolerance_deg:
        return replace(geo, turn=(-90 * quarters) % 360), None
    if abs(geo.rotation_deg) > max_rotation_deg:
        near = f" nor within {turn_tolerance_deg:g} deg of a quarter turn" if turn_tolerance_deg > 0 else ""
        return geo, Failure(
            "implausible-rotation", f"rotation {geo.rotation_deg:.1f} deg exceeds +-{max_rotation_deg:g} deg{near}"
        )
    return geo, None
