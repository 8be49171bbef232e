"""Enhance photos at full resolution: whole when they fit the memory budget, else in strips (:mod:`.strips`)."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dpedkit import __version__
from dpedkit.config import EnhanceConfig
from dpedkit.enhance.strips import (
    can_tile,
    enhance_strips,
    halo_strips,
    hidden_channels,
    image_rows,
    plan_strips,
    strip_bounds,
)
from dpedkit.errors import ConfigError, Failure, InputError, check_rgb_uint8
from dpedkit.io import IMAGE_SUFFIXES, check_apart, list_images, read_image, to_uint8, write_image
from dpedkit.nn.device import resolve_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageResult:
    """One enhanced photo: where it went and how it was computed."""

    source: str
    output: str
    width: int
    height: int
    seconds: float
    strips: int  # 0: whole image at once


@dataclass(frozen=True)
class EnhanceResult:
    """What :func:`enhance` returns."""

    images: list[ImageResult]
    failures: list[tuple[str, Failure]]
    device: str


# --------------------------------------------------------------------------------------------------- public API


def enhance_array(
    model: torch.nn.Module,
    rgb: np.ndarray,
    *,
    device: torch.device | str = "cpu",
    max_memory: float = EnhanceConfig.max_memory,
    strip_rows: int | None = None,
    spill_dir: str | None = None,
) -> tuple[np.ndarray, int]:
    """Enhance one photo at full resolution; strips with exact statistics when it does not fit ``max_memory``.

    Args:
        model: the network in eval mode on ``device`` (float [0, 1] NCHW in and out).
        rgb: ``H x W x 3`` uint8 RGB (EXIF orientation already applied).
        device: where the network runs.
        max_memory: budget in GB (see :func:`plan_strips`).
        strip_rows: force strips of this height (models that say how they tile: ``tiling``).
        spill_dir: folder for the spill files of a strip run.

    Returns:
        ``(out, strips)``: ``H x W x 3`` float32 in [0, 1] (clipped) and the number of strips (0 = whole image).

    Raises:
        InputError: ``rgb`` is not an ``H x W x 3`` uint8 array.
    """
    check_rgb_uint8(rgb)
    device = resolve_device(device)
    height, width = rgb.shape[:2]
    tileable, halo = can_tile(model), getattr(model, "tiling", None) == "halo"
    if strip_rows is not None and not tileable:
        raise ConfigError(f"strip_rows: {type(model).__name__} does not say how it runs in strips (no `tiling`), so "
                          "it runs whole")  # fmt: skip
    channels = hidden_channels(model) * (2 if halo else 1)  # a U-Net holds skip and merge maps at once
    rows = strip_rows or plan_strips(height, width, channels, max_memory=max_memory, can_tile=tileable)
    if halo and rows and not strip_rows:  # the planned rows hold a strip's two halos too
        rows = max(1, rows - 2 * model.halo)
    with torch.inference_mode():
        if rows == 0:
            x = image_rows(rgb, 0, height, device)
            out = model(x)[0].permute(1, 2, 0).float().cpu().numpy()
            strips = 0
        elif halo:
            out, strips = halo_strips(model, rgb.astype(np.float32) / np.float32(255.0), rows, device)
        else:
            out = enhance_strips(model, rgb, rows=rows, device=device, spill_dir=spill_dir)
            strips = len(strip_bounds(height, rows))
    np.clip(out, 0.0, 1.0, out=out)
    return out, strips


def collect_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Expand folders (their images, by name) and keep files, in the order given; duplicates removed.

    Raises:
        InputError: a path that does not exist, or a file that is not an image by suffix.
    """
    paths: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            paths.extend(list_images(item))
        elif not item.exists():
            raise InputError(item, "no such file or folder")
        elif item.suffix.lower() not in IMAGE_SUFFIXES:
            raise InputError(item, f"not an image file (suffixes: {', '.join(IMAGE_SUFFIXES)})")
        else:
            paths.append(item)
    return list(dict.fromkeys(paths))


def _output_names(paths: list[Path], out_dir: Path, fmt: str) -> list[Path]:
    """``OUT_DIR/<stem>.<fmt>`` of each input, refused when two collide or one would replace an input photo.

    An output may lie beside its input (``enhance a/1.jpg -o a/``): the inputs are listed before anything is
    written and folders are read without their sub-folders, so no output becomes an input of the run; but no
    output may be an input file, by its path, through a link, as a hard link or a case variant on a case-blind
    disk (compared by device and inode), even with ``--overwrite``.
    """
    outs = [out_dir / f"{p.stem}.{fmt}" for p in paths]
    seen: dict[Path, Path] = {}
    inputs = {p.resolve() for p in paths}
    files = {(st.st_dev, st.st_ino): p for p in paths if (st := p.stat())}
    for src, dst in zip(paths, outs, strict=True):
        if dst in seen:
            raise ConfigError(f"{src} and {seen[dst]} would both be written to {dst}; enhance them separately")
        same = files.get((st.st_dev, st.st_ino)) if (st := _stat(dst)) else None
        if dst.resolve() in inputs or same is not None:
            shown = f" (the same file as {same})" if same is not None and same != dst else ""
            raise ConfigError(f"{dst} is one of the input photos{shown}: choose another output folder or --format")
        seen[dst] = src
    return outs


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except OSError:
        return None


def _read(src: Path, config: EnhanceConfig) -> np.ndarray:
    return read_image(src, max_pixels=config.max_pixels).rgb


def _read_raw(net: torch.nn.Module, src: Path) -> tuple[np.ndarray, dict]:
    """``(mosaic, parameters)`` of the RAW file a RAW model (a learned ISP) reads; InputError for other files."""
    from dpedkit.io.camera import is_raw, read_mosaic

    if not is_raw(src):
        raise InputError(src, f"not a RAW file: {net.name} is a learned ISP, it reads the phone's RAW files (DNG)")
    return read_mosaic(src)


def enhance(
    model: torch.nn.Module | str | Path,
    inputs: Iterable[str | Path],
    out_dir: str | Path,
    *,
    config: EnhanceConfig = EnhanceConfig(),
    on_result: Callable[[ImageResult | Failure], None] | None = None,
    overwrite: bool = False,
) -> EnhanceResult:
    """Enhance photos at full resolution and write ``OUT_DIR/<name>.<format>``.

    Each photo is read with its EXIF orientation applied, run through the network at once or in strips with
    exact whole-image instance-norm statistics (see the module docstring), clipped to [0, 1] and written
    upright (8-bit PNG or JPEG).  A RAW model (``dped-raw``, ``sid-unet``: a learned ISP) reads each RAW file's
    Bayer mosaic instead and writes RGB of the sensor's full size (:mod:`dpedkit.enhance.raw`). An unreadable
    photo (for a RAW model: one that is not a RAW file) is recorded as a failure and skipped.

    Args:
        model: an ``nn.Module``, a dpedkit checkpoint, or an official DPED TF checkpoint prefix.
        inputs: image files and/or folders of images.
        out_dir: output folder (created).
        config: options.
        on_result: called after each photo with its :class:`ImageResult` or :class:`Failure`.
        overwrite: replace output files that exist already (without it they are refused before any work).

    Returns:
        An :class:`EnhanceResult`.

    Raises:
        InputError: a missing input path, no images at all, or an output file that exists (without ``overwrite``).
        ConfigError: two inputs with the same name; bad options.
        CheckpointError: the model cannot be loaded.
    """
    device = resolve_device(config.device)
    inputs = list(inputs)
    paths = collect_inputs(inputs)
    if not paths:
        raise InputError(None, "no images to enhance")
    out_dir = Path(out_dir)
    check_apart(out_dir, [p for p in inputs if Path(p).is_dir()], what="output folder")
    outs = _output_names(paths, out_dir, config.format)
    existing = [dst for dst in outs if dst.exists() or dst.is_symlink()]
    if existing and not overwrite:
        raise InputError(existing[0], f"exists ({len(existing)} of the {len(outs)} output files do); nothing was "
                         "written: use --overwrite to replace them, or another -o")  # fmt: skip
    from dpedkit.nn.registry import is_raw_model, trainable

    if isinstance(model, torch.nn.Module):
        net = model.to(device).eval()
    else:
        from dpedkit.nn.checkpoint import load_model

        net = load_model(model, device=device, expect=trainable())
    isp = is_raw_model(getattr(net, "name", ""))  # a learned ISP: reads the RAW file's mosaic
    source = type(model).__name__ if isinstance(model, torch.nn.Module) else str(model)
    provenance = f"dpedkit {__version__} enhance, model {source}, config {json.dumps(config.to_dict())}"
    options = {"device": device, "max_memory": config.max_memory, "strip_rows": config.strip_rows,
               "spill_dir": config.spill_dir}  # fmt: skip
    results, failures = [], []
    for src, dst in zip(paths, outs, strict=True):
        t0 = time.perf_counter()
        try:  # reading only: a failure while processing is not the photo's fault and stops the run
            image = _read_raw(net, src) if isp else _read(src, config)
        except InputError as exc:
            failure = Failure("unreadable", str(exc))
            failures.append((str(src), failure))
            log.warning("skipping %s", failure)
            if on_result:
                on_result(failure)
            continue
        if isp:
            from dpedkit.enhance.raw import isp_array

            out, strips = isp_array(net, *image, **options)
        else:
            out, strips = enhance_array(net, image, **options)
        write_image(dst, to_uint8(out), quality=config.quality, comment=provenance)
        res = ImageResult(str(src), str(dst), out.shape[1], out.shape[0], time.perf_counter() - t0, strips)
        log.debug("%s -> %s in %.1f s (%s)", src, dst, res.seconds, f"{strips} strips" if strips else "whole")
        results.append(res)
        if on_result:
            on_result(res)
    return EnhanceResult(results, failures, str(device))
