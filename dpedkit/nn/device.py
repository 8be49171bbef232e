"""Small torch helpers shared by the commands that run networks (evaluate, enhance, train, bench)."""

from __future__ import annotations

import numpy as np
import torch

from dpedkit.errors import ConfigError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """Turn a device name into a :class:`torch.device`.

    Args:
        name: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``, or a
            ``torch.device``.

    Returns:
        The device.

    Raises:
        ConfigError: an unknown name, or a CUDA/MPS device that this machine does not have.
    """
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device must be one of {', '.join(DEVICE_CHOICES)}; got {name!r}") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} asked for, but torch sees no CUDA device (use --device cpu)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"device {name!r} asked for, but MPS is not available")
    elif dev.type != "cpu":
        raise ConfigError(f"device must be one of {', '.join(DEVICE_CHOICES)}; got {name!r}")
    return dev


def to_nchw(images: np.ndarray | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """``N x H x W x 3`` (or ``H x W x 3``) uint8 RGB -> ``(N, 3, H, W)`` float32 in [0, 1] on ``device``."""
    t = torch.as_tensor(images)
    if t.dim() == 3:
        t = t[None]
    return t.to(device).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
