"""``dpedkit bench enhance``: seconds and peak memory of full-resolution enhancement of a 12 MP photo.

Every measurement runs in a fresh process (``spawn``), so the peak resident memory it reports (``VmHWM``,
which includes the torch runtime and the model) belongs to that run alone; on CUDA the peak device memory
(``torch.cuda.max_memory_allocated``) is reported too.  Side by side in one run:

- ``hd_whole`` / ``hd_strips``: a 1280x720 photo at once and in strips (exact statistics); their time ratio is
  the cost of tiling, and the PSNR between the two 8-bit outputs shows they agree.
- ``photo``: the 12 MP photo (4000x3000) under the memory budget (strips on a small machine), on the CPU
  and, where one is present, on the GPU.

The network is the official DPED generator when ``model`` is given, else a randomly initialised one (same cost).
The photo is a real picture (scikit-image's astronaut) resized to the target size, with noise.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import resource
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from dpedkit.config import EnhanceConfig
from dpedkit.dataset.parallel import peak_rss_mb

log = logging.getLogger(__name__)

HD_SIZE = (1280, 720)


def _run_one(model: str | None, size: tuple[int, int], device: str, max_memory: float, strip_rows: int | None):
    """Child process: enhance one test photo, return timings, peaks and the 8-bit output (small photos only)."""
    import torch

    from dpedkit.enhance import enhance_array
    from dpedkit.io import to_uint8
    from dpedkit.nn.device import resolve_device
    from dpedkit.testing import sample_photo

    dev = resolve_device(device)
    if model is None:
        from dpedkit.nn.generator import Generator

        torch.manual_seed(0)  # this child process only: the same random network in every run
        net = Generator().to(dev).eval()
    else:
        from dpedkit.nn.checkpoint import load_model

        net = load_model(model, device=dev)
    rgb = sample_photo(*size)
    if dev.type == "cuda":
        enhance_array(net, rgb[:64, :64].copy(), device=dev)  # warm-up (cuDNN, allocator)
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    t0, cpu0 = time.perf_counter(), _cpu_seconds()
    out, strips = enhance_array(net, rgb, device=dev, max_memory=max_memory, strip_rows=strip_rows)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - t0
    return {
        "size": f"{size[0]}x{size[1]}",
        "device": str(dev),
        "strips": strips,
        "seconds": seconds,
        "cpu_seconds": _cpu_seconds() - cpu0,
        "megapixels_per_s": size[0] * size[1] / 1e6 / seconds,
        "peak_rss_gb": peak_rss_mb() / 1e3,
        "peak_cuda_gb": torch.cuda.max_memory_allocated(dev) / 1e9 if dev.type == "cuda" else None,
        "threads": torch.get_num_threads(),
        "output": to_uint8(out) if size[0] * size[1] <= 2_000_000 else None,
    }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _in_fresh_process(*args: Any) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(_run_one, *args).result()


def _psnr_u8(a: np.ndarray, b: np.ndarray) -> float:
    err = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if err == 0 else 10 * math.log10(255.0**2 / err)


def bench_enhance(
    *,
    model: str | None = None,
    megapixels: float = 12.0,
    device: str = "auto",
    max_memory: float = EnhanceConfig.max_memory,
    hd_strip_rows: int = 100,
    hd_size: tuple[int, int] = HD_SIZE,
    on_progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Time full-resolution enhancement; see the module docstring.

    Args:
        model: checkpoint or official TF prefix; ``None`` for a randomly initialised DPED generator.
        megapixels: size of the big photo (4:3; 12 -> 4000x3000).
        device: ``"auto"`` also measures the CPU when a GPU is present; ``"cpu"``/``"cuda"`` only that one.
        max_memory: budget in GB given to :func:`dpedkit.enhance.enhance_array`.
        hd_strip_rows: strip height forced for the 1280x720 tiled run.
        hd_size: ``(width, height)`` of the whole-versus-strips comparison photo.
        on_progress: called with a short message as each of the runs starts ("run 2 of 4: ...").

    Returns:
        ``{"hd_whole", "hd_strips", "hd_tiling_cost", "hd_psnr_db", "photo": [runs], "max_memory_gb", "model"}``;
        each run has ``size, device, strips, seconds, cpu_seconds, megapixels_per_s, peak_rss_gb, peak_cuda_gb,
        threads``.  On a shared machine ``cpu_seconds / threads`` estimates the wall time of an idle one.
    """
    import torch

    from dpedkit.nn.device import resolve_device

    dev = resolve_device(device)
    devices = ["cpu", "cuda"] if device == "auto" and dev.type == "cuda" else [str(dev)]
    width = int(round(math.sqrt(megapixels * 1e6 * 4 / 3)))
    size = (width, int(round(width * 3 / 4)))
    log.info("bench enhance: %s on %s, budget %.1f GB", f"{size[0]}x{size[1]}", devices, max_memory)
    total, hd = 2 + len(devices), f"{hd_size[0]}x{hd_size[1]}"

    def say(k: int, what: str) -> None:
        if on_progress:
            on_progress(f"run {k} of {total}: {what}")

    say(1, f"{hd} whole on {devices[0]}")
    whole = _in_fresh_process(model, hd_size, devices[0], 1000.0, None)
    say(2, f"{hd} in strips of {hd_strip_rows} rows on {devices[0]}")
    strips = _in_fresh_process(model, hd_size, devices[0], max_memory, hd_strip_rows)
    out: dict[str, Any] = {
        "model": model or "random-init DPED generator",
        "max_memory_gb": max_memory,
        "torch": torch.__version__,
        "hd_psnr_db": _psnr_u8(whole.pop("output"), strips.pop("output")),
        "hd_whole": whole,
        "hd_strips": strips,
        "hd_tiling_cost": strips["seconds"] / whole["seconds"],
        "photo": [],
    }
    for k, d in enumerate(devices, start=3):
        say(k, f"{size[0]}x{size[1]} on {d} within {max_memory:g} GB (minutes on a CPU)")
        run = _in_fresh_process(model, size, d, max_memory, None)
        run.pop("output")
        out["photo"].append(run)
    if torch.cuda.is_available():
        out["device_name"] = torch.cuda.get_device_name(0)
    return out
