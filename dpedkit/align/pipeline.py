"""Entry points of the alignment stage: ``align_pair`` (arrays), ``align_files`` (paths), ``write_alignment``.

Pipeline: gray + ``INTER_AREA`` shrink to ``work_mp`` megapixels -> SIFT (precise upscale, pixel-centre
lifting to full resolution) -> FLANN + ratio test + duplicate removal -> USAC robust homography (MAGSAC++) with
inliers recomputed under the returned ``H``, least-squares re-fits on them and a final fit weighted by the
keypoint sizes, all at full resolution -> validation (inlier count/ratio/RMSE, plausible scale, rotation and
anisotropy, overlap, inlier coverage of the crop) -> largest valid crop -> DSLR resampled onto the phone grid
(Gaussian pre-filter when the DSLR shrinks). OpenCV's RNG is seeded from the config: results are repeatable.

Real shoots: a photo turned by a quarter turn (EXIF lost or wrong) aligns like any other, the turn recorded as
``orientation_fix`` (the phone's clockwise turn relative to the DSLR: 90, 180 or 270; patches stay on the phone's
grid); a pair that fails to match, or fits with fewer than half its matches, is tried once more with the phone
image flipped left-right, and rejected as ``mirrored`` when that aligns (twice as well, for the weak fit). A RAW
photo's features come from LibRaw's half-size output; its full demosaic is made only once the pair has passed
every check.

Convention: ``H_phone_to_dslr`` maps phone ``(x, y, 1)`` to DSLR pixels, full resolution, pixel centres at
integers; ``crop`` is ``[x0, y0, x1, y1]`` half-open in phone pixels.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dpedkit import __version__
from dpedkit.align.features import Features, Matches, detect, match, working_scale
from dpedkit.align.homography import check_geometry, robust_fit
from dpedkit.align.warp import largest_rectangle, resample_dslr, valid_halfplanes
from dpedkit.config import AlignConfig
from dpedkit.errors import Failure, InputError, check_rgb_uint8
from dpedkit.geometry import apply_homography, turn_image, turn_matrix
from dpedkit.io import AtomicFile, dumps, encode_image, read_image, to_uint8
from dpedkit.io.camera import half_size_luma, is_raw

log = logging.getLogger(__name__)


@dataclass
class AlignResult:
    """Outcome of aligning one phone/DSLR pair.

    Attributes:
        status: ``"ok"`` or a failure word (``too-small``, ``too-few-matches``, ``too-few-inliers``,
            ``low-inlier-ratio``, ``high-residual``, ``degenerate-homography``, ``implausible-scale``,
            ``implausible-rotation``, ``small-overlap``, ``inliers-clustered``, ``mirrored``).
        reason: a human sentence with the numbers behind a failure (``""`` when ok).
        H_phone_to_dslr: 3x3 float64 phone -> DSLR (full resolution, pixel centres at integers); None unless ok.
        crop: ``(x0, y0, x1, y1)`` half-open crop in phone pixels; None unless ok.
        phone: ``h x w x 3`` uint8 RGB phone image cropped to ``crop``; None unless ok.
        dslr: ``h x w x 3`` uint8 RGB DSLR content resampled onto the same phone pixels; None unless ok.
        matches: putative matches after the ratio test and duplicate removal.
        inliers: inliers of the final homography.
        rmse_px: inlier RMSE in full-resolution DSLR pixels (NaN when no fit).
        scale: DSLR pixels per phone pixel at the inlier centroid (NaN when no fit).
        rotation_deg: rotation of the DSLR relative to the phone at the inlier centroid (NaN when no fit).
        orientation_fix: the quarter turn found between the two photos: how far the phone photo is turned
            clockwise relative to the DSLR's (0, 90, 180 or 270); the crops stay on the phone's grid.
        sharpness_ratio: DSLR / phone sharpness (mean absolute Laplacian) of the two crops on the phone's grid,
            measured when ``scale < 1`` (NaN otherwise); below 1 the DSLR looks softer (swapped folders?).
        overlap: crop area / phone image area (0 when no crop).
        coverage: area of the inliers' convex hull (phone) / crop area (0 when no crop).
        phone_size: ``(width, height)`` of the full phone image.
        dslr_size: ``(width, height)`` of the full DSLR image.
        phone_pts: ``N x 2`` float64 inlier points in the phone image (full resolution).
        dslr_pts: ``N x 2`` float64 matching inlier points in the DSLR image.
        timings: seconds per stage (``decode``, ``features``, ``match``, ``homography``, ``crop``, ``warp``,
            ``total``).
        sources: what the camera decoders recorded, per side (``"phone"``, ``"dslr"``) that is a RAW or HEIF
            file (RAW: CFA pattern, black/white levels, white balance, colour matrix...).
        config: the options it was aligned with.
    """

    status: str
    reason: str = ""
    H_phone_to_dslr: np.ndarray | None = None
    crop: tuple[int, int, int, int] | None = None
    phone: np.ndarray | None = None
    dslr: np.ndarray | None = None
    matches: int = 0
    inliers: int = 0
    rmse_px: float = math.nan
    scale: float = math.nan
    rotation_deg: float = math.nan
    orientation_fix: int = 0
    sharpness_ratio: float = math.nan
    overlap: float = 0.0
    coverage: float = 0.0
    phone_size: tuple[int, int] = (0, 0)
    dslr_size: tuple[int, int] = (0, 0)
    phone_pts: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    dslr_pts: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    timings: dict[str, float] = field(default_factory=dict)
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    config: AlignConfig | None = None

    @property
    def ok(self) -> bool:
        """True when the pair was aligned and cropped."""
        return self.status == "ok"

    @property
    def looks_swapped(self) -> bool:
        """The DSLR photo has fewer pixels per scene unit than the phone photo and looks softer on its grid."""
        return self.scale < 1 and self.sharpness_ratio < 1

    def __bool__(self) -> bool:
        return self.ok

    def to_json(self) -> dict[str, Any]:
        """The ``alignment.json`` object (no image arrays; NaN written as null)."""

        def num(v: float) -> float | None:
            return None if v is None or not math.isfinite(v) else float(v)

        return {
            "status": self.status,
            "reason": self.reason,
            "H_phone_to_dslr": None if self.H_phone_to_dslr is None else self.H_phone_to_dslr.tolist(),
            "crop": None if self.crop is None else [int(v) for v in self.crop],
            "matches": int(self.matches),
            "inliers": int(self.inliers),
            "rmse_px": num(self.rmse_px),
            "scale": num(self.scale),
            "rotation_deg": num(self.rotation_deg),
            "orientation_fix": int(self.orientation_fix),
            "sharpness_ratio": num(self.sharpness_ratio),
            "overlap": float(self.overlap),
            "coverage": float(self.coverage),
            "phone_size": list(self.phone_size),
            "dslr_size": list(self.dslr_size),
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            **({"sources": self.sources} if self.sources else {}),
            "version": __version__,
            "config": None if self.config is None else self.config.to_dict(),
        }


class _Stopwatch:
    """Accumulates wall-clock seconds per named stage."""

    def __init__(self, timings: dict[str, float] | None = None) -> None:
        self.timings: dict[str, float] = dict(timings or {})

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t0

    def finish(self) -> dict[str, float]:
        self.timings["total"] = sum(v for k, v in self.timings.items() if k != "total")
        return self.timings


def _map2(fn: Any, a: Any, b: Any, threads: int) -> tuple[Any, Any]:
    """``(fn(a), fn(b))``, side by side in two threads when ``threads > 1`` (OpenCV releases the GIL)."""
    if threads <= 1:
        return fn(a), fn(b)
    with ThreadPoolExecutor(max_workers=2) as pool:
        fa, fb = pool.submit(fn, a), pool.submit(fn, b)
        return fa.result(), fb.result()


@dataclass
class Photo:
    """One side of a pair being aligned: the image its features are found on, and the full image on demand.

    Attributes:
        preview: ``H x W x 3`` uint8 RGB: the full image, or LibRaw's half-size output of a RAW file.
        factor: full-resolution pixels per preview pixel (1, or 2 for a half-size RAW preview).
        size: ``(width, height)`` of the full image.
        load: reads the full image (a RAW file's demosaic) when ``preview`` is not it.
        meta: what the camera decoder recorded (empty for JPEG, PNG...).
    """

    preview: np.ndarray
    factor: int = 1
    size: tuple[int, int] = (0, 0)
    load: Callable[[], np.ndarray] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, rgb: np.ndarray, meta: dict[str, Any] | None = None) -> Photo:
        """A photo whose full image is ``rgb``."""
        return cls(rgb, 1, (rgb.shape[1], rgb.shape[0]), None, dict(meta or {}))

    def full(self) -> np.ndarray:
        """The full-resolution image (decoded now, once, when only the preview was read)."""
        if self.load is not None:
            self.preview, self.factor, self.load = self.load(), 1, None
        return self.preview


def align_pair(
    phone: np.ndarray,
    dslr: np.ndarray,
    *,
    config: AlignConfig = AlignConfig(),  # noqa: B008 - frozen, immutable default
    timings: dict[str, float] | None = None,
    features: tuple[Features, Features] | None = None,
) -> AlignResult:
    """Align a phone photo to its DSLR twin, crop both to the common region and resample the DSLR onto it.

    Args:
        phone: ``H_p x W_p x 3`` uint8 RGB phone image.
        dslr: ``H_d x W_d x 3`` uint8 RGB DSLR image (any scale ratio within ``config.scale_range``).
        config: options, see :class:`AlignConfig`.
        timings: stage timings measured before this call (e.g. ``{"decode": ...}``), carried into the result.
        features: the two images' :func:`detect_features`, when the caller computed them already.

    Returns:
        An :class:`AlignResult`; a pair that cannot be aligned has ``status`` set to the failure word and
        ``reason`` to a sentence, and no homography, crop or images.

    Raises:
        InputError: an argument is not an ``H x W x 3`` uint8 array.

    Example:
        >>> res = align_pair(phone_rgb, dslr_rgb)  # doctest: +SKIP
        >>> res.status, res.crop, res.dslr.shape == res.phone.shape  # doctest: +SKIP
        ('ok', (12, 8, 1490, 1110), True)
    """
    check_rgb_uint8(phone, "phone")
    check_rgb_uint8(dslr, "dslr")
    return align_photos(Photo.of(phone), Photo.of(dslr), config=config, timings=timings, features=features)


def align_photos(
    phone: Photo,
    dslr: Photo,
    *,
    config: AlignConfig = AlignConfig(),  # noqa: B008 - frozen, immutable default
    timings: dict[str, float] | None = None,
    features: tuple[Features, Features] | None = None,
) -> AlignResult:
    """:func:`align_pair` of two :class:`Photo` (the full image behind a RAW preview is read only when needed)."""
    cfg = config
    clock = _Stopwatch(timings)
    psize, dsize = phone.size, dslr.size
    res = AlignResult(status="ok", phone_size=psize, dslr_size=dsize, config=cfg)
    res.sources = {side: p.meta for side, p in (("phone", phone), ("dslr", dslr)) if p.meta}

    def fail(f: Failure) -> AlignResult:
        res.status, res.reason, res.timings = f.reason, f.detail, clock.finish()
        log.debug("pair rejected: %s", f)
        return res

    small = min(*psize, *dsize)
    if small < cfg.min_side:
        return fail(Failure("too-small", f"smallest side is {small} px, below the {cfg.min_side} px minimum"))

    s_p, s_d = working_scale(*psize, cfg.work_mp), working_scale(*dsize, cfg.work_mp)
    if features is None:
        with clock.stage("features"):
            features = _map2(lambda p: detect_features(p.preview, cfg, factor=p.factor), phone, dslr, cfg.threads)
    fp, fd = features
    fit, failure = _match_and_fit(fp, fd, s_p, s_d, cfg, clock, res)
    if failure is None:  # a Failure is falsy: always compare with None
        failure = _check_geometry(fit.H, psize, cfg, res)
    if failure is None and res.orientation_fix:
        # the phone photo is turned by a quarter: its features again on the pixels turned upright, so the pair
        # aligns exactly as if it had been stored upright (then mapped back onto the phone's own grid)
        with clock.stage("turn"):
            fit = _upright_fit(phone, fd, res.orientation_fix, s_p, s_d, cfg, res) or fit
    if failure is None and res.inliers < _MIRROR_CHECK * res.matches:
        # a mirror image of a symmetric scene (a facade) can fit a part of it: the flipped photo must not fit
        # twice as well
        with clock.stage("mirrored"):
            failure = _mirrored(phone, fd, s_p, s_d, cfg, beat=2 * res.inliers)
    elif failure is not None and failure.reason in _MATCH_FAILURES:
        with clock.stage("mirrored"):
            mirrored = _mirrored(phone, fd, s_p, s_d, cfg)
        failure = failure if mirrored is None else mirrored
    if failure is not None:
        return fail(failure)
    with clock.stage("crop"):
        anchor = tuple(res.phone_pts.mean(axis=0))
        rect = largest_rectangle(valid_halfplanes(fit.H, psize, dsize, margin=cfg.margin_px, anchor=anchor), psize)
    res.overlap = (rect[2] - rect[0]) * (rect[3] - rect[1]) / (psize[0] * psize[1])
    side = min(rect[2] - rect[0], rect[3] - rect[1])
    if res.overlap < cfg.min_overlap or side < cfg.min_side:
        need = f"{cfg.min_overlap:.0%} of it" if res.overlap < cfg.min_overlap else f"a side of {cfg.min_side} px"
        return fail(
            Failure(
                "small-overlap",
                f"the largest common rectangle {rect[2] - rect[0]}x{rect[3] - rect[1]} covers {res.overlap:.1%} "
                f"of the phone image, need {need}",
            )
        )
    res.coverage = _hull_area(res.phone_pts) / max(1, (rect[2] - rect[0]) * (rect[3] - rect[1]))
    if res.coverage < cfg.min_coverage:
        return fail(
            Failure(
                "inliers-clustered",
                f"the inliers' convex hull covers {res.coverage:.1%} of the crop, need {cfg.min_coverage:.0%}",
            )
        )
    if phone.load is not None or dslr.load is not None:
        with clock.stage("decode"):  # a RAW file's full demosaic, now that the pair is known to align
            _map2(Photo.full, phone, dslr, cfg.threads)
    with clock.stage("warp"):
        x0, y0, x1, y1 = rect
        res.phone = phone.full()[y0:y1, x0:x1]  # a view: OpenCV and numpy take row-strided arrays as they are
        res.dslr = resample_dslr(dslr.full(), fit.H, rect, interpolation=cfg.interpolation)
    res.H_phone_to_dslr, res.crop = fit.H, rect
    if res.scale < 1:  # the DSLR is the sharper, larger camera: fewer pixels per scene unit is a hint
        with clock.stage("warp"):
            res.sharpness_ratio = sharpness(res.dslr) / max(sharpness(res.phone), 1e-9)
    res.timings = clock.finish()
    log.debug("pair aligned: %d/%d inliers, rmse %.3f px, crop %s", res.inliers, res.matches, res.rmse_px, rect)
    return res


def swapped_message(res: AlignResult) -> str:
    """The warning for a pair that :attr:`AlignResult.looks_swapped` (both numbers); ``""`` otherwise."""
    if not res.looks_swapped:
        return ""
    (dw, dh), (pw, ph) = res.dslr_size, res.phone_size
    return (
        f"the DSLR photo has fewer pixels per scene unit than the phone photo ({res.scale:.2f} DSLR px per phone "
        f"px; {dw}x{dh} vs {pw}x{ph}) and looks softer (sharpness {res.sharpness_ratio:.2f} of the phone's): are "
        "PHONE and DSLR given the wrong way round?"
    )


# failures that a mirrored phone photo produces (its SIFT descriptors do not match the DSLR's)
_MATCH_FAILURES = ("too-few-matches", "too-few-inliers", "low-inlier-ratio", "high-residual", "degenerate-homography")
_MIRROR_CHECK = 0.5  # an accepted fit with fewer inliers per match than this is checked against its mirror image


def _match_and_fit(
    fp: Features, fd: Features, s_p: float, s_d: float, cfg: AlignConfig, clock: _Stopwatch, res: AlignResult
) -> tuple[Any, Failure | None]:
    """Match two feature sets and fit their homography (:func:`_fit`); the counts and inliers go into ``res``."""
    with clock.stage("match"):
        cv2.setRNGSeed(cfg.seed)  # FLANN's randomised trees and USAC's sampling draw from it
        m = match(fp, fd, config=cfg)
    res.matches = len(m)
    fit, failure = _fit(m, fp, fd, s_p, s_d, cfg, clock)
    if fit is not None:
        res.inliers, res.rmse_px = fit.n_inliers, fit.rmse
        res.phone_pts, res.dslr_pts = m.src[fit.inliers], m.dst[fit.inliers]
    return fit, failure


def _check_geometry(h: np.ndarray, psize: tuple[int, int], cfg: AlignConfig, res: AlignResult) -> Failure | None:
    """:func:`check_geometry` of ``h`` at the inlier centroid; scale, rotation and turn go into ``res``."""
    geo, failure = check_geometry(
        h,
        psize,
        res.phone_pts.mean(axis=0),  # scale and rotation where the evidence is
        scale_range=cfg.scale_range,
        max_rotation_deg=cfg.max_rotation_deg,
        max_anisotropy=cfg.max_anisotropy,
        turn_tolerance_deg=cfg.turn_tolerance_deg,
    )
    res.scale, res.rotation_deg, res.orientation_fix = geo.scale, geo.rotation_deg, geo.turn
    return failure


def _upright_fit(
    phone: Photo, fd: Features, turn: int, s_p: float, s_d: float, cfg: AlignConfig, res: AlignResult
) -> Any:
    """The fit of the phone photo turned upright (back by ``turn``), mapped onto the phone's grid.

    None (and ``res`` untouched) when the upright photo does not pass the checks the turned one passed.
    """
    upright = turn_image(phone.preview, -turn)
    w, h = phone.size if turn == 180 else phone.size[::-1]  # the upright photo's size
    to_upright = turn_matrix(turn, w, h)  # phone pixels -> upright pixels
    trial = AlignResult(status="ok")
    fit, failure = _match_and_fit(detect_features(upright, cfg, factor=phone.factor), fd, s_p, s_d, cfg,
                                  _Stopwatch(), trial)  # fmt: skip
    if fit is None or failure is not None or _check_geometry(fit.H, (w, h), cfg, trial) is not None:
        return None
    h_phone = fit.H @ to_upright
    res.matches, res.inliers, res.rmse_px = trial.matches, trial.inliers, trial.rmse_px
    res.phone_pts = apply_homography(np.linalg.inv(to_upright), trial.phone_pts)
    res.dslr_pts = trial.dslr_pts
    return replace(fit, H=h_phone / h_phone[2, 2])


def _fit(
    m: Matches, fp: Features, fd: Features, s_p: float, s_d: float, cfg: AlignConfig, clock: _Stopwatch
) -> tuple[Any, Failure | None]:
    """``(fit or None, failure or None)``: the robust homography of the matches ``m`` and its inlier checks."""
    if len(m) < cfg.min_inliers:
        detail = (f"{len(m)} matches after the ratio test (phone {len(fp)} / DSLR {len(fd)} keypoints), "
                  f"need {cfg.min_inliers}")  # fmt: skip
        return None, Failure("too-few-matches", detail)
    with clock.stage("homography"):
        sigma = _match_sigma(m, s_p, s_d) if cfg.weighted else None
        fit = robust_fit(m.src, m.dst, threshold=cfg.threshold_px / s_d, method=cfg.method, sigma=sigma)
    if isinstance(fit, Failure):
        return None, fit
    return fit, _check_fit(fit.n_inliers, len(m), fit.rmse * s_d, cfg)


def _mirrored(phone: Photo, fd: Features, s_p: float, s_d: float, cfg: AlignConfig, beat: int = 0) -> Failure | None:
    """``Failure("mirrored")`` when the phone photo, flipped left-right, fits the DSLR with over ``beat`` inliers.

    The flipped photo's own coordinates are fitted: a homography with a reflection is not something the robust
    estimators find (their samples must keep their orientation), so mapping the points back would not do.
    """
    flipped = detect_features(cv2.flip(phone.preview, 1), cfg, factor=phone.factor)
    trial = AlignResult(status="ok")
    fit, failure = _match_and_fit(flipped, fd, s_p, s_d, cfg, _Stopwatch(), trial)
    if fit is None or failure is not None or fit.n_inliers <= beat:
        return None
    unflipped = f" (unflipped: {beat} inliers)" if beat else ""
    return Failure(
        "mirrored",
        f"the phone photo is a mirror image of the DSLR's (front camera or a mirrored export): flipped left-right "
        f"it aligns with {trial.inliers}/{trial.matches} inliers{unflipped}; dpedkit does not un-mirror photos",
    )


def sharpness(rgb: np.ndarray, side: int = 1024) -> float:
    """Mean absolute Laplacian of the luma of the central ``side x side`` window (grey levels per pixel)."""
    h, w = rgb.shape[:2]
    y0, x0 = max(0, (h - side) // 2), max(0, (w - side) // 2)
    gray = cv2.cvtColor(np.ascontiguousarray(rgb[y0 : y0 + side, x0 : x0 + side]), cv2.COLOR_RGB2GRAY)
    return float(np.abs(cv2.Laplacian(gray.astype(np.float32), cv2.CV_32F)).mean())


def _match_sigma(m: Matches, s_p: float, s_d: float) -> np.ndarray:
    """Expected localisation error of each match in DSLR px, from both keypoint sizes (relative units)."""
    scale = s_p / s_d  # DSLR full-res px per phone full-res px, roughly (for weighting only)
    return np.sqrt(m.dst_size**2 + (scale * m.src_size) ** 2)


def _hull_area(pts: np.ndarray) -> float:
    """Area (px^2) of the convex hull of ``N x 2`` points (0 for fewer than 3)."""
    if len(pts) < 3:
        return 0.0
    return float(cv2.contourArea(cv2.convexHull(pts.astype(np.float32))))


def _check_fit(n_inliers: int, n_matches: int, rmse_work: float, cfg: AlignConfig) -> Failure | None:
    if n_inliers < cfg.min_inliers:
        return Failure("too-few-inliers", f"{n_inliers} inliers of {n_matches} matches, need {cfg.min_inliers}")
    ratio = n_inliers / max(n_matches, 1)
    if ratio < cfg.min_inlier_ratio:
        return Failure(
            "low-inlier-ratio", f"{n_inliers}/{n_matches} = {ratio:.1%} inliers, need {cfg.min_inlier_ratio:.0%}"
        )
    if rmse_work > cfg.max_rmse_px:
        return Failure("high-residual", f"inlier RMSE {rmse_work:.2f} working px exceeds {cfg.max_rmse_px:g}")
    return None


def align_files(
    phone_path: str | Path,
    dslr_path: str | Path,
    *,
    config: AlignConfig = AlignConfig(),  # noqa: B008 - frozen, immutable default
    keep_16bit: bool = False,
) -> AlignResult:
    """Read two image files (upright: EXIF orientation, HEIF transforms) and align them; decoding is timed.

    A RAW file is first read at half size (LibRaw's fast path, no demosaic) for its features; its full demosaic
    is made only when the pair has passed every check. ``keep_16bit``: the crops (``phone``, ``dslr``) are
    ``uint16`` on the 0..65535 scale (16-bit TIFF/PNG, RAW and 10-bit HEIC keep their precision; 8-bit files
    are scaled by 257); features are found on the 8-bit images either way.

    Raises:
        InputError: a file is missing, unreadable, truncated or not an image.
    """
    t0 = time.perf_counter()

    def load(path: str | Path) -> tuple[Photo, float, Features | None]:
        t = time.perf_counter()
        photo = read_photo(path, config, keep_16bit=keep_16bit)
        dt = time.perf_counter() - t
        usable = min(photo.size) >= config.min_side
        return photo, dt, detect_features(photo.preview, config, factor=photo.factor) if usable else None

    # each image's features start as soon as it is decoded (the phone's while the larger DSLR still decodes)
    (phone, dt_p, fp), (dslr, dt_d, fd) = _map2(load, phone_path, dslr_path, config.threads)
    decode = dt_p + dt_d if config.threads <= 1 else max(dt_p, dt_d)  # side by side: both start at t0
    timings = {"decode": decode, "features": time.perf_counter() - t0 - decode}
    features = None if fp is None or fd is None else (fp, fd)  # None: align_photos rejects it as too-small
    return align_photos(phone, dslr, config=config, timings=timings, features=features)


def read_photo(path: str | Path, config: AlignConfig, *, keep_16bit: bool = False) -> Photo:
    """A :class:`Photo` of an image file: a RAW file's half-size preview (full image on demand), else the image.

    A RAW preview is the luminance of LibRaw's half-size output (:func:`dpedkit.io.camera.half_size_luma`: all
    channels, centred, each stretched) in three equal channels. When half size holds fewer pixels than the
    features need (``work_mp`` above a quarter of the sensor), the full demosaic is read at once instead.

    ``keep_16bit``: the full image is ``uint16`` (0..65535; 8-bit files scaled by 257), the preview ``uint8``.
    """
    if not is_raw(path):
        img = read_image(path, max_pixels=config.max_pixels, keep_16bit=keep_16bit)
        if not keep_16bit:
            return Photo.of(img.rgb, img.metadata)
        deep = img.rgb if img.rgb.dtype == np.uint16 else img.rgb.astype(np.uint16) * np.uint16(257)
        return Photo(to_uint8(deep), 1, (deep.shape[1], deep.shape[0]), lambda: deep, dict(img.metadata))
    half = read_image(path, max_pixels=config.max_pixels, half_size=True, keep_16bit=True)
    meta = {k: v for k, v in half.metadata.items() if k != "half_size"}
    size = (int(meta["image_size"][0]), int(meta["image_size"][1]))

    def full() -> np.ndarray:
        return read_image(path, max_pixels=config.max_pixels, keep_16bit=keep_16bit).rgb

    if working_scale(*size, config.work_mp) > 0.5:  # half size holds fewer pixels than the features need
        rgb = full()
        return Photo(to_uint8(rgb), 1, size, (lambda: rgb) if keep_16bit else None, meta)
    luma = half_size_luma(half.rgb, meta.get("cfa"), int(meta.get("orientation", 1)))
    return Photo(np.repeat(luma[..., None], 3, axis=2), 2, size, full, meta)


def detect_features(img: np.ndarray, config: AlignConfig, *, factor: int = 1) -> Features:
    """SIFT features of one image at the working scale of ``config`` (:func:`dpedkit.align.features.detect`).

    ``factor``: full-resolution pixels per pixel of ``img`` (2 for a half-size RAW preview); the working scale
    and the returned points are those of the full image (a preview pixel's centre is at ``factor * x +
    (factor - 1) / 2``). A RAW preview is already the luminance its features need, every channel centred on
    its Bayer block (:func:`dpedkit.io.camera.half_size_luma`).
    """
    h, w = img.shape[:2]
    scale = working_scale(w * factor, h * factor, config.work_mp)
    f = detect(img, scale=min(1.0, scale * factor), config=config)
    if factor == 1:
        return f
    return Features(f.pts * factor + (factor - 1) / 2, f.desc, f.scale / factor, f.size * factor)


def read_pair(phone_path: str | Path, dslr_path: str | Path, *, threads: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Decode both images (RGB uint8, EXIF orientation applied), side by side when ``threads > 1``.

    This is exactly the decode stage of :func:`align_files` (``dpedkit bench align`` times it alone).

    Raises:
        InputError: a file is missing, unreadable, truncated or not an image.
    """
    return _map2(lambda p: read_image(p).rgb, phone_path, dslr_path, threads)


# The pair folder written by ``dpedkit align`` (this module is the one reader and writer of its files).
ALIGNMENT = "alignment.json"
PAIR_IMAGES = {"phone": "phone.png", "dslr": "dslr.png"}


def check_pair_dir(out_dir: str | Path, inputs: Sequence[str | Path] = (), *, overwrite: bool = False) -> Path:
    """Check that :func:`write_alignment` may write into ``out_dir``, before any work is done.

    Only an earlier alignment (a readable ``alignment.json`` of ours) may be replaced, and only with ``overwrite``:
    a ``phone.png`` or ``dslr.png`` beside no such record is a user's file and is never written over.

    Raises:
        InputError: ``out_dir`` is a file, holds an earlier alignment and ``overwrite`` is off, holds files of the
            pair folder's names that no alignment wrote, or one of the files it would write is one of the ``inputs``.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a folder")
    names = (ALIGNMENT, *PAIR_IMAGES.values())
    sources = {os.path.realpath(p) for p in inputs}
    for name in names:
        if os.path.realpath(out / name) in sources:
            raise InputError(out / name, "is one of the input photos: choose another output folder")
    present = [n for n in names if (out / n).exists() or (out / n).is_symlink()]
    if present and not _is_our_record(out / ALIGNMENT):
        raise InputError(out, f"holds {', '.join(present)} that no dpedkit alignment wrote: choose another folder")
    if present and not overwrite:
        raise InputError(out, f"holds an earlier alignment ({', '.join(present)}); pass --overwrite to replace it")
    return out


def _is_our_record(path: Path) -> bool:
    """True when ``path`` is an ``alignment.json`` that :func:`write_alignment` wrote (a plain file)."""
    if path.is_symlink() or not path.is_file():
        return False
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and {"status", "H_phone_to_dslr", "version"} <= meta.keys()


def write_alignment(result: AlignResult, out_dir: str | Path) -> None:
    """Write ``alignment.json`` (always) and ``phone.png`` / ``dslr.png`` (same size, when ok), all or nothing.

    Every file is written to a temporary name first and renamed into place once all are complete, so a failure
    (disk full) leaves no lone image; images of an earlier alignment are removed when this one failed.
    """
    out = Path(out_dir)
    files = {ALIGNMENT: (dumps(result.to_json(), indent=2, sort_keys=False) + "\n").encode()}
    if result.ok:
        files |= {name: encode_image(getattr(result, side), ".png") for side, name in PAIR_IMAGES.items()}
    staged = []
    try:
        for name, data in files.items():
            staged.append(AtomicFile(out / name))
            with open(staged[-1].tmp, "wb") as f:
                f.write(data)
        for name in PAIR_IMAGES.values():
            if name not in files:
                (out / name).unlink(missing_ok=True)  # no stale images beside a failed alignment.json
        for f in staged:
            f.commit()
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror or str(exc), str(out)) from exc
    finally:
        for f in staged:
            f.discard()


def is_pair_dir(path: str | Path) -> bool:
    """True when ``path`` is a folder written by :func:`write_alignment` (holds ``alignment.json``)."""
    return (Path(path) / ALIGNMENT).is_file()


def read_alignment(folder: str | Path) -> tuple[dict[str, Any], np.ndarray | None, np.ndarray | None]:
    """``(alignment.json as a dict, phone crop, DSLR crop)`` of a pair folder; the crops are None unless ok.

    Raises:
        InputError: no ``alignment.json`` (not a pair folder) or it is unreadable.
    """
    folder = Path(folder)
    try:
        meta = json.loads((folder / ALIGNMENT).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(folder / ALIGNMENT, f"not a readable alignment record ({exc})") from exc
    if meta.get("status") != "ok" or not (folder / PAIR_IMAGES["phone"]).is_file():
        return meta, None, None
    return meta, read_image(folder / PAIR_IMAGES["phone"]).rgb, read_image(folder / PAIR_IMAGES["dslr"]).rgb
