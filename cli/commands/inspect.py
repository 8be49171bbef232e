"""``dpedkit inspect``: HTML report (or terminal summary) of a dataset's or an aligned pair's alignment quality."""

from __future__ import annotations

import shlex
from collections import Counter
from pathlib import Path

import click
from dpedkit_cli.options import FOLDER_OR_URL, config_options, local_dataset, resolved_config
from dpedkit_cli.render import console, handle_errors, print_json, progress, table
from rich.markup import escape


@click.command("inspect")
@click.argument("source", type=FOLDER_OR_URL)
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), help="HTML file [SOURCE/report.html].")
@click.option("--summary", is_flag=True, help="Print the summary and the worst pairs as tables; no HTML.")
@click.option("--top", default=10, show_default=True, help="Worst pairs listed by --summary.")
@click.option("--json", "as_json", is_flag=True, help="With --summary: print the summary as JSON on stdout instead.")
@click.option("--overwrite", is_flag=True, help="Replace an existing -o file that is not an earlier report.")
@config_options("inspect")
@handle_errors
def command(
    source: str | Path, out: Path | None, summary: bool, top: int, as_json: bool, overwrite: bool, **options: int
) -> None:
    """Report on the alignment quality of SOURCE: a dataset (`dpedkit build`) or a pair folder (`dpedkit align`).

    The HTML report is one self-contained file (images embedded) that opens offline in any browser.
    """
    from dpedkit.align import is_pair_dir, read_alignment
    from dpedkit.inspect.report import write_report
    from dpedkit.inspect.summary import summarize_dataset

    if as_json and not summary:
        raise click.UsageError("--json goes with --summary (the HTML report is the other output)")
    config = resolved_config("inspect", options)
    source = Path(local_dataset(source))
    if summary and is_pair_dir(source):
        meta = read_alignment(source)[0]
        if as_json:
            print_json(meta)
            return
        rows = [[k, v] for k, v in meta.items() if not isinstance(v, list | dict) or k == "crop"]
        console.print(table(f"aligned pair {source}", ["", "value"], rows))
        return
    if summary:
        s = summarize_dataset(source)
        if as_json:
            print_json(_summary_json(s, top))
        else:
            _print_summary(s, top)
        return
    with progress("inspect", None) as advance:
        shown = [0]

        def on_progress(stage: str, done: int, total: int) -> None:
            advance(done - shown[0], stage, total)
            shown[0] = done

        result = write_report(source, out, config=config, on_progress=on_progress, overwrite=overwrite)
    for note in result.notes:
        console.print(f"[dim]{escape(note)}[/]")
    if result.unreadable:
        first = next(iter(result.unreadable.values()))
        console.print(
            f"[yellow]warning:[/] {len(result.recomputed)} pair(s) re-aligned from their photos, "
            f"{len(result.unreadable)} could not be (photos missing or unreadable; first: {escape(first)})"
        )
    held = f"{result.n_pairs} pair(s)" if not result.imported else f"imported, {result.patch_pairs} patch pairs"
    held += f" and {result.unpaired} photo(s) without a partner" if result.unpaired else ""
    console.print(f"{result.kind} report, {held}, {result.size_bytes / 1e6:.1f} MB; open it in a browser:")
    click.echo(str(result.path))


def _summary_json(s, top: int) -> dict:  # noqa: ANN001 - dpedkit.inspect.summary.DatasetSummary
    """The figures of :func:`_print_summary` as plain data (the worst ``top`` pairs; no per-patch columns)."""
    return {
        "root": str(s.root),
        "pairs": len(s.pairs),
        "status_counts": s.status_counts,
        "patches_kept": s.patches_kept,
        "windows": s.patches_total,
        "split_pairs": s.split_pairs,
        "split_patches": s.split_patches,
        "ncc_min": s.ncc_min,
        "worst_pairs": s.pairs[:top],
        "source": s.source,
        "origin": s.origin,
        "patch_size": s.patch_size,
        "patch_shapes": s.shapes,
        "sensor": s.sensor,
    }


def _print_summary(s, top: int) -> None:  # noqa: ANN001 - dpedkit.inspect.summary.DatasetSummary
    from dpedkit.inspect.summary import overview

    rows = [[k, f"{v:.4g}" if isinstance(v, float) else v] for k, v in overview(s)]
    turns = Counter(int(p["orientation_fix"]) for p in s.pairs if p.get("orientation_fix"))
    if turns:  # phone photos found turned by a quarter (EXIF orientation missing or wrong), aligned anyway
        rows.append(["phone photos turned", ", ".join(f"{k} deg: {v}" for k, v in sorted(turns.items()))])
    console.print(table(f"dataset {s.root}", ["", "value"], rows))
    if s.imported and not s.pairs:
        console.print(f"next: [bold]dpedkit inspect {escape(shlex.quote(str(s.root)))} -o report.html[/] shows "
                      "sample patch pairs")  # fmt: skip
        return
    console.print(table("pairs by status", ["status", "pairs"], [[k, v] for k, v in s.status_counts.items()]))
    cols = ["pair", "status", "split", "kept fraction", "kept", "windows", "inliers", "RMSE px", "turn", "reason"]
    keys = ["pair", "status", "split", "kept_fraction", "patches_kept", "patches_total", "inliers", "rmse_px",
            "orientation_fix", "reason"]  # fmt: skip
    worst = [[p.get(k, "") if p.get(k) is not None else "-" for k in keys] for p in s.pairs[:top]]
    console.print(table(f"worst {len(worst)} pairs (lowest kept fraction first)", cols, worst))
