"""The DPED discriminator: grayscale 100x100 input, 5 convs + 2 FC layers, 2-way softmax (class 0 = DSLR/real).

As in the official code (the paper's "sigmoid on a 1024-neuron FC" differs)::

    gray (N, 1, 100, 100)
    conv1 11x11 1->48   stride 4, TF "same" (pad 3 before / 4 after)  LeakyReLU(0.2)          -> 25x25
    conv2 5x5   48->128  stride 2                                      LeakyReLU(0.2) -> IN    -> 13x13
    conv3 3x3  128->192                                                LeakyReLU(0.2) -> IN    -> 13x13
    conv4 3x3  192->192                                                LeakyReLU(0.2) -> IN    -> 13x13
    conv5 3x3  192->128  stride 2                                      LeakyReLU(0.2) -> IN    -> 7x7
    flatten in NHWC order (6272) -> fc 1024, LeakyReLU(0.2) -> out 2 -> softmax
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dpedkit.config import ConfigMixin
from dpedkit.errors import InputError, check_range
from dpedkit.nn.generator import InstanceNorm, conv_same, init_tf_, tf_same_padding

GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)


def to_gray(x: torch.Tensor) -> torch.Tensor:
    """Differentiable grayscale ``0.2989 R + 0.5870 G + 0.1140 B``: (N, 3, H, W) -> (N, 1, H, W)."""
    w = x.new_tensor(GRAY_WEIGHTS).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


@dataclass(frozen=True)
class DiscriminatorConfig(ConfigMixin):
    """Architecture of the DPED discriminator (defaults = the official one).

    Attributes:
        patch: input side in pixels (100); fixes the FC input size.
        slope: LeakyReLU negative slope (0.2).
        eps: instance-norm epsilon (1e-3).
    """

    patch: int = 100
    slope: float = 0.2
    eps: float = 1e-3

    def _validate(self) -> None:
        check_range("patch", self.patch, 16, 4096)
        check_range("slope", self.slope, 0.0, 1.0)
        check_range("eps", self.eps, 0.0, 1.0)


# (in, out, kernel, stride, instance norm)
_LAYERS = (
    (1, 48, 11, 4, False),
    (48, 128, 5, 2, True),
    (128, 192, 3, 1, True),
    (192, 192, 3, 1, True),
    (192, 128, 3, 2, True),
)


def _out_side(side: int) -> int:
    for *_, s, _ in _LAYERS:
        side = -(-side // s)
    return side


class Discriminator(nn.Module):
    """DPED texture discriminator on grayscale patches.

    Args:
        cfg: architecture (default: official, 100x100 input).

    Example:
        >>> d = Discriminator()
        >>> d(to_gray(torch.rand(4, 3, 100, 100))).shape
        torch.Size([4, 2])
    """

    name = "dped-discriminator"
    config_class = DiscriminatorConfig

    def __init__(self, cfg: DiscriminatorConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or DiscriminatorConfig()
        self.convs = nn.ModuleList(nn.Conv2d(i, o, k, stride=s) for i, o, k, s, _ in _LAYERS)
        self.norms = nn.ModuleList(InstanceNorm(o, cfg.eps) if n else nn.Identity() for _, o, _, _, n in _LAYERS)
        side = _out_side(cfg.patch)
        self.fc = nn.Linear(128 * side * side, 1024)
        self.out = nn.Linear(1024, 2)
        init_tf_(self)

    def logits(self, gray: torch.Tensor) -> torch.Tensor:
        """Pre-softmax scores (N, 2) of gray patches (N, 1, patch, patch)."""
        if gray.dim() != 4 or gray.shape[1] != 1 or tuple(gray.shape[2:]) != (self.cfg.patch,) * 2:
            raise InputError(
                None,
                f"discriminator expects (N, 1, {self.cfg.patch}, {self.cfg.patch}) gray "
                f"patches (use to_gray); got {tuple(gray.shape)}",
            )
        h = gray
        for conv, norm in zip(self.convs, self.norms, strict=True):
            h = norm(F.leaky_relu(conv_same(h, conv), self.cfg.slope))
        h = h.permute(0, 2, 3, 1).flatten(1)  # NHWC order, as TF's reshape
        h = F.leaky_relu(self.fc(h), self.cfg.slope)
        return self.out(h)

    def forward(self, gray: torch.Tensor) -> torch.Tensor:
        """Class probabilities (N, 2), softmax over [DSLR/real, enhanced/fake], of (N, 1, patch, patch) gray input."""
        return torch.softmax(self.logits(gray), dim=1)


__all__ = ["Discriminator", "DiscriminatorConfig", "to_gray", "tf_same_padding"]
