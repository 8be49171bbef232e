"""``dpedkit export-zrr DATASET -o DIR``: a dpedkit RAW-to-RGB dataset in the Zurich RAW-to-RGB layout."""

from __future__ import annotations

import click
from dpedkit_cli.options import FOLDER_OR_URL, local_dataset
from dpedkit_cli.render import handle_errors, run_transfer


@click.command(name="export-zrr")
@click.argument("dataset", type=FOLDER_OR_URL)
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="The folder to write.")
@click.option("--quality", type=click.IntRange(1, 100), default=95, show_default=True, help="JPEG quality, 1-100.")
@click.option("--overwrite", is_flag=True, help="Replace an earlier export in a non-empty OUT.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@handle_errors
def command(dataset: str, out: str, quality: int, overwrite: bool, as_json: bool) -> None:
    """Write DATASET (import-zrr, or build --mode raw2rgb) as OUT/train|test/huawei_raw|canon/<i>.png|jpg.

    Patches imported with `dpedkit import-zrr` are written back byte for byte; others as 16-bit PNG mosaics at
    ZRR's levels (black 0, white 1020; RGGB sensors only) and JPEG DSLR patches at --quality. A failed export
    leaves nothing it created.
    """
    from dpedkit.interop.zrr import export_zrr

    dataset = local_dataset(dataset)
    run_transfer(
        "export",
        lambda on_progress: export_zrr(dataset, out, quality=quality, overwrite=overwrite, on_progress=on_progress),
        as_json,
        lambda result: (
            f"[green]{result.out}[/]: {result.pairs} pairs ({result.copied_pairs} copied byte for byte, "
            f"{result.encoded_pairs} encoded), {result.full_size} full-resolution test mosaics"
        ),
    )
