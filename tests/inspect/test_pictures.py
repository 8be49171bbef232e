import cv2
import numpy as np
import pytest

from dpedkit.inspect import pictures as dg


def _textured(rng, h=120, w=160):
    img = cv2.GaussianBlur(rng.uniform(0, 255, (h, w, 3)).astype(np.float32), (0, 0), 2.0)
    return np.clip((img - img.mean()) * 4 + 128, 0, 255).astype(np.uint8)


def _decode(png: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    return img


def test_encode_png_round_trip(rng):
    img = _textured(rng)
    assert np.array_equal(_decode(dg.encode_png(img))[:, :, ::-1], img)
    assert dg.encode_jpeg(img)[:2] == b"\xff\xd8"


def test_fit_width_shrinks_only_wide_images(rng):
    img = _textured(rng, 100, 400)
    small, s = dg.fit_width(img, 200)
    assert small.shape == (50, 200, 3) and s == 0.5
    same, s1 = dg.fit_width(img, 1000)
    assert same is img and s1 == 1.0


def test_checkerboard_alternates_tiles():
    a, b = np.zeros((80, 80, 3), np.uint8), np.full((80, 80, 3), 255, np.uint8)
    cb = dg.checkerboard(a, b, tiles=8)  # tiles of 10 px
    assert (cb[0:10, 0:10] == 0).all() and (cb[0:10, 10:20] == 255).all() and (cb[10:20, 0:10] == 255).all()
    assert cb.mean() == pytest.approx(127.5)


def test_blend_is_weighted_mean():
    a, b = np.full((4, 4, 3), 200, np.uint8), np.full((4, 4, 3), 100, np.uint8)
    assert (dg.blend(a, b, alpha=0.25) == 125).all()


def test_abs_diff_ignores_tone_but_sees_shift(rng):
    a = _textured(rng)
    toned = np.clip(a.astype(np.float32) * 0.6 + 90, 0, 255).astype(np.uint8)  # gain + offset: another camera's tone
    assert dg.abs_diff(a, a).max() == 0
    assert np.median(dg.abs_diff(a, toned)) < 1.0  # band-passed and contrast-matched: tone removed
    assert np.median(dg.abs_diff(a, toned, sigma=0)) > 20  # plain luma difference keeps it
    shifted = np.roll(a, 2, axis=1)
    assert np.median(dg.abs_diff(a, shifted)) > 5 * np.median(dg.abs_diff(a, toned)) + 1


def test_diff_heatmap_black_where_equal(rng):
    a = _textured(rng)
    heat, vmax = dg.diff_heatmap(a, a)
    assert heat.shape == a.shape and heat.dtype == np.uint8 and vmax == 1.0
    assert (heat == heat[0, 0]).all() and heat[0, 0].sum() < 10  # inferno(0) is nearly black


def test_same_shape_required(rng):
    with pytest.raises(ValueError, match="same shape"):
        dg.checkerboard(_textured(rng), _textured(rng, 60, 60))


def test_draw_matches_draws_lines_between_images(rng):
    a, b = np.zeros((100, 200, 3), np.uint8), np.zeros((200, 300, 3), np.uint8)
    pa = np.array([[50.0, 50.0], [150.0, 20.0]])
    out = dg.draw_matches(a, b, pa, pa * 2, height=100)
    assert out.shape == (100, 200 + 150, 3)
    assert out[50, 50].any() and out[50, 200 + 50].any()  # circles at the match ends (DSLR half at scale 1/2)
    assert out[50, 120].any()  # on the horizontal line between them
    assert not out[95, 5].any()


def test_patch_grid_overlay_colours_and_crosses():
    img = np.zeros((100, 200, 3), np.uint8)
    out = dg.patch_grid_overlay(
        img, np.array([[0, 0], [100, 0]]), np.array([1.0, 0.5]), np.array([True, False]), size=100
    )
    green, red = out[50, 1], out[50, 101]
    assert green[1] > green[0] and red[0] > red[1]  # NCC 1 green, NCC 0.5 (bottom of the scale) red
    assert out[50, 150].any() and not out[50, 50].any()  # only the rejected window is crossed out
    assert not img.any()  # input untouched


def test_plots_are_png_and_not_blank(rng):
    ncc = np.r_[rng.uniform(0.2, 0.9, 50), rng.uniform(0.9, 1.0, 200)]
    pngs = [
        dg.ncc_histogram_png(ncc, threshold=0.9),
        dg.shift_angle_png(rng.normal(0, 0.3, (100, 2)), rng.normal(0, 0.2, 100)),
        dg.kept_fraction_png(["a", "b", "c"], [0.5, 0.1, 0.9], failed=[False, True, False]),
        dg.inliers_rmse_png([100, 400, 900], [0.5, 0.7, 0.6], names=["a", "b", "c"]),
        dg.shift_field_png(
            _textured(rng, 200, 300),
            np.array([[0, 0], [100, 100]]),
            np.array([[0.2, 0.1], [5, 5]]),
            np.array([True, False]),
            size=100,
        ),  # fmt: skip
        dg.ncc_histogram_png(np.zeros(0), threshold=0.9),  # empty input still renders
    ]
    for png in pngs:
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert _decode(png).std() > 10


def test_patch_strip_labels_the_columns_and_the_ncc():
    phone, dslr = np.full((100, 100, 3), 255, np.uint8), np.full((100, 100, 3), 255, np.uint8)
    assert dg.patch_strip(phone, dslr).shape == (100, 202, 3)  # unlabelled: as before
    strip = dg.patch_strip(phone, dslr, labels=("phone", "DSLR"), footer="NCC 0.953")
    assert strip.shape == (128, 202, 3)
    head, foot = strip[:14].min(axis=2), strip[-14:].min(axis=2)
    assert (head[:, :100] < 128).any() and (head[:, 102:] < 128).any()  # a word over each column
    assert (foot < 128).any() and (strip[14:-14] == 255).all()  # the patches themselves are untouched
    small = dg.patch_strip(phone[:32, :32], dslr[:32, :32], labels=("phone RAW", "DSLR"))
    assert small.shape == (14 + 64, 2 * 64 + 2, 3)  # 32 px patches enlarged x2 so the words fit
