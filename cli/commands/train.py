"""``dpedkit train DATA -o RUN_DIR``: the DPED recipe or a baseline, with live losses and resumable runs."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import click
from click.core import ParameterSource
from dpedkit_cli.render import console, handle_errors, print_json, progress, table

from dpedkit.train.config import DATA_MODES, LOSS_PRESETS, MODELS, RESUMABLE_CHANGES, option_flag

_RESUME_HELP = (
    "Continue the run in RUN_DIR where it stopped, on the same DATA, with the options saved in its config.json; "
    f"{', '.join(option_flag(k) for k in RESUMABLE_CHANGES)} may be given to change them, other options only to "
    "repeat the saved value. A run with no checkpoint yet starts from step 0."
)


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
@click.option("--init", "init", default=None, help="Start from this model (checkpoint or official TF prefix); its "
              "architecture is kept (--arch may only repeat it).")  # fmt: skip
@click.option("--resume", is_flag=True, help=_RESUME_HELP)
@click.option("--overwrite", is_flag=True, help="Delete the run in RUN_DIR (checkpoints included) and start again.")
@click.option("--phone", default=None, help="Phone folder of an official DPED tree (iphone, blackberry, sony).")
@click.option("--data-mode", type=click.Choice(DATA_MODES), default="auto", show_default=True)
@click.option("--workers", type=click.IntRange(min=0), default=2, show_default=True, help="DataLoader workers.")
@click.option("--arch", multiple=True, help="Architecture override KEY=VALUE, e.g. --arch channels=16.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics history as JSON on stdout.")
@handle_errors
def command(data: str, run_dir: str, resume: bool, overwrite: bool, arch: tuple[str, ...], as_json: bool,
            **options) -> None:  # fmt: skip
    """Train an enhancement network on DATA (a dpedkit dataset or an official DPED folder with --phone).

    Writes RUN_DIR/config.json, metrics.jsonl (one row per evaluation; values that are not finite are null),
    latest.pt / best.pt and samples/. A run stopped before its first checkpoint is started again by the same
    command. Ctrl-C exits with status 130 and says how to resume.
    Under `torchrun --nproc-per-node G` it trains with DDP (gloo on CPU); rank 0 writes the run.
    """
    from dpedkit.train import TrainConfig, train
    from dpedkit.train.config import resume_config

    if resume and overwrite:
        raise click.BadOptionUsage("overwrite", "--resume and --overwrite exclude each other")
    options["model_config"] = _arch(arch)
    if resume:
        config = resume_config(Path(run_dir), data, _given(click.get_current_context(), options))
    else:
        config = TrainConfig(**options)
    quiet = as_json or _rank() != 0
    try:
        with progress(f"train {config.model}", config.iters, quiet=quiet) as advance:
            shown = [0, ""]

            def on_progress(step: int, iters: int, losses: dict[str, float]) -> None:
                if losses:
                    shown[1] = " ".join(f"{k.removeprefix('g_')} {v:.4g}" for k, v in losses.items())
                advance(step - shown[0], info=shown[1])
                shown[0] = step

            result = train(data, run_dir, config=config, resume=resume, overwrite=overwrite, on_progress=on_progress)
    except KeyboardInterrupt:
        if _rank() == 0:
            console.print(_interrupted(data, run_dir))
        sys.exit(130)
    if quiet and not as_json:
        return
    if as_json:
        print_json(
            {"run_dir": result.run_dir, "step": result.step, "best_psnr": result.best_psnr, "history": result.history}
        )
        return
    keys = ["step", "psnr", "ms_ssim", "g_loss", "d_acc", "iters_per_s", "data_wait"]
    rows = [["" if r.get(k) is None else r[k] for k in keys] for r in result.history]
    console.print(table(f"{result.run_dir} (best PSNR {result.best_psnr})", keys, rows))


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _given(ctx: click.Context, options: dict) -> dict:
    """The options typed on the command line (the others come from the run being resumed)."""
    given = {k: v for k, v in options.items() if k != "model_config" and _typed(ctx, k)}
    if _typed(ctx, "arch"):
        given["model_config"] = options["model_config"]
    return given


def _typed(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) not in (None, ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)


def _interrupted(data: str, run_dir: str) -> str:
    """What Ctrl-C leaves behind and the command that goes on from there."""
    from dpedkit.train import saved_step

    step = saved_step(run_dir)
    if step is None:
        return f"interrupted before the first checkpoint: run the same command again to start {run_dir} over"
    return (f"interrupted: {run_dir} is saved at step {step} (latest.pt); continue it with: "
            f"dpedkit train {shlex.quote(data)} -o {shlex.quote(run_dir)} --resume")  # fmt: skip
