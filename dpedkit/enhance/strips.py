"""Full-resolution enhancement with exact instance-norm statistics, tiled in horizontal strips when memory is short.

The DPED generator is fully convolutional except its 8 instance-norm (IN) layers, whose statistics span the whole
image.  Running a photo tile by tile with per-tile statistics changes the result; here it does not:

- If the whole image fits the memory budget, it goes through the network at once.
- Otherwise the network runs *stage by stage* (a stage ends at an IN input) over full-width strips of rows.
  Each stage streams over all strips, writes its 64-channel output (and the residual stream) to float32 spill
  files on disk, and accumulates the per-channel sum and sum of squares (float64) of the next IN input over the
  whole image.  The next stage then normalises with those exact statistics.  Strips read the real neighbouring
  rows they need (``k // 2`` per ``k x k`` convolution, 1 for the 3x3 convs, 6 for the c10-c12 tail); zero
  padding is added only at the true image top and bottom, exactly as in the whole-image run.  Every convolution
  is computed once per row (apart from a few halo rows of ``c1`` and of the tail), so tiling costs little beyond
  disk traffic: 4 spill files of ``H x W x 64`` float32 (about 3 GB each for 12 MP) in ``spill_dir``.

The result equals whole-image inference up to float32 summation order (far below 8-bit rounding).
The network says how it is cut: a class with ``tiling = "stages"`` hands out its ``stages()``
(:class:`~dpedkit.nn.generator.Stages`: head, residual blocks, tail), and this module reads the halo of every
convolution from the layers themselves. A network without normalisation layers says ``tiling = "halo"`` and runs
in overlapping strips (:func:`halo_strips`: ``sid-unet``); one that says neither runs whole.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from dpedkit.errors import DpedkitError, InputError
from dpedkit.io import owned_tempdir
from dpedkit.nn.device import to_float_chw

if TYPE_CHECKING:
    from dpedkit.nn.generator import Stages

log = logging.getLogger(__name__)

GB = 1e9
# Memory model (bytes), with a safety margin over `dpedkit bench enhance` on CPU: a whole 1280x720 run peaked at
# 1.51 GB RSS (~5.2 hidden-width float32 tensors over the runtime), a 12 MP run in strips under a 2 GB budget at
# 0.88 GB (~5 tensors per strip row).  WHOLE_TENSORS / STRIP_TENSORS are the planning values.
WHOLE_TENSORS = 6.0
STRIP_TENSORS = 14.0
FIXED_OVERHEAD = 0.45 * GB  # torch runtime, model, input and output images are added per image
_PLAN_HALO = 6  # planning margin: rows of context of the DPED tail, c10 (1) + c11 (1) + c12 (4), on each side


# --------------------------------------------------------------------------------------------------- planning


def hidden_channels(model: torch.nn.Module) -> int:
    """Width of the widest hidden activation (64 for the DPED generator), from the conv layers."""
    convs = [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    return max(convs, default=3)


def can_tile(model: torch.nn.Module) -> bool:
    """True for a network that says how it runs in strips (``tiling``: ``"stages"`` or ``"halo"``)."""
    return getattr(model, "tiling", None) in ("stages", "halo")


def plan_strips(height: int, width: int, channels: int, *, max_memory: float, can_tile: bool = True) -> int:
    """Rows per strip for a ``height x width`` image: 0 means "whole image at once".

    Args:
        height: image rows.
        width: image columns.
        channels: hidden width of the network.
        max_memory: budget in GB.
        can_tile: whether the network supports strips (if not, 0 is returned whatever the budget).

    Returns:
        0, or the strip height (at least 8 rows; below that the budget is simply too small and is exceeded).
    """
    image_bytes = height * width * 3 * (1 + 4 + 4 + 1)  # uint8 in, float in, float out, uint8 out
    budget = max_memory * GB - FIXED_OVERHEAD - image_bytes
    row = width * channels * 4
    if not can_tile or WHOLE_TENSORS * row * height <= budget:
        return 0
    return int(max(8, budget // (STRIP_TENSORS * row) - 2 * _PLAN_HALO))


# --------------------------------------------------------------------------------------------------- strips


class _Spill:
    """An ``H x W x C`` float32 array in a temporary file, read and written by row ranges (pread/pwrite).

    ``H x W x C`` is the memory layout of a channels-last (1, C, rows, W) tensor, so strips move without copies
    (channels-last convolutions are also about 1.5x faster on CPU).  Plain file I/O rather than a memory map
    keeps the process's resident memory at the strip size.
    """

    def __init__(self, folder: str, height: int, channels: int, width: int) -> None:
        fd, self.path = tempfile.mkstemp(prefix="dpedkit-spill-", suffix=".f32", dir=folder)
        self.fd, self.shape = fd, (height, width, channels)
        self.row_bytes = channels * width * 4

    def write(self, lo: int, t: torch.Tensor) -> None:
        """Store ``t`` (1, C, rows, W) as rows ``lo..lo+rows-1``."""
        arr = np.ascontiguousarray(t[0].permute(1, 2, 0).float().cpu().numpy())
        view, off = memoryview(arr).cast("B"), lo * self.row_bytes
        while view:
            n = os.pwrite(self.fd, view, off)
            view, off = view[n:], off + n

    def read(self, lo: int, hi: int, device: torch.device) -> torch.Tensor:
        """Rows ``lo..hi-1`` as a channels-last (1, C, hi - lo, W) tensor on ``device``."""
        arr = np.empty((hi - lo, *self.shape[1:]), np.float32)
        view, off = memoryview(arr).cast("B"), lo * self.row_bytes
        while view:
            n = os.preadv(self.fd, [view], off)
            if n <= 0:
                raise DpedkitError(f"{self.path}: short read from the spill file")
            view, off = view[n:], off + n
        return torch.from_numpy(arr[None]).to(device).permute(0, 3, 1, 2)

    def close(self) -> None:
        """Close and delete the file."""
        os.close(self.fd)
        os.unlink(self.path)


def _check_free_space(folder: str, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise InputError(
            folder,
            f"strip mode needs {needed / GB:.1f} GB of temporary spill space here, only {free / GB:.1f} GB free "
            "(set TMPDIR / spill_dir to a bigger disk, or raise the memory budget)",
        )


def _conv_rows(x: torch.Tensor, lo: int, height: int, conv: torch.nn.Conv2d) -> tuple[torch.Tensor, int]:
    """Apply ``conv`` ("same" zero padding in the full image) to rows ``lo..`` of an image of ``height`` rows.

    Zero rows are added only where the strip touches the true image top/bottom; elsewhere the strip's own halo
    rows provide the context, so the output covers fewer rows.  Returns ``(output, its first row)``.
    """
    p = conv.kernel_size[0] // 2
    top = p if lo == 0 else 0
    bottom = p if lo + x.shape[-2] == height else 0
    if top or bottom:
        x = F.pad(x, (0, 0, top, bottom))
    x = x.contiguous(memory_format=torch.channels_last)  # no copy when it already is
    y = F.conv2d(x, conv.weight, conv.bias, padding=(0, conv.kernel_size[1] // 2))
    return y, lo - top + p


def _crop(x: torch.Tensor, lo: int, r0: int, r1: int) -> torch.Tensor:
    """Rows ``r0..r1-1`` of ``x`` whose first row is image row ``lo``."""
    return x[:, :, r0 - lo : r1 - lo]


class _Stats:
    """Streaming per-channel mean and biased variance of one IN layer's input over the whole image.

    Sums of ``x - shift`` and its square, ``shift`` being a per-channel centre taken from the first strip (which
    keeps the variance free of cancellation); each strip is summed with a matrix-vector product in the tensor's
    dtype and accumulated in float64.
    """

    def __init__(self, channels: int, device: torch.device) -> None:
        self.s = torch.zeros(channels, dtype=torch.float64, device=device)
        self.ss = torch.zeros(channels, dtype=torch.float64, device=device)
        self.shift: torch.Tensor | None = None
        self.n = 0

    def add(self, y: torch.Tensor) -> None:
        """Add a (1, C, rows, W) strip (channels-last: the (rows * W, C) matrix below is a view)."""
        x = y[0].permute(1, 2, 0).reshape(-1, y.shape[1])
        if self.shift is None:
            self.shift = x[:4096].mean(0)
        d = x - self.shift
        ones = torch.ones(1, d.shape[0], dtype=d.dtype, device=d.device)
        self.s += (ones @ d)[0].double()
        self.ss += (ones @ d.square_())[0].double()
        self.n += d.shape[0]

    def mean_var(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, biased variance)`` as float32 (C,) tensors over everything added."""
        m = self.s / self.n
        return (self.shift.double() + m).float(), (self.ss / self.n - m * m).clamp_min(0.0).float()


def _norm_relu(norm: torch.nn.Module, y: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """``relu(norm(y, stats))`` of an :class:`~dpedkit.nn.generator.InstanceNorm`, as one fused affine pass."""
    mean, var = stats
    a = norm.scale * torch.rsqrt(var + norm.eps)
    b = norm.shift - mean * a
    return torch.addcmul(b.view(1, -1, 1, 1), y, a.view(1, -1, 1, 1)).relu_()


def strip_bounds(height: int, rows: int) -> list[tuple[int, int]]:
    """The half-open row ranges ``(r0, r1)`` of strips of ``rows`` rows covering ``height`` rows."""
    return [(r0, min(r0 + rows, height)) for r0 in range(0, height, rows)]


def _halo(convs: Iterable[torch.nn.Conv2d]) -> int:
    """Rows of context a chain of stride-1 convolutions reads on each side (``k // 2`` per ``k x k``)."""
    return sum(conv.kernel_size[0] // 2 for conv in convs)


def _tail(s: Stages, x: torch.Tensor, lo: int, height: int) -> tuple[torch.Tensor, int]:
    """The tail convolutions (a ReLU before each but the first) and the output activation, on rows ``lo..``."""
    from dpedkit.nn.generator import output_activation

    h = x
    for i, conv in enumerate(s.tail):
        h, lo = _conv_rows(h.relu_() if i else h, lo, height, conv)
    return output_activation(h, s.out_scale, s.out_offset), lo


def image_rows(rgb: np.ndarray, lo: int, hi: int, device: torch.device) -> torch.Tensor:
    """Rows ``lo:hi`` of an ``H x W x C`` image as a channels-last (1, C, rows, W) float tensor on ``device``."""
    if rgb.dtype == np.float32:  # network input already in [0, 1] (a RAW file's packed Bayer planes)
        x = torch.from_numpy(np.ascontiguousarray(rgb[None, lo:hi])).to(device).movedim(-1, -3)
        return x.contiguous(memory_format=torch.channels_last)
    return to_float_chw(rgb[None, lo:hi], device, memory_format=torch.channels_last)


@torch.inference_mode()
def halo_strips(net: torch.nn.Module, image: np.ndarray, rows: int, device: torch.device) -> tuple[np.ndarray, int]:
    """A ``tiling = "halo"`` network over an ``h x w x C`` float32 input in overlapping strips: its whole output.

    The network says how: ``pad`` (as its whole-image run pads), ``trunk`` (its output before any final
    rearrangement; ``sid-unet``'s is pixel-shuffled by :mod:`dpedkit.enhance.raw`), ``multiple`` (its pooling grid)
    and ``halo`` (rows of context). ``rows``: output rows per strip (rounded down to the multiple, at least one),
    each computed with ``halo`` rows of context above and below.

    Returns:
        ``(out, strips)``: the trunk's ``h x w x C'`` float32 output for the unpadded input, and the strips run.
    """
    h, w = image.shape[:2]
    x = net.pad(torch.from_numpy(np.ascontiguousarray(image)).movedim(-1, 0)[None])[0]  # as the whole run pads
    hp, m, halo = x.shape[-2], net.multiple, net.halo
    out: np.ndarray | None = None
    strips = strip_bounds(hp, max(m, rows // m * m))
    for r0, r1 in strips:
        lo, hi = max(0, r0 - halo), min(hp, r1 + halo)
        y = net.trunk(x[None, :, lo:hi].to(device))[0]
        if out is None:
            out = np.empty((hp, x.shape[-1], y.shape[0]), np.float32)
        out[r0:r1] = y[:, r0 - lo : r1 - lo].permute(1, 2, 0).float().cpu().numpy()
    assert out is not None
    return out[:h, :w], len(strips)


@torch.inference_mode()
def enhance_strips(
    g: torch.nn.Module, rgb: np.ndarray, *, rows: int, device: torch.device, spill_dir: str | None = None
) -> np.ndarray:
    """Run a network that tiles by stages (``g.stages()``) over ``rgb`` in strips with exact whole-image IN statistics.

    Args:
        g: a network with ``stages()`` (:class:`~dpedkit.nn.generator.Generator`, ``dped-raw``), in eval mode on
            ``device``.
        rgb: ``H x W x 3`` uint8 RGB photo, or ``H x W x C`` float32 network input in [0, 1] (packed Bayer planes).
        rows: strip height (output rows per strip).
        device: where the convolutions run; spill files stay on the host.
        spill_dir: folder for the temporary spill files.

    Returns:
        ``H x W x C`` float32 output of the last stage after the output activation (RGB: about [-0.08, 1.08]),
        NOT clipped.
    """
    height, width = rgb.shape[:2]
    s = g.stages()
    c, blocks, head_halo, tail_halo = s.head.out_channels, s.blocks, _halo([s.head]), _halo(s.tail)
    strips = strip_bounds(height, rows)
    out = np.empty((height, width, s.tail[-1].out_channels), np.float32)
    with owned_tempdir("dpedkit-enhance-", dir=spill_dir) as folder:  # a killed run's spill files: swept next time
        tmp = str(folder)
        _check_free_space(tmp, 4 * height * width * c * 4)
        spills = [_Spill(tmp, height, c, width) for _ in range(4)]
        x_old, x_new, y1, y2 = spills
        try:
            if not blocks:  # no norm layers: one purely local pass
                for r0, r1 in strips:
                    lo, hi = max(0, r0 - head_halo - tail_halo), min(height, r1 + head_halo + tail_halo)
                    h, lo = _conv_rows(image_rows(rgb, lo, hi, device), lo, height, s.head)
                    o, lo = _tail(s, F.relu(h), lo, height)
                    out[r0:r1] = _crop(o, lo, r0, r1)[0].permute(1, 2, 0).cpu().numpy()
                return out
            # stage 0: x0 = relu(c1(img)); y1 = conv1 of block 0
            stats, halo = _Stats(c, device), head_halo + _halo([blocks[0].conv1])
            for r0, r1 in strips:
                lo = max(0, r0 - halo)
                h, lo = _conv_rows(image_rows(rgb, lo, min(height, r1 + halo), device), lo, height, s.head)
                h = h.relu_().contiguous(memory_format=torch.channels_last)  # c1 on 3 channels may give NCHW
                y, ylo = _conv_rows(h, lo, height, blocks[0].conv1)
                x_old.write(r0, _crop(h, lo, r0, r1))
                y = _crop(y, ylo, r0, r1)
                stats.add(y)
                y1.write(r0, y)
            for b, block in enumerate(blocks):
                # a = relu(norm1(y1)); y2 = conv2(a)
                ms, stats = stats.mean_var(), _Stats(c, device)
                for r0, r1 in strips:
                    lo, hi = max(0, r0 - _halo([block.conv2])), min(height, r1 + _halo([block.conv2]))
                    a = _norm_relu(block.norm1, y1.read(lo, hi, device), ms)
                    y, ylo = _conv_rows(a, lo, height, block.conv2)
                    y = _crop(y, ylo, r0, r1)
                    stats.add(y)
                    y2.write(r0, y)
                # x_next = relu(norm2(y2)) + x; then next block's conv1, or the tail
                ms, last = stats.mean_var(), b == len(blocks) - 1
                stats = _Stats(c, device)
                halo = tail_halo if last else _halo([blocks[b + 1].conv1])
                for r0, r1 in strips:
                    lo, hi = max(0, r0 - halo), min(height, r1 + halo)
                    x = _norm_relu(block.norm2, y2.read(lo, hi, device), ms).add_(x_old.read(lo, hi, device))
                    if last:
                        o, olo = _tail(s, x, lo, height)
                        out[r0:r1] = _crop(o, olo, r0, r1)[0].permute(1, 2, 0).cpu().numpy()
                        continue
                    y, ylo = _conv_rows(x, lo, height, blocks[b + 1].conv1)
                    x_new.write(r0, _crop(x, lo, r0, r1))
                    y = _crop(y, ylo, r0, r1)
                    stats.add(y)
                    y1.write(r0, y)
                x_old, x_new = x_new, x_old
        finally:
            for spill in spills:
                spill.close()
    return out
