"""Metrics: analytic goldens, scikit-image's SSIM and a scipy transcription of the reference MS-SSIM."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage, signal
from skimage.metrics import structural_similarity

from dpedkit.errors import ConfigError, InputError
from dpedkit.nn.metrics import ms_ssim, mse, psnr, ssim


def _ref_ssim_cs(a: np.ndarray, b: np.ndarray, max_val: float) -> tuple[float, float]:
    """One scale of the reference MS-SSIM (NHWC float64, 'valid' Gaussian filtering by FFT)."""
    _, h, w, _ = a.shape
    size = min(11, h, w)
    sigma = size * 1.5 / 11
    r = np.arange(size) - (size - 1) / 2
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma**2))
    win = (g / g.sum()).reshape(1, size, size, 1)

    def f(z):
        return signal.fftconvolve(z, win, mode="valid")

    mu1, mu2 = f(a), f(b)
    s11, s22, s12 = f(a * a) - mu1**2, f(b * b) - mu2**2, f(a * b) - mu1 * mu2
    c1, c2 = (0.01 * max_val) ** 2, (0.03 * max_val) ** 2
    v1, v2 = 2 * s12 + c2, s11 + s22 + c2
    return float(np.mean((2 * mu1 * mu2 + c1) * v1 / ((mu1**2 + mu2**2 + c1) * v2))), float(np.mean(v1 / v2))


def _ref_ms_ssim(a: np.ndarray, b: np.ndarray, max_val: float = 255.0) -> float:
    """MS-SSIM over a whole NHWC batch as in the reference numpy implementation (reflect + 2x2 box, stride 2)."""
    weights = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333])
    box = np.ones((1, 2, 2, 1)) / 4.0
    ss, css = [], []
    for _ in range(5):
        s, cs = _ref_ssim_cs(a, b, max_val)
        ss.append(s)
        css.append(cs)
        a, b = (ndimage.convolve(z, box, mode="reflect")[:, ::2, ::2, :] for z in (a, b))
    return float(np.prod(np.array(css[:4]) ** weights[:4]) * ss[4] ** weights[4])


def _nchw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))


@pytest.fixture
def pair(rng):
    """A smooth-ish image batch and a distorted copy, NHWC float64 in [0, 1]."""
    x = ndimage.gaussian_filter(rng.random((4, 100, 100, 3)), (0, 2, 2, 0))
    x = (x - x.min()) / (x.max() - x.min())
    y = np.clip(0.8 * x + 0.1 + 0.05 * rng.standard_normal(x.shape), 0, 1)
    return x, y


def test_psnr_offset_golden():
    x = torch.linspace(0, 0.9, 300, dtype=torch.float64).reshape(1, 3, 10, 10)
    assert float(psnr(x + 0.1, x)) == pytest.approx(20.0, abs=1e-9)
    assert float(psnr(255 * (x + 0.1), 255 * x, data_range=255.0)) == pytest.approx(20.0, abs=1e-9)


def test_psnr_pooled_vs_per_image():
    x = torch.zeros(2, 3, 4, 4)
    y = torch.cat([torch.full((1, 3, 4, 4), 0.1), torch.full((1, 3, 4, 4), 0.01)])
    per = psnr(y, x)
    assert per.tolist() == pytest.approx([20.0, 40.0])
    # pooled MSE = (0.01 + 0.0001) / 2 -> 10 log10(1 / 0.00505)
    assert float(psnr(y, x, pooled=True)) == pytest.approx(10 * np.log10(1 / 0.00505))
    assert float(mse(y[0], x[0])[0]) == pytest.approx(0.01)


def test_ssim_identity_is_one(pair):
    x, _ = pair
    t = _nchw(x)
    assert torch.allclose(ssim(t, t), torch.ones(4, dtype=torch.float64))
    assert torch.allclose(ms_ssim(t, t), torch.ones(4, dtype=torch.float64))


@pytest.mark.parametrize("data_range", [1.0, 255.0])
def test_ssim_matches_skimage(pair, data_range):
    x, y = (a * data_range for a in pair)
    ours = ssim(_nchw(y), _nchw(x), data_range=data_range)
    for i in range(len(x)):
        ref = structural_similarity(
            y[i],
            x[i],
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=data_range,
            channel_axis=2,
        )
        assert float(ours[i]) == pytest.approx(ref, abs=1e-10)


def test_ssim_float32_close_to_float64(pair):
    x, y = (_nchw(a).float() for a in pair)
    assert torch.allclose(ssim(x, y, compute_dtype=torch.float32).double(), ssim(x, y), atol=1e-5)


def test_ms_ssim_matches_reference_pooled_and_per_image(pair):
    x, y = (255 * a for a in pair)
    pooled = float(ms_ssim(_nchw(y), _nchw(x), data_range=255.0, pooled=True))
    assert pooled == pytest.approx(_ref_ms_ssim(y, x), abs=1e-9)
    per = ms_ssim(_nchw(y), _nchw(x), data_range=255.0)
    for i in range(len(x)):
        assert float(per[i]) == pytest.approx(_ref_ms_ssim(y[i : i + 1], x[i : i + 1]), abs=1e-9)
    assert 0.3 < pooled < 1.0


def test_ms_ssim_odd_sizes_match_reference(rng):
    x = rng.random((1, 37, 45, 3)) * 255
    y = np.clip(x + 20 * rng.standard_normal(x.shape), 0, 255)
    ours = float(ms_ssim(_nchw(y), _nchw(x), data_range=255.0, pooled=True))
    assert ours == pytest.approx(_ref_ms_ssim(y, x), abs=1e-9)


def test_metrics_keep_device_and_reject_bad_input():
    x = torch.rand(2, 3, 16, 16)
    assert psnr(x, x * 0.5).device == x.device
    with pytest.raises(InputError, match="shape mismatch"):
        psnr(x, x[:1])
    with pytest.raises(InputError, match="smaller than"):
        ssim(x[..., :8, :8], x[..., :8, :8])
    with pytest.raises(ConfigError, match="win_size"):
        ssim(x, x, win_size=4)
    with pytest.raises(InputError, match="torch tensors"):
        psnr(x.numpy(), x.numpy())


@pytest.mark.gpu
def test_metrics_on_cuda_match_cpu(pair):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    x, y = _nchw(pair[0]), _nchw(pair[1])
    for fn in (psnr, ssim, ms_ssim):
        got = fn(x.cuda(), y.cuda())
        assert got.is_cuda
        assert torch.allclose(got.cpu(), fn(x, y), atol=1e-9)


def test_conv_and_matmul_filter_paths_agree(pair, monkeypatch):
    import dpedkit.nn.metrics as metrics

    x, y = _nchw(pair[0]), _nchw(pair[1])
    by_matmul = ms_ssim(x, y)
    monkeypatch.setattr(metrics, "_MATMUL_MAX_SIDE", 0)
    assert torch.allclose(ms_ssim(x, y), by_matmul, atol=1e-12)
