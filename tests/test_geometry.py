import cv2
import numpy as np

from dpedkit.geometry import apply_homography, grid_residual, mean_corner_error, rescale_homography, scale_matrix


def test_scale_matrix_matches_cv2_resize_sampling():
    # A 1-pixel-wide bright column at x=10 in a 40-wide image lands at (10 + 0.5) * 0.5 - 0.5 = 4.75 when halved.
    img = np.zeros((8, 40), np.float32)
    img[:, 10:12] = 1.0  # columns 10 and 11 -> centre 10.5
    small = cv2.resize(img, (20, 4), interpolation=cv2.INTER_AREA)
    centre = (small[0] * np.arange(20)).sum() / small[0].sum()
    assert np.isclose(centre, apply_homography(scale_matrix(0.5), [[10.5, 0]])[0, 0])


def test_rescale_homography_roundtrip(rng):
    h = np.array([[1.02, 0.03, 5.0], [-0.02, 0.99, -3.0], [1e-5, -2e-5, 1.0]])
    h_small = scale_matrix(0.25) @ h @ np.linalg.inv(scale_matrix(0.5))
    assert np.allclose(rescale_homography(h_small, 0.5, 0.25), h / h[2, 2])


def test_errors_are_zero_for_equal_and_known_for_shift():
    h = np.eye(3)
    t = np.array([[1, 0, 3.0], [0, 1, 4.0], [0, 0, 1]])
    assert mean_corner_error(h, h, 100, 50) == 0
    assert np.isclose(mean_corner_error(h, t, 100, 50), 5.0)
    r = grid_residual(h, t, 100, 50)
    assert np.isclose(r["median"], 5) and np.isclose(r["max"], 5)
