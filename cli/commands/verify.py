"""``dpedkit verify DATASET``: every shard's sha256, schema and chunks checked (over ``DatasetDir.verify``)."""

from __future__ import annotations

import sys

import click
from dpedkit_cli.options import FOLDER_OR_URL, as_given, local_dataset
from dpedkit_cli.render import console, handle_errors, print_json, progress, table
from rich.markup import escape


@click.command("verify")
@click.argument("dataset", type=FOLDER_OR_URL)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@handle_errors
def command(dataset: str, as_json: bool) -> None:
    """Check DATASET: every shard's sha256 against dataset.json, its schema and row count, every chunk readable.

    Reads every byte once. Exit status: 0 intact, 1 damaged (each problem is listed), 2 not a dataset.
    """
    from dpedkit.dataset.format import DatasetDir

    ds = DatasetDir(local_dataset(dataset))
    n = len(ds.manifest().shards)
    with progress("verify", n, quiet=as_json) as advance:
        result = ds.verify(on_shard=lambda c: advance(info=c.path))
    if as_json:
        print_json(result.to_dict())
    else:
        rows = [
            [s.path, s.rows, "yes" if s.checksummed else "no", "; ".join(s.problems) or "ok"] for s in result.shards
        ]
        bad = [r for r in rows if r[3] != "ok"]
        console.print(table(f"{escape(dataset)}: {len(rows) - len(bad)} of {len(rows)} shards intact",
                            ["shard", "rows", "chunk checksums", "problems"], bad or rows[:20]))  # fmt: skip
        for problem in result.problems:
            console.print(f"[red]{escape(as_given(problem))}[/]")
        console.print("[green]intact[/]" if result.ok else "[red]damaged[/]: rebuild or re-import the listed shards")
    sys.exit(0 if result.ok else 1)
