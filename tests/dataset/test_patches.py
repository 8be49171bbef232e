import math

import cv2
import numpy as np
import pytest
from skimage import data

from dpedkit.dataset.patches import PatchConfig, PatchSet, extract_patches, ncc, texture
from dpedkit.errors import ConfigError, InputError

P = 100


@pytest.fixture(scope="module")
def scene():
    """A real photo (astronaut) upscaled to 620 x 420: 6 x 4 windows, textured and smooth areas."""
    return cv2.resize(data.astronaut(), (620, 420), interpolation=cv2.INTER_AREA)


def warp_affine_pair(dslr, a_mat, b, rng, noise=2.0):
    """Phone image with ``phone(A q + b) = dslr(q)`` (cubic remap) plus Gaussian noise."""
    h, w = dslr.shape[:2]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    src = np.stack([xs - b[0], ys - b[1]], -1) @ np.linalg.inv(a_mat).T
    phone = cv2.remap(
        dslr,
        src[..., 0].astype(np.float32),
        src[..., 1].astype(np.float32),
        cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REFLECT,
    )
    return np.clip(phone + rng.normal(0, noise, phone.shape), 0, 255).astype(np.uint8)


def rotation(deg):
    a = math.radians(deg)
    return np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])


def true_shift(xy, a_mat, b):
    """Phone offset of each window centre under ``p = A q + b``."""
    c = np.asarray(xy, np.float64) + (P - 1) / 2
    return c @ a_mat.T + b - c


# ---------------------------------------------------------------------------------------------------- ncc, texture


def test_ncc_goldens(rng):
    x = rng.integers(0, 256, (20, 30, 3)).astype(np.uint8)
    assert ncc(x, x) == pytest.approx(1.0)
    xf = x.astype(np.float32)
    assert ncc(xf, 0.5 * xf + 10) == pytest.approx(1.0)
    assert ncc(xf, -2.0 * xf + 3) == pytest.approx(-1.0)
    assert ncc(x, np.full_like(x, 7)) == 0.0
    y = rng.integers(0, 256, (20, 30, 3)).astype(np.uint8)
    assert abs(ncc(x, y)) < 0.2
    gray = x @ np.array([0.299, 0.587, 0.114])
    assert ncc(x, gray) == pytest.approx(1.0, abs=1e-6)  # colour patches are compared on their luma
    with pytest.raises(InputError, match="same-shape"):
        ncc(x, x[:10])


def test_texture_goldens():
    assert texture(np.full((10, 10, 3), 9, np.uint8)) == 0.0
    ramp = np.tile(np.arange(0, 40, 2, dtype=np.float32), (20, 1))  # 2 levels per px along x
    assert texture(ramp) == pytest.approx(2.0)
    assert texture(np.repeat(ramp[:, :, None], 3, 2)) == pytest.approx(2.0, rel=1e-5)


# -------------------------------------------------------------------------------------------------------- config


def test_config_roundtrip_and_validation():
    cfg = PatchConfig(size=64, radius=12, rotation="search")
    assert PatchConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="rotation must be one of 'fit', 'search', 'none'"):
        PatchConfig(rotation="spin")
    with pytest.raises(ConfigError, match="ncc_min"):
        PatchConfig(ncc_min=1.5)
    with pytest.raises(ConfigError, match="radius"):
        PatchConfig(radius=-1)
    with pytest.raises(ConfigError, match="size must be an integer"):
        PatchConfig(size=100.0)
    with pytest.raises(ConfigError, match="angle_steps must be odd"):
        PatchConfig(angle_steps=4)
    with pytest.raises(ConfigError, match="unknown PatchConfig option"):
        PatchConfig.from_dict({"size": 100, "stride": 50})
    with pytest.raises(ConfigError, match="search_scale must be one of 1, 2"):
        PatchConfig(search_scale=4)
    assert PatchConfig.from_dict(PatchConfig(search_scale=1).to_dict()).search_scale == 1


def test_bad_input_raises(scene):
    with pytest.raises(InputError, match="same shape"):
        extract_patches(scene, scene[:-1])
    with pytest.raises(InputError, match="uint8"):
        extract_patches(scene.astype(np.float32), scene)
    with pytest.raises(InputError, match="H x W x 3"):
        extract_patches(scene[:, :, 0], scene[:, :, 0])


def test_crop_smaller_than_a_patch_gives_an_empty_set(scene):
    ps = extract_patches(scene[:80], scene[:80])
    assert isinstance(ps, PatchSet) and len(ps) == 0
    assert ps.phone.shape == (0, P, P, 3) and ps.dslr.dtype == np.uint8 and ps.xy.shape == (0, 2)
    assert len(ps.candidates["ncc"]) == 0


# ---------------------------------------------------------------------------------------------------- refinement


def test_identity_pair(scene):
    ps = extract_patches(scene, scene)
    cand = ps.candidates
    assert len(cand["xy"]) == 6 * 4 and cand["kept"].all()
    assert np.abs(cand["shift"]).max() < 0.01 and np.abs(cand["angle"]).max() < 0.01
    assert np.abs(ps.phone.astype(int) - ps.dslr).max() <= 1 and np.allclose(ps.ncc, 1.0, atol=1e-5)
    assert sorted(map(tuple, cand["grid"])) == [(gx, gy) for gx in range(6) for gy in range(4)]


@pytest.mark.parametrize("rotation_mode", ["fit", "none", "search"])
def test_known_shift_and_rotation_are_recovered(scene, rng, rotation_mode):
    angle = 0.6
    a_mat = rotation(angle)
    centre = np.array([310.0, 210.0])
    b = np.array([2.4, -1.7]) + centre - a_mat @ centre
    phone = warp_affine_pair(scene, a_mat, b, rng)
    ps = extract_patches(phone, scene, config=PatchConfig(rotation=rotation_mode, radius=8))
    err = np.linalg.norm(ps.shift - true_shift(ps.xy, a_mat, b), axis=1)
    assert len(ps) >= 12
    if rotation_mode == "fit":
        assert np.median(err) < 0.02 and err.max() < 0.1
        assert np.abs(ps.angle - angle).max() < 0.05
    elif rotation_mode == "search":  # naive 5-angle search: coarser
        assert np.median(err) < 0.3 and np.median(np.abs(ps.angle - angle)) < 0.25
    else:
        assert np.all(ps.angle == 0) and np.median(err) < 0.5
    assert ps.ncc.min() >= 0.9


def test_stored_pairs_reproduce_their_ncc_and_positions(scene, rng):
    a_mat = rotation(-0.4)
    b = np.array([1.3, 0.6])
    phone = warp_affine_pair(scene, a_mat, b, rng)
    ps = extract_patches(phone, scene)
    assert ps.phone.shape == ps.dslr.shape == (len(ps), P, P, 3) and ps.phone.dtype == np.uint8
    assert ps.xy.dtype == np.int32 and ps.shift.dtype == ps.angle.dtype == ps.ncc.dtype == np.float32
    for i, (x, y) in enumerate(ps.xy):
        assert np.array_equal(ps.dslr[i], scene[y : y + P, x : x + P])
        assert ncc(ps.phone[i], ps.dslr[i]) == pytest.approx(ps.ncc[i], abs=1e-5)
        assert ps.texture[i] == pytest.approx(texture(ps.dslr[i]), rel=1e-4)
    assert np.all(ps.ncc >= 0.9)
    cand = ps.candidates
    assert np.array_equal(cand["xy"][cand["kept"]], ps.xy)
    assert set(cand) >= {"xy", "shift", "angle", "ncc", "kept", "texture"}


def test_smooth_shift_field_is_followed(scene, rng):
    """Non-rigid residual (like lens distortion): each window recovers the field at its centre."""
    h, w = scene.shape[:2]

    def field(x, y):
        return 0.8 * np.sin(np.pi * x / w) - 1.0, 0.5 * np.cos(np.pi * y / h) + 0.5  # gradients <= 0.004 px/px

    # phone(p) = dslr(p - u) to first order: sample the inverse by fixed-point iteration
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    qx, qy = xs.copy(), ys.copy()
    for _ in range(10):
        ux, uy = field(qx, qy)
        qx, qy = xs - ux, ys - uy
    phone = cv2.remap(
        scene, qx.astype(np.float32), qy.astype(np.float32), cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT
    )
    phone = np.clip(phone + rng.normal(0, 2.0, phone.shape), 0, 255).astype(np.uint8)
    ps = extract_patches(phone, scene, config=PatchConfig(rotation="fit", radius=6))
    # A window measures the field averaged with its texture as weights (gradient energy per axis), not the
    # field at its centre (they differ by |grad u| x the texture centroid's offset, up to ~0.17 px here)
    gy, gx = np.gradient(scene.astype(np.float64) @ [0.299, 0.587, 0.114])
    ux, uy = field(xs, ys)
    expected = []
    for x, y in ps.xy:
        win = np.s_[y : y + P, x : x + P]
        wx, wy = gx[win] ** 2, gy[win] ** 2
        expected.append(((wx * ux[win]).sum() / wx.sum(), (wy * uy[win]).sum() / wy.sum()))
    err = np.linalg.norm(ps.shift - np.array(expected), axis=1)
    assert len(ps) >= 12 and np.median(err) < 0.05 and err.max() < 0.1


def test_flat_and_unmatched_windows_are_recorded_but_not_kept(scene, rng):
    dslr = scene.copy()
    dslr[:P, :P] = 128  # flat window: no texture, NCC 0
    dslr[P : 2 * P, 2 * P : 3 * P] = rng.integers(0, 256, (P, P, 3))  # content the phone does not show
    ps = extract_patches(scene, dslr)
    cand = ps.candidates
    by_xy = {tuple(xy): i for i, xy in enumerate(cand["xy"])}
    flat, moved = by_xy[(0, 0)], by_xy[(2 * P, P)]
    assert not cand["kept"][flat] and cand["ncc"][flat] == 0.0 and cand["texture"][flat] == 0.0
    assert not cand["kept"][moved] and cand["ncc"][moved] < 0.5
    assert cand["kept"].sum() == len(ps) == len(cand["xy"]) - 2


@pytest.mark.parametrize("level", [0, 80, 255])
def test_a_row_of_flat_windows_is_recorded_not_refined(scene, level):
    # a blown-out sky across the frame: OpenCV correlates flat with flat as 1.0, so these windows reach the
    # Gauss-Newton step with nothing to normalise (a batch of only flat windows used to raise ValueError)
    dslr = scene.copy()
    dslr[:P] = level
    phone = dslr.copy()
    ps = extract_patches(phone, dslr)
    cand = ps.candidates
    top = cand["xy"][:, 1] == 0
    assert top.sum() == scene.shape[1] // P
    assert not cand["kept"][top].any() and (cand["ncc"][top] == 0.0).all() and (cand["angle"][top] == 0.0).all()
    assert cand["kept"][~top].all()


def test_radius_limits_the_search(scene, rng):
    b = np.array([6.0, -5.0])
    phone = warp_affine_pair(scene, np.eye(2), b, rng)
    small = extract_patches(phone, scene, config=PatchConfig(radius=3, rotation="none"))
    assert small.candidates["at_radius"].all() and len(small) < 6
    big = extract_patches(phone, scene, config=PatchConfig(radius=8, rotation="none"))
    inner = ~big.candidates["outside"]
    assert not big.candidates["at_radius"].any()
    assert np.abs(big.candidates["shift"][inner] - b).max() < 0.05


def test_half_resolution_search_matches_the_full_resolution_one(scene, rng):
    a_mat = rotation(0.3)
    b = np.array([-1.6, 2.2])
    phone = warp_affine_pair(scene, a_mat, b, rng)
    full = extract_patches(phone, scene, config=PatchConfig(search_scale=1))
    half = extract_patches(phone, scene, config=PatchConfig(search_scale=2))
    assert np.array_equal(full.candidates["kept"], half.candidates["kept"]) and len(half) >= 12
    assert np.abs(full.shift - half.shift).max() < 0.01 and np.abs(full.angle - half.angle).max() < 0.01
    assert np.abs(full.phone.astype(int) - half.phone).max() <= 1 and np.allclose(full.ncc, half.ncc, atol=1e-4)


def test_large_shift_widens_the_near_search(scene, rng):
    """A 15 px residual is beyond the first (+-8 px) search: the search widens and finds it."""
    b = np.array([15.3, -12.6])
    phone = warp_affine_pair(scene, np.eye(2), b, rng)
    ps = extract_patches(phone, scene, config=PatchConfig(radius=24))
    inner = ~ps.candidates["outside"]
    assert inner.sum() >= 8 and not ps.candidates["at_radius"].any()
    assert np.abs(ps.candidates["shift"][inner] - b).max() < 0.05


def test_padded_luma_reflects_like_opencv(rng):
    from dpedkit.dataset.patches import _GRAY, _luma_image

    for h, w, pad in [(50, 70, 10), (30, 200, 34), (20, 20, 40)]:
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        want = cv2.copyMakeBorder(img.astype(np.float32) @ _GRAY, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
        assert np.array_equal(_luma_image(img, pad), want)


@pytest.mark.parametrize("shape", [(3, 100, 100), (2, 9, 7), (1, 3, 3)])
def test_row_gradients_are_np_gradient_bit_for_bit(rng, shape):
    from dpedkit.dataset.patches import _gradient

    win = (rng.random(shape) * 255).astype(np.float32)
    gx, gy = _gradient(win)
    for k in range(shape[0]):  # one window at a time, as texture() and the Gauss-Newton Jacobian once did
        want_y, want_x = np.gradient(win[k])
        assert np.array_equal(gx[k], want_x) and np.array_equal(gy[k], want_y)


@pytest.mark.parametrize("rotation_mode", ["fit", "none"])
def test_batched_jacobian_equals_a_direct_computation_per_window(scene, rng, rotation_mode):
    from dpedkit.dataset.patches import _Context, _normalise

    p = 24
    ctx = _Context(scene, scene, PatchConfig(size=p, radius=4, rotation=rotation_mode))
    wn, _ = _normalise((rng.random((5, p, p)) * 255).astype(np.float32))
    tgx, tgy = (rng.standard_normal((2, 5, p, p)) * 1e-3).astype(np.float32)
    sd, hess = ctx._jacobian(wn, tgx, tgy)
    u, v = ctx.uv
    for k in range(5):
        dx, dy = np.zeros((p, p), np.float32), np.zeros((p, p), np.float32)  # central differences, 0 on the border
        dx[:, 1:-1] = wn[k, :, 2:] - wn[k, :, :-2]
        dy[1:-1] = wn[k, 2:] - wn[k, :-2]
        cols = [dx + tgx[k], dy + tgy[k]]
        if rotation_mode == "fit":
            cols.append(cols[1] * u - cols[0] * v)
        want = np.stack(cols).reshape(len(cols), -1)
        assert np.array_equal(sd[k], want)
        assert np.allclose(hess[k], want.astype(np.float64) @ want.T.astype(np.float64), rtol=1e-5, atol=1e-9)


def test_windows_whose_match_leaves_the_crop_are_not_kept(scene, rng):
    b = np.array([4.0, 0.0])
    phone = warp_affine_pair(scene, np.eye(2), b, rng)
    ps = extract_patches(phone, scene, config=PatchConfig(rotation="none", radius=8))
    cand = ps.candidates
    right = cand["xy"][:, 0] == 5 * P  # window x 500..599 moves to 504..603 of a 620 px crop: inside
    assert not cand["outside"][right].any()
    ps = extract_patches(phone[:, :600], scene[:, :600], config=PatchConfig(rotation="none", radius=8))
    right = ps.candidates["xy"][:, 0] == 5 * P  # now 504..603 of a 600 px crop: 4 px out
    assert ps.candidates["outside"][right].all() and not ps.candidates["kept"][right].any()


@pytest.mark.shared
def test_city100_stored_pairs_recheck_from_files(shared, tmp_path):
    """Real phone/DSLR pairs: every kept pair, written to PNG and read back, has NCC >= ncc_min."""
    from dpedkit.align import align_pair
    from dpedkit.io import read_rgb, write_image

    root = shared("data", "city100")
    names = sorted(p.name for p in (root / "iPhoneX").glob("*.png"))[:2]
    assert names
    for name in names:
        res = align_pair(read_rgb(root / "iPhoneX" / name), read_rgb(root / "NikonD5500" / name))
        assert res.ok, res.reason
        ps = extract_patches(res.phone, res.dslr)
        assert len(ps) >= 0.5 * len(ps.candidates["ncc"])
        assert np.percentile(np.hypot(*ps.shift.T), 95) < 3.0  # planar scene: small residuals, far below R
        for i in range(len(ps)):
            write_image(tmp_path / "p.png", ps.phone[i])
            write_image(tmp_path / "d.png", ps.dslr[i])
            again = ncc(read_rgb(tmp_path / "p.png"), read_rgb(tmp_path / "d.png"))
            assert again == pytest.approx(float(ps.ncc[i]), abs=1e-6) and again >= 0.9 - 1e-6
