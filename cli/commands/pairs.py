"""``dpedkit pairs``: pair phone and DSLR photos by name, capture time or order (over ``dpedkit.dataset.pairs``)."""

from __future__ import annotations

from pathlib import Path

import click
from dpedkit_cli.render import console, handle_errors, print_json, table
from rich.markup import escape

from dpedkit.dataset.pairs import PAIR_BY


@click.command("pairs")
@click.argument("phone_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("dslr_dir", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--out", "out_csv", type=click.Path(dir_okay=False), help="Write the pairs to this CSV.")
@click.option("--by", type=click.Choice(PAIR_BY), default="name", show_default=True,
              help="Same file stem, nearest EXIF capture time, or sorted order.")  # fmt: skip
@click.option("--max-dt", default=2.0, show_default=True, help="Largest capture-time gap in seconds (--by time).")
@click.option("--json", "as_json", is_flag=True, help="Print the pairing as JSON on stdout.")
@handle_errors
def command(phone_dir, dslr_dir, out_csv, by, max_dt, as_json) -> None:
    """Pair the photos of PHONE_DIR with those of DSLR_DIR; list pairs and unpaired files.

    The CSV (name,phone,dslr,dt; paths relative to the two folders) is what `dpedkit build PHONE_DIR
    DSLR_DIR --pairs CSV` reads.
    """
    from dpedkit.dataset.pairs import pair_folders, skipped_message, write_pairs_csv

    pairing = pair_folders(phone_dir, dslr_dir, by=by, max_dt=max_dt)
    if out_csv:
        write_pairs_csv(pairing, out_csv)
    if as_json:
        print_json({"by": by, "pairs": [vars(r) for r in pairing.pairs], "unpaired_phone": pairing.unpaired_phone,
                    "unpaired_dslr": pairing.unpaired_dslr, "no_capture_time": pairing.no_time,
                    "skipped": pairing.skipped})  # fmt: skip
        return

    def name(path: str) -> str:
        return escape(Path(path).name)

    rows = [[escape(r.name), name(r.phone), name(r.dslr), "" if r.dt is None else f"{r.dt:+.3f}"]
            for r in pairing.pairs]  # fmt: skip
    rows += [["[yellow]unpaired[/]", name(p), "", ""] for p in pairing.unpaired_phone]
    rows += [["[yellow]unpaired[/]", "", name(p), ""] for p in pairing.unpaired_dslr]
    title = f"{len(pairing.pairs)} pairs by {by}"
    console.print(table(title, ["pair", "phone", "dslr", "dt (s)"], rows))
    summary = f"unpaired: {len(pairing.unpaired_phone)} phone, {len(pairing.unpaired_dslr)} DSLR"
    if pairing.no_time:
        summary += f"; {len(pairing.no_time)} without EXIF capture time"
    console.print(escape(summary + (f"; wrote {out_csv}" if out_csv else "")))
    if pairing.skipped:
        console.print(f"[bold yellow]warning:[/] {escape(skipped_message(pairing.skipped))}")
