"""``dpedkit train DATA -o RUN_DIR``: the DPED recipe or a baseline, with live losses and resumable runs."""

from __future__ import annotations

import json
import os

import click
from dpedkit_cli.render import console, handle_errors, print_json, progress, table

from dpedkit.train_config import DATA_MODES, LOSS_PRESETS, MODELS


def _arch(pairs: tuple[str, ...]) -> dict | None:
    """``("channels=16", "blocks=1")`` -> ``{"channels": 16, "blocks": 1}`` (values parsed as JSON)."""
    out = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--arch")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out or None


@click.command(name="train")
@click.argument("data", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--out", "run_dir", required=True, type=click.Path(file_okay=False), help="Run folder.")
@click.option("--model", type=click.Choice(MODELS), default="dped", show_default=True)
@click.option("--iters", type=click.IntRange(min=0), default=20000, show_default=True)
@click.option("--batch", type=click.IntRange(min=1), default=50, show_default=True, help="Pairs per batch per process.")
@click.option("--lr", type=float, default=5e-4, show_default=True)
@click.option("--loss-preset", type=click.Choice(LOSS_PRESETS), default="code", show_default=True)
@click.option("--vgg", default=None, help="VGG-19 weights (.mat or torchvision .pth), or 'random' for smoke tests.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N.")
@click.option("--amp", is_flag=True, help="bfloat16 autocast.")
@click.option("--eval-every", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--init", "init", default=None, help="Start from this model (checkpoint or official TF prefix).")
@click.option("--resume", is_flag=True, help="Continue the run in RUN_DIR exactly where it stopped.")
@click.option("--phone", default=None, help="Phone folder of an official DPED tree (iphone, blackberry, sony).")
@click.option("--data-mode", type=click.Choice(DATA_MODES), default="auto", show_default=True)
@click.option("--workers", type=click.IntRange(min=0), default=2, show_default=True, help="DataLoader workers.")
@click.option("--arch", multiple=True, help="Architecture override KEY=VALUE, e.g. --arch channels=16.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics history as JSON on stdout.")
@handle_errors
def command(data: str, run_dir: str, resume: bool, arch: tuple[str, ...], as_json: bool, **options) -> None:
    """Train an enhancement network on DATA (a dpedkit dataset or an official DPED folder with --phone).

    Writes RUN_DIR/config.json, metrics.jsonl (one row per evaluation), latest.pt / best.pt and samples/.
    Under `torchrun --nproc-per-node G` it trains with DDP (gloo on CPU); rank 0 writes the run.
    """
    from dpedkit.train import TrainConfig, train

    config = TrainConfig(model_config=_arch(arch), **options)
    quiet = as_json or int(os.environ.get("RANK", "0")) != 0
    with progress(f"train {config.model}", config.iters, quiet=quiet) as advance:
        shown = [0, ""]

        def on_progress(step: int, iters: int, losses: dict[str, float]) -> None:
            if losses:
                shown[1] = " ".join(f"{k.removeprefix('g_')} {v:.4g}" for k, v in losses.items())
            advance(step - shown[0], info=shown[1])
            shown[0] = step

        result = train(data, run_dir, config=config, resume=resume, on_progress=on_progress)
    if quiet and not as_json:
        return
    if as_json:
        print_json(
            {"run_dir": result.run_dir, "step": result.step, "best_psnr": result.best_psnr, "history": result.history}
        )
        return
    keys = ["step", "psnr", "ms_ssim", "g_loss", "d_acc", "iters_per_s", "data_wait"]
    rows = [[r.get(k, "") for k in keys] for r in result.history]
    console.print(table(f"{result.run_dir} (best PSNR {result.best_psnr})", keys, rows))
