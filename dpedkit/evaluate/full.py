"""Full-image evaluation (``dpedkit evaluate MODEL DATA --full``), strict and alignment-tolerant.

The model runs on each whole phone image of a dataset's ``test_full/`` pairs and is scored against the aligned
DSLR image, strictly and tolerant of what alignment leaves.

Every image is enhanced as ``dpedkit enhance`` does it (exact whole-image statistics, strips when it does not fit
``max_memory``). Per pair, for the model's output and for the identity (the phone image as it is):

- **strict**: PSNR, SSIM (Gaussian 11 x 11) and MS-SSIM of the clipped image against the DSLR image, every pixel.
- **tolerant** (after BurstSR's evaluation, Bhat et al. 2021): phone and DSLR are never aligned perfectly, so
  1. the residual global shift of the pair (phase correlation of the phone and DSLR luma refined by ECC,
     sub-pixel, at most ``max_shift`` px) is removed from the image scored (bilinear resampling);
  2. a validity mask drops the border the shift uncovers and the pixels where the *pair* still disagrees after
     the shift and a least-squares colour map phone -> DSLR (parallax, moving objects, occlusions): luma error
     above ``median + 5 x 1.4826 MAD`` (at least 0.02); the mask belongs to the pair, the same for every model;
  3. PSNR and SSIM over the valid pixels (SSIM windows centred on them).
- **tolerant + colour**: as tolerant, after a 3 x 4 affine colour map image -> DSLR fitted by least squares on the
  valid pixels (BurstSR's colour correction). It forgives colour errors too: it ranks detail and structure, not the
  colour rendition that enhancement is about; read it beside the other two.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dpedkit.config import EvalConfig
from dpedkit.dataset.source import open_source
from dpedkit.errors import ConfigError, InputError
from dpedkit.nn.device import resolve_device
from dpedkit.nn.metrics import ms_ssim, psnr, ssim, ssim_map

log = logging.getLogger(__name__)

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
_WIN = 11  # the SSIM window


@dataclass(frozen=True)
class FullResult:
    """What :func:`evaluate_full` returns: per-image rows and their means for the model and the identity."""

    n_images: int
    rows: list[dict[str, Any]]
    model: dict[str, float]
    identity: dict[str, float]
    source: str
    device: str
    config: EvalConfig | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{"n_images", "model", "identity", "images": [...], "config"}`` (the ``--json`` output)."""
        return {"n_images": self.n_images, "model": self.model, "identity": self.identity, "images": self.rows,
                "source": self.source, "device": self.device,
                "config": None if self.config is None else self.config.to_dict()}  # fmt: skip


def evaluate_full(
    model: Any,
    data: str | Path,
    *,
    config: EvalConfig = EvalConfig(),
    on_image: Callable[[int, int], None] | None = None,
) -> FullResult:
    """Score ``model`` on the whole test images of a dpedkit dataset (``test_full/``), strict and tolerant.

    Args:
        model: as for :func:`dpedkit.evaluate.evaluate`.
        data: a dpedkit dataset folder built with ``keep_test_full`` (the default).
        config: options (``device``, ``max_shift``, ``max_memory``).
        on_image: called ``(done, total)`` after each image.

    Returns:
        A :class:`FullResult`; the means are over images.

    Raises:
        InputError: not a dataset, or no full test images. CheckpointError / ConfigError: as ``evaluate``.
    """
    from dpedkit.enhance.photos import enhance_array
    from dpedkit.evaluate.patches import _load_model, model_path
    from dpedkit.io import read_rgb

    source = open_source(data, parts=["test_full"])
    pairs = source.test_full()
    if not pairs:
        raise InputError(data, "holds no full aligned test pairs (a build's test_full/): --full scores those; "
                               "build a dataset with test pairs")  # fmt: skip
    if source.is_raw:
        raise ConfigError(f"{data} is a RAW-to-RGB dataset: its test_full/ holds LibRaw's pictures, not the mosaics a "
                          "learned ISP reads; score it on patches (evaluate without --full), or run `dpedkit enhance "
                          "MODEL photo.dng` on whole RAW files")  # fmt: skip
    device = resolve_device(config.device)
    net = _load_model(model if isinstance(model, torch.nn.Module) else model_path(model), device)
    rows = []
    for k, (phone_path, dslr_path) in enumerate(pairs):
        phone, dslr = read_rgb(phone_path), read_rgb(dslr_path)
        if phone.shape != dslr.shape:
            raise InputError(phone_path, f"phone {phone.shape} and DSLR {dslr.shape} test images differ in size")
        out, _ = enhance_array(net, phone, device=device, max_memory=config.max_memory)
        rows.append({"image": phone_path.stem, **score_pair(out, phone, dslr, max_shift=config.max_shift)})
        if on_image:
            on_image(k + 1, len(pairs))
    keys = [k for k in rows[0]["model"]]
    model_means = {k: float(np.mean([r["model"][k] for r in rows])) for k in keys}
    identity_means = {k: float(np.mean([r["identity"][k] for r in rows])) for k in keys}
    return FullResult(len(rows), rows, model_means, identity_means, str(data), str(device), config)


def score_pair(out: np.ndarray, phone: np.ndarray, dslr: np.ndarray, *, max_shift: float = 3.0) -> dict[str, Any]:
    """Strict and tolerant scores of ``out`` (the model's, ``H x W x 3`` float in [0, 1]) and of the identity.

    Args:
        out: the enhanced phone image, float32 in [0, 1].
        phone: the phone image, ``H x W x 3`` uint8 (the identity; also what the shift and mask come from).
        dslr: the aligned DSLR image, ``H x W x 3`` uint8.
        max_shift: the largest residual shift (px) the tolerant scores remove.

    Returns:
        ``{"shift": [dx, dy], "valid": fraction, "model": scores, "identity": scores}``; scores hold ``psnr``,
        ``ssim``, ``ms_ssim``, ``tolerant_psnr``, ``tolerant_ssim``, ``colour_psnr``, ``colour_ssim``.
    """
    target = dslr.astype(np.float32) / 255.0
    ident = phone.astype(np.float32) / 255.0
    shift = residual_shift(ident, target, max_shift)
    mask = valid_mask(shifted(ident, shift), target, shift)
    return {
        "shift": [round(shift[0], 3), round(shift[1], 3)],
        "valid": float(mask.mean()),
        "model": _scores(out, target, shift, mask),
        "identity": _scores(ident, target, shift, mask),
    }


def residual_shift(image: np.ndarray, target: np.ndarray, max_shift: float) -> tuple[float, float]:
    """``(dx, dy)``: the translation that moves ``image`` onto ``target``; ``(0, 0)`` beyond ``max_shift``.

    Phase correlation of the luma (which ignores brightness and colour gains) finds it to about a pixel (its
    sub-pixel peak is biased: 1.17 px for a 1.5 px shift, measured); ECC (OpenCV's enhanced correlation
    coefficient, translation only) refines it (1.500 px).
    """
    import cv2

    src, dst = _luma(image), _luma(target)
    (dx, dy), _ = cv2.phaseCorrelate(src, dst, cv2.createHanningWindow(src.shape[::-1], cv2.CV_32F))
    warp = np.array([[1, 0, -dx], [0, 1, -dy]], np.float32)  # ECC maps target pixels into the image
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-4)
    try:
        _, warp = cv2.findTransformECC(dst, src, warp, cv2.MOTION_TRANSLATION, criteria, None, 1)
        dx, dy = -float(warp[0, 2]), -float(warp[1, 2])
    except cv2.error:  # ECC did not converge (a flat image): the phase correlation's estimate stands
        pass
    if math.hypot(dx, dy) > max_shift:
        log.debug("residual shift (%.2f, %.2f) px is beyond --max-shift %g: not removed", dx, dy, max_shift)
        return 0.0, 0.0
    return float(dx), float(dy)


def shifted(image: np.ndarray, shift: tuple[float, float]) -> np.ndarray:
    """``image`` moved by ``shift`` px (bilinear; the uncovered border repeats the edge, the mask drops it)."""
    import cv2

    if shift == (0.0, 0.0):
        return image
    m = np.array([[1, 0, shift[0]], [0, 1, shift[1]]], np.float32)
    return cv2.warpAffine(image, m, image.shape[1::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def valid_mask(phone: np.ndarray, target: np.ndarray, shift: tuple[float, float]) -> np.ndarray:
    """Pixels where the (shifted) pair agrees.

    Inside the border the shift uncovers, and not an outlier of the luma error left after a least-squares colour
    map phone -> DSLR.
    """
    h, w = target.shape[:2]
    mask = np.zeros((h, w), bool)
    bx, by = math.ceil(abs(shift[0])) + 1, math.ceil(abs(shift[1])) + 1
    mask[by : h - by, bx : w - bx] = True
    err = np.abs(_luma(colour_mapped(phone, target, mask)) - _luma(target))
    e = err[mask]
    med = float(np.median(e))
    limit = max(0.02, med + 5 * 1.4826 * float(np.median(np.abs(e - med))))
    return mask & (err <= limit)


def colour_mapped(image: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``image`` through the 3 x 4 affine colour map that fits it to ``target`` on ``mask`` (least squares)."""
    x = np.c_[image[mask].astype(np.float64), np.ones(int(mask.sum()))]
    coef, *_ = np.linalg.lstsq(x, target[mask].astype(np.float64), rcond=None)
    flat = image.reshape(-1, 3).astype(np.float64) @ coef[:3] + coef[3]
    return np.clip(flat, 0.0, 1.0).astype(np.float32).reshape(image.shape)


def _scores(image: np.ndarray, target: np.ndarray, shift: tuple[float, float], mask: np.ndarray) -> dict[str, float]:
    x, y = _tensor(image), _tensor(target)
    strict = {"psnr": float(psnr(x, y)), "ssim": float(ssim(x, y, compute_dtype=torch.float32)),
              "ms_ssim": _ms_ssim(x, y)}  # fmt: skip
    moved = shifted(image, shift)
    colour = colour_mapped(moved, target, mask)
    return strict | {
        "tolerant_psnr": _masked_psnr(moved, target, mask),
        "tolerant_ssim": _masked_ssim(moved, target, mask),
        "colour_psnr": _masked_psnr(colour, target, mask),
        "colour_ssim": _masked_ssim(colour, target, mask),
    }


def _ms_ssim(x: torch.Tensor, y: torch.Tensor) -> float:
    """MS-SSIM at 0..255 (as the patch protocols); NaN for images too small for its five scales."""
    if min(x.shape[-2:]) < _WIN * 16:
        return math.nan
    return float(ms_ssim(x * 255.0, y * 255.0, data_range=255.0, compute_dtype=torch.float32))


def _masked_psnr(image: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    err = float(np.mean((image[mask].astype(np.float64) - target[mask]) ** 2))
    return math.inf if err == 0 else 10.0 * math.log10(1.0 / err)


def _masked_ssim(image: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    smap = ssim_map(_tensor(image), _tensor(target), compute_dtype=torch.float32)[0].mean(0).numpy()
    r = _WIN // 2
    centres = mask[r : mask.shape[0] - r, r : mask.shape[1] - r]
    return float(smap[centres].mean())


def _tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]


def _luma(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image.astype(np.float32) @ _LUMA)
