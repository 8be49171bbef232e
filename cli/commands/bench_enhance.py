"""``dpedkit bench enhance``: seconds and peak memory of full-resolution enhancement (12 MP photo)."""

from __future__ import annotations

import click
from dpedkit_cli.render import console, handle_errors, print_json, table


@click.command(name="enhance")
@click.option("--model", default=None, help="Checkpoint or TF prefix (default: random-init DPED generator).")
@click.option("--megapixels", type=click.FloatRange(min=0.1), default=12.0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto (CPU, and GPU if present), cpu, cuda.")
@click.option("--max-memory", type=click.FloatRange(min=0.1), default=2.0, show_default=True, help="GB budget.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON on stdout.")
@handle_errors
def command(model: str | None, megapixels: float, device: str, max_memory: float, as_json: bool) -> None:
    """Enhance a 1280x720 photo whole and in strips, then a 12 MP photo under --max-memory; each in a fresh process."""
    from dpedkit.bench.enhance import bench_enhance

    with console.status("benchmarking full-resolution enhancement (minutes on a CPU)...") as status:
        out = bench_enhance(model=model, megapixels=megapixels, device=device, max_memory=max_memory,
                            on_progress=lambda msg: status.update(msg))  # fmt: skip
    if as_json:
        print_json(out)
        return
    runs = [("1280x720 whole", out["hd_whole"]), ("1280x720 strips", out["hd_strips"])]
    runs += [(f"{r['size']} budget {max_memory:g} GB", r) for r in out["photo"]]
    rows = [
        [
            name,
            r["device"],
            r["strips"] or "whole",
            r["seconds"],
            r["cpu_seconds"],
            r["peak_rss_gb"],
            "-" if r["peak_cuda_gb"] is None else r["peak_cuda_gb"],
        ]
        for name, r in runs
    ]
    cols = ["photo", "device", "strips", "seconds", "CPU seconds", "peak RSS GB", "peak CUDA GB"]
    console.print(table(f"dpedkit enhance, {out['model']}", cols, rows))
    console.print(
        f"tiling cost (strips / whole, 1280x720): {out['hd_tiling_cost']:.2f}x; "
        f"whole vs strips 8-bit outputs: {out['hd_psnr_db']:.1f} dB PSNR"
    )
