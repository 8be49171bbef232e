"""Several models on the same test pairs with the same protocols: the paper's Table 2 for your data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from dpedkit.config import EvalConfig
from dpedkit.dataset.source import open_source
from dpedkit.evaluate.patches import (
    Model,
    Scores,
    _load_model,
    evaluate_arrays,
    lpips_metric,
    model_path,
)
from dpedkit.nn.device import resolve_device

COMPARE_COLUMNS = ("model", "dped_psnr", "dped_ms_ssim", "pirm_psnr", "pirm_ms_ssim", "ssim")


@dataclass(frozen=True)
class Comparison:
    """What :func:`compare` returns: one row per model on the same pairs, the identity row last."""

    n_pairs: int
    rows: list[dict[str, float | str]]
    source: str
    device: str
    config: EvalConfig | None = None

    def to_dict(self) -> dict:
        """``{"n_pairs", "source", "device", "rows": [...], "config"}`` (the ``--json`` output)."""
        return {"n_pairs": self.n_pairs, "source": self.source, "device": self.device, "rows": self.rows,
                "config": None if self.config is None else self.config.to_dict()}  # fmt: skip

    def markdown(self) -> str:
        """The table as GitHub Markdown (PSNR to 2 decimals, SSIMs to 4)."""
        extra = "lpips" in self.rows[0]
        head = "| model | DPED PSNR dB | DPED MS-SSIM | PIRM PSNR dB | PIRM MS-SSIM | SSIM |" + (" LPIPS |" * extra)
        lines = [head, "|---|---:|---:|---:|---:|---:|" + ("---:|" * extra)]
        lines += ["| " + " | ".join(row_cells(r)) + " |" for r in self.rows]
        return "\n".join(lines) + "\n"

    def csv(self) -> str:
        """The table as CSV with a header row (full precision)."""
        import csv
        import io

        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        columns = [*COMPARE_COLUMNS, *(["lpips"] if "lpips" in self.rows[0] else [])]
        writer.writerow(columns)
        writer.writerows([r[c] for c in columns] for r in self.rows)
        return buf.getvalue()


def row_cells(row: dict[str, float | str]) -> list[str]:
    """A :class:`Comparison` row as text cells: the name, PSNRs to 2 decimals, SSIMs (and LPIPS) to 4."""
    keys = [c for c in (*COMPARE_COLUMNS[1:], "lpips") if c in row]
    return [str(row["model"])] + [f"{row[c]:.2f}" if "psnr" in c else f"{row[c]:.4f}" for c in keys]


def compare(
    models: list[Model],
    data: str | Path,
    *,
    names: list[str] | None = None,
    config: EvalConfig = EvalConfig(),
    on_model: Callable[[str], None] | None = None,
) -> Comparison:
    """Score several models on the same test pairs with the same protocols: the paper's Table 2 for your data.

    Args:
        models: dpedkit checkpoints, training run folders (their ``best.pt``), official DPED TensorFlow
            checkpoint prefixes or ``nn.Module`` objects.
        data: as for :func:`evaluate`.
        names: the row names (default: each model's file or folder name, or the paths when two share one).
        config: options (split, batch, device, phone).
        on_model: called with a row's name as each model starts.

    Returns:
        A :class:`Comparison`: one row per model in the given order, then ``identity``.

    Raises:
        InputError, ShardError, CheckpointError, ConfigError: as :func:`evaluate`; ConfigError for no model or
        repeated names.
    """
    from dpedkit.errors import ConfigError

    if not models:
        raise ConfigError("compare needs at least one model")
    if names is None:  # file or folder names; the paths as given when two share a name
        names = [type(m).__name__ if isinstance(m, torch.nn.Module) else Path(m).name for m in models]
        if len(set(names)) != len(names):
            names = [str(m) for m in models]
    names = list(names)
    if len(names) != len(models) or len(set(names)) != len(names):
        raise ConfigError(f"compare needs one distinct name per model; got {names}")
    device = resolve_device(config.device)
    source = open_source(data, phone=config.phone, parts=[config.split])
    phone, dslr = source.arrays(config.split)
    nets = [_load_model(m if isinstance(m, torch.nn.Module) else model_path(m), device, raw=source.is_raw)
            for m in models]  # fmt: skip
    baseline = source.baseline(config.split)  # RAW data: RAW models, scored beside the dataset's baseline
    lpips = lpips_metric(config, device)
    rows, identity = [], None
    for name, net in zip(names, nets, strict=True):
        if on_model:
            on_model(name)
        scores, identity = evaluate_arrays(net, phone, dslr, batch=config.batch, device=device, lpips=lpips,
                                           baseline=baseline)  # fmt: skip
        rows.append(scores_row(name, scores))
    rows.append(scores_row("identity" if baseline is None else source.baseline_name(), identity))
    return Comparison(len(phone), rows, str(data), str(device), config)


def scores_row(name: str, s: Scores) -> dict[str, float | str]:
    """A :class:`Comparison` row: ``model`` (the name), the five scores of :data:`COMPARE_COLUMNS` (+ ``lpips``)."""
    row = {"model": name, "dped_psnr": s.dped_psnr, "dped_ms_ssim": s.dped_ms_ssim, "pirm_psnr": s.pirm_psnr,
           "pirm_ms_ssim": s.pirm_ms_ssim, "ssim": s.ssim}  # fmt: skip
    return row if s.lpips is None else row | {"lpips": s.lpips}
