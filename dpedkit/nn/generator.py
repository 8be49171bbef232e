"""The DPED generator (Ignatov et al., ICCV 2017) exactly as in the official code, plus its building blocks.

Architecture (stride 1, zero "same" padding, 64 channels; 401,475 parameters)::

    x (N, 3, H, W) float in [0, 1]
    c1      conv 9x9 3->64 + bias, ReLU
    blocks  4 x ResidualBlock:  a = ReLU(norm1(conv1(x)));  x = ReLU(norm2(conv2(a))) + x   (ReLU before the add)
    c10     conv 3x3 64->64 + bias, ReLU
    c11     conv 3x3 64->64 + bias, ReLU
    c12     conv 9x9 64->3 + bias, then tanh(z) * 0.58 + 0.5   (range about [-0.08, 1.08], not clipped)

The norm is :class:`InstanceNorm` (biased variance, eps 1e-3, learned per-channel ``scale`` and ``shift``), not
``torch.nn.InstanceNorm2d``.  The paper says batch norm; the official code (and checkpoints) use instance norm.

Layer-by-layer use (e.g. exact tiled full-resolution inference): the statistics of every norm layer can be
injected, ``InstanceNorm.forward(x, stats=(mean, var))`` with ``mean``/``var`` shaped ``(N, C, 1, 1)`` (or
``(C,)``), so a caller may compute them over the whole image in a streaming pass and then run
``relu(c1(x))``, each block's ``conv1 -> norm1(stats) -> relu -> conv2 -> norm2(stats) -> relu -> + x``,
``relu(c10)``, ``relu(c11)``, :func:`output_activation` ``(c12(x))`` tile by tile. :meth:`Generator.stages`
hands out exactly these parts (:class:`Stages`); the strip engine of :mod:`dpedkit.enhance.strips` runs them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dpedkit.config import ConfigMixin
from dpedkit.errors import check_range


@dataclass(frozen=True)
class GeneratorConfig(ConfigMixin):
    """Architecture of the DPED generator (defaults = the official model).

    Attributes:
        channels: feature channels of every hidden layer (64).
        blocks: number of residual blocks (4).
        eps: instance-norm epsilon (1e-3, as in the official code).
        out_scale: ``tanh`` output multiplier (0.58).
        out_offset: output offset added after scaling (0.5).
    """

    channels: int = 64
    blocks: int = 4
    eps: float = 1e-3
    out_scale: float = 0.58
    out_offset: float = 0.5

    def _validate(self) -> None:
        check_range("channels", self.channels, 1, 4096)
        check_range("blocks", self.blocks, 0, 64)
        check_range("eps", self.eps, 0.0, 1.0)
        check_range("out_scale", self.out_scale, 0.0, 10.0)


def tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding ``(before, after)`` along one axis.

    Output size is ``ceil(size / stride)``; the total padding is split with the extra pixel *after*
    (e.g. 100 px, kernel 11, stride 4 -> (3, 4)).
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def conv_same(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """Apply ``conv`` (built with ``padding=0``) after TF "SAME" zero padding of ``x`` (N, C, H, W)."""
    kh, kw = conv.kernel_size
    sh, sw = conv.stride
    top, bottom = tf_same_padding(x.shape[-2], kh, sh)
    left, right = tf_same_padding(x.shape[-1], kw, sw)
    return conv(F.pad(x, (left, right, top, bottom)))


def init_tf_(module: nn.Module, std: float = 0.01, bias: float = 0.01) -> None:
    """Official initialisation: weights truncated normal (std 0.01, redrawn beyond +-2 std), biases 0.01."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            _trunc_normal_(m.weight, std)
            if m.bias is not None:
                nn.init.constant_(m.bias, bias)


@torch.no_grad()
def _trunc_normal_(w: torch.Tensor, std: float) -> None:
    # TF's truncated_normal: redraw samples beyond 2 std (faster than torch's inverse-CDF version)
    if w.is_meta:  # shapes only (a checkpoint's architecture checked before any memory is spent)
        return
    w.normal_(0.0, std)
    while True:
        bad = w.abs() > 2 * std
        n = int(bad.sum())
        if n == 0:
            return
        w[bad] = torch.empty(n, dtype=w.dtype, device=w.device).normal_(0.0, std)


class InstanceNorm(nn.Module):
    """Instance norm as in the DPED code: biased variance, ``eps`` 1e-3, learned ``scale`` (1) and ``shift`` (0).

    ``y = scale * (x - mean) / sqrt(var + eps) + shift`` with ``mean``/``var`` over H, W per sample and channel.

    Args:
        channels: number of channels C.
        eps: added to the variance.
    """

    def __init__(self, channels: int, eps: float = 1e-3) -> None:
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(channels))
        self.shift = nn.Parameter(torch.zeros(channels))

    @staticmethod
    def statistics(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample, per-channel ``(mean, biased var)`` of ``x`` (N, C, H, W), each (N, C, 1, 1), in float32+."""
        xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x  # fp16 sums of squares overflow
        var, mean = torch.var_mean(xf, dim=(2, 3), keepdim=True, correction=0)
        return mean, var

    def forward(self, x: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Normalise ``x`` (N, C, H, W); ``stats=(mean, var)`` overrides the statistics computed from ``x``.

        Injected ``mean``/``var`` may be shaped (N, C, 1, 1), (C, 1, 1) or (C,).
        """
        if stats is None:
            mean, var = self.statistics(x)
        else:
            mean, var = (s.view(-1, 1, 1) if s.dim() == 1 else s for s in stats)
        c = x.shape[1]
        scale = self.scale.view(1, c, 1, 1)
        shift = self.shift.view(1, c, 1, 1)
        y = (x - mean) * torch.rsqrt(var + self.eps) * scale + shift
        return y.to(x.dtype)


class ResidualBlock(nn.Module):
    """``a = ReLU(norm1(conv1(x))); out = ReLU(norm2(conv2(a))) + x`` (3x3 convs, zero padding 1)."""

    def __init__(self, channels: int, eps: float = 1e-3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm1 = InstanceNorm(channels, eps)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2 = InstanceNorm(channels, eps)

    def forward(
        self,
        x: torch.Tensor,
        stats1: tuple[torch.Tensor, torch.Tensor] | None = None,
        stats2: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """(N, C, H, W) -> (N, C, H, W); ``stats1``/``stats2`` optionally inject the norms' ``(mean, var)``."""
        a = F.relu(self.norm1(self.conv1(x), stats1))
        return F.relu(self.norm2(self.conv2(a), stats2)) + x


def output_activation(z: torch.Tensor, scale: float = 0.58, offset: float = 0.5) -> torch.Tensor:
    """The generator's output mapping ``tanh(z) * scale + offset`` (not clipped)."""
    return torch.tanh(z) * scale + offset


@dataclass(frozen=True)
class Stages:
    """A generator cut at its norm layers: the parts exact tiled inference runs one after another.

    ``relu(head(x))``; per block ``conv1 -> norm1 -> relu -> conv2 -> norm2 -> relu -> + x`` (the norms with
    whole-image statistics); ``tail``: each convolution followed by a ReLU but the last, then
    :func:`output_activation` with ``out_scale`` and ``out_offset``.
    """

    head: nn.Conv2d
    blocks: tuple[ResidualBlock, ...]
    tail: tuple[nn.Conv2d, ...]
    out_scale: float
    out_offset: float


class Generator(nn.Module):
    """The DPED image enhancement generator (fully convolutional, any input size).

    Args:
        cfg: architecture; the default is the official model (401,475 parameters).

    Example:
        >>> g = Generator()
        >>> g(torch.rand(2, 3, 100, 100)).shape
        torch.Size([2, 3, 100, 100])
    """

    name = "dped"
    config_class = GeneratorConfig
    tiling = "stages"  # how a whole photo runs in strips: :meth:`stages` (dpedkit.enhance.strips)

    def __init__(self, cfg: GeneratorConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or GeneratorConfig()
        c = cfg.channels
        self.c1 = nn.Conv2d(3, c, 9, padding=4)
        self.blocks = nn.ModuleList(ResidualBlock(c, cfg.eps) for _ in range(cfg.blocks))
        self.c10 = nn.Conv2d(c, c, 3, padding=1)
        self.c11 = nn.Conv2d(c, c, 3, padding=1)
        self.c12 = nn.Conv2d(c, 3, 9, padding=4)
        init_tf_(self)

    def norms(self) -> list[InstanceNorm]:
        """The norm layers in execution order (block 0 norm1, norm2, block 1 norm1, ...)."""
        return [n for b in self.blocks for n in (b.norm1, b.norm2)]

    def stages(self) -> Stages:
        """The layers in the order tiled inference runs them (the model's side of strip tiling)."""
        return Stages(self.c1, tuple(self.blocks), (self.c10, self.c11, self.c12), self.cfg.out_scale,
                      self.cfg.out_offset)  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Enhance ``x`` (N, 3, H, W) float RGB in [0, 1] -> (N, 3, H, W), values in about [-0.08, 1.08]."""
        h = F.relu(self.c1(x))  # N, 64, H, W
        for block in self.blocks:
            h = block(h)
        h = F.relu(self.c10(h))
        h = F.relu(self.c11(h))
        return output_activation(self.c12(h), self.cfg.out_scale, self.cfg.out_offset)
