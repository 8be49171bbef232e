"""``dpedkit export-dped DATASET -o DIR --phone NAME``: a dpedkit dataset in the official DPED layout."""

from __future__ import annotations

import click
from dpedkit_cli.options import FOLDER_OR_URL, local_dataset
from dpedkit_cli.render import handle_errors, run_transfer


@click.command(name="export-dped")
@click.argument("dataset", type=FOLDER_OR_URL)
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="The dped/ folder to write into.")
@click.option(
    "--phone",
    default=None,
    help="Phone folder name, e.g. iphone (default: the phone an imported dataset came from; required otherwise).",
)
@click.option("--quality", type=click.IntRange(1, 100), default=95, show_default=True, help="JPEG quality, 1-100.")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty OUT/<phone>.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@handle_errors
def command(dataset: str, out: str, phone: str | None, quality: int, overwrite: bool, as_json: bool) -> None:
    """Write DATASET as OUT/<phone>/training_data/... and test_data/patches/... (pairs by index).

    Patches imported with `dpedkit import-dped` are written back byte for byte; others are encoded as JPEG at
    --quality. A failed export leaves nothing it created.
    """
    from dpedkit.interop.dped import export_dped

    dataset = local_dataset(dataset)
    run_transfer(
        "export",
        lambda on_progress: export_dped(
            dataset, out, phone=phone, quality=quality, overwrite=overwrite, on_progress=on_progress
        ),
        as_json,
        lambda result: (
            f"[green]{result.out}[/]: {result.pairs} pairs ({result.copied_pairs} copied byte for byte, "
            f"{result.encoded_pairs} encoded at quality {quality}), {result.full_size} full-size test images"
        ),
    )
