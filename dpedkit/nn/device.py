"""Small torch helpers shared by the commands that run networks (evaluate, enhance, train, bench)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from dpedkit.errors import ConfigError, ShardError

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


def to_float_chw(
    images: np.ndarray | torch.Tensor,
    device: torch.device | str | None = None,
    *,
    non_blocking: bool = False,
    memory_format: torch.memory_format = torch.preserve_format,
) -> torch.Tensor:
    """``... x H x W x 3`` uint8 (or uint16) RGB -> ``... x 3 x H x W`` float32 in [0, 1]: the one converter.

    Args:
        images: a numpy array or tensor (any device), e.g. ``H x W x 3`` or ``N x H x W x 3``.
        device: where the result lives (None: where ``images`` are). The uint8 data moves first (4x fewer bytes).
        non_blocking: asynchronous host-to-device copy (for pinned ``images``).
        memory_format: layout of the result: by default the strides of the ``H x W x 3`` input carry over (a
            channels-last layout, which training has always used); ``torch.contiguous_format`` for plain NCHW.
    """
    t = torch.from_numpy(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else images
    if device is not None:
        t = t.to(device, non_blocking=non_blocking)
    x = t.movedim(-1, -3).float().div_(65535.0 if t.dtype == torch.uint16 else 255.0)
    return x if memory_format == torch.preserve_format else x.contiguous(memory_format=memory_format)


def to_uint8_hwc(x: torch.Tensor) -> np.ndarray:
    """``N x 3 x H x W`` float in [0, 1] (clipped) -> ``N x H x W x 3`` uint8 numpy, rounded."""
    return x.float().clamp(0, 1).mul(255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def free_memory(device: torch.device) -> int:
    """Bytes free for new tensors on ``device``: the GPU's free memory, or the host's available RAM."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def fits_in_memory(nbytes: int, device: torch.device, *, fraction: float = 0.5) -> bool:
    """Whether ``nbytes`` fit in ``fraction`` of the free memory of ``device`` (GPU memory, or host RAM)."""
    return nbytes <= fraction * free_memory(device)


def check_memory(nbytes: int, device: torch.device, *, what: str) -> None:
    """:class:`ShardError` before allocating ``nbytes`` that ``device`` does not have (a shard claiming a huge size)."""
    free = free_memory(device)
    if nbytes > free:
        raise ShardError(
            f"{what} need {nbytes / 1e9:.1f} GB of memory, {free / 1e9:.1f} GB are free on {device}: "
            "read them in batches (train --data-mode loader) or on a larger machine"
        )
