"""Entry points of the alignment stage: ``align_pair`` (arrays), ``align_files`` (paths), ``write_alignment``.

Pipeline: gray + ``INTER_AREA`` shrink to ``work_mp`` megapixels -> SIFT (precise upscale, pixel-centre
lifting to full resolution) -> FLANN + ratio test + duplicate removal -> USAC robust homography (MAGSAC++) with
inliers recomputed under the returned ``H``, least-squares re-fits on them and a final fit weighted by the
keypoint sizes, all at full resolution -> validation (inlier count/ratio/RMSE, plausible scale, rotation and
anisotropy, overlap, inlier coverage of the crop) -> largest valid crop -> DSLR resampled onto the phone grid
(Gaussian pre-filter when the DSLR shrinks). OpenCV's RNG is seeded from the config: results are repeatable.

Convention: ``H_phone_to_dslr`` maps phone ``(x, y, 1)`` to DSLR pixels, full resolution, pixel centres at
integers; ``crop`` is ``[x0, y0, x1, y1]`` half-open in phone pixels.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
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
from dpedkit.io import AtomicFile, encode_image, read_image

log = logging.getLogger(__name__)


@dataclass
class AlignResult:
    """Outcome of aligning one phone/DSLR pair.

    Attributes:
        status: ``"ok"`` or a failure word (``too-small``, ``too-few-matches``, ``too-few-inliers``,
            ``low-inlier-ratio``, ``high-residual``, ``degenerate-homography``, ``implausible-scale``,
            ``implausible-rotation``, ``small-overlap``, ``inliers-clustered``).
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
        overlap: crop area / phone image area (0 when no crop).
        coverage: area of the inliers' convex hull (phone) / crop area (0 when no crop).
        phone_size: ``(width, height)`` of the full phone image.
        dslr_size: ``(width, height)`` of the full DSLR image.
        phone_pts: ``N x 2`` float64 inlier points in the phone image (full resolution).
        dslr_pts: ``N x 2`` float64 matching inlier points in the DSLR image.
        timings: seconds per stage (``decode``, ``features``, ``match``, ``homography``, ``crop``, ``warp``,
            ``total``).
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
    overlap: float = 0.0
    coverage: float = 0.0
    phone_size: tuple[int, int] = (0, 0)
    dslr_size: tuple[int, int] = (0, 0)
    phone_pts: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    dslr_pts: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    timings: dict[str, float] = field(default_factory=dict)
    config: AlignConfig | None = None

    @property
    def ok(self) -> bool:
        """True when the pair was aligned and cropped."""
        return self.status == "ok"

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
            "overlap": float(self.overlap),
            "coverage": float(self.coverage),
            "phone_size": list(self.phone_size),
            "dslr_size": list(self.dslr_size),
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
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
    cfg = config
    clock = _Stopwatch(timings)
    psize, dsize = (phone.shape[1], phone.shape[0]), (dslr.shape[1], dslr.shape[0])
    res = AlignResult(status="ok", phone_size=psize, dslr_size=dsize, config=cfg)

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
            features = _map2(lambda img: detect_features(img, cfg), phone, dslr, cfg.threads)
    fp, fd = features
    with clock.stage("match"):
        cv2.setRNGSeed(cfg.seed)  # FLANN's randomised trees and USAC's sampling draw from it
        m = match(fp, fd, ratio=cfg.ratio)
    res.matches = len(m)
    if len(m) < cfg.min_inliers:
        return fail(
            Failure(
                "too-few-matches",
                f"{len(m)} matches after the ratio test (phone {len(fp)} / DSLR {len(fd)} keypoints), "
                f"need {cfg.min_inliers}",
            )
        )
    with clock.stage("homography"):
        sigma = _match_sigma(m, s_p, s_d) if cfg.weighted else None
        fit = robust_fit(m.src, m.dst, threshold=cfg.threshold_px / s_d, method=cfg.method, sigma=sigma)
    if isinstance(fit, Failure):
        return fail(fit)
    res.inliers, res.rmse_px = fit.n_inliers, fit.rmse
    res.phone_pts, res.dslr_pts = m.src[fit.inliers], m.dst[fit.inliers]
    failure = _check_fit(fit.n_inliers, len(m), fit.rmse * s_d, cfg)
    if failure is None:  # a Failure is falsy: always compare with None
        geo, failure = check_geometry(
            fit.H,
            psize,
            res.phone_pts.mean(axis=0),  # scale and rotation where the evidence is
            scale_range=cfg.scale_range,
            max_rotation_deg=cfg.max_rotation_deg,
            max_anisotropy=cfg.max_anisotropy,
        )
        res.scale, res.rotation_deg = geo.scale, geo.rotation_deg
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
    with clock.stage("warp"):
        x0, y0, x1, y1 = rect
        res.phone = phone[y0:y1, x0:x1]  # a view: OpenCV and numpy take row-strided arrays as they are
        res.dslr = resample_dslr(dslr, fit.H, rect, interpolation=cfg.interpolation)
    res.H_phone_to_dslr, res.crop, res.timings = fit.H, rect, clock.finish()
    log.debug("pair aligned: %d/%d inliers, rmse %.3f px, crop %s", res.inliers, res.matches, res.rmse_px, rect)
    if res.scale < 1:  # the DSLR is the sharper, larger camera: fewer pixels per scene unit is a hint
        log.warning(
            "the DSLR photo has fewer pixels per scene unit than the phone photo (%.2f DSLR px per phone px, "
            "%dx%d vs %dx%d): are PHONE and DSLR given the wrong way round?",
            res.scale,
            *dsize,
            *psize,
        )
    return res


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
) -> AlignResult:
    """Read two image files (EXIF orientation applied) and :func:`align_pair` them; decoding is timed.

    Raises:
        InputError: a file is missing, unreadable, truncated or not an image.
    """
    t0 = time.perf_counter()

    def load(path: str | Path) -> tuple[np.ndarray, float, Features | None]:
        t = time.perf_counter()
        img = read_image(path, max_pixels=config.max_pixels).rgb
        dt = time.perf_counter() - t
        return img, dt, detect_features(img, config) if min(img.shape[:2]) >= config.min_side else None

    # each image's features start as soon as it is decoded (the phone's while the larger DSLR still decodes)
    (phone, dt_p, fp), (dslr, dt_d, fd) = _map2(load, phone_path, dslr_path, config.threads)
    decode = dt_p + dt_d if config.threads <= 1 else max(dt_p, dt_d)  # side by side: both start at t0
    timings = {"decode": decode, "features": time.perf_counter() - t0 - decode}
    features = None if fp is None or fd is None else (fp, fd)  # None: align_pair rejects it as too-small
    return align_pair(phone, dslr, config=config, timings=timings, features=features)


def detect_features(img: np.ndarray, config: AlignConfig) -> Features:
    """SIFT features of one image at the working scale of ``config`` (:func:`dpedkit.align.features.detect`)."""
    h, w = img.shape[:2]
    scale = working_scale(w, h, config.work_mp)
    return detect(img, scale=scale, max_features=config.max_features, contrast_threshold=config.contrast_threshold)


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

    Raises:
        InputError: ``out_dir`` is a file, holds an earlier alignment and ``overwrite`` is off, or one of the files
            it would write is one of the ``inputs``.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a folder")
    names = (ALIGNMENT, *PAIR_IMAGES.values())
    sources = {os.path.realpath(p) for p in inputs}
    for name in names:
        if os.path.realpath(out / name) in sources:
            raise InputError(out / name, "is one of the input photos: choose another output folder")
    present = [n for n in names if (out / n).exists()]
    if present and not overwrite:
        raise InputError(out, f"holds an earlier alignment ({', '.join(present)}); pass --overwrite to replace it")
    return out


def write_alignment(result: AlignResult, out_dir: str | Path) -> None:
    """Write ``alignment.json`` (always) and ``phone.png`` / ``dslr.png`` (same size, when ok), all or nothing.

    Every file is written to a temporary name first and renamed into place once all are complete, so a failure
    (disk full) leaves no lone image; images of an earlier alignment are removed when this one failed.
    """
    out = Path(out_dir)
    files = {ALIGNMENT: (json.dumps(result.to_json(), indent=2) + "\n").encode()}
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
