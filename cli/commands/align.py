"""``dpedkit align``: align one phone/DSLR pair and crop both to the overlap (over ``dpedkit.align``)."""

from __future__ import annotations

import sys

import click
from dpedkit_cli.options import config_options, resolved_config
from dpedkit_cli.render import console, handle_errors, print_json, table
from rich.markup import escape


@click.command("align")
@click.argument("phone", type=click.Path(dir_okay=False))
@click.argument("dslr", type=click.Path(dir_okay=False))
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@config_options("align")
@click.option("--overwrite", is_flag=True, help="Replace an earlier alignment in OUT.")
@click.option("--json", "as_json", is_flag=True, help="Also print alignment.json on stdout.")
@handle_errors
def command(phone, dslr, out_dir, overwrite, as_json, **options) -> None:  # fmt: skip
    """Align PHONE to DSLR (SIFT + robust homography), crop both to the largest common rectangle.

    Writes OUT/phone.png and OUT/dslr.png (same size; the DSLR resampled onto the phone pixels, anti-aliased)
    and OUT/alignment.json (status, reason, H_phone_to_dslr, crop, matches, inliers, rmse_px, scale, timings,
    the resolved config). Options may come from --config FILE.toml ([align]); flags typed here override it.
    Exit status: 0 aligned, 1 the pair was rejected (the reason is in alignment.json), 2 bad usage/input.
    """
    from dpedkit.align import align_files, check_pair_dir, write_alignment
    from dpedkit.align.pipeline import swapped_message

    config = resolved_config("align", options)
    check_pair_dir(out_dir, [phone, dslr], overwrite=overwrite)
    result = align_files(phone, dslr, config=config)
    write_alignment(result, out_dir)
    if result.looks_swapped:
        console.print(f"[bold yellow]warning:[/] {escape(swapped_message(result))}", highlight=False)
    if as_json:
        print_json(result.to_json())
    else:
        _render(result, out_dir)
    sys.exit(0 if result.ok else 1)


def _render(r, out_dir) -> None:
    head = "[green]ok[/]" if r.ok else f"[red]{r.status}[/]: {r.reason}"
    rows = [["status", head], ["matches / inliers", f"{r.matches} / {r.inliers}"], ["inlier RMSE (DSLR px)", r.rmse_px],
            ["scale (DSLR px per phone px)", r.scale], ["rotation (deg)", r.rotation_deg],
            ["orientation fix (phone turned, deg)", r.orientation_fix],
            ["crop [x0, y0, x1, y1]", r.crop], ["seconds", r.timings.get("total", 0.0)]]  # fmt: skip
    console.print(table(f"dpedkit align -> {out_dir}", ["", "value"], rows))
