"""``dpedkit import-dped DPED_DIR --phone NAME -o OUT``: an official DPED folder as a dpedkit dataset."""

from __future__ import annotations

from typing import Any

import click
from dpedkit_cli.options import FOLDER, import_options
from dpedkit_cli.render import handle_errors, run_transfer


@click.command(name="import-dped")
@click.argument("dped_dir", type=FOLDER)
@click.option("--phone", default=None, help="Phone folder: iphone, blackberry or sony (optional with one phone).")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Dataset folder to write.")
@import_options
@handle_errors
def command(dped_dir: str, phone: str | None, out: str, as_json: bool, **options: Any) -> None:
    """Convert DPED_DIR (`dped/` with --phone, or `dped/<phone>/`) into a dpedkit dataset in OUT.

    The original JPEG bytes are kept beside the shards, so `dpedkit export-dped` writes the same files back.
    OUT is written beside itself and moved into place at the end: a failed import leaves nothing it created.
    """
    from dpedkit.interop.dped import import_dped

    run_transfer(
        "import",
        lambda on_progress: import_dped(
            dped_dir,
            out,
            phone=phone,
            on_progress=on_progress,
            **options,
        ),
        as_json,
        lambda result: (
            f"[green]{result.out}[/]: {result.pairs.get('train', 0)} train + {result.pairs.get('test', 0)} "
            f"test pairs of {result.phone!r} in {result.shards} shards, {result.full_size} full-size test images"
        ),
    )
