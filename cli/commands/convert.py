"""``dpedkit convert``: official DPED TF checkpoint (or a dpedkit one) -> dpedkit checkpoint."""

from __future__ import annotations

import click
from dpedkit_cli.render import console, handle_errors, print_json, table


@click.command("convert")
@click.argument("model", type=click.Path())
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="Output checkpoint (.pt).")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@handle_errors
def command(model: str, out: str, overwrite: bool, as_json: bool) -> None:
    """Convert MODEL into a self-describing dpedkit checkpoint, without TensorFlow.

    MODEL is an official DPED TensorFlow checkpoint prefix (e.g. models/dped_orig/iphone_orig, next to
    iphone_orig.index and iphone_orig.data-00000-of-00001) or a dpedkit .pt file. Every command that takes a
    model accepts both forms; converting once makes loading faster and the file self-contained.
    """
    from dpedkit.nn.checkpoint import convert

    res = convert(model, out, overwrite=overwrite)
    if as_json:
        print_json(res.__dict__)
        return
    rows = [["source", f"{res.source} ({res.source_format})"], ["model", res.model],
            ["parameters", f"{res.parameters:,}"], ["config", res.config], ["written", res.out]]  # fmt: skip
    console.print(table("dpedkit convert", ["", ""], rows))
