"""Baselines of the DPED paper's Table 2: SRCNN (Dong et al.) and the Johnson et al. transformation network.

Both map RGB (N, 3, H, W) float in [0, 1] to the same shape, accept any size, and are checkpointed like the
DPED generator (``model`` = ``"srcnn"`` / ``"johnson"`` plus their config). The losses they train with (SRCNN:
MSE; Johnson et al.: VGG content + TV, as in the paper's comparison) are in the recipe table,
:mod:`dpedkit.nn.registry`.

A fresh SRCNN starts at the identity (:func:`start_at_identity`): its output is its input plus a little noise, so
training starts from the identity baseline (the phone patch as it is) instead of from ~10 dB, and a short run
beats the identity instead of ending below it. ``identity_start=False`` gives PyTorch's random initialisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from dpedkit.config import ConfigMixin
from dpedkit.errors import ConfigError, check_choice, check_range
from dpedkit.nn.generator import InstanceNorm

Norm = Literal["instance", "batch"]
IDENTITY_NOISE = 0.03  # scale of the random part of an identity start (the demo's, measured there and on synth data)


@dataclass(frozen=True)
class SRCNNConfig(ConfigMixin):
    """SRCNN 9-1-5 (Dong et al. 2014): conv 9x9 -> 64, ReLU, conv 1x1 -> 32, ReLU, conv 5x5 -> 3.

    Attributes:
        channels1: channels of the first layer (64).
        channels2: channels of the second layer (32).
        kernels: kernel sizes of the three layers (9, 1, 5); odd, zero "same" padding.
        identity_start: a fresh network starts at the identity (:func:`start_at_identity`: output = input plus a
            little noise, so training starts at the identity baseline's PSNR); False: PyTorch's random
            initialisation (the output starts far from any photo). Only a fresh network: loaded weights replace it.
    """

    channels1: int = 64
    channels2: int = 32
    kernels: tuple[int, int, int] = (9, 1, 5)
    identity_start: bool = True

    def _validate(self) -> None:
        check_range("channels1", self.channels1, 1, 4096)
        check_range("channels2", self.channels2, 1, 4096)
        object.__setattr__(self, "kernels", tuple(int(k) for k in self.kernels))
        check_choice("len(kernels)", len(self.kernels), (3,))
        for k in self.kernels:
            check_choice("kernels[i]", k, (1, 3, 5, 7, 9, 11))
        if self.identity_start and min(self.channels1, self.channels2) < 3:
            raise ConfigError(
                f"identity_start needs channels1 and channels2 >= 3 (they carry RGB through); got "
                f"{self.channels1}/{self.channels2}: set identity_start = false"
            )


class SRCNN(nn.Module):
    """SRCNN applied at the input resolution (no upscaling): 3 conv layers, linear output (not clipped)."""

    name = "srcnn"
    config_class = SRCNNConfig

    def __init__(self, cfg: SRCNNConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or SRCNNConfig()
        k1, k2, k3 = cfg.kernels
        self.conv1 = nn.Conv2d(3, cfg.channels1, k1, padding=k1 // 2)
        self.conv2 = nn.Conv2d(cfg.channels1, cfg.channels2, k2, padding=k2 // 2)
        self.conv3 = nn.Conv2d(cfg.channels2, 3, k3, padding=k3 // 2)
        if cfg.identity_start:
            start_at_identity(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, 3, H, W)."""
        h = F.relu(self.conv1(x))
        h = F.relu(self.conv2(h))
        return self.conv3(h)


def start_at_identity(net: SRCNN, *, noise: float = IDENTITY_NOISE) -> SRCNN:
    """Set ``net``'s weights (in place) so that its output equals its input, plus ``noise`` times its random ones.

    Three channels of each layer carry the RGB input straight through (centre taps of 1, zero biases; the ReLUs
    pass inputs in [0, 1] unchanged); the other weights keep ``noise`` times their current (random) values, so
    that training can use them. Such a network begins at the identity baseline's PSNR.

    Args:
        net: an SRCNN with at least 3 channels in its two hidden layers (freshly initialised).
        noise: scale kept of the random weights (0: exactly the identity).

    Returns:
        ``net``.
    """
    with torch.no_grad():
        for conv in (net.conv1, net.conv2, net.conv3):
            conv.weight.mul_(noise)
            conv.bias.mul_(noise)
            k = conv.kernel_size[0] // 2
            for c in range(3):
                conv.weight[c, c, k, k] += 1.0
            conv.bias[:3] = 0.0
    return net


@dataclass(frozen=True)
class JohnsonConfig(ConfigMixin):
    """Johnson et al. (2016) image transformation network.

    ``c9s1-C, d2C, d4C, R4C x blocks, u2C, uC, c9s1-3`` with instance norm (``norm="instance"``, the later
    standard) or batch norm (``"batch"``, as in the paper), reflection padding, output ``0.5 tanh(z) + 0.5``.

    Attributes:
        channels: width C of the first layer (32).
        blocks: residual blocks at 4C channels (5).
        norm: ``"instance"`` or ``"batch"``.
    """

    channels: int = 32
    blocks: int = 5
    norm: Norm = "instance"

    def _validate(self) -> None:
        check_range("channels", self.channels, 1, 1024)
        check_range("blocks", self.blocks, 0, 64)
        check_choice("norm", self.norm, get_args(Norm))


def _norm(kind: str, c: int) -> nn.Module:
    return InstanceNorm(c, eps=1e-5) if kind == "instance" else nn.BatchNorm2d(c)


class _ConvLayer(nn.Sequential):
    """Reflection pad + conv (+ norm + ReLU)."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int = 1, norm: Norm | None = "instance") -> None:
        layers: list[nn.Module] = [nn.ReflectionPad2d(k // 2), nn.Conv2d(c_in, c_out, k, stride)]
        if norm is not None:
            layers += [_norm(norm, c_out), nn.ReLU()]
        super().__init__(*layers)


class _UpLayer(nn.Sequential):
    """Transposed conv x2 + norm + ReLU."""

    def __init__(self, c_in: int, c_out: int, norm: str) -> None:
        super().__init__(
            nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1), _norm(norm, c_out), nn.ReLU()
        )


class _JohnsonBlock(nn.Module):
    """``x + norm(conv(ReLU(norm(conv(x)))))`` (no ReLU after the add)."""

    def __init__(self, c: int, norm: str) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _ConvLayer(c, c, 3, norm=norm), nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), _norm(norm, c)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Johnson(nn.Module):
    """Johnson et al. transformation network for photo enhancement (any input size).

    Inputs whose sides are not multiples of 4 are edge-padded to the next multiple and cropped back.
    """

    name = "johnson"
    config_class = JohnsonConfig

    def __init__(self, cfg: JohnsonConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or JohnsonConfig()
        c, n = cfg.channels, cfg.norm
        self.down = nn.Sequential(
            _ConvLayer(3, c, 9, norm=n), _ConvLayer(c, 2 * c, 3, 2, norm=n), _ConvLayer(2 * c, 4 * c, 3, 2, norm=n)
        )
        self.blocks = nn.Sequential(*(_JohnsonBlock(4 * c, n) for _ in range(cfg.blocks)))
        self.up = nn.Sequential(_UpLayer(4 * c, 2 * c, n), _UpLayer(2 * c, c, n))
        self.out = _ConvLayer(c, 3, 9, norm=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, 3, H, W) in [0, 1]."""
        h, w = x.shape[-2:]
        ph, pw = -h % 4, -w % 4
        z = F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x
        z = self.out(self.up(self.blocks(self.down(z))))
        return (0.5 * torch.tanh(z) + 0.5)[..., :h, :w]
