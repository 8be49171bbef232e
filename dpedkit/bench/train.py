"""``dpedkit bench train``: iterations/s, patches/s and the data-wait fraction of the DPED recipe.

Both data paths are measured side by side on the device at hand, on a synthetic dataset written to a temporary
folder (textured "DSLR" patches and degraded "phone" twins, stored as real dpedkit shards): the in-memory path
(uint8 patches in device memory, batches gathered there) and the DataLoader path (worker processes reading the
shards). The content loss uses an untrained VGG-19 (same cost as a trained one). The first iterations are
warm-up and not timed.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from dpedkit.testing import write_synthetic_dataset

log = logging.getLogger(__name__)


def _measure(data: Path, run_dir: Path, config: Any, *, warmup: int) -> dict[str, float]:
    """Time ``config.iters - warmup`` DPED iterations after ``warmup`` untimed ones."""
    import torch

    from dpedkit.train import discriminator_step, generator_step
    from dpedkit.train.data import D_STREAM, G_STREAM
    from dpedkit.train.setup import init_distributed, setup_run

    dist = init_distributed(config.device)
    run = setup_run(data, run_dir, config, dist, start=0)
    sync = torch.cuda.synchronize if run.device.type == "cuda" else (lambda: None)
    wait = 0.0
    for step in range(config.iters):
        if step == warmup:
            sync()
            t0, wait = time.perf_counter(), 0.0
        t = time.perf_counter()
        g_batch, d_batch = run.source.get(step, G_STREAM), run.source.get(step, D_STREAM)
        wait += time.perf_counter() - t
        generator_step(run, g_batch)
        discriminator_step(run, d_batch)
    sync()
    elapsed = time.perf_counter() - t0
    run.source.close()
    timed = config.iters - warmup
    return {
        "iters_per_s": timed / elapsed,
        "patches_per_s": timed * run.patches_per_iter / elapsed,
        "data_wait": wait / elapsed,
        "step_s": elapsed / timed,
    }


def bench_train(
    *,
    device: str = "auto",
    batch: int | None = None,
    iters: int | None = None,
    warmup: int = 2,
    workers: int = 2,
    amp: bool = False,
    patch: int = 100,
    model_config: dict | None = None,
) -> dict[str, Any]:
    """Measure the DPED recipe with both data paths on ``device``.

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        batch: patch pairs per batch (default 50 on CUDA, 4 on CPU where one step of batch 50 takes ~30 s).
        iters: iterations per path including warm-up (default 30 on CUDA, 6 on CPU).
        warmup: untimed first iterations.
        workers: DataLoader workers of the loader path.
        amp: bfloat16 autocast.
        patch: patch side of the synthetic set (100, as DPED).
        model_config: generator architecture overrides (default: the official generator).

    Returns:
        ``{"device", "batch", "iters", "memory": {...}, "loader": {...}}`` with ``iters_per_s``, ``patches_per_s``
        (training pairs consumed: G batch + D batch), ``data_wait`` (fraction of wall time spent waiting for
        batches), ``step_s`` and ``projected_20k_min`` (minutes of the paper's 20,000 iterations at this batch)
        per path.
    """
    from dpedkit.nn.device import resolve_device
    from dpedkit.train.resume import TrainConfig

    dev = resolve_device(device)
    gpu = dev.type == "cuda"
    batch = batch or (50 if gpu else 4)
    iters = max(iters or (30 if gpu else 6), warmup + 1)
    base = TrainConfig(
        model="dped",
        iters=iters,
        batch=batch,
        vgg="random",
        device=str(dev),
        amp=amp,
        eval_every=iters,
        workers=workers,
        samples=0,
    )
    out: dict[str, Any] = {
        "device": str(dev),
        "batch": batch,
        "iters": iters - warmup,
        "workers": workers,
        "patch": patch,
    }
    if gpu:
        import torch

        out["device_name"] = torch.cuda.get_device_name(dev)
    with tempfile.TemporaryDirectory(prefix="dpedkit-bench-train-") as tmp:
        data = write_synthetic_dataset(Path(tmp) / "data", n_train=max(256, 4 * batch), n_test=8, patch=patch)
        for mode in ("memory", "loader"):
            log.info("bench train: %s path, batch %d, %d iterations on %s", mode, batch, iters, dev)
            cfg = replace(base, data_mode=mode)
            out[mode] = _measure(data, Path(tmp) / f"run-{mode}", cfg, warmup=warmup)
            # the paper's run: 20,000 iterations (at the batch measured here; 50 is DPED's and the CUDA default)
            out[mode]["projected_20k_min"] = 20_000 / out[mode]["iters_per_s"] / 60.0
    return out
