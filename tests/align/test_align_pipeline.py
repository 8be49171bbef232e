"""Alignment pipeline on pairs with a known homography built here, plus failures, config and outputs."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
import skimage.data

from dpedkit.align import AlignConfig, AlignResult, align_files, align_pair, write_alignment
from dpedkit.align.homography import local_geometry
from dpedkit.errors import ConfigError, InputError
from dpedkit.geometry import apply_homography, mean_corner_error, scale_matrix
from dpedkit.io import read_rgb, write_image


def _scene(name: str, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A bundled photo enlarged to ``size`` with fine noise texture (SIFT needs detail at every scale)."""
    img = getattr(skimage.data, name)()[..., :3]
    s = cv2.resize(img, size, interpolation=cv2.INTER_CUBIC).astype(np.float32)
    noise = rng.normal(0, 1, (size[1] // 3, size[0] // 3)).astype(np.float32)
    s += cv2.resize(noise, size, interpolation=cv2.INTER_CUBIC)[..., None] * 10
    return np.clip(s, 0, 255).astype(np.uint8)


def _similarity(scale: float, angle_deg: float, tx: float, ty: float, persp=(0.0, 0.0)) -> np.ndarray:
    a = math.radians(angle_deg)
    h = np.array(
        [[scale * math.cos(a), -scale * math.sin(a), tx], [scale * math.sin(a), scale * math.cos(a), ty], [0, 0, 1]]
    )
    h[2, :2] = persp
    return h


def _pair(rng, *, scale=1.4, angle=2.0, phone=(900, 675), persp=(1e-5, -2e-5)):
    """Phone = scene crop; DSLR = scene warped by a known H (phone -> DSLR); returns phone, dslr, H."""
    scene = _scene("astronaut", phone, rng)
    dw, dh = round(phone[0] * scale * 0.95), round(phone[1] * scale * 0.95)
    c = np.array([(phone[0] - 1) / 2, (phone[1] - 1) / 2])
    h = _similarity(scale, angle, 0, 0, persp)
    h[:2, 2] = np.array([(dw - 1) / 2, (dh - 1) / 2]) - apply_homography(h, c[None])[0]
    # DSLR pixel (u, v) samples the phone scene at H^-1 (u, v): warpPerspective with the forward map.
    dslr = cv2.warpPerspective(scene, h, (dw, dh), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    return scene, dslr, h / h[2, 2]


@pytest.fixture(scope="module")
def known_pair():
    return _pair(np.random.default_rng(1))


@pytest.fixture(scope="module")
def known_result(known_pair):
    phone, dslr, _ = known_pair
    return align_pair(phone, dslr)


def test_recovers_known_homography(known_pair, known_result):
    phone, dslr, h = known_pair
    r = known_result
    assert r.ok, r.reason
    assert mean_corner_error(r.H_phone_to_dslr, h, phone.shape[1], phone.shape[0]) < 0.3
    truth = local_geometry(h, r.phone_pts.mean(axis=0))  # scale/rotation are measured at the inlier centroid
    assert r.scale == pytest.approx(truth.scale, rel=1e-3)
    assert r.rotation_deg == pytest.approx(truth.rotation_deg, abs=0.05)
    assert r.inliers >= 100 and r.rmse_px < 1.0
    assert r.phone_pts.shape == r.dslr_pts.shape == (r.inliers, 2)
    assert r.phone_size == (phone.shape[1], phone.shape[0]) and r.dslr_size == (dslr.shape[1], dslr.shape[0])


def test_crop_content_matches(known_pair, known_result):
    """The DSLR resampled onto the crop is the phone content (same scene): small difference, same shape."""
    r = known_result
    x0, y0, x1, y1 = r.crop
    assert r.phone.shape == r.dslr.shape == (y1 - y0, x1 - x0, 3)
    assert r.phone.dtype == r.dslr.dtype == np.uint8
    diff = np.abs(r.phone.astype(np.float32) - r.dslr.astype(np.float32))
    assert diff.mean() < 4.0
    # The crop's corner pixels map inside the DSLR image (content really lies inside it).
    corners = np.array([[x0, y0], [x1 - 1, y0], [x1 - 1, y1 - 1], [x0, y1 - 1]], np.float64)
    q = apply_homography(r.H_phone_to_dslr, corners)
    dh, dw = known_pair[1].shape[:2]
    assert np.all(q >= 0) and np.all(q[:, 0] <= dw - 1) and np.all(q[:, 1] <= dh - 1)


def test_deterministic(known_pair, known_result):
    """OpenCV's RNG (FLANN trees, USAC sampling) is seeded from the config: same pair, same result."""
    phone, dslr, _ = known_pair
    again = align_pair(phone, dslr, config=AlignConfig(threads=1))
    assert np.array_equal(again.H_phone_to_dslr, known_result.H_phone_to_dslr)
    assert again.crop == known_result.crop and again.inliers == known_result.inliers


def test_identity_pair():
    phone = _scene("coffee", (640, 480), np.random.default_rng(2))
    r = align_pair(phone, phone.copy())
    assert r.ok
    assert mean_corner_error(r.H_phone_to_dslr, np.eye(3), 640, 480) < 0.05
    assert r.crop == (1, 1, 639, 479)  # the 1 px margin kept clear of the DSLR border
    assert np.abs(r.phone.astype(int) - r.dslr.astype(int)).max() <= 1


def test_pixel_centre_convention():
    """A DSLR that is the phone shrunk 2x with INTER_AREA is related by scale_matrix(0.5), not a plain 0.5."""
    big = _scene("chelsea", (1200, 900), np.random.default_rng(3))
    small = cv2.resize(big, (600, 450), interpolation=cv2.INTER_AREA)
    r = align_pair(big, small)
    assert r.ok
    assert mean_corner_error(r.H_phone_to_dslr, scale_matrix(0.5), 1200, 900) < 0.1
    naive = np.diag([0.5, 0.5, 1.0])
    assert mean_corner_error(r.H_phone_to_dslr, naive, 1200, 900) > 0.2


@pytest.mark.parametrize(
    ("make", "statuses"),
    [
        ("unrelated", {"too-few-matches", "too-few-inliers", "low-inlier-ratio"}),
        ("flat", {"too-few-matches"}),
        ("tiny", {"too-small"}),
    ],
)
def test_failures_are_results(make, statuses):
    rng = np.random.default_rng(4)
    if make == "unrelated":
        phone, dslr = _scene("astronaut", (640, 480), rng), _scene("rocket", (800, 600), rng)
    elif make == "flat":
        phone, dslr = np.full((480, 640, 3), 120, np.uint8), np.full((600, 800, 3), 60, np.uint8)
    else:
        phone, dslr = np.zeros((16, 16, 3), np.uint8), _scene("coffee", (800, 600), rng)
    r = align_pair(phone, dslr)
    assert not r.ok and r.status in statuses
    assert r.reason and r.H_phone_to_dslr is None and r.crop is None and r.phone is None
    json.dumps(r.to_json(), allow_nan=False)  # NaN figures are written as null


def test_implausible_scale_is_rejected(known_pair):
    phone, dslr, _ = known_pair
    r = align_pair(phone, dslr, config=AlignConfig(scale_range=(0.5, 1.2)))
    assert r.status == "implausible-scale" and "1.4" in r.reason


def test_small_overlap_is_rejected(known_pair):
    phone, dslr, _ = known_pair
    r = align_pair(phone, dslr[:, : dslr.shape[1] // 12])
    assert r.status in {"small-overlap", "too-few-matches", "too-few-inliers"}
    r = align_pair(phone, dslr, config=AlignConfig(min_overlap=0.99))
    assert r.status == "small-overlap" and "need 99% of it" in r.reason
    r = align_pair(phone, dslr, config=AlignConfig(min_side=670))
    assert r.status == "small-overlap" and "need a side of 670 px" in r.reason


def test_clustered_inliers_are_rejected():
    """Texture in one small patch only: the H fits there but nothing constrains the rest of the crop."""
    rng = np.random.default_rng(5)
    phone = np.full((600, 800, 3), 128, np.uint8)
    phone[250:400, 300:450] = _scene("astronaut", (150, 150), rng)
    h = _similarity(1.2, 1.0, 10.0, 5.0)
    dslr = cv2.warpPerspective(phone, h, (1000, 760), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    r = align_pair(phone, dslr)
    assert r.status == "inliers-clustered", (r.status, r.reason)
    assert 0 < r.coverage < 0.1 and r.inliers >= 20


def test_bad_arrays_raise():
    with pytest.raises(InputError, match="uint8"):
        align_pair(np.zeros((64, 64, 3), np.float32), np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(InputError, match="H x W x 3"):
        align_pair(np.zeros((64, 64), np.uint8), np.zeros((64, 64, 3), np.uint8))


def test_config_validation_and_round_trip():
    with pytest.raises(ConfigError, match="method must be one of 'magsac'"):
        AlignConfig(method="lmeds")
    with pytest.raises(ConfigError, match="ratio"):
        AlignConfig(ratio=1.5)
    with pytest.raises(ConfigError, match="scale_range"):
        AlignConfig(scale_range=(2.0, 1.0))
    with pytest.raises(ConfigError, match="unknown AlignConfig option"):
        AlignConfig.from_dict({"wrk_mp": 1})
    cfg = AlignConfig(work_mp=0.3, scale_range=(0.5, 2))
    d = json.loads(json.dumps(cfg.to_dict()))
    assert AlignConfig.from_dict(d) == cfg


def test_files_and_outputs(tmp_path, known_pair, known_result):
    phone, dslr, h = known_pair
    write_image(tmp_path / "p.jpg", phone, quality=95)
    write_image(tmp_path / "d.png", dslr)
    r = align_files(tmp_path / "p.jpg", tmp_path / "d.png")
    assert r.ok and set(r.timings) >= {"decode", "features", "match", "homography", "crop", "warp", "total"}
    write_alignment(r, tmp_path / "out")
    meta = json.loads((tmp_path / "out" / "alignment.json").read_text())
    assert meta["status"] == "ok" and meta["reason"] == "" and meta["crop"] == list(r.crop)
    assert np.allclose(meta["H_phone_to_dslr"], r.H_phone_to_dslr)
    for key in ("matches", "inliers", "rmse_px", "scale", "timings"):
        assert key in meta
    a, b = read_rgb(tmp_path / "out" / "phone.png"), read_rgb(tmp_path / "out" / "dslr.png")
    assert a.shape == b.shape and np.array_equal(a, r.phone) and np.array_equal(b, r.dslr)
    # A failed result replaces the images' folder content: no stale PNGs beside a failed alignment.json.
    write_alignment(AlignResult(status="too-few-matches", reason="x"), tmp_path / "out")
    assert not (tmp_path / "out" / "phone.png").exists()
    assert json.loads((tmp_path / "out" / "alignment.json").read_text())["H_phone_to_dslr"] is None


def test_unreadable_files_raise(tmp_path, known_pair):
    write_image(tmp_path / "p.jpg", known_pair[0])
    data = (tmp_path / "p.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated"):
        align_files(tmp_path / "cut.jpg", tmp_path / "p.jpg")
    with pytest.raises(InputError, match="no such file"):
        align_files(tmp_path / "missing.jpg", tmp_path / "p.jpg")


def test_relative_blur_finds_a_known_defocus(known_pair):
    from dpedkit.bench.align import relative_blur

    phone = known_pair[0]
    for sigma in (0.0, 1.5, 3.0):
        dslr = cv2.GaussianBlur(phone, (0, 0), sigma) if sigma else phone
        assert relative_blur(phone, dslr) == pytest.approx(sigma, abs=0.5)
    assert relative_blur(cv2.GaussianBlur(phone, (0, 0), 2.0), phone) == 0.0  # a sharper DSLR needs no blur


def test_local_residual_tells_a_true_homography_from_one_off_by_pixels(known_pair, known_result):
    from dpedkit.bench.align import local_residual

    phone, dslr, h = known_pair
    crop = known_result.crop
    off = h @ np.array([[1.004, 0, 0], [0, 0.997, 0], [0, 0, 1]])  # ~1-2 px at the crop's corners
    assert local_residual(phone, dslr, h, crop) < 0.15
    assert local_residual(phone, dslr, off, crop) > 0.5


@pytest.mark.parametrize("scale", [0.6, 0.33, 0.2, 0.137])
def test_working_image_keeps_the_pixel_centre_convention(scale):
    """A blob at full-resolution (x, y) lands at ((x, y) + 0.5) * (sx, sy) - 0.5 in the shrunk image."""
    from dpedkit.align.features import to_gray_small

    h, w = 1501, 2003  # not divisible by the integer first step
    x, y = 1234.3, 987.6
    v, u = np.mgrid[0:h, 0:w]
    blob = 200.0 * np.exp(-((u - x) ** 2 + (v - y) ** 2) / (2 * 12.0**2))
    small, sx, sy = to_gray_small(blob.astype(np.float32), scale)
    assert small.shape == (round(h * scale), round(w * scale))
    vv, uu = np.mgrid[0 : small.shape[0], 0 : small.shape[1]]
    m = small.astype(np.float64)
    cx, cy = (m * uu).sum() / m.sum(), (m * vv).sum() / m.sum()
    assert cx == pytest.approx((x + 0.5) * sx - 0.5, abs=0.02)
    assert cy == pytest.approx((y + 0.5) * sy - 0.5, abs=0.02)
