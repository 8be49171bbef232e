"""Image quality metrics: PSNR, SSIM (Wang et al. 2004, Gaussian window) and MS-SSIM, in torch.

All functions take ``(N, C, H, W)`` (or ``(C, H, W)``) float tensors on any device (CPU or CUDA) and never leave
it; ``data_range`` is the value span of the images (1.0 for [0, 1], 255.0 for 0..255).  Sums run in float64
(``compute_dtype``) so the 0..255 MS-SSIM of the DPED protocol does not lose digits to cancellation.

Conventions:
    - SSIM uses an 11x11 Gaussian window (sigma 1.5, normalised), K1 0.01, K2 0.03, biased (population)
      covariances and only "valid" window positions (no padding), averaged over positions and channels.
      This equals ``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
      use_sample_covariance=False, data_range=...)``.
    - MS-SSIM follows the reference implementation DPED used (Wang et al. 2003, 5 scales, weights
      0.0448/0.2856/0.3001/0.2363/0.1333): at each scale the window shrinks to ``min(11, H, W)`` with sigma
      scaled alike, images are downsampled by 2x2 averaging (edge replicated when odd), contrast-structure
      terms of scales 1..4 and the full SSIM of scale 5 are combined as a weighted product.  ``pooled=True``
      averages the per-scale terms over the whole batch before combining (the DPED training-script protocol);
      ``pooled=False`` gives one value per image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dpedkit.errors import ConfigError, InputError

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)

__all__ = ["MS_SSIM_WEIGHTS", "ms_ssim", "mse", "psnr", "ssim"]


def _as_batch(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)):
        raise InputError(None, "metrics take torch tensors (N, C, H, W) or (C, H, W)")
    if x.shape != y.shape:
        raise InputError(None, f"shape mismatch: {tuple(x.shape)} vs {tuple(y.shape)}")
    if x.dim() == 3:
        x, y = x[None], y[None]
    if x.dim() != 4:
        raise InputError(None, f"expected (N, C, H, W) or (C, H, W); got {tuple(x.shape)}")
    return x, y


def mse(x: torch.Tensor, y: torch.Tensor, *, compute_dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Mean squared error per image.

    Args:
        x: images ``(N, C, H, W)`` or ``(C, H, W)``, float.
        y: reference images, same shape.
        compute_dtype: dtype of the arithmetic (float64 by default).

    Returns:
        ``(N,)`` tensor of per-image MSE, in ``compute_dtype``, on the input device.
    """
    x, y = _as_batch(x, y)
    d = x.to(compute_dtype) - y.to(compute_dtype)
    return (d * d).flatten(1).mean(1)


def psnr(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    data_range: float = 1.0,
    pooled: bool = False,
    compute_dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, ``10 log10(data_range^2 / MSE)``.

    Args:
        x: images ``(N, C, H, W)`` or ``(C, H, W)``, float (not clipped here: clip before if the protocol says so).
        y: reference images, same shape.
        data_range: value span of the images (1.0 for [0, 1]).
        pooled: one PSNR from the MSE pooled over the whole batch (DPED protocol) instead of one per image.
        compute_dtype: dtype of the arithmetic.

    Returns:
        ``(N,)`` per-image PSNR, or a 0-d tensor when ``pooled``; ``inf`` where the images are equal.

    Example:
        >>> x = torch.linspace(0, 0.9, 100, dtype=torch.float64).reshape(1, 1, 10, 10)
        >>> round(float(psnr(x + 0.1, x)), 6)
        20.0
    """
    err = mse(x, y, compute_dtype=compute_dtype)
    if pooled:
        err = err.mean()
    return 10.0 * torch.log10(data_range**2 / err)


def gaussian_window(size: int, sigma: float, *, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    """Normalised 1-D Gaussian of ``size`` taps (odd), centred; the 2-D window is its outer product."""
    r = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2.0
    g = torch.exp(-(r * r) / (2.0 * sigma * sigma))
    return g / g.sum()


_MATMUL_MAX_SIDE = 1024


def _band(n: int, g: torch.Tensor) -> torch.Tensor:
    """``(n - k + 1, n)`` matrix whose product with a length-``n`` signal is its 'valid' correlation with ``g``."""
    k = g.numel()
    m = torch.zeros(n - k + 1, n, dtype=g.dtype, device=g.device)
    for i in range(k):
        m.diagonal(i).copy_(g[i].expand(n - k + 1))
    return m


def _filter(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' filtering of each channel of (N, C, H, W) with the 1-D kernel ``g``.

    Patch-sized images use two banded matrix products (BLAS, fast in float64 too); large ones depthwise convs.
    """
    h, w = x.shape[-2:]
    if max(h, w) <= _MATMUL_MAX_SIDE:
        return _band(h, g) @ x @ _band(w, g).T
    c, k = x.shape[1], g.numel()
    x = F.conv2d(x, g.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)
    return F.conv2d(x, g.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)


def _ssim_maps(
    x: torch.Tensor, y: torch.Tensor, g: torch.Tensor, data_range: float, k1: float, k2: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """SSIM and contrast-structure maps (N, C, H', W') over valid window positions."""
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    mu_x, mu_y = _filter(x, g), _filter(y, g)
    sxx = _filter(x * x, g) - mu_x * mu_x
    syy = _filter(y * y, g) - mu_y * mu_y
    sxy = _filter(x * y, g) - mu_x * mu_y
    cs = (2.0 * sxy + c2) / (sxx + syy + c2)
    lum = (2.0 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1)
    return lum * cs, cs


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    data_range: float = 1.0,
    win_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    compute_dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) per image, Gaussian window, valid positions only.

    Args:
        x: images ``(N, C, H, W)`` or ``(C, H, W)``, float; ``H`` and ``W`` must be at least ``win_size``.
        y: reference images, same shape.
        data_range: value span of the images (1.0 for [0, 1], 255.0 for 0..255).
        win_size: Gaussian window size (odd), 11 by default.
        sigma: Gaussian sigma in pixels, 1.5 by default.
        k1: luminance constant.
        k2: contrast constant.
        compute_dtype: dtype of the arithmetic.

    Returns:
        ``(N,)`` mean SSIM over positions and channels; ``ssim(x, x) == 1``.

    Raises:
        InputError: images smaller than the window or mismatched shapes.
        ConfigError: ``win_size`` even or below 1.
    """
    x, y = _as_batch(x, y)
    if win_size < 1 or win_size % 2 == 0:
        raise ConfigError(f"win_size must be an odd number >= 1; got {win_size}")
    if min(x.shape[-2:]) < win_size:
        raise InputError(None, f"images {tuple(x.shape[-2:])} are smaller than the {win_size}x{win_size} window")
    x, y = x.to(compute_dtype), y.to(compute_dtype)
    g = gaussian_window(win_size, sigma, dtype=compute_dtype, device=x.device)
    s, _ = _ssim_maps(x, y, g, data_range, k1, k2)
    return s.flatten(1).mean(1)


def ssim_map(
    x: torch.Tensor, y: torch.Tensor, *, data_range: float = 1.0, win_size: int = 11, sigma: float = 1.5,
    compute_dtype: torch.dtype = torch.float64,
) -> torch.Tensor:  # fmt: skip
    """The SSIM of every valid window position, ``(N, C, H - win_size + 1, W - win_size + 1)``.

    :func:`ssim` is its mean. Position ``(i, j)`` is the window centred on pixel ``(i + win_size // 2, j +
    win_size // 2)``.
    """
    x, y = _as_batch(x, y)
    if min(x.shape[-2:]) < win_size:
        raise InputError(None, f"images {tuple(x.shape[-2:])} are smaller than the {win_size}x{win_size} window")
    x, y = x.to(compute_dtype), y.to(compute_dtype)
    g = gaussian_window(win_size, sigma, dtype=compute_dtype, device=x.device)
    return _ssim_maps(x, y, g, data_range, 0.01, 0.03)[0]


def _downsample2(x: torch.Tensor) -> torch.Tensor:
    """2x2 box average with stride 2; an odd last row/column is averaged with itself (edge replicated)."""
    pad_h, pad_w = x.shape[-2] % 2, x.shape[-1] % 2
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    return F.avg_pool2d(x, 2)


def ms_ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    data_range: float = 1.0,
    pooled: bool = False,
    win_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    weights: tuple[float, ...] = MS_SSIM_WEIGHTS,
    compute_dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Multi-scale SSIM as in the reference implementation used by DPED (see the module docstring).

    Args:
        x: images ``(N, C, H, W)`` or ``(C, H, W)``, float.
        y: reference images, same shape.
        data_range: value span (DPED: images scaled to 0..255 and ``data_range=255``; equivalent to [0, 1]
            with ``data_range=1`` up to rounding).
        pooled: average each scale's terms over the whole batch first and return one value (DPED protocol);
            otherwise one value per image.
        win_size: largest Gaussian window (shrinks to the image size at coarse scales, sigma scaled alike).
        sigma: Gaussian sigma at ``win_size``.
        k1: luminance constant.
        k2: contrast constant.
        weights: per-scale exponents; their count is the number of scales.
        compute_dtype: dtype of the arithmetic.

    Returns:
        ``(N,)`` per-image MS-SSIM, or a 0-d tensor when ``pooled``; ``ms_ssim(x, x) == 1``.
        A negative contrast term raised to a fractional weight gives NaN, as in the reference.
    """
    x, y = _as_batch(x, y)
    x, y = x.to(compute_dtype), y.to(compute_dtype)
    dims = (0, 1, 2, 3) if pooled else (1, 2, 3)
    values = []
    for level in range(len(weights)):
        size = min(win_size, x.shape[-2], x.shape[-1])
        g = gaussian_window(size, size * sigma / win_size, dtype=compute_dtype, device=x.device)
        s, cs = _ssim_maps(x, y, g, data_range, k1, k2)
        values.append((s if level == len(weights) - 1 else cs).mean(dims))
        if level < len(weights) - 1:
            x, y = _downsample2(x), _downsample2(y)
    out = torch.ones_like(values[0])
    for v, w in zip(values, weights, strict=True):
        out = out * v.pow(w)
    return out
