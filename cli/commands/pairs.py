"""``dpedkit pairs``: pair phone and DSLR photos by name, capture time or order (over ``dpedkit.dataset.pairs``)."""

from __future__ import annotations

from pathlib import Path

import click
from dpedkit_cli.options import FOLDER, field_options
from dpedkit_cli.render import console, handle_errors, print_json, table
from rich.markup import escape

from dpedkit.config import PairsConfig


@click.command("pairs")
@click.argument("phone_dir", type=FOLDER)
@click.argument("dslr_dir", type=FOLDER)
@click.option("-o", "--out", "out_csv", type=click.Path(dir_okay=False), help="Write the pairs to this CSV.")
@field_options(PairsConfig)
@click.option("--json", "as_json", is_flag=True, help="Print the pairing as JSON on stdout.")
@handle_errors
def command(phone_dir, dslr_dir, out_csv, as_json, **options) -> None:
    """Pair the photos of PHONE_DIR with those of DSLR_DIR; list pairs and unpaired files.

    The CSV (name,phone,dslr,dt; paths relative to the two folders) is what `dpedkit build PHONE_DIR
    DSLR_DIR --pairs CSV` reads; `build` also pairs by itself with the same options.
    """
    from dpedkit.dataset.pairs import pair_folders, set_aside_message, skipped_message, time_message, write_pairs_csv

    by = options["by"]
    pairing = pair_folders(phone_dir, dslr_dir, PairsConfig(**options))
    if out_csv:
        write_pairs_csv(pairing, out_csv)
    if as_json:
        print_json({"by": by, "pairs": [vars(r) for r in pairing.pairs], "unpaired_phone": pairing.unpaired_phone,
                    "unpaired_dslr": pairing.unpaired_dslr, "no_capture_time": pairing.no_time,
                    "reasons": pairing.reasons, "skipped": pairing.skipped, "set_aside": pairing.set_aside,
                    "clock_offset": pairing.clock_offset, "clock_estimated": pairing.clock_estimated,
                    "clock_spread": pairing.clock_spread, "clock_hint": pairing.clock_hint})  # fmt: skip
        return

    def name(path: str) -> str:
        return escape(Path(path).name)

    rows = [[escape(r.name), name(r.phone), name(r.dslr), "" if r.dt is None else f"{r.dt:+.3f}"]
            for r in pairing.pairs]  # fmt: skip
    why = pairing.reasons
    rows += [["[yellow]unpaired[/]", name(p), "", escape(why.get(p, ""))] for p in pairing.unpaired_phone]
    rows += [["[yellow]unpaired[/]", "", name(p), escape(why.get(p, ""))] for p in pairing.unpaired_dslr]
    title = f"{len(pairing.pairs)} pairs by {by}"
    console.print(table(title, ["pair", "phone", "dslr", "dt (s) / why unpaired"], rows))
    if pairing.clock_offset is not None:
        console.print(escape(time_message(pairing)))
    summary = f"unpaired: {len(pairing.unpaired_phone)} phone, {len(pairing.unpaired_dslr)} DSLR"
    if pairing.no_time:
        summary += f"; {len(pairing.no_time)} without EXIF capture time"
    console.print(escape(summary + (f"; wrote {out_csv}" if out_csv else "")))
    if pairing.skipped:
        console.print(f"[bold yellow]warning:[/] {escape(skipped_message(pairing.skipped))}")
    if pairing.set_aside:
        console.print(escape(set_aside_message(pairing)))
