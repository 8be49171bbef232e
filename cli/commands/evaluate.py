"""``dpedkit evaluate MODEL DATA``: DPED and PIRM protocol scores plus the identity baseline."""

from __future__ import annotations

import click
from dpedkit_cli.options import config_options, resolved_config
from dpedkit_cli.render import console, handle_errors, print_json, progress, table


@click.command(name="evaluate")
@click.argument("model", type=click.Path(exists=False))
@click.argument("data", type=click.Path(exists=True, file_okay=False))
@config_options("evaluate")
@click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON on stdout.")
@handle_errors
def command(model: str, data: str, as_json: bool, **options) -> None:
    """Score MODEL on the test patches of DATA.

    MODEL is a dpedkit checkpoint or an official DPED TensorFlow checkpoint prefix (models/iphone_orig).
    DATA is a dpedkit dataset folder, an official `dped/` folder (with --phone) or `dped/<phone>/`.
    Reports the DPED protocol (batches of 50, pooled MSE, unclipped output, MS-SSIM per batch), the PIRM
    protocol (per patch, output clipped) and mean per-patch SSIM, for the model and the identity baseline.
    Options may come from --config FILE.toml ([evaluate]); flags typed here override it.
    """
    from dpedkit.evaluate import evaluate

    config = resolved_config("evaluate", options)
    with progress("evaluate", None, quiet=as_json) as advance:
        done = [0]

        def on_progress(n: int, total: int) -> None:
            advance(n - done[0], info="patches", total=total)
            done[0] = n

        result = evaluate(model, data, config=config, on_progress=on_progress)
    if as_json:
        print_json(result.to_dict())
        return
    rows = [
        [
            name,
            f"{s.dped_psnr:.2f}",
            f"{s.dped_ms_ssim:.4f}",
            f"{s.pirm_psnr:.2f}",
            f"{s.pirm_ms_ssim:.4f}",
            f"{s.ssim:.4f}",
        ]
        for name, s in (("model", result.model), ("identity", result.identity))
    ]
    cols = ["", "DPED PSNR dB", "DPED MS-SSIM", "PIRM PSNR dB", "PIRM MS-SSIM", "SSIM"]
    console.print(table(f"{result.n_pairs} {config.split} pairs, {result.source} ({result.device})", cols, rows))
