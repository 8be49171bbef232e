"""Score an enhancement model on test patch pairs with the DPED and PIRM-2018 protocols, plus the identity baseline.

Protocols (see ``docs/DPED_REFERENCE.md`` section 6), patches in [0, 1]:

- ``dped``: the paper's Table 2 / training-script protocol.  Output NOT clipped; batches of ``batch`` (50)
  patches in index order; per batch, PSNR from the MSE pooled over the batch and MS-SSIM of the whole batch at
  0..255; both averaged over batches.  The original script drops a last partial batch; here it is kept as a
  smaller batch (identical results when the count is a multiple of ``batch``, and no empty result below it).
- ``pirm``: output clipped to [0, 1]; PSNR and MS-SSIM per patch, averaged over patches.
- ``ssim``: mean per-patch SSIM (Gaussian window), output clipped.
- ``lpips`` (with local weights, :mod:`dpedkit.nn.lpips`): mean per-patch LPIPS v0.1 (AlexNet), output clipped.

The same numbers are computed for the identity "model" (phone patch as is), the baseline to beat.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dpedkit.config import EvalConfig
from dpedkit.dataset.source import open_source
from dpedkit.errors import InputError
from dpedkit.nn.device import resolve_device, to_float_chw
from dpedkit.nn.metrics import ms_ssim, psnr, ssim

log = logging.getLogger(__name__)

Model = torch.nn.Module | str | Path


@dataclass(frozen=True)
class Scores:
    """Scores of one model (or of the identity baseline); PSNR in dB, SSIMs in [0, 1]."""

    dped_psnr: float
    dped_ms_ssim: float
    pirm_psnr: float
    pirm_ms_ssim: float
    ssim: float
    lpips: float | None = None

    def to_dict(self) -> dict:
        """``{"dped": {"psnr", "ms_ssim"}, "pirm": {"psnr", "ms_ssim"}, "ssim"}`` (+ ``"lpips"`` when measured)."""
        out = {
            "dped": {"psnr": self.dped_psnr, "ms_ssim": self.dped_ms_ssim},
            "pirm": {"psnr": self.pirm_psnr, "ms_ssim": self.pirm_ms_ssim},
            "ssim": self.ssim,
        }
        return out if self.lpips is None else out | {"lpips": self.lpips}


@dataclass(frozen=True)
class EvalResult:
    """What :func:`evaluate` returns: the model's scores, the identity baseline's, and where they came from."""

    n_pairs: int
    model: Scores
    identity: Scores
    source: str
    device: str
    config: EvalConfig | None = None
    baseline: str = "identity"  # what ``identity`` scored: the phone patches, "libraw" or "demosaic" (RAW datasets)

    def to_dict(self) -> dict:
        """``{"n_pairs", "dped", "pirm", "ssim", "identity": {...}, "baseline", "config"}`` (the ``--json`` output)."""
        out = {"n_pairs": self.n_pairs, **self.model.to_dict(), "identity": self.identity.to_dict()}
        return out | {"baseline": self.baseline, "config": None if self.config is None else self.config.to_dict()}


def load_test_pairs(data: str | Path, *, phone: str | None = None, split: str = "test") -> tuple[np.ndarray, ...]:
    """``(phone, dslr)`` patch pairs of a split of any source (:func:`dpedkit.dataset.source.open_source`).

    Args:
        data: dataset folder, ``.../dped`` (with ``phone``) or ``.../dped/<phone>``.
        phone: phone of an official DPED tree.
        split: ``"test"`` or ``"train"``.

    Returns:
        ``(phone, dslr)``: ``N x P x P x C`` arrays as stored, paired by row, ``N >= 1``.

    Raises:
        InputError: ``data`` is neither kind of folder, its files are unreadable, or ``split`` holds no pairs.
        ShardError: a damaged dpedkit dataset.
    """
    return open_source(data, phone=phone, parts=[split]).arrays(split)


def _load_model(model: Model, device: torch.device, *, raw: bool = False) -> torch.nn.Module:
    """The network of ``model`` in eval mode; an enhancer, or with ``raw`` a RAW model (raw2rgb data)."""
    if isinstance(model, torch.nn.Module):
        return model.to(device).eval()
    from dpedkit.nn.checkpoint import load_model
    from dpedkit.nn.registry import trainable

    return load_model(model, device=device, expect=trainable("raw" if raw else "rgb"))


class _Accumulator:
    """Collects per-batch (DPED) and per-patch (PIRM, SSIM) values for one model."""

    def __init__(self, lpips: torch.nn.Module | None = None) -> None:
        self.lpips_net, self.lpips = lpips, []
        self.dped_psnr: list[torch.Tensor] = []
        self.dped_ms: list[torch.Tensor] = []
        self.pirm_psnr: list[torch.Tensor] = []
        self.pirm_ms: list[torch.Tensor] = []
        self.ssim: list[torch.Tensor] = []

    def add(self, out: torch.Tensor, target: torch.Tensor) -> None:
        """``out`` (unclipped) and ``target`` are one batch, (B, 3, H, W) float in [0, 1]."""
        self.dped_psnr.append(psnr(out, target, pooled=True))
        self.dped_ms.append(ms_ssim(out * 255.0, target * 255.0, data_range=255.0, pooled=True))
        clipped = out.clamp(0.0, 1.0)
        self.pirm_psnr.append(psnr(clipped, target))
        self.pirm_ms.append(ms_ssim(clipped * 255.0, target * 255.0, data_range=255.0))
        self.ssim.append(ssim(clipped, target))
        if self.lpips_net is not None:
            self.lpips.append(self.lpips_net(clipped, target))

    def scores(self) -> Scores:
        def mean(values: list[torch.Tensor]) -> float:
            return float(torch.cat([v.reshape(-1) for v in values]).mean())

        return Scores(mean(self.dped_psnr), mean(self.dped_ms), mean(self.pirm_psnr), mean(self.pirm_ms),
                      mean(self.ssim), mean(self.lpips) if self.lpips else None)  # fmt: skip


def evaluate_arrays(
    net: Callable[[torch.Tensor], torch.Tensor],
    phone: np.ndarray,
    dslr: np.ndarray,
    *,
    batch: int = EvalConfig.batch,
    device: torch.device | str = "cpu",
    on_progress: Callable[[int, int], None] | None = None,
    lpips: torch.nn.Module | None = None,
    baseline: np.ndarray | None = None,
) -> tuple[Scores, Scores]:
    """Score ``net`` and the identity on in-memory pairs.

    Args:
        net: maps (B, 3, H, W) float [0, 1] to the same shape (unclipped), on ``device``.
        phone: ``N x H x W x 3`` uint8 RGB inputs.
        dslr: ``N x H x W x 3`` uint8 RGB targets.
        batch: patches per batch.
        device: where the network and the metrics run.
        on_progress: called ``(patches_done, total)`` after each batch.
        lpips: an :class:`dpedkit.nn.lpips.LPIPS` on ``device``: the scores get ``lpips`` too.
        baseline: what is scored in place of the identity (``N x H x W x 3``; raw2rgb: LibRaw's processing of the
            RAW phone patches, which the identity cannot be).

    Returns:
        ``(model_scores, identity_scores)``.

    Raises:
        InputError: no pairs (the scores would be undefined), or ``phone`` and ``dslr`` differ in length.
    """
    n = len(phone)
    if n == 0 or len(dslr) != n:
        raise InputError(None, f"need at least one phone/DSLR pair of equal counts; got {n} and {len(dslr)}")
    model_acc, ident_acc = _Accumulator(lpips), _Accumulator(lpips)
    with torch.inference_mode():
        for start in range(0, n, batch):
            x = to_float_chw(phone[start : start + batch], device, memory_format=torch.contiguous_format)
            y = to_float_chw(dslr[start : start + batch], device, memory_format=torch.contiguous_format)
            model_acc.add(net(x).float(), y)
            if baseline is not None:
                x = to_float_chw(baseline[start : start + batch], device, memory_format=torch.contiguous_format)
            ident_acc.add(x, y)
            if on_progress:
                on_progress(min(start + batch, n), n)
    return model_acc.scores(), ident_acc.scores()


def evaluate(
    model: Model,
    data: str | Path,
    *,
    config: EvalConfig = EvalConfig(),
    on_progress: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """Score ``model`` on the test pairs of ``data`` with the DPED and PIRM protocols and the identity baseline.

    Args:
        model: an ``nn.Module`` mapping (B, 3, H, W) [0, 1] to the same shape, a dpedkit checkpoint, or the prefix
            of an official DPED TensorFlow checkpoint (``.../iphone_orig``).
        data: a dpedkit dataset folder (its ``config.split`` split), ``.../dped`` with ``config.phone``, or
            ``.../dped/<phone>``.
        config: options.
        on_progress: called ``(patches_done, total)`` after each batch.

    Returns:
        An :class:`EvalResult`.

    Raises:
        InputError, ShardError, CheckpointError, ConfigError: bad data, checkpoint or options.
    """
    device = resolve_device(config.device)
    source = open_source(data, phone=config.phone, parts=[config.split])
    phone, dslr = source.arrays(config.split)
    baseline = source.baseline(config.split)  # RAW data: scored against its baseline processing, not the identity
    net = _load_model(model, device, raw=source.is_raw)
    lpips = lpips_metric(config, device)
    log.info("evaluating on %d %s pairs from %s (%s)", len(phone), config.split, data, device)
    scores, ident = evaluate_arrays(net, phone, dslr, batch=config.batch, device=device, on_progress=on_progress,
                                    lpips=lpips, baseline=baseline)  # fmt: skip
    name = "identity" if baseline is None else source.baseline_name()
    return EvalResult(len(phone), scores, ident, str(data), str(device), config=config, baseline=name)


def model_path(model: str | Path) -> Path:
    """A model argument as a checkpoint path: a training run folder means its ``best.pt``."""
    path = Path(model)
    if path.is_dir() and (path / "best.pt").is_file():
        return path / "best.pt"
    return path


def lpips_metric(config: EvalConfig, device: torch.device) -> torch.nn.Module | None:
    """The LPIPS metric of ``config.lpips`` (a weights folder) on ``device``, or None."""
    if not config.lpips:
        return None
    from dpedkit.nn.lpips import load_lpips

    return load_lpips(config.lpips, device)
