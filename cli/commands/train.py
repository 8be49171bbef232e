"""``dpedkit train DATA -o RUN_DIR``: the DPED recipe or a baseline, with live losses and resumable runs."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import click
from dpedkit_cli.options import (
    FOLDER_OR_URL,
    config_options,
    given_options,
    local_dataset,
    print_config,
    resolved_config,
)
from dpedkit_cli.render import console, handle_errors, print_json, progress, table
from rich.markup import escape

from dpedkit.train.resume import RESUMABLE_CHANGES, option_flag

_RESUME_HELP = (
    "Continue the run in RUN_DIR where it stopped, on the same DATA, with the options saved in its config.json; "
    f"{', '.join(option_flag(k) for k in RESUMABLE_CHANGES)} may be given to change them, other options only to "
    "repeat the saved value. A run with no checkpoint yet starts from step 0."
)


@click.command(name="train")
@click.argument("data", type=FOLDER_OR_URL)
@click.option("-o", "--out", "run_dir", required=True, type=click.Path(file_okay=False), help="Run folder.")
@config_options("train")
@click.option("--resume", is_flag=True, help=_RESUME_HELP)
@click.option("--overwrite", is_flag=True, help="Delete the run in RUN_DIR (checkpoints included) and start again.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics history as JSON on stdout.")
@handle_errors
def command(data: str, run_dir: str, resume: bool, overwrite: bool, as_json: bool, **options) -> None:
    """Train a network on DATA: a dpedkit dataset (folder or s3:// URL), a DPED folder (--phone) or a ZRR folder.

    Writes RUN_DIR/config.json, metrics.jsonl (one row per evaluation; values that are not finite are null),
    latest.pt / best.pt and samples/. A run stopped before its first checkpoint is started again by the same
    command. latest.pt is also written every --save-every (default 10 minutes); Ctrl-C (SIGINT) and SIGTERM save
    at the step reached, exit with status 130 / 143 and print the resume command. TensorBoard event files go to
    RUN_DIR/tensorboard (`tensorboard --logdir RUN_DIR`).
    Under `torchrun --nproc-per-node G` it trains with DDP (gloo on CPU); rank 0 writes the run.
    Options may come from --config FILE.toml ([train]); flags typed here override it.
    """
    from dpedkit.nn.vgg import check_weights
    from dpedkit.train import train
    from dpedkit.train.resume import resume_config

    if resume and overwrite:
        raise click.BadOptionUsage("overwrite", "--resume and --overwrite exclude each other")
    config = None if resume else resolved_config("train", options)  # --print-config: printed before any fetch
    if config is not None and config.needs_vgg:  # train() checks it first too; here before DATA at a URL is fetched
        check_weights(config.vgg)
    local = local_dataset(data)  # DATA at a URL: its local copy (messages keep naming DATA as typed)
    if resume:  # the run's saved options, with what the file and the command line change
        config = resume_config(Path(run_dir), local, given_options("train", options))
        if options.get("print_config"):
            print_config("train", config, click.get_current_context())
    quiet = as_json or _rank() != 0
    try:
        with progress(f"train {config.model}", config.iters, quiet=quiet) as advance:
            shown = [0, "", None]  # step shown, losses shown, the step their means start after

            def on_progress(step: int, iters: int, losses: dict[str, float]) -> None:
                since = step - 1 if shown[2] is None else shown[2]  # the first step here: 0 or the resumed one
                if losses:  # means since the last evaluation: the numbers its table row and log line show
                    terms = " ".join(f"{k.removeprefix('g_')} {v:.4g}" for k, v in losses.items())
                    shown[1] = f"mean since step {since}: {terms}"
                advance(step - shown[0], info=shown[1])
                shown[0], shown[2] = step, step if step % config.eval_every == 0 else since

            result = train(local, run_dir, config=config, resume=resume, overwrite=overwrite, on_progress=on_progress)
    except KeyboardInterrupt:
        if _rank() == 0:
            console.print(_interrupted(data, run_dir))
        sys.exit(130)
    except Exception as exc:
        from dpedkit.train import TrainingStopped

        if not isinstance(exc, TrainingStopped):
            raise
        if _rank() == 0:
            console.print(_interrupted(data, run_dir, exc.signum))
        sys.exit(exc.exit_code)
    if quiet and not as_json:
        return
    if as_json:
        print_json({"run_dir": result.run_dir, "step": result.step, "iters": result.iters,
                    "already_finished": result.already_finished, "best_psnr": result.best_psnr,
                    "history": result.history})  # fmt: skip
        return
    if result.already_finished:
        console.print(_already_finished(data, result))
    # ema_psnr: the moving average's, which best.pt holds when --ema is on (the title's "best")
    keys = ["step", "psnr", "ema_psnr", "ms_ssim", "g_loss", "d_acc", "iters_per_s", "data_wait"]
    keys = [k for k in keys if any(r.get(k) is not None for r in result.history)]  # no empty column (d_acc)
    rows = [["" if r.get(k) is None else r[k] for k in keys] for r in result.history]
    if rows:
        console.print(table(f"{result.run_dir}: {_best_vs_identity(result)}", keys, rows))
    if result.best_psnr is not None:
        run = shlex.quote(result.run_dir)
        console.print(f"next: [bold]dpedkit evaluate {run}/best.pt {shlex.quote(data)}[/], or "
                      f"[bold]dpedkit compare {run} OTHER_RUN {shlex.quote(data)}[/]")  # fmt: skip


def _already_finished(data: str, result) -> str:
    """A resumed run that had reached its ``--iters``: nothing was trained; the command that trains it further."""
    run = shlex.quote(result.run_dir)
    more = f"dpedkit train {shlex.quote(data)} -o {run} --resume --iters {2 * max(result.step, result.iters, 1)}"
    where = (f"at step {result.step} of {result.iters} iterations" if result.step == result.iters
             else f"at step {result.step}, past the {result.iters} iterations asked for")  # fmt: skip
    return escape(f"{result.run_dir} already finished {where}: nothing was trained or overwritten. "
                  f"To train it further, raise --iters: {more}")  # fmt: skip


def _best_vs_identity(result) -> str:
    """``best PSNR 16.17 dB vs identity 12.39 dB`` (rounded), as far as the run knows them."""
    identity = next((r["identity_psnr"] for r in result.history if r.get("identity_psnr") is not None), None)
    best = "no best PSNR yet" if result.best_psnr is None else f"best PSNR {result.best_psnr:.2f} dB"
    return best if identity is None else f"{best} vs identity {identity:.2f} dB (the phone patches as they are)"


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _interrupted(data: str, run_dir: str, signum: int | None = None) -> str:
    """What Ctrl-C or SIGTERM leaves behind and the command that goes on from there."""
    import signal

    from dpedkit.train import saved_step

    how = "interrupted" if signum is None else f"stopped by {signal.Signals(signum).name}"
    step = saved_step(run_dir)
    if step is None:
        return f"{how} before the first checkpoint: run the same command again to start {run_dir} over"
    return (f"{how}: {run_dir} is saved at step {step} (latest.pt); continue it with: "
            f"dpedkit train {shlex.quote(data)} -o {shlex.quote(run_dir)} --resume")  # fmt: skip
