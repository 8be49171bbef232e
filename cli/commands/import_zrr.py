"""``dpedkit import-zrr ZRR_DIR -o OUT``: a Zurich RAW-to-RGB folder as a dpedkit RAW-to-RGB dataset."""

from __future__ import annotations

from typing import Any

import click
from dpedkit_cli.options import FOLDER, import_options
from dpedkit_cli.render import handle_errors, run_transfer


@click.command(name="import-zrr")
@click.argument("zrr_dir", type=FOLDER)
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Dataset folder to write.")
@click.option("--cfa", type=click.Choice(["RGGB", "BGGR", "GRBG", "GBRG"]), default="RGGB", show_default=True,
              help="Bayer pattern of the mosaics (top-left 2 x 2 quad, row by row).")  # fmt: skip
@click.option("--black", type=float, default=0.0, show_default=True, help="Black level of the mosaics.")
@click.option("--white", type=float, default=1020.0, show_default=True, help="White level (ZRR: 4 x 255).")
@import_options
@handle_errors
def command(
    zrr_dir: str, out: str, cfa: str, black: float, white: float, as_json: bool, **options: Any
) -> None:  # fmt: skip
    """Convert ZRR_DIR (`train|test/huawei_raw/<i>.png` 16-bit mosaics, `train|test/canon/<i>.jpg`) into OUT.

    The mosaics are stored as they are (uint16), with the sensor's CFA and levels; the original files' bytes are
    kept beside the shards, so `dpedkit export-zrr` writes the same files back. Train with `--model sid-unet` or
    `dped-raw`. A failed import leaves nothing it created.
    """
    from dpedkit.interop.zrr import import_zrr

    run_transfer(
        "import",
        lambda on_progress: import_zrr(
            zrr_dir,
            out,
            sensor={"cfa": cfa, "black": black, "white": white},
            on_progress=on_progress,
            **options,
        ),
        as_json,
        lambda result: (
            f"[green]{result.out}[/]: {result.pairs.get('train', 0)} train + {result.pairs.get('test', 0)} test RAW "
            f"pairs ({cfa}, levels {black:g}..{white:g}) in {result.shards} shards, {result.full_size} full-resolution "
            "test mosaics"
        ),
    )
