"""``dpedkit demo``: synthetic pairs -> dataset -> report -> tiny training -> evaluation -> one enhanced photo."""

from __future__ import annotations

from pathlib import Path

import click
from dpedkit_cli.options import field_options
from dpedkit_cli.render import console, handle_errors, table

from dpedkit.config import DemoConfig


@click.command("demo")
@click.option("-o", "--out", "out_dir", default="dpedkit-demo", show_default=True, type=click.Path(path_type=Path))
@field_options(DemoConfig, "pairs", "iters", "device", "seed")
@click.option("--overwrite", is_flag=True, help="Replace an earlier demo in the output folder.")
@handle_errors
def command(out_dir: Path, pairs: int, iters: int, device: str, seed: int, overwrite: bool) -> None:
    """Run the whole pipeline on synthetic pairs (no data, no internet needed) and say where each result is."""
    from dpedkit.demo import run_demo

    config = DemoConfig(pairs=pairs, iters=iters, device=device, seed=seed)

    def stage(name: str, i: int, total: int) -> None:
        console.print(f"[bold][{i + 1}/{total}][/] {name}")

    def step(done: int, iters: int) -> None:  # plain lines: they show when the output is piped too
        if done == iters or done % max(1, iters // 5) == 0:
            console.print(f"      training step {done}/{iters}")

    res = run_demo(out_dir, config=config, overwrite=overwrite, on_stage=stage, on_step=step)
    m, ident = res.scores["model"], res.scores["identity"]
    console.print(
        table(
            f"test split: {res.scores['n_pairs']} patch pairs (DPED protocol)",
            ["", "PSNR dB", "MS-SSIM"],
            [
                [config.model, m["dped_psnr"], m["dped_ms_ssim"]],
                ["identity", ident["dped_psnr"], ident["dped_ms_ssim"]],
            ],
        )
    )
    labels = {
        "raw": "synthetic pairs",
        "dataset": f"dataset ({res.patches.get('train', 0)} train / {res.patches.get('test', 0)} test patches)",
        "report": "inspect report (open in a browser)",
        "init": "its identity start (SRCNN)",
        "run": "training run",
        "model": "model checkpoint",
        "enhanced": "enhanced photo",
        "summary": "all of this as JSON",
    }
    rows = [[labels[k], str(res.paths[k])] for k in labels if k in res.paths]
    console.print(table(f"dpedkit demo finished in {sum(res.seconds.values()):.0f} s", ["result", "where"], rows))
    click.echo(str(res.paths["report"]))
