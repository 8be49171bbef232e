"""LPIPS (Zhang et al., CVPR 2018, v0.1, AlexNet): the perceptual distance most enhancement papers report.

Computed from two local weight files, nothing downloaded:

- the AlexNet backbone, torchvision's ImageNet weights ``alexnet-owt-7be5be79.pth`` (keys ``features.N.weight``);
- the linear layers of LPIPS v0.1, ``alex.pth`` of the ``lpips`` package (``lpips/weights/v0.1/alex.pth``; keys
  ``lin0.model.1.weight`` ... ``lin4.model.1.weight``).

The distance of images ``x``, ``y`` in [0, 1]: both scaled to [-1, 1], shifted and scaled per channel (the
package's ``ScalingLayer``), through AlexNet's five ReLU outputs; each feature map normalised to unit length over
channels, the squared difference weighted per channel by the linear layer, averaged over positions, summed over
the five layers. 0 for equal images; lower is better.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dpedkit.errors import ConfigError

BACKBONE_FILE = "alexnet-owt-7be5be79.pth"
LINEAR_FILE = "alex.pth"
WHERE = (
    "LPIPS needs two local files in one folder: torchvision's AlexNet weights alexnet-owt-7be5be79.pth (from "
    "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth) and the LPIPS v0.1 linear layers alex.pth "
    "(in the lpips package: pip download lpips, then lpips/weights/v0.1/alex.pth in the wheel, or "
    "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/alex.pth)"
)
# AlexNet's feature layers: (torchvision index, in, out, kernel, stride, padding); a max-pool follows conv 1 and 2
_CONVS = ((0, 3, 64, 11, 4, 2), (3, 64, 192, 5, 1, 2), (6, 192, 384, 3, 1, 1), (8, 384, 256, 3, 1, 1),
          (10, 256, 256, 3, 1, 1))  # fmt: skip
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


class LPIPS(nn.Module):
    """LPIPS v0.1 (AlexNet): ``forward(x, y)`` gives one distance per image pair of ``(N, 3, H, W)`` in [0, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(i, o, k, s, p) for _, i, o, k, s, p in _CONVS)
        self.lins = nn.ModuleList(nn.Conv2d(o, 1, 1, bias=False) for _, _, o, _, _, _ in _CONVS)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1))
        self.requires_grad_(False).eval()

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five ReLU outputs of AlexNet for images in [0, 1]."""
        h = ((x * 2.0 - 1.0) - self.shift) / self.scale
        out = []
        for k, conv in enumerate(self.convs):
            if k in (1, 2):
                h = F.max_pool2d(h, 3, 2)
            h = F.relu(conv(h))
            out.append(h)
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``(N,)`` distances of ``x`` and ``y``, ``(N, 3, H, W)`` float in [0, 1]."""
        total = torch.zeros(x.shape[0], device=x.device, dtype=torch.float32)
        for fx, fy, lin in zip(self.features(x.float()), self.features(y.float()), self.lins, strict=True):
            nx = fx / (fx.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            ny = fy / (fy.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + lin((nx - ny) ** 2).mean(dim=(1, 2, 3))
        return total


def load_lpips(folder: str | Path, device: torch.device | str = "cpu") -> LPIPS:
    """LPIPS with the weights of ``folder`` (:data:`BACKBONE_FILE` and :data:`LINEAR_FILE`).

    Raises:
        ConfigError: a file is missing or does not hold the expected weights (the message says where to get them).
    """
    folder = Path(folder)
    files = {name: folder / name for name in (BACKBONE_FILE, LINEAR_FILE)}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise ConfigError(f"no LPIPS weights at {', '.join(missing)}. {WHERE}")
    model = LPIPS()
    try:
        backbone = torch.load(files[BACKBONE_FILE], map_location="cpu", weights_only=True)
        linear = torch.load(files[LINEAR_FILE], map_location="cpu", weights_only=True)
        for k, (index, *_rest) in enumerate(_CONVS):
            model.convs[k].weight.copy_(backbone[f"features.{index}.weight"])
            model.convs[k].bias.copy_(backbone[f"features.{index}.bias"])
            model.lins[k].weight.copy_(linear[f"lin{k}.model.1.weight"])
    except (KeyError, RuntimeError, OSError, ValueError) as exc:
        raise ConfigError(f"{folder}: not the LPIPS AlexNet weights ({type(exc).__name__}: {exc}). {WHERE}") from None
    return model.to(device)
