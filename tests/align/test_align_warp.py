"""Crop geometry (largest valid rectangle) and anti-aliased DSLR resampling."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from dpedkit.align.warp import antialias_sigma, largest_rectangle, resample_dslr, valid_halfplanes
from dpedkit.geometry import apply_homography


def _inside(h, pts, dslr_size, margin):
    with np.errstate(divide="ignore", invalid="ignore"):
        q = apply_homography(h, pts)
    w = np.c_[pts, np.ones(len(pts))] @ h[2]
    lo, hi = np.array([margin, margin]), np.array(dslr_size) - 1 - margin
    return np.all((q >= lo - 1e-9) & (q <= hi + 1e-9), axis=1) & (w > 0)


def _brute_force(h, phone_size, dslr_size, margin):
    """Largest rectangle by checking every (y0, y1) row span and every column span exhaustively."""
    w, hgt = phone_size
    xs, ys = np.meshgrid(np.arange(w), np.arange(hgt))
    valid = _inside(h, np.c_[xs.ravel(), ys.ravel()], dslr_size, margin).reshape(hgt, w)
    best = 0
    for y0, y1 in itertools.combinations_with_replacement(range(hgt), 2):
        cols = valid[y0 : y1 + 1].all(axis=0)
        run = longest = 0
        for c in cols:
            run = run + 1 if c else 0
            longest = max(longest, run)
        best = max(best, longest * (y1 - y0 + 1))
    return best, valid


@pytest.mark.parametrize("seed", range(4))
def test_largest_rectangle_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    a = math.radians(rng.uniform(-20, 20))
    s = rng.uniform(0.8, 1.3)
    h = np.array([[s * math.cos(a), -s * math.sin(a), rng.uniform(-5, 15)],
                  [s * math.sin(a), s * math.cos(a), rng.uniform(-5, 15)],
                  [rng.uniform(-2e-3, 2e-3), rng.uniform(-2e-3, 2e-3), 1.0]])  # fmt: skip
    phone, dslr = (40, 30), (36, 28)
    x0, y0, x1, y1 = largest_rectangle(valid_halfplanes(h, phone, dslr, margin=1.0), phone, step=3)
    best, valid = _brute_force(h, phone, dslr, 1.0)
    area = (x1 - x0) * (y1 - y0)
    assert area > 0 and valid[y0:y1, x0:x1].all()  # every pixel of the crop is valid
    assert area >= 0.97 * best  # the coarse-to-fine search is (nearly) optimal


def test_translation_crop_is_exact():
    h = np.array([[1.0, 0, -10.0], [0, 1.0, 5.0], [0, 0, 1.0]])  # phone (x, y) -> DSLR (x - 10, y + 5)
    rect = largest_rectangle(valid_halfplanes(h, (100, 80), (120, 60), margin=0.0), (100, 80))
    assert rect == (10, 0, 100, 55)


def test_no_overlap_gives_empty_rectangle():
    h = np.array([[1.0, 0, 500.0], [0, 1.0, 0.0], [0, 0, 1.0]])
    assert largest_rectangle(valid_halfplanes(h, (100, 80), (120, 60)), (100, 80)) == (0, 0, 0, 0)


def test_resample_is_antialiased_when_dslr_shrinks():
    """Vertical stripes of period 2 DSLR px (DSLR Nyquist) sampled every 2 DSLR px: a plain warp aliases them
    into a flat but wrong level or a strong beat; the pre-filter leaves a uniform mid grey."""
    stripes = np.zeros((200, 300, 3), np.uint8)
    stripes[:, ::2] = 255
    h = np.array([[2.0, 0, 0.3], [0, 2.0, 0.3], [0, 0, 1.0]])  # phone px -> DSLR px, 2 DSLR px per phone px
    out = resample_dslr(stripes, h, (5, 5, 140, 90))
    assert out.shape == (85, 135, 3)
    assert abs(out.mean() - 127.5) < 6 and out.std() < 12
    import cv2

    naive = cv2.warpPerspective(stripes, h, (135, 85), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    assert abs(naive.mean() - 127.5) > 40  # what the pre-filter prevents: the samples hit one stripe phase


def test_resample_upscaling_is_not_blurred():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    h = np.array([[1.0, 0, 3.0], [0, 1.0, 2.0], [0, 0, 1.0]])  # integer shift, scale 1: exact copy
    out = resample_dslr(img, h, (0, 0, 70, 50))
    assert np.array_equal(out, img[2:52, 3:73])
    assert antialias_sigma(1.0) == 0.0 and antialias_sigma(0.5) == 0.0
    assert antialias_sigma(2.0) == pytest.approx(0.5 * math.sqrt(3))


def test_crop_stays_on_the_anchor_side_of_the_horizon():
    """w = 1 - 0.01 x vanishes at x = 100 inside the phone image; points beyond it must never be used."""
    h = np.array([[1.0, 0, 0], [0, 1.0, 0], [-0.01, 0, 1.0]])
    x0, y0, x1, y1 = largest_rectangle(
        valid_halfplanes(h, (200, 100), (300, 200), margin=1.0, anchor=(30, 50)), (200, 100), step=3
    )
    best, valid = _brute_force(h, (200, 100), (300, 200), 1.0)
    assert valid[y0:y1, x0:x1].all() and x1 <= 100
    assert (x1 - x0) * (y1 - y0) >= 0.97 * best
