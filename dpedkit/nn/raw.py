"""Networks that take a camera's RAW mosaic (learned ISPs, the Zurich RAW-to-RGB setting), and their input packing.

Input convention: a Bayer mosaic normalised to [0, 1] (``(raw - black) / (white - black)``, clipped) is packed into
four half-resolution planes in the fixed order R, G1, G2, B, whatever the sensor's CFA (:func:`pack_bayer`), so a
network learns one layout. Both networks output RGB in [0, 1] (not clipped) at the mosaic's full resolution.
Their configs name the sensor (``cfa``, ``black``, ``white``), so they also take the stored mosaic itself:
``(N, 1, H, W)`` holding ``raw / 65535`` (what :func:`dpedkit.nn.device.to_float_chw` makes of a ``uint16`` patch)
is normalised and packed inside ``forward``.

- :class:`RawGenerator` (``dped-raw``): the DPED generator's body on the 4 packed planes, a 12-channel head and a
  x2 pixel shuffle (``(N, 4, h, w) -> (N, 3, 2h, 2w)``).
- :class:`SIDUNet` (``sid-unet``): the U-Net of "Learning to See in the Dark" (Chen et al., CVPR 2018), the
  standard learned-ISP baseline: 4 levels of max-pooling, 32-64-128-256-512 channels, LeakyReLU 0.2, transposed
  convolutions up, skip concatenations, a 1x1 12-channel head and a x2 pixel shuffle. Inputs of any size: padded
  to a multiple of 16 packed pixels (reflect) and cropped back.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dpedkit.config import ConfigMixin
from dpedkit.errors import ConfigError, check_range
from dpedkit.io.camera import BAYER
from dpedkit.nn.generator import Generator, GeneratorConfig, Stages, init_tf_


def bayer_offsets(cfa: str) -> list[tuple[int, int]]:
    """``(dy, dx)`` in the 2 x 2 quad of R, G1, G2, B for a CFA pattern named row by row (``"GRBG"``...).

    G1 is the green on the red row, G2 the one on the blue row.
    """
    if cfa not in BAYER:
        raise ConfigError(f"CFA pattern must be one of {', '.join(BAYER)}; got {cfa!r}")
    pos = {(k // 2, k % 2): c for k, c in enumerate(cfa)}
    red = next(p for p, c in pos.items() if c == "R")
    blue = next(p for p, c in pos.items() if c == "B")
    g1 = (red[0], 1 - red[1])  # the green beside red, on red's row
    g2 = (blue[0], 1 - blue[1])
    return [red, g1, g2, blue]


def pack_bayer(mosaic: torch.Tensor, cfa: str) -> torch.Tensor:
    """``(N, 1, H, W)`` or ``(N, H, W)`` mosaic (``H``, ``W`` even) -> ``(N, 4, H/2, W/2)`` planes R, G1, G2, B."""
    x = mosaic if mosaic.dim() == 4 else mosaic[:, None]
    if x.shape[-2] % 2 or x.shape[-1] % 2:
        raise ConfigError(f"a Bayer mosaic has even height and width; got {tuple(x.shape[-2:])}")
    return torch.cat([x[:, :, dy::2, dx::2] for dy, dx in bayer_offsets(cfa)], dim=1)


def normalise_mosaic(raw: torch.Tensor, black: float, white: float) -> torch.Tensor:
    """Raw sensor values -> [0, 1]: ``(raw - black) / (white - black)``, clipped."""
    if white <= black:
        raise ConfigError(f"white level {white} must exceed black level {black}")
    return ((raw.float() - black) / (white - black)).clamp_(0.0, 1.0)


@dataclass(frozen=True)
class SensorConfig(ConfigMixin):
    """The sensor a RAW network reads: its Bayer ``cfa`` (top-left quad, row by row) and black/white levels."""

    cfa: str = "RGGB"
    black: float = 0.0
    white: float = 65535.0

    def _validate(self) -> None:
        bayer_offsets(self.cfa)
        check_range("black", self.black, 0.0, 65535.0)
        check_range("white", self.white, self.black + 1.0, 65535.0)

    def packed(self, x: torch.Tensor) -> torch.Tensor:
        """The network input of ``x``: packed planes as they are, or a ``raw / 65535`` mosaic normalised and packed."""
        if x.shape[1] == 4:
            return x
        return pack_bayer(normalise_mosaic(x * 65535.0, self.black, self.white), self.cfa)


@dataclass(frozen=True)
class RawGeneratorConfig(GeneratorConfig, SensorConfig):
    """Architecture of ``dped-raw``: the DPED generator's options, and the sensor."""

    def _validate(self) -> None:
        GeneratorConfig._validate(self)
        SensorConfig._validate(self)


class RawGenerator(nn.Module):
    """The DPED generator on a packed Bayer mosaic: ``(N, 4, h, w)`` -> RGB ``(N, 3, 2h, 2w)``."""

    name = "dped-raw"
    config_class = RawGeneratorConfig
    tiling = "stages"  # as the DPED generator, on packed planes (dpedkit.enhance.raw shuffles the strips' output)

    def __init__(self, cfg: RawGeneratorConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or RawGeneratorConfig()
        body = Generator(GeneratorConfig(cfg.channels, cfg.blocks, cfg.eps, cfg.out_scale, cfg.out_offset))
        body.c1 = nn.Conv2d(4, cfg.channels, 9, padding=4)  # 4 packed planes in
        body.c12 = nn.Conv2d(cfg.channels, 12, 9, padding=4)  # 4 sub-pixels x RGB out
        init_tf_(body.c1)
        init_tf_(body.c12)
        self.body = body

    def stages(self) -> Stages:
        """The body's :meth:`~dpedkit.nn.generator.Generator.stages` on packed planes (12 channels out, unshuffled)."""
        return self.body.stages()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Packed planes (N, 4, h, w) in [0, 1] (or a mosaic, see the module docstring) -> RGB (N, 3, 2h, 2w)."""
        return F.pixel_shuffle(self.body(self.cfg.packed(x)), 2)


@dataclass(frozen=True)
class SIDUNetConfig(SensorConfig):
    """Architecture of ``sid-unet``: ``channels`` at the top level, doubled at each of ``levels - 1`` poolings."""

    channels: int = 32
    levels: int = 5

    def _validate(self) -> None:
        super()._validate()
        check_range("channels", self.channels, 1, 1024)
        check_range("levels", self.levels, 1, 8)


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(0.2),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.LeakyReLU(0.2))  # fmt: skip


class SIDUNet(nn.Module):
    """The "Learning to See in the Dark" U-Net: packed planes ``(N, 4, h, w)`` -> RGB ``(N, 3, 2h, 2w)``."""

    name = "sid-unet"
    config_class = SIDUNetConfig
    tiling = "halo"  # overlapping strips: :meth:`pad`, :meth:`trunk`, :attr:`multiple`, :attr:`halo`

    def __init__(self, cfg: SIDUNetConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or SIDUNetConfig()
        widths = [cfg.channels * 2**k for k in range(cfg.levels)]
        self.down = nn.ModuleList(_double_conv(cin, cout) for cin, cout in zip([4, *widths], widths, strict=False))
        self.up = nn.ModuleList(nn.ConvTranspose2d(w, w // 2, 2, stride=2) for w in widths[:0:-1])
        self.merge = nn.ModuleList(_double_conv(w, w // 2) for w in widths[:0:-1])
        self.head = nn.Conv2d(widths[0], 12, 1)

    @property
    def multiple(self) -> int:
        """The packed sides :meth:`trunk` takes are multiples of this (``2 ** (levels - 1)``)."""
        return 2 ** (self.cfg.levels - 1)

    @property
    def reach(self) -> int:
        """Packed pixels of context on each side that reach an output pixel: a bound on the receptive radius.

        Down level ``k`` adds ``2 * 2**k`` (two 3x3 convolutions) and its pooling ``2**(k-1)``; the way up adds as
        much again: below ``4 * 2**levels``. Strips overlapping by this much give the whole-image result.
        """
        return 4 * 2**self.cfg.levels

    @property
    def halo(self) -> int:
        """Packed rows of context a strip reads on each side: :attr:`reach` rounded up to :attr:`multiple`."""
        return -(-self.reach // self.multiple) * self.multiple

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """Packed planes padded at the bottom and right to multiples of :attr:`multiple` (reflected)."""
        h, w = x.shape[-2:]
        m = self.multiple
        pad_h, pad_w = -h % m, -w % m
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect" if min(h, w) > max(pad_h, pad_w) else "replicate")
        return x

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Padded packed planes (N, 4, h, w), sides multiples of :attr:`multiple` -> the head's (N, 12, h, w)."""
        skips = []
        for k, block in enumerate(self.down):
            x = block(x if k == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for up, merge, skip in zip(self.up, self.merge, skips[-2::-1], strict=True):
            x = merge(torch.cat([up(x), skip], dim=1))
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Packed planes (N, 4, h, w) in [0, 1] (or a mosaic) -> RGB (N, 3, 2h, 2w) (not clipped)."""
        x = self.cfg.packed(x)
        h, w = x.shape[-2:]
        return F.pixel_shuffle(self.trunk(self.pad(x)), 2)[..., : 2 * h, : 2 * w]
