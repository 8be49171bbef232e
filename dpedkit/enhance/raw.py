"""A learned ISP on whole RAW files: the phone's Bayer mosaic in, an RGB photo of the sensor's full size out.

The file's mosaic (:func:`dpedkit.io.camera.read_mosaic`, as recorded) is normalised with the file's own black and
white levels and packed into the R, G1, G2, B planes of the network's input convention (:mod:`dpedkit.nn.raw`)
by the file's own CFA, so any Bayer phase reads right. The network then runs

- whole, when the packed image fits the memory budget;
- otherwise in strips of packed rows with results equal to the whole-image run: ``dped-raw`` through
  :func:`dpedkit.enhance.strips.enhance_strips` (exact whole-image instance-norm statistics, spilled to disk), and
  ``sid-unet`` (no normalisation layers) in overlapping strips aligned to its pooling grid, each with
  :attr:`~dpedkit.nn.raw.SIDUNet.reach` rows of real context on both sides.

The output is turned upright by the file's orientation (as LibRaw turns its own output).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from dpedkit.enhance.strips import enhance_strips, halo_strips, plan_strips, strip_bounds
from dpedkit.errors import ConfigError
from dpedkit.io import apply_orientation
from dpedkit.nn.raw import normalise_mosaic, pack_bayer
from dpedkit.nn.registry import MODELS, is_raw_model, trainable

log = logging.getLogger(__name__)


def packed_planes(mosaic: np.ndarray, cfa: str, black: float, white: float) -> np.ndarray:
    """``H x W`` mosaic -> ``H/2 x W/2 x 4`` float32 planes R, G1, G2, B in [0, 1], channels last.

    The networks' own packing: :func:`~dpedkit.nn.raw.normalise_mosaic`, then :func:`~dpedkit.nn.raw.pack_bayer`.
    """
    h, w = mosaic.shape[:2]
    m = torch.from_numpy(mosaic.reshape(h, w)[: h - h % 2, : w - w % 2].astype(np.float32))
    return pack_bayer(normalise_mosaic(m[None], black, white), cfa)[0].permute(1, 2, 0).contiguous().numpy()


def _shuffle(out: np.ndarray) -> np.ndarray:
    """``h x w x 12`` (channel ``c*4 + i*2 + j``) -> ``2h x 2w x 3``: :func:`torch.nn.functional.pixel_shuffle`."""
    h, w = out.shape[:2]
    return out.reshape(h, w, 3, 2, 2).transpose(0, 3, 1, 4, 2).reshape(2 * h, 2 * w, 3)


@torch.inference_mode()
def isp_array(
    net: torch.nn.Module,
    mosaic: np.ndarray,
    meta: dict[str, Any],
    *,
    device: torch.device,
    max_memory: float,
    strip_rows: int | None = None,
    spill_dir: str | None = None,
) -> tuple[np.ndarray, int]:
    """Run a RAW model on a whole mosaic.

    Args:
        net: a ``dped-raw`` or ``sid-unet`` network in eval mode on ``device``.
        mosaic: ``H x W`` uint16 Bayer mosaic as recorded (``H``, ``W`` even; an odd last row/column is dropped).
        meta: the file's :func:`~dpedkit.io.camera.raw_parameters` (``cfa``, ``black_level``, ``white_level``,
            ``orientation``).
        device: where the network runs.
        max_memory: budget in GB.
        strip_rows: force strips of this many output rows.
        spill_dir: folder for the spill files of ``dped-raw`` strips.

    Returns:
        ``(rgb, strips)``: ``H x W x 3`` float32 in [0, 1] (clipped), upright; strips run (0 = whole).
    """
    name = getattr(net, "name", None)
    if name not in MODELS or not is_raw_model(name):
        raise ConfigError(f"{type(net).__name__} is not a RAW model ({', '.join(trainable('raw'))})")
    black, white = float(min(meta["black_level"])), float(meta["white_level"])
    cfg = net.cfg
    if (meta["cfa"], black, white) != (cfg.cfa, float(cfg.black), float(cfg.white)):
        log.warning("the model learned a %s sensor with levels %g..%g; this file's is %s, %g..%g: it is read with "
                    "its own, but colours may differ from the camera it learned", cfg.cfa, cfg.black, cfg.white,
                    meta["cfa"], black, white)  # fmt: skip
    planes = packed_planes(mosaic, meta["cfa"], black, white)
    h, w = planes.shape[:2]
    tiling = getattr(net, "tiling", None)  # the network says how it runs in strips
    unet = tiling == "halo"
    channels = 2 * cfg.channels if unet else cfg.channels  # a U-Net holds skip and merge maps at full width
    if tiling is None:
        rows = 0
    else:
        rows = max(1, strip_rows // 2) if strip_rows else plan_strips(h, w, channels, max_memory=max_memory)
    if unet and rows and not strip_rows:  # the planned rows hold a strip's two halos too
        rows = max(1, rows - 2 * net.halo)
    if rows == 0:
        x = torch.from_numpy(planes).movedim(-1, 0)[None].to(device)
        rgb = net(x)[0].permute(1, 2, 0).float().cpu().numpy()
        strips = 0
    elif unet:
        out, strips = halo_strips(net, planes, rows, device)
        rgb = _shuffle(out)
    else:
        rgb = _shuffle(enhance_strips(net, planes, rows=rows, device=device, spill_dir=spill_dir))
        strips = len(strip_bounds(h, rows))
    np.clip(rgb, 0.0, 1.0, out=rgb)
    return apply_orientation(rgb, int(meta.get("orientation", 1))), strips
