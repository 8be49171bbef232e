"""``dpedkit bench train``: iterations/s, patches/s and data-wait fraction of the DPED recipe."""

from __future__ import annotations

import click
from dpedkit_cli.render import console, handle_errors, print_json, table


@click.command(name="train")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N.")
@click.option("--batch", type=click.IntRange(min=1), default=None, help="Default: 50 on CUDA, 4 on CPU.")
@click.option("--iters", type=click.IntRange(min=2), default=None, help="Per path, incl. warm-up (30 GPU / 6 CPU).")
@click.option("--workers", type=click.IntRange(min=0), default=2, show_default=True, help="DataLoader workers.")
@click.option("--amp", is_flag=True, help="bfloat16 autocast.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON on stdout.")
@handle_errors
def command(device: str, batch: int | None, iters: int | None, workers: int, amp: bool, as_json: bool) -> None:
    """Iterations/s, patches/s and data-wait fraction of the DPED recipe (G step + D step, VGG content loss).

    Both data paths side by side: uint8 patches in device memory, and a DataLoader with worker processes. The
    VGG-19 of the content loss has random weights (the speed is the same as with the real ones; its warning
    says so): no 510 MB download is needed to measure.
    """
    from dpedkit.bench.train import bench_train

    with console.status("benchmarking training..."):
        out = bench_train(device=device, batch=batch, iters=iters, workers=workers, amp=amp)
    if as_json:
        print_json(out)
        return
    rows = [
        [
            mode,
            r["iters_per_s"],
            r["patches_per_s"],
            f"{100 * r['data_wait']:.2f} %",
            r["step_s"],
            f"{r['projected_20k_min']:.1f}",
        ]
        for mode in ("memory", "loader")
        for r in [out[mode]]
    ]
    title = f"DPED recipe on {out.get('device_name', out['device'])}, batch {out['batch']}, {out['iters']} timed iters"
    cols = ["data path", "iters/s", "patches/s", "data wait", "s/step", f"20k iters at batch {out['batch']} (min)"]
    console.print(table(title, cols, rows))
