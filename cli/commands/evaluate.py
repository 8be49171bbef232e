"""``dpedkit evaluate MODEL DATA``: DPED and PIRM protocol scores plus the identity baseline."""

from __future__ import annotations

import click
from dpedkit_cli.options import FOLDER_OR_URL, config_options, local_dataset, resolved_config
from dpedkit_cli.render import console, handle_errors, print_json, progress, table


@click.command(name="evaluate")
@click.argument("model", type=click.Path(exists=False))
@click.argument("data", type=FOLDER_OR_URL)
@config_options("evaluate")
@click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON on stdout.")
@handle_errors
def command(model: str, data: str, as_json: bool, **options) -> None:
    """Score MODEL on the test patches of DATA.

    MODEL is a dpedkit checkpoint or an official DPED TensorFlow checkpoint prefix (models/iphone_orig).
    DATA is a dpedkit dataset (a folder or an s3:// URL), an official `dped/` folder (with --phone), `dped/<phone>/`
    or a Zurich RAW-to-RGB folder (read in place).
    Reports the DPED protocol (batches of 50, pooled MSE, unclipped output, MS-SSIM per batch), the PIRM
    protocol (per patch, output clipped) and mean per-patch SSIM, for the model and the identity baseline.
    With --full: the model on each whole test image of a dpedkit dataset (test_full/), PSNR/SSIM/MS-SSIM against
    the aligned DSLR image, strict and alignment-tolerant (residual shift removed, pixels the pair disagrees on
    masked; "+ colour" also fits a colour map), for the model and the identity.
    Options may come from --config FILE.toml ([evaluate]); flags typed here override it.
    """
    from dpedkit.evaluate import evaluate

    config = resolved_config("evaluate", options)
    data = local_dataset(data, parts=["test_full"] if config.full else [config.split])  # a URL: only what is scored
    if config.full:
        return _full(model, data, config, as_json)
    result = _with_progress("evaluate", "patches", as_json, lambda cb: evaluate(model, data, config=config,
                                                                                 on_progress=cb))  # fmt: skip
    if as_json:
        print_json(result.to_dict())
        return
    from dpedkit.evaluate.compare import row_cells, scores_row

    rows = [row_cells(scores_row(name, s)) for name, s in (("model", result.model), (result.baseline, result.identity))]
    cols = [
        "",
        "DPED PSNR dB",
        "DPED MS-SSIM",
        "PIRM PSNR dB",
        "PIRM MS-SSIM",
        "SSIM",
        *(["LPIPS"] * bool(config.lpips)),
    ]
    console.print(table(f"{result.n_pairs} {config.split} pairs, {result.source} ({result.device})", cols, rows))


def _with_progress(title: str, unit: str, quiet: bool, run):  # noqa: ANN001, ANN202 - run(on_progress) -> result
    """``run(on_progress)`` under a progress bar whose total the callback ``(done, total)`` sets."""
    with progress(title, None, quiet=quiet) as advance:
        done = [0]

        def on_progress(n: int, total: int) -> None:
            advance(n - done[0], info=unit, total=total)
            done[0] = n

        return run(on_progress)


def _full(model: str, data: str, config, as_json: bool) -> None:  # noqa: ANN001 - an EvalConfig
    import numpy as np

    from dpedkit.evaluate.full import evaluate_full

    result = _with_progress("evaluate --full", "images", as_json,
                            lambda cb: evaluate_full(model, data, config=config, on_image=cb))  # fmt: skip
    if as_json:
        print_json(result.to_dict())
        return
    labels = {"psnr": "PSNR dB, strict", "tolerant_psnr": "PSNR dB, tolerant",
              "colour_psnr": "PSNR dB, tolerant + colour", "ssim": "SSIM, strict", "tolerant_ssim": "SSIM, tolerant",
              "colour_ssim": "SSIM, tolerant + colour", "ms_ssim": "MS-SSIM, strict"}  # fmt: skip
    rows = [[label, *(f"{s[k]:.2f}" if "psnr" in k else f"{s[k]:.4f}" for s in (result.model, result.identity))]
            for k, label in labels.items()]  # fmt: skip
    title = f"{result.n_images} full test images, {result.source} ({result.device})"
    console.print(table(title, ["", "model", "identity"], rows))
    shifts = [r["shift"] for r in result.rows]
    valid = np.mean([r["valid"] for r in result.rows])
    console.print(f"residual shift removed: up to {max(np.hypot(*s) for s in shifts):.2f} px; "
                  f"pixels kept by the validity mask: {valid:.1%}")  # fmt: skip
