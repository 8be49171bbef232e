"""``dpedkit import-dped DPED_DIR --phone NAME -o OUT``: an official DPED folder as a dpedkit dataset."""

from __future__ import annotations

import click
from dpedkit_cli.render import console, handle_errors, print_json, progress


@click.command(name="import-dped")
@click.argument("dped_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--phone", default=None, help="Phone folder: iphone, blackberry or sony (optional with one phone).")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Dataset folder to write.")
@click.option("--rows-per-shard", type=click.IntRange(min=1), default=10_000, show_default=True)
@click.option("--jobs", type=int, default=1, show_default=True, help="Worker processes (-1: all cores).")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty OUT.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@handle_errors
def command(
    dped_dir: str, phone: str | None, out: str, rows_per_shard: int, jobs: int, overwrite: bool, as_json: bool
) -> None:
    """Convert DPED_DIR (`dped/` with --phone, or `dped/<phone>/`) into a dpedkit dataset in OUT.

    The original JPEG bytes are kept beside the shards, so `dpedkit export-dped` writes the same files back.
    OUT is written beside itself and moved into place at the end: a failed import leaves nothing it created.
    """
    from dpedkit.interop.dped import import_dped

    with progress("import", None, quiet=as_json) as advance:
        result = import_dped(
            dped_dir,
            out,
            phone=phone,
            rows_per_shard=rows_per_shard,
            jobs=jobs,
            overwrite=overwrite,
            on_progress=lambda done, total: advance(1, info="shards", total=total),
        )
    if as_json:
        print_json(result.to_dict())
        return
    console.print(
        f"[green]{result.out}[/]: {result.pairs.get('train', 0)} train + {result.pairs.get('test', 0)} "
        f"test pairs of {result.phone!r} in {result.shards} shards, {result.full_size} full-size test images"
    )
